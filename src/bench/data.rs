//! Generated benchmark sets (strongly or weakly Matryoshka) written as `.npy` files, and how
//! much of the full-width ranking their prefix holds.

use super::BenchError;
use crate::ingest::write_npy_f32;
use crate::simd;
use crate::synth::MatryoshkaLike;
use crate::Error;
use rayon::prelude::*;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Which generated set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SetKind {
    /// The default generator: the prefix holds much of the full-width ranking.
    Strong,
    /// [`MatryoshkaLike::weak`]: signal spread over all dims, the prefix mostly noise.
    Weak,
}

impl std::str::FromStr for SetKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<SetKind, Error> {
        match s.to_ascii_lowercase().as_str() {
            "strong" => Ok(SetKind::Strong),
            "weak" => Ok(SetKind::Weak),
            _ => Err(
                BenchError::Invalid(format!("--kind {s:?}: expected `strong` or `weak`")).into(),
            ),
        }
    }
}

impl SetKind {
    /// The generator of this kind.
    pub fn generator(self, dim: usize, seed: u64) -> MatryoshkaLike {
        match self {
            SetKind::Strong => MatryoshkaLike::with_dim(dim, seed),
            SetKind::Weak => MatryoshkaLike::weak(dim, seed),
        }
    }

    /// `"strong"` or `"weak"`.
    pub fn name(self) -> &'static str {
        match self {
            SetKind::Strong => "strong",
            SetKind::Weak => "weak",
        }
    }
}

/// The share of the full-width top-`depth` found in the exact `prefix`-dim top-K.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PrefixShare {
    /// K.
    pub k: usize,
    /// Mean share over the queries, in `[0, 1]`.
    pub share: f64,
}

/// Queries scored together per pass over the items.
const BLOCK: usize = 16;

/// For each K in `ks` (capped at the item count), the mean share of each query's exact
/// full-width top-`depth` (by inner product) that lies in its exact top-K over the first
/// `prefix` dims. Items and queries are row-major with `dim` values per row. Runs on the
/// current rayon pool, blocked over queries like [`crate::exact::batch_top_k`].
pub fn prefix_share(
    items: &[f32],
    queries: &[f32],
    dim: usize,
    prefix: usize,
    depth: usize,
    ks: &[usize],
) -> Vec<PrefixShare> {
    assert!(
        dim > 0 && prefix <= dim,
        "prefix {prefix} must be within dim {dim}"
    );
    let n = items.len() / dim;
    let nq = queries.len() / dim;
    let depth = depth.min(n);
    let blocks: Vec<&[f32]> = queries.chunks(BLOCK * dim).collect();
    // Per query: the prefix rank (0 = best) of each of its full-width top-`depth` items.
    let ranks: Vec<Vec<usize>> = blocks
        .par_iter()
        .flat_map_iter(|block| {
            let m = block.len() / dim;
            let mut pre = vec![0f32; m * n];
            let mut full = vec![0f32; m * n];
            for row in 0..n {
                let x = &items[row * dim..(row + 1) * dim];
                for j in 0..m {
                    let q = &block[j * dim..(j + 1) * dim];
                    let p = simd::dot(&q[..prefix], &x[..prefix]);
                    pre[j * n + row] = p;
                    full[j * n + row] = p + simd::dot(&q[prefix..], &x[prefix..]);
                }
            }
            (0..m)
                .map(|j| {
                    let pre = &pre[j * n..(j + 1) * n];
                    let full = &full[j * n..(j + 1) * n];
                    let mut order: Vec<u32> = (0..n as u32).collect();
                    if depth < n {
                        order.select_nth_unstable_by(depth, |&a, &b| {
                            full[b as usize].total_cmp(&full[a as usize])
                        });
                    }
                    order[..depth]
                        .iter()
                        .map(|&t| {
                            let s = pre[t as usize];
                            pre.iter().filter(|&&v| v > s).count()
                        })
                        .collect::<Vec<usize>>()
                })
                .collect::<Vec<_>>()
        })
        .collect();
    ks.iter()
        .map(|&k| {
            let k = k.min(n);
            let share = if nq == 0 || depth == 0 {
                0.0
            } else {
                ranks
                    .iter()
                    .map(|r| r.iter().filter(|&&rank| rank < k).count() as f64 / depth as f64)
                    .sum::<f64>()
                    / nq as f64
            };
            PrefixShare { k, share }
        })
        .collect()
}

/// What [`write_set`] wrote.
#[derive(Debug, Clone, Serialize)]
pub struct SetReport {
    /// Strong or weak.
    pub kind: SetKind,
    /// Items.
    pub n: usize,
    /// Queries.
    pub nq: usize,
    /// Full dimension.
    pub dim: usize,
    /// Seed.
    pub seed: u64,
    /// The prefix width the shares are measured at.
    pub prefix: usize,
    /// Share of the full-width top-10 in the prefix top-K, K = 10, 100, 1000, 10000 (capped
    /// at `n`).
    pub shares: Vec<PrefixShare>,
    /// Queries the shares were measured on (at most 1000).
    pub share_queries: usize,
    /// `DIR/items.npy`.
    pub items_path: PathBuf,
    /// `DIR/queries.npy`.
    pub queries_path: PathBuf,
    /// `DIR/sample_queries.npy`: further queries of the same distribution (other "users"),
    /// for builds to learn and tune from; `None` when none were asked for.
    pub sample_path: Option<PathBuf>,
    /// The generator's parameters, as text.
    pub generator: String,
}

/// Generates a set of `kind` and writes `dir/items.npy` and `dir/queries.npy` (`f32`, via
/// [`write_npy_f32`]), with `sample > 0` also `dir/sample_queries.npy` (the generator's next
/// `sample` queries: the same distribution, none of the evaluated ones), and `dir/set.json`
/// (the parameters and the prefix shares), creating `dir`. The shares are measured at 64
/// dims (or the full width when smaller) on the first 1000 queries.
pub fn write_set(
    kind: SetKind,
    n: usize,
    nq: usize,
    sample: usize,
    dim: usize,
    seed: u64,
    dir: &Path,
) -> Result<SetReport, Error> {
    if n == 0 || nq == 0 || dim == 0 {
        return Err(BenchError::Invalid(format!(
            "bench-data: --n, --nq and --dim must be positive (got {n}, {nq}, {dim})"
        ))
        .into());
    }
    std::fs::create_dir_all(dir).map_err(|e| BenchError::io(dir, e))?;
    let gen = kind.generator(dim, seed);
    let items = gen.items(n);
    // Every query row is generated from its own seeded stream: the first nq rows of a
    // longer batch are exactly the evaluated queries, the rest are other "users".
    let all = gen.queries(nq + sample);
    let (queries, others) = all.split_at(nq * dim);
    let items_path = dir.join("items.npy");
    let queries_path = dir.join("queries.npy");
    write_npy_f32(&items_path, &items, n, dim)?;
    write_npy_f32(&queries_path, queries, nq, dim)?;
    let sample_path = if sample > 0 {
        let p = dir.join("sample_queries.npy");
        write_npy_f32(&p, others, sample, dim)?;
        Some(p)
    } else {
        None
    };
    let prefix = 64.min(dim);
    let share_queries = nq.min(1000);
    let shares = prefix_share(
        &items,
        &queries[..share_queries * dim],
        dim,
        prefix,
        10,
        &[10, 100, 1000, 10_000],
    );
    let report = SetReport {
        kind,
        n,
        nq,
        dim,
        seed,
        prefix,
        shares,
        share_queries,
        items_path,
        queries_path,
        sample_path,
        generator: format!("{gen:?}"),
    };
    let meta = dir.join("set.json");
    let text = serde_json::to_string_pretty(&report)
        .map_err(|e| BenchError::json(&meta, "set description", e))?;
    crate::atomic::write_atomic(&meta, text.as_bytes()).map_err(|e| BenchError::io(&meta, e))?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn share_is_one_when_prefix_is_everything() {
        let g = MatryoshkaLike::with_dim(32, 1);
        let items = g.items(300);
        let queries = g.queries(5);
        let s = prefix_share(&items, &queries, 32, 32, 10, &[10, 100]);
        assert_eq!(s[0].share, 1.0);
        assert_eq!(s[1].share, 1.0);
        let s = prefix_share(&items, &queries, 32, 8, 10, &[10, 300, 1000]);
        assert!(s[0].share < 1.0);
        assert_eq!(s[1].share, 1.0);
        assert_eq!(s[2].k, 300, "K is capped at n");
    }
}
