//! `indicatif` progress bars behind the library's `Progress` trait.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use mrl_index::progress::Progress;
use std::sync::Mutex;

/// One bar per stage, drawn on stderr (hidden when stderr is not a terminal).
pub struct Bars {
    current: Mutex<Option<ProgressBar>>,
    quiet: bool,
}

impl Bars {
    /// Bars drawn unless `quiet`.
    pub fn new(quiet: bool) -> Bars {
        Bars {
            current: Mutex::new(None),
            quiet,
        }
    }
}

impl Progress for Bars {
    fn stage(&self, name: &str, total: u64) {
        let bar = if self.quiet {
            ProgressBar::hidden()
        } else if total == 0 {
            ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr())
        } else {
            ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr())
        };
        let template = if total == 0 {
            "{spinner} {msg} [{elapsed_precise}]"
        } else {
            "{msg:24} [{elapsed_precise}] {wide_bar} {pos}/{len} ({eta})"
        };
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style);
        }
        bar.set_message(name.to_string());
        if let Ok(mut cur) = self.current.lock() {
            if let Some(old) = cur.take() {
                old.finish_and_clear();
            }
            *cur = Some(bar);
        }
    }

    fn advance(&self, n: u64) {
        if let Ok(cur) = self.current.lock() {
            if let Some(bar) = cur.as_ref() {
                bar.inc(n);
            }
        }
    }

    fn finish_stage(&self) {
        if let Ok(mut cur) = self.current.lock() {
            if let Some(bar) = cur.take() {
                bar.finish_and_clear();
            }
        }
    }
}
