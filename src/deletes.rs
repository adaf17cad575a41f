//! The deletion set of a live index: which rows of each segment are deleted, one bitmap per
//! segment, in the file `deleted-<gen>.mrl` (format version 3).
//!
//! ```text
//! MANIFEST ──names──► deleted-<gen>.mrl   section BITS, index s: segment s's bitmap
//!                                          (s = 0 the base, s = i the i-th delta)
//! bit r of word r/64 set  ⇔  row r of that segment is deleted (never returned)
//! ```
//!
//! A delete or a replace writes a whole new deletion file under a new generation and
//! publishes it with a new `MANIFEST`: published files are never modified. Segments with
//! nothing deleted have no section. Compaction drops the deleted rows and the file.

use crate::format::{cast_section, Container, ContainerWriter, FormatError};
use std::io::Cursor;

/// Magic bytes of a deletion file.
pub const DELETES_MAGIC: [u8; 8] = *b"MRLDELET";
/// Section kind of one segment's bitmap (`index` = the segment's position).
pub const SECTION_BITS: u32 = 1;
/// The format version of deletion files (they first appeared in version 3).
pub const DELETES_FORMAT_VERSION: u32 = 3;

/// `deleted-<generation as 16 hex digits>.mrl`.
pub fn deletes_file_name(generation: u64) -> String {
    format!("deleted-{generation:016x}.mrl")
}

/// The deleted rows of one segment: a bitmap of its `n` rows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeleteBits {
    words: Vec<u64>,
    count: usize,
}

impl DeleteBits {
    /// Nothing deleted (no memory).
    pub fn none() -> DeleteBits {
        DeleteBits::default()
    }

    /// Whether row `row` is deleted.
    #[inline]
    pub fn contains(&self, row: u32) -> bool {
        self.words
            .get(row as usize / 64)
            .is_some_and(|w| w >> (row % 64) & 1 == 1)
    }

    /// Marks `row` (of a segment of `n` rows) deleted; returns whether it was live.
    pub fn insert(&mut self, row: u32, n: usize) -> bool {
        if self.words.is_empty() {
            self.words = vec![0; n.div_ceil(64)];
        }
        let w = &mut self.words[row as usize / 64];
        let bit = 1u64 << (row % 64);
        let fresh = *w & bit == 0;
        *w |= bit;
        self.count += usize::from(fresh);
        fresh
    }

    /// Rows deleted.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Whether no row is deleted.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The bitmap's words (empty when nothing is deleted).
    pub fn words(&self) -> &[u64] {
        &self.words
    }
}

/// Encodes a deletion file from each segment's bits (in segment order; empty ones get no
/// section).
pub fn encode(segments: &[&DeleteBits]) -> Vec<u8> {
    let present: Vec<(usize, &DeleteBits)> = segments
        .iter()
        .enumerate()
        .filter(|(_, b)| !b.is_empty())
        .map(|(i, b)| (i, *b))
        .collect();
    let write = || -> std::io::Result<Vec<u8>> {
        let mut w = ContainerWriter::with_version(
            Cursor::new(Vec::new()),
            DELETES_MAGIC,
            present.len() as u32,
            DELETES_FORMAT_VERSION,
        )?;
        for (i, bits) in &present {
            w.section(SECTION_BITS, *i as u32, bytemuck::cast_slice(bits.words()))?;
        }
        Ok(w.finish()?.into_inner())
    };
    // Writing to memory cannot fail.
    write().unwrap_or_default()
}

/// Decodes a deletion file for segments of `lens` rows, verifying its checksums (it is
/// `n/8` bytes: read whole at open). A bit past a segment's end, a section for a segment
/// that does not exist, or a bitmap of the wrong length is an error.
pub fn decode(bytes: &[u8], lens: &[usize], label: &str) -> Result<Vec<DeleteBits>, FormatError> {
    let c = Container::parse(bytes, &DELETES_MAGIC, label)?;
    c.verify_checksums(bytes)?;
    let corrupt = |what: String| FormatError::Corrupt {
        file: label.to_string(),
        what,
    };
    let mut out = vec![DeleteBits::none(); lens.len()];
    let mut seen = vec![false; lens.len()];
    for s in c.sections() {
        let seg = s.index as usize;
        if s.kind != SECTION_BITS || seg >= lens.len() || std::mem::replace(&mut seen[seg], true) {
            return Err(corrupt(format!(
                "section (kind {}, index {}) is not the one bitmap of one of the {} segments",
                s.kind,
                s.index,
                lens.len()
            )));
        }
        let n = lens[seg];
        let r = c.section(SECTION_BITS, s.index, "deletion bitmap")?;
        if r.len != n.div_ceil(64) * 8 {
            return Err(corrupt(format!(
                "segment {seg}'s bitmap is {} bytes; {n} rows need {}",
                r.len,
                n.div_ceil(64) * 8
            )));
        }
        let words: &[u64] = cast_section(bytes, &c, r, "deletion bitmap")?;
        if !n.is_multiple_of(64) && words.last().is_some_and(|&w| w >> (n % 64) != 0) {
            return Err(corrupt(format!(
                "segment {seg}'s bitmap deletes rows past its {n} rows"
            )));
        }
        let count = words.iter().map(|w| w.count_ones() as usize).sum();
        // A bitmap of zeros deletes nothing: the same value as no section.
        if count > 0 {
            out[seg] = DeleteBits {
                words: words.to_vec(),
                count,
            };
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_round_trip_and_bad_files_are_refused() {
        let mut a = DeleteBits::none();
        assert!(a.insert(3, 100));
        assert!(!a.insert(3, 100));
        assert!(a.insert(99, 100));
        let b = DeleteBits::none();
        let mut c = DeleteBits::none();
        c.insert(0, 1);
        let bytes = encode(&[&a, &b, &c]);
        let back = decode(&bytes, &[100, 7, 1], "d").unwrap();
        assert_eq!(back, vec![a.clone(), b, c]);
        assert!(back[0].contains(99) && back[0].contains(3) && !back[0].contains(4));
        assert_eq!(back[0].count(), 2);
        // Wrong lengths, a missing segment, a bit past the end.
        assert!(decode(&bytes, &[200, 7, 1], "d").is_err());
        assert!(decode(&bytes, &[100], "d").is_err());
        assert!(decode(&bytes, &[99, 7, 1], "d")
            .unwrap_err()
            .to_string()
            .contains("past its 99 rows"));
        let mut flipped = bytes.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert!(decode(&flipped, &[100, 7, 1], "d").is_err());
    }
}
