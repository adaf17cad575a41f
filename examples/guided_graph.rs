//! The query-guided graph (RoarGraph) against the native HNSW graph when queries come from
//! another distribution than the items: coarse recall@10 against rows scored per query,
//! both graphs searched by the index's own `search_graph`, same run.
//!
//! ```sh
//! cargo run --release --example guided_graph -- [--n 100000] [--train 20000] [--test 1000]
//!     [--dim 64] [--shift 1.0] [--threads 2] [--efs 16,32,64,128,256] [--k 100]
//! ```
//!
//! Items: `MatryoshkaLike` of width `--dim`, seed 42. Out-of-distribution queries: drawn
//! around other cluster centres (the same generator with seed 4242), then mapped by
//! `T = I + shift · G / sqrt(dim)` with `G` a fixed Gaussian matrix (seed 7), as a query
//! encoder would map into the item space imperfectly. Sample (training) queries and test
//! queries are disjoint draws of that distribution; in-distribution test queries (the item
//! generator's own queries) are measured too.

use mrl_index::candidate::Candidate;
use mrl_index::exact::rows_top_k;
use mrl_index::graph::build::{build_graph, BuildInfo, ExportedGraph, GraphParams, MAX_LAYER};
use mrl_index::graph::guided::{build_query_guided, GuidedParams};
use mrl_index::graph::search::{search_graph, GraphScratch, MatrixScorer};
use mrl_index::graph::CoarseGraph;
use mrl_index::synth::MatryoshkaLike;
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};
use rayon::prelude::*;
use std::collections::HashMap;
use std::time::Instant;

/// Mean recall@10 and rows scored per query at `ef`.
fn recall(
    graph: &CoarseGraph,
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

/// Nodes reachable from the entry point on layer 0.
fn reachable(graph: &CoarseGraph) -> usize {
    let mut seen = vec![false; graph.len()];
    let mut stack = vec![graph.meta().entry_point];
    seen[stack[0] as usize] = true;
    let mut count = 1;
    while let Some(x) = stack.pop() {
        for &nb in graph.layer0_neighbours(x) {
            if nb != mrl_index::graph::NO_NEIGHBOUR && !seen[nb as usize] {
                seen[nb as usize] = true;
                count += 1;
                stack.push(nb);
            }
        }
    }
    count
}

fn to_graph(g: &ExportedGraph, builder: &str) -> CoarseGraph {
    g.to_coarse_graph(&BuildInfo {
        crate_version: env!("CARGO_PKG_VERSION").into(),
        builder: builder.into(),
        m: g.meta.m,
        ef_construction: 0,
        max_layer: MAX_LAYER as u32,
        seed: 42,
        threads: 0,
        build_seconds: 0.0,
    })
}

fn main() {
    let mut opts: HashMap<String, String> = HashMap::new();
    let args: Vec<String> = std::env::args().skip(1).collect();
    for pair in args.chunks(2) {
        let value = pair.get(1).cloned().unwrap_or_default();
        opts.insert(pair[0].trim_start_matches("--").to_string(), value);
    }
    let get = |k: &str, d: &str| opts.get(k).cloned().unwrap_or_else(|| d.to_string());
    let n: usize = get("n", "100000").parse().expect("--n");
    let n_train: usize = get("train", "20000").parse().expect("--train");
    let n_test: usize = get("test", "1000").parse().expect("--test");
    let dim: usize = get("dim", "64").parse().expect("--dim");
    let shift: f32 = get("shift", "1.0").parse().expect("--shift");
    let threads: usize = get("threads", "2").parse().expect("--threads");
    let k: usize = get("k", "100").parse().expect("--k");
    let efc: usize = get("ef-construction", "200")
        .parse()
        .expect("--ef-construction");
    let efs: Vec<usize> = get("efs", "16,32,64,128,256")
        .split(',')
        .map(|x| x.parse().expect("--efs"))
        .collect();
    let pool = mrl_index::threads::pool(threads).expect("pool");
    pool.install(|| {
        let gen = MatryoshkaLike::with_dim(dim, 42);
        let items = gen.items(n);
        let other = MatryoshkaLike::with_dim(dim, 4242);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let g: Vec<f32> = (0..dim * dim)
            .map(|_| StandardNormal.sample(&mut rng))
            .collect();
        let map = |z: &[f32]| -> Vec<f32> {
            let mut out = Vec::with_capacity(z.len());
            for row in z.chunks_exact(dim) {
                for i in 0..dim {
                    let gz: f32 = (0..dim).map(|j| g[i * dim + j] * row[j]).sum();
                    out.push(row[i] + shift * gz / (dim as f32).sqrt());
                }
            }
            out
        };
        let ood = map(&other.queries(n_train + n_test));
        let (train, test_ood) = ood.split_at(n_train * dim);
        let test_id = gen.queries(n_test);
        println!(
            "items: generated, {n} × {dim}; sample queries {n_train}, test {n_test} \
             (out of distribution: other centres, shift {shift}) and {n_test} in distribution; \
             {threads} threads"
        );
        let t = Instant::now();
        let truth_ood = rows_top_k(&items, dim, test_ood, 10);
        let truth_id = rows_top_k(&items, dim, &test_id, 10);
        println!(
            "exact top-10 of the test queries: {:.1}s",
            t.elapsed().as_secs_f64()
        );

        let t = Instant::now();
        let params = GraphParams {
            ef_construction: efc,
            ..Default::default()
        };
        let hnsw = build_graph(&items, dim, &params, &|_| {});
        let hnsw_s = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let guided_params = GuidedParams {
            k,
            ef_construction: efc,
            connect_all: get("connect", "1") == "1",
            ..Default::default()
        };
        let (guided, report) = build_query_guided(&items, dim, train, &guided_params);
        let guided_s = t.elapsed().as_secs_f64();
        println!("native HNSW (m 16, efC {efc}): {hnsw_s:.1}s");
        println!("query-guided (k {k}, ≤ 500 candidates, m 16): {guided_s:.1}s, {report:?}");
        let graphs = [
            ("hnsw", to_graph(&hnsw, "native")),
            ("guided", to_graph(&guided, "guided")),
        ];
        for (name, g) in &graphs {
            println!(
                "{name}: {} layers, {} of {n} nodes reachable from the entry point on layer 0",
                g.n_layers(),
                reachable(g)
            );
        }
        for (label, queries, truth) in [
            ("out of distribution", test_ood, &truth_ood),
            ("in distribution", &test_id[..], &truth_id),
        ] {
            println!("{label}: recall@10 / rows scored per query");
            print!("{:>8}", "ef");
            for (name, _) in &graphs {
                print!(" {:>18}", name);
            }
            println!();
            for &ef in &efs {
                print!("{ef:>8}");
                for (_, g) in &graphs {
                    let (r, scored) = recall(g, &items, queries, dim, truth, ef);
                    print!(" {r:>9.4} {scored:>8.0}");
                }
                println!();
            }
        }
    });
}
