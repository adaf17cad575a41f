//! The live catalogue's costs, measured in one run on one index (docs/live-catalogue.md):
//!
//! 1. replace 1% of the items (delete their rows, add them back as a delta) and time it;
//! 2. search base + delta and, after compaction, the compacted index (both warm, two
//!    interleaved rounds, best q/s): recall@10, 1-thread q/s and multiply-adds of the same
//!    plans, so the cost of a delta is read at equal recall;
//! 3. during compaction: the directory's peak extra bytes (sampled every 20 ms) and the
//!    latency of a reader searching the old generation and of readers opening the index.
//!
//! The live items are the original ones, with the same ids, so the ground truth of the
//! original index (`--truth`, ids `(queries, depth)` as `mrl-index bench` writes) holds.
//!
//! ```text
//! cargo run --release --example live_catalogue -- INDEX QUERIES.npy TRUTH.npy WORKDIR [FRACTION]
//! ```
//! `INDEX` is hard-linked into `WORKDIR` (published files are never modified, so links are
//! safe); the original is not touched.

use mrl_index::ingest::{read_id_matrix, read_matrix_f32, MatrixSource, VectorSource};
use mrl_index::progress::NoProgress;
use mrl_index::writer::{CompactOptions, IndexWriter};
use mrl_index::{Filter, Index, Scratch, SearchParams, SearchPlan};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const K: usize = 10;
const QUERIES: usize = 500;

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|it| {
            it.flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// Recall@10, one-thread q/s and multiply-adds per query of `plan` over the first QUERIES
/// queries.
fn measure(index: &Index, queries: &[f32], truth: &[Vec<u64>], plan: &str) -> (f64, f64, f64) {
    let dim = index.dim();
    let plan: SearchPlan = plan.parse().unwrap();
    let params = SearchParams {
        ef: Some(plan.stages()[0].keep.resolve(K)),
        plan: Some(plan),
        width: None,
    };
    // Warm the pages once, then time.
    for q in queries.chunks_exact(dim).take(50) {
        index.search(q, K, &params).unwrap();
    }
    let mut scratch = Scratch::new();
    let mut found = Vec::with_capacity(K);
    let mut macs = 0u64;
    let t = Instant::now();
    let mut hit = 0;
    for (q, t10) in queries.chunks_exact(dim).zip(truth) {
        let set: HashSet<u64> = t10[..K].iter().copied().collect();
        index
            .search_with(&mut scratch, q, K, &params, &Filter::NONE, &mut found)
            .unwrap();
        macs += scratch.stats.multiply_adds;
        hit += found.iter().filter(|h| set.contains(&h.id)).count();
    }
    let secs = t.elapsed().as_secs_f64();
    let n = truth.len();
    (
        hit as f64 / (n * K) as f64,
        n as f64 / secs,
        macs as f64 / n as f64,
    )
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 5 {
        eprintln!("usage: live_catalogue INDEX QUERIES.npy TRUTH.npy WORKDIR [FRACTION]");
        std::process::exit(2);
    }
    let (src, queries, truth, work) = (
        PathBuf::from(&args[1]),
        &args[2],
        &args[3],
        PathBuf::from(&args[4]),
    );
    let fraction: f64 = args.get(5).map_or(0.01, |f| f.parse().unwrap());
    let dir = work.join("index");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for e in std::fs::read_dir(&src).unwrap() {
        let e = e.unwrap();
        std::fs::hard_link(e.path(), dir.join(e.file_name())).unwrap();
    }
    let q = read_matrix_f32(Path::new(queries)).unwrap();
    let dim = q.dim();
    let mut qrows = vec![0f32; QUERIES * dim];
    for i in 0..QUERIES {
        q.read_row(i, &mut qrows[i * dim..(i + 1) * dim]).unwrap();
    }
    let t = read_id_matrix(Path::new(truth)).unwrap();
    let truth: Vec<Vec<u64>> = (0..QUERIES)
        .map(|i| t.ids[i * t.cols..i * t.cols + K].to_vec())
        .collect();

    let base = Index::open(&dir).unwrap();
    let n = base.len();
    let base_bytes = dir_bytes(&dir);
    let build_seconds = base
        .tuned()
        .and_then(|_| base.graph().build_info())
        .map(|i| i.build_seconds);
    // The items to replace: an evenly spread 1%, read back from the index.
    let m = ((n as f64 * fraction) as usize).max(1);
    let step = n / m;
    let ids: Vec<u64> = (0..m).map(|i| base.store().id(i * step)).collect();
    let mut rows = vec![0f32; m * dim];
    for (i, &id) in ids.iter().enumerate() {
        assert!(base.read_item(id, &mut rows[i * dim..(i + 1) * dim]));
    }
    let plans: Vec<String> = [1000, 2500, 5000, 7500]
        .iter()
        .map(|c| format!("L64:{c},L128:200,L256:20,1024:k"))
        .collect();
    println!(
        "index {} ({n} items, {:.2} GB)",
        src.display(),
        base_bytes as f64 / 1e9
    );
    println!("graph build of the base (from its build info): {build_seconds:?} s");
    drop(base);

    // 1. Replace 1%: its rows deleted, the same vectors and ids added as one delta.
    let items = MatrixSource::new(rows, dim).unwrap();
    let t0 = Instant::now();
    let mut w = IndexWriter::open(&dir).unwrap();
    let report = w.add(&items, Some(&ids), true).unwrap();
    drop(w);
    let add_seconds = t0.elapsed().as_secs_f64();
    println!(
        "add {m} items ({} replaced, graph {}): {add_seconds:.2} s",
        report.replaced, report.graph
    );

    // 2. Keep the generation with the delta (hard links) to search it after compaction,
    // interleaved with the compacted index, both warm.
    let snapshot = work.join("with-delta");
    let _ = std::fs::remove_dir_all(&snapshot);
    std::fs::create_dir_all(&snapshot).unwrap();
    for e in std::fs::read_dir(&dir).unwrap() {
        let e = e.unwrap();
        let name = e.file_name();
        if name == "MANIFEST" {
            std::fs::copy(e.path(), snapshot.join(&name)).unwrap();
        } else if name != "LOCK" {
            std::fs::hard_link(e.path(), snapshot.join(&name)).unwrap();
        }
    }
    let live = Index::open(&dir).unwrap();
    assert_eq!(live.len(), n);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();

    // 3. Compact while readers search: the old generation (already open) and fresh opens.
    let stop = AtomicBool::new(false);
    let peak = AtomicU64::new(0);
    let worst_old = AtomicU64::new(0);
    let worst_open = AtomicU64::new(0);
    let reads = AtomicU64::new(0);
    let before_latency = {
        let t = Instant::now();
        for qv in qrows.chunks_exact(dim).take(100) {
            live.search(qv, K, &SearchParams::default()).unwrap();
        }
        t.elapsed().as_secs_f64() / 100.0
    };
    let mut compact_seconds = 0.0;
    std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(dir_bytes(&dir), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        s.spawn(|| {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let qv = &qrows[(i % QUERIES) * dim..(i % QUERIES + 1) * dim];
                let t = Instant::now();
                let hits = live.search(qv, K, &SearchParams::default()).unwrap();
                assert_eq!(hits.len(), K);
                worst_old.fetch_max(t.elapsed().as_micros() as u64, Ordering::Relaxed);
                reads.fetch_add(1, Ordering::Relaxed);
                i += 1;
                // Leave the writer its cores most of the time; a reader, not a load test.
                std::thread::sleep(Duration::from_millis(50));
                if i % 10 == 0 {
                    let t = Instant::now();
                    let fresh = Index::open(&dir).expect("a reader always opens");
                    assert_eq!(fresh.len(), n);
                    fresh.search(qv, K, &SearchParams::default()).unwrap();
                    worst_open.fetch_max(t.elapsed().as_micros() as u64, Ordering::Relaxed);
                }
            }
        });
        let t = Instant::now();
        let mut w = IndexWriter::open(&dir).unwrap();
        let r = w.compact(&CompactOptions::default(), &NoProgress).unwrap();
        compact_seconds = t.elapsed().as_secs_f64();
        assert_eq!(r.items, n);
        stop.store(true, Ordering::Relaxed);
    });
    let peak = peak.load(Ordering::Relaxed);
    println!(
        "compact: {compact_seconds:.1} s; peak directory {:.2} GB = base {:.2} GB + {:.3} x base",
        peak as f64 / 1e9,
        base_bytes as f64 / 1e9,
        (peak as f64 - base_bytes as f64) / base_bytes as f64
    );
    println!(
        "readers during compaction: {} searches of the old generation, worst {:.1} ms (one search before: {:.1} ms); worst open+search {:.1} ms",
        reads.load(Ordering::Relaxed),
        worst_old.load(Ordering::Relaxed) as f64 / 1e3,
        before_latency * 1e3,
        worst_open.load(Ordering::Relaxed) as f64 / 1e3
    );
    drop(live);

    let compacted = Index::open(&dir).unwrap();
    assert!(compacted.is_compacted());
    let live = Index::open(&snapshot).unwrap();
    assert_eq!(live.deltas().len(), 1);
    // Warm both (every page the plans touch), then two interleaved rounds: best q/s.
    for index in [&live, &compacted] {
        pool.install(|| measure(index, &qrows, &truth, plans.last().unwrap()));
    }
    let mut with_delta = vec![(0.0, 0.0, 0.0); plans.len()];
    let mut after = with_delta.clone();
    for _ in 0..2 {
        for (i, p) in plans.iter().enumerate() {
            for (index, out) in [(&live, &mut with_delta), (&compacted, &mut after)] {
                let r = pool.install(|| measure(index, &qrows, &truth, p));
                if r.1 > out[i].1 {
                    out[i] = r;
                }
            }
        }
    }
    println!("\n| plan (ef = coarse keep) | recall@10 with 1% delta | q/s | MACs/query | recall@10 compacted | q/s | MACs/query | q/s ratio |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for (p, (a, b)) in plans.iter().zip(with_delta.iter().zip(&after)) {
        println!(
            "| `{p}` | {:.4} | {:.1} | {:.0} | {:.4} | {:.1} | {:.0} | {:.3} |",
            a.0,
            a.1,
            a.2,
            b.0,
            b.1,
            b.2,
            a.1 / b.1
        );
    }
    // q/s at equal recall: the compacted curve interpolated at each delta row's recall.
    println!("\nat equal recall (compacted q/s interpolated at the delta row's recall):");
    for (p, a) in plans.iter().zip(&with_delta) {
        let mut pts: Vec<(f64, f64)> = after.iter().map(|r| (r.0, r.1)).collect();
        pts.sort_by(|x, y| x.0.total_cmp(&y.0));
        let interp = pts.windows(2).find_map(|w| {
            let (r0, q0) = w[0];
            let (r1, q1) = w[1];
            (a.0 >= r0 && a.0 <= r1 && r1 > r0).then(|| q0 + (q1 - q0) * (a.0 - r0) / (r1 - r0))
        });
        match interp {
            Some(qps) => println!(
                "  {p}: recall {:.4}: {:.1} q/s with the delta vs {qps:.1} compacted: {:.1}% slower",
                a.0,
                a.1,
                (1.0 - a.1 / qps) * 100.0
            ),
            None => println!("  {p}: recall {:.4} outside the compacted curve", a.0),
        }
    }
    println!(
        "\nadd {m} items: {add_seconds:.2} s = {:.4} of the compaction's full build ({compact_seconds:.1} s)",
        add_seconds / compact_seconds
    );
}
