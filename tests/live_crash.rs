//! Crash safety of the live index's writers: `mrl-index add`, `delete` and `compact` killed
//! with SIGKILL, or failing with a full disk (ENOSPC), at every write point
//! ([`mrl_index::fault`]) leave an index that opens, verifies and answers as the generation
//! before the change or, once `MANIFEST` was renamed, the one after; never anything else.
//! A run that exits 0 has published its change. The next writer removes the leftovers.

use mrl_index::build::SpaceChoice;
use mrl_index::ingest::{write_npy_f32, write_npy_u64, MatrixSource};
use mrl_index::progress::NoProgress;
use mrl_index::synth::MatryoshkaLike;
use mrl_index::writer::IndexWriter;
use mrl_index::{Filter, Index, IndexBuilder};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;

const DIM: usize = 128;

/// What a generation answers: live items, deleted rows, and the exact top 10 of a few
/// queries at full width.
#[derive(Debug, PartialEq)]
struct Snapshot {
    live: usize,
    deleted: usize,
    deltas: usize,
    answers: Vec<Vec<u64>>,
}

fn snapshot(dir: &Path, queries: &[f32]) -> Snapshot {
    let index = Index::open(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    index
        .verify()
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    Snapshot {
        live: index.len(),
        deleted: index.deleted_count(),
        deltas: index.deltas().len(),
        answers: queries
            .chunks_exact(DIM)
            .map(|q| {
                index
                    .exact_search(q, 10, DIM, &Filter::NONE)
                    .unwrap()
                    .iter()
                    .map(|h| h.id)
                    .collect()
            })
            .collect(),
    }
}

fn copy_dir(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// Runs `mrl-index args` on `dir` (substituted for `{dir}`) with the fault `fault` armed.
fn run(args: &[String], dir: &Path, fault: Option<&str>) -> std::process::Output {
    let args: Vec<String> = args
        .iter()
        .map(|a| a.replace("{dir}", &dir.display().to_string()))
        .collect();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mrl-index"));
    cmd.args(&args).env_remove(mrl_index::fault::FAULT_ENV);
    if let Some(f) = fault {
        cmd.env(mrl_index::fault::FAULT_ENV, f);
    }
    cmd.output().unwrap()
}

/// After a writer opened and closed, nothing but `MANIFEST`, `LOCK` and the files it names.
fn assert_clean(dir: &Path) {
    drop(IndexWriter::open(dir).unwrap());
    let index = Index::open(dir).unwrap();
    let named = index.full_manifest().generations();
    for e in std::fs::read_dir(dir).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        if name == "MANIFEST" || name == "LOCK" {
            continue;
        }
        let g = mrl_index::manifest::generation_of(&name)
            .unwrap_or_else(|| panic!("{}: leftover {name}", dir.display()));
        assert!(named.contains(&g), "{}: unnamed {name}", dir.display());
    }
}

#[test]
fn killed_or_out_of_space_at_every_write_point_the_index_stays_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let gen = MatryoshkaLike::with_dim(DIM, 77);
    let items = gen.items(7300);
    let queries = gen.queries(6);
    let base = root.join("base");
    let src = MatrixSource::new(items[..3000 * DIM].to_vec(), DIM).unwrap();
    IndexBuilder::new()
        .threads(1)
        .widths(vec![32, 64, 128])
        .coarse_dim(32)
        .space(SpaceChoice::Learned)
        .code_dim(64)
        .target_recall(None)
        .build(&src, None, &base, &NoProgress)
        .unwrap();
    // 4,300 new items (a delta with its own graph), 200 of them replacing live ones.
    let new_items = root.join("new.npy");
    let new_ids = root.join("ids.npy");
    write_npy_f32(&new_items, &items[3000 * DIM..], 4300, DIM).unwrap();
    let ids: Vec<u64> = (0..200).chain(10_000..14_100).collect();
    write_npy_u64(&new_ids, &ids).unwrap();
    let s = |x: &str| x.to_string();
    let path = |p: &PathBuf| p.display().to_string();
    let ops: Vec<(&str, Vec<String>)> = vec![
        (
            "add",
            vec![
                s("add"),
                s("--index"),
                s("{dir}"),
                s("--input"),
                path(&new_items),
                s("--ids"),
                path(&new_ids),
                s("--replace"),
                s("--threads"),
                s("1"),
            ],
        ),
        (
            "delete",
            vec![
                s("delete"),
                s("--index"),
                s("{dir}"),
                s("--ids"),
                (150..260)
                    .map(|i| i.to_string())
                    .collect::<Vec<_>>()
                    .join(","),
            ],
        ),
        (
            "compact",
            vec![
                s("compact"),
                s("--index"),
                s("{dir}"),
                s("--quiet"),
                s("--threads"),
                s("1"),
            ],
        ),
    ];
    let mut before = base.clone();
    for (name, args) in &ops {
        // The generation before and, run once without a fault, the one after.
        let after = root.join(format!("after-{name}"));
        copy_dir(&before, &after);
        let out = run(args, &after, None);
        assert!(out.status.success(), "{name}: {out:?}");
        let (snap_before, snap_after) = (snapshot(&before, &queries), snapshot(&after, &queries));
        assert_ne!(snap_before, snap_after, "{name} must change the index");
        // `info --json` reports the live index as it is.
        let out = run(
            &[s("info"), s("--index"), s("{dir}"), s("--json")],
            &after,
            None,
        );
        assert!(out.status.success(), "{out:?}");
        let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(info["live_items"], snap_after.live, "{info}");
        assert_eq!(info["deleted"], snap_after.deleted, "{info}");
        let deltas = info["delta_segments"].as_array().unwrap();
        assert_eq!(deltas.len(), snap_after.deltas, "{info}");
        assert_eq!(
            info["format_version"],
            if snap_after.deltas > 0 { 3 } else { 2 }
        );
        // Its files: every data file in the directory (a published change leaves only those
        // MANIFEST names), with their sizes.
        let mut on_disk: Vec<String> = std::fs::read_dir(&after)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| mrl_index::manifest::generation_of(n).is_some())
            .collect();
        on_disk.sort();
        let listed: Vec<String> = info["files"].as_object().unwrap().keys().cloned().collect();
        assert_eq!(listed, on_disk, "{info}");
        for mode in ["kill", "enospc"] {
            let work = root.join("work");
            let mut points = 0;
            for n in 1..=1000 {
                copy_dir(&before, &work);
                let out = run(args, &work, Some(&format!("{mode}@{n}")));
                let snap = snapshot(&work, &queries);
                if out.status.success() {
                    assert_eq!(snap, snap_after, "{name}: a run that exits 0 published");
                    points = n - 1;
                    break;
                }
                match mode {
                    "kill" => assert_eq!(out.status.signal(), Some(9), "{name} @{n}: {out:?}"),
                    _ => {
                        let err = String::from_utf8_lossy(&out.stderr);
                        assert!(
                            err.contains("No space left on device"),
                            "{name} @{n}: {err}"
                        );
                    }
                }
                assert!(
                    snap == snap_before || snap == snap_after,
                    "{name} {mode}@{n}: {snap:?} is neither generation"
                );
                assert_clean(&work);
                assert!(
                    snapshot(&work, &queries) == snap,
                    "{name} {mode}@{n}: cleaning changed the index"
                );
            }
            eprintln!("{name}: {mode} at each of {points} write points");
            assert!(points >= 5, "{name}: only {points} write points exercised");
        }
        before = after;
    }
}
