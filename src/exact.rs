//! Exact (brute-force) inner-product search and recall: the ground truth the index is
//! measured against.
//!
//! Scores are accumulated band by band in the same order as the cascade, so for the same
//! width they are bitwise equal to the cascade's final scores.

use crate::candidate::Candidate;
use crate::deletes::DeleteBits;
use crate::search::{Filter, Hit};
use crate::simd;
use crate::store::Store;
use rayon::prelude::*;
use std::collections::HashSet;

/// The exact `k` best items for `query` by inner product over the first `n_bands` bands,
/// best first, restricted by `filter`.
pub fn top_k(store: &Store, query: &[f32], k: usize, n_bands: usize, filter: &Filter) -> Vec<Hit> {
    top_k_live(store, query, k, n_bands, filter, None)
}

/// [`top_k`] over one segment of a live index, never returning a `deleted` row.
pub fn top_k_live(
    store: &Store,
    query: &[f32],
    k: usize,
    n_bands: usize,
    filter: &Filter,
    deleted: Option<&DeleteBits>,
) -> Vec<Hit> {
    let n = store.len();
    let mut scores = vec![0f32; n];
    for (b, band) in store.bands()[..n_bands].iter().enumerate() {
        let q = &query[band.start..band.end];
        // The band's rows, hoisted: one slice, `stride` floats apart, `width` used.
        let rows = store.band_data(b).chunks_exact(band.stride);
        for (s, x) in scores.iter_mut().zip(rows) {
            *s += simd::dot(q, &x[..band.width()]);
        }
    }
    let deny: HashSet<u64> = filter.deny.iter().copied().collect();
    let allow: Option<HashSet<u64>> = filter.allow.map(|a| a.iter().copied().collect());
    select_best(store, &scores, k, |row| {
        let id = store.id(row);
        !deny.contains(&id)
            && allow.as_ref().is_none_or(|a| a.contains(&id))
            && !deleted.is_some_and(|d| d.contains(row as u32))
    })
}

/// The `k` best rows of `scores` that pass `eligible`, as hits, best first.
fn select_best(
    store: &Store,
    scores: &[f32],
    k: usize,
    eligible: impl Fn(usize) -> bool,
) -> Vec<Hit> {
    if k == 0 {
        return Vec::new();
    }
    let mut cands: Vec<Candidate> = scores
        .iter()
        .enumerate()
        .filter(|&(row, _)| eligible(row))
        .map(|(row, &score)| Candidate {
            score,
            row: row as u32,
        })
        .collect();
    if cands.len() > k {
        cands.select_nth_unstable_by(k - 1, |a, b| b.cmp(a));
        cands.truncate(k);
    }
    cands.sort_unstable_by(|a, b| b.cmp(a));
    cands
        .into_iter()
        .map(|c| Hit {
            id: store.id(c.row as usize),
            score: c.score,
        })
        .collect()
}

/// Queries scored together per pass over the store in [`batch_top_k`]: each row is read
/// from memory once per block instead of once per query.
const QUERY_BLOCK: usize = 16;

/// [`top_k`] without filter for many queries (row-major), in parallel on the current rayon
/// pool. Queries are processed in blocks of 16 so that the scan is bound by arithmetic, not
/// by memory bandwidth. Scores are bitwise equal to [`top_k`]'s.
pub fn batch_top_k(store: &Store, queries: &[f32], k: usize, n_bands: usize) -> Vec<Vec<Hit>> {
    let dim = store.dim();
    let n = store.len();
    let blocks: Vec<&[f32]> = queries.chunks(QUERY_BLOCK * dim).collect();
    blocks
        .par_iter()
        .flat_map_iter(|block| {
            let m = block.len() / dim;
            let mut scores = vec![0f32; m * n];
            for (b, band) in store.bands()[..n_bands].iter().enumerate() {
                let rows = store.band_data(b).chunks_exact(band.stride);
                for (row, x) in rows.enumerate() {
                    let x = &x[..band.width()];
                    for j in 0..m {
                        let q = &block[j * dim + band.start..j * dim + band.end];
                        scores[j * n + row] += simd::dot(q, x);
                    }
                }
            }
            (0..m)
                .map(|j| select_best(store, &scores[j * n..(j + 1) * n], k, |_| true))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Queries per block of [`batch_top_k_gemm`].
#[cfg(feature = "build")]
const GEMM_QUERIES: usize = 256;
/// Items per block of [`batch_top_k_gemm`].
#[cfg(feature = "build")]
const GEMM_ITEMS: usize = 4096;
/// Candidates per query kept from the matrix products before the exact rescoring.
#[cfg(feature = "build")]
const GEMM_MARGIN: usize = 16;

#[cfg(feature = "build")]
/// [`batch_top_k`] through blocked matrix products (faer's GEMM): the ground truth of large
/// catalogues several times faster. Each query's best `k + 16` by the products' scores are
/// rescored exactly as [`top_k`] scores them (band by band), so the answer and its scores
/// equal [`top_k`]'s unless a true top-k item was more than 16 places below it in the
/// products' rounding. Parallel over blocks of 256 queries on the current rayon pool.
pub fn batch_top_k_gemm(store: &Store, queries: &[f32], k: usize, n_bands: usize) -> Vec<Vec<Hit>> {
    use faer::linalg::matmul::matmul;
    use faer::{Accum, Mat, MatRef, Par};
    let dim = store.dim();
    let n = store.len();
    let depth = k.saturating_add(GEMM_MARGIN).min(n);
    let bands = &store.bands()[..n_bands];
    let blocks: Vec<&[f32]> = queries.chunks(GEMM_QUERIES * dim).collect();
    blocks
        .par_iter()
        .flat_map_iter(|block| {
            let m = block.len() / dim;
            let mut pools: Vec<(Vec<Candidate>, f32)> =
                (0..m).map(|_| (Vec::new(), f32::NEG_INFINITY)).collect();
            let mut scores = Mat::<f32>::zeros(m, GEMM_ITEMS);
            let mut start = 0;
            while start < n {
                let rows = GEMM_ITEMS.min(n - start);
                for (b, band) in bands.iter().enumerate() {
                    let q = MatRef::from_row_major_slice_with_stride(
                        &block[band.start..],
                        m,
                        band.width(),
                        dim,
                    );
                    let data =
                        &store.band_data(b)[start * band.stride..(start + rows) * band.stride];
                    let x = MatRef::from_row_major_slice_with_stride(
                        data,
                        rows,
                        band.width(),
                        band.stride,
                    );
                    let beta = if b == 0 { Accum::Replace } else { Accum::Add };
                    matmul(
                        scores.as_mut().subcols_mut(0, rows),
                        beta,
                        q,
                        x.transpose(),
                        1.0f32,
                        Par::Seq,
                    );
                }
                for (j, (pool, floor)) in pools.iter_mut().enumerate() {
                    for r in 0..rows {
                        let s = scores[(j, r)];
                        if s >= *floor {
                            pool.push(Candidate {
                                score: s,
                                row: (start + r) as u32,
                            });
                            if pool.len() >= 4 * depth + 256 {
                                pool.select_nth_unstable_by(depth - 1, |a, b| b.cmp(a));
                                pool.truncate(depth);
                                *floor = pool.iter().map(|c| c.score).fold(f32::INFINITY, f32::min);
                            }
                        }
                    }
                }
                start += rows;
            }
            pools
                .into_iter()
                .enumerate()
                .map(|(j, (mut pool, _))| {
                    if pool.len() > depth {
                        pool.select_nth_unstable_by(depth - 1, |a, b| b.cmp(a));
                        pool.truncate(depth);
                    }
                    let q = &block[j * dim..(j + 1) * dim];
                    for c in pool.iter_mut() {
                        c.score = store.prefix_dot(q, c.row as usize, n_bands);
                    }
                    pool.sort_unstable_by(|a, b| b.cmp(a));
                    pool.truncate(k);
                    pool.into_iter()
                        .map(|c| Hit {
                            id: store.id(c.row as usize),
                            score: c.score,
                        })
                        .collect::<Vec<_>>()
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Rows of the items scored per pass in [`rows_top_k`]: small enough to stay in cache while
/// every query of a block is scored against them.
const ROW_BLOCK: usize = 512;

/// The exact `k` best rows of `items` (row-major, `dim` floats per row) for each query of
/// `queries` (row-major, `dim` floats per row) by inner product, best first, ties to the
/// smaller row. Parallel over blocks of queries on the current rayon pool; each block scans
/// the items once, in cache-sized blocks of rows.
pub fn rows_top_k(items: &[f32], dim: usize, queries: &[f32], k: usize) -> Vec<Vec<Candidate>> {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;
    let n = items.len() / dim;
    let ids: Vec<u32> = (0..n as u32).collect();
    let k = k.min(n);
    queries
        .par_chunks(QUERY_BLOCK * dim)
        .flat_map_iter(|block| {
            let mut heaps: Vec<BinaryHeap<Reverse<Candidate>>> = block
                .chunks_exact(dim)
                .map(|_| BinaryHeap::with_capacity(k + 1))
                .collect();
            let mut scores = vec![0f32; ROW_BLOCK];
            for chunk in ids.chunks(ROW_BLOCK) {
                for (q, heap) in block.chunks_exact(dim).zip(&mut heaps) {
                    simd::dot_rows(q, items, dim, chunk, &mut scores);
                    for (&row, &score) in chunk.iter().zip(&scores) {
                        let c = Candidate { score, row };
                        if heap.len() < k {
                            heap.push(Reverse(c));
                        } else if heap.peek().is_some_and(|w| c > w.0) {
                            heap.pop();
                            heap.push(Reverse(c));
                        }
                    }
                }
            }
            heaps.into_iter().map(|h| {
                let mut v: Vec<Candidate> = h.into_iter().map(|r| r.0).collect();
                v.sort_unstable_by(|a, b| b.cmp(a));
                v
            })
        })
        .collect()
}

/// Recall@k: the share of the first `k` true ids found among the first `k` returned ones.
pub fn recall_at(found: &[Hit], truth: &[Hit], k: usize) -> f64 {
    let truth: Vec<u64> = truth.iter().take(k).map(|h| h.id).collect();
    if truth.is_empty() {
        return 1.0;
    }
    let hits = found
        .iter()
        .take(k)
        .filter(|h| truth.contains(&h.id))
        .count();
    hits as f64 / truth.len() as f64
}

/// Mean recall@k over many queries.
pub fn mean_recall(found: &[Vec<Hit>], truth: &[Vec<Hit>], k: usize) -> f64 {
    if found.is_empty() {
        return 0.0;
    }
    found
        .iter()
        .zip(truth)
        .map(|(f, t)| recall_at(f, t, k))
        .sum::<f64>()
        / found.len() as f64
}

#[cfg(all(test, feature = "build"))]
mod tests {
    use super::*;
    use crate::bytes::Bytes;
    use crate::ingest::MatrixSource;
    use crate::store::write_store;
    use std::io::Cursor;

    #[test]
    fn rows_top_k_equals_a_full_sort() {
        let (n, dim) = (1300, 20);
        let gen = crate::synth::MatryoshkaLike::with_dim(dim, 5);
        let items = gen.items(n);
        let queries = gen.queries(21);
        let got = rows_top_k(&items, dim, &queries, 15);
        for (q, hits) in queries.chunks_exact(dim).zip(&got) {
            let mut all: Vec<Candidate> = items
                .chunks_exact(dim)
                .enumerate()
                .map(|(r, x)| {
                    let mut s = [0f32];
                    simd::dot_rows(q, x, dim, &[0], &mut s);
                    Candidate {
                        score: s[0],
                        row: r as u32,
                    }
                })
                .collect();
            all.sort_unstable_by(|a, b| b.cmp(a));
            assert_eq!(hits[..], all[..15]);
        }
    }

    #[test]
    fn blocked_batch_equals_single_query_scan() {
        let (n, dim) = (700, 48);
        let gen = crate::synth::MatryoshkaLike::with_dim(dim, 3);
        let items = gen.items(n);
        let src = MatrixSource::new(items, dim).unwrap();
        let widths = [16, 48];
        let norms = vec![1.0; n * 2];
        let bytes = write_store(Cursor::new(Vec::new()), &src, &widths, &norms, None, |_| {})
            .unwrap()
            .into_inner();
        let store = Store::from_bytes(Bytes::copy_from(&bytes), "t").unwrap();
        let queries = gen.queries(37); // not a multiple of the block size
        let batch = batch_top_k(&store, &queries, 7, 2);
        for (q, hits) in queries.chunks_exact(dim).zip(&batch) {
            assert_eq!(hits, &top_k(&store, q, 7, 2, &Filter::NONE));
        }
        let coarse = batch_top_k(&store, &queries, 7, 1);
        assert_eq!(
            coarse[3],
            top_k(&store, &queries[3 * dim..4 * dim], 7, 1, &Filter::NONE)
        );
    }

    #[test]
    fn gemm_batch_equals_single_query_scan() {
        // More items than one GEMM block and more queries than one query block, widths not
        // multiples of the band stride.
        let (n, dim) = (9000, 40);
        let gen = crate::synth::MatryoshkaLike::with_dim(dim, 4);
        let src = MatrixSource::new(gen.items(n), dim).unwrap();
        let widths = [8, 24, 40];
        let norms = vec![1.0; n * 3];
        let bytes = write_store(Cursor::new(Vec::new()), &src, &widths, &norms, None, |_| {})
            .unwrap()
            .into_inner();
        let store = Store::from_bytes(Bytes::copy_from(&bytes), "t").unwrap();
        let queries = gen.queries(300);
        for (k, bands) in [(10, 3), (25, 2), (1, 1)] {
            let fast = batch_top_k_gemm(&store, &queries, k, bands);
            assert_eq!(fast.len(), 300);
            for (q, hits) in queries.chunks_exact(dim).zip(&fast) {
                assert_eq!(hits, &top_k(&store, q, k, bands, &Filter::NONE));
            }
        }
    }
}
