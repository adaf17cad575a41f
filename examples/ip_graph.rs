//! Experiment: graph quality of the coarse HNSW built in the MIPS→L2 reduced space (the
//! index's first design) against one built with an inner-product dissimilarity `C − q·x`
//! (ip-NSW style, now the default),
//! both searched by hnsw_rs itself, on the 64-d prefixes of an existing index.
//!
//! `cargo run --release --example ip_graph -- INDEX_DIR [N_QUERIES]` on an index of a
//! generated set (queries come from the same generator, seed 42).

use hnsw_rs::prelude::{Distance, Hnsw};
use mrl_index::exact::batch_top_k;
use mrl_index::graph::build::{build_hnsw, GraphParams};
use mrl_index::synth::MatryoshkaLike;
use mrl_index::Index;
use rayon::prelude::*;
use std::time::Instant;

struct IpDissimilarity(f32);

impl Distance<f32> for IpDissimilarity {
    fn eval(&self, a: &[f32], b: &[f32]) -> f32 {
        (self.0 - mrl_index::simd::dot(a, b)).max(0.0)
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let index = Index::open(&args[0])?;
    let nq: usize = args.get(1).map_or(Ok(300), |s| s.parse())?;
    let store = index.store();
    let (n, c) = (store.len(), index.coarse_dim());
    let gen = MatryoshkaLike::with_dim(index.dim(), 42);
    let queries = gen.queries(nq);
    let truth = batch_top_k(store, &queries, 10, 1);
    let mut coarse = Vec::with_capacity(n * c);
    for r in 0..n {
        coarse.extend_from_slice(store.row(0, r));
    }
    let params = GraphParams {
        m: 16,
        ef_construction: 200,
        seed: 42,
        metric: mrl_index::graph::build::CoarseMetric::ReducedL2,
        builder: mrl_index::graph::build::GraphBuilder::HnswRs,
    };
    let t = Instant::now();
    let xbox = build_hnsw(&coarse, c, &params, &|_| {});
    println!("XBOX graph built in {:.1}s", t.elapsed().as_secs_f64());
    let max_item = coarse
        .chunks_exact(c)
        .map(|x| mrl_index::simd::dot(x, x))
        .fold(0.0f32, f32::max)
        .sqrt();
    let max_q = queries
        .chunks_exact(index.dim())
        .map(|q| mrl_index::simd::dot(&q[..c], &q[..c]))
        .fold(0.0f32, f32::max)
        .sqrt();
    let big = 1.01 * max_item * max_item.max(max_q);
    let t = Instant::now();
    let ip = Hnsw::<f32, IpDissimilarity>::new(16, n, 16, 200, IpDissimilarity(big));
    let rows: Vec<(&[f32], usize)> = (0..n).map(|r| (&coarse[r * c..(r + 1) * c], r)).collect();
    for item in &rows[..1000.min(n)] {
        ip.insert_slice(*item);
    }
    rows[1000.min(n)..]
        .par_chunks(10_000)
        .for_each(|ch| ip.parallel_insert_slice(&ch.to_vec()));
    println!("IP graph built in {:.1}s", t.elapsed().as_secs_f64());
    println!(
        "{:>6} {:>12} {:>10} {:>12} {:>10}",
        "ef", "xbox R@10", "xbox µs", "ip R@10", "ip µs"
    );
    for ef in [16usize, 32, 64, 128, 256, 512, 1000] {
        let (mut rx, mut ri) = (0.0, 0.0);
        let t = Instant::now();
        for (q, tr) in queries.chunks_exact(index.dim()).zip(&truth) {
            let got = xbox.search(&q[..c], 10, ef);
            rx += got
                .iter()
                .filter(|&&r| tr.iter().any(|h| h.id == r as u64))
                .count() as f64
                / 10.0;
        }
        let tx = t.elapsed().as_secs_f64() * 1e6 / nq as f64;
        let t = Instant::now();
        for (q, tr) in queries.chunks_exact(index.dim()).zip(&truth) {
            let got = ip.search(&q[..c], 10, ef);
            ri += got
                .iter()
                .filter(|nb| tr.iter().any(|h| h.id == nb.d_id as u64))
                .count() as f64
                / 10.0;
        }
        let ti = t.elapsed().as_secs_f64() * 1e6 / nq as f64;
        println!(
            "{ef:>6} {:>12.4} {tx:>10.0} {:>12.4} {ti:>10.0}",
            rx / nq as f64,
            ri / nq as f64
        );
    }
    Ok(())
}
