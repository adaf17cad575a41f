//! `mrl-index demo`: the main job on built-in data.

use super::bars::Bars;
use super::with_threads;
use clap::Args;
use mrl_index::exact::{batch_top_k, mean_recall};
use mrl_index::ingest::MatrixSource;
use mrl_index::synth::MatryoshkaLike;
use mrl_index::{Error, Filter, Hit, Index, IndexBuilder, Scratch, SearchParams};
use std::path::PathBuf;
use std::time::Instant;

/// Arguments of `demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Items to generate.
    #[arg(long, default_value_t = 50_000)]
    items: usize,
    /// Queries to run.
    #[arg(long, default_value_t = 500)]
    queries: usize,
    /// Full dimension.
    #[arg(long, default_value_t = 1024)]
    dim: usize,
    /// Seed of the generated data.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Keep the index in this directory instead of a temporary one.
    #[arg(long)]
    index_dir: Option<PathBuf>,
    /// No progress bars.
    #[arg(long)]
    quiet: bool,
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `demo`.
pub fn run(a: DemoArgs) -> Result<(), Error> {
    let gen = MatryoshkaLike::with_dim(a.dim, a.seed);
    println!(
        "generating {} Matryoshka-like items and {} queries, {} dims (seed {}, decay {}, {} clusters, log-normal norms σ={})",
        a.items, a.queries, a.dim, a.seed, gen.decay, gen.clusters, gen.norm_sigma
    );
    let items = MatrixSource::new(gen.items(a.items), a.dim)?;
    let queries = gen.queries(a.queries);
    let (dir, _guard) = match &a.index_dir {
        Some(d) => (d.clone(), None),
        None => {
            let d = std::env::temp_dir().join(format!("mrl-index-demo-{}", std::process::id()));
            (d.clone(), Some(TempDir(d)))
        }
    };
    let t0 = Instant::now();
    let report =
        IndexBuilder::new()
            .overwrite(true)
            .build(&items, None, &dir, &Bars::new(a.quiet))?;
    println!(
        "built index in {:.1}s ({:.1} MB store, {:.1} MB graph) at {}",
        t0.elapsed().as_secs_f64(),
        report.store_bytes as f64 / 1e6,
        report.graph_bytes as f64 / 1e6,
        dir.display()
    );
    drop(items);
    let index = Index::open(&dir)?;
    let k = 10;
    let full = index.store().bands().len();
    let t = Instant::now();
    let truth = with_threads(0, || batch_top_k(index.store(), &queries, k, full))?;
    let exact_qps = (queries.len() / a.dim) as f64 / t.elapsed().as_secs_f64();

    let params = SearchParams::default();
    let dim = index.dim();
    let nq = queries.len() / dim;
    // One thread, one query at a time, with a reused scratch: the service's hot path.
    let mut scratch = Scratch::new();
    let mut out: Vec<Hit> = Vec::with_capacity(k);
    let mut found = Vec::with_capacity(nq);
    // Warm up: page in the mapped files and size the scratch.
    for q in queries.chunks_exact(dim).take(50) {
        index.search_with(&mut scratch, q, k, &params, &Filter::NONE, &mut out)?;
    }
    let t = Instant::now();
    for q in queries.chunks_exact(dim) {
        index.search_with(&mut scratch, q, k, &params, &Filter::NONE, &mut out)?;
        found.push(out.clone());
    }
    let qps1 = nq as f64 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    let batch = with_threads(0, || {
        index.search_batch(&queries, k, &params, &Filter::NONE)
    })??;
    let qps_all = nq as f64 / t.elapsed().as_secs_f64();
    let recall = mean_recall(&found, &truth, k);
    let recall_batch = mean_recall(&batch, &truth, k);
    println!("plan {}", index.default_plan());
    println!("recall@10 {recall:.4} against exact full-width inner product ({nq} queries)");
    println!(
        "queries/s: {qps1:.0} on 1 thread, {qps_all:.0} on {} threads (exact brute force: {exact_qps:.0} on {} threads)",
        rayon::current_num_threads(),
        rayon::current_num_threads()
    );
    if (recall - recall_batch).abs() > 1e-12 {
        return Err(Error::Other(format!(
            "batch search disagreed with single search: recall {recall_batch} vs {recall}"
        )));
    }
    Ok(())
}
