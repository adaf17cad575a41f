//! `tune` chooses a plan meeting its recall target; `DEFAULT_PLAN` makes it the index's
//! default; a malformed `DEFAULT_PLAN` is a clear error at open.

mod common;

use mrl_index::exact::{batch_top_k, mean_recall};
use mrl_index::tune::{tune, write_default_plan, DEFAULT_PLAN_FILE};
use mrl_index::{Filter, Index, IndexBuilder, IndexError, SearchParams};
use std::process::Command;

#[test]
fn tuned_plan_meets_its_target_and_becomes_the_default() {
    let b = common::build(3000, 60, 128, 21, IndexBuilder::new().threads(1));
    let dir = b.dir.path().join("idx");
    let result = tune(&b.index, &b.queries, 10, 0.95).unwrap();
    assert!(result.target_met);
    let chosen = &result.rows[result.chosen];
    assert!(chosen.recall >= 0.95);
    // The chosen row is the fastest of those meeting the target.
    for r in &result.rows {
        if r.recall >= 0.95 {
            assert!(r.qps <= chosen.qps);
        }
    }
    write_default_plan(&dir, &chosen.plan, chosen.ef, "test").unwrap();
    let index = Index::open(&dir).unwrap();
    assert_eq!(index.default_plan(), &chosen.plan);
    assert_eq!(index.default_ef(), Some(chosen.ef));
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
fn malformed_default_plan_is_a_clear_error() {
    let b = common::build(500, 1, 64, 3, IndexBuilder::new().threads(1));
    let dir = b.dir.path().join("idx");
    for (text, needle) in [
        (
            "plan=64:100,96:k\n",
            "96 is not one of the index's nested widths",
        ),
        (
            "plan=32:100,64:k\n",
            "first stage must be the coarse width 64",
        ),
        ("# nothing\n", "no plan= line"),
        ("plan=64:k\nspeed=fast\n", "line 2"),
        ("plan=64:k\nef=lots\n", "ef \"lots\" is not a number"),
    ] {
        std::fs::write(dir.join(DEFAULT_PLAN_FILE), text).unwrap();
        let err = Index::open(&dir).unwrap_err();
        assert!(matches!(err, IndexError::Inconsistent { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains("DEFAULT_PLAN") && msg.contains(needle),
            "{text:?}: {msg}"
        );
    }
}

#[test]
fn tune_command_writes_the_default_plan() {
    let b = common::build(2000, 40, 128, 4, IndexBuilder::new().threads(1));
    let dir = b.dir.path().join("idx");
    let q = b.dir.path().join("q.npy");
    mrl_index::ingest::write_npy_f32(&q, &b.queries, 40, 128).unwrap();
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
    assert!(stdout.contains("wrote"), "{stdout}");
    let text = std::fs::read_to_string(dir.join(DEFAULT_PLAN_FILE)).unwrap();
    assert!(text.starts_with("# chosen by `mrl-index tune`"));
    let index = Index::open(&dir).unwrap();
    assert!(index.default_ef().is_some());
}
