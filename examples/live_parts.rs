//! A live index's search against the compacted one, at equal recall, and where its time
//! goes. `DIR` is the generation with a delta and deletions (`live_catalogue` leaves it in
//! WORKDIR/with-delta), `COMPACTED` the same live items compacted (WORKDIR/index). Each plan
//! is run on: the live index as is; its delta alone (deletions dropped from a rewritten
//! manifest in a hard-linked copy: 1% more items); its base alone; and the compacted index.
//! Recall@10 against `TRUTH` (ids `(queries, depth)`), one thread, interleaved, best q/s of
//! three rounds, in a process of its own (quiet page cache, nothing else running).
//!
//! ```text
//! cargo run --release --example live_parts -- DIR COMPACTED QUERIES.npy TRUTH.npy
//! ```

use mrl_index::ingest::{read_id_matrix, read_matrix_f32, VectorSource};
use mrl_index::manifest::{self, Segments};
use mrl_index::{Filter, Index, Scratch, SearchParams, SearchPlan};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

fn variant(src: &Path, name: &str, keep_deltas: bool, keep_deletes: bool) -> PathBuf {
    let dst = src.with_file_name(format!("parts-{name}"));
    let _ = std::fs::remove_dir_all(&dst);
    std::fs::create_dir_all(&dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        if e.file_name() != "MANIFEST" && e.file_name() != "LOCK" {
            std::fs::hard_link(e.path(), dst.join(e.file_name())).unwrap();
        }
    }
    let bytes = manifest::read_bytes(&manifest::manifest_path(src)).unwrap();
    let mut m = manifest::decode(&bytes, "MANIFEST").unwrap();
    let s = m.segments.clone().unwrap_or_default();
    let seg = Segments {
        deltas: if keep_deltas { s.deltas } else { Vec::new() },
        deletes: if keep_deletes && keep_deltas {
            s.deletes
        } else {
            None
        },
    };
    m.segments = Some(seg);
    std::fs::write(manifest::manifest_path(&dst), manifest::encode(&m)).unwrap();
    dst
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let src = PathBuf::from(&args[1]);
    let compacted = PathBuf::from(&args[2]);
    let q = read_matrix_f32(Path::new(&args[3])).unwrap();
    let t = read_id_matrix(Path::new(&args[4])).unwrap();
    let dim = q.dim();
    let n = 500.min(q.len());
    let mut qs = vec![0f32; n * dim];
    for i in 0..n {
        q.read_row(i, &mut qs[i * dim..(i + 1) * dim]).unwrap();
    }
    let truth: Vec<HashSet<u64>> = (0..n)
        .map(|i| t.ids[i * t.cols..i * t.cols + 10].iter().copied().collect())
        .collect();
    let dirs = [
        ("live (1% delta, 1% deleted)", src.clone()),
        ("its delta alone", variant(&src, "delta", true, false)),
        ("its base alone", variant(&src, "base", false, false)),
        ("compacted", compacted),
    ];
    let indexes: Vec<(&str, Index)> = dirs
        .iter()
        .map(|(n, d)| (*n, Index::open(d).unwrap()))
        .collect();
    let plans: Vec<SearchPlan> = [1000, 2500, 5000, 7500]
        .iter()
        .map(|c| format!("L64:{c},L128:200,L256:20,1024:k").parse().unwrap())
        .collect();
    // (recall, best q/s, MACs per query) per plan and index.
    let mut r = vec![vec![(0f64, 0f64, 0u64); indexes.len()]; plans.len()];
    for _round in 0..3 {
        for (p, plan) in plans.iter().enumerate() {
            let params = SearchParams {
                ef: Some(plan.stages()[0].keep.resolve(10)),
                plan: Some(plan.clone()),
                width: None,
            };
            for (i, (_, index)) in indexes.iter().enumerate() {
                let mut scratch = Scratch::new();
                let mut out = Vec::new();
                let (mut m, mut hit) = (0, 0);
                let t = Instant::now();
                for (qv, want) in qs.chunks_exact(dim).zip(&truth) {
                    index
                        .search_with(&mut scratch, qv, 10, &params, &Filter::NONE, &mut out)
                        .unwrap();
                    m += scratch.stats.multiply_adds;
                    hit += out.iter().filter(|h| want.contains(&h.id)).count();
                }
                let qps = n as f64 / t.elapsed().as_secs_f64();
                let cell = &mut r[p][i];
                *cell = (hit as f64 / (10 * n) as f64, cell.1.max(qps), m / n as u64);
            }
        }
    }
    print!("| plan (ef = coarse keep) |");
    for (name, _) in &indexes {
        print!(" {name}: recall@10, q/s, MACs |");
    }
    println!("\n|---|{}", "---|".repeat(indexes.len()));
    for (p, plan) in plans.iter().enumerate() {
        print!("| `{plan}` |");
        for c in &r[p] {
            print!(" {:.4}, {:.1}, {:.2}M |", c.0, c.1, c.2 as f64 / 1e6);
        }
        println!();
    }
    // Live against compacted at equal recall: the compacted curve interpolated.
    let last = indexes.len() - 1;
    let mut curve: Vec<(f64, f64)> = r.iter().map(|row| (row[last].0, row[last].1)).collect();
    curve.sort_by(|a, b| a.0.total_cmp(&b.0));
    for (p, plan) in plans.iter().enumerate() {
        let (rec, qps, _) = r[p][0];
        let at = curve.windows(2).find_map(|w| {
            ((rec >= w[0].0) && (rec <= w[1].0) && w[1].0 > w[0].0)
                .then(|| w[0].1 + (w[1].1 - w[0].1) * (rec - w[0].0) / (w[1].0 - w[0].0))
        });
        match at {
            Some(c) => println!(
                "{plan}: live recall {rec:.4} at {qps:.1} q/s; compacted at that recall {c:.1} q/s: live {:+.1}%",
                (qps / c - 1.0) * 100.0
            ),
            None => println!("{plan}: live recall {rec:.4} is outside the compacted curve"),
        }
    }
}
