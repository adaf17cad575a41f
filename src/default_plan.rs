//! The tuned default plan an index carries: what a search uses when the caller names no plan.
//!
//! A build's tuner ([`crate::tune`]) measures plans on held-out queries and writes the fastest
//! that reaches the recall target into the `MANIFEST`'s plan section as the small text format
//! below; [`crate::Index::open`] parses it and checks it against the index's layout, and
//! [`crate::Index::publish_default_plan`] replaces it (`mrl-index tune --write`).
//!
//! ```text
//! # comment lines are kept as notes
//! plan=L64:300,L128:50,L256:15,1024:k
//! ef=300
//! recall=0.9590
//! [width 256]            plans for narrower answers (SearchParams::width)
//! plan=64:100,256:k
//! ```

use crate::plan::SearchPlan;

/// File name of the default plan written by `tune --write` before plans lived in the
/// manifest; still read for indexes of the first format.
pub const DEFAULT_PLAN_FILE: &str = "DEFAULT_PLAN";

/// Informational keys a [`DefaultPlan`] text may carry besides `plan` and `ef`.
pub const INFO_KEYS: [&str; 8] = [
    "recall",
    "recall_se",
    "target",
    "k",
    "queries",
    "qps",
    "source",
    "coarse",
];

/// An index's default plan and what was measured when it was chosen.
#[derive(Debug, Clone, PartialEq)]
pub struct DefaultPlan {
    /// The plan.
    pub plan: SearchPlan,
    /// Beam width of the coarse stage (`None`: the coarse keep).
    pub ef: Option<usize>,
    /// `(key, value)` pairs from [`INFO_KEYS`]: recall measured, target, queries, q/s, …
    pub info: Vec<(String, String)>,
    /// Comment lines (without `#`).
    pub notes: Vec<String>,
    /// Plans tuned for narrower answers: `(native width, plan)`, for searches of the
    /// width-d sub-model (`SearchParams::width`).
    pub widths: Vec<(usize, DefaultPlan)>,
}

impl DefaultPlan {
    /// A plan with no measurements attached.
    pub fn new(plan: SearchPlan, ef: Option<usize>) -> DefaultPlan {
        DefaultPlan {
            plan,
            ef,
            info: Vec::new(),
            notes: Vec::new(),
            widths: Vec::new(),
        }
    }

    /// The value of informational key `key`, if present.
    pub fn info(&self, key: &str) -> Option<&str> {
        self.info
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The plan tuned for answers at native width `width`, if any.
    pub fn for_width(&self, width: usize) -> Option<&DefaultPlan> {
        self.widths
            .iter()
            .find(|(w, _)| *w == width)
            .map(|(_, p)| p)
    }

    /// The text form: `# note` lines, then `plan=…`, `ef=…` and `key=value` lines, then for
    /// each narrower width a `[width W]` line followed by its own lines.
    pub fn to_text(&self) -> String {
        let mut text = String::new();
        self.write_lines(&mut text);
        for (w, p) in &self.widths {
            text.push_str(&format!("[width {w}]\n"));
            p.write_lines(&mut text);
        }
        text
    }

    fn write_lines(&self, text: &mut String) {
        for line in &self.notes {
            text.push_str("# ");
            text.push_str(line);
            text.push('\n');
        }
        text.push_str(&format!("plan={}\n", self.plan));
        if let Some(ef) = self.ef {
            text.push_str(&format!("ef={ef}\n"));
        }
        for (k, v) in &self.info {
            text.push_str(&format!("{k}={v}\n"));
        }
    }

    /// Parses the text form. Returns a description of the problem on failure.
    pub fn parse(text: &str) -> Result<DefaultPlan, String> {
        struct Part {
            width: Option<usize>,
            plan: Option<SearchPlan>,
            ef: Option<usize>,
            info: Vec<(String, String)>,
            notes: Vec<String>,
        }
        let new_part = |width| Part {
            width,
            plan: None,
            ef: None,
            info: Vec::new(),
            notes: Vec::new(),
        };
        let mut parts = vec![new_part(None)];
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let part = parts.last_mut().expect("one part at least");
            if let Some(note) = line.strip_prefix('#') {
                part.notes.push(note.trim().to_string());
                continue;
            }
            if let Some(rest) = line.strip_prefix("[width ") {
                let w = rest
                    .strip_suffix(']')
                    .and_then(|w| w.trim().parse::<usize>().ok())
                    .filter(|&w| w > 0)
                    .ok_or_else(|| format!("line {}: expected [width N], found {line:?}", i + 1))?;
                parts.push(new_part(Some(w)));
                continue;
            }
            match line.split_once('=') {
                Some(("plan", v)) => {
                    part.plan = Some(v.trim().parse::<SearchPlan>().map_err(|e| e.to_string())?)
                }
                Some(("ef", v)) => {
                    part.ef = Some(
                        v.trim()
                            .parse::<usize>()
                            .map_err(|_| format!("line {}: ef {v:?} is not a number", i + 1))?,
                    )
                }
                Some((k, v)) if INFO_KEYS.contains(&k) => {
                    part.info.push((k.to_string(), v.trim().to_string()))
                }
                _ => {
                    return Err(format!(
                        "line {}: expected plan=…, ef=…, [width N] or one of {INFO_KEYS:?}, found {line:?}",
                        i + 1
                    ))
                }
            }
        }
        let mut plans = Vec::with_capacity(parts.len());
        for p in parts {
            let plan = p.plan.ok_or_else(|| match p.width {
                None => "no plan= line".to_string(),
                Some(w) => format!("no plan= line for width {w}"),
            })?;
            if let Some(w) = p.width {
                if plan.final_width() < w {
                    return Err(format!(
                        "the plan {plan} for width {w} ends at width {}",
                        plan.final_width()
                    ));
                }
            }
            plans.push((
                p.width,
                DefaultPlan {
                    plan,
                    ef: p.ef,
                    info: p.info,
                    notes: p.notes,
                    widths: Vec::new(),
                },
            ));
        }
        let mut iter = plans.into_iter();
        let (_, mut top) = iter.next().expect("one part at least");
        top.widths = iter.map(|(w, p)| (w.unwrap_or(0), p)).collect();
        Ok(top)
    }

    /// Checks every plan against an index's layout.
    pub fn check_against_layout(&self, layout: &crate::plan::IndexLayout) -> Result<(), String> {
        self.plan
            .check_against_layout(layout)
            .map_err(|e| e.to_string())?;
        for (w, p) in &self.widths {
            p.plan
                .check_against_layout(layout)
                .map_err(|e| format!("width {w}: {e}"))?;
        }
        Ok(())
    }
}
