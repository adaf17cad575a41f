//! Measures recall@10 and single-thread queries per second of cascade plans on a generated
//! Matryoshka-like set, and how much of the full-width top-10 the coarse prefix's top-K holds.
//! The measurements behind the default plan (see `docs/tuning.md`).
//!
//! `cargo run --release --example tune -- [items] [queries] [decay] [plans...]`

use mrl_index::exact::{batch_top_k, mean_recall};
use mrl_index::ingest::MatrixSource;
use mrl_index::progress::NoProgress;
use mrl_index::synth::MatryoshkaLike;
use mrl_index::{Filter, Hit, Index, IndexBuilder, Scratch, SearchParams, SearchPlan};
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n: usize = args.first().map_or(Ok(100_000), |s| s.parse())?;
    let nq: usize = args.get(1).map_or(Ok(500), |s| s.parse())?;
    let decay: f32 = args.get(2).map_or(Ok(0.5), |s| s.parse())?;
    let dim = 1024;
    let gen = MatryoshkaLike {
        decay,
        ..MatryoshkaLike::with_dim(dim, 42)
    };
    println!("set: {n} items, {nq} queries, {gen:?}");
    // MRL_TUNE_DIR keeps the index between runs (reused if it exists).
    let keep_dir = std::env::var_os("MRL_TUNE_DIR").map(std::path::PathBuf::from);
    let dir = keep_dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("mrl-tune-{}-{n}-{decay}", std::process::id()))
    });
    if !(keep_dir.is_some() && dir.join("MANIFEST").exists()) {
        let t = Instant::now();
        let items = MatrixSource::new(gen.items(n), dim)?;
        let report = IndexBuilder::new()
            .overwrite(true)
            .build(&items, None, &dir, &NoProgress)?;
        println!(
            "build {:.1}s (store {:.1}s, graph {:.1}s)",
            t.elapsed().as_secs_f64(),
            report.store_seconds,
            report.graph_seconds
        );
    }
    let index = Index::open(&dir)?;
    let queries = gen.queries(nq);
    let full = index.store().bands().len();
    let t = Instant::now();
    let truth = batch_top_k(index.store(), &queries, 10, full);
    println!(
        "exact full width: {:.0} queries/s on {} threads",
        nq as f64 / t.elapsed().as_secs_f64(),
        rayon::current_num_threads()
    );
    for kk in [10usize, 100, 1000, 10_000] {
        if kk > n {
            continue;
        }
        let coarse = batch_top_k(index.store(), &queries, kk, 1);
        let share: f64 = coarse
            .iter()
            .zip(&truth)
            .map(|(c, t)| t.iter().filter(|h| c.iter().any(|x| x.id == h.id)).count() as f64 / 10.0)
            .sum::<f64>()
            / nq as f64;
        println!("share of full-width top-10 in the 64-d top-{kk}: {share:.4}");
    }
    let mut plans: Vec<String> = args.iter().skip(3).cloned().collect();
    if plans.is_empty() {
        plans = [
            "64:k",
            "64:100,1024:k",
            "64:200,1024:k",
            "64:500,1024:k",
            "64:1000,1024:k",
            "64:2000,1024:k",
            "64:200,128:60,256:20,1024:k",
            "64:500,128:150,256:50,1024:k",
            "64:1000,128:300,256:100,512:30,1024:k",
            "64:1000,128:333,256:111,512:37,1024:k",
            "64:2000,128:600,256:200,512:60,1024:k",
            "64:500,256:50,1024:k",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
    }
    let dimq = index.dim();
    for p in plans {
        // `PLAN@EF` sets the graph's beam width separately from the coarse keep.
        let (plan_text, ef) = match p.split_once('@') {
            Some((pl, ef)) => (pl, Some(ef.parse::<usize>()?)),
            None => (p.as_str(), None),
        };
        let plan: SearchPlan = plan_text.parse()?;
        let params = SearchParams {
            plan: Some(plan),
            ef,
            width: None,
        };
        let mut scratch = Scratch::new();
        let mut out: Vec<Hit> = Vec::with_capacity(10);
        let mut found = Vec::with_capacity(nq);
        // warm-up pass
        for q in queries.chunks_exact(dimq).take(20) {
            index.search_with(&mut scratch, q, 10, &params, &Filter::NONE, &mut out)?;
        }
        let t = Instant::now();
        let mut madds = 0u64;
        let mut coarse = 0usize;
        for q in queries.chunks_exact(dimq) {
            index.search_with(&mut scratch, q, 10, &params, &Filter::NONE, &mut out)?;
            madds += scratch.stats.multiply_adds;
            coarse += scratch.stats.coarse_scored;
            found.push(out.clone());
        }
        let qps = nq as f64 / t.elapsed().as_secs_f64();
        println!(
            "{p:45} recall@10 {:.4}  {qps:8.0} q/s (1 thread)  {:.2} M mult-adds/query  {:.0} coarse rows scored/query",
            mean_recall(&found, &truth, 10),
            madds as f64 / nq as f64 / 1e6,
            coarse as f64 / nq as f64
        );
    }
    if keep_dir.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}
