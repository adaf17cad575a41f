//! [`Candidate`]: a store row with its score so far, the currency of every search stage (the
//! graph's beam, the cascade, exact scans and the tuner).

use std::cmp::Ordering;

/// A row with its score. Ordered by score, ties broken towards the smaller row, so that
/// searches are deterministic.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    /// Inner product so far.
    pub score: f32,
    /// Row in the store.
    pub row: u32,
}

impl Eq for Candidate {}

impl Ord for Candidate {
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then_with(|| other.row.cmp(&self.row))
    }
}

impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
