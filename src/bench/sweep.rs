//! The sweeps: exact search per nested width, the coarse graph alone over `ef`, and cascade
//! plans, each measured for recall, throughput, latency and work per query. The cascade
//! plans are by default the recall–speed frontier [`crate::tune::frontier`] finds on the
//! queries themselves (from coarse keeps of 10 up, graph and exact-scan coarse stages), so a
//! run finds the fast end of every index without a grid; `--keeps` gives a fixed grid.

use super::row::{machine_description, proc_status_bytes, rss_bytes, timestamp_utc, Row};
use super::truth::GroundTruth;
use super::BenchError;
use crate::exact::batch_top_k;
use crate::plan::{Keep, SearchPlan, Space, Stage, DEFAULT_SHRINK};
use crate::{Error, Filter, Hit, Index, Scratch, SearchParams};
use serde_json::json;
use std::time::Instant;

/// Family of exact flat search at each nested width.
pub const FAMILY_EXACT_WIDTH: &str = "exact-width";
/// Family of the coarse graph search alone (plan `<coarse>:k`).
pub const FAMILY_COARSE_GRAPH: &str = "coarse-graph";
/// Family of cascade plans.
pub const FAMILY_CASCADE: &str = "cascade";
/// The `system` field of our rows.
pub const SYSTEM: &str = "mrl-index";

/// What to sweep and how to measure.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchConfig {
    /// Results per query in the timed passes.
    pub k: usize,
    /// Threads of the all-threads measurement (0: all cores).
    pub threads: usize,
    /// Timed passes per configuration; the best queries per second is kept.
    pub repeats: usize,
    /// Queries run once per configuration before timing (warm-up; capped at the query count).
    pub warmup_queries: usize,
    /// Queries of the one-thread timing of exact search per width (each scans every item).
    pub exact_timed_queries: usize,
    /// Queries of the exact-width family's recall and all-threads timing: the first this
    /// many (every query scans every item at every width, which at a million items is the
    /// longest part of a run).
    pub exact_queries: usize,
    /// Depths K of the prefix-share measure at each width: the share of the full-width
    /// top-10 found in the width's exact top-K (K above the item count is skipped).
    pub share_depths: Vec<usize>,
    /// Time budget of a configuration's first one-thread pass over the queries: a slow
    /// configuration stops after this many seconds (but not before
    /// [`BenchConfig::min_queries`] queries), and every later pass, recall included, uses
    /// the queries it reached; the row's `n_queries` says how many.
    pub max_pass_seconds: f64,
    /// The fewest queries a configuration is measured on when the time budget cuts it short.
    pub min_queries: usize,
    /// Build seconds to record in the graph rows (the whole build, measured by the caller);
    /// `None`: the coarse graph's build time stored in the index.
    pub build_seconds: Option<f64>,
    /// Beam widths of the coarse-graph family.
    pub coarse_efs: Vec<usize>,
    /// Coarse keeps of a fixed cascade grid; each is run with `ef = keep` and `ef = 2 ·
    /// keep`. Empty (the default): the plans of the recall–speed frontier at
    /// [`BenchConfig::frontier_levels`].
    pub cascade_keeps: Vec<usize>,
    /// Recall@k levels whose cheapest plans the frontier grid measures.
    pub frontier_levels: Vec<f64>,
    /// Queries the frontier is explored on (the first this many).
    pub frontier_queries: usize,
    /// Factor by which later cascade stages shrink the pool per nested width.
    pub cascade_shrink: f64,
    /// Whether to run the exact-width family.
    pub exact_width: bool,
    /// The data set's name, copied into every row.
    pub dataset: String,
}

impl BenchConfig {
    /// The full grids: coarse `ef` ∈ {10, 20, 50, 100, 200, 500, 1000, 2000}, the frontier's
    /// plans at recall 0.5 … 0.999, 3 timed passes.
    pub fn full(k: usize, dataset: &str) -> BenchConfig {
        BenchConfig {
            k,
            threads: 0,
            repeats: 3,
            warmup_queries: 100,
            exact_timed_queries: 200,
            exact_queries: 1000,
            share_depths: vec![10, 100, 1000, 10_000],
            build_seconds: None,
            max_pass_seconds: 30.0,
            min_queries: 500,
            coarse_efs: vec![10, 20, 50, 100, 200, 500, 1000, 2000],
            cascade_keeps: Vec::new(),
            frontier_levels: vec![0.5, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999],
            frontier_queries: 500,
            cascade_shrink: DEFAULT_SHRINK,
            exact_width: true,
            dataset: dataset.to_string(),
        }
    }

    /// Small grids for CI: coarse `ef` ∈ {10, 50, 200}, the frontier at recall 0.8 … 0.99
    /// explored on 200 queries, one timed pass, 20 warm-up queries, 50 timed queries for
    /// exact search.
    pub fn quick(k: usize, dataset: &str) -> BenchConfig {
        BenchConfig {
            repeats: 1,
            warmup_queries: 20,
            exact_timed_queries: 50,
            max_pass_seconds: 10.0,
            min_queries: 200,
            coarse_efs: vec![10, 50, 200],
            frontier_levels: vec![0.8, 0.9, 0.95, 0.99],
            frontier_queries: 200,
            ..BenchConfig::full(k, dataset)
        }
    }
}

/// One configuration to measure through the graph: a plan and a beam width.
#[derive(Debug, Clone, PartialEq)]
pub struct GraphConfig {
    /// `coarse-graph` or `cascade`.
    pub family: &'static str,
    /// The plan.
    pub plan: SearchPlan,
    /// Beam width (`None`: the coarse keep).
    pub ef: Option<usize>,
    /// Whether this is the index's default plan and `ef`.
    pub is_default: bool,
}

/// The graph configurations a run measures, in order: the coarse graph alone for each `ef`,
/// then the cascade plans (the frontier found on `queries` against `truth`, or the fixed
/// grid), then the index's default plan if they do not hold it.
pub fn graph_configs(
    index: &Index,
    cfg: &BenchConfig,
    queries: &[f32],
    truth: &GroundTruth,
) -> Result<Vec<GraphConfig>, Error> {
    let layout = index.layout();
    let coarse = layout.coarse_width;
    let dim = index.dim();
    let mut out = Vec::new();
    // The coarse stage alone: its top k (rescored exactly at the full width when the coarse
    // space is the learned code, whose scores are not inner products).
    let coarse_plan = match layout.coarse_space {
        Space::Native => SearchPlan::new(vec![Stage::native(coarse, Keep::K)]),
        Space::Learned => SearchPlan::new(vec![
            Stage::learned(coarse, Keep::K),
            Stage::native(dim, Keep::K),
        ]),
    }
    .expect("a coarse-only plan is well formed");
    for &ef in &cfg.coarse_efs {
        out.push(GraphConfig {
            family: FAMILY_COARSE_GRAPH,
            plan: coarse_plan.clone(),
            ef: Some(ef),
            is_default: false,
        });
    }
    let default = index.default_plan().clone();
    let default_ef = index
        .default_ef()
        .unwrap_or(default.stages()[0].keep.resolve(cfg.k));
    let mut cascade: Vec<(SearchPlan, usize)> = Vec::new();
    if cfg.cascade_keeps.is_empty() {
        let nq = (queries.len() / dim).min(cfg.frontier_queries.max(1));
        let ids: Vec<Vec<u64>> = (0..nq).map(|q| truth.row(q).to_vec()).collect();
        cascade = crate::tune::frontier(
            index,
            &queries[..nq * dim],
            &ids,
            cfg.k,
            &cfg.frontier_levels,
        )?;
    } else {
        for &keep in &cfg.cascade_keeps {
            let plan = match layout.coarse_space {
                Space::Native => {
                    SearchPlan::geometric(&layout.widths, coarse, keep, cfg.cascade_shrink)
                }
                Space::Learned => {
                    let mut keeps = vec![keep];
                    for _ in 1..layout.code_widths.len() {
                        let last = keeps[keeps.len() - 1] as f64;
                        keeps.push(((last / cfg.cascade_shrink).round() as usize).max(1));
                    }
                    SearchPlan::learned(layout, &keeps, dim)
                }
            };
            for ef in [keep, 2 * keep] {
                cascade.push((plan.clone(), ef));
            }
        }
    }
    let mut has_default = false;
    for (plan, ef) in cascade {
        let is_default = plan == default && ef == default_ef;
        has_default |= is_default;
        out.push(GraphConfig {
            family: FAMILY_CASCADE,
            plan,
            ef: Some(ef),
            is_default,
        });
    }
    if !has_default {
        out.push(GraphConfig {
            family: FAMILY_CASCADE,
            plan: default,
            ef: None,
            is_default: true,
        });
    }
    Ok(out)
}

/// Mean recall@`r` of answers (ids, best first) against the ground truth, or `None` when
/// the truth is shallower than `r` or an answer holds fewer than `r` results because the
/// index is smaller.
pub fn mean_recall_ids(found: &[Vec<u64>], truth: &GroundTruth, r: usize) -> Option<f64> {
    if truth.depth() < r || found.is_empty() {
        return None;
    }
    // Whole hits summed, one division: no rounding drift over many queries.
    let mut hits = 0usize;
    for (q, f) in found.iter().enumerate() {
        let t = &truth.row(q)[..r];
        hits += f.iter().take(r).filter(|id| t.contains(id)).count();
    }
    Some(hits as f64 / (found.len() * r) as f64)
}

/// The share of each query's full-width top-10 (the truth's first 10) found among the first
/// `depth` ids of `found`, averaged over the queries; `None` when an answer is shallower.
/// The measure of [`super::data::prefix_share`], taken from answers a run already has
/// (an exact pass at one width and the cached ground truth) instead of rescoring every item.
pub fn truth_share_in_answers(
    found: &[Vec<u64>],
    truth: &GroundTruth,
    depth: usize,
) -> Option<f64> {
    let r = 10.min(truth.depth());
    if r == 0 || found.is_empty() || found.iter().any(|f| f.len() < depth) {
        return None;
    }
    let mut hits = 0usize;
    for (q, f) in found.iter().enumerate() {
        let mut top: Vec<u64> = f[..depth].to_vec();
        top.sort_unstable();
        hits += truth.row(q)[..r]
            .iter()
            .filter(|id| top.binary_search(id).is_ok())
            .count();
    }
    Some(hits as f64 / (found.len() * r) as f64)
}

/// Resident memory after a configuration's warm-up: all of it, and split into anonymous
/// memory (heap, stacks) and mapped file pages (the index pages touched so far).
struct Rss {
    total: Option<u64>,
    anon: Option<u64>,
    file: Option<u64>,
}

impl Rss {
    fn now() -> Rss {
        Rss {
            total: rss_bytes(),
            anon: proc_status_bytes("RssAnon"),
            file: proc_status_bytes("RssFile"),
        }
    }

    fn record(&self, row: &mut Row) {
        row.rss_bytes = self.total;
        if let Some(a) = self.anon {
            row.extra.insert("rss_anon_bytes".into(), json!(a));
        }
        if let Some(f) = self.file {
            row.extra.insert("rss_file_bytes".into(), json!(f));
        }
    }
}

fn ids_of(hits: &[Hit]) -> Vec<u64> {
    hits.iter().map(|h| h.id).collect()
}

/// Latency percentile (nearest rank) of sorted durations in microseconds.
fn percentile(sorted_us: &[f64], p: f64) -> Option<f64> {
    if sorted_us.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted_us.len() as f64).ceil() as usize;
    Some(sorted_us[rank.clamp(1, sorted_us.len()) - 1])
}

/// The best one-thread pass: queries per second and sorted per-query latencies (µs).
struct OneThread {
    qps: f64,
    latencies_us: Vec<f64>,
}

impl OneThread {
    fn better(self, other: Option<OneThread>) -> OneThread {
        match other {
            Some(o) if o.qps >= self.qps => o,
            _ => self,
        }
    }
}

/// Facts shared by every row of a run.
struct Common {
    dataset: String,
    n_items: u64,
    dim: u64,
    n_queries: u64,
    k: u64,
    threads_all: u64,
    machine: String,
    store_bytes: u64,
    graph_bytes: u64,
    graph_build_seconds: Option<f64>,
}

impl Common {
    fn row(&self, family: &str, label: String, config: serde_json::Value) -> Row {
        Row {
            system: SYSTEM.to_string(),
            family: family.to_string(),
            config,
            label,
            dataset: self.dataset.clone(),
            n_items: Some(self.n_items),
            dim: Some(self.dim),
            n_queries: Some(self.n_queries),
            k: Some(self.k),
            recall_at_1: None,
            recall_at_10: None,
            recall_at_100: None,
            qps_1_thread: None,
            qps_all_threads: None,
            threads_all: Some(self.threads_all),
            p50_us: None,
            p95_us: None,
            p99_us: None,
            candidates_per_query: None,
            mult_adds_per_query: None,
            build_seconds: None,
            index_bytes: None,
            rss_bytes: None,
            machine: self.machine.clone(),
            timestamp: timestamp_utc(),
            extra: Default::default(),
        }
    }
}

fn set_latencies(row: &mut Row, best: &OneThread) {
    row.qps_1_thread = Some(best.qps);
    row.p50_us = percentile(&best.latencies_us, 50.0);
    row.p95_us = percentile(&best.latencies_us, 95.0);
    row.p99_us = percentile(&best.latencies_us, 99.0);
}

fn pool(threads: usize) -> Result<rayon::ThreadPool, Error> {
    Ok(crate::threads::pool(threads)?)
}

/// Runs every sweep of `cfg` over `queries` (row-major, the index's dimension) and returns
/// one row per configuration, calling `progress` after each. The ground truth must hold
/// at least `min(k, n)` ids per query (100 for recall@100).
pub fn run_bench(
    index: &Index,
    queries: &[f32],
    truth: &GroundTruth,
    cfg: &BenchConfig,
    progress: &mut dyn FnMut(&Row),
) -> Result<Vec<Row>, Error> {
    crate::search::require_compacted(index)?;
    let dim = index.dim();
    if queries.is_empty() || !queries.len().is_multiple_of(dim) {
        return Err(BenchError::Invalid(format!(
            "queries: {} values is not a positive number of {dim}-d rows",
            queries.len()
        ))
        .into());
    }
    let nq = queries.len() / dim;
    if truth.n_queries() != nq {
        return Err(
            BenchError::Truth(format!("{} rows for {nq} queries", truth.n_queries())).into(),
        );
    }
    if cfg.k == 0 {
        return Err(Error::Search(crate::SearchError::ZeroK));
    }
    let need = cfg.k.min(index.len());
    if truth.depth() < need {
        return Err(BenchError::Truth(format!(
            "{} ids per query; k = {} needs at least {need}",
            truth.depth(),
            cfg.k
        ))
        .into());
    }
    let pool = pool(cfg.threads)?;
    let common = Common {
        dataset: cfg.dataset.clone(),
        n_items: index.len() as u64,
        dim: dim as u64,
        n_queries: nq as u64,
        k: cfg.k as u64,
        threads_all: pool.current_num_threads() as u64,
        machine: machine_description(),
        store_bytes: index.store().file_len() as u64,
        graph_bytes: index.graph().file_len() as u64,
        graph_build_seconds: cfg
            .build_seconds
            .or_else(|| index.graph().build_info().map(|b| b.build_seconds)),
    };
    let mut rows = Vec::new();
    // Graph configurations first: the resident memory recorded after each one's warm-up
    // then holds only the index pages searches have touched so far, not the whole store
    // that exact search maps in.
    for gc in graph_configs(index, cfg, queries, truth)? {
        let row = graph_row(index, queries, truth, cfg, &pool, &common, &gc)?;
        progress(&row);
        rows.push(row);
    }
    if cfg.exact_width {
        for width in index.widths() {
            let row = exact_width_row(index, queries, truth, cfg, &pool, &common, width)?;
            progress(&row);
            rows.push(row);
        }
    }
    Ok(rows)
}

/// Exact flat search at one nested width: recall of the width's own top-k against the
/// full-width truth.
fn exact_width_row(
    index: &Index,
    queries: &[f32],
    truth: &GroundTruth,
    cfg: &BenchConfig,
    pool: &rayon::ThreadPool,
    common: &Common,
    width: usize,
) -> Result<Row, Error> {
    let dim = index.dim();
    let nq = (queries.len() / dim).min(cfg.exact_queries.max(1));
    let queries = &queries[..nq * dim];
    let k = cfg.k;
    let n_bands = index
        .store()
        .bands_for_width(width)
        .ok_or_else(|| BenchError::Invalid(format!("width {width} is not a nested width")))?;
    let timed = cfg.exact_timed_queries.clamp(1, nq);
    let warm = cfg.warmup_queries.min(timed).max(1);
    for q in queries.chunks_exact(dim).take(warm) {
        index.exact_search(q, k, width, &Filter::NONE)?;
    }
    let rss = Rss::now();
    let mut best: Option<OneThread> = None;
    for _ in 0..cfg.repeats.max(1) {
        let mut lat = Vec::with_capacity(timed);
        let t0 = Instant::now();
        for q in queries.chunks_exact(dim).take(timed) {
            let t = Instant::now();
            let hits = index.exact_search(q, k, width, &Filter::NONE)?;
            std::hint::black_box(&hits);
            lat.push(t.elapsed().as_secs_f64() * 1e6);
        }
        let secs = t0.elapsed().as_secs_f64();
        lat.sort_by(f64::total_cmp);
        let pass = OneThread {
            qps: timed as f64 / secs.max(1e-12),
            latencies_us: lat,
        };
        best = Some(pass.better(best));
    }
    let mut best_all = 0.0f64;
    for _ in 0..cfg.repeats.max(1) {
        let t0 = Instant::now();
        let hits = pool.install(|| batch_top_k(index.store(), queries, k, n_bands));
        let secs = t0.elapsed().as_secs_f64();
        std::hint::black_box(&hits);
        best_all = best_all.max(nq as f64 / secs.max(1e-12));
    }
    // Recall: one untimed blocked pass deep enough for recall@100 and the prefix share.
    let n = index.len();
    let shares: Vec<usize> = cfg
        .share_depths
        .iter()
        .copied()
        .filter(|&d| d <= n)
        .collect();
    let depth = shares.iter().copied().fold(k.max(100), usize::max).min(n);
    let deep: Vec<Vec<u64>> = pool
        .install(|| batch_top_k(index.store(), queries, depth, n_bands))
        .iter()
        .map(|h| ids_of(h))
        .collect();
    let mut row = common.row(
        FAMILY_EXACT_WIDTH,
        format!("exact@{width}"),
        json!({ "width": width, "timed_queries_1_thread": timed }),
    );
    row.n_queries = Some(nq as u64);
    if !shares.is_empty() {
        let mut m = serde_json::Map::new();
        for d in shares {
            if let Some(v) = truth_share_in_answers(&deep, truth, d) {
                m.insert(d.to_string(), json!(v));
            }
        }
        row.extra.insert(
            "share_of_top10_in_top_k".into(),
            serde_json::Value::Object(m),
        );
    }
    row.recall_at_1 = mean_recall_ids(&deep, truth, 1);
    row.recall_at_10 = mean_recall_ids(&deep, truth, 10);
    row.recall_at_100 = mean_recall_ids(&deep, truth, 100);
    if let Some(b) = &best {
        set_latencies(&mut row, b);
    }
    row.qps_all_threads = Some(best_all);
    row.candidates_per_query = Some(index.len() as f64);
    row.mult_adds_per_query = Some(index.len() as f64 * width as f64);
    row.build_seconds = None;
    row.index_bytes = Some(common.store_bytes);
    rss.record(&mut row);
    Ok(row)
}

/// One plan and `ef` through the graph (coarse-graph or cascade family).
fn graph_row(
    index: &Index,
    queries: &[f32],
    truth: &GroundTruth,
    cfg: &BenchConfig,
    pool: &rayon::ThreadPool,
    common: &Common,
    gc: &GraphConfig,
) -> Result<Row, Error> {
    let dim = index.dim();
    let mut nq = queries.len() / dim;
    let mut queries = queries;
    let k = cfg.k;
    let params = SearchParams {
        plan: Some(gc.plan.clone()),
        ef: gc.ef,
        width: None,
    };
    let mut scratch = Scratch::new();
    let mut out: Vec<Hit> = Vec::with_capacity(k.max(100));
    for q in queries
        .chunks_exact(dim)
        .take(cfg.warmup_queries.clamp(1, nq))
    {
        index.search_with(&mut scratch, q, k, &params, &Filter::NONE, &mut out)?;
    }
    let rss = Rss::now();
    let mut best: Option<OneThread> = None;
    // The first pass's answers, flat and preallocated so that recording them allocates
    // nothing inside the timed loop.
    let mut flat: Vec<u64> = Vec::with_capacity(nq * k);
    let mut lens: Vec<usize> = Vec::with_capacity(nq);
    let (mut scored, mut madds, mut fallbacks) = (0u64, 0u64, 0usize);
    for pass in 0..cfg.repeats.max(1) {
        let first = pass == 0;
        let mut lat = Vec::with_capacity(nq);
        let t0 = Instant::now();
        for (i, q) in queries.chunks_exact(dim).enumerate() {
            if first && i >= cfg.min_queries && t0.elapsed().as_secs_f64() > cfg.max_pass_seconds {
                // Too slow to run every query: the rest of the row uses the first i.
                nq = i;
                queries = &queries[..nq * dim];
                break;
            }
            let t = Instant::now();
            index.search_with(&mut scratch, q, k, &params, &Filter::NONE, &mut out)?;
            lat.push(t.elapsed().as_secs_f64() * 1e6);
            if first {
                // Bookkeeping outside the measured call, inside the pass: cheap next to a
                // search (a copy of k ids and a few additions, no allocation).
                let s = scratch.stats;
                scored += (s.coarse_scored + s.reranked) as u64;
                madds += s.multiply_adds;
                fallbacks += usize::from(s.exact_coarse);
                flat.extend(out.iter().map(|h| h.id));
                lens.push(out.len());
            }
        }
        let secs = t0.elapsed().as_secs_f64();
        lat.sort_by(f64::total_cmp);
        let p = OneThread {
            qps: nq as f64 / secs.max(1e-12),
            latencies_us: lat,
        };
        best = Some(p.better(best));
    }
    let mut found: Vec<Vec<u64>> = Vec::with_capacity(nq);
    let mut at = 0;
    for len in lens {
        found.push(flat[at..at + len].to_vec());
        at += len;
    }
    // All threads: search_batch on the pool, warmed by one untimed batch.
    pool.install(|| index.search_batch(queries, k, &params, &Filter::NONE))?;
    let mut best_all = 0.0f64;
    for _ in 0..cfg.repeats.max(1) {
        let t0 = Instant::now();
        let r = pool.install(|| index.search_batch(queries, k, &params, &Filter::NONE))?;
        let secs = t0.elapsed().as_secs_f64();
        std::hint::black_box(&r);
        best_all = best_all.max(nq as f64 / secs.max(1e-12));
    }
    // recall@10 needs 10 answers: when k < 10, an untimed pass asks for 10 with the same plan.
    let at10: Vec<Vec<u64>> = if k >= 10 {
        found.clone()
    } else {
        pool.install(|| index.search_batch(queries, 10, &params, &Filter::NONE))?
            .iter()
            .map(|h| ids_of(h))
            .collect()
    };
    // recall@100: an untimed pass asking for 100 (keeps and ef are raised to ≥ 100).
    let at100: Vec<Vec<u64>> = pool
        .install(|| index.search_batch(queries, 100, &params, &Filter::NONE))?
        .iter()
        .map(|h| ids_of(h))
        .collect();

    let ef_used = gc
        .ef
        .unwrap_or(gc.plan.stages()[0].keep.resolve(k))
        .max(gc.plan.stages()[0].keep.resolve(k));
    let plan_text = gc.plan.to_string();
    let label = if gc.family == FAMILY_COARSE_GRAPH {
        format!("graph ef={ef_used}")
    } else if gc.is_default {
        format!("{plan_text} ef={ef_used} (default)")
    } else {
        format!("{plan_text} ef={ef_used}")
    };
    let mut config = json!({
        "plan": plan_text,
        "ef": ef_used,
        "coarse_keep": gc.plan.stages()[0].keep.resolve(k),
    });
    if gc.is_default {
        config["default"] = json!(true);
    }
    if fallbacks > 0 {
        config["exact_coarse_queries"] = json!(fallbacks);
    }
    let mut row = common.row(gc.family, label, config);
    row.n_queries = Some(nq as u64);
    row.recall_at_1 = mean_recall_ids(&found, truth, 1);
    row.recall_at_10 = mean_recall_ids(&at10, truth, 10);
    row.recall_at_100 = mean_recall_ids(&at100, truth, 100);
    if let Some(b) = &best {
        set_latencies(&mut row, b);
    }
    row.qps_all_threads = Some(best_all);
    row.candidates_per_query = Some(scored as f64 / nq as f64);
    row.mult_adds_per_query = Some(madds as f64 / nq as f64);
    row.build_seconds = common.graph_build_seconds;
    row.index_bytes = Some(common.store_bytes + common.graph_bytes);
    rss.record(&mut row);
    Ok(row)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(50.0));
        assert_eq!(percentile(&v, 99.0), Some(99.0));
        assert_eq!(percentile(&[7.0], 95.0), Some(7.0));
        assert_eq!(percentile(&[], 95.0), None);
    }

    #[test]
    fn recall_against_truth() {
        let gt = GroundTruth::new(vec![1, 2, 3, 4, 5, 6], 2, 3).unwrap();
        let found = vec![vec![1, 9, 3], vec![6, 5, 4]];
        assert_eq!(mean_recall_ids(&found, &gt, 1), Some(0.5));
        assert!((mean_recall_ids(&found, &gt, 3).unwrap() - (2.0 / 3.0 + 1.0) / 2.0).abs() < 1e-12);
        assert_eq!(mean_recall_ids(&found, &gt, 10), None);
    }

    #[test]
    fn truth_share_counts_the_true_top10_inside_the_first_depth_ids() {
        // Two queries, truth top-10 = ids 0..10 and 100..110.
        let mut ids: Vec<u64> = (0..10).collect();
        ids.extend(100..110);
        let gt = GroundTruth::new(ids, 2, 10).unwrap();
        // Query 0 finds 4 true ids within its first 5 and 2 more at positions 5..8;
        // query 1 finds none in its first 5 and all 10 within its first 20.
        let q0: Vec<u64> = vec![0, 50, 1, 2, 3, 60, 4, 5, 61, 62];
        let mut q1: Vec<u64> = (200..205).collect();
        q1.extend(100..110);
        q1.extend(300..305);
        let found = vec![q0.iter().chain(&[70u64; 10]).copied().collect(), q1];
        assert_eq!(
            truth_share_in_answers(&found, &gt, 5),
            Some((4.0 + 0.0) / 20.0)
        );
        assert_eq!(
            truth_share_in_answers(&found, &gt, 10),
            Some((6.0 + 5.0) / 20.0)
        );
        assert_eq!(
            truth_share_in_answers(&found, &gt, 20),
            Some((6.0 + 10.0) / 20.0)
        );
        // Deeper than an answer: not measured.
        assert_eq!(truth_share_in_answers(&found, &gt, 21), None);
    }
}
