//! The learned coarse space: default builds reach their recall target on out-of-distribution
//! queries, scores stay exact native inner products, every native width answers exactly, the
//! space is reproducible for a seed, and bad sample queries are clear errors.

mod common;

use mrl_index::build::{SampleQueries, SpaceChoice};
use mrl_index::exact::{batch_top_k, mean_recall};
use mrl_index::ingest::{write_npy_f32, MatrixSource};
use mrl_index::plan::Space;
use mrl_index::progress::NoProgress;
use mrl_index::synth::MatryoshkaLike;
use mrl_index::{BuildError, Filter, Index, IndexBuilder, SearchError, SearchParams, SearchPlan};
use std::path::Path;
use std::process::Command;

const DIM: usize = 256;

/// Items from the weak generator; queries from another distribution: the generator's
/// queries with their energy moved to the last dims (scale rising from 0.3 to 2 along the
/// vector) and a common offset, as a sequence model's user vectors sit apart from a
/// projection's item vectors.
fn ood_set(n: usize, nq: usize, seed: u64) -> (Vec<f32>, Vec<f32>) {
    let gen = MatryoshkaLike::weak(DIM, seed);
    let items = gen.items(n);
    let offset = MatryoshkaLike::with_dim(DIM, seed ^ 0xff).queries(1);
    let mut queries = gen.queries(nq);
    for q in queries.chunks_exact_mut(DIM) {
        for (d, v) in q.iter_mut().enumerate() {
            let t = d as f32 / DIM as f32;
            *v = *v * (0.3 + 1.7 * t * t) + 0.5 * offset[d];
        }
    }
    (items, queries)
}

fn build(items: &[f32], sample: &[f32], dir: &Path, builder: IndexBuilder) -> Index {
    let src = MatrixSource::new(items.to_vec(), DIM).unwrap();
    builder
        .sample_queries(SampleQueries::new(sample.to_vec(), DIM, "sample"))
        .build(&src, None, dir, &NoProgress)
        .unwrap();
    Index::open(dir).unwrap()
}

#[test]
fn default_build_reaches_its_target_on_out_of_distribution_queries() {
    let seed = 20261130;
    let (n, nq, ns) = (20_000, 200, 2_000);
    println!("weak items {n} × {DIM}, out-of-distribution queries, seed {seed}");
    let (items, all) = ood_set(n, nq + ns, seed);
    let (test, sample) = all.split_at(nq * DIM);
    let dir = tempfile::tempdir().unwrap();
    let index = build(&items, sample, &dir.path().join("idx"), IndexBuilder::new());
    assert_eq!(
        index.layout().coarse_space,
        Space::Learned,
        "the native prefix of this set is weak: the build must choose the learned space"
    );
    let full = index.store().bands().len();
    let truth = batch_top_k(index.store(), test, 10, full);
    let found = index
        .search_batch(test, 10, &SearchParams::default(), &Filter::NONE)
        .unwrap();
    let recall = mean_recall(&found, &truth, 10);
    let tuned = index.tuned().expect("tuned");
    println!(
        "default plan {} ef {:?}: recall@10 {recall:.4} on {nq} held-out queries (tuned: {:?} ± {:?})",
        index.default_plan(),
        index.default_ef(),
        tuned.info("recall"),
        tuned.info("recall_se")
    );
    assert!(
        recall >= 0.95,
        "recall@10 {recall} below 0.95 (seed {seed})"
    );
    // Not trivial: the native 64-d prefix alone misses much of the answer.
    let coarse = batch_top_k(index.store(), test, 10, 1);
    let native = mean_recall(&coarse, &truth, 10);
    println!("exact native 64-d top-10 recall against full width = {native:.4}");
    assert!(native < 0.6, "set too easy: 64-d alone gives {native}");
}

fn learned_index(n: usize, seed: u64) -> (tempfile::TempDir, Index, Vec<f32>, Vec<f32>) {
    let (items, all) = ood_set(n, 1_040, seed);
    let (test, sample) = all.split_at(40 * DIM);
    let dir = tempfile::tempdir().unwrap();
    let index = build(
        &items,
        sample,
        &dir.path().join("idx"),
        IndexBuilder::new().threads(1).space(SpaceChoice::Learned),
    );
    (dir, index, items, test.to_vec())
}

#[test]
fn scores_are_exact_native_inner_products() {
    let (_dir, index, items, queries) = learned_index(3_000, 7);
    for q in queries.chunks_exact(DIM) {
        let hits = index.search(q, 10, &SearchParams::default()).unwrap();
        assert_eq!(hits.len(), 10);
        for w in hits.windows(2) {
            assert!(w[0].score >= w[1].score, "hits must be best first");
        }
        for h in &hits {
            let row = &items[h.id as usize * DIM..(h.id as usize + 1) * DIM];
            let exact: f64 = row
                .iter()
                .zip(q)
                .map(|(a, b)| f64::from(*a) * f64::from(*b))
                .sum();
            assert!(
                (f64::from(h.score) - exact).abs() <= 1e-4 * exact.abs().max(1.0),
                "score {} vs exact {exact} for id {}",
                h.score,
                h.id
            );
        }
    }
}

#[test]
fn every_width_answers_as_its_sub_model() {
    let (dir, index, _items, queries) = learned_index(2_000, 9);
    let code_widths = index.layout().code_widths.clone();
    assert_eq!(index.layout().coarse_space, Space::Learned);
    for width in [16usize, 64, 100, 128, 256] {
        // A plan keeping every item is exact at any width: ids and scores equal exact
        // width-d search bitwise.
        let wn = index.layout().native_width_at_least(width).unwrap();
        let stages: Vec<String> = code_widths
            .iter()
            .map(|w| format!("L{w}:{}", index.len()))
            .collect();
        let plan: SearchPlan = format!("{},{wn}:k", stages.join(",")).parse().unwrap();
        let params = SearchParams {
            plan: Some(plan),
            ef: Some(index.len()),
            width: Some(width),
        };
        let mut recall = 0.0;
        for q in queries.chunks_exact(DIM) {
            let exact = index.exact_search(q, 10, width, &Filter::NONE).unwrap();
            let hits = index.search(q, 10, &params).unwrap();
            assert_eq!(
                hits, exact,
                "width {width}: exhaustive plan equals exact search"
            );
            // The index's default plan cut to the width.
            let def = index.search(q, 10, &SearchParams::at_width(width)).unwrap();
            recall += def.iter().filter(|h| exact.contains(h)).count() as f64 / 10.0;
            // Scores are the width-d inner products.
            let h = &def[0];
            let row = index.store().row_of(h.id).unwrap() as usize;
            let mut v = vec![0f32; DIM];
            index.store().read_vector(row, &mut v);
            let s: f64 = v[..width]
                .iter()
                .zip(&q[..width])
                .map(|(a, b)| f64::from(*a) * f64::from(*b))
                .sum();
            assert!((f64::from(h.score) - s).abs() <= 1e-4 * s.abs().max(1.0));
        }
        let recall = recall / (queries.len() / DIM) as f64;
        println!(
            "width {width}: default plan {} recall@10 {recall:.3} against exact {width}-d search",
            index
                .effective_plan(&SearchParams::at_width(width))
                .unwrap()
                .0
        );
        assert!(recall >= 0.8, "width {width}: recall {recall}");
    }
    // The same through the command line.
    let q = dir.path().join("q.npy");
    write_npy_f32(&q, &queries[..DIM], 1, DIM).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_mrl-index"))
        .args(["search", "--index"])
        .arg(dir.path().join("idx"))
        .arg("--queries")
        .arg(&q)
        .args(["--width", "128", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // The command line answers as the library's default search at that width (whose
    // recall against exact 128-d search is checked above over all the queries).
    let library: Vec<u64> = index
        .search(&queries[..DIM], 10, &SearchParams::at_width(128))
        .unwrap()
        .iter()
        .map(|h| h.id)
        .collect();
    let ids: Vec<u64> = line["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(
        ids, library,
        "CLI --width 128 answers as SearchParams::at_width(128)"
    );
    // Widths outside 1..=dim are errors.
    for bad in [0usize, DIM + 1] {
        let err = index
            .search(&queries[..DIM], 10, &SearchParams::at_width(bad))
            .unwrap_err();
        assert!(matches!(err, SearchError::Width { .. }), "{err:?}");
        assert!(err
            .to_string()
            .contains("between 1 and the full dimension 256"));
    }
}

#[test]
fn the_learned_space_is_reproducible_for_a_seed() {
    let (items, all) = ood_set(3_000, 600, 5);
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    for (i, d) in dirs.iter().enumerate() {
        // Two threads for the second build: the fit does not depend on the thread count.
        let threads = if i == 1 { 2 } else { 1 };
        build(
            &items,
            &all,
            &d.path().join("idx"),
            IndexBuilder::new()
                .threads(threads)
                .space(SpaceChoice::Learned)
                .target_recall(None),
        );
    }
    let space_of = |d: &tempfile::TempDir| {
        let idx = d.path().join("idx");
        let name = std::fs::read_dir(&idx)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .find(|n| n.starts_with("space-"))
            .expect("a space file");
        std::fs::read(idx.join(name)).unwrap()
    };
    let a = space_of(&dirs[0]);
    assert_eq!(a, space_of(&dirs[1]), "same seed, other thread count");
    assert_eq!(a, space_of(&dirs[2]), "same seed");
}

#[test]
fn bad_sample_queries_are_clear_errors() {
    let (items, all) = ood_set(500, 400, 3);
    let src = MatrixSource::new(items.clone(), DIM).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("idx");
    let try_build = |rows: Vec<f32>, dim: usize| {
        IndexBuilder::new()
            .sample_queries(SampleQueries::new(rows, dim, "q.npy"))
            .build(&src, None, &out, &NoProgress)
            .unwrap_err()
    };
    let e = try_build(all[..400 * 128].to_vec(), 128);
    assert!(matches!(e, BuildError::Space(_)), "{e:?}");
    assert!(
        e.to_string()
            .contains("q.npy: sample queries have 128 dims, but the items have 256"),
        "{e}"
    );
    let mut nan = all.clone();
    nan[3 * DIM + 17] = f32::NAN;
    let e = try_build(nan, DIM);
    assert!(
        e.to_string()
            .contains("q.npy: sample query row 3, column 17 is NaN"),
        "{e}"
    );
    let e = try_build(all[..20 * DIM].to_vec(), DIM);
    assert!(
        e.to_string()
            .contains("q.npy: 20 sample queries; a query-aware space needs at least 128"),
        "{e}"
    );
    assert!(!out.exists(), "no failed build may create the output");

    // The same through the command line: exit 1, the file named, no panic.
    let bin = env!("CARGO_BIN_EXE_mrl-index");
    let items_path = dir.path().join("items.npy");
    write_npy_f32(&items_path, &items, 500, DIM).unwrap();
    let q128 = dir.path().join("q128.npy");
    write_npy_f32(&q128, &all[..400 * 128], 400, 128).unwrap();
    let few = dir.path().join("few.npy");
    write_npy_f32(&few, &all[..20 * DIM], 20, DIM).unwrap();
    let good = dir.path().join("good.npy");
    write_npy_f32(&good, &all, 400, DIM).unwrap();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["--sample-queries".into(), q128.display().to_string()],
            "sample queries have 128 dims, but the items have 256",
        ),
        (
            vec!["--sample-queries".into(), few.display().to_string()],
            "20 sample queries; a query-aware space needs at least 128",
        ),
        (
            vec!["--target-recall".into(), "1.5".into()],
            "invalid parameter target-recall = 1.5",
        ),
        (
            vec!["--code-dim".into(), "0".into()],
            "invalid parameter code-dim = 0",
        ),
        (
            vec!["--code-dim".into(), "300".into()],
            "must be between 1 and the full dimension 256",
        ),
        (
            vec!["--space".into(), "both".into()],
            "invalid value 'both'",
        ),
        (
            vec![
                "--sample-queries".into(),
                dir.path().join("nope.npy").display().to_string(),
            ],
            "nope.npy",
        ),
    ];
    for (extra, needle) in cases {
        let o = Command::new(bin)
            .args(["build", "--input"])
            .arg(&items_path)
            .arg("--out")
            .arg(&out)
            .args(&extra)
            .arg("--quiet")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr);
        let code = o.status.code();
        assert!(
            code == Some(1) || code == Some(2),
            "{extra:?}: exit {code:?}, {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{extra:?}: {stderr}");
        assert!(stderr.contains(needle), "{extra:?}: {stderr}");
        assert!(
            !out.exists(),
            "{extra:?}: no failed build may create the output"
        );
    }
    // And a good one works, learning the space from them.
    let o = Command::new(bin)
        .args(["build", "--input"])
        .arg(&items_path)
        .arg("--out")
        .arg(&out)
        .arg("--sample-queries")
        .arg(&good)
        .args(["--space", "learned", "--quiet"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("coarse space: learned"), "{stdout}");
    let info = Command::new(bin)
        .args(["info", "--index"])
        .arg(&out)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&info.stdout);
    assert!(
        text.contains("coarse space   learned (query-aware)"),
        "{text}"
    );
    assert!(text.contains("tuned          recall@10"), "{text}");
    // A plan in the wrong space is a clear error.
    let index = Index::open(&out).unwrap();
    let plan: SearchPlan = "64:100,256:k".parse().unwrap();
    let err = index
        .search(&all[..DIM], 10, &SearchParams::with_plan(plan))
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("the first stage must be the coarse graph's width L"),
        "{err}"
    );
}
