//! Search plans: the stages of the cascade.
//!
//! A plan is a list of `(width, keep)` stages written `64:1000,128:300,256:100,1024:k`. The
//! coarse stage proposes candidates at the first width; each later stage scores every
//! surviving candidate at its width and keeps the best `keep`. `k` stands for the number of
//! results asked for.
//!
//! Widths are native prefix widths of the store, or, written `L64`, widths of the index's
//! learned code ([`crate::space`]): `L64:400,L128:100,1024:k` takes 400 candidates from the
//! first 64 learned dims, extends their scores to 128 learned dims, keeps 100, and scores
//! those exactly at the native full width. Learned stages come first; native stages follow
//! and the last stage is native, so returned scores are always exact native inner products.
//! Between stages of one space only the new dims are multiplied; the first native stage
//! after learned ones scores its whole prefix.

use std::fmt;
use std::str::FromStr;

/// How many candidates a stage keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// A fixed number (raised to `k` if smaller, so a stage never drops below the answer size).
    Count(usize),
    /// Exactly the number of results asked for.
    K,
}

impl Keep {
    /// The number kept when `k` results are asked for.
    pub fn resolve(self, k: usize) -> usize {
        match self {
            Keep::Count(c) => c.max(k),
            Keep::K => k,
        }
    }
}

/// Which vectors a stage scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Space {
    /// Prefixes of the native vectors in the store.
    #[default]
    Native,
    /// Prefixes of the learned code ([`crate::space`]), written with an `L` before the width.
    Learned,
}

impl Space {
    /// `"native"` or `"learned"`.
    pub fn name(self) -> &'static str {
        match self {
            Space::Native => "native",
            Space::Learned => "learned",
        }
    }
}

/// One stage of a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stage {
    /// Prefix width scored by the end of this stage: a nested width of the store, or of the
    /// learned code for a [`Space::Learned`] stage.
    pub width: usize,
    /// Candidates kept after the stage.
    pub keep: Keep,
    /// Which vectors the stage scores.
    pub space: Space,
}

impl Stage {
    /// A native stage.
    pub fn native(width: usize, keep: Keep) -> Stage {
        Stage {
            width,
            keep,
            space: Space::Native,
        }
    }

    /// A learned-code stage.
    pub fn learned(width: usize, keep: Keep) -> Stage {
        Stage {
            width,
            keep,
            space: Space::Learned,
        }
    }
}

/// A cascade: learned stages (if any) then native stages, widths strictly increasing within
/// each space, keeps non-increasing, the last stage native.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchPlan {
    stages: Vec<Stage>,
}

/// A plan that could not be parsed or does not fit the index.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid search plan {plan:?}: {reason}")]
pub struct PlanError {
    /// The plan as written.
    pub plan: String,
    /// What is wrong with it.
    pub reason: String,
}

/// What an index offers a plan: its native widths, its learned code widths (empty without a
/// learned space), and the space and width of its coarse graph.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexLayout {
    /// The store's nested widths, ending at the full dimension.
    pub widths: Vec<usize>,
    /// The learned code's nested widths (empty when the index has no learned space).
    pub code_widths: Vec<usize>,
    /// The space the coarse graph is built in.
    pub coarse_space: Space,
    /// The width the coarse graph is built on.
    pub coarse_width: usize,
}

impl IndexLayout {
    /// A layout without a learned space, the graph on the native prefix `coarse_width`.
    pub fn native(widths: &[usize], coarse_width: usize) -> IndexLayout {
        IndexLayout {
            widths: widths.to_vec(),
            code_widths: Vec::new(),
            coarse_space: Space::Native,
            coarse_width,
        }
    }

    /// The full dimension.
    pub fn dim(&self) -> usize {
        self.widths.last().copied().unwrap_or(0)
    }

    /// The smallest native nested width that is at least `width`, if any.
    pub fn native_width_at_least(&self, width: usize) -> Option<usize> {
        self.widths.iter().copied().find(|&w| w >= width)
    }
}

impl SearchPlan {
    /// A plan from explicit stages; checked for shape (see [`SearchPlan::check_shape`]).
    pub fn new(stages: Vec<Stage>) -> Result<SearchPlan, PlanError> {
        let plan = SearchPlan { stages };
        plan.check_shape()?;
        Ok(plan)
    }

    /// The stages.
    pub fn stages(&self) -> &[Stage] {
        &self.stages
    }

    /// The coarse (first) stage's width.
    pub fn coarse_width(&self) -> usize {
        self.stages[0].width
    }

    /// The coarse (first) stage's space.
    pub fn coarse_space(&self) -> Space {
        self.stages[0].space
    }

    /// The final stage's width: the native width of the returned scores.
    pub fn final_width(&self) -> usize {
        self.stages[self.stages.len() - 1].width
    }

    /// The widest learned stage, if the plan has learned stages.
    pub fn learned_width(&self) -> Option<usize> {
        self.stages
            .iter()
            .filter(|s| s.space == Space::Learned)
            .map(|s| s.width)
            .max()
    }

    fn error(&self, reason: impl Into<String>) -> PlanError {
        PlanError {
            plan: self.to_string(),
            reason: reason.into(),
        }
    }

    /// At least one stage; learned stages first and the last stage native; widths strictly
    /// increasing within a space; counts positive and non-increasing.
    pub fn check_shape(&self) -> Result<(), PlanError> {
        if self.stages.is_empty() {
            return Err(PlanError {
                plan: String::new(),
                reason: "a plan needs at least one stage".into(),
            });
        }
        let mut prev: Option<&Stage> = None;
        for s in &self.stages {
            if s.width == 0 {
                return Err(self.error("stage width 0"));
            }
            if s.keep == Keep::Count(0) {
                return Err(self.error(format!("stage {} keeps 0 candidates", s.width)));
            }
            if let Some(p) = prev {
                match (p.space, s.space) {
                    (Space::Native, Space::Learned) => {
                        return Err(
                            self.error("learned stages (L…) must come before the native stages")
                        )
                    }
                    (a, b) if a == b && s.width <= p.width => {
                        return Err(self.error(format!(
                            "widths must increase: {} follows {}",
                            s.width, p.width
                        )))
                    }
                    _ => {}
                }
                if let (Keep::Count(a), Keep::Count(b)) = (p.keep, s.keep) {
                    if b > a {
                        return Err(self.error(format!(
                            "a stage cannot keep more than the one before ({b} after {a})"
                        )));
                    }
                }
                if p.keep == Keep::K && s.keep != Keep::K {
                    return Err(self.error("only the stages after a `k` stage may keep `k`"));
                }
            }
            prev = Some(s);
        }
        if self.stages[self.stages.len() - 1].space != Space::Native {
            return Err(self.error(
                "the last stage must be a native width: returned scores are exact inner products",
            ));
        }
        Ok(())
    }

    /// Checks the plan against an index without a learned space: the first width is the
    /// coarse width and every width is one of the index's nested widths.
    pub fn check_against(&self, widths: &[usize], coarse_dim: usize) -> Result<(), PlanError> {
        self.check_against_layout(&IndexLayout::native(widths, coarse_dim))
    }

    /// Checks the plan against an index: the first stage is the coarse graph's space and
    /// width, and every width is one of the nested widths of its space.
    pub fn check_against_layout(&self, layout: &IndexLayout) -> Result<(), PlanError> {
        self.check_shape()?;
        let first = self.stages[0];
        if first.space != layout.coarse_space || first.width != layout.coarse_width {
            let want = match layout.coarse_space {
                Space::Native => format!("{}", layout.coarse_width),
                Space::Learned => format!("L{}", layout.coarse_width),
            };
            return Err(self.error(format!(
                "the first stage must be the coarse graph's width {want}, not {}",
                StageText(&first)
            )));
        }
        for s in &self.stages {
            let (widths, what) = match s.space {
                Space::Native => (&layout.widths, "nested widths"),
                Space::Learned => (&layout.code_widths, "learned code widths"),
            };
            if !widths.contains(&s.width) {
                return Err(self.error(format!(
                    "width {} is not one of the index's {what} {widths:?}",
                    StageText(s)
                )));
            }
        }
        Ok(())
    }

    /// The default plan for an index with these nested widths and coarse width.
    ///
    /// The coarse stage keeps [`DEFAULT_COARSE_KEEP`] candidates; each later nested width
    /// divides the pool by [`DEFAULT_SHRINK`] (never below `k`: see [`Keep::resolve`]), and the
    /// full width keeps `k`. For widths 64..1024 this is `64:100,128:71,256:51,512:36,1024:k`.
    /// See `docs/tuning.md` for the measurements behind it.
    pub fn default_for(widths: &[usize], coarse_dim: usize) -> SearchPlan {
        Self::geometric(widths, coarse_dim, DEFAULT_COARSE_KEEP, DEFAULT_SHRINK)
    }

    /// The untuned default plan of a layout: [`SearchPlan::default_for`] without a learned
    /// space; with one, [`DEFAULT_LEARNED_KEEPS`] over the code widths, then the full width.
    /// (A build tunes its own default; this is the fallback for untuned indexes.)
    pub fn default_for_layout(layout: &IndexLayout) -> SearchPlan {
        match layout.coarse_space {
            Space::Native => Self::default_for(&layout.widths, layout.coarse_width),
            Space::Learned => {
                let keeps: Vec<usize> = layout
                    .code_widths
                    .iter()
                    .filter(|&&w| w >= layout.coarse_width)
                    .enumerate()
                    .map(|(i, _)| DEFAULT_LEARNED_KEEPS[i.min(DEFAULT_LEARNED_KEEPS.len() - 1)])
                    .collect();
                Self::learned(layout, &keeps, layout.dim())
            }
        }
    }

    /// A plan over the learned code widths from the coarse width up, keeping `keeps[i]` at
    /// the `i`-th of them, then the native `final_width` keeping `k`.
    pub fn learned(layout: &IndexLayout, keeps: &[usize], final_width: usize) -> SearchPlan {
        let mut stages: Vec<Stage> = layout
            .code_widths
            .iter()
            .filter(|&&w| w >= layout.coarse_width)
            .zip(keeps)
            .map(|(&w, &keep)| Stage::learned(w, Keep::Count(keep.max(1))))
            .collect();
        // Keeps must not increase.
        for i in 1..stages.len() {
            if let (Keep::Count(a), Keep::Count(b)) = (stages[i - 1].keep, stages[i].keep) {
                stages[i].keep = Keep::Count(a.min(b));
            }
        }
        stages.push(Stage::native(final_width, Keep::K));
        SearchPlan { stages }
    }

    /// A plan over every nested width from `coarse_dim` to the full width, keeping
    /// `coarse_keep` at the coarse width and dividing by `shrink` at each later width, `k` at
    /// the last.
    pub fn geometric(
        widths: &[usize],
        coarse_dim: usize,
        coarse_keep: usize,
        shrink: f64,
    ) -> SearchPlan {
        let later: Vec<usize> = widths.iter().copied().filter(|&w| w > coarse_dim).collect();
        let mut stages = vec![Stage::native(
            coarse_dim,
            if later.is_empty() {
                Keep::K
            } else {
                Keep::Count(coarse_keep.max(1))
            },
        )];
        let mut keep = coarse_keep.max(1) as f64;
        for (i, &w) in later.iter().enumerate() {
            keep /= shrink.max(1.0);
            let k = if i + 1 == later.len() {
                Keep::K
            } else {
                Keep::Count((keep.round() as usize).max(1))
            };
            stages.push(Stage::native(w, k));
        }
        SearchPlan { stages }
    }

    /// This plan cut to answer at native width `width` (any width from 1 to the full
    /// dimension; the query is zero beyond it): native stages below the smallest nested
    /// width `W ≥ width` are kept, the last stage becomes `W:k`. A plan whose coarse stage
    /// is native and at least `W` becomes the coarse stage alone, keeping `k`. Learned
    /// stages are kept. `None` if `width` is 0 or beyond the full dimension.
    pub fn for_width(&self, layout: &IndexLayout, width: usize) -> Option<SearchPlan> {
        if width == 0 {
            return None;
        }
        let w = layout.native_width_at_least(width)?;
        let first = self.stages[0];
        if first.space == Space::Native && first.width >= w {
            return Some(SearchPlan {
                stages: vec![Stage::native(first.width, Keep::K)],
            });
        }
        let mut stages: Vec<Stage> = self
            .stages
            .iter()
            .copied()
            .filter(|s| s.space == Space::Learned || s.width < w)
            .collect();
        stages.push(Stage::native(w, Keep::K));
        Some(SearchPlan { stages })
    }
}

/// Candidates the coarse stage of the default native plan keeps (and its default beam
/// width). 100 since the coarse graph is built with inner-product neighbour selection:
/// measured at 100k × 1024 (strong set), `64:100,…` with this shrink reaches recall@10 0.992
/// at ~15k q/s on one thread where the former `64:1000,128:300,…` reached 0.999 at ~2.1k
/// (docs/tuning.md).
pub const DEFAULT_COARSE_KEEP: usize = 100;
/// Factor by which the default plan shrinks the pool at each later width: slowly, because
/// the later stages are cheap next to the coarse search and a fast shrink loses recall there.
pub const DEFAULT_SHRINK: f64 = 1.4;
/// Keeps of the untuned default plan of an index with a learned space, at its successive
/// code widths from the coarse one (`L64:500,L128:100,1024:k` for a 128-d code): measured on
/// the real Beauty model, the learned 128-d top-100 holds 0.99 of the full-width top-10
/// (docs/tuning.md). A build replaces it by a plan tuned on held-out queries.
pub const DEFAULT_LEARNED_KEEPS: [usize; 2] = [500, 100];

struct StageText<'a>(&'a Stage);

impl fmt::Display for StageText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.space == Space::Learned {
            f.write_str("L")?;
        }
        write!(f, "{}", self.0.width)
    }
}

impl fmt::Display for SearchPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.stages.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            match s.keep {
                Keep::Count(c) => write!(f, "{}:{c}", StageText(s))?,
                Keep::K => write!(f, "{}:k", StageText(s))?,
            }
        }
        Ok(())
    }
}

impl FromStr for SearchPlan {
    type Err = PlanError;
    fn from_str(text: &str) -> Result<SearchPlan, PlanError> {
        let err = |reason: String| PlanError {
            plan: text.to_string(),
            reason,
        };
        let mut stages = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (w, k) = part
                .split_once(':')
                .ok_or_else(|| err(format!("stage {part:?} is not WIDTH:KEEP")))?;
            let w = w.trim();
            let (space, digits) = match w.strip_prefix(['L', 'l']) {
                Some(rest) => (Space::Learned, rest),
                None => (Space::Native, w),
            };
            let width = digits.parse::<usize>().map_err(|_| {
                err(format!(
                    "width {w:?} is not a positive integer (or L and one, for a learned width)"
                ))
            })?;
            let keep = match k.trim() {
                "k" | "K" => Keep::K,
                n => Keep::Count(
                    n.parse::<usize>()
                        .map_err(|_| err(format!("keep {n:?} is not a positive integer or `k`")))?,
                ),
            };
            stages.push(Stage { width, keep, space });
        }
        SearchPlan::new(stages).map_err(|e| err(e.reason))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        let p: SearchPlan = "64:1000,128:300,256:100,512:30,1024:k".parse().unwrap();
        assert_eq!(p.stages().len(), 5);
        assert_eq!(p.to_string(), "64:1000,128:300,256:100,512:30,1024:k");
        assert_eq!(p.stages()[4].keep.resolve(10), 10);
        assert_eq!(p.stages()[1].keep.resolve(500), 500);
        let l: SearchPlan = "L64:400, l128:100, 512:20, 1024:k".parse().unwrap();
        assert_eq!(l.to_string(), "L64:400,L128:100,512:20,1024:k");
        assert_eq!(l.coarse_space(), Space::Learned);
        assert_eq!(l.learned_width(), Some(128));
        assert_eq!(l.final_width(), 1024);
    }

    #[test]
    fn rejects_bad_plans() {
        for bad in [
            "",
            "64",
            "64:x",
            "64:100,32:10",
            "64:100,128:200",
            "64:0",
            "64:k,128:10",
            "x:10",
            "L64:100",
            "64:100,L128:10,1024:k",
            "L64:100,L32:50,1024:k",
            "Lx:10,64:k",
        ] {
            assert!(
                bad.parse::<SearchPlan>().is_err(),
                "{bad:?} should be rejected"
            );
        }
        let p: SearchPlan = "64:100,128:k".parse().unwrap();
        assert!(p.check_against(&[64, 256], 64).is_err());
        assert!(p.check_against(&[32, 64, 128], 32).is_err());
        assert!(p.check_against(&[64, 128], 64).is_ok());
    }

    #[test]
    fn learned_plans_check_against_the_layout() {
        let layout = IndexLayout {
            widths: vec![64, 128, 256, 512, 1024],
            code_widths: vec![64, 128],
            coarse_space: Space::Learned,
            coarse_width: 64,
        };
        let ok: SearchPlan = "L64:400,L128:100,1024:k".parse().unwrap();
        ok.check_against_layout(&layout).unwrap();
        for bad in [
            "64:100,1024:k",
            "L64:400,L96:10,1024:k",
            "L128:10,1024:k",
            "L64:10,1000:k",
        ] {
            let p: SearchPlan = bad.parse().unwrap();
            let e = p.check_against_layout(&layout).unwrap_err();
            assert!(!e.reason.is_empty(), "{bad}");
        }
        assert_eq!(
            SearchPlan::default_for_layout(&layout).to_string(),
            "L64:500,L128:100,1024:k"
        );
        let w = ok.for_width(&layout, 200).unwrap();
        assert_eq!(w.to_string(), "L64:400,L128:100,256:k");
        w.check_against_layout(&layout).unwrap();
        assert!(ok.for_width(&layout, 0).is_none());
        assert!(ok.for_width(&layout, 2000).is_none());
    }

    #[test]
    fn native_plans_cut_to_a_width() {
        let layout = IndexLayout::native(&[32, 64, 128, 256], 64);
        let p = SearchPlan::default_for(&layout.widths, 64);
        assert_eq!(p.to_string(), "64:100,128:71,256:k");
        assert_eq!(
            p.for_width(&layout, 128).unwrap().to_string(),
            "64:100,128:k"
        );
        assert_eq!(
            p.for_width(&layout, 100).unwrap().to_string(),
            "64:100,128:k"
        );
        assert_eq!(p.for_width(&layout, 64).unwrap().to_string(), "64:k");
        assert_eq!(p.for_width(&layout, 20).unwrap().to_string(), "64:k");
        for w in [20, 64, 100, 128, 256] {
            p.for_width(&layout, w)
                .unwrap()
                .check_against_layout(&layout)
                .unwrap();
        }
    }

    #[test]
    fn default_plan_covers_every_width() {
        let p = SearchPlan::default_for(&[64, 128, 256, 512, 1024], 64);
        assert_eq!(p.to_string(), "64:100,128:71,256:51,512:36,1024:k");
        p.check_against(&[64, 128, 256, 512, 1024], 64).unwrap();
        let single = SearchPlan::default_for(&[64], 64);
        assert_eq!(single.to_string(), "64:k");
    }
}
