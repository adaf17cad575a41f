//! The query path: the coarse stage, then the cascade of reranks.
//!
//! ```text
//! query ──► (learned plans) query code Aᵀq over the first W dims, as many code dims as the
//!           plan's learned stages use
//!        ──► coarse stage: graph beam search (ef ≥ keep₀), or an exact scan of the coarse
//!            band, on the native prefix or the learned code ──► keep₀ candidates
//!        ──► learned stage: score += code band dot, keep the best keepᵢ
//!        ──► first native stage: score = native prefix dot over [0, wᵢ) (exact)
//!        ──► later native stages: score += q[wᵢ₋₁..wᵢ]·x[wᵢ₋₁..wᵢ], keep the best keepᵢ
//!        ──► final stage: best k, scores exact inner products at the final native width
//! ```
//!
//! Within a space no dimension is multiplied twice: each stage reads only the bands it adds.
//! A search at native width `W` below the full dimension zeroes the query beyond `W` (a
//! copy in the scratch), so every native score is `q[..W]·x[..W]` exactly and the learned
//! code is projected from the query's first `W` dims. All working memory is in a reusable
//! [`Scratch`], so a warm search allocates nothing but its answer.

use crate::candidate::Candidate;
use crate::deletes::DeleteBits;
use crate::graph::search::{search_graph, CoarseScorer, GraphScratch};
use crate::graph::CoarseGraph;
use crate::plan::{PlanError, SearchPlan, Space};
use crate::rowset::RowSet;
use crate::simd;
use crate::space::LearnedSpace;
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
    /// The cascade; `None` for [`crate::Index::default_plan`] (cut to `width` if given).
    pub plan: Option<SearchPlan>,
    /// Beam width of the coarse graph search; raised to the coarse stage's keep if smaller.
    /// `None` for the index's default with its default plan, else the coarse stage's keep.
    pub ef: Option<usize>,
    /// Answer as the `width`-d Matryoshka sub-model: rank by the inner product of the first
    /// `width` native dims (any width from 1 to the full dimension). `None` for the full
    /// width, or for an explicit plan's final width.
    pub width: Option<usize>,
}

impl SearchParams {
    /// Parameters with an explicit plan.
    pub fn with_plan(plan: SearchPlan) -> SearchParams {
        SearchParams {
            plan: Some(plan),
            ..SearchParams::default()
        }
    }

    /// Parameters answering at native width `width` with the index's default plan.
    pub fn at_width(width: usize) -> SearchParams {
        SearchParams {
            width: Some(width),
            ..SearchParams::default()
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
    /// The answer width is not within the vectors' dimension.
    #[error("width {width} must be between 1 and the full dimension {dim}")]
    Width {
        /// Asked for.
        width: usize,
        /// The index's full dimension.
        dim: usize,
    },
    /// The plan does not fit the index.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// Ground truth given for another number of queries (tuning).
    #[error("{truth} ground-truth lists for {queries} queries: give one list per query")]
    TruthCount {
        /// Queries given.
        queries: usize,
        /// Ground-truth lists given.
        truth: usize,
    },
    /// Tuning or benchmarking a live index with deltas or deletions: their ground truth and
    /// plans are measured on the base alone.
    #[error(
        "the index has {deltas} delta segments and {deleted} deleted items: tuning and \
         benchmarks measure one base; compact it first (`mrl-index compact`)"
    )]
    NotCompacted {
        /// Delta segments.
        deltas: usize,
        /// Deleted items.
        deleted: usize,
    },
}

/// [`SearchError::NotCompacted`] unless `index` is its base alone.
pub fn require_compacted(index: &crate::Index) -> Result<(), SearchError> {
    if index.is_compacted() {
        return Ok(());
    }
    Err(SearchError::NotCompacted {
        deltas: index.deltas().len(),
        deleted: index.deleted_count(),
    })
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

impl SearchStats {
    /// Adds another segment's counters (a live index searches each segment).
    pub fn add(&mut self, other: &SearchStats) {
        self.coarse_scored += other.coarse_scored;
        self.reranked += other.reranked;
        self.multiply_adds += other.multiply_adds;
        self.exact_coarse |= other.exact_coarse;
    }
}

/// Reusable working memory for searches. One per thread; `Index::search` keeps one in
/// thread-local storage, `Index::search_with` takes one explicitly.
#[derive(Debug, Default)]
pub struct Scratch {
    graph: GraphScratch,
    /// The query zeroed beyond the answer width, for searches below the full width.
    padded: Vec<f32>,
    /// The query's learned code.
    code: Vec<f32>,
    /// Scores of one block of the coarse scan.
    block: Vec<f32>,
    /// The filter's rows: the denied rows (deny mode) or the eligible allowed rows (allow
    /// mode). Memory follows the filter's length, not the index's size.
    filter_rows: RowSet,
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

/// Scores rows on the first code band of a learned space: the coarse stage's scorer of a
/// learned plan.
pub struct CodeScorer<'a> {
    code: &'a [f32],
    band: &'a [u16],
    stride: usize,
}

impl<'a> CodeScorer<'a> {
    /// A scorer of the query code `code` (as long as code band 0) on `space`'s band 0.
    pub fn new(space: &'a LearnedSpace, code: &'a [f32]) -> CodeScorer<'a> {
        let b = space.bands()[0];
        debug_assert_eq!(code.len(), b.width());
        CodeScorer {
            code,
            band: space.band_data(0),
            stride: b.stride,
        }
    }
}

impl CoarseScorer for CodeScorer<'_> {
    #[inline]
    fn score(&self, row: u32) -> f32 {
        let start = row as usize * self.stride;
        simd::dot_f16(self.code, &self.band[start..start + self.code.len()])
    }

    #[inline]
    fn prefetch(&self, row: u32) {
        let ptr = self.band.as_ptr().wrapping_add(row as usize * self.stride);
        simd::prefetch_bytes(ptr, self.code.len() * 2);
    }
}

/// The coarse band(s) a scan reads: one contiguous band and the query slice scored on it,
/// or (a native prefix over several bands) the generic scorer.
enum ScanSource<'a> {
    Band {
        data: &'a [f32],
        stride: usize,
        query: &'a [f32],
    },
    Half {
        data: &'a [u16],
        stride: usize,
        query: &'a [f32],
    },
    Rows(&'a dyn CoarseScorer),
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

    /// Collects the filter's rows and returns the mode and the number of eligible rows.
    /// Deleted rows count as denied (and are never allowed).
    fn prepare_filter(
        &mut self,
        store: &Store,
        filter: &Filter,
        deleted: Option<&DeleteBits>,
    ) -> (FilterMode, usize) {
        let n = store.len();
        let deleted = deleted.filter(|d| !d.is_empty());
        let is_deleted = |r: u32| deleted.is_some_and(|d| d.contains(r));
        if filter.is_none() && deleted.is_none() {
            return (FilterMode::None, n);
        }
        self.filter_rows.clear(n);
        self.allow_rows.clear();
        for &id in filter.deny {
            if let Some(r) = store.row_of(id) {
                if !is_deleted(r) {
                    self.filter_rows.insert(r);
                }
            }
        }
        match filter.allow {
            None => (
                FilterMode::Deny,
                n - self.filter_rows.len() - deleted.map_or(0, DeleteBits::count),
            ),
            Some(allow) => {
                // Allowed and not denied, each row once.
                for &id in allow {
                    if let Some(r) = store.row_of(id) {
                        if !self.filter_rows.contains(r) && !is_deleted(r) {
                            self.allow_rows.push(r);
                        }
                    }
                }
                self.filter_rows.clear(n);
                let set = &mut self.filter_rows;
                self.allow_rows.retain(|&r| set.insert(r));
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
pub const EXACT_COARSE_FRACTION: usize = 16;

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

/// The parts of one segment a search reads.
#[derive(Clone, Copy)]
pub(crate) struct Parts<'a> {
    pub store: &'a Store,
    /// `None`: a small delta segment, scanned exactly.
    pub graph: Option<&'a CoarseGraph>,
    pub space: Option<&'a LearnedSpace>,
    /// Deleted rows, never returned (`None`: nothing deleted).
    pub deleted: Option<&'a DeleteBits>,
    /// The segment's share of the index's items: every keep and the beam are scaled by it.
    pub share: Share,
    /// The segment's query map is the previous segment's: the query code in the scratch,
    /// from the same query, plan and width, is reused instead of projected again.
    pub reuse_code: bool,
}

/// A segment's share `items / total` of a live index's items. A delta segment holding 1% of
/// the items holds about 1% of any query's best candidates, so its search keeps
/// [`SHARE_OVERSAMPLE`] times its share of each stage's keep (never fewer than `k`, never
/// more than the keep): the cost follows the segment's size, not the plan's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Share {
    /// Live items in the segment.
    pub items: usize,
    /// Live items in the index.
    pub total: usize,
}

/// How many times its share of each keep a delta segment keeps.
pub const SHARE_OVERSAMPLE: usize = 4;

impl Share {
    /// The whole index (the base segment searches with the plan's keeps unchanged).
    pub const WHOLE: Share = Share { items: 1, total: 1 };

    fn scale(self, keep: usize, k: usize) -> usize {
        if self.items >= self.total {
            return keep;
        }
        let scaled = (keep as u128 * (self.items * SHARE_OVERSAMPLE) as u128)
            .div_ceil(self.total.max(1) as u128) as usize;
        scaled.max(k).min(keep)
    }
}

/// The rows a coarse stage must not return: the filter's denied rows and the deleted rows.
#[derive(Clone, Copy)]
struct Denied<'a> {
    /// The filter's denied rows (`None`: none).
    rows: Option<&'a RowSet>,
    deleted: Option<&'a DeleteBits>,
}

impl<'a> Denied<'a> {
    fn new(rows: &'a RowSet, deleted: Option<&'a DeleteBits>) -> Denied<'a> {
        Denied {
            rows: (!rows.is_empty()).then_some(rows),
            deleted,
        }
    }

    #[inline]
    fn contains(&self, row: u32) -> bool {
        self.rows.is_some_and(|r| r.contains(row)) || self.deleted.is_some_and(|d| d.contains(row))
    }
}

/// Runs one cascade search answering at native width `width` (≤ the full dimension).
/// `plan` must have been checked against the index and end at a native width ≥ `width`;
/// `query` is the full-width query (validated). Appends the segment's hits (best first) to
/// `out`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn cascade(
    parts: Parts<'_>,
    plan: &SearchPlan,
    ef: Option<usize>,
    query: &[f32],
    width: usize,
    k: usize,
    filter: &Filter,
    scratch: &mut Scratch,
    out: &mut Vec<Hit>,
) {
    run(parts, plan, ef, query, width, k, filter, scratch, Some(out));
}

/// The coarse stage of [`cascade`] alone: its `keep₀` candidates (unordered), scored at the
/// coarse width. For tuning, which replays later stages on the pool.
#[cfg(feature = "build")]
#[allow(clippy::too_many_arguments)]
pub(crate) fn coarse_only(
    parts: Parts<'_>,
    plan: &SearchPlan,
    ef: Option<usize>,
    query: &[f32],
    width: usize,
    k: usize,
    filter: &Filter,
    scratch: &mut Scratch,
) -> Vec<Candidate> {
    run(parts, plan, ef, query, width, k, filter, scratch, None);
    scratch.pool.clone()
}

#[allow(clippy::too_many_arguments)]
fn run(
    parts: Parts<'_>,
    plan: &SearchPlan,
    ef: Option<usize>,
    query: &[f32],
    width: usize,
    k: usize,
    filter: &Filter,
    scratch: &mut Scratch,
    out: Option<&mut Vec<Hit>>,
) {
    scratch.stats = SearchStats::default();
    scratch.pool.clear();
    let store = parts.store;
    let dim = store.dim();
    // Below the full width the query is zero beyond `width`: native scores are then exactly
    // the `width`-d sub-model's.
    let mut padded = std::mem::take(&mut scratch.padded);
    let query: &[f32] = if width < dim {
        padded.clear();
        padded.extend_from_slice(&query[..width]);
        padded.resize(dim, 0.0);
        &padded
    } else {
        query
    };
    let mut code = std::mem::take(&mut scratch.code);
    if let (Some(space), Some(lw)) = (parts.space, plan.learned_width()) {
        // A delta whose query map is the base's reuses the code the base's search left.
        if parts.reuse_code && code.len() == lw {
            run_stages(parts, plan, ef, query, &code, k, filter, scratch, out);
            scratch.padded = padded;
            scratch.code = code;
            return;
        }
        code.clear();
        code.resize(lw, 0.0);
        space.project_query(query, width, &mut code);
        scratch.stats.multiply_adds += (lw * width) as u64;
    }
    run_stages(parts, plan, ef, query, &code, k, filter, scratch, out);
    scratch.padded = padded;
    scratch.code = code;
}

#[allow(clippy::too_many_arguments)]
fn run_stages(
    parts: Parts<'_>,
    plan: &SearchPlan,
    ef: Option<usize>,
    query: &[f32],
    code: &[f32],
    k: usize,
    filter: &Filter,
    scratch: &mut Scratch,
    out: Option<&mut Vec<Hit>>,
) {
    let store = parts.store;
    let stages = plan.stages();
    let first = stages[0];
    // No stage keeps more than the index holds: a keep or `k` of billions (an API call or a
    // plan string) costs what the catalogue costs, never an allocation of its own size.
    let n = store.len();
    let k = k.min(n);
    let share = parts.share;
    let keep0 = share.scale(first.keep.resolve(k), k).min(n);
    let (mode, eligible_count) = scratch.prepare_filter(store, filter, parts.deleted);
    let deleted = parts.deleted.filter(|d| !d.is_empty());
    let needed = keep0.min(eligible_count);
    if needed == 0 {
        return;
    }
    // The coarse scorer and the band a scan reads.
    let prefix_scorer;
    let code_scorer;
    let (scorer, scan): (&dyn CoarseScorer, ScanSource) = match first.space {
        Space::Native => {
            let n_bands = store
                .bands_for_width(first.width)
                .expect("plan checked against the index");
            prefix_scorer = PrefixScorer::new(store, query, n_bands);
            let scan = if n_bands == 1 {
                let b = store.bands()[0];
                ScanSource::Band {
                    data: store.band_data(0),
                    stride: b.stride,
                    query: &query[..b.end],
                }
            } else {
                ScanSource::Rows(&prefix_scorer)
            };
            (&prefix_scorer, scan)
        }
        Space::Learned => {
            let space = parts.space.expect("plan checked against the index");
            let b = space.bands()[0];
            code_scorer = CodeScorer::new(space, &code[..b.end]);
            let scan = ScanSource::Half {
                data: space.band_data(0),
                stride: b.stride,
                query: &code[..b.end],
            };
            (&code_scorer, scan)
        }
    };
    let coarse_width = first.width as u64;
    let use_allow_scan =
        mode == FilterMode::Allow && eligible_count <= keep0.max(n / ALLOW_SCAN_FRACTION);
    let ef = ef.map_or(keep0, |ef| share.scale(ef, k)).max(keep0);
    // A beam this wide would visit most of the graph: scanning the coarse band is cheaper,
    // and exact. A small delta segment has no graph: always scanned.
    let use_full_scan = ef.saturating_mul(EXACT_COARSE_FRACTION) >= n || parts.graph.is_none();
    if let (false, false, Some(graph)) = (use_allow_scan, use_full_scan, parts.graph) {
        let rows = &scratch.filter_rows;
        let denied = Denied::new(rows, deleted);
        match mode {
            FilterMode::None => search_graph(
                graph,
                &Dyn(scorer),
                ef,
                &mut scratch.graph,
                |_| true,
                &mut scratch.pool,
            ),
            FilterMode::Deny => search_graph(
                graph,
                &Dyn(scorer),
                ef,
                &mut scratch.graph,
                |r| !denied.contains(r),
                &mut scratch.pool,
            ),
            FilterMode::Allow => search_graph(
                graph,
                &Dyn(scorer),
                ef,
                &mut scratch.graph,
                |r| rows.contains(r),
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
        scratch.stats.coarse_scored += if mode == FilterMode::Allow {
            scratch.allow_rows.len()
        } else {
            eligible_count
        };
        coarse_scan(scratch, &scan, mode, deleted, n, keep0);
    }
    scratch.stats.multiply_adds += scratch.stats.coarse_scored as u64 * coarse_width;
    let pool = &mut scratch.pool;
    truncate_best(pool, keep0);
    let Some(out) = out else { return };
    // Bands done so far in the current space.
    let mut space = first.space;
    let mut done = match space {
        Space::Native => store.bands_for_width(first.width),
        Space::Learned => parts.space.and_then(|s| s.bands_for_width(first.width)),
    }
    .expect("plan checked against the index");
    for stage in &stages[1..] {
        match (space, stage.space) {
            (Space::Learned, Space::Learned) => {
                let sp = parts.space.expect("plan checked against the index");
                let n_bands = sp
                    .bands_for_width(stage.width)
                    .expect("plan checked against the index");
                for b in done..n_bands {
                    let band = sp.bands()[b];
                    let data = sp.band_data(b);
                    extend_f16(pool, &code[band.start..band.end], data, band.stride);
                    scratch.stats.multiply_adds += (pool.len() * band.width()) as u64;
                }
                done = n_bands;
            }
            (_, Space::Native) => {
                // From the learned code to native scores, the whole prefix is scored exactly;
                // from a native stage, only the bands it has not added yet.
                if space == Space::Learned {
                    for c in pool.iter_mut() {
                        c.score = 0.0;
                    }
                    done = 0;
                    space = Space::Native;
                }
                let n_bands = store
                    .bands_for_width(stage.width)
                    .expect("plan checked against the index");
                for b in done..n_bands {
                    let band = store.bands()[b];
                    extend(
                        pool,
                        &query[band.start..band.end],
                        store.band_data(b),
                        band.stride,
                    );
                    scratch.stats.multiply_adds += (pool.len() * band.width()) as u64;
                }
                done = n_bands;
            }
            (Space::Native, Space::Learned) => unreachable!("plan checked against the index"),
        }
        scratch.stats.reranked += pool.len();
        truncate_best(pool, share.scale(stage.keep.resolve(k), k));
    }
    pool.sort_unstable_by(|a, b| b.cmp(a));
    pool.truncate(k);
    out.extend(pool.iter().map(|c| Hit {
        id: store.id(c.row as usize),
        score: c.score,
    }));
}

/// A `&dyn CoarseScorer` as a sized scorer for the generic graph search.
struct Dyn<'a>(&'a dyn CoarseScorer);

impl CoarseScorer for Dyn<'_> {
    #[inline]
    fn score(&self, row: u32) -> f32 {
        self.0.score(row)
    }
    #[inline]
    fn prefetch(&self, row: u32) {
        self.0.prefetch(row)
    }
}

/// Adds `q · row` (rows of a band with `stride`) to every candidate's score, prefetching a
/// few candidates ahead.
fn extend(pool: &mut [Candidate], q: &[f32], data: &[f32], stride: usize) {
    extend_rows(pool, q, data, stride, simd::dot);
}

/// [`extend`] over a half-precision band (the learned code).
fn extend_f16(pool: &mut [Candidate], q: &[f32], data: &[u16], stride: usize) {
    extend_rows(pool, q, data, stride, simd::dot_f16);
}

/// [`extend`] for rows of any element type, scored by `dot`.
#[inline(always)]
fn extend_rows<T>(
    pool: &mut [Candidate],
    q: &[f32],
    data: &[T],
    stride: usize,
    dot: impl Fn(&[f32], &[T]) -> f32,
) {
    const AHEAD: usize = 4;
    let w = q.len();
    for i in 0..pool.len() {
        if let Some(next) = pool.get(i + AHEAD) {
            simd::prefetch_bytes(
                data.as_ptr().wrapping_add(next.row as usize * stride),
                w * std::mem::size_of::<T>(),
            );
        }
        let c = &mut pool[i];
        let start = c.row as usize * stride;
        c.score += dot(q, &data[start..start + w]);
    }
}

/// Rows per block of the coarse scan.
const SCAN_BLOCK: usize = 256;

/// Exact coarse scan of the eligible rows into `scratch.pool`, keeping the best `keep`
/// (memory bounded by `2·keep` plus a margin; linear time).
fn coarse_scan(
    scratch: &mut Scratch,
    scan: &ScanSource,
    mode: FilterMode,
    deleted: Option<&DeleteBits>,
    n: usize,
    keep: usize,
) {
    let mut top = TopPool::new(&mut scratch.pool, keep);
    // Rows denied in the scan (none without a deny filter or deletions).
    let denied = Denied::new(&scratch.filter_rows, deleted);
    let scratch_parts = BlockScan {
        block: &mut scratch.block,
        denied: (mode == FilterMode::Deny).then_some(denied),
    };
    match (scan, mode) {
        (
            ScanSource::Band {
                data,
                stride,
                query,
            },
            FilterMode::None | FilterMode::Deny,
        ) => scan_blocks(&mut top, scratch_parts, n, |start, out| {
            simd::dot_many(query, data, *stride, start, out)
        }),
        (
            ScanSource::Half {
                data,
                stride,
                query,
            },
            FilterMode::None | FilterMode::Deny,
        ) => scan_blocks(&mut top, scratch_parts, n, |start, out| {
            simd::dot_many_f16(query, data, *stride, start, out)
        }),
        (
            ScanSource::Band {
                data,
                stride,
                query,
            },
            FilterMode::Allow,
        ) => {
            for &row in &scratch.allow_rows {
                let s = row as usize * stride;
                top.offer(row, simd::dot(query, &data[s..s + query.len()]));
            }
        }
        (
            ScanSource::Half {
                data,
                stride,
                query,
            },
            FilterMode::Allow,
        ) => {
            for &row in &scratch.allow_rows {
                let s = row as usize * stride;
                top.offer(row, simd::dot_f16(query, &data[s..s + query.len()]));
            }
        }
        (ScanSource::Rows(scorer), FilterMode::Allow) => {
            for &row in &scratch.allow_rows {
                top.offer(row, scorer.score(row));
            }
        }
        (ScanSource::Rows(scorer), _) => {
            for row in 0..n as u32 {
                if mode == FilterMode::None || !denied.contains(row) {
                    top.offer(row, scorer.score(row));
                }
            }
        }
    }
}

/// The scratch a blocked scan uses: the block of scores, and the denied rows (`None`: no
/// row is denied).
struct BlockScan<'a> {
    block: &'a mut Vec<f32>,
    denied: Option<Denied<'a>>,
}

/// Scans rows `0..n` in blocks of SCAN_BLOCK: `score_block(start, out)` writes the scores of
/// rows `start..start + out.len()`, and every row not denied is offered to `top`.
fn scan_blocks(
    top: &mut TopPool,
    parts: BlockScan,
    n: usize,
    score_block: impl Fn(usize, &mut [f32]),
) {
    let block = parts.block;
    block.resize(SCAN_BLOCK, 0.0);
    let mut start = 0;
    while start < n {
        let len = SCAN_BLOCK.min(n - start);
        score_block(start, &mut block[..len]);
        let scores = block[..len].iter().enumerate();
        match parts.denied {
            None => {
                for (i, &score) in scores {
                    top.offer((start + i) as u32, score);
                }
            }
            Some(denied) => {
                // The set is probed only for rows that would enter the pool.
                for (i, &score) in scores {
                    let row = (start + i) as u32;
                    if score >= top.floor && !denied.contains(row) {
                        top.offer(row, score);
                    }
                }
            }
        }
        start += len;
    }
}

/// Collects the best `keep` of a stream of scored rows: appends every row not below the
/// floor, and whenever the pool reaches `2·keep + 1024` cuts it back to the best `keep` and
/// raises the floor to the worst of them (rows below it can no longer make the pool).
struct TopPool<'a> {
    pool: &'a mut Vec<Candidate>,
    keep: usize,
    limit: usize,
    floor: f32,
}

impl<'a> TopPool<'a> {
    fn new(pool: &'a mut Vec<Candidate>, keep: usize) -> TopPool<'a> {
        pool.clear();
        TopPool {
            pool,
            keep,
            limit: 2 * keep + 1024,
            floor: f32::NEG_INFINITY,
        }
    }

    #[inline(always)]
    fn offer(&mut self, row: u32, score: f32) {
        if score >= self.floor {
            self.pool.push(Candidate { score, row });
            if self.pool.len() >= self.limit {
                truncate_best(self.pool, self.keep);
                self.floor = self
                    .pool
                    .iter()
                    .map(|c| c.score)
                    .fold(f32::INFINITY, f32::min);
            }
        }
    }
}

/// Keeps the `keep` best candidates of `pool` (in no particular order).
fn truncate_best(pool: &mut Vec<Candidate>, keep: usize) {
    if pool.len() > keep {
        pool.select_nth_unstable_by(keep - 1, |a, b| b.cmp(a));
        pool.truncate(keep);
    }
}
