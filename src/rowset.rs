//! [`RowSet`]: a set of store rows whose memory follows what it holds, not the index size.
//!
//! A search marks the rows its graph walk has visited and the rows a filter names. An array
//! of one epoch per row (hnswlib's visited list) answers in one load, but every searching
//! thread then holds `4 × n` bytes for as long as it lives: 400 MB per thread at 100M items,
//! most of it untouched by any one search. A `RowSet` starts as an open-addressing hash
//! table of `(epoch, row)` slots, sized to what one search holds and cleared in O(1) by
//! moving to the next epoch; a set that grows past `n / 128` rows (where the table would
//! outgrow a bitmap of the `n` rows) moves into a bitmap of `n` bits, which it keeps for
//! the next searches, cleared word by word through the list of words it touched.
//!
//! ```text
//! sparse: slot (u64) = epoch << 32 | row    occupied ⇔ slot >> 32 == the current epoch
//!         home(row) = (row × 2⁶⁴/φ) >> (64 − log₂ capacity), linear probing, load ≤ ½
//! dense:  bit row of an n-bit map; cleared whole up to 32 KiB, else through the list of
//!         the words touched
//! memory: sparse ≤ 32 bytes × n/128, dense n/8 bytes (+ 4 bytes per touched word):
//!         at most about n/3 bytes, against 4n for an epoch array
//! ```

/// Slots of a set's first table.
const MIN_CAPACITY: usize = 256;

/// A set past `universe / DENSE_FRACTION` rows moves into the bitmap.
const DENSE_FRACTION: usize = 128;

/// A bitmap of at most this many words (`n` up to 262,144) is cleared whole, faster than
/// listing the words touched.
const SMALL_BITMAP_WORDS: usize = 4096;

/// A set of `u32` rows below a universe `n`, emptied by [`RowSet::clear`].
#[derive(Debug, Clone, Default)]
pub struct RowSet {
    slots: Vec<u64>,
    /// The epoch of the sparse contents (never 0: zeroed slots are free).
    epoch: u32,
    len: usize,
    /// `64 − log₂(slots.len())`.
    shift: u32,
    /// Rows are below this (set by [`RowSet::clear`]).
    universe: usize,
    /// Whether the rows are in `bits` (and the table is unused).
    dense: bool,
    bits: Vec<u64>,
    /// Words of `bits` made non-zero since the last clear.
    touched: Vec<u32>,
}

impl RowSet {
    /// An empty set; no memory until the first insert.
    pub fn new() -> RowSet {
        RowSet::default()
    }

    /// Removes every row and sets the universe: later rows must be below `universe`. A set
    /// that once moved into its bitmap stays there (the bitmap is cleared word by word).
    #[inline]
    pub fn clear(&mut self, universe: usize) {
        self.len = 0;
        if self.dense {
            if self.bits.len() <= SMALL_BITMAP_WORDS {
                self.bits.iter_mut().for_each(|w| *w = 0);
            } else {
                for &w in &self.touched {
                    self.bits[w as usize] = 0;
                }
            }
            self.touched.clear();
            if self.bits.len() < universe.div_ceil(64) {
                self.bits.resize(universe.div_ceil(64), 0);
            }
        }
        self.universe = universe;
        if self.epoch == u32::MAX {
            self.slots.iter_mut().for_each(|s| *s = 0);
            self.epoch = 0;
        }
        self.epoch += 1;
    }

    /// Number of rows in the set.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the set holds no row.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes the set holds (the table keeps the size of the largest sparse set; the bitmap,
    /// once made, `n / 8`).
    pub fn capacity_bytes(&self) -> usize {
        self.slots.len() * 8 + self.bits.len() * 8 + self.touched.capacity() * 4
    }

    #[inline]
    fn home(&self, row: u32) -> usize {
        (u64::from(row).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> self.shift) as usize
    }

    #[inline]
    fn tag(&self, row: u32) -> u64 {
        (u64::from(self.epoch) << 32) | u64::from(row)
    }

    /// The slot holding `row`, or the free slot where it would go: `(slot, present)`. The
    /// table must have a free slot.
    #[inline]
    fn probe(&self, row: u32) -> (usize, bool) {
        let mask = self.slots.len() - 1;
        let want = self.tag(row);
        let mut i = self.home(row);
        loop {
            let s = self.slots[i];
            if s == want {
                return (i, true);
            }
            if (s >> 32) as u32 != self.epoch {
                return (i, false);
            }
            i = (i + 1) & mask;
        }
    }

    /// Whether `row` is in the set.
    #[inline]
    pub fn contains(&self, row: u32) -> bool {
        if self.dense {
            self.bits
                .get(row as usize >> 6)
                .is_some_and(|w| w & (1 << (row & 63)) != 0)
        } else {
            self.len != 0 && self.probe(row).1
        }
    }

    /// Adds `row` (below the universe); returns whether it was new.
    #[inline(always)]
    pub fn insert(&mut self, row: u32) -> bool {
        if self.dense {
            return self.insert_dense(row);
        }
        if self.universe > 0 && (self.len + 1) * DENSE_FRACTION > self.universe {
            self.make_dense();
            return self.insert_dense(row);
        }
        if (self.len + 1) * 2 > self.slots.len() {
            self.grow();
        }
        let (slot, present) = self.probe(row);
        if !present {
            self.slots[slot] = self.tag(row);
            self.len += 1;
        }
        !present
    }

    #[inline(always)]
    fn insert_dense(&mut self, row: u32) -> bool {
        let w = row as usize >> 6;
        let bit = 1u64 << (row & 63);
        let Some(word) = self.bits.get_mut(w) else {
            return self.insert_past_universe(row);
        };
        let old = *word;
        *word = old | bit;
        if old & bit != 0 {
            return false;
        }
        // Small bitmaps are cleared whole; larger ones through the words touched.
        if old == 0 && self.bits.len() > SMALL_BITMAP_WORDS {
            self.touched.push(w as u32);
        }
        self.len += 1;
        true
    }

    /// A row past the universe the caller declared: widen rather than lose it.
    #[cold]
    fn insert_past_universe(&mut self, row: u32) -> bool {
        let w = row as usize >> 6;
        self.bits.resize(w + 1, 0);
        // Every word may now need clearing: list them all once.
        if self.bits.len() > SMALL_BITMAP_WORDS {
            self.touched = (0..self.bits.len() as u32).collect();
        }
        self.bits[w] |= 1u64 << (row & 63);
        self.len += 1;
        true
    }

    /// Moves the current rows into the bitmap, where the set stays.
    #[cold]
    fn make_dense(&mut self) {
        self.bits
            .resize(self.universe.div_ceil(64).max(self.bits.len()), 0);
        self.dense = true;
        let epoch = self.epoch;
        self.len = 0;
        let old = std::mem::take(&mut self.slots);
        for &s in &old {
            if (s >> 32) as u32 == epoch {
                self.insert_dense(s as u32);
            }
        }
    }

    /// Doubles the table (or makes the first one), keeping the current rows.
    #[cold]
    fn grow(&mut self) {
        if self.epoch == 0 {
            self.epoch = 1;
        }
        let capacity = (self.slots.len() * 2).max(MIN_CAPACITY);
        let old = std::mem::replace(&mut self.slots, vec![0; capacity]);
        self.shift = 64 - capacity.trailing_zeros();
        let epoch = self.epoch;
        self.len = 0;
        for s in old {
            if (s >> 32) as u32 == epoch {
                self.insert(s as u32);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// Random sets of growing size over `universe` rows, against a `HashSet`.
    fn check_against_model(universe: u32) -> RowSet {
        let mut set = RowSet::new();
        assert!(!set.contains(7) && set.is_empty());
        let mut model = HashSet::new();
        let mut x = 12345u32;
        for round in 0..20 {
            set.clear(universe as usize);
            model.clear();
            let n = 10 + round * 500;
            for _ in 0..n {
                x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                let row = x % universe;
                assert_eq!(
                    set.insert(row),
                    model.insert(row),
                    "round {round} row {row}"
                );
            }
            assert_eq!(set.len(), model.len());
            // Every row of a small universe; the members and 50,000 others of a large one.
            let others = 0..universe.min(50_000);
            for row in others.chain(model.iter().copied()) {
                assert_eq!(
                    set.contains(row),
                    model.contains(&row),
                    "round {round} row {row}"
                );
            }
        }
        set
    }

    #[test]
    fn behaves_as_a_set_sparse_and_dense() {
        // 10,000 rows of 20,000,000: stays sparse, and memory follows the largest set.
        let sparse = check_against_model(20_000_000);
        assert!(!sparse.dense);
        assert!(
            sparse.capacity_bytes() <= 8 * 4 * 10_000,
            "{}",
            sparse.capacity_bytes()
        );
        // Sets past 1/128 of 20,000 rows move into the bitmap of 20,000 bits.
        let dense = check_against_model(20_000);
        assert!(dense.dense);
        assert!(dense.capacity_bytes() <= 20_000 / 8 + 8 * 4096 + 4 * 400);
    }

    #[test]
    fn epoch_wrap_empties_the_set() {
        let mut set = RowSet::new();
        set.clear(1 << 30);
        set.insert(5);
        set.epoch = u32::MAX;
        // Rows tagged with the old epoch are gone once the epoch moves, and a wrap zeroes.
        set.clear(1 << 30);
        assert!(!set.contains(5));
        assert_eq!(set.epoch, 1);
        assert!(set.insert(5) && set.contains(5) && !set.contains(6));
    }

    #[test]
    fn rows_past_the_declared_universe_are_kept() {
        let mut set = RowSet::new();
        set.clear(256);
        for r in 0..10 {
            set.insert(r);
        }
        assert!(set.dense);
        assert!(set.insert(10_000) && set.contains(10_000) && !set.contains(9_999));
    }
}
