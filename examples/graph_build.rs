//! Build seconds and coarse recall of the graph builders (native, `hnsw_rs`) on the same
//! vectors, same run: each graph is searched by the index's own `search_graph`, and its
//! top-10 at several ef is compared with the exact top-10 by inner product on the same
//! vectors. Also reports rows scored per query (the coarse stage's cost).
//!
//! ```sh
//! cargo run --release --example graph_build -- --n 100000 --nq 1000 --builders native,hnsw_rs
//! cargo run --release --example graph_build -- --n 1000000 --builders native --ef-construction 200,100,64
//! # on bench-data files (their first --dim columns):
//! cargo run --release --example graph_build -- --items d/items.npy --queries d/queries.npy
//! ```
//!
//! Options (defaults): `--n 100000 --nq 1000 --dim 64 --m 16 --ef-construction 200
//! --efs 16,64,256 --builders native,hnsw_rs --threads 2 --kind strong --seed 42
//! --prune nearest --scoring sq8` (`heuristic` re-selects full lists as hnswlib does; `exact`
//! scores with f32 rather than 8-bit codes). Generated data:
//! `MatryoshkaLike` of width `--dim` (for the strong kind distributed as the `--dim`-prefix of
//! a 1024-d `bench-data` set).

use mrl_index::candidate::Candidate;
use mrl_index::exact::rows_top_k;
use mrl_index::graph::build::{build_graph, BuildInfo, GraphBuilder, GraphParams, MAX_LAYER};
use mrl_index::graph::insert::{build_native, NativeOptions, Prune, Scoring};
use mrl_index::graph::search::{search_graph, GraphScratch, MatrixScorer};
use mrl_index::ingest::open_vectors;
use mrl_index::synth::MatryoshkaLike;
use rayon::prelude::*;
use std::collections::HashMap;
use std::time::Instant;

fn list(s: &str) -> Vec<usize> {
    s.split(',')
        .map(|x| x.trim().parse().expect("a number"))
        .collect()
}

/// The first `dim` columns of every row of a `.npy`/`.fvecs` file.
fn prefixes(path: &str, dim: usize, limit: usize) -> Vec<f32> {
    let src = open_vectors(path.as_ref()).expect("readable vectors");
    let n = src.len().min(limit);
    let mut row = vec![0f32; src.dim()];
    let mut out = Vec::with_capacity(n * dim);
    for r in 0..n {
        src.read_row(r, &mut row).expect("row");
        out.extend_from_slice(&row[..dim]);
    }
    out
}

/// CPU seconds (user and system) used by this process so far, from `/proc/self/stat`
/// (0 where it cannot be read): on a shared machine the build's own CPU time is steadier
/// than its wall time.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the line, 11 and 12 after the name; 100 Hz.
    (ticks(11) + ticks(12)) / 100.0
}

/// Mean recall@10 and rows scored per query at `ef`.
fn coarse_recall(
    graph: &mrl_index::graph::CoarseGraph,
    items: &[f32],
    queries: &[f32],
    dim: usize,
    truth: &[Vec<Candidate>],
    ef: usize,
) -> (f64, f64) {
    let (hits, scored) = queries
        .par_chunks_exact(dim)
        .zip(truth)
        .map_init(
            || (GraphScratch::default(), Vec::new()),
            |(scratch, out), (q, t)| {
                let scorer = MatrixScorer::new(items, dim, q);
                search_graph(graph, &scorer, ef, scratch, |_| true, out);
                out.sort_unstable_by(|a, b| b.cmp(a));
                let found = out
                    .iter()
                    .take(10)
                    .filter(|c| t.iter().any(|x| x.row == c.row))
                    .count();
                (found, scratch.scored)
            },
        )
        .reduce(|| (0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
    let nq = truth.len() as f64;
    (hits as f64 / (10.0 * nq), scored as f64 / nq)
}

fn main() {
    let mut opts: HashMap<String, String> = HashMap::new();
    let args: Vec<String> = std::env::args().skip(1).collect();
    for pair in args.chunks(2) {
        let key = pair[0].trim_start_matches("--").to_string();
        opts.insert(key, pair.get(1).cloned().unwrap_or_default());
    }
    let get = |k: &str, d: &str| opts.get(k).cloned().unwrap_or_else(|| d.to_string());
    let n: usize = get("n", "100000").parse().expect("--n");
    let nq: usize = get("nq", "1000").parse().expect("--nq");
    let dim: usize = get("dim", "64").parse().expect("--dim");
    let m: usize = get("m", "16").parse().expect("--m");
    let seed: u64 = get("seed", "42").parse().expect("--seed");
    let threads: usize = get("threads", "2").parse().expect("--threads");
    let efcs = list(&get("ef-construction", "200"));
    let efs = list(&get("efs", "16,64,256"));
    let prune = match get("prune", "nearest").as_str() {
        "heuristic" => Prune::Heuristic,
        _ => Prune::Nearest,
    };
    let scoring = match get("scoring", "sq8").as_str() {
        "exact" => Scoring::Exact,
        _ => Scoring::Sq8,
    };
    let options = NativeOptions { prune, scoring };
    let builders: Vec<String> = get("builders", "native,hnsw_rs")
        .split(',')
        .map(str::to_string)
        .collect();
    let pool = mrl_index::threads::pool(threads).expect("pool");
    pool.install(|| {
        let t = Instant::now();
        let (items, queries, what) = match (opts.get("items"), opts.get("queries")) {
            (Some(i), Some(q)) => (
                prefixes(i, dim, n),
                prefixes(q, dim, nq),
                format!("{i} (first {dim} dims)"),
            ),
            _ => {
                let kind = get("kind", "strong");
                let gen = if kind == "weak" {
                    MatryoshkaLike::weak(dim, seed)
                } else {
                    MatryoshkaLike::with_dim(dim, seed)
                };
                (
                    gen.items(n),
                    gen.queries(nq),
                    format!("generated {kind} set, seed {seed}"),
                )
            }
        };
        let (n, nq) = (items.len() / dim, queries.len() / dim);
        println!(
            "{what}: {n} items × {dim}, {nq} queries ({:.1}s)",
            t.elapsed().as_secs_f64()
        );
        let t = Instant::now();
        let truth = rows_top_k(&items, dim, &queries, 10);
        println!(
            "exact top-10: {:.1}s; {threads} threads, m {m}, native {options:?}",
            t.elapsed().as_secs_f64()
        );
        print!(
            "{:>8} {:>6} {:>9} {:>7}",
            "builder", "efC", "build s", "cpu s"
        );
        for ef in &efs {
            print!(" {:>9} {:>8}", format!("R@10 ef{ef}"), "scored");
        }
        println!();
        for builder in &builders {
            for &efc in &efcs {
                let params = GraphParams {
                    m,
                    ef_construction: efc,
                    seed,
                    builder: if builder == "hnsw_rs" {
                        GraphBuilder::HnswRs
                    } else {
                        GraphBuilder::Native
                    },
                    ..Default::default()
                };
                let t = Instant::now();
                let cpu0 = cpu_seconds();
                let exported = match params.builder {
                    GraphBuilder::Native => build_native(&items, dim, &params, &options, &|_| {}),
                    GraphBuilder::HnswRs => build_graph(&items, dim, &params, &|_| {}),
                };
                let secs = t.elapsed().as_secs_f64();
                let cpu = cpu_seconds() - cpu0;
                let info = BuildInfo {
                    crate_version: env!("CARGO_PKG_VERSION").into(),
                    builder: params.builder.label(),
                    m: m as u32,
                    ef_construction: efc as u32,
                    max_layer: MAX_LAYER as u32,
                    seed,
                    threads: threads as u32,
                    build_seconds: secs,
                };
                let graph = exported.to_coarse_graph(&info);
                drop(exported);
                print!("{builder:>8} {efc:>6} {secs:>9.1} {cpu:>7.1}");
                for &ef in &efs {
                    let (r, scored) = coarse_recall(&graph, &items, &queries, dim, &truth, ef);
                    print!(" {r:>9.4} {scored:>8.0}");
                }
                println!();
            }
        }
    });
}
