//! The query path: coarse graph search, then the cascade of prefix reranks.
//!
//! ```text
//! query ──► coarse stage: graph beam search on band 0..c (ef ≥ keep₀) ──► keep₀ candidates
//!        ──► stage i: score += q[wᵢ₋₁..wᵢ]·x[wᵢ₋₁..wᵢ] for each candidate, keep the best keepᵢ
//!        ──► final stage: best k, scores exact inner products at the final width
//! ```
//!
//! No dimension is multiplied twice: each stage reads only the bands it adds. All working
//! memory is in a reusable [`Scratch`], so a warm search allocates nothing but its answer.

use crate::graph::search::{search_graph, Candidate, CoarseScorer, GraphScratch};
use crate::graph::CoarseGraph;
use crate::plan::{PlanError, SearchPlan};
use crate::simd;
use crate::store::Store;

/// One result: an item's external id and its inner product with the query at the plan's
/// final width.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hit {
    /// External id of the item.
    pub id: u64,
    /// Inner product with the query over the plan's final width.
    pub score: f32,
}

/// Per-search settings. `None` fields take the index's defaults.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SearchParams {
    /// The cascade; `None` for [`crate::Index::default_plan`].
    pub plan: Option<SearchPlan>,
    /// Beam width of the coarse graph search; raised to the coarse stage's keep if smaller.
    /// `None` for the coarse stage's keep.
    pub ef: Option<usize>,
}

impl SearchParams {
    /// Parameters with an explicit plan.
    pub fn with_plan(plan: SearchPlan) -> SearchParams {
        SearchParams {
            plan: Some(plan),
            ef: None,
        }
    }
}

/// Which items may be returned. Ids unknown to the index are ignored.
#[derive(Debug, Clone, Copy, Default)]
pub struct Filter<'a> {
    /// If given, only these items may be returned.
    pub allow: Option<&'a [u64]>,
    /// These items are never returned (e.g. the user's history).
    pub deny: &'a [u64],
}

impl<'a> Filter<'a> {
    /// No filtering.
    pub const NONE: Filter<'static> = Filter {
        allow: None,
        deny: &[],
    };

    /// Excludes `ids`.
    pub fn deny(ids: &'a [u64]) -> Filter<'a> {
        Filter {
            allow: None,
            deny: ids,
        }
    }

    /// Only `ids` may be returned.
    pub fn allow(ids: &'a [u64]) -> Filter<'a> {
        Filter {
            allow: Some(ids),
            deny: &[],
        }
    }

    fn is_none(&self) -> bool {
        self.allow.is_none() && self.deny.is_empty()
    }
}

/// A query that cannot be answered.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    /// The query's length is not the index's dimension.
    #[error("query dimension mismatch: the index holds {expected}-d vectors, the query has {got} values")]
    DimensionMismatch {
        /// The index's full dimension.
        expected: usize,
        /// The query's length.
        got: usize,
    },
    /// The query holds NaN or an infinity.
    #[error("query value at dim {dim} is {value}: queries must be finite")]
    NonFiniteQuery {
        /// The offending dimension.
        dim: usize,
        /// The value found.
        value: f32,
    },
    /// `k` was 0.
    #[error("k must be at least 1")]
    ZeroK,
    /// The plan does not fit the index.
    #[error(transparent)]
    Plan(#[from] PlanError),
}

/// Work counters of the last search, for benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SearchStats {
    /// Rows scored at the coarse width (graph search or exact fallback).
    pub coarse_scored: usize,
    /// Candidate extensions performed by the later stages.
    pub reranked: usize,
    /// Multiply-adds in all dot products.
    pub multiply_adds: u64,
    /// Whether the coarse stage scanned eligible rows exactly instead of searching the graph
    /// (a selective allow-list, or a filter that left the graph search short).
    pub exact_coarse: bool,
}

/// Reusable working memory for searches. One per thread; `Index::search` keeps one in
/// thread-local storage, `Index::search_with` takes one explicitly.
#[derive(Debug, Default)]
pub struct Scratch {
    graph: GraphScratch,
    marks: Vec<u32>,
    mark_epoch: u32,
    allow_rows: Vec<u32>,
    pool: Vec<Candidate>,
    /// Counters of the last search.
    pub stats: SearchStats,
}

/// Scores rows on the first `n_bands` bands of the store: the coarse stage's scorer.
pub struct PrefixScorer<'a> {
    store: &'a Store,
    query: &'a [f32],
    n_bands: usize,
    /// Band 0 as one slice, its stride and width: the common single-band prefix reads rows
    /// straight from it.
    band0: &'a [f32],
    stride0: usize,
    width0: usize,
}

impl<'a> PrefixScorer<'a> {
    /// A scorer of `query` (full width) on the first `n_bands` bands of `store`.
    pub fn new(store: &'a Store, query: &'a [f32], n_bands: usize) -> PrefixScorer<'a> {
        let b0 = store.bands()[0];
        PrefixScorer {
            store,
            query,
            n_bands,
            band0: store.band_data(0),
            stride0: b0.stride,
            width0: b0.width(),
        }
    }
}

impl CoarseScorer for PrefixScorer<'_> {
    #[inline]
    fn score(&self, row: u32) -> f32 {
        if self.n_bands == 1 {
            let start = row as usize * self.stride0;
            simd::dot(
                &self.query[..self.width0],
                &self.band0[start..start + self.width0],
            )
        } else {
            self.store
                .prefix_dot(self.query, row as usize, self.n_bands)
        }
    }

    #[inline]
    fn prefetch(&self, row: u32) {
        if self.n_bands == 1 {
            let ptr = self
                .band0
                .as_ptr()
                .wrapping_add(row as usize * self.stride0);
            simd::prefetch_bytes(ptr, self.width0 * 4);
            return;
        }
        for (b, band) in self.store.bands()[..self.n_bands].iter().enumerate() {
            simd::prefetch_bytes(self.store.row_ptr(b, row as usize), band.width() * 4);
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum FilterMode {
    None,
    /// Marked rows are denied.
    Deny,
    /// Marked rows are allowed (and not denied).
    Allow,
}

impl Scratch {
    /// A new, empty scratch; it grows to the index's size on first use.
    pub fn new() -> Scratch {
        Scratch::default()
    }

    fn next_mark_epoch(&mut self, n: usize) -> u32 {
        if self.marks.len() < n {
            self.marks.resize(n, 0);
        }
        if self.mark_epoch == u32::MAX {
            self.marks.iter_mut().for_each(|m| *m = 0);
            self.mark_epoch = 0;
        }
        self.mark_epoch += 1;
        self.mark_epoch
    }

    /// Marks the filter's rows and returns the mode and the number of eligible rows.
    fn prepare_filter(&mut self, store: &Store, filter: &Filter) -> (FilterMode, usize) {
        let n = store.len();
        if filter.is_none() {
            return (FilterMode::None, n);
        }
        let epoch = self.next_mark_epoch(n);
        self.allow_rows.clear();
        match filter.allow {
            None => {
                let mut denied = 0;
                for &id in filter.deny {
                    if let Some(r) = store.row_of(id) {
                        let m = &mut self.marks[r as usize];
                        if *m != epoch {
                            *m = epoch;
                            denied += 1;
                        }
                    }
                }
                (FilterMode::Deny, n - denied)
            }
            Some(allow) => {
                for &id in allow {
                    if let Some(r) = store.row_of(id) {
                        let m = &mut self.marks[r as usize];
                        if *m != epoch {
                            *m = epoch;
                            self.allow_rows.push(r);
                        }
                    }
                }
                for &id in filter.deny {
                    if let Some(r) = store.row_of(id) {
                        self.marks[r as usize] = 0;
                    }
                }
                let marks = &self.marks;
                self.allow_rows.retain(|&r| marks[r as usize] == epoch);
                (FilterMode::Allow, self.allow_rows.len())
            }
        }
    }
}

/// An allow-list at most this fraction of the index (or at most the coarse keep) is scanned
/// exactly instead of searched through the graph: cheaper, and exact.
const ALLOW_SCAN_FRACTION: usize = 50;

/// A beam `ef` of at least 1/16 of the items switches the coarse stage to an exact scan of the
/// prefix band (sequential, no heaps, no visited marks).
const EXACT_COARSE_FRACTION: usize = 16;

/// Validates a query against the store's dimension.
pub(crate) fn check_query(store: &Store, query: &[f32]) -> Result<(), SearchError> {
    if query.len() != store.dim() {
        return Err(SearchError::DimensionMismatch {
            expected: store.dim(),
            got: query.len(),
        });
    }
    if let Some((dim, &value)) = query.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(SearchError::NonFiniteQuery { dim, value });
    }
    Ok(())
}

/// Runs one cascade search. `plan` must have been checked against the index.
#[allow(clippy::too_many_arguments)]
pub(crate) fn cascade(
    store: &Store,
    graph: &CoarseGraph,
    plan: &SearchPlan,
    ef: Option<usize>,
    query: &[f32],
    k: usize,
    filter: &Filter,
    scratch: &mut Scratch,
    out: &mut Vec<Hit>,
) {
    out.clear();
    scratch.stats = SearchStats::default();
    let stages = plan.stages();
    let coarse_bands = store
        .bands_for_width(plan.coarse_width())
        .expect("plan checked against the index");
    let keep0 = stages[0].keep.resolve(k);
    let (mode, eligible_count) = scratch.prepare_filter(store, filter);
    let needed = keep0.min(eligible_count);
    if needed == 0 {
        return;
    }
    let scorer = PrefixScorer::new(store, query, coarse_bands);
    let coarse_width = plan.coarse_width() as u64;
    let epoch = scratch.mark_epoch;
    let use_allow_scan =
        mode == FilterMode::Allow && eligible_count <= keep0.max(store.len() / ALLOW_SCAN_FRACTION);
    let ef = ef.unwrap_or(keep0).max(keep0);
    // A beam this wide would visit most of the graph: scanning the prefix band is cheaper,
    // and exact.
    let use_full_scan = ef.saturating_mul(EXACT_COARSE_FRACTION) >= store.len();
    if !use_allow_scan && !use_full_scan {
        let marks = &scratch.marks;
        match mode {
            FilterMode::None => search_graph(
                graph,
                &scorer,
                ef,
                &mut scratch.graph,
                |_| true,
                &mut scratch.pool,
            ),
            FilterMode::Deny => search_graph(
                graph,
                &scorer,
                ef,
                &mut scratch.graph,
                |r| marks[r as usize] != epoch,
                &mut scratch.pool,
            ),
            FilterMode::Allow => search_graph(
                graph,
                &scorer,
                ef,
                &mut scratch.graph,
                |r| marks[r as usize] == epoch,
                &mut scratch.pool,
            ),
        }
        scratch.stats.coarse_scored = scratch.graph.scored;
    }
    if use_allow_scan || use_full_scan || scratch.pool.len() < needed {
        // Exact coarse scan of the eligible rows: for selective allow-lists, for beams that
        // would cover most of the graph anyway, and as the guarantee that k results come
        // back whenever k eligible items exist.
        scratch.stats.exact_coarse = true;
        // Collect scores and cut back to the best keep₀ whenever the pool doubles: linear
        // time, memory bounded by 2·keep₀ + a margin.
        let limit = 2 * keep0 + 1024;
        let pool = &mut scratch.pool;
        pool.clear();
        let mut push = |row: u32| {
            pool.push(Candidate {
                score: scorer.score(row),
                row,
            });
            if pool.len() >= limit {
                truncate_best(pool, keep0);
            }
        };
        if mode == FilterMode::Allow {
            for &row in &scratch.allow_rows {
                push(row);
            }
            scratch.stats.coarse_scored += scratch.allow_rows.len();
        } else {
            for row in 0..store.len() as u32 {
                if mode == FilterMode::None || scratch.marks[row as usize] != epoch {
                    push(row);
                }
            }
            scratch.stats.coarse_scored += eligible_count;
        }
    }
    scratch.stats.multiply_adds = scratch.stats.coarse_scored as u64 * coarse_width;
    let pool = &mut scratch.pool;
    truncate_best(pool, keep0);
    let mut done_bands = coarse_bands;
    for stage in &stages[1..] {
        let n_bands = store
            .bands_for_width(stage.width)
            .expect("plan checked against the index");
        for b in done_bands..n_bands {
            let band = &store.bands()[b];
            let q = &query[band.start..band.end];
            const AHEAD: usize = 4;
            for i in 0..pool.len() {
                if let Some(next) = pool.get(i + AHEAD) {
                    simd::prefetch_bytes(store.row_ptr(b, next.row as usize), band.width() * 4);
                }
                let c = &mut pool[i];
                c.score += simd::dot(q, store.row(b, c.row as usize));
            }
            scratch.stats.multiply_adds += (pool.len() * band.width()) as u64;
        }
        scratch.stats.reranked += pool.len();
        done_bands = n_bands;
        truncate_best(pool, stage.keep.resolve(k));
    }
    pool.sort_unstable_by(|a, b| b.cmp(a));
    pool.truncate(k);
    out.extend(pool.iter().map(|c| Hit {
        id: store.id(c.row as usize),
        score: c.score,
    }));
}

/// Keeps the `keep` best candidates of `pool` (in no particular order).
fn truncate_best(pool: &mut Vec<Candidate>, keep: usize) {
    if pool.len() > keep {
        pool.select_nth_unstable_by(keep - 1, |a, b| b.cmp(a));
        pool.truncate(keep);
    }
}
