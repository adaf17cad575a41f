//! `mrl-index build`.

use super::bars::Bars;
use super::parse_list;
use clap::Args;
use mrl_index::build::{SampleQueries, SpaceChoice, DEFAULT_TARGET_RECALL};
use mrl_index::graph::build::CoarseMetric;
use mrl_index::{ingest, Error, IndexBuilder};
use std::path::PathBuf;
use std::time::Instant;

/// Arguments of `build`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Item vectors: .npy (f32, f16 or f64, 2-d, C order) or .fvecs.
    #[arg(long)]
    input: PathBuf,
    /// External ids, one per item: .npy of u64 or i64 (default: row numbers).
    #[arg(long)]
    ids: Option<PathBuf>,
    /// Output index directory (created if missing).
    #[arg(long)]
    out: PathBuf,
    /// Nested widths (band ends), comma-separated, ending at the full dimension
    /// [default: powers of two from --coarse-dim, then the full dimension].
    #[arg(long)]
    widths: Option<String>,
    /// Width of the prefix the coarse graph is built on (one of the widths).
    #[arg(long, default_value_t = 64)]
    coarse_dim: usize,
    /// HNSW M: neighbours per node on upper layers (2·M on layer 0), 2..=256.
    #[arg(long, default_value_t = 16)]
    m: usize,
    /// HNSW efConstruction.
    #[arg(long, default_value_t = 200)]
    ef_construction: usize,
    /// Threads (0: all cores). With 1, builds are bit-reproducible for a seed.
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Seed of the insertion order.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// How the coarse graph chooses neighbours while building: `ip` (inner-product
    /// dissimilarity) or `l2-reduced` (L2 in the MIPS→L2 reduced space).
    #[arg(long, default_value = "ip", value_parser = ["ip", "l2-reduced"])]
    coarse_metric: String,
    /// Sample queries of the traffic the index will serve (.npy or .fvecs, full width; e.g.
    /// `mrl-index encode-queries --split valid` of users you do not evaluate on): a fifth (at
    /// most 1,000) is held out to choose the coarse space and tune the default plan, the rest
    /// fits the query-aware coarse space. Without them the build learns from the items and
    /// tunes on held-out items.
    #[arg(long)]
    sample_queries: Option<PathBuf>,
    /// Coarse space: `auto` (learned where it needs at most half the native coarse depth on
    /// the held-out queries), `native` (the prefix itself) or `learned`.
    #[arg(long, default_value = "auto", value_parser = ["auto", "native", "learned"])]
    space: String,
    /// Dimensions of the learned code [default: an eighth of the full width, at most 128].
    #[arg(long)]
    code_dim: Option<usize>,
    /// Mean recall@10 the default plan must reach on the held-out queries.
    #[arg(long, default_value_t = DEFAULT_TARGET_RECALL)]
    target_recall: f64,
    /// Do not tune a default plan (the index then uses the untuned default of its layout).
    #[arg(long)]
    no_tune: bool,
    /// Replace an index already in --out.
    #[arg(long)]
    force: bool,
    /// No progress bars.
    #[arg(long)]
    quiet: bool,
}

/// Runs `build`.
pub fn run(a: BuildArgs) -> Result<(), Error> {
    let t0 = Instant::now();
    let source = ingest::open_vectors(&a.input)?;
    let ids = match &a.ids {
        Some(p) => Some(ingest::read_ids(p, source.len())?),
        None => None,
    };
    let mut builder = IndexBuilder::new()
        .coarse_dim(a.coarse_dim)
        .m(a.m)
        .ef_construction(a.ef_construction)
        .threads(a.threads)
        .seed(a.seed)
        .overwrite(a.force)
        .coarse_metric(if a.coarse_metric == "l2-reduced" {
            CoarseMetric::ReducedL2
        } else {
            CoarseMetric::InnerProduct
        });
    if let Some(w) = &a.widths {
        builder = builder.widths(parse_list(w, "--widths")?);
    }
    builder = builder
        .space(match a.space.as_str() {
            "native" => SpaceChoice::Native,
            "learned" => SpaceChoice::Learned,
            _ => SpaceChoice::Auto,
        })
        .target_recall((!a.no_tune).then_some(a.target_recall));
    if let Some(d) = a.code_dim {
        builder = builder.code_dim(d);
    }
    if let Some(p) = &a.sample_queries {
        let q = ingest::open_vectors(p)?;
        builder = builder.sample_queries(SampleQueries::from_source(q.as_ref())?);
    }
    let report = builder.build(source.as_ref(), ids.as_deref(), &a.out, &Bars::new(a.quiet))?;
    println!(
        "built {} items × {} dims (widths {:?}) into {} in {:.1}s: store {:.1} MB ({:.1}s), graph {:.1} MB with {} layers ({:.1}s)",
        report.n_items,
        report.dim,
        report.widths,
        a.out.display(),
        t0.elapsed().as_secs_f64(),
        report.store_bytes as f64 / 1e6,
        report.store_seconds,
        report.graph_bytes as f64 / 1e6,
        report.graph_layers,
        report.graph_seconds,
    );
    if let Some(c) = &report.coverage {
        println!(
            "coarse space: {} (the full-width top-10 needs depth {} natively, {} in the learned code, on {} held-out queries × {} items)",
            report.space.name(),
            c.native_depth,
            c.learned_depth,
            c.queries,
            c.items
        );
    } else {
        println!("coarse space: {}", report.space.name());
    }
    if report.space_bytes > 0 {
        println!(
            "learned space {:.1} MB ({:.1}s)",
            report.space_bytes as f64 / 1e6,
            report.space_seconds
        );
    }
    if let Some(t) = &report.tuned {
        println!(
            "default plan {} ef {} — recall@10 {} ± {} on {} {} ({} q/s, 1 thread), tuned in {:.1}s",
            t.plan,
            t.ef.map_or("-".into(), |e| e.to_string()),
            t.info("recall").unwrap_or("?"),
            t.info("recall_se").unwrap_or("?"),
            t.info("queries").unwrap_or("?"),
            t.info("source").unwrap_or("queries"),
            t.info("qps").unwrap_or("?"),
            report.tune_seconds
        );
    }
    Ok(())
}
