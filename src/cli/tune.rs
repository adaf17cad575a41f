//! `mrl-index tune`.

use clap::Args;
use mrl_index::ingest::VectorSource;
use mrl_index::tune::{tune, TuneOptions};
use mrl_index::{Error, SearchError};
use std::path::PathBuf;

/// Arguments of `tune`.
#[derive(Debug, Args)]
pub struct TuneArgs {
    /// Index directory.
    #[arg(long)]
    index: PathBuf,
    #[command(flatten)]
    open: super::OpenArgs,
    /// Sample queries (.npy or .fvecs) representative of the traffic, e.g. validation users.
    #[arg(long)]
    queries: PathBuf,
    /// Results per query the recall target refers to.
    #[arg(short = 'k', long = "k", default_value_t = 10)]
    k: usize,
    /// Mean recall@k against exact full-width search that the plan must reach (with a margin
    /// of two standard errors of the mean over the queries).
    #[arg(long, default_value_t = 0.95)]
    target_recall: f64,
    /// At most this many queries are used.
    #[arg(long, default_value_t = 2000)]
    max_queries: usize,
    /// Publish the chosen plan as the index's default (a new MANIFEST naming the same files).
    #[arg(long)]
    write: bool,
}

/// Runs `tune`.
pub fn run(a: TuneArgs) -> Result<(), Error> {
    let (index, queries) = super::open_with_queries(&a.index, &a.queries, &a.open)?;
    if a.k == 0 {
        return Err(SearchError::ZeroK.into());
    }
    if !(a.target_recall > 0.0 && a.target_recall <= 1.0) {
        return Err(Error::Usage(format!(
            "--target-recall {}: must be in (0, 1]",
            a.target_recall
        )));
    }
    let nq = queries.len().min(a.max_queries);
    let q = &queries.as_slice()[..nq * index.dim()];
    let result = tune(&index, q, &TuneOptions::new(a.k, a.target_recall))?;
    println!(
        "{nq} queries, recall@{} against exact full-width search, 1 thread",
        a.k
    );
    println!(
        "{:<48} {:>7} {:>9} {:>8} {:>10} {:>12}",
        "plan", "ef", "recall", "± se", "q/s", "mult-adds"
    );
    for (i, r) in result.rows.iter().enumerate() {
        let mark = if i == result.chosen { " <" } else { "" };
        println!(
            "{:<48} {:>7} {:>9.4} {:>8.4} {:>10.0} {:>12.0}{mark}",
            r.plan.to_string(),
            r.ef,
            r.recall,
            r.recall_se,
            r.qps,
            r.mult_adds
        );
    }
    let chosen = result.best();
    if !result.target_met {
        println!(
            "no plan cleared recall {} by two standard errors; the most accurate ({:.4}) is marked",
            a.target_recall, chosen.recall
        );
    }
    if a.write {
        let source = format!("queries of {}", a.queries.display());
        let plan = result.default_plan(a.k, a.target_recall, &source);
        index.publish_default_plan(&plan)?;
        println!(
            "published in {}/MANIFEST: plan={} ef={}",
            a.index.display(),
            chosen.plan,
            chosen.ef
        );
    }
    Ok(())
}
