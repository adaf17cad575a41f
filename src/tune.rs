//! Choosing a plan for an index from its own queries, and storing it with the index.
//!
//! How much of the full-width ranking the coarse prefix carries depends on the model: on
//! strongly Matryoshka data a coarse keep of a few hundred suffices, on the text-only
//! fMRLRec Beauty model the 64-d prefix is weak and the coarse stage must keep thousands.
//! [`tune`] measures a grid of plans against exact full-width search on sample queries and
//! picks the fastest that reaches a recall target; [`write_default_plan`] stores it in the
//! index directory (`DEFAULT_PLAN`), where [`crate::Index::open`] picks it up as the default.

use crate::exact::{batch_top_k, recall_at};
use crate::plan::{SearchPlan, DEFAULT_SHRINK};
use crate::search::{Filter, Hit, Scratch, SearchError, SearchParams};
use crate::Index;
use std::path::Path;
use std::time::Instant;

/// File name of the stored default plan inside an index directory.
pub const DEFAULT_PLAN_FILE: &str = "DEFAULT_PLAN";

/// One measured configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct TuneRow {
    /// The plan.
    pub plan: SearchPlan,
    /// Beam width of the coarse stage.
    pub ef: usize,
    /// Mean recall@k against exact full-width search.
    pub recall: f64,
    /// Queries per second, one thread, one query at a time.
    pub qps: f64,
    /// Mean multiply-adds per query.
    pub mult_adds: f64,
}

/// The outcome of [`tune`].
#[derive(Debug, Clone)]
pub struct TuneResult {
    /// Every configuration measured, in grid order.
    pub rows: Vec<TuneRow>,
    /// The chosen row: the fastest reaching the target, else the one with the best recall.
    pub chosen: usize,
    /// Whether the chosen row reaches the target.
    pub target_met: bool,
}

/// Factors by which the candidate pool shrinks at each later width in the tuning grid.
pub const SHRINKS: [f64; 3] = [DEFAULT_SHRINK, 2.0, 10.0 / 3.0];

/// Measures geometric plans (coarse keep 100, 200, 500, 1000, … up to the item count, later
/// widths shrinking by each of [`SHRINKS`], `ef` = keep and 2·keep) on `queries` (row-major, full width) and
/// chooses the fastest with mean recall@`k` ≥ `target` against exact full-width search.
pub fn tune(
    index: &Index,
    queries: &[f32],
    k: usize,
    target: f64,
) -> Result<TuneResult, SearchError> {
    let dim = index.dim();
    if queries.is_empty() || queries.len() % dim != 0 {
        return Err(SearchError::DimensionMismatch {
            expected: dim,
            got: queries.len() % dim,
        });
    }
    let n = index.len();
    let full = index.store().bands().len();
    let truth = batch_top_k(index.store(), queries, k, full);
    let widths = index.widths();
    let mut keeps = Vec::new();
    let mut base = 100usize;
    'outer: loop {
        for m in [1usize, 2, 5] {
            let keep = base * m;
            if keep >= n {
                keeps.push(n);
                break 'outer;
            }
            keeps.push(keep);
        }
        base *= 10;
    }
    let mut rows = Vec::new();
    let mut scratch = Scratch::new();
    let mut out: Vec<Hit> = Vec::with_capacity(k);
    for &keep in &keeps {
        for shrink in SHRINKS {
            for ef in [keep, (2 * keep).min(n)] {
                let plan = SearchPlan::geometric(&widths, index.coarse_dim(), keep, shrink);
                let params = SearchParams {
                    plan: Some(plan.clone()),
                    ef: Some(ef),
                };
                // Warm up, then time one pass.
                for q in queries.chunks_exact(dim).take(10) {
                    index.search_with(&mut scratch, q, k, &params, &Filter::NONE, &mut out)?;
                }
                let mut recall = 0.0;
                let mut madds = 0u64;
                let t = Instant::now();
                for (q, t_hits) in queries.chunks_exact(dim).zip(&truth) {
                    index.search_with(&mut scratch, q, k, &params, &Filter::NONE, &mut out)?;
                    recall += recall_at(&out, t_hits, k);
                    madds += scratch.stats.multiply_adds;
                }
                let secs = t.elapsed().as_secs_f64();
                let nq = truth.len() as f64;
                rows.push(TuneRow {
                    plan,
                    ef,
                    recall: recall / nq,
                    qps: nq / secs.max(1e-9),
                    mult_adds: madds as f64 / nq,
                });
                if ef >= n || ef.saturating_mul(16) >= n {
                    // The coarse stage is an exact scan from here on: a wider beam changes nothing.
                    break;
                }
            }
        }
    }
    let meeting: Vec<usize> = (0..rows.len())
        .filter(|&i| rows[i].recall >= target)
        .collect();
    let (chosen, target_met) = if meeting.is_empty() {
        let best = (0..rows.len())
            .max_by(|&a, &b| rows[a].recall.total_cmp(&rows[b].recall))
            .unwrap_or(0);
        (best, false)
    } else {
        let fastest = meeting
            .iter()
            .copied()
            .max_by(|&a, &b| rows[a].qps.total_cmp(&rows[b].qps))
            .unwrap_or(meeting[0]);
        (fastest, true)
    };
    Ok(TuneResult {
        rows,
        chosen,
        target_met,
    })
}

/// Writes `DEFAULT_PLAN` into the index directory atomically: `plan=…` and `ef=…` lines,
/// after `#` comment lines saying where they came from.
pub fn write_default_plan(
    dir: &Path,
    plan: &SearchPlan,
    ef: usize,
    note: &str,
) -> std::io::Result<()> {
    let mut text = String::new();
    for line in note.lines() {
        text.push_str("# ");
        text.push_str(line);
        text.push('\n');
    }
    text.push_str(&format!("plan={plan}\nef={ef}\n"));
    crate::atomic::write_atomic(&dir.join(DEFAULT_PLAN_FILE), text.as_bytes())
}

/// Parses a `DEFAULT_PLAN` file: `plan=` (required) and `ef=` (optional) lines; `#` starts a
/// comment line. Returns a description of the problem on failure.
pub fn parse_default_plan(text: &str) -> Result<(SearchPlan, Option<usize>), String> {
    let mut plan = None;
    let mut ef = None;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.split_once('=') {
            Some(("plan", v)) => {
                plan = Some(v.trim().parse::<SearchPlan>().map_err(|e| e.to_string())?)
            }
            Some(("ef", v)) => {
                ef = Some(
                    v.trim()
                        .parse::<usize>()
                        .map_err(|_| format!("line {}: ef {v:?} is not a number", i + 1))?,
                )
            }
            _ => {
                return Err(format!(
                    "line {}: expected plan=… or ef=…, found {line:?}",
                    i + 1
                ))
            }
        }
    }
    plan.map(|p| (p, ef))
        .ok_or_else(|| "no plan= line".to_string())
}
