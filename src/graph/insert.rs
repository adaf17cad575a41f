//! The native HNSW builder: inserts the coarse prefixes into flat, preallocated neighbour
//! lists, in parallel on the current rayon pool, and hands back the [`ExportedGraph`] that
//! [`super::build::write_graph`] writes (the same file `hnsw_rs`'s export produces).
//!
//! ```text
//! rows     the rows as scored: 8-bit codes, one cache line per 64-d row (default), or an
//!          aligned f32 copy (super::scoring)
//! layer 0  n × m0 u32 ids, best first, padded with NO_NEIGHBOUR; the same shape of f32 scores
//! layer l  one m-slot list per node of level ≥ l, found through upper_base[node] + l − 1
//! locks    one spin lock per node, held only while that node's lists are rewritten
//! ```
//!
//! All of these live in memory advised for transparent huge pages: insertion reads rows and
//! lists at random, and with 4 KiB pages nearly every such read would also miss the TLB.
//!
//! Neighbour selection has `hnsw_rs`'s semantics ([`super::build::CoarseDistance`]): pairs
//! are ordered by a dot product (see [`super::scoring`]), higher meaning closer. A new node keeps
//! the candidates the HNSW heuristic selects (a candidate is dropped when it scores at least
//! as high with an already selected neighbour as with the node); its neighbours take it back
//! as `hnsw_rs` does, keeping their best `m0` (or `m`) links ([`Prune::Nearest`]), or through
//! the heuristic again as hnswlib does ([`Prune::Heuristic`]). With [`Scoring::Sq8`] the
//! scores are those of the node's exact prefix with its candidates' 8-bit codes.
//!
//! Searches read neighbour lists without locks: every slot is an atomic `u32`, so a list being
//! rewritten concurrently reads as a mix of old and new ids, each of them a valid node. With
//! one thread nothing races and the graph is bit-reproducible for a seed.

use super::build::{CoarseMetric, ExportedGraph, GraphParams, MAX_LAYER};
use super::scoring::{ExactRows, Prepared, Space, Sq8Codes};
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

/// How the builder scores pairs of rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scoring {
    /// The node being inserted, exact, against 8-bit codes of the others
    /// ([`super::scoring::Sq8Codes`]): a quarter of the memory traffic. The default.
    #[default]
    Sq8,
    /// Exact `f32` dot products ([`super::scoring::ExactRows`]).
    Exact,
}

/// Choices of the native builder beyond [`GraphParams`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NativeOptions {
    /// How full lists take reverse links.
    pub prune: Prune,
    /// How pairs are scored.
    pub scoring: Scoring,
}

/// A scored row as one orderable `u64`: the score's bits, made monotone, above the complement
/// of the row. Keys order like [`crate::candidate::Candidate`] (by score, ties to the smaller
/// row) and compare in one instruction, which the heaps and sorts of insertion do millions of
/// times.
pub(super) type Key = u64;

#[inline]
pub(super) fn key(score: f32, row: u32) -> Key {
    let b = score.to_bits();
    let ordered = if b >> 31 == 1 { !b } else { b | 0x8000_0000 };
    (u64::from(ordered) << 32) | u64::from(!row)
}

#[inline]
fn key_score(k: Key) -> f32 {
    let ordered = (k >> 32) as u32;
    let b = if ordered >> 31 == 1 {
        ordered & 0x7fff_ffff
    } else {
        !ordered
    };
    f32::from_bits(b)
}

#[inline]
pub(super) fn key_row(k: Key) -> u32 {
    !(k as u32)
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

    /// Starts loading a list (and its scores with `scores`).
    #[inline]
    fn prefetch(&self, list: usize, scores: bool) {
        simd::prefetch_bytes(self.ids[list * self.cap..].as_ptr(), self.cap * 4);
        if scores {
            simd::prefetch_bytes(self.scores[list * self.cap..].as_ptr(), self.cap * 4);
        }
    }

    /// The list as keys, best first (the owner's lock held).
    fn read(&self, list: usize, out: &mut Vec<Key>) {
        out.clear();
        let scores = &self.scores[list * self.cap..(list + 1) * self.cap];
        for (id, score) in self.slots(list).iter().zip(scores) {
            let row = id.load(Relaxed);
            if row == NO_NEIGHBOUR {
                break;
            }
            out.push(key(f32::from_bits(score.load(Relaxed)), row));
        }
    }

    /// Replaces the list (the owner's lock held); `links` must be best first.
    fn write(&self, list: usize, links: &[Key]) {
        debug_assert!(links.len() <= self.cap);
        let scores = &self.scores[list * self.cap..(list + 1) * self.cap];
        for (i, (id, score)) in self.slots(list).iter().zip(scores).enumerate() {
            match links.get(i) {
                Some(&k) => {
                    id.store(key_row(k), Relaxed);
                    score.store(key_score(k).to_bits(), Relaxed);
                }
                None => id.store(NO_NEIGHBOUR, Relaxed),
            }
        }
    }
}

/// Per-thread working memory, reused by every insertion.
pub(super) struct Scratch {
    /// One bit per node; the bits set are listed in `touched` and cleared after each search.
    visited: Vec<u64>,
    touched: Vec<u32>,
    /// Candidates to expand (best on top) and results (worst on top).
    candidates: BinaryHeap<Key>,
    results: BinaryHeap<Reverse<Key>>,
    fresh: Vec<u32>,
    scores: Vec<f32>,
    /// The node being inserted, and a kept neighbour in the selection heuristic.
    query: Prepared,
    probe: Prepared,
    /// The last search's results, best first.
    found: Vec<Key>,
    /// The new node's links, and a full list re-selected by the heuristic.
    linked: Vec<Key>,
    selected: Vec<Key>,
    /// Selection heuristic: candidates still undominated, and their rows.
    open: Vec<Key>,
    open_rows: Vec<u32>,
    merged: Vec<Key>,
}

impl Scratch {
    /// Working memory for a graph of `n` nodes.
    pub(super) fn new(n: usize) -> Scratch {
        Scratch {
            visited: vec![0; n.div_ceil(64)],
            touched: Vec::new(),
            candidates: BinaryHeap::new(),
            results: BinaryHeap::new(),
            fresh: Vec::new(),
            scores: Vec::new(),
            query: Prepared::default(),
            probe: Prepared::default(),
            found: Vec::new(),
            linked: Vec::new(),
            selected: Vec::new(),
            open: Vec::new(),
            open_rows: Vec::new(),
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

/// Buffers of the selection heuristic.
struct SelectBuffers<'a> {
    open: &'a mut Vec<Key>,
    open_rows: &'a mut Vec<u32>,
    scores: &'a mut Vec<f32>,
    probe: &'a mut Prepared,
}

/// The graph under construction.
pub(super) struct Builder<S> {
    space: S,
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

impl<S: Space> Builder<S> {
    /// An empty graph over `space` with these node levels, `first` already in as the entry
    /// point.
    pub(super) fn new(
        space: S,
        levels: Vec<u8>,
        first: u32,
        params: &GraphParams,
        prune: Prune,
    ) -> Builder<S> {
        let n = levels.len();
        let mut upper_base = vec![u32::MAX; n];
        let mut n_upper = 0usize;
        for (base, &level) in upper_base.iter_mut().zip(&levels) {
            if level > 0 {
                *base = n_upper as u32;
                n_upper += level as usize;
            }
        }
        Builder {
            space,
            upper_base,
            layer0: Lists::new(n, 2 * params.m),
            upper: Lists::new(n_upper, params.m),
            locks: HugeZeroed::new(n),
            top: Mutex::new((first, levels[first as usize] as usize)),
            levels,
            ef: params.ef_construction.max(1),
            prune,
        }
    }

    /// The rows being built on.
    pub(super) fn space(&self) -> &S {
        &self.space
    }

    /// Inserts `order` (nodes not yet in the graph) on the current rayon pool: the first
    /// ones one at a time, then in batches claimed by the threads. With one thread the
    /// insertions happen in `order`, so the graph is reproducible.
    pub(super) fn insert_many(&self, order: &[u32], on_inserted: &(dyn Fn(u64) + Sync)) {
        self.for_each_node(order, on_inserted, &|b, q, s| b.insert(q, s));
    }

    /// [`Builder::enhance`] for every node of `order`, in parallel as [`Builder::insert_many`].
    pub(super) fn enhance_many(&self, order: &[u32]) {
        self.for_each_node(order, &|_| {}, &|b, q, s| b.enhance(q, s));
    }

    /// Runs `f` for every node of `order`: the first ones one at a time, then in batches
    /// claimed by the threads of the current rayon pool.
    fn for_each_node(
        &self,
        order: &[u32],
        on_inserted: &(dyn Fn(u64) + Sync),
        f: &(dyn Fn(&Self, u32, &mut Scratch) + Sync),
    ) {
        let n = order.len();
        let serial = if rayon::current_num_threads() <= 1 {
            n
        } else {
            n.min(SERIAL_PREFIX)
        };
        let mut s = Scratch::new(self.levels.len());
        for (i, &q) in order[..serial].iter().enumerate() {
            f(self, q, &mut s);
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
                    let s = s.get_or_insert_with(|| Scratch::new(self.levels.len()));
                    let batch = &order[start..(start + BATCH).min(n)];
                    for &q in batch {
                        f(self, q, s);
                    }
                    on_inserted(batch.len() as u64);
                }
            });
    }

    /// Gives `node` the layer-0 links the heuristic selects from `cands` (keys scored
    /// relative to `node`, any order), without reverse links.
    pub(super) fn set_links(&self, node: u32, cands: &mut [Key], s: &mut Scratch) {
        cands.sort_unstable();
        cands.reverse();
        let buffers = SelectBuffers {
            open: &mut s.open,
            open_rows: &mut s.open_rows,
            scores: &mut s.scores,
            probe: &mut s.probe,
        };
        self.select(cands, self.layer0.cap, &mut s.linked, buffers);
        let _guard = NodeGuard::lock(&self.locks[node as usize]);
        self.layer0.write(node as usize, &s.linked);
    }

    /// Offers `node` as a reverse link to each of its layer-0 neighbours.
    pub(super) fn link_back(&self, node: u32, s: &mut Scratch) {
        let mut links = std::mem::take(&mut s.linked);
        {
            let _guard = NodeGuard::lock(&self.locks[node as usize]);
            self.layer0.read(node as usize, &mut links);
        }
        for &k in &links {
            self.add_link(key_row(k), 0, key(key_score(k), node), s);
        }
        s.linked = links;
    }

    /// Searches layer 0 for node `q` from the entry point and re-selects its links from the
    /// search results together with the links it has, then offers `q` back to them (the
    /// connectivity enhancement of a query-guided graph).
    pub(super) fn enhance(&self, q: u32, s: &mut Scratch) {
        let mut v = std::mem::take(&mut s.query);
        self.space.prepare_exact(q, &mut v);
        let entry = lock(&self.top).0;
        self.space.scores(&v, &[entry], &mut s.scores);
        self.search_layer(&v, q, key(s.scores[0], entry), 0, self.ef, s);
        {
            let _guard = NodeGuard::lock(&self.locks[q as usize]);
            self.layer0.read(q as usize, &mut s.merged);
        }
        for &k in &s.found {
            if !s.merged.iter().any(|&x| key_row(x) == key_row(k)) {
                s.merged.push(k);
            }
        }
        s.merged.sort_unstable();
        s.merged.reverse();
        let mut linked = std::mem::take(&mut s.linked);
        let buffers = SelectBuffers {
            open: &mut s.open,
            open_rows: &mut s.open_rows,
            scores: &mut s.scores,
            probe: &mut s.probe,
        };
        self.select(&s.merged, self.layer0.cap, &mut linked, buffers);
        {
            let _guard = NodeGuard::lock(&self.locks[q as usize]);
            self.layer0.write(q as usize, &linked);
        }
        for &k in &linked {
            self.add_link(key_row(k), 0, key(key_score(k), q), s);
        }
        s.linked = linked;
        s.query = v;
    }

    /// Whether each node can be reached from the entry point on layer 0.
    pub(super) fn reachable(&self) -> Vec<bool> {
        let mut parent = vec![u32::MAX; self.levels.len()];
        let entry = lock(&self.top).0;
        parent[entry as usize] = entry;
        self.spread(entry, &mut parent);
        parent.iter().map(|&p| p != u32::MAX).collect()
    }

    /// Marks every node reachable from `from` that has no parent yet with its parent on a
    /// path from `from`.
    fn spread(&self, from: u32, parent: &mut [u32]) {
        let mut stack = vec![from];
        while let Some(x) = stack.pop() {
            for slot in self.layer0.slots(x as usize) {
                let nb = slot.load(Relaxed);
                if nb == NO_NEIGHBOUR {
                    break;
                }
                if parent[nb as usize] == u32::MAX {
                    parent[nb as usize] = x;
                    stack.push(nb);
                }
            }
        }
    }

    /// Makes every node reachable from the entry point on layer 0 (one thread). A spanning
    /// tree from the entry point is kept; each unreached node is linked in from the best
    /// reached nodes a layer-0 search finds for it, into a free slot or in place of the
    /// host's worst link that is not a tree link. Tree links are never displaced, so what is
    /// reached stays reached. Returns how many links were forced in.
    pub(super) fn connect(&self, s: &mut Scratch) -> usize {
        let n = self.levels.len();
        let entry = lock(&self.top).0;
        let mut parent = vec![u32::MAX; n];
        parent[entry as usize] = entry;
        self.spread(entry, &mut parent);
        let mut forced = 0;
        let mut v = std::mem::take(&mut s.query);
        for u in 0..n as u32 {
            if parent[u as usize] != u32::MAX {
                continue;
            }
            self.space.prepare_exact(u, &mut v);
            self.space.scores(&v, &[entry], &mut s.scores);
            self.search_layer(&v, u, key(s.scores[0], entry), 0, self.ef, s);
            // Hosts with a free slot first (they lose nothing), then any.
            let free = |b: &Self, k: &Key| {
                let slots = b.layer0.slots(key_row(*k) as usize);
                slots[slots.len() - 1].load(Relaxed) == NO_NEIGHBOUR
            };
            let (mut open, full): (Vec<Key>, Vec<Key>) =
                s.found.iter().partition(|k| free(self, k));
            open.extend(full);
            for &host_key in &open {
                let host = key_row(host_key);
                self.layer0.read(host as usize, &mut s.merged);
                if s.merged.len() == self.layer0.cap {
                    let Some(worst) = s
                        .merged
                        .iter()
                        .rposition(|&x| parent[key_row(x) as usize] != host)
                    else {
                        continue;
                    };
                    s.merged.remove(worst);
                }
                let link = key(key_score(host_key), u);
                let pos = s.merged.partition_point(|&x| x > link);
                s.merged.insert(pos, link);
                self.layer0.write(host as usize, &s.merged);
                parent[u as usize] = host;
                self.spread(u, &mut parent);
                forced += 1;
                break;
            }
        }
        s.query = v;
        forced
    }

    #[inline]
    fn lists(&self, layer: usize, node: u32) -> (&Lists, usize) {
        if layer == 0 {
            (&self.layer0, node as usize)
        } else {
            let base = self.upper_base[node as usize] as usize;
            (&self.upper, base + layer - 1)
        }
    }

    /// Collects the ids of a list into `out` (without locking).
    #[inline]
    fn neighbours(&self, layer: usize, node: u32, out: &mut Vec<u32>) {
        let (lists, list) = self.lists(layer, node);
        for slot in lists.slots(list) {
            let nb = slot.load(Relaxed);
            if nb == NO_NEIGHBOUR {
                break;
            }
            out.push(nb);
        }
    }

    /// Moves from `cur` to better-scoring neighbours on `layer` until none is better.
    fn greedy(&self, q: &Prepared, mut cur: Key, layer: usize, s: &mut Scratch) -> Key {
        loop {
            s.fresh.clear();
            self.neighbours(layer, key_row(cur), &mut s.fresh);
            self.space.scores(q, &s.fresh, &mut s.scores);
            let best = s
                .fresh
                .iter()
                .zip(&s.scores)
                .map(|(&row, &score)| key(score, row))
                .max();
            match best {
                Some(b) if b > cur => cur = b,
                _ => return cur,
            }
        }
    }

    /// Best-first search of `layer` from `entry` with a beam of `ef`, leaving the results,
    /// best first, in `s.found`. Node `q_row` itself is never returned.
    fn search_layer(
        &self,
        q: &Prepared,
        q_row: u32,
        entry: Key,
        layer: usize,
        ef: usize,
        s: &mut Scratch,
    ) {
        s.visit(q_row);
        s.visit(key_row(entry));
        s.candidates.clear();
        s.results.clear();
        s.candidates.push(entry);
        if key_row(entry) != q_row {
            // (A node re-searching the graph may be the entry point itself.)
            s.results.push(Reverse(entry));
        }
        // The worst result once there are `ef`; below it nothing is kept or expanded.
        let mut bound = 0;
        while let Some(c) = s.candidates.pop() {
            if c < bound {
                break;
            }
            if let Some(&next) = s.candidates.peek() {
                let (lists, list) = self.lists(layer, key_row(next));
                lists.prefetch(list, false);
            }
            let (lists, list) = self.lists(layer, key_row(c));
            // Unvisited neighbours, appended without a branch on the (unpredictable) visited
            // bit: every id is written, the length grows only for new ones.
            s.fresh.resize(lists.cap, 0);
            let mut fresh = 0;
            for slot in lists.slots(list) {
                let nb = slot.load(Relaxed);
                if nb == NO_NEIGHBOUR {
                    break;
                }
                let (word, bit) = (nb as usize / 64, 1u64 << (nb % 64));
                let w = s.visited[word];
                s.visited[word] = w | bit;
                s.fresh[fresh] = nb;
                fresh += usize::from(w & bit == 0);
            }
            s.fresh.truncate(fresh);
            s.touched.extend_from_slice(&s.fresh);
            for &nb in &s.fresh {
                self.space.prefetch(nb);
            }
            self.space.scores(q, &s.fresh, &mut s.scores);
            for (&row, &score) in s.fresh.iter().zip(&s.scores) {
                let k = key(score, row);
                if k > bound {
                    s.candidates.push(k);
                    if s.results.len() < ef {
                        s.results.push(Reverse(k));
                    } else if let Some(mut worst) = s.results.peek_mut() {
                        // One sift-down instead of a push and a pop.
                        *worst = Reverse(k);
                    }
                    if s.results.len() >= ef {
                        bound = s.results.peek().map_or(0, |r| r.0);
                    }
                }
            }
        }
        s.clear_visited();
        s.found.clear();
        s.found.extend(s.results.drain().map(|r| r.0));
        s.found.sort_unstable();
        s.found.reverse();
    }

    /// The HNSW heuristic over `cands` (keys scored relative to one base node, best first):
    /// keeps a candidate unless it scores at least as high with a kept one as with the base,
    /// up to `m` of them. Fewer than `m` candidates are all kept.
    ///
    /// Worked the other way round, with the same result: each kept candidate scores all later
    /// undominated ones at once and drops those it dominates, so the next undominated one is
    /// kept. The first kept ones (the strongest rows) dominate most candidates, so few are
    /// scored twice, and each kept row is prepared once instead of every candidate.
    fn select(&self, cands: &[Key], m: usize, out: &mut Vec<Key>, b: SelectBuffers<'_>) {
        out.clear();
        if cands.len() <= m {
            out.extend_from_slice(cands);
            return;
        }
        b.open.clear();
        b.open.extend_from_slice(cands);
        while out.len() < m && !b.open.is_empty() {
            let kept = b.open[0];
            out.push(kept);
            if out.len() == m {
                break;
            }
            self.space.prepare_stored(key_row(kept), b.probe);
            b.open_rows.clear();
            b.open_rows.extend(b.open[1..].iter().map(|&k| key_row(k)));
            self.space.scores(b.probe, b.open_rows, b.scores);
            let mut i = 0;
            b.open.retain(|&k| {
                i += 1;
                // The kept row itself (i = 1) leaves; the others stay while undominated.
                i > 1 && b.scores[i - 2] < key_score(k)
            });
        }
    }

    /// Adds `link` (scored relative to `node`) to `node`'s list on `layer`.
    fn add_link(&self, node: u32, layer: usize, link: Key, s: &mut Scratch) {
        let (lists, list) = self.lists(layer, node);
        let _guard = NodeGuard::lock(&self.locks[node as usize]);
        lists.read(list, &mut s.merged);
        let row = key_row(link);
        if s.merged.iter().any(|&k| key_row(k) == row) {
            return;
        }
        let pos = s.merged.partition_point(|&k| k > link);
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
                let buffers = SelectBuffers {
                    open: &mut s.open,
                    open_rows: &mut s.open_rows,
                    scores: &mut s.scores,
                    probe: &mut s.probe,
                };
                self.select(&s.merged, lists.cap, &mut s.selected, buffers);
                lists.write(list, &s.selected);
            }
        }
    }

    /// Inserts node `q` (not the first one).
    pub(super) fn insert(&self, q: u32, s: &mut Scratch) {
        let level = self.levels[q as usize] as usize;
        let top = lock(&self.top);
        let (entry, top_level) = *top;
        // A node that raises the top keeps the top locked until it is linked, as in hnswlib.
        let top = (level > top_level).then_some(top);
        let mut v = std::mem::take(&mut s.query);
        self.space.prepare_exact(q, &mut v);
        self.space.scores(&v, &[entry], &mut s.scores);
        let mut cur = key(s.scores[0], entry);
        for layer in (level + 1..=top_level).rev() {
            cur = self.greedy(&v, cur, layer, s);
        }
        let mut selected = std::mem::take(&mut s.linked);
        for layer in (0..=level.min(top_level)).rev() {
            let cap = self.lists(layer, q).0.cap;
            self.search_layer(&v, q, cur, layer, self.ef, s);
            let buffers = SelectBuffers {
                open: &mut s.open,
                open_rows: &mut s.open_rows,
                scores: &mut s.scores,
                probe: &mut s.probe,
            };
            self.select(&s.found, cap, &mut selected, buffers);
            // The reverse links below read these lists and scores: start loading them.
            for &k in &selected {
                let (lists, list) = self.lists(layer, key_row(k));
                lists.prefetch(list, true);
            }
            {
                let (lists, list) = self.lists(layer, q);
                let _guard = NodeGuard::lock(&self.locks[q as usize]);
                lists.write(list, &selected);
            }
            for &k in &selected {
                self.add_link(key_row(k), layer, key(key_score(k), q), s);
            }
            cur = s.found[0];
        }
        s.query = v;
        s.linked = selected;
        if let Some(mut top) = top {
            *top = (q, level);
        }
    }

    pub(super) fn export(
        self,
        dim: usize,
        m: usize,
        max_norm: f32,
        metric: CoarseMetric,
    ) -> ExportedGraph {
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
                space: 0,
                reserved: [0; 6],
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
    options: &NativeOptions,
    on_inserted: &(dyn Fn(u64) + Sync),
) -> ExportedGraph {
    let n = coarse.len() / dim;
    assert!(n > 0 && n < u32::MAX as usize, "{n} rows");
    match options.scoring {
        Scoring::Sq8 => {
            let (space, max_norm) = Sq8Codes::new(coarse, dim, params.metric);
            insert_all(space, dim, max_norm, params, options.prune, on_inserted)
        }
        Scoring::Exact => {
            let (space, max_norm) = ExactRows::new(coarse, dim, params.metric);
            insert_all(space, dim, max_norm, params, options.prune, on_inserted)
        }
    }
}

/// [`build_native`] over the rows of `space`.
fn insert_all<S: Space>(
    space: S,
    dim: usize,
    max_norm: f32,
    params: &GraphParams,
    prune: Prune,
    on_inserted: &(dyn Fn(u64) + Sync),
) -> ExportedGraph {
    let n = space.len();
    let mut order: Vec<u32> = (0..n as u32).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(params.seed));
    let levels = draw_levels(n, params.m, params.seed);
    let builder = Builder::new(space, levels, order[0], params, prune);
    on_inserted(1);
    builder.insert_many(&order[1..], on_inserted);
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
        crate::threads::with_threads(1, f).unwrap()
    }

    #[test]
    fn one_thread_is_bit_reproducible_and_seed_dependent() {
        let x = data(3000, 24);
        let a = one_thread(|| build_native(&x, 24, &params(1), &NativeOptions::default(), &|_| {}));
        let b = one_thread(|| build_native(&x, 24, &params(1), &NativeOptions::default(), &|_| {}));
        let c = one_thread(|| build_native(&x, 24, &params(2), &NativeOptions::default(), &|_| {}));
        assert_eq!(a, b);
        assert_ne!(a.layer0, c.layer0);
    }

    #[test]
    fn exported_graph_passes_verify_for_both_metrics_and_prunes() {
        let x = data(2500, 20);
        for metric in [CoarseMetric::InnerProduct, CoarseMetric::ReducedL2] {
            for (prune, scoring) in [
                (Prune::Nearest, Scoring::Sq8),
                (Prune::Heuristic, Scoring::Exact),
            ] {
                let p = GraphParams {
                    metric,
                    ..params(3)
                };
                let g = build_native(&x, 20, &p, &NativeOptions { prune, scoring }, &|_| {});
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
        // With exact scoring the stored order is the order of the exact dot products.
        let dim = 16;
        let x = data(1500, dim);
        let exact = NativeOptions {
            scoring: Scoring::Exact,
            ..Default::default()
        };
        let g = build_native(&x, dim, &params(4), &exact, &|_| {});
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
            let g = build_native(&x, 8, &params(5), &NativeOptions::default(), &|_| {});
            assert_eq!(g.meta.n_nodes, n as u64);
            assert_eq!(g.layer0.len(), n * 16);
            if n > 1 {
                assert!((0..n).all(|r| g.layer0[r * 16] != NO_NEIGHBOUR));
            }
        }
    }
}
