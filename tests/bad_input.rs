//! Every kind of bad input gets a clear error naming the problem, through the library and
//! through the command line (non-zero exit, never a panic or a signal), and loses nothing.

mod common;

use mrl_index::build::SpaceChoice;
use mrl_index::format::FormatError;
use mrl_index::ingest::{write_npy_f32, MatrixSource};
use mrl_index::lock::{LockError, WriterLock, LOCK_FILE};
use mrl_index::progress::NoProgress;
use mrl_index::synth::MatryoshkaLike;
use mrl_index::{
    BuildError, Filter, Index, IndexBuilder, IndexError, SearchError, SearchParams, SearchPlan,
};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const DIM: usize = 32;

fn small_builder() -> IndexBuilder {
    IndexBuilder::new()
        .coarse_dim(8)
        .widths(vec![8, 16, 32])
        .space(SpaceChoice::Native)
        .threads(1)
}

fn rows(n: usize) -> Vec<f32> {
    MatryoshkaLike::with_dim(DIM, 1).items(n)
}

/// Runs the CLI; asserts it exited with status 1 (not a signal, not a panic) and returns
/// stderr.
fn cli_fails(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_mrl-index"))
        .args(args)
        .output()
        .expect("run mrl-index");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(1),
        "args {args:?}: expected exit 1, got {:?}; stderr: {stderr}",
        out.status
    );
    assert!(!stderr.contains("panicked"), "panic for {args:?}: {stderr}");
    assert!(stderr.starts_with("error: "), "stderr: {stderr}");
    stderr
}

fn cli_ok(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_mrl-index"))
        .args(args)
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "args {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

struct Fixture {
    dir: tempfile::TempDir,
    items: PathBuf,
    index: PathBuf,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let items = dir.path().join("items.npy");
    write_npy_f32(&items, &rows(500), 500, DIM).unwrap();
    let index = dir.path().join("idx");
    small_builder()
        .build(
            &MatrixSource::new(rows(500), DIM).unwrap(),
            None,
            &index,
            &NoProgress,
        )
        .unwrap();
    Fixture { dir, items, index }
}

#[test]
fn non_finite_values_name_row_and_column() {
    let dir = tempfile::tempdir().unwrap();
    for (bad, text) in [
        (f32::NAN, "NaN"),
        (f32::INFINITY, "inf"),
        (f32::NEG_INFINITY, "-inf"),
    ] {
        let mut data = rows(100);
        data[37 * DIM + 5] = bad;
        data[80 * DIM + 1] = bad; // a later one too: the first must be named
        let src = MatrixSource::new(data.clone(), DIM).unwrap();
        let err = small_builder()
            .build(&src, None, &dir.path().join("x"), &NoProgress)
            .unwrap_err();
        assert!(
            matches!(
                err,
                BuildError::NonFinite {
                    row: 37,
                    col: 5,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(
            !dir.path().join("x").exists(),
            "a failed build must leave nothing"
        );
        let f = dir.path().join("nan.npy");
        write_npy_f32(&f, &data, 100, DIM).unwrap();
        let msg = cli_fails(&[
            "build",
            "--input",
            p(&f),
            "--out",
            p(&dir.path().join("y")),
            "--coarse-dim",
            "8",
            "--quiet",
        ]);
        assert!(
            msg.contains("row 37, column 5") && msg.contains(text) && msg.contains("nan.npy"),
            "{msg}"
        );
    }
}

#[test]
fn parameter_errors_are_reported_before_any_work() {
    let src = MatrixSource::new(rows(50), DIM).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("idx");
    let cases: Vec<(IndexBuilder, &str)> = vec![
        (small_builder().coarse_dim(64), "coarse-dim"),
        (small_builder().m(300), "m = 300"),
        (small_builder().m(1), "m = 1"),
        (small_builder().ef_construction(0), "ef-construction"),
        (
            small_builder().widths(vec![8, 16, 16, 32]),
            "not strictly increasing",
        ),
        (
            small_builder().widths(vec![16, 8, 32]),
            "not strictly increasing",
        ),
        (
            small_builder().widths(vec![8, 16]),
            "must end at the full dimension 32",
        ),
        (
            small_builder().widths(vec![16, 32]),
            "coarse-dim 8 must be one of the widths",
        ),
    ];
    for (builder, text) in cases {
        let err = builder.build(&src, None, &out, &NoProgress).unwrap_err();
        assert!(err.to_string().contains(text), "expected {text:?} in {err}");
        assert!(!out.exists());
    }
    let f = dir.path().join("items.npy");
    write_npy_f32(&f, &rows(50), 50, DIM).unwrap();
    for (args, text) in [
        (vec!["--coarse-dim", "64"], "coarse-dim"),
        (
            vec!["--coarse-dim", "8", "--m", "300"],
            "must be between 2 and 256",
        ),
        (
            vec!["--coarse-dim", "8", "--widths", "8,16"],
            "must end at the full dimension 32",
        ),
        (
            vec!["--coarse-dim", "8", "--widths", "8,32,16"],
            "not strictly increasing",
        ),
    ] {
        let mut a = vec!["build", "--input", p(&f), "--out", p(&out), "--quiet"];
        a.extend(args);
        let msg = cli_fails(&a);
        assert!(msg.contains(text), "{msg}");
    }
}

#[test]
fn empty_input_and_wrong_file_types() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("idx");
    let empty = dir.path().join("empty.npy");
    write_npy_f32(&empty, &[], 0, DIM).unwrap();
    let msg = cli_fails(&[
        "build",
        "--input",
        p(&empty),
        "--out",
        p(&out),
        "--coarse-dim",
        "8",
    ]);
    assert!(
        msg.contains("empty input") && msg.contains("empty.npy"),
        "{msg}"
    );
    let src = MatrixSource::new(Vec::new(), DIM).unwrap();
    assert!(matches!(
        small_builder().build(&src, None, &out, &NoProgress),
        Err(BuildError::EmptyInput { .. })
    ));
    let text = dir.path().join("items.npy");
    fs::write(&text, "0.1,0.2,0.3\n0.4,0.5,0.6\n").unwrap();
    let msg = cli_fails(&["build", "--input", p(&text), "--out", p(&out)]);
    assert!(
        msg.contains("items.npy") && msg.contains("not a .npy file"),
        "{msg}"
    );
    let fv = dir.path().join("items.fvecs");
    fs::write(&fv, [1u8, 2, 3]).unwrap();
    let msg = cli_fails(&["build", "--input", p(&fv), "--out", p(&out)]);
    assert!(msg.contains("items.fvecs"), "{msg}");
    let csv = dir.path().join("items.csv");
    fs::write(&csv, "1,2").unwrap();
    let msg = cli_fails(&["build", "--input", p(&csv), "--out", p(&out)]);
    assert!(msg.contains("items.csv"), "{msg}");
    let missing = dir.path().join("missing.npy");
    let msg = cli_fails(&["build", "--input", p(&missing), "--out", p(&out)]);
    assert!(msg.contains("missing.npy"), "{msg}");
    assert!(!out.exists(), "no failed build may create the output");
}

#[test]
fn query_errors() {
    let fx = fixture();
    let index = Index::open(&fx.index).unwrap();
    let params = SearchParams::default();
    let err = index.search(&[0.0; 31], 10, &params).unwrap_err();
    assert!(
        matches!(
            err,
            SearchError::DimensionMismatch {
                expected: 32,
                got: 31
            }
        ),
        "{err:?}"
    );
    let err = index.search(&[0.0; 32], 0, &params).unwrap_err();
    assert!(matches!(err, SearchError::ZeroK));
    let mut q = vec![0.5f32; 32];
    q[9] = f32::NAN;
    let err = index.search(&q, 5, &params).unwrap_err();
    assert!(
        matches!(err, SearchError::NonFiniteQuery { dim: 9, .. }),
        "{err:?}"
    );
    let plan: SearchPlan = "16:100,32:k".parse().unwrap();
    let err = index
        .search(&[0.5; 32], 5, &SearchParams::with_plan(plan))
        .unwrap_err();
    assert!(
        err.to_string().contains("coarse graph's width 8, not 16"),
        "{err}"
    );
    let err = index
        .search_batch(&[0.5; 33], 5, &params, &Filter::NONE)
        .unwrap_err();
    assert!(matches!(err, SearchError::DimensionMismatch { .. }));

    let q16 = fx.dir.path().join("q16.npy");
    write_npy_f32(&q16, &[0.5; 32], 2, 16).unwrap();
    let msg = cli_fails(&["search", "--index", p(&fx.index), "--queries", p(&q16)]);
    assert!(msg.contains("32-d") && msg.contains("16"), "{msg}");
    let q = fx.dir.path().join("q.npy");
    write_npy_f32(&q, &[0.5; 64], 2, 32).unwrap();
    let msg = cli_fails(&[
        "search",
        "--index",
        p(&fx.index),
        "--queries",
        p(&q),
        "-k",
        "0",
    ]);
    assert!(msg.contains("k must be at least 1"), "{msg}");
    let msg = cli_fails(&[
        "search",
        "--index",
        p(&fx.index),
        "--queries",
        p(&q),
        "--plan",
        "8:10,4:k",
    ]);
    assert!(msg.contains("widths must increase"), "{msg}");
    let out = cli_ok(&[
        "search",
        "--index",
        p(&fx.index),
        "--queries",
        p(&q),
        "-k",
        "3",
        "--json",
    ]);
    let first: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(first["query"], 0);
    assert_eq!(first["ids"].as_array().unwrap().len(), 3);
}

#[test]
fn missing_directory_and_not_an_index() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    assert!(matches!(
        Index::open(&missing),
        Err(IndexError::NotFound { .. })
    ));
    let msg = cli_fails(&["info", "--index", p(&missing)]);
    assert!(
        msg.contains("nope") && msg.contains("no such index directory"),
        "{msg}"
    );
    let msg = cli_fails(&["verify", "--index", p(dir.path())]);
    assert!(msg.contains("not an mrl-index directory"), "{msg}");
}

fn data_file(index: &Path, prefix: &str) -> PathBuf {
    fs::read_dir(index)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_str().unwrap().starts_with(prefix))
        .unwrap()
}

/// Replaces a published file's content (tests only: the library never does this).
fn rewrite(path: &Path, f: impl FnOnce(&mut Vec<u8>)) {
    let mut bytes = fs::read(path).unwrap();
    f(&mut bytes);
    fs::remove_file(path).unwrap();
    fs::write(path, bytes).unwrap();
}

#[test]
fn truncated_files_fail_at_open() {
    for prefix in ["store-", "graph-", "MANIFEST"] {
        let fx = fixture();
        let f = data_file(&fx.index, prefix);
        rewrite(&f, |b| b.truncate(b.len() - 100));
        let err = Index::open(&fx.index).unwrap_err();
        assert!(
            matches!(err, IndexError::Format(FormatError::Truncated { .. })),
            "{prefix}: {err:?}"
        );
        let msg = cli_fails(&["info", "--index", p(&fx.index)]);
        assert!(msg.contains("truncated") && msg.contains(prefix), "{msg}");
        rewrite(&f, |b| b.truncate(10));
        assert!(Index::open(&fx.index).is_err());
        rewrite(&f, |b| b.clear());
        let msg = cli_fails(&["verify", "--index", p(&fx.index)]);
        assert!(msg.contains("truncated"), "{msg}");
    }
}

#[test]
fn corrupted_data_fails_verify_and_corrupted_header_fails_open() {
    for prefix in ["store-", "graph-"] {
        let fx = fixture();
        let f = data_file(&fx.index, prefix);
        rewrite(&f, |b| {
            let i = b.len() - 200;
            b[i] ^= 0x5a;
        });
        // Structure is intact: open succeeds, verify fails.
        let index = Index::open(&fx.index).unwrap();
        let err = index.verify().unwrap_err();
        assert!(
            matches!(err, IndexError::Format(FormatError::SectionChecksum { .. })),
            "{err:?}"
        );
        let msg = cli_fails(&["verify", "--index", p(&fx.index)]);
        assert!(
            msg.contains("checksum mismatch") && msg.contains(prefix),
            "{msg}"
        );
        rewrite(&f, |b| b[100] ^= 0x01); // inside the section table
        let msg = cli_fails(&["info", "--index", p(&fx.index)]);
        assert!(msg.contains("header checksum mismatch"), "{msg}");
    }
    let fx = fixture();
    cli_ok(&["verify", "--index", p(&fx.index)]);
}

#[test]
fn unknown_format_version_and_foreign_files() {
    let fx = fixture();
    let f = data_file(&fx.index, "store-");
    rewrite(&f, |b| b[8..12].copy_from_slice(&7u32.to_le_bytes()));
    let err = Index::open(&fx.index).unwrap_err();
    assert!(
        matches!(
            err,
            IndexError::Format(FormatError::UnsupportedVersion {
                found: 7,
                oldest: 1,
                newest: 3,
                ..
            })
        ),
        "{err:?}"
    );
    let msg = cli_fails(&["info", "--index", p(&fx.index)]);
    assert!(msg.contains("format version 7 is not supported"), "{msg}");
    rewrite(&f, |b| b[0..8].copy_from_slice(b"NOTMINE!"));
    let msg = cli_fails(&["info", "--index", p(&fx.index)]);
    assert!(msg.contains("not an mrl-index"), "{msg}");
}

#[test]
fn existing_index_is_refused_and_survives_a_failed_rebuild() {
    let fx = fixture();
    let before: Vec<_> = fs::read_dir(&fx.index)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    let msg = cli_fails(&[
        "build",
        "--input",
        p(&fx.items),
        "--out",
        p(&fx.index),
        "--coarse-dim",
        "8",
    ]);
    assert!(
        msg.contains("already holds an index") && msg.contains("--force"),
        "{msg}"
    );
    // A forced rebuild that fails (NaN) leaves the old index and no stray files.
    let mut data = rows(500);
    data[3] = f32::NAN;
    let bad = fx.dir.path().join("bad.npy");
    write_npy_f32(&bad, &data, 500, DIM).unwrap();
    cli_fails(&[
        "build",
        "--input",
        p(&bad),
        "--out",
        p(&fx.index),
        "--coarse-dim",
        "8",
        "--force",
    ]);
    let after: Vec<_> = fs::read_dir(&fx.index)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(before.len(), after.len());
    Index::open(&fx.index).unwrap().verify().unwrap();
    // A forced rebuild that succeeds replaces it and removes the old generation.
    let out = cli_ok(&[
        "build",
        "--input",
        p(&fx.items),
        "--out",
        p(&fx.index),
        "--coarse-dim",
        "8",
        "--widths",
        "8,32",
        "--space",
        "native",
        "--force",
        "--quiet",
    ]);
    assert!(out.contains("built 500 items"), "{out}");
    let index = Index::open(&fx.index).unwrap();
    assert_eq!(index.widths(), vec![8, 32]);
    assert_eq!(
        fs::read_dir(&fx.index).unwrap().count(),
        4,
        "MANIFEST + one store + one graph + LOCK"
    );
    // A directory with other files is never written into.
    let other = fx.dir.path().join("other");
    fs::create_dir(&other).unwrap();
    fs::write(other.join("notes.txt"), "keep me").unwrap();
    let msg = cli_fails(&[
        "build",
        "--input",
        p(&fx.items),
        "--out",
        p(&other),
        "--coarse-dim",
        "8",
        "--force",
    ]);
    assert!(msg.contains("not an mrl-index directory"), "{msg}");
    assert_eq!(
        fs::read_to_string(other.join("notes.txt")).unwrap(),
        "keep me"
    );
}

#[test]
fn ids_files_are_checked() {
    let fx = fixture();
    let ids = fx.dir.path().join("ids.npy");
    let mut v: Vec<u64> = (1000..1500).collect();
    v[10] = v[3];
    mrl_index::ingest::write_npy_u64(&ids, &v).unwrap();
    let out = fx.dir.path().join("with-ids");
    let msg = cli_fails(&[
        "build",
        "--input",
        p(&fx.items),
        "--ids",
        p(&ids),
        "--out",
        p(&out),
        "--coarse-dim",
        "8",
    ]);
    assert!(msg.contains("duplicate id 1003 at rows 3 and 10"), "{msg}");
    mrl_index::ingest::write_npy_u64(&ids, &v[..499]).unwrap();
    let msg = cli_fails(&[
        "build",
        "--input",
        p(&fx.items),
        "--ids",
        p(&ids),
        "--out",
        p(&out),
        "--coarse-dim",
        "8",
    ]);
    assert!(msg.contains("ids.npy"), "{msg}");
    let v: Vec<u64> = (0..500).map(|i| 10_000 + 3 * i).collect();
    mrl_index::ingest::write_npy_u64(&ids, &v).unwrap();
    cli_ok(&[
        "build",
        "--input",
        p(&fx.items),
        "--ids",
        p(&ids),
        "--out",
        p(&out),
        "--coarse-dim",
        "8",
        "--quiet",
    ]);
    let index = Index::open(&out).unwrap();
    index.verify().unwrap();
    let q = &rows(500)[7 * DIM..8 * DIM];
    let hits = index.search(q, 5, &SearchParams::default()).unwrap();
    assert!(hits
        .iter()
        .all(|h| h.id >= 10_000 && (h.id - 10_000) % 3 == 0));
    // Deny by external id.
    let top = hits[0].id;
    let hits2 = index
        .search_filtered(q, 5, &SearchParams::default(), &Filter::deny(&[top]))
        .unwrap();
    assert!(hits2.iter().all(|h| h.id != top));
    assert_eq!(hits2[0].id, hits[1].id);
}

fn names(dir: &Path) -> Vec<std::ffi::OsString> {
    let mut names: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    names
}

/// A second writer (build, forced or not, or retune) into a directory another writer holds
/// is refused at once, naming the lock file and the holder, and deletes nothing; readers
/// are not blocked. (The test process plays the first writer by holding the lock.)
#[test]
fn a_second_writer_is_refused_and_deletes_nothing() {
    let fx = fixture();
    let before = names(&fx.index);
    assert!(before.contains(&LOCK_FILE.into()), "{before:?}");
    let held = WriterLock::acquire(&fx.index).unwrap();
    let src = MatrixSource::new(rows(300), DIM).unwrap();
    let err = small_builder()
        .overwrite(true)
        .build(&src, None, &fx.index, &NoProgress)
        .unwrap_err();
    match &err {
        BuildError::Lock(LockError::Held { path, pid }) => {
            assert_eq!(path, &fx.index.join(LOCK_FILE));
            assert_eq!(*pid, Some(std::process::id()));
        }
        other => panic!("{other:?}"),
    }
    let pid = format!("pid {}", std::process::id());
    let msg = cli_fails(&[
        "build",
        "--input",
        p(&fx.items),
        "--out",
        p(&fx.index),
        "--coarse-dim",
        "8",
        "--force",
    ]);
    assert!(
        msg.contains("another writer holds the lock on")
            && msg.contains(&format!("{}", fx.index.join(LOCK_FILE).display()))
            && msg.contains(&pid),
        "{msg}"
    );
    // Readers never take the lock.
    let index = Index::open(&fx.index).unwrap();
    let plan = index.tuned().unwrap().clone();
    assert!(matches!(
        index.publish_default_plan(&plan),
        Err(IndexError::Lock(LockError::Held { .. }))
    ));
    assert_eq!(names(&fx.index), before, "nothing may be deleted or added");
    index.verify().unwrap();
    // Released: the next writer proceeds.
    drop(held);
    index.publish_default_plan(&plan).unwrap();
    small_builder()
        .overwrite(true)
        .build(&src, None, &fx.index, &NoProgress)
        .unwrap();
    assert_eq!(Index::open(&fx.index).unwrap().len(), 300);

    // A new directory another writer holds: refused too, and left to that writer.
    let fresh = fx.dir.path().join("fresh");
    fs::create_dir(&fresh).unwrap();
    let held = WriterLock::acquire(&fresh).unwrap();
    assert!(matches!(
        small_builder().build(&src, None, &fresh, &NoProgress),
        Err(BuildError::Lock(LockError::Held { .. }))
    ));
    assert_eq!(names(&fresh), vec![std::ffi::OsString::from(LOCK_FILE)]);
    drop(held);
    // The lock file alone does not make a directory "not an index directory".
    small_builder()
        .build(&src, None, &fresh, &NoProgress)
        .unwrap();
    Index::open(&fresh).unwrap().verify().unwrap();
}

/// A build that fails in a directory it created removes it, lock file included.
#[test]
fn a_failed_build_removes_the_directory_it_created_with_its_lock_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("new");
    let mut data = rows(100);
    data[50 * DIM] = f32::NAN;
    let src = MatrixSource::new(data, DIM).unwrap();
    assert!(matches!(
        small_builder().build(&src, None, &out, &NoProgress),
        Err(BuildError::NonFinite { .. })
    ));
    assert!(!out.exists());
}

/// Leftovers of a crashed writer (a temporary file, data files of an unpublished
/// generation) are removed by the next build; files that are not the index's stay.
#[test]
fn a_rebuild_removes_a_crashed_writers_leftovers() {
    let fx = fixture();
    let temp = ".store-00000000000000aa.mrl.tmp-999999-3-0badf00d";
    let stale = ["store-00000000000000aa.mrl", "graph-00000000000000aa.mrl"];
    for name in stale.iter().chain([&temp]) {
        fs::write(fx.index.join(name), b"left by a crashed build").unwrap();
    }
    small_builder()
        .overwrite(true)
        .build(
            &MatrixSource::new(rows(500), DIM).unwrap(),
            None,
            &fx.index,
            &NoProgress,
        )
        .unwrap();
    for name in stale.iter().chain([&temp]) {
        assert!(!fx.index.join(name).exists(), "{name} must be removed");
    }
    assert_eq!(names(&fx.index).len(), 4, "{:?}", names(&fx.index));
    Index::open(&fx.index).unwrap().verify().unwrap();
}

#[test]
fn a_first_build_that_crashed_before_publishing_does_not_block_the_next() {
    // It left data files of its generation and a temporary file, but no MANIFEST: nothing
    // was published, so the next build (without --force) takes the directory and removes
    // them. A file of the user's still makes the directory refused.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("idx");
    fs::create_dir(&dir).unwrap();
    let left = [
        "store-00000000000000aa.mrl",
        "graph-00000000000000aa.mrl",
        ".MANIFEST.tmp-999999-0-0badf00d",
    ];
    for name in left {
        fs::write(dir.join(name), b"left by a crashed first build").unwrap();
    }
    let source = MatrixSource::new(rows(500), DIM).unwrap();
    small_builder()
        .build(&source, None, &dir, &NoProgress)
        .unwrap();
    for name in left {
        assert!(!dir.join(name).exists(), "{name} must be removed");
    }
    Index::open(&dir).unwrap().verify().unwrap();

    let other = tmp.path().join("other");
    fs::create_dir(&other).unwrap();
    fs::write(other.join("store-00000000000000aa.mrl"), b"x").unwrap();
    fs::write(other.join("notes.txt"), b"the user's").unwrap();
    let err = small_builder()
        .build(&source, None, &other, &NoProgress)
        .unwrap_err()
        .to_string();
    assert!(err.contains("not an mrl-index directory"), "{err}");
    assert!(other.join("notes.txt").exists() && other.join("store-00000000000000aa.mrl").exists());
}
