//! `mrl-index search`.

use super::{parse_list, with_threads};
use clap::Args;
use mrl_index::{Error, Filter, SearchParams, SearchPlan};
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::time::Instant;

/// Arguments of `search`.
#[derive(Debug, Args)]
pub struct SearchArgs {
    /// Index directory.
    #[arg(long)]
    index: PathBuf,
    #[command(flatten)]
    open: super::OpenArgs,
    /// Query vectors (.npy or .fvecs), one per row, at the index's full dimension.
    #[arg(long)]
    queries: PathBuf,
    /// Results per query.
    #[arg(short = 'k', long = "k", default_value_t = 10)]
    k: usize,
    /// Cascade plan, e.g. 64:1000,128:300,256:100,512:30,1024:k [default: the index's].
    #[arg(long)]
    plan: Option<String>,
    /// Beam width of the coarse graph search [default: the coarse stage's keep].
    #[arg(long)]
    ef: Option<usize>,
    /// Answer as the W-d Matryoshka sub-model: rank by the inner product of the first W
    /// dims (1 to the full dimension) [default: the full width].
    #[arg(long)]
    width: Option<usize>,
    /// Ids never to return, comma-separated (applies to every query).
    #[arg(long)]
    exclude: Option<String>,
    /// Threads (0: all cores).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// One JSON object per query per line: {"query": i, "ids": [...], "scores": [...]}.
    #[arg(long)]
    json: bool,
}

/// Runs `search`.
pub fn run(a: SearchArgs) -> Result<(), Error> {
    let (index, queries) = super::open_with_queries(&a.index, &a.queries, &a.open)?;
    let exclude: Vec<u64> = match &a.exclude {
        Some(e) => parse_list(e, "--exclude")?,
        None => Vec::new(),
    };
    let plan = match &a.plan {
        Some(p) => Some(p.parse::<SearchPlan>()?),
        None => None,
    };
    let params = SearchParams {
        plan,
        ef: a.ef,
        width: a.width,
    };
    let t0 = Instant::now();
    let results = with_threads(a.threads, || {
        index.search_batch(queries.as_slice(), a.k, &params, &Filter::deny(&exclude))
    })??;
    let secs = t0.elapsed().as_secs_f64();
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let io = |source| Error::Io {
        path: "-".into(),
        source,
    };
    for (i, hits) in results.iter().enumerate() {
        if a.json {
            let v = serde_json::json!({
                "query": i,
                "ids": hits.iter().map(|h| h.id).collect::<Vec<_>>(),
                "scores": hits.iter().map(|h| h.score).collect::<Vec<_>>(),
            });
            writeln!(out, "{v}").map_err(io)?;
        } else {
            let line: Vec<String> = hits
                .iter()
                .map(|h| format!("{}:{:.4}", h.id, h.score))
                .collect();
            writeln!(out, "query {i}: {}", line.join(" ")).map_err(io)?;
        }
    }
    out.flush().map_err(io)?;
    if !a.json {
        let (plan, ef) = index.effective_plan(&params)?;
        eprintln!(
            "{} queries in {:.3}s ({:.0} queries/s), plan {plan}{}",
            results.len(),
            secs,
            results.len() as f64 / secs.max(1e-9),
            ef.map(|e| format!(" ef {e}")).unwrap_or_default()
        );
    }
    Ok(())
}
