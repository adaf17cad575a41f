//! Search plans: the stages of the cascade.
//!
//! A plan is a list of `(width, keep)` stages written `64:1000,128:300,256:100,1024:k`. The
//! graph proposes candidates at the first (coarse) width; each later stage extends every
//! surviving candidate's score by the dot product over the new dims only, then keeps the best
//! `keep`. `k` stands for the number of results asked for.

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

/// One stage of a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stage {
    /// Prefix width scored by the end of this stage (a nested width of the index).
    pub width: usize,
    /// Candidates kept after the stage.
    pub keep: Keep,
}

/// A cascade: stages of strictly increasing width and non-increasing keep.
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

    /// The final stage's width: the width of the returned scores.
    pub fn final_width(&self) -> usize {
        self.stages[self.stages.len() - 1].width
    }

    fn error(&self, reason: impl Into<String>) -> PlanError {
        PlanError {
            plan: self.to_string(),
            reason: reason.into(),
        }
    }

    /// At least one stage; widths strictly increasing; counts positive and non-increasing.
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
                if s.width <= p.width {
                    return Err(self.error(format!(
                        "widths must increase: {} follows {}",
                        s.width, p.width
                    )));
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
        Ok(())
    }

    /// Checks the plan against an index: the first width is the coarse width and every width
    /// is one of the index's nested widths.
    pub fn check_against(&self, widths: &[usize], coarse_dim: usize) -> Result<(), PlanError> {
        self.check_shape()?;
        if self.coarse_width() != coarse_dim {
            return Err(self.error(format!(
                "the first stage must be the coarse width {coarse_dim}, not {}",
                self.coarse_width()
            )));
        }
        if let Some(s) = self.stages.iter().find(|s| !widths.contains(&s.width)) {
            return Err(self.error(format!(
                "width {} is not one of the index's nested widths {widths:?}",
                s.width
            )));
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
        let mut stages = vec![Stage {
            width: coarse_dim,
            keep: if later.is_empty() {
                Keep::K
            } else {
                Keep::Count(coarse_keep.max(1))
            },
        }];
        let mut keep = coarse_keep.max(1) as f64;
        for (i, &w) in later.iter().enumerate() {
            keep /= shrink.max(1.0);
            let k = if i + 1 == later.len() {
                Keep::K
            } else {
                Keep::Count((keep.round() as usize).max(1))
            };
            stages.push(Stage { width: w, keep: k });
        }
        SearchPlan { stages }
    }
}

/// Candidates the coarse stage of the default plan keeps (and its default beam width).
/// 100 since the coarse graph is built with inner-product neighbour selection: measured at
/// 100k × 1024 (strong set), `64:100,…` with this shrink reaches recall@10 0.992 at ~15k q/s
/// on one thread where the former `64:1000,128:300,…` reached 0.999 at ~2.1k (docs/tuning.md).
pub const DEFAULT_COARSE_KEEP: usize = 100;
/// Factor by which the default plan shrinks the pool at each later width: slowly, because
/// the later stages are cheap next to the coarse search and a fast shrink loses recall there.
pub const DEFAULT_SHRINK: f64 = 1.4;

impl fmt::Display for SearchPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.stages.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            match s.keep {
                Keep::Count(c) => write!(f, "{}:{c}", s.width)?,
                Keep::K => write!(f, "{}:k", s.width)?,
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
            let width = w
                .trim()
                .parse::<usize>()
                .map_err(|_| err(format!("width {w:?} is not a positive integer")))?;
            let keep = match k.trim() {
                "k" | "K" => Keep::K,
                n => Keep::Count(
                    n.parse::<usize>()
                        .map_err(|_| err(format!("keep {n:?} is not a positive integer or `k`")))?,
                ),
            };
            stages.push(Stage { width, keep });
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
    fn default_plan_covers_every_width() {
        let p = SearchPlan::default_for(&[64, 128, 256, 512, 1024], 64);
        assert_eq!(p.to_string(), "64:100,128:71,256:51,512:36,1024:k");
        p.check_against(&[64, 128, 256, 512, 1024], 64).unwrap();
        let single = SearchPlan::default_for(&[64], 64);
        assert_eq!(single.to_string(), "64:k");
    }
}
