//! Choosing a plan for an index from its own queries, and publishing it with the index.
//!
//! How many candidates each stage must keep depends on the model and the queries: on strongly
//! Matryoshka data a coarse keep of a few dozen suffices; with weak prefixes and
//! out-of-distribution queries the coarse stage needs a learned space and hundreds of
//! candidates. [`tune`] measures plans against exact full-width search on sample queries and
//! picks the fastest that reaches a recall target with a margin for sampling error; a build
//! runs it on held-out sample queries and publishes the result in the index's `MANIFEST`
//! ([`DefaultPlan`]), where [`crate::Index::open`] takes it as the default. `mrl-index tune
//! --write` retunes and republishes ([`crate::Index::publish_default_plan`]).
//!
//! ```text
//! for each coarse setting (graph beam e = keep₀, or an exact scan with keep₀):
//!     run the coarse stage once per query, keep the pool
//!     simulate every later-stage keep on the pool (exact scores at each stage width):
//!         recall per plan, without searching again
//!     the cheapest plan (multiply-adds) whose recall ≥ target + 2·standard error
//! time each setting's pick with real searches, one thread ──► the fastest is the default
//! ```

use crate::candidate::Candidate;
use crate::default_plan::DefaultPlan;
use crate::exact::{batch_top_k_gemm, recall_at};
use crate::plan::{Keep, SearchPlan, Space, Stage};
use crate::search::{Filter, Hit, Scratch, SearchError, SearchParams};
use crate::Index;
use std::cell::Cell;
use std::time::Instant;

/// One measured configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct TuneRow {
    /// The plan.
    pub plan: SearchPlan,
    /// Beam width of the coarse stage (at least `n/16` means an exact coarse scan).
    pub ef: usize,
    /// Mean recall@k against exact full-width search.
    pub recall: f64,
    /// Standard error of that mean over the queries.
    pub recall_se: f64,
    /// Queries per second, one thread, one query at a time.
    pub qps: f64,
    /// Mean multiply-adds per query.
    pub mult_adds: f64,
}

/// The outcome of [`tune`].
#[derive(Debug, Clone)]
pub struct TuneResult {
    /// Every configuration timed, in the order measured.
    pub rows: Vec<TuneRow>,
    /// The chosen row: the fastest whose recall clears the target with its margin, else the
    /// one with the best recall.
    pub chosen: usize,
    /// Whether the chosen row clears the target with its margin.
    pub target_met: bool,
    /// Queries measured.
    pub queries: usize,
}

impl TuneResult {
    /// The chosen row.
    pub fn best(&self) -> &TuneRow {
        &self.rows[self.chosen]
    }

    /// The chosen row as a default plan, with what was measured (`source` describes the
    /// queries).
    pub fn default_plan(&self, k: usize, target: f64, source: &str) -> DefaultPlan {
        let r = self.best();
        let mut d = DefaultPlan::new(r.plan.clone(), Some(r.ef));
        d.notes.push(format!(
            "tuned on {} {source}: the fastest plan whose recall@{k} clears {target} by two standard errors{}",
            self.queries,
            if self.target_met { "" } else { " (none did: the most accurate)" }
        ));
        for (key, value) in [
            ("recall", format!("{:.4}", r.recall)),
            ("recall_se", format!("{:.4}", r.recall_se)),
            ("target", format!("{target}")),
            ("k", format!("{k}")),
            ("queries", format!("{}", self.queries)),
            ("qps", format!("{:.0}", r.qps)),
            ("source", source.to_string()),
        ] {
            d.info.push((key.to_string(), value));
        }
        d
    }
}

/// Settings of [`tune`].
#[derive(Debug, Clone, PartialEq)]
pub struct TuneOptions {
    /// Results per query the recall refers to.
    pub k: usize,
    /// Mean recall@k the plan must reach, plus two standard errors.
    pub target: f64,
    /// One id per query to exclude from its truth and its results: pseudo-queries drawn
    /// from the items themselves are not their own answer.
    pub exclude: Option<Vec<u64>>,
    /// How many standard errors of the mean recall the target is cleared by.
    pub margin_se: f64,
    /// Tune for answers at this native width (the `width`-d sub-model; queries are zeroed
    /// beyond it, the truth is exact `width`-d search). `None`: the full width.
    pub width: Option<usize>,
}

impl TuneOptions {
    /// Recall@`k` ≥ `target`, two standard errors of margin, no exclusions.
    pub fn new(k: usize, target: f64) -> TuneOptions {
        TuneOptions {
            k,
            target,
            exclude: None,
            margin_se: 2.0,
            width: None,
        }
    }
}

/// Queries the coarse settings are explored on (the picks are measured on all).
const EXPLORE_QUERIES: usize = 500;
/// Queries an exact scan is first timed on before it runs on all of them.
const SCAN_PROBE_QUERIES: usize = 20;

/// Coarse keeps tried, from the cheapest up.
const KEEPS: [usize; 22] = [
    10, 15, 20, 30, 40, 50, 75, 100, 150, 200, 300, 400, 500, 750, 1000, 1500, 2000, 3000, 5000,
    7500, 10_000, 20_000,
];
/// The most survivors, in full-width rows' worth of multiply-adds, a simulated learned plan
/// rescores at the native answer width.
const MAX_NATIVE_RESCORE: usize = 200;

/// Keeps tried at the learned stages after the coarse one.
const CODE_KEEPS: [usize; 13] = [10, 15, 20, 30, 40, 50, 75, 100, 150, 200, 300, 500, 1000];
/// Pool shrink factors tried at each later native width.
pub const SHRINKS: [f64; 6] = [1.4, 2.0, 10.0 / 3.0, 5.0, 10.0, 1000.0];

/// One query's coarse pool with the score of every candidate at every later stage width:
/// `scores[j][i]` is candidate `i`'s score at stage width `j` of [`Widths`].
struct Pool {
    /// The coarse candidates, best first.
    cands: Vec<Candidate>,
    /// `scores[j][i]`, computed when a simulated stage first needs it (NaN until then).
    scores: Vec<Vec<f32>>,
    /// The (zero-padded) query and its learned code, to score candidates on demand.
    query: Vec<f32>,
    code: Vec<f32>,
}

impl Pool {
    /// A pool of `cands` (any order) for `query`, nothing scored yet.
    fn new(index: &Index, widths: &Widths, mut cands: Vec<Candidate>, query: &[f32]) -> Pool {
        cands.sort_unstable_by(|a, b| b.cmp(a));
        let code_dim = index.space().map_or(0, |s| s.code_dim());
        let mut code = vec![0f32; code_dim];
        if let Some(space) = index.space() {
            space.project_query(query, query.len(), &mut code);
        }
        Pool {
            scores: vec![vec![f32::NAN; cands.len()]; widths.0.len()],
            cands,
            query: query.to_vec(),
            code,
        }
    }

    /// Scores candidates `idx` at stage width `col` where not yet scored.
    fn ensure(&mut self, index: &Index, widths: &Widths, col: usize, idx: &[usize]) {
        let stage = widths.0[col];
        let scores = &mut self.scores[col];
        match stage.space {
            Space::Learned => {
                let space = index.space().expect("learned widths come from a space");
                let nb = space.bands_for_width(stage.width).unwrap_or(0);
                for &i in idx {
                    if scores[i].is_nan() {
                        scores[i] = space.prefix_dot(&self.code, self.cands[i].row as usize, nb);
                    }
                }
            }
            Space::Native => {
                let store = index.store();
                let nb = store.bands_for_width(stage.width).unwrap_or(0);
                for &i in idx {
                    if scores[i].is_nan() {
                        scores[i] = store.prefix_dot(&self.query, self.cands[i].row as usize, nb);
                    }
                }
            }
        }
    }
}

/// The later stage widths a layout offers, in cascade order.
#[derive(Debug, Clone)]
struct Widths(Vec<Stage>);

/// A coarse setting and the plans simulated on its pools.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Coarse {
    /// Graph search with beam `ef`, keeping `ef`.
    Graph(usize),
    /// Exact scan of the coarse band, keeping this many.
    Scan(usize),
}

impl Coarse {
    fn keep(self) -> usize {
        match self {
            Coarse::Graph(e) | Coarse::Scan(e) => e,
        }
    }
}

/// Measures plans on `queries` (row-major, full width) and chooses the fastest whose mean
/// recall@k against exact full-width search clears `options.target` by
/// `options.margin_se` standard errors (see the module documentation).
pub fn tune(
    index: &Index,
    queries: &[f32],
    options: &TuneOptions,
) -> Result<TuneResult, SearchError> {
    crate::search::require_compacted(index)?;
    let dim = index.dim();
    let k = options.k;
    if k == 0 {
        return Err(SearchError::ZeroK);
    }
    if queries.is_empty() || !queries.len().is_multiple_of(dim) {
        return Err(SearchError::DimensionMismatch {
            expected: dim,
            got: queries.len() % dim,
        });
    }
    if let Some((i, v)) = queries.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(SearchError::NonFiniteQuery {
            dim: i % dim,
            value: *v,
        });
    }
    let nq = queries.len() / dim;
    if let Some(ex) = &options.exclude {
        if ex.len() != nq {
            return Err(SearchError::Plan(crate::plan::PlanError {
                plan: String::new(),
                reason: format!("{} exclusions for {nq} tuning queries", ex.len()),
            }));
        }
    }
    let n = index.len();
    let width = options.width.unwrap_or(dim);
    let answer = index
        .layout()
        .native_width_at_least(width)
        .filter(|_| width > 0)
        .ok_or(SearchError::Width { width, dim })?;
    // Queries zeroed beyond the answer width: their full-width inner products are the
    // width-d sub-model's.
    let padded = pad_queries(queries, dim, width);
    let queries: &[f32] = &padded;
    let answer_bands = index
        .store()
        .bands_for_width(answer)
        .expect("a nested width");
    let extra = usize::from(options.exclude.is_some());
    let mut truth = batch_top_k_gemm(index.store(), queries, k + extra, answer_bands);
    if let Some(ex) = &options.exclude {
        for (t, id) in truth.iter_mut().zip(ex) {
            t.retain(|h| h.id != *id);
            t.truncate(k);
        }
    }
    let truth_rows: Vec<Vec<u32>> = truth
        .iter()
        .map(|t| {
            t.iter()
                .filter_map(|h| index.store().row_of(h.id))
                .collect()
        })
        .collect();
    let settings = coarse_settings(index, k);
    let mut scratch = Scratch::new();
    let mut out: Vec<Hit> = Vec::with_capacity(k);
    let filters: Vec<[u64; 1]> = match &options.exclude {
        Some(ex) => ex.iter().map(|&id| [id]).collect(),
        None => Vec::new(),
    };
    let filter_of = |i: usize| match options.exclude {
        Some(_) => Filter::deny(&filters[i]),
        None => Filter::NONE,
    };
    let mut picks: Vec<(Coarse, SearchPlan)> = Vec::new();
    // Seconds per query of the fastest complete plan timed so far: a coarse stage slower
    // than that cannot win.
    let best_time = Cell::new(f64::INFINITY);
    let mut fallback: Option<(f64, Coarse, SearchPlan)> = None;
    // Settings are explored on the first EXPLORE_QUERIES queries; the picks are timed and
    // their recall measured on all of them.
    let ne = nq.min(EXPLORE_QUERIES);
    explore(
        index,
        &settings,
        &queries[..ne * dim],
        width,
        &truth_rows[..ne],
        &filter_of,
        &mut Scratch::new(),
        k,
        &|| best_time.get(),
        &mut |coarse, explored| {
            // The cheapest later stages that clear the target; the most accurate in case
            // none does.
            let mut best: Option<(f64, SearchPlan)> = None;
            for sim in explored.plans {
                if sim.recall - options.margin_se * sim.recall_se >= options.target {
                    if best.as_ref().is_none_or(|(c, _)| sim.cost < *c) {
                        best = Some((sim.cost, sim.plan));
                    }
                } else if fallback.as_ref().is_none_or(|(r, _, _)| sim.recall > *r) {
                    fallback = Some((sim.recall, coarse, sim.plan));
                }
            }
            if let Some((_, plan)) = best {
                // Time it now, to prune coarse settings that cannot beat it.
                let row = measure(
                    index,
                    &plan,
                    explored.ef,
                    queries,
                    width,
                    &truth,
                    &filter_of,
                    &mut scratch,
                    &mut out,
                )?;
                best_time.set(best_time.get().min(1.0 / row.qps));
                picks.push((coarse, plan));
            }
            Ok(true)
        },
    )?;
    let mut rows = Vec::new();
    for (coarse, plan) in &picks {
        rows.push(measure(
            index,
            plan,
            beam(index, *coarse),
            queries,
            width,
            &truth,
            &filter_of,
            &mut scratch,
            &mut out,
        )?);
    }
    let clears = |r: &TuneRow| r.recall - options.margin_se * r.recall_se >= options.target;
    let meeting: Vec<usize> = (0..rows.len()).filter(|&i| clears(&rows[i])).collect();
    if meeting.is_empty() {
        if let Some((_, coarse, plan)) = fallback {
            rows.push(measure(
                index,
                &plan,
                beam(index, coarse),
                queries,
                width,
                &truth,
                &filter_of,
                &mut scratch,
                &mut out,
            )?);
        }
        let chosen = (0..rows.len())
            .max_by(|&a, &b| rows[a].recall.total_cmp(&rows[b].recall))
            .unwrap_or(0);
        if rows.is_empty() {
            // A catalogue where no setting ran: the exact scan of everything.
            let plan = SearchPlan::default_for_layout(index.layout());
            rows.push(measure(
                index,
                &plan,
                n,
                queries,
                width,
                &truth,
                &filter_of,
                &mut scratch,
                &mut out,
            )?);
        }
        return Ok(TuneResult {
            rows,
            chosen,
            target_met: false,
            queries: nq,
        });
    }
    let chosen = meeting
        .iter()
        .copied()
        .max_by(|&a, &b| rows[a].qps.total_cmp(&rows[b].qps))
        .unwrap_or(meeting[0]);
    Ok(TuneResult {
        rows,
        chosen,
        target_met: true,
        queries: nq,
    })
}

/// Times `plan` with beam `ef` over every query (one thread, after a short warm-up) and
/// measures its recall.
#[allow(clippy::too_many_arguments)]
fn measure<'f>(
    index: &Index,
    plan: &SearchPlan,
    ef: usize,
    queries: &[f32],
    width: usize,
    truth: &[Vec<Hit>],
    filter_of: &dyn Fn(usize) -> Filter<'f>,
    scratch: &mut Scratch,
    out: &mut Vec<Hit>,
) -> Result<TuneRow, SearchError> {
    let dim = index.dim();
    let k = truth.first().map_or(1, |t| t.len().max(1));
    let params = SearchParams {
        plan: Some(plan.clone()),
        ef: Some(ef),
        width: Some(width),
    };
    for (i, q) in queries.chunks_exact(dim).enumerate().take(20) {
        index.search_with(scratch, q, k, &params, &filter_of(i), out)?;
    }
    let mut recalls = Vec::with_capacity(truth.len());
    let mut madds = 0u64;
    let t = Instant::now();
    for (i, (q, t_hits)) in queries.chunks_exact(dim).zip(truth).enumerate() {
        index.search_with(scratch, q, k, &params, &filter_of(i), out)?;
        recalls.push(recall_at(out, t_hits, k));
        madds += scratch.stats.multiply_adds;
    }
    let secs = t.elapsed().as_secs_f64();
    let nq = truth.len() as f64;
    let (recall, se) = mean_and_se(&recalls);
    Ok(TuneRow {
        plan: plan.clone(),
        ef,
        recall,
        recall_se: se,
        qps: nq / secs.max(1e-9),
        mult_adds: madds as f64 / nq,
    })
}

/// A later-stage plan simulated on a coarse setting's pools.
struct Simulated {
    plan: SearchPlan,
    recall: f64,
    recall_se: f64,
    cost: f64,
}

/// A coarse setting explored: its beam, the coarse stage's time per query, and every
/// later-stage plan simulated on its pools.
struct Explored {
    ef: usize,
    coarse_secs: f64,
    plans: Vec<Simulated>,
}

/// The beam a coarse setting searches with (an exact scan at `n`).
fn beam(index: &Index, coarse: Coarse) -> usize {
    match coarse {
        Coarse::Graph(e) => e,
        Coarse::Scan(_) => index.len(),
    }
}

/// Runs the coarse stage of `coarse` once per query, timed: each query's candidates, and
/// the seconds per query.
fn coarse_pools<'f>(
    index: &Index,
    coarse: Coarse,
    queries: &[f32],
    width: usize,
    filter_of: &dyn Fn(usize) -> Filter<'f>,
    scratch: &mut Scratch,
) -> Result<(Vec<Vec<Candidate>>, f64), SearchError> {
    let dim = index.dim();
    let nq = queries.len() / dim;
    let layout = index.layout();
    let answer = layout
        .native_width_at_least(width)
        .expect("width checked by the caller");
    let keep = coarse.keep();
    let first = Stage {
        width: layout.coarse_width,
        keep: Keep::Count(keep),
        space: layout.coarse_space,
    };
    let probe = if first.space == Space::Native && first.width >= answer {
        SearchPlan::new(vec![first])
    } else {
        SearchPlan::new(vec![first, Stage::native(answer, Keep::K)])
    }
    .expect("a probe plan has a valid shape");
    let params = SearchParams {
        plan: Some(probe),
        ef: Some(beam(index, coarse)),
        width: Some(width),
    };
    let t = Instant::now();
    let mut pools = Vec::with_capacity(nq);
    for (i, q) in queries.chunks_exact(dim).enumerate() {
        pools.push(index.coarse_candidates(scratch, q, keep, &params, &filter_of(i))?);
    }
    Ok((pools, t.elapsed().as_secs_f64() / nq.max(1) as f64))
}

/// Simulates every later-stage plan of a coarse setting keeping `keep` on its pools (the
/// best `keep` of each query's candidates).
#[allow(clippy::too_many_arguments)]
fn simulate_setting(
    index: &Index,
    coarse: Coarse,
    coarse_secs: f64,
    cands: &[Vec<Candidate>],
    queries: &[f32],
    width: usize,
    truth_rows: &[Vec<u32>],
    k: usize,
) -> Explored {
    let dim = index.dim();
    let answer = index
        .layout()
        .native_width_at_least(width)
        .expect("width checked by the caller");
    let widths = later_widths(index, answer);
    let keep = coarse.keep();
    let mut pools: Vec<Pool> = cands
        .iter()
        .zip(queries.chunks_exact(dim))
        .map(|(c, q)| {
            let mut c = c.clone();
            if c.len() > keep {
                c.select_nth_unstable_by(keep - 1, |a, b| b.cmp(a));
                c.truncate(keep);
            }
            Pool::new(index, &widths, c, q)
        })
        .collect();
    let candidates = later_plans(index, &widths, keep, k, answer);
    let results = simulate_many(index, &candidates, &widths, &mut pools, truth_rows, k);
    let plans = candidates
        .into_iter()
        .zip(results)
        .map(|(plan, (recall, recall_se))| {
            let cost = later_cost(&plan, keep, k);
            Simulated {
                plan,
                recall,
                recall_se,
                cost,
            }
        })
        .collect();
    Explored {
        ef: beam(index, coarse),
        coarse_secs,
        plans,
    }
}

/// Explores coarse settings: runs each graph setting's coarse stage, and the exact scan once
/// (keeping the most any scan setting keeps, each scan setting then taking its best
/// `keep`), and simulates their later stages, handing each to `visit`, which returns
/// whether to go on.
///
/// `budget` is the most seconds per query a coarse stage may take (`f64::INFINITY`: any):
/// a setting slower than it is not handed on, nor is any wider one of its kind; a scan is
/// first timed on SCAN_PROBE_QUERIES queries and not run in full if already over it.
#[allow(clippy::too_many_arguments)]
fn explore<'f>(
    index: &Index,
    settings: &[Coarse],
    queries: &[f32],
    width: usize,
    truth_rows: &[Vec<u32>],
    filter_of: &dyn Fn(usize) -> Filter<'f>,
    scratch: &mut Scratch,
    k: usize,
    budget: &dyn Fn() -> f64,
    visit: &mut dyn FnMut(Coarse, Explored) -> Result<bool, SearchError>,
) -> Result<(), SearchError> {
    let dim = index.dim();
    let nq = queries.len() / dim;
    let mut scan: Option<(Vec<Vec<Candidate>>, f64)> = None;
    let max_scan = settings
        .iter()
        .filter_map(|c| match c {
            Coarse::Scan(k) => Some(*k),
            Coarse::Graph(_) => None,
        })
        .max();
    let (mut pruned_graph, mut pruned_scan) = (false, false);
    for &coarse in settings {
        let pruned = match coarse {
            Coarse::Graph(_) => &mut pruned_graph,
            Coarse::Scan(_) => &mut pruned_scan,
        };
        if *pruned {
            continue;
        }
        let explored = match coarse {
            Coarse::Graph(_) => {
                let (pools, secs) =
                    coarse_pools(index, coarse, queries, width, filter_of, scratch)?;
                simulate_setting(index, coarse, secs, &pools, queries, width, truth_rows, k)
            }
            Coarse::Scan(_) => {
                // One scan keeping the most any scan setting keeps serves them all.
                if scan.is_none() {
                    let all = Coarse::Scan(max_scan.unwrap_or(coarse.keep()));
                    if budget().is_finite() {
                        let few = &queries[..nq.min(SCAN_PROBE_QUERIES) * dim];
                        let (_, secs) = coarse_pools(index, all, few, width, filter_of, scratch)?;
                        if secs > budget() {
                            *pruned = true;
                            continue;
                        }
                    }
                    scan = Some(coarse_pools(
                        index, all, queries, width, filter_of, scratch,
                    )?);
                }
                let (pools, secs) = scan.as_ref().expect("scanned just above");
                simulate_setting(index, coarse, *secs, pools, queries, width, truth_rows, k)
            }
        };
        if explored.coarse_secs > budget() {
            *pruned = true;
            continue;
        }
        if !visit(coarse, explored)? {
            break;
        }
    }
    Ok(())
}

/// Seconds per query of `plan` with beam `ef` over `queries` (one thread, after a warm-up).
fn time_plan(
    index: &Index,
    plan: &SearchPlan,
    ef: usize,
    queries: &[f32],
    k: usize,
    scratch: &mut Scratch,
) -> Result<f64, SearchError> {
    let dim = index.dim();
    let params = SearchParams {
        plan: Some(plan.clone()),
        ef: Some(ef),
        width: None,
    };
    let mut out = Vec::with_capacity(k);
    for q in queries.chunks_exact(dim).take(20) {
        index.search_with(scratch, q, k, &params, &Filter::NONE, &mut out)?;
    }
    let t = Instant::now();
    for q in queries.chunks_exact(dim) {
        index.search_with(scratch, q, k, &params, &Filter::NONE, &mut out)?;
    }
    Ok(t.elapsed().as_secs_f64() / (queries.len() / dim).max(1) as f64)
}

/// The recall–speed frontier of an index on `queries`, for benchmarks that should find the
/// fast end by themselves: for each recall level in `levels`, the plans that reach it most
/// cheaply — the two fastest by estimated time among graph settings and the two among
/// exact-scan settings (time = the measured coarse stage + the later stages' cost at a rate
/// measured once) — as `(plan, ef)` pairs, deduplicated, cheapest first. `truth` holds each
/// query's exact full-width top ids (at least `k`).
pub fn frontier(
    index: &Index,
    queries: &[f32],
    truth: &[Vec<u64>],
    k: usize,
    levels: &[f64],
) -> Result<Vec<(SearchPlan, usize)>, SearchError> {
    let dim = index.dim();
    if k == 0 {
        return Err(SearchError::ZeroK);
    }
    if queries.is_empty() || !queries.len().is_multiple_of(dim) {
        return Err(SearchError::DimensionMismatch {
            expected: dim,
            got: queries.len() % dim,
        });
    }
    if truth.len() != queries.len() / dim {
        return Err(SearchError::TruthCount {
            queries: queries.len() / dim,
            truth: truth.len(),
        });
    }
    let truth_rows: Vec<Vec<u32>> = truth
        .iter()
        .map(|t| {
            t.iter()
                .take(k)
                .filter_map(|&id| index.store().row_of(id))
                .collect()
        })
        .collect();
    let mut scratch = Scratch::new();
    let none = |_: usize| Filter::NONE;
    let mut explored = Vec::new();
    explore(
        index,
        &coarse_settings(index, k),
        queries,
        dim,
        &truth_rows,
        &none,
        &mut scratch,
        k,
        &|| f64::INFINITY,
        &mut |coarse, e| {
            explored.push((coarse, e));
            Ok(true)
        },
    )?;
    // The rate of the later stages' cost: one plan timed against its coarse stage.
    let mut rate = None;
    for (_, e) in &explored {
        if let Some(sim) = e.plans.iter().find(|s| s.cost > 0.0) {
            let t = time_plan(index, &sim.plan, e.ef, queries, k, &mut scratch)?;
            rate = Some(((t - e.coarse_secs) / sim.cost).max(0.0));
            break;
        }
    }
    let rate = rate.unwrap_or(0.0);
    let mut out: Vec<(f64, SearchPlan, usize)> = Vec::new();
    for &level in levels {
        for scan in [false, true] {
            let mut best: Vec<(f64, SearchPlan, usize)> = Vec::new();
            for (coarse, e) in &explored {
                if matches!(coarse, Coarse::Scan(_)) != scan {
                    continue;
                }
                let cheapest = e
                    .plans
                    .iter()
                    .filter(|s| s.recall >= level)
                    .min_by(|a, b| a.cost.total_cmp(&b.cost));
                if let Some(s) = cheapest {
                    best.push((e.coarse_secs + rate * s.cost, s.plan.clone(), e.ef));
                }
            }
            best.sort_by(|a, b| a.0.total_cmp(&b.0));
            out.extend(best.into_iter().take(2));
        }
    }
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut seen = std::collections::HashSet::new();
    Ok(out
        .into_iter()
        .filter(|(_, p, ef)| seen.insert((p.to_string(), *ef)))
        .map(|(_, p, ef)| (p, ef))
        .collect())
}

fn mean_and_se(values: &[f64]) -> (f64, f64) {
    let n = values.len().max(1) as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / (n - 1.0).max(1.0);
    (mean, (var / n).sqrt())
}

/// The stage widths after the coarse one: the learned code widths above it, then every
/// native width up to `answer` (above the coarse width when the coarse space is native).
fn later_widths(index: &Index, answer: usize) -> Widths {
    let layout = index.layout();
    let mut stages = Vec::new();
    if layout.coarse_space == Space::Learned {
        for &w in layout
            .code_widths
            .iter()
            .filter(|&&w| w > layout.coarse_width)
        {
            stages.push(Stage::learned(w, Keep::K));
        }
        for &w in layout.widths.iter().filter(|&&w| w <= answer) {
            stages.push(Stage::native(w, Keep::K));
        }
    } else {
        for &w in layout
            .widths
            .iter()
            .filter(|&&w| w > layout.coarse_width && w <= answer)
        {
            stages.push(Stage::native(w, Keep::K));
        }
    }
    Widths(stages)
}

/// `queries` (row-major, `dim` values each) zeroed beyond `width`.
fn pad_queries(queries: &[f32], dim: usize, width: usize) -> Vec<f32> {
    let mut out = queries.to_vec();
    if width < dim {
        for q in out.chunks_exact_mut(dim) {
            q[width..].fill(0.0);
        }
    }
    out
}

/// Coarse settings from the cheapest up: graph beams (keep = beam) below the exact-scan
/// threshold, and for catalogues of up to 250,000 items exact scans of the coarse band
/// keeping up to [`MAX_SCAN_KEEP`] (the whole catalogue when it is smaller).
fn coarse_settings(index: &Index, k: usize) -> Vec<Coarse> {
    let n = index.len();
    let mut settings: Vec<Coarse> = KEEPS
        .iter()
        .copied()
        .filter(|&e| e >= k && e.saturating_mul(crate::search::EXACT_COARSE_FRACTION) < n)
        .map(Coarse::Graph)
        .collect();
    if n <= 250_000 {
        let mut scans: Vec<usize> = KEEPS
            .iter()
            .copied()
            .filter(|&e| e >= k && e < n && e <= MAX_SCAN_KEEP)
            .collect();
        if n <= MAX_SCAN_KEEP {
            scans.push(n);
        }
        settings.extend(scans.into_iter().map(Coarse::Scan));
    }
    settings
}

/// The most an exact-scan setting keeps: scans exist for small catalogues, where a few
/// thousand candidates are already a large share.
const MAX_SCAN_KEEP: usize = 5000;

/// The later-stage plans simulated for a coarse keep: with a learned coarse space, each
/// learned keep (or none) then the full width; natively, geometric shrinks.
fn later_plans(
    index: &Index,
    widths: &Widths,
    keep: usize,
    k: usize,
    answer: usize,
) -> Vec<SearchPlan> {
    let layout = index.layout();
    let dim = answer;
    let mut plans = Vec::new();
    match layout.coarse_space {
        Space::Learned => {
            let learned: Vec<usize> = widths
                .0
                .iter()
                .filter(|s| s.space == Space::Learned)
                .map(|s| s.width)
                .collect();
            let first = Stage::learned(layout.coarse_width, Keep::Count(keep));
            // Every learned width above the coarse one, each kept at one of CODE_KEEPS (no
            // more than the stage before) or skipped, then the full width.
            let mut prefixes: Vec<(Vec<Stage>, usize)> = vec![(vec![first], keep)];
            for &w in &learned {
                let mut next = Vec::new();
                for (stages, last) in &prefixes {
                    next.push((stages.clone(), *last));
                    for &r in CODE_KEEPS.iter().filter(|&&r| r >= k && r < *last) {
                        let mut s = stages.clone();
                        s.push(Stage::learned(w, Keep::Count(r)));
                        next.push((s, r));
                    }
                }
                prefixes = next;
            }
            // Rescoring more survivors than MAX_NATIVE_RESCORE full-width rows cost at the
            // answer width never beats narrowing them on the code first.
            for (mut stages, last) in prefixes {
                if last * answer <= MAX_NATIVE_RESCORE * index.dim() {
                    stages.push(Stage::native(dim, Keep::K));
                    plans.push(stages);
                }
            }
        }
        Space::Native if layout.coarse_width >= answer => {
            // The answer width lies within the coarse band: the coarse stage's best k.
            plans.push(vec![Stage::native(layout.coarse_width, Keep::K)]);
        }
        Space::Native => {
            let upto: Vec<usize> = layout
                .widths
                .iter()
                .copied()
                .filter(|&w| w <= answer)
                .collect();
            for shrink in SHRINKS {
                plans.push(
                    SearchPlan::geometric(&upto, layout.coarse_width, keep, shrink)
                        .stages()
                        .to_vec(),
                );
            }
        }
    }
    plans
        .into_iter()
        .filter_map(|s| SearchPlan::new(s).ok())
        .collect()
}

/// Multiply-adds of a plan's later stages per query (the coarse stage is the same for
/// every plan of a setting), plus a per-row charge for fetching each row.
fn later_cost(plan: &SearchPlan, keep0: usize, k: usize) -> f64 {
    const ROW_CHARGE: f64 = 48.0;
    let mut cost = 0.0;
    let mut rows = keep0 as f64;
    let mut prev = plan.stages()[0];
    for s in &plan.stages()[1..] {
        let dims = if s.space == prev.space {
            s.width - prev.width
        } else {
            s.width
        };
        cost += rows * (dims as f64 + ROW_CHARGE);
        rows = s.keep.resolve(k) as f64;
        prev = *s;
    }
    cost
}

/// Replays every plan's later stages on the scored pools: each plan's mean recall@k against
/// `truth` (each query's true top-k as store rows) and its standard error. Plans sharing
/// their first stages share the selections of those stages (the plans of a setting are
/// generated in prefix order).
fn simulate_many(
    index: &Index,
    plans: &[SearchPlan],
    widths: &Widths,
    pools: &mut [Pool],
    truth: &[Vec<u32>],
    k: usize,
) -> Vec<(f64, f64)> {
    let col_of = |s: &Stage| {
        widths
            .0
            .iter()
            .position(|w| w.space == s.space && w.width == s.width)
    };
    let mut recalls = vec![Vec::with_capacity(pools.len()); plans.len()];
    // stack[d]: the surviving candidates after stage d of the current plan.
    let mut stack: Vec<(Stage, Vec<usize>)> = Vec::new();
    for (pool, t) in pools.iter_mut().zip(truth) {
        stack.clear();
        let mut prev: &[Stage] = &[];
        for (p, plan) in plans.iter().enumerate() {
            let stages = plan.stages();
            let shared = stages
                .iter()
                .zip(prev)
                .take_while(|(a, b)| a == b)
                .count()
                .min(stack.len());
            stack.truncate(shared);
            for (d, s) in stages.iter().enumerate().skip(shared) {
                let keep = s.keep.resolve(k);
                let mut idx: Vec<usize> = match stack.last() {
                    None => (0..pool.cands.len().min(keep)).collect(),
                    Some((_, before)) => before.clone(),
                };
                if d > 0 {
                    let col = col_of(s).expect("later widths come from the layout");
                    pool.ensure(index, widths, col, &idx);
                    let scores = &pool.scores[col];
                    let cands = &pool.cands;
                    let key = |i: usize| Candidate {
                        score: scores[i],
                        row: cands[i].row,
                    };
                    if idx.len() > keep {
                        idx.select_nth_unstable_by(keep - 1, |&a, &b| key(b).cmp(&key(a)));
                        idx.truncate(keep);
                    }
                    if d + 1 == stages.len() {
                        idx.sort_unstable_by_key(|&i| std::cmp::Reverse(key(i)));
                    }
                }
                stack.push((*s, idx));
            }
            prev = stages;
            let found = &stack.last().expect("a plan has stages").1;
            let recall = if t.is_empty() {
                1.0
            } else {
                found
                    .iter()
                    .take(k)
                    .filter(|&&i| t.contains(&pool.cands[i].row))
                    .count() as f64
                    / t.len() as f64
            };
            recalls[p].push(recall);
        }
    }
    recalls.iter().map(|r| mean_and_se(r)).collect()
}
