//! A query-guided coarse graph (RoarGraph, Chen et al., PVLDB 17(11) 2024): neighbours chosen
//! through sample queries rather than from the items alone, for queries that come from
//! another distribution than the items (a query encoder and an item encoder).
//!
//! ```text
//! sample queries ──► exact top-k items of each (k ≈ 100, blocked, parallel)
//!                ──► projection: item x takes as candidates the items that share a sample
//!                    query's top-k with it (its best-ranked appearances first, ≤ 500)
//!                ──► the HNSW heuristic keeps ≤ 2M of them; reverse links as in HNSW
//!                ──► enhancement: every node searches the graph from the entry point and
//!                    re-selects its links from the results and the links it has (RoarGraph's
//!                    connectivity enhancement), offering itself back to them
//!                ──► nodes still unreachable are linked in by force (optional)
//!                ──► one layer, entry point = the item best for the mean sample query
//! ```
//!
//! The result is an [`ExportedGraph`] of one layer, written and searched like the HNSW one.

use super::build::{CoarseMetric, ExportedGraph, GraphParams};
use super::insert::{key, Builder, Key, Prune, Scoring, Scratch};
use super::scoring::{ExactRows, Prepared, Space, Sq8Codes};
use crate::exact::rows_top_k;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use std::time::Instant;

/// Parameters of a query-guided build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuidedParams {
    /// `M`: the one layer keeps up to `2·M` links per node, as layer 0 of the HNSW graph.
    pub m: usize,
    /// Beam of the searches of the enhancement pass.
    pub ef_construction: usize,
    /// Exact neighbours taken per sample query (RoarGraph: 100).
    pub k: usize,
    /// Most candidates an item takes from the top lists it appears in (RoarGraph: 500).
    pub max_candidates: usize,
    /// Seed of the order of the enhancement pass.
    pub seed: u64,
    /// How pairs of items are scored.
    pub scoring: Scoring,
    /// Whether nodes still unreachable after the enhancement are linked in by force (each
    /// such link displaces its host's worst link that is not on the spanning tree).
    pub connect_all: bool,
}

impl Default for GuidedParams {
    fn default() -> Self {
        GuidedParams {
            m: 16,
            ef_construction: 200,
            k: 100,
            max_candidates: 500,
            seed: 42,
            scoring: Scoring::default(),
            connect_all: true,
        }
    }
}

/// What a query-guided build did.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct GuidedReport {
    /// Items in at least one sample query's top-k (linked by the projection).
    pub covered: usize,
    /// Nodes whose links were re-selected with a search of the graph (all of them).
    pub enhanced: usize,
    /// Nodes not reachable from the entry point after that.
    pub unreachable_before: usize,
    /// Of those, nodes linked in by force ([`GuidedParams::connect_all`]).
    pub forced: usize,
    /// Nodes still unreachable from the entry point at the end (0 unless forcing failed).
    pub unreachable: usize,
    /// Seconds for the exact top-k of the sample queries.
    pub truth_seconds: f64,
    /// Seconds for the projection and its reverse links.
    pub projection_seconds: f64,
    /// Seconds for the enhancement and connection passes.
    pub repair_seconds: f64,
}

/// Builds a query-guided graph over `items` (n × `dim`, row-major) from `queries` (sample
/// queries, row-major, `dim` wide), on the current rayon pool. Neighbours are chosen by inner
/// product, as [`CoarseMetric::InnerProduct`] chooses them.
///
/// # Panics
///
/// If there are no items or `params.m` is 0.
pub fn build_query_guided(
    items: &[f32],
    dim: usize,
    queries: &[f32],
    params: &GuidedParams,
) -> (ExportedGraph, GuidedReport) {
    match params.scoring {
        Scoring::Sq8 => {
            let (space, max_norm) = Sq8Codes::new(items, dim, CoarseMetric::InnerProduct);
            guided(space, max_norm, items, dim, queries, params)
        }
        Scoring::Exact => {
            let (space, max_norm) = ExactRows::new(items, dim, CoarseMetric::InnerProduct);
            guided(space, max_norm, items, dim, queries, params)
        }
    }
}

/// For each item, the sample queries whose top-k hold it, best rank first (compressed rows).
struct Appearances {
    offsets: Vec<usize>,
    /// `(rank, query)` pairs.
    entries: Vec<(u32, u32)>,
}

impl Appearances {
    fn new(n: usize, top: &[Vec<u32>]) -> Appearances {
        let mut offsets = vec![0usize; n + 1];
        for list in top {
            for &x in list {
                offsets[x as usize + 1] += 1;
            }
        }
        for i in 0..n {
            offsets[i + 1] += offsets[i];
        }
        let mut fill = offsets.clone();
        let mut entries = vec![(0u32, 0u32); offsets[n]];
        for (q, list) in top.iter().enumerate() {
            for (rank, &x) in list.iter().enumerate() {
                entries[fill[x as usize]] = (rank as u32, q as u32);
                fill[x as usize] += 1;
            }
        }
        let mut slices: Vec<&mut [(u32, u32)]> = Vec::with_capacity(n);
        let mut rest = entries.as_mut_slice();
        for i in 0..n {
            let (head, tail) = rest.split_at_mut(offsets[i + 1] - offsets[i]);
            slices.push(head);
            rest = tail;
        }
        slices.into_par_iter().for_each(|s| s.sort_unstable());
        Appearances { offsets, entries }
    }

    fn of(&self, item: usize) -> &[(u32, u32)] {
        &self.entries[self.offsets[item]..self.offsets[item + 1]]
    }
}

/// Per-thread memory of the projection.
struct Projection {
    scratch: Scratch,
    seen: Vec<u64>,
    cands: Vec<u32>,
    keys: Vec<Key>,
    scores: Vec<f32>,
    prepared: Prepared,
}

fn guided<S: Space>(
    space: S,
    max_norm: f32,
    items: &[f32],
    dim: usize,
    queries: &[f32],
    params: &GuidedParams,
) -> (ExportedGraph, GuidedReport) {
    let n = space.len();
    assert!(n > 0 && params.m > 0, "{n} items, m {}", params.m);
    let mut report = GuidedReport::default();
    let t = Instant::now();
    let top: Vec<Vec<u32>> = rows_top_k(items, dim, queries, params.k)
        .into_iter()
        .map(|hits| hits.into_iter().map(|c| c.row).collect())
        .collect();
    let entry = entry_point(items, dim, queries);
    report.truth_seconds = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let appearances = Appearances::new(n, &top);
    let graph_params = GraphParams {
        m: params.m,
        ef_construction: params.ef_construction,
        seed: params.seed,
        metric: CoarseMetric::InnerProduct,
        ..Default::default()
    };
    let builder = Builder::new(space, vec![0; n], entry, &graph_params, Prune::Nearest);
    let covered: Vec<u32> = (0..n as u32)
        .filter(|&x| !appearances.of(x as usize).is_empty())
        .collect();
    report.covered = covered.len();
    let new_projection = || Projection {
        scratch: Scratch::new(n),
        seen: vec![0; n.div_ceil(64)],
        cands: Vec::new(),
        keys: Vec::new(),
        scores: Vec::new(),
        prepared: Prepared::default(),
    };
    covered.par_iter().for_each_init(new_projection, |p, &x| {
        p.cands.clear();
        let mark = |seen: &mut Vec<u64>, y: u32| {
            let (w, b) = (y as usize / 64, 1u64 << (y % 64));
            let fresh = seen[w] & b == 0;
            seen[w] |= b;
            fresh
        };
        mark(&mut p.seen, x);
        'lists: for &(_, q) in appearances.of(x as usize) {
            for &y in &top[q as usize] {
                if mark(&mut p.seen, y) {
                    p.cands.push(y);
                    if p.cands.len() >= params.max_candidates {
                        break 'lists;
                    }
                }
            }
        }
        p.seen[x as usize / 64] = 0;
        for &y in &p.cands {
            p.seen[y as usize / 64] = 0;
        }
        builder.space().prepare_exact(x, &mut p.prepared);
        builder.space().scores(&p.prepared, &p.cands, &mut p.scores);
        p.keys.clear();
        p.keys
            .extend(p.cands.iter().zip(&p.scores).map(|(&y, &s)| key(s, y)));
        builder.set_links(x, &mut p.keys, &mut p.scratch);
    });
    covered
        .par_iter()
        .for_each_init(|| Scratch::new(n), |s, &x| builder.link_back(x, s));
    report.projection_seconds = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let mut order: Vec<u32> = (0..n as u32).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(params.seed));
    builder.enhance_many(&order);
    report.enhanced = n;
    // A node no list took back (a full list keeps its best links) is linked in by force.
    report.unreachable_before = unreached_of(&builder).len();
    if params.connect_all {
        report.forced = builder.connect(&mut Scratch::new(n));
    }
    report.unreachable = unreached_of(&builder).len();
    report.repair_seconds = t.elapsed().as_secs_f64();
    let graph = builder.export(dim, params.m, max_norm, CoarseMetric::InnerProduct);
    (graph, report)
}

/// Nodes the entry point does not reach.
fn unreached_of<S: Space>(builder: &Builder<S>) -> Vec<u32> {
    builder
        .reachable()
        .iter()
        .enumerate()
        .filter(|(_, &r)| !r)
        .map(|(x, _)| x as u32)
        .collect()
}

/// The item with the largest inner product with the mean sample query (row 0 without
/// queries).
fn entry_point(items: &[f32], dim: usize, queries: &[f32]) -> u32 {
    let nq = queries.len() / dim;
    if nq == 0 {
        return 0;
    }
    let mut mean = vec![0f64; dim];
    for q in queries.chunks_exact(dim) {
        for (m, &v) in mean.iter_mut().zip(q) {
            *m += f64::from(v);
        }
    }
    let mean: Vec<f32> = mean.iter().map(|&m| (m / nq as f64) as f32).collect();
    rows_top_k(items, dim, &mean, 1)[0][0].row
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::build::{BuildInfo, MAX_LAYER};
    use crate::graph::NO_NEIGHBOUR;

    #[test]
    fn every_node_is_reachable_and_the_file_verifies() {
        let dim = 16;
        let gen = crate::synth::MatryoshkaLike::with_dim(dim, 5);
        let items = gen.items(3000);
        // Few sample queries: most items are left to the repair pass.
        let queries = gen.queries(40);
        let params = GuidedParams {
            m: 8,
            ef_construction: 40,
            k: 30,
            ..Default::default()
        };
        let (g, report) = build_query_guided(&items, dim, &queries, &params);
        assert_eq!(g.meta.n_layers, 1);
        assert!(report.covered > 0 && report.covered < 3000, "{report:?}");
        assert_eq!(report.enhanced, 3000, "{report:?}");
        assert_eq!(report.unreachable, 0, "{report:?}");
        let info = BuildInfo {
            crate_version: "test".into(),
            builder: "guided".into(),
            m: 8,
            ef_construction: 40,
            max_layer: MAX_LAYER as u32,
            seed: 42,
            threads: 0,
            build_seconds: 0.0,
        };
        let graph = g.to_coarse_graph(&info);
        graph.verify().unwrap();
        // Reachability, checked on the written graph.
        let mut seen = vec![false; 3000];
        let mut stack = vec![graph.meta().entry_point];
        seen[stack[0] as usize] = true;
        while let Some(x) = stack.pop() {
            for &nb in graph.layer0_neighbours(x) {
                if nb != NO_NEIGHBOUR && !seen[nb as usize] {
                    seen[nb as usize] = true;
                    stack.push(nb);
                }
            }
        }
        assert!(seen.iter().all(|&s| s));
    }
}
