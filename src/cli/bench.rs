//! `mrl-index bench`, `mrl-index compare` and `mrl-index bench-data`: the benchmark harness
//! on the command line (the work is in [`mrl_index::bench`]).

use clap::Args;
use mrl_index::bench::{self, BenchConfig, Row, SetKind, TruthSource};
use mrl_index::ingest::VectorSource;
use mrl_index::Error;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Arguments of `bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Index directory.
    #[arg(long)]
    index: PathBuf,
    #[command(flatten)]
    open: super::OpenArgs,
    /// Query vectors (.npy or .fvecs) at the index's full dimension.
    #[arg(long)]
    queries: PathBuf,
    /// Results per query in the timed passes.
    #[arg(short = 'k', long = "k", default_value_t = 10)]
    k: usize,
    /// True neighbour ids, .npy of u64 or i64, shape [queries, ≥ k] (≥ 100 for recall@100).
    /// Without it the exact full-width top-100 is computed on all cores and cached next to
    /// the queries as Q.gt100.npy (+ Q.gt100.json), reused while index and queries match.
    #[arg(long)]
    ground_truth: Option<PathBuf>,
    /// Threads of the all-threads measurement and of the ground truth (0: all cores).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Write the rows here: a JSON array, or JSON lines if the name ends in .jsonl.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Write the rows flattened as CSV here.
    #[arg(long)]
    csv: Option<PathBuf>,
    /// Plot recall@10 against one-thread queries/s: X.svg and X.png.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Data set name in the rows [default: the index directory's name].
    #[arg(long)]
    dataset: Option<String>,
    /// Small grids and one timed pass (for CI).
    #[arg(long)]
    quick: bool,
    /// Timed passes per configuration; the best queries/s is kept [default: 3, 1 with --quick].
    #[arg(long)]
    repeats: Option<usize>,
    /// Skip the exact search per width (each query scans every item at every width).
    #[arg(long)]
    no_exact: bool,
    /// Queries of the exact search per width: the first N [default: 1000].
    #[arg(long)]
    exact_queries: Option<usize>,
    /// Compute (or check) the cached ground truth and stop: run it as its own step so the
    /// timed run's resident memory does not include the whole store the exact scan mapped.
    #[arg(long)]
    truth_only: bool,
    /// Wall seconds of the whole build (e.g. measured around `mrl-index build`), recorded
    /// in the graph rows [default: the coarse graph's own build time from the index].
    #[arg(long)]
    build_seconds: Option<f64>,
    /// Coarse keeps of a fixed cascade grid, comma-separated (each run with ef = keep and
    /// 2·keep) [default: no fixed grid — the plans of the recall–speed frontier explored on
    /// the queries, from coarse keeps of 10 up].
    #[arg(long, value_delimiter = ',')]
    keeps: Option<Vec<usize>>,
    /// Beam widths of the coarse-graph family, comma-separated
    /// [default: 10,20,50,100,200,500,1000,2000; 10,50,200 with --quick].
    #[arg(long, value_delimiter = ',')]
    coarse_efs: Option<Vec<usize>>,
    /// Time budget of a configuration's first one-thread pass; slower configurations are
    /// measured on the queries reached (at least 500, 200 with --quick) [default: 30, 10
    /// with --quick].
    #[arg(long)]
    max_pass_seconds: Option<f64>,
    /// Factor by which a fixed cascade grid's keeps shrink per nested width after the coarse
    /// stage [default: 1.4].
    #[arg(long)]
    shrink: Option<f64>,
}

/// Runs `bench`.
pub fn run(a: BenchArgs) -> Result<(), Error> {
    let (index, queries) = super::open_with_queries(&a.index, &a.queries, &a.open)?;
    if queries.is_empty() {
        return Err(Error::Usage(format!(
            "{}: no queries (0 rows)",
            a.queries.display()
        )));
    }
    let dataset = a.dataset.clone().unwrap_or_else(|| {
        a.index
            .canonicalize()
            .ok()
            .and_then(|p| p.file_name().map(|s| s.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "index".into())
    });
    let mut cfg = if a.quick {
        BenchConfig::quick(a.k, &dataset)
    } else {
        BenchConfig::full(a.k, &dataset)
    };
    cfg.threads = a.threads;
    cfg.exact_width = !a.no_exact;
    if let Some(r) = a.repeats {
        cfg.repeats = r.max(1);
    }
    cfg.build_seconds = a.build_seconds;
    if let Some(k) = &a.keeps {
        cfg.cascade_keeps = k.iter().copied().filter(|&v| v > 0).collect();
    }
    if let Some(e) = &a.coarse_efs {
        cfg.coarse_efs = e.iter().copied().filter(|&v| v > 0).collect();
    }
    if let Some(f) = a.shrink {
        if !(f.is_finite() && f >= 1.0) {
            return Err(Error::Usage(format!("--shrink {f}: must be a number ≥ 1")));
        }
        cfg.cascade_shrink = f;
    }
    if let Some(t) = a.max_pass_seconds {
        cfg.max_pass_seconds = t.max(0.0);
    }
    if let Some(e) = a.exact_queries {
        cfg.exact_queries = e.max(1);
    }
    let pool = mrl_index::threads::pool(a.threads)?;
    let t = Instant::now();
    let (truth, source) = pool.install(|| {
        bench::truth::load_or_compute(
            &index,
            queries.as_slice(),
            &a.queries,
            a.ground_truth.as_deref(),
            a.k,
        )
    })?;
    match &source {
        TruthSource::Given(p) => eprintln!("ground truth: {} (given)", p.display()),
        TruthSource::Cached(p) => eprintln!("ground truth: {} (cached)", p.display()),
        TruthSource::Computed(p) => eprintln!(
            "ground truth: exact full-width top-{} computed in {:.1}s on {} threads{}",
            truth.depth(),
            t.elapsed().as_secs_f64(),
            pool.current_num_threads(),
            p.as_ref()
                .map(|p| format!(", cached at {}", p.display()))
                .unwrap_or_default()
        ),
    }
    drop(pool);
    if a.truth_only {
        return Ok(());
    }
    eprintln!(
        "bench: {} items × {} dims, {} queries, k = {}, {} timed pass(es){}",
        index.len(),
        index.dim(),
        truth.n_queries(),
        a.k,
        cfg.repeats,
        if a.quick { ", quick grids" } else { "" }
    );
    eprintln!("{}", header_line());
    let rows = bench::run_bench(&index, queries.as_slice(), &truth, &cfg, &mut |r| {
        eprintln!("{}", row_line(r))
    })?;
    write_outputs(&rows, a.out.as_deref(), a.csv.as_deref(), a.plot.as_deref())
}

fn write_outputs(
    rows: &[Row],
    out: Option<&Path>,
    csv: Option<&Path>,
    plot: Option<&Path>,
) -> Result<(), Error> {
    if let Some(p) = out {
        bench::write_rows_json(p, rows)?;
        eprintln!("wrote {}", p.display());
    }
    if let Some(p) = csv {
        bench::write_rows_csv(p, rows)?;
        eprintln!("wrote {}", p.display());
    }
    if let Some(p) = plot {
        for f in bench::plot_rows(rows, p)? {
            eprintln!("wrote {}", f.display());
        }
    }
    Ok(())
}

fn header_line() -> String {
    format!(
        "{:<13} {:<52} {:>7} {:>7} {:>7} {:>10} {:>10} {:>9} {:>9}",
        "family",
        "configuration",
        "R@1",
        "R@10",
        "R@100",
        "q/s 1thr",
        "q/s all",
        "p99 µs",
        "Mmadd/q"
    )
}

fn row_line(r: &Row) -> String {
    let f = |v: Option<f64>, p: usize| v.map_or("—".to_string(), |x| format!("{x:.p$}"));
    format!(
        "{:<13} {:<52} {:>7} {:>7} {:>7} {:>10} {:>10} {:>9} {:>9}",
        r.family,
        r.label,
        f(r.recall_at_1, 4),
        f(r.recall_at_10, 4),
        f(r.recall_at_100, 4),
        f(r.qps_1_thread, 0),
        f(r.qps_all_threads, 0),
        f(r.p99_us, 0),
        f(r.mult_adds_per_query.map(|m| m / 1e6), 3),
    )
}

/// Arguments of `compare`.
// Wired in src/cli/mod.rs by the `Compare` variant; the allow keeps clippy quiet until then.
#[derive(Debug, Args)]
pub struct CompareArgs {
    /// Row files to merge: JSON arrays or JSON lines, from any system.
    #[arg(long, num_args = 1.., required = true)]
    inputs: Vec<PathBuf>,
    /// Output directory: all.json, all.csv, table.md, recall_qps.svg and recall_qps.png.
    #[arg(long)]
    out: PathBuf,
}

/// Runs `compare`.
pub fn run_compare(a: CompareArgs) -> Result<(), Error> {
    let report = bench::compare(&a.inputs, &a.out)?;
    println!(
        "merged {} rows from {} files: {}",
        report.rows,
        a.inputs.len(),
        report.series.join(", ")
    );
    for f in &report.files {
        println!("wrote {}", f.display());
    }
    let table = std::fs::read_to_string(a.out.join("table.md")).unwrap_or_default();
    print!("{table}");
    Ok(())
}

/// Arguments of `bench-data`.
#[derive(Debug, Args)]
pub struct BenchDataArgs {
    /// `strong` (the default generator: the 64-d prefix holds much of the ranking) or
    /// `weak` (signal spread over all dims, the prefix mostly noise).
    #[arg(long, default_value = "strong")]
    kind: String,
    /// Items.
    #[arg(long, default_value_t = 50_000)]
    n: usize,
    /// Queries.
    #[arg(long, default_value_t = 1000)]
    nq: usize,
    /// Further queries of the same distribution written to sample_queries.npy (for `build
    /// --sample-queries`); none of them is among the evaluated ones.
    #[arg(long, default_value_t = 0)]
    sample: usize,
    /// Full dimension.
    #[arg(long, default_value_t = 1024)]
    dim: usize,
    /// Seed.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Output directory: items.npy, queries.npy, sample_queries.npy with --sample (f32) and
    /// set.json.
    #[arg(long)]
    out: PathBuf,
}

/// Runs `bench-data`.
pub fn run_bench_data(a: BenchDataArgs) -> Result<(), Error> {
    let kind: SetKind = a.kind.parse()?;
    let t = Instant::now();
    let r = bench::write_set(kind, a.n, a.nq, a.sample, a.dim, a.seed, &a.out)?;
    println!(
        "{} set: {} items, {} queries, {} dims, seed {} ({:.1}s)",
        kind.name(),
        r.n,
        r.nq,
        r.dim,
        r.seed,
        t.elapsed().as_secs_f64()
    );
    println!("generator: {}", r.generator);
    println!("wrote {}", r.items_path.display());
    println!("wrote {}", r.queries_path.display());
    if let Some(p) = &r.sample_path {
        println!("wrote {}", p.display());
    }
    println!(
        "share of the full-width top-10 in the exact {}-d top-K ({} queries):",
        r.prefix, r.share_queries
    );
    for s in &r.shares {
        println!("  K = {:>6}: {:.4}", s.k, s.share);
    }
    Ok(())
}
