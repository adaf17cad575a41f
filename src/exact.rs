//! Exact (brute-force) inner-product search and recall: the ground truth the index is
//! measured against.
//!
//! Scores are accumulated band by band in the same order as the cascade, so for the same
//! width they are bitwise equal to the cascade's final scores.

use crate::graph::search::Candidate;
use crate::search::{Filter, Hit};
use crate::simd;
use crate::store::Store;
use rayon::prelude::*;
use std::collections::HashSet;

/// The exact `k` best items for `query` by inner product over the first `n_bands` bands,
/// best first, restricted by `filter`.
pub fn top_k(store: &Store, query: &[f32], k: usize, n_bands: usize, filter: &Filter) -> Vec<Hit> {
    let n = store.len();
    let mut scores = vec![0f32; n];
    for (b, band) in store.bands()[..n_bands].iter().enumerate() {
        let q = &query[band.start..band.end];
        for (row, s) in scores.iter_mut().enumerate() {
            *s += simd::dot(q, store.row(b, row));
        }
    }
    let deny: HashSet<u64> = filter.deny.iter().copied().collect();
    let allow: Option<HashSet<u64>> = filter.allow.map(|a| a.iter().copied().collect());
    let mut cands: Vec<Candidate> = scores
        .iter()
        .enumerate()
        .filter(|&(row, _)| {
            let id = store.id(row);
            !deny.contains(&id) && allow.as_ref().is_none_or(|a| a.contains(&id))
        })
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

/// [`top_k`] for many queries (row-major), in parallel on the current rayon pool.
pub fn batch_top_k(store: &Store, queries: &[f32], k: usize, n_bands: usize) -> Vec<Vec<Hit>> {
    queries
        .par_chunks_exact(store.dim())
        .map(|q| top_k(store, q, k, n_bands, &Filter::NONE))
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
