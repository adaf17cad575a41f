//! `tune` chooses a plan clearing its recall target; publishing it makes it the index's
//! default (in the MANIFEST, tied to the generation); a malformed plan, in the manifest or
//! in a first-format `DEFAULT_PLAN` file, is a clear error at open.

mod common;

use mrl_index::build::SpaceChoice;
use mrl_index::default_plan::DEFAULT_PLAN_FILE;
use mrl_index::exact::{batch_top_k, mean_recall};
use mrl_index::manifest;
use mrl_index::tune::{tune, TuneOptions};
use mrl_index::{Filter, Index, IndexBuilder, IndexError, SearchParams};
use std::process::Command;

#[test]
fn tuned_plan_meets_its_target_and_becomes_the_default() {
    let b = common::build(
        3000,
        200,
        128,
        21,
        IndexBuilder::new().threads(1).target_recall(None),
    );
    let dir = b.dir.path().join("idx");
    let options = TuneOptions::new(10, 0.95);
    let result = tune(&b.index, &b.queries, &options).unwrap();
    assert!(result.target_met);
    let chosen = result.best().clone();
    assert!(chosen.recall - 2.0 * chosen.recall_se >= 0.95, "{chosen:?}");
    // The chosen row is the fastest of those clearing the target.
    for r in &result.rows {
        if r.recall - 2.0 * r.recall_se >= 0.95 {
            assert!(r.qps <= chosen.qps);
        }
    }
    let plan = result.default_plan(10, 0.95, "test queries");
    b.index.publish_default_plan(&plan).unwrap();
    let index = Index::open(&dir).unwrap();
    assert_eq!(index.default_plan(), &chosen.plan);
    assert_eq!(index.default_ef(), Some(chosen.ef));
    assert_eq!(index.tuned().unwrap().info("source"), Some("test queries"));
    let found = index
        .search_batch(&b.queries, 10, &SearchParams::default(), &Filter::NONE)
        .unwrap();
    let truth = batch_top_k(index.store(), &b.queries, 10, index.store().bands().len());
    let recall = mean_recall(&found, &truth, 10);
    assert!(
        (recall - chosen.recall).abs() < 1e-9,
        "default search {recall} vs tuned {}",
        chosen.recall
    );
}

#[test]
fn a_build_tunes_and_publishes_its_default_plan() {
    let b = common::build(3000, 100, 128, 22, IndexBuilder::new().threads(1));
    let tuned = b.index.tuned().expect("a default build tunes its plan");
    assert_eq!(&tuned.plan, b.index.default_plan());
    let recall: f64 = tuned.info("recall").unwrap().parse().unwrap();
    let se: f64 = tuned.info("recall_se").unwrap().parse().unwrap();
    assert!(recall - 2.0 * se >= 0.95, "{tuned:?}");
    assert!(tuned.info("source").unwrap().contains("held-out items"));
}

#[test]
fn malformed_default_plan_is_a_clear_error() {
    let b = common::build(
        500,
        1,
        64,
        3,
        IndexBuilder::new()
            .threads(1)
            .space(SpaceChoice::Native)
            .target_recall(None),
    );
    let dir = b.dir.path().join("idx");
    // A first-format index: its manifest has no plan section, so DEFAULT_PLAN is read.
    let mpath = manifest::manifest_path(&dir);
    let mut m = manifest::decode(&std::fs::read(&mpath).unwrap(), "MANIFEST").unwrap();
    m.plan = None;
    std::fs::write(&mpath, manifest::encode(&m)).unwrap();
    for (text, needle) in [
        (
            "plan=64:100,96:k\n",
            "96 is not one of the index's nested widths",
        ),
        (
            "plan=32:100,64:k\n",
            "first stage must be the coarse graph's width 64",
        ),
        ("# nothing\n", "no plan= line"),
        ("plan=64:k\nspeed=fast\n", "line 2"),
        ("plan=64:k\nef=lots\n", "ef \"lots\" is not a number"),
        ("plan=64:10,L128:k\n", "learned stages"),
    ] {
        // A first-format DEFAULT_PLAN file…
        std::fs::write(dir.join(DEFAULT_PLAN_FILE), text).unwrap();
        let err = Index::open(&dir).unwrap_err();
        assert!(matches!(err, IndexError::Inconsistent { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains("DEFAULT_PLAN") && msg.contains(needle),
            "{text:?}: {msg}"
        );
        std::fs::remove_file(dir.join(DEFAULT_PLAN_FILE)).unwrap();
        // …and the same text in the manifest.
        let mpath = manifest::manifest_path(&dir);
        let original = std::fs::read(&mpath).unwrap();
        let mut m = manifest::decode(&original, "MANIFEST").unwrap();
        m.plan = Some(text.to_string());
        std::fs::write(&mpath, manifest::encode(&m)).unwrap();
        let msg = Index::open(&dir).unwrap_err().to_string();
        assert!(msg.contains("MANIFEST") && msg.contains(needle), "{msg}");
        std::fs::write(&mpath, original).unwrap();
    }
    Index::open(&dir).unwrap();
}

#[test]
fn tune_command_publishes_the_default_plan() {
    let b = common::build(
        2000,
        150,
        128,
        4,
        IndexBuilder::new().threads(1).target_recall(None),
    );
    let dir = b.dir.path().join("idx");
    let q = b.dir.path().join("q.npy");
    mrl_index::ingest::write_npy_f32(&q, &b.queries, 150, 128).unwrap();
    // A stale first-format file must not shadow the published plan.
    std::fs::write(dir.join(DEFAULT_PLAN_FILE), "plan=64:k\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_mrl-index"))
        .args([
            "tune",
            "--index",
            dir.to_str().unwrap(),
            "--queries",
            q.to_str().unwrap(),
            "--target-recall",
            "0.9",
            "--write",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("published"), "{stdout}");
    assert!(!dir.join(DEFAULT_PLAN_FILE).exists());
    let index = Index::open(&dir).unwrap();
    let tuned = index.tuned().expect("published plan");
    assert_eq!(tuned.info("target"), Some("0.9"));
    assert!(index.default_ef().is_some());
}

#[test]
fn a_rebuild_drops_a_stale_first_format_default_plan() {
    // An old tune --write left a plan for coarse width 64; a forced rebuild with another
    // coarse width must still open, with its own plan (the bug of the first format).
    let b = common::build(
        800,
        1,
        128,
        13,
        IndexBuilder::new()
            .threads(1)
            .space(SpaceChoice::Native)
            .target_recall(None),
    );
    let dir = b.dir.path().join("idx");
    std::fs::write(dir.join(DEFAULT_PLAN_FILE), "plan=64:100,128:k\nef=100\n").unwrap();
    let src = mrl_index::ingest::MatrixSource::new(b.items.clone(), 128).unwrap();
    IndexBuilder::new()
        .threads(1)
        .space(SpaceChoice::Native)
        .coarse_dim(32)
        .widths(vec![32, 64, 128])
        .overwrite(true)
        .build(&src, None, &dir, &mrl_index::progress::NoProgress)
        .unwrap();
    assert!(!dir.join(DEFAULT_PLAN_FILE).exists());
    let index = Index::open(&dir).unwrap();
    assert_eq!(index.default_plan().coarse_width(), 32);
}

#[test]
fn tune_and_frontier_refuse_k_zero_with_an_error() {
    // Was: the public tune::tune panicked on k = 0 (only the command line checked).
    let b = common::build(
        500,
        20,
        64,
        23,
        IndexBuilder::new().threads(1).target_recall(None),
    );
    let err = tune(&b.index, &b.queries, &TuneOptions::new(0, 0.9)).unwrap_err();
    assert!(matches!(err, mrl_index::SearchError::ZeroK), "{err}");
    let truth: Vec<Vec<u64>> = vec![Vec::new(); 20];
    let err = mrl_index::tune::frontier(&b.index, &b.queries, &truth, 0, &[0.9]).unwrap_err();
    assert!(matches!(err, mrl_index::SearchError::ZeroK), "{err}");
    // Fewer truth lists than queries: an error, not an index out of bounds.
    let err = mrl_index::tune::frontier(&b.index, &b.queries, &truth[..3], 10, &[0.9]).unwrap_err();
    assert!(
        err.to_string()
            .contains("3 ground-truth lists for 20 queries"),
        "{err}"
    );
}

/// Publishing a plan (what `tune --write` does) takes the writer lock and removes what a
/// crashed writer left: a temporary file and the data files of an unpublished generation.
#[test]
fn publishing_a_plan_removes_a_crashed_writers_leftovers() {
    let b = common::build(
        800,
        1,
        128,
        14,
        IndexBuilder::new()
            .threads(1)
            .space(SpaceChoice::Native)
            .target_recall(None),
    );
    let dir = b.dir.path().join("idx");
    let temp = ".MANIFEST.tmp-999999-0-0badf00d";
    let stale = ["store-00000000000000aa.mrl", "graph-00000000000000aa.mrl"];
    for name in stale.iter().chain([&temp]) {
        std::fs::write(dir.join(name), b"left by a crashed writer").unwrap();
    }
    let plan = mrl_index::default_plan::DefaultPlan::new(b.index.default_plan().clone(), None);
    b.index.publish_default_plan(&plan).unwrap();
    for name in stale.iter().chain([&temp]) {
        assert!(!dir.join(name).exists(), "{name} must be removed");
    }
    let index = Index::open(&dir).unwrap();
    index.verify().unwrap();
    assert_eq!(index.default_plan(), b.index.default_plan());
    assert!(dir.join(mrl_index::lock::LOCK_FILE).is_file());
}
