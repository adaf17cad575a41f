//! Progress reporting for long work (builds). The library reports through [`Progress`]; the
//! command line draws bars with `indicatif`.

/// Receives progress of a long operation. Implementations must be cheap and thread-safe.
pub trait Progress: Sync {
    /// A new stage begins, with `total` units of work (0 if unknown).
    fn stage(&self, name: &str, total: u64);
    /// `n` more units of the current stage are done.
    fn advance(&self, n: u64);
    /// The current stage is finished.
    fn finish_stage(&self) {}
}

/// Reports nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn stage(&self, _name: &str, _total: u64) {}
    fn advance(&self, _n: u64) {}
}
