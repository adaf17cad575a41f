//! The native HNSW builder: inserts the coarse prefixes into flat, preallocated neighbour
//! lists, in parallel on the current rayon pool, and hands back the [`ExportedGraph`] that
//! [`super::build::write_graph`] writes (the same file `hnsw_rs`'s export produces).
//!
//! ```text
//! rows     n × stride f32, 64-byte aligned (a copy of the prefixes, zero-padded to 16 floats)
//! layer 0  n × m0 u32 ids, best first, padded with NO_NEIGHBOUR; the same shape of f32 scores
//! layer l  one m-slot list per node of level ≥ l, found through upper_base[node] + l − 1
//! locks    one spin lock per node, held only while that node's lists are rewritten
//!
//! All of these live in memory advised for transparent huge pages: insertion reads rows and
//! lists at random, and with 4 KiB pages nearly every such read would also miss the TLB.
//! ```
//!
//! Neighbour selection has `hnsw_rs`'s semantics ([`super::build::CoarseDistance`]): both
//! build metrics order pairs by a dot product (the inner-product dissimilarity `C − x·y` by
//! `x·y`, and the reduced L2 `2M² − 2x'·y'` by the dot product of the reduced rows `x'`), so
//! the builder works with scores, higher meaning closer. A new node keeps the candidates the
//! HNSW heuristic selects (a candidate is dropped when it scores at least as high with an
//! already selected neighbour as with the node); its neighbours take it back as `hnsw_rs`
//! does, keeping their best `m0` (or `m`) links ([`Prune::Nearest`]), or through the
//! heuristic again as hnswlib does ([`Prune::Heuristic`]).
//!
//! Searches read neighbour lists without locks: every slot is an atomic `u32`, so a list being
//! rewritten concurrently reads as a mix of old and new ids, each of them a valid node. With
//! one thread nothing races and the graph is bit-reproducible for a seed.

use super::build::{CoarseMetric, ExportedGraph, GraphParams, MAX_LAYER};
use super::search::Candidate;
use super::{GraphMeta, NO_NEIGHBOUR};
use crate::bytes::HugeZeroed;
use crate::simd;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{
    AtomicBool, AtomicU32, AtomicUsize, Ordering::Acquire, Ordering::Relaxed, Ordering::Release,
};
use std::sync::{Mutex, MutexGuard};

/// Insertions made one at a time before the threads start, so that they do not all begin
/// from a handful of nodes.
const SERIAL_PREFIX: usize = 1000;

/// Insertions a thread claims at once in the parallel phase.
const BATCH: usize = 256;

/// How a full neighbour list takes a new reverse link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Prune {
    /// Keep the best-scoring links, dropping the worst (`hnsw_rs`'s reverse update).
    #[default]
    Nearest,
    /// Re-run the selection heuristic over the old links and the new one (hnswlib, FAISS).
    Heuristic,
}

/// One cache line of floats: the unit of the aligned row copy.
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C, align(64))]
struct Line([f32; 16]);

/// The rows the graph is built on, each starting on a cache line.
struct Rows {
    lines: HugeZeroed<Line>,
    /// Floats per row in `lines` (a multiple of 16).
    stride: usize,
    /// Floats of a row that are used.
    width: usize,
}

impl Rows {
    /// Copies the prefixes, with the MIPS→L2 coordinate appended for [`CoarseMetric::ReducedL2`].
    /// Returns the rows and the largest prefix norm.
    fn new(coarse: &[f32], dim: usize, metric: CoarseMetric) -> (Rows, f32) {
        let n = coarse.len() / dim;
        let norms2: Vec<f32> = coarse
            .par_chunks_exact(dim)
            .map(|x| simd::dot(x, x))
            .collect();
        let max2 = norms2.iter().copied().fold(0.0f32, f32::max);
        let width = match metric {
            CoarseMetric::InnerProduct => dim,
            CoarseMetric::ReducedL2 => dim + 1,
        };
        let stride = width.div_ceil(16) * 16;
        let mut lines = HugeZeroed::<Line>::new(n * stride / 16);
        let flat: &mut [f32] = bytemuck::cast_slice_mut(&mut lines);
        flat.par_chunks_exact_mut(stride)
            .zip(coarse.par_chunks_exact(dim))
            .zip(&norms2)
            .for_each(|((out, x), &n2)| {
                out[..dim].copy_from_slice(x);
                if metric == CoarseMetric::ReducedL2 {
                    out[dim] = (max2 - n2).max(0.0).sqrt();
                }
            });
        let rows = Rows {
            lines,
            stride,
            width,
        };
        (rows, max2.sqrt())
    }

    #[inline]
    fn flat(&self) -> &[f32] {
        bytemuck::cast_slice(&self.lines)
    }

    #[inline]
    fn row(&self, r: u32) -> &[f32] {
        let start = r as usize * self.stride;
        &self.flat()[start..start + self.width]
    }

    #[inline]
    fn prefetch(&self, r: u32) {
        let ptr = self
            .lines
            .as_ptr()
            .wrapping_add(r as usize * self.stride / 16);
        simd::prefetch_bytes(ptr, self.width * 4);
    }

    /// `out[i] = row(q) · row(ids[i])`.
    #[inline]
    fn dots(&self, q: &[f32], ids: &[u32], out: &mut Vec<f32>) {
        out.resize(ids.len(), 0.0);
        simd::dot_rows(q, self.flat(), self.stride, ids, out);
    }
}

/// Fixed-capacity neighbour lists, best first, padded with [`NO_NEIGHBOUR`], with each link's
/// score beside it.
struct Lists {
    ids: HugeZeroed<AtomicU32>,
    /// `f32` bits; read and written only under the owner's lock.
    scores: HugeZeroed<AtomicU32>,
    cap: usize,
}

impl Lists {
    fn new(count: usize, cap: usize) -> Lists {
        let mut ids = HugeZeroed::<AtomicU32>::new(count * cap);
        ids.par_iter_mut().for_each(|x| *x.get_mut() = NO_NEIGHBOUR);
        Lists {
            ids,
            scores: HugeZeroed::new(count * cap),
            cap,
        }
    }

    #[inline]
    fn slots(&self, list: usize) -> &[AtomicU32] {
        &self.ids[list * self.cap..(list + 1) * self.cap]
    }

    /// The list with its scores (the owner's lock held).
    fn read(&self, list: usize, out: &mut Vec<Candidate>) {
        out.clear();
        let scores = &self.scores[list * self.cap..(list + 1) * self.cap];
        for (id, score) in self.slots(list).iter().zip(scores) {
            let row = id.load(Relaxed);
            if row == NO_NEIGHBOUR {
                break;
            }
            out.push(Candidate {
                score: f32::from_bits(score.load(Relaxed)),
                row,
            });
        }
    }

    /// Replaces the list (the owner's lock held); `links` must be best first.
    fn write(&self, list: usize, links: &[Candidate]) {
        debug_assert!(links.len() <= self.cap);
        let scores = &self.scores[list * self.cap..(list + 1) * self.cap];
        for (i, (id, score)) in self.slots(list).iter().zip(scores).enumerate() {
            match links.get(i) {
                Some(c) => {
                    id.store(c.row, Relaxed);
                    score.store(c.score.to_bits(), Relaxed);
                }
                None => id.store(NO_NEIGHBOUR, Relaxed),
            }
        }
    }
}

/// Per-thread working memory, reused by every insertion.
struct Scratch {
    /// One bit per node; the bits set are listed in `touched` and cleared after each search.
    visited: Vec<u64>,
    touched: Vec<u32>,
    candidates: BinaryHeap<Candidate>,
    results: BinaryHeap<Reverse<Candidate>>,
    fresh: Vec<u32>,
    scores: Vec<f32>,
    /// The last search's results, best first.
    found: Vec<Candidate>,
    selected: Vec<Candidate>,
    selected_ids: Vec<u32>,
    merged: Vec<Candidate>,
}

impl Scratch {
    fn new(n: usize) -> Scratch {
        Scratch {
            visited: vec![0; n.div_ceil(64)],
            touched: Vec::new(),
            candidates: BinaryHeap::new(),
            results: BinaryHeap::new(),
            fresh: Vec::new(),
            scores: Vec::new(),
            found: Vec::new(),
            selected: Vec::new(),
            selected_ids: Vec::new(),
            merged: Vec::new(),
        }
    }

    #[inline]
    fn visit(&mut self, row: u32) -> bool {
        let (word, bit) = (row as usize / 64, 1u64 << (row % 64));
        let w = &mut self.visited[word];
        if *w & bit != 0 {
            return false;
        }
        *w |= bit;
        self.touched.push(row);
        true
    }

    fn clear_visited(&mut self) {
        for &row in &self.touched {
            self.visited[row as usize / 64] = 0;
        }
        self.touched.clear();
    }
}

/// The graph under construction.
struct Builder {
    rows: Rows,
    levels: Vec<u8>,
    /// Index in `upper` of a node's layer-1 list (`u32::MAX` for level-0 nodes).
    upper_base: Vec<u32>,
    layer0: Lists,
    upper: Lists,
    locks: HugeZeroed<AtomicBool>,
    /// The entry point and its level, the top of the graph.
    top: Mutex<(u32, usize)>,
    ef: usize,
    prune: Prune,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Holds a node's lock: a spin lock, as critical sections are a few dozen stores.
struct NodeGuard<'a>(&'a AtomicBool);

impl<'a> NodeGuard<'a> {
    fn lock(flag: &'a AtomicBool) -> NodeGuard<'a> {
        let mut spins = 0u32;
        while flag
            .compare_exchange_weak(false, true, Acquire, Relaxed)
            .is_err()
        {
            spins += 1;
            if spins < 64 {
                std::hint::spin_loop();
            } else {
                // The holder may have been descheduled.
                std::thread::yield_now();
            }
        }
        NodeGuard(flag)
    }
}

impl Drop for NodeGuard<'_> {
    fn drop(&mut self) {
        self.0.store(false, Release);
    }
}

impl Builder {
    #[inline]
    fn lists(&self, layer: usize, node: u32) -> (&Lists, usize) {
        if layer == 0 {
            (&self.layer0, node as usize)
        } else {
            let base = self.upper_base[node as usize] as usize;
            (&self.upper, base + layer - 1)
        }
    }

    /// Moves from `cur` to better-scoring neighbours on `layer` until none is better.
    fn greedy(&self, q: &[f32], mut cur: Candidate, layer: usize, s: &mut Scratch) -> Candidate {
        loop {
            let (lists, list) = self.lists(layer, cur.row);
            s.fresh.clear();
            for slot in lists.slots(list) {
                let nb = slot.load(Relaxed);
                if nb == NO_NEIGHBOUR {
                    break;
                }
                s.fresh.push(nb);
            }
            self.rows.dots(q, &s.fresh, &mut s.scores);
            let best = s
                .fresh
                .iter()
                .zip(&s.scores)
                .map(|(&row, &score)| Candidate { score, row })
                .max();
            match best {
                Some(b) if b > cur => cur = b,
                _ => return cur,
            }
        }
    }

    /// Best-first search of `layer` from `entry` with a beam of `ef`, leaving the results,
    /// best first, in `s.found`. Node `q` itself is never returned.
    fn search_layer(
        &self,
        q: &[f32],
        q_row: u32,
        entry: Candidate,
        layer: usize,
        ef: usize,
        s: &mut Scratch,
    ) {
        s.visit(q_row);
        s.visit(entry.row);
        s.candidates.clear();
        s.results.clear();
        s.candidates.push(entry);
        s.results.push(Reverse(entry));
        while let Some(c) = s.candidates.pop() {
            let worst = s.results.peek().map_or(f32::NEG_INFINITY, |r| r.0.score);
            if s.results.len() >= ef && c.score < worst {
                break;
            }
            if let Some(next) = s.candidates.peek() {
                let (lists, list) = self.lists(layer, next.row);
                simd::prefetch_bytes(lists.slots(list).as_ptr(), lists.cap * 4);
            }
            let (lists, list) = self.lists(layer, c.row);
            s.fresh.clear();
            for slot in lists.slots(list) {
                let nb = slot.load(Relaxed);
                if nb == NO_NEIGHBOUR {
                    break;
                }
                if s.visit(nb) {
                    self.rows.prefetch(nb);
                    s.fresh.push(nb);
                }
            }
            self.rows.dots(q, &s.fresh, &mut s.scores);
            for (&row, &score) in s.fresh.iter().zip(&s.scores) {
                let worst = s.results.peek().map_or(f32::NEG_INFINITY, |r| r.0.score);
                if s.results.len() < ef || score > worst {
                    let cand = Candidate { score, row };
                    s.candidates.push(cand);
                    s.results.push(Reverse(cand));
                    if s.results.len() > ef {
                        s.results.pop();
                    }
                }
            }
        }
        s.clear_visited();
        s.found.clear();
        s.found.extend(s.results.drain().map(|r| r.0));
        s.found.sort_unstable_by(|a, b| b.cmp(a));
    }

    /// The HNSW heuristic over `cands` (scores relative to one base node, best first): keeps a
    /// candidate unless it scores at least as high with a kept one as with the base, up to
    /// `m` of them. Fewer than `m` candidates are all kept.
    fn select(
        &self,
        cands: &[Candidate],
        m: usize,
        out: &mut Vec<Candidate>,
        ids: &mut Vec<u32>,
        dots: &mut Vec<f32>,
    ) {
        out.clear();
        if cands.len() <= m {
            out.extend_from_slice(cands);
            return;
        }
        ids.clear();
        for &c in cands {
            if out.len() >= m {
                break;
            }
            let v = self.rows.row(c.row);
            // Most candidates are dropped by one of the first kept neighbours: compare in
            // small groups and stop at the first that dominates.
            let dominated = ids.chunks(4).any(|group| {
                self.rows.dots(v, group, dots);
                dots.iter().any(|&d| d >= c.score)
            });
            if !dominated {
                out.push(c);
                ids.push(c.row);
            }
        }
    }

    /// Adds `link` (scored relative to `node`) to `node`'s list on `layer`.
    fn add_link(&self, node: u32, layer: usize, link: Candidate, s: &mut Scratch) {
        let (lists, list) = self.lists(layer, node);
        let _guard = NodeGuard::lock(&self.locks[node as usize]);
        lists.read(list, &mut s.merged);
        if s.merged.iter().any(|c| c.row == link.row) {
            return;
        }
        let pos = s.merged.partition_point(|c| *c > link);
        if s.merged.len() < lists.cap {
            s.merged.insert(pos, link);
            lists.write(list, &s.merged);
            return;
        }
        match self.prune {
            Prune::Nearest => {
                if pos < lists.cap {
                    s.merged.pop();
                    s.merged.insert(pos, link);
                    lists.write(list, &s.merged);
                }
            }
            Prune::Heuristic => {
                s.merged.insert(pos, link);
                let mut kept = std::mem::take(&mut s.selected);
                self.select(
                    &s.merged,
                    lists.cap,
                    &mut kept,
                    &mut s.selected_ids,
                    &mut s.scores,
                );
                lists.write(list, &kept);
                s.selected = kept;
            }
        }
    }

    /// Inserts node `q` (not the first one).
    fn insert(&self, q: u32, s: &mut Scratch) {
        let level = self.levels[q as usize] as usize;
        let top = lock(&self.top);
        let (entry, top_level) = *top;
        // A node that raises the top keeps the top locked until it is linked, as in hnswlib.
        let top = (level > top_level).then_some(top);
        let v = self.rows.row(q);
        self.rows.dots(v, &[entry], &mut s.scores);
        let mut cur = Candidate {
            score: s.scores[0],
            row: entry,
        };
        for layer in (level + 1..=top_level).rev() {
            cur = self.greedy(v, cur, layer, s);
        }
        for layer in (0..=level.min(top_level)).rev() {
            let cap = self.lists(layer, q).0.cap;
            self.search_layer(v, q, cur, layer, self.ef, s);
            let found = std::mem::take(&mut s.found);
            let mut selected = std::mem::take(&mut s.selected);
            self.select(
                &found,
                cap,
                &mut selected,
                &mut s.selected_ids,
                &mut s.scores,
            );
            {
                let (lists, list) = self.lists(layer, q);
                let _guard = NodeGuard::lock(&self.locks[q as usize]);
                lists.write(list, &selected);
            }
            for &c in &selected {
                self.add_link(
                    c.row,
                    layer,
                    Candidate {
                        score: c.score,
                        row: q,
                    },
                    s,
                );
            }
            cur = found[0];
            s.found = found;
            s.selected = selected;
        }
        if let Some(mut top) = top {
            *top = (q, level);
        }
    }

    fn export(self, dim: usize, m: usize, max_norm: f32, metric: CoarseMetric) -> ExportedGraph {
        let n = self.levels.len();
        let (entry_point, top_level) = *lock(&self.top);
        let mut upper = Vec::with_capacity(top_level);
        for layer in 1..=top_level {
            let nodes: Vec<u32> = (0..n as u32)
                .filter(|&r| self.levels[r as usize] as usize >= layer)
                .collect();
            let mut links = Vec::with_capacity(nodes.len() * m);
            for &r in &nodes {
                let (lists, list) = self.lists(layer, r);
                links.extend(lists.slots(list).iter().map(|x| x.load(Relaxed)));
            }
            upper.push((nodes, links));
        }
        ExportedGraph {
            meta: GraphMeta {
                n_nodes: n as u64,
                coarse_dim: dim as u32,
                m: m as u32,
                m0: self.layer0.cap as u32,
                n_layers: (top_level + 1) as u32,
                entry_point,
                max_norm,
                metric: metric.code(),
                reserved: [0; 7],
            },
            layer0: self.layer0.ids.iter().map(|x| x.load(Relaxed)).collect(),
            upper,
        }
    }
}

/// Levels drawn as `hnsw_rs` draws them: `⌊−ln(U) / ln(m)⌋`, capped below [`MAX_LAYER`].
fn draw_levels(n: usize, m: usize, seed: u64) -> Vec<u8> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(1);
    let scale = 1.0 / (m as f64).ln();
    (0..n)
        .map(|_| {
            let u: f64 = rng.gen();
            let level = (-(1.0 - u).ln() * scale).floor() as usize;
            level.min(MAX_LAYER - 1) as u8
        })
        .collect()
}

/// Builds an HNSW graph over the rows of `coarse` (n × `dim`, the prefix of every item) in a
/// seeded random order, on the current rayon pool; with one thread the result is
/// bit-reproducible. `on_inserted` is called with counts as insertion progresses.
///
/// Parameters must have been validated (`m` in 2..=256, `ef_construction` ≥ 1) and `coarse`
/// must hold at least one row.
pub fn build_native(
    coarse: &[f32],
    dim: usize,
    params: &GraphParams,
    prune: Prune,
    on_inserted: &(dyn Fn(u64) + Sync),
) -> ExportedGraph {
    let n = coarse.len() / dim;
    assert!(n > 0 && n < u32::MAX as usize, "{n} rows");
    let (rows, max_norm) = Rows::new(coarse, dim, params.metric);
    let mut order: Vec<u32> = (0..n as u32).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(params.seed));
    let levels = draw_levels(n, params.m, params.seed);
    let mut upper_base = vec![u32::MAX; n];
    let mut n_upper = 0usize;
    for (base, &level) in upper_base.iter_mut().zip(&levels) {
        if level > 0 {
            *base = n_upper as u32;
            n_upper += level as usize;
        }
    }
    let first = order[0];
    let builder = Builder {
        rows,
        upper_base,
        layer0: Lists::new(n, 2 * params.m),
        upper: Lists::new(n_upper, params.m),
        locks: HugeZeroed::new(n),
        top: Mutex::new((first, levels[first as usize] as usize)),
        levels,
        ef: params.ef_construction.max(1),
        prune,
    };
    let serial = if rayon::current_num_threads() <= 1 {
        n
    } else {
        n.min(SERIAL_PREFIX)
    };
    let mut s = Scratch::new(n);
    for (i, &q) in order[..serial].iter().enumerate().skip(1) {
        builder.insert(q, &mut s);
        if i % 1000 == 999 {
            on_inserted(1000);
        }
    }
    on_inserted((serial % 1000) as u64);
    drop(s);
    let next = AtomicUsize::new(serial);
    (0..rayon::current_num_threads())
        .into_par_iter()
        .for_each(|_| {
            let mut s: Option<Scratch> = None;
            loop {
                let start = next.fetch_add(BATCH, Relaxed);
                if start >= n {
                    break;
                }
                let s = s.get_or_insert_with(|| Scratch::new(n));
                let batch = &order[start..(start + BATCH).min(n)];
                for &q in batch {
                    builder.insert(q, s);
                }
                on_inserted(batch.len() as u64);
            }
        });
    builder.export(dim, params.m, max_norm, params.metric)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::build::write_graph;
    use crate::graph::CoarseGraph;

    fn params(seed: u64) -> GraphParams {
        GraphParams {
            m: 8,
            ef_construction: 40,
            seed,
            metric: CoarseMetric::InnerProduct,
            ..Default::default()
        }
    }

    fn data(n: usize, dim: usize) -> Vec<f32> {
        crate::synth::MatryoshkaLike::with_dim(dim, 9).items(n)
    }

    fn one_thread<T: Send>(f: impl FnOnce() -> T + Send) -> T {
        rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap()
            .install(f)
    }

    #[test]
    fn one_thread_is_bit_reproducible_and_seed_dependent() {
        let x = data(3000, 24);
        let a = one_thread(|| build_native(&x, 24, &params(1), Prune::Nearest, &|_| {}));
        let b = one_thread(|| build_native(&x, 24, &params(1), Prune::Nearest, &|_| {}));
        let c = one_thread(|| build_native(&x, 24, &params(2), Prune::Nearest, &|_| {}));
        assert_eq!(a, b);
        assert_ne!(a.layer0, c.layer0);
    }

    #[test]
    fn exported_graph_passes_verify_for_both_metrics_and_prunes() {
        let x = data(2500, 20);
        for metric in [CoarseMetric::InnerProduct, CoarseMetric::ReducedL2] {
            for prune in [Prune::Nearest, Prune::Heuristic] {
                let p = GraphParams {
                    metric,
                    ..params(3)
                };
                let g = build_native(&x, 20, &p, prune, &|_| {});
                assert_eq!(g.meta.metric, metric.code());
                assert!(
                    g.meta.n_layers >= 2,
                    "2500 nodes with m 8 have upper layers"
                );
                let bytes = write_graph(
                    std::io::Cursor::new(Vec::new()),
                    &g,
                    &crate::graph::build::BuildInfo {
                        crate_version: "test".into(),
                        builder: "native".into(),
                        m: 8,
                        ef_construction: 40,
                        max_layer: MAX_LAYER as u32,
                        seed: 3,
                        threads: 0,
                        build_seconds: 0.0,
                    },
                )
                .unwrap()
                .into_inner();
                let graph =
                    CoarseGraph::from_bytes(crate::bytes::Bytes::copy_from(&bytes), "t").unwrap();
                graph.verify().unwrap();
                // Every node has at least one layer-0 link.
                assert!((0..2500u32).all(|r| graph.layer0_neighbours(r)[0] != NO_NEIGHBOUR));
            }
        }
    }

    #[test]
    fn lists_are_best_first() {
        let dim = 16;
        let x = data(1500, dim);
        let g = build_native(&x, dim, &params(4), Prune::Nearest, &|_| {});
        let m0 = g.meta.m0 as usize;
        for r in 0..1500 {
            let row = &x[r * dim..(r + 1) * dim];
            let scores: Vec<f32> = g.layer0[r * m0..(r + 1) * m0]
                .iter()
                .take_while(|&&x| x != NO_NEIGHBOUR)
                .map(|&nb| simd::dot(row, &x[nb as usize * dim..(nb as usize + 1) * dim]))
                .collect();
            assert!(
                scores
                    .windows(2)
                    .all(|w| w[0] >= w[1] - 1e-4 * w[0].abs().max(1.0)),
                "row {r}: {scores:?}"
            );
        }
    }

    #[test]
    fn tiny_inputs() {
        for n in [1usize, 2, 3, 17] {
            let x = data(n, 8);
            let g = build_native(&x, 8, &params(5), Prune::Nearest, &|_| {});
            assert_eq!(g.meta.n_nodes, n as u64);
            assert_eq!(g.layer0.len(), n * 16);
            if n > 1 {
                assert!((0..n).all(|r| g.layer0[r * 16] != NO_NEIGHBOUR));
            }
        }
    }
}
