//! Beam search over the coarse graph: greedy descent through the upper layers, then a
//! best-first search of layer 0 with a beam of `ef`, maximising the inner product on the
//! prefix. All working memory lives in a reusable [`GraphScratch`]: the visited rows (one
//! epoch per row up to [`EPOCH_ROWS`] rows, else a [`RowSet`] sized by the walk), heaps whose
//! capacity survives between queries.

use super::{CoarseGraph, NO_NEIGHBOUR};
use crate::candidate::Candidate;
use crate::rowset::RowSet;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Scores rows against one query on the coarse prefix.
pub trait CoarseScorer {
    /// Inner product of the query with row `row` on the prefix.
    fn score(&self, row: u32) -> f32;
    /// Starts loading row `row` into cache.
    fn prefetch(&self, row: u32);
}

/// Scores rows of a plain row-major matrix (`dim` floats per row) against one query: graph
/// experiments and tests on prefixes that are not in a store.
#[derive(Debug, Clone, Copy)]
pub struct MatrixScorer<'a> {
    rows: &'a [f32],
    dim: usize,
    query: &'a [f32],
}

impl<'a> MatrixScorer<'a> {
    /// A scorer of `query` (its first `dim` values are used) over `rows`.
    pub fn new(rows: &'a [f32], dim: usize, query: &'a [f32]) -> MatrixScorer<'a> {
        MatrixScorer {
            rows,
            dim,
            query: &query[..dim],
        }
    }
}

impl CoarseScorer for MatrixScorer<'_> {
    #[inline]
    fn score(&self, row: u32) -> f32 {
        let start = row as usize * self.dim;
        crate::simd::dot(self.query, &self.rows[start..start + self.dim])
    }

    #[inline]
    fn prefetch(&self, row: u32) {
        let ptr = self.rows.as_ptr().wrapping_add(row as usize * self.dim);
        crate::simd::prefetch_bytes(ptr, self.dim * 4);
    }
}

/// Graphs of at most this many rows mark visits in an array of one epoch per row (at most
/// 256 KiB per thread): on the 12k-item Beauty set it answered 7% faster than the
/// [`RowSet`], which is faster from 100k rows on (its bitmap is 32× smaller than the array).
pub const EPOCH_ROWS: usize = 1 << 16;

/// Reusable working memory of the graph search.
#[derive(Debug, Default)]
pub struct GraphScratch {
    /// Whether the graph has at most `epoch_rows` rows, and the walk marks `epochs`.
    small: bool,
    /// The largest graph marked with epochs (`None`: [`EPOCH_ROWS`]).
    epoch_rows: Option<usize>,
    /// Small graphs: the epoch of the walk that last reached each row (one load per check).
    epochs: Vec<u32>,
    epoch: u32,
    /// Larger graphs: the rows the walk has reached, in memory that follows the walk's size.
    visited: RowSet,
    candidates: BinaryHeap<Candidate>,
    results: BinaryHeap<Reverse<Candidate>>,
    fresh: Vec<u32>,
    /// Rows scored by the last search.
    pub scored: usize,
}

impl GraphScratch {
    /// A scratch that marks visits with epochs only for graphs of at most `rows` rows (the
    /// default is [`EPOCH_ROWS`]), and with a [`RowSet`] above: tests and benchmarks compare
    /// the two on one graph.
    pub fn with_epoch_rows(rows: usize) -> GraphScratch {
        GraphScratch {
            epoch_rows: Some(rows),
            ..GraphScratch::default()
        }
    }

    fn begin(&mut self, n: usize) {
        self.small = n <= self.epoch_rows.unwrap_or(EPOCH_ROWS);
        if self.small {
            if self.epochs.len() < n {
                self.epochs.resize(n, 0);
            }
            if self.epoch == u32::MAX {
                self.epochs.iter_mut().for_each(|e| *e = 0);
                self.epoch = 0;
            }
            self.epoch += 1;
        } else {
            self.visited.clear(n);
        }
        self.candidates.clear();
        self.results.clear();
        self.scored = 0;
    }

    // Always inlined: it runs once per neighbour of every expanded row, and a call per
    // check measured 15% of the search on the 12k set.
    #[inline(always)]
    fn visit(&mut self, row: u32) -> bool {
        if self.small {
            let slot = &mut self.epochs[row as usize];
            if *slot == self.epoch {
                return false;
            }
            *slot = self.epoch;
            true
        } else {
            self.visited.insert(row)
        }
    }

    /// Bytes of the visited marks: at most `4 ×` [`EPOCH_ROWS`] for small graphs, else
    /// the set's (sized by the walk, at most about `n / 3`).
    pub fn visited_bytes(&self) -> usize {
        self.epochs.len() * 4 + self.visited.capacity_bytes()
    }
}

/// Searches `graph` for the `ef` best eligible rows by `scorer`, writing them (unordered) to
/// `out`. Ineligible rows are traversed but not returned, so a filter never disconnects the
/// search; with a very selective filter the search widens until `ef` eligible rows are found
/// or the reachable graph is exhausted.
pub fn search_graph<S: CoarseScorer, F: Fn(u32) -> bool>(
    graph: &CoarseGraph,
    scorer: &S,
    ef: usize,
    scratch: &mut GraphScratch,
    eligible: F,
    out: &mut Vec<Candidate>,
) {
    let ef = ef.max(1);
    scratch.begin(graph.len());
    // Every neighbour id is compared with the node count rather than with the padding
    // value: padding (`NO_NEIGHBOUR`, above any count) and an out-of-range id of a corrupt
    // file both end the list, for the same one comparison. The entry point was checked at
    // open. So no file content can make the walk index out of bounds.
    let n = graph.len() as u32;
    const _: () = assert!(
        NO_NEIGHBOUR == u32::MAX,
        "the padding must compare above any id"
    );
    let mut cur = graph.meta().entry_point;
    let mut cur_score = scorer.score(cur);
    scratch.scored += 1;
    for layer in (1..graph.n_layers()).rev() {
        loop {
            let mut changed = false;
            if let Some(list) = graph.neighbours(layer, cur) {
                for &nb in list {
                    if nb >= n {
                        break;
                    }
                    let s = scorer.score(nb);
                    scratch.scored += 1;
                    if s > cur_score {
                        cur_score = s;
                        cur = nb;
                        changed = true;
                    }
                }
            }
            if !changed {
                break;
            }
        }
    }
    scratch.visit(cur);
    let start = Candidate {
        score: cur_score,
        row: cur,
    };
    scratch.candidates.push(start);
    if eligible(cur) {
        scratch.results.push(Reverse(start));
    }
    while let Some(c) = scratch.candidates.pop() {
        if scratch.results.len() >= ef {
            if let Some(Reverse(worst)) = scratch.results.peek() {
                if c.score < worst.score {
                    break;
                }
            }
        }
        // The next candidate's list is needed soon: start loading it now.
        if let Some(next) = scratch.candidates.peek() {
            graph.prefetch_layer0(next.row);
        }
        scratch.fresh.clear();
        for &nb in graph.layer0_neighbours(c.row) {
            if nb >= n {
                break;
            }
            if scratch.visit(nb) {
                scorer.prefetch(nb);
                scratch.fresh.push(nb);
            }
        }
        for i in 0..scratch.fresh.len() {
            let nb = scratch.fresh[i];
            let s = scorer.score(nb);
            scratch.scored += 1;
            let full = scratch.results.len() >= ef;
            let worst = scratch
                .results
                .peek()
                .map_or(f32::NEG_INFINITY, |r| r.0.score);
            if !full || s > worst {
                let cand = Candidate { score: s, row: nb };
                scratch.candidates.push(cand);
                if eligible(nb) {
                    scratch.results.push(Reverse(cand));
                    if scratch.results.len() > ef {
                        scratch.results.pop();
                    }
                }
            }
        }
    }
    out.clear();
    out.extend(scratch.results.drain().map(|r| r.0));
}
