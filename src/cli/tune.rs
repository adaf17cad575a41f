//! `mrl-index tune`.

use clap::Args;
use mrl_index::ingest::VectorSource;
use mrl_index::tune::{tune, write_default_plan};
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
    /// Mean recall@k against exact full-width search that the plan must reach.
    #[arg(long, default_value_t = 0.99)]
    target_recall: f64,
    /// At most this many queries are used.
    #[arg(long, default_value_t = 2000)]
    max_queries: usize,
    /// Store the chosen plan in the index directory (DEFAULT_PLAN) as its default.
    #[arg(long)]
    write: bool,
}

/// Runs `tune`.
pub fn run(a: TuneArgs) -> Result<(), Error> {
    let (index, queries) = super::open_with_queries(&a.index, &a.queries, &a.open)?;
    if a.k == 0 {
        return Err(SearchError::ZeroK.into());
    }
    let nq = queries.len().min(a.max_queries);
    let q = &queries.as_slice()[..nq * index.dim()];
    let result = tune(&index, q, a.k, a.target_recall)?;
    println!(
        "{nq} queries, recall@{} against exact full-width search, 1 thread",
        a.k
    );
    println!(
        "{:<48} {:>6} {:>9} {:>10} {:>12}",
        "plan", "ef", "recall", "q/s", "mult-adds"
    );
    for (i, r) in result.rows.iter().enumerate() {
        let mark = if i == result.chosen { " <" } else { "" };
        println!(
            "{:<48} {:>6} {:>9.4} {:>10.0} {:>12.0}{mark}",
            r.plan.to_string(),
            r.ef,
            r.recall,
            r.qps,
            r.mult_adds
        );
    }
    let chosen = &result.rows[result.chosen];
    if !result.target_met {
        println!(
            "no plan reached recall {}; the best ({:.4}) is marked",
            a.target_recall, chosen.recall
        );
    }
    if a.write {
        let note = format!(
            "chosen by `mrl-index tune` on {nq} queries from {}: recall@{} {:.4} (target {}), {:.0} q/s on 1 thread",
            a.queries.display(),
            a.k,
            chosen.recall,
            a.target_recall,
            chosen.qps
        );
        write_default_plan(&a.index, &chosen.plan, chosen.ef, &note)
            .map_err(|e| Error::Other(format!("{}: {e}", a.index.display())))?;
        println!(
            "wrote {}/DEFAULT_PLAN: plan={} ef={}",
            a.index.display(),
            chosen.plan,
            chosen.ef
        );
    }
    Ok(())
}
