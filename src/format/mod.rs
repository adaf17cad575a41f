//! The container every index file shares: a checksummed header, a section table, and
//! 64-byte aligned sections, each with its own CRC-32.
//!
//! ```text
//! offset 0                64                64 + 32·S        (64-aligned)
//! +-----------------------+-----------------+-----------------+-----------+-----
//! | FileHeader (64 bytes) | SectionEntry ×S | zero padding    | section 0 | ...
//! +-----------------------+-----------------+-----------------+-----------+-----
//! ```
//!
//! All integers and floats are little-endian. [`Container::parse`] does the cheap structural
//! checks (magic, version, header checksum, file length, section bounds and alignment) in time
//! independent of the data size; [`Container::verify_checksums`] reads every byte. The layout
//! is specified in `index-formats/v1.md`.

mod error;
mod writer;

pub use error::FormatError;
pub use writer::ContainerWriter;

use bytemuck::{Pod, Zeroable};

#[cfg(target_endian = "big")]
compile_error!(
    "mrl-index reads its little-endian files with zero-copy casts and supports little-endian targets only"
);

/// The newest format version this code reads and writes.
///
/// Each file is written with the oldest version that describes it: store files and the
/// graph and manifest of an index in the native space are unchanged since version 1 (so
/// older readers still open such indexes); version 2 added the space file, a graph over the
/// learned code and the manifest's space and plan sections (`index-formats/v2.md`); version
/// 3 the live index: the manifest's segments section and the deletion file
/// (`index-formats/v3.md`).
pub const FORMAT_VERSION: u32 = 3;
/// The version of files whose layout has not changed since the first format.
pub const BASE_FORMAT_VERSION: u32 = 1;
/// The oldest format version this code still reads.
pub const OLDEST_SUPPORTED_FORMAT_VERSION: u32 = 1;
/// Alignment in bytes of every section's start (one cache line, one AVX-512 register).
pub const SECTION_ALIGN: usize = 64;

/// The fixed 64-byte header at offset 0 of every index file.
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
#[repr(C)]
pub struct FileHeader {
    /// Identifies the kind of file, e.g. `b"MRLSTORE"`.
    pub magic: [u8; 8],
    /// Format version the file was written with.
    pub format_version: u32,
    /// Number of entries in the section table that follows the header.
    pub section_count: u32,
    /// Total length of the file in bytes.
    pub file_len: u64,
    /// CRC-32 (IEEE) of the header with this field zeroed, followed by the section table.
    pub header_crc32: u32,
    /// Zero.
    pub reserved0: u32,
    /// Zero; room for later versions.
    pub reserved: [u64; 4],
}

/// One 32-byte entry of the section table.
#[derive(Debug, Clone, Copy, Pod, Zeroable, PartialEq, Eq)]
#[repr(C)]
pub struct SectionEntry {
    /// What the section holds; the numbering is per file kind.
    pub kind: u32,
    /// Distinguishes sections of the same kind (a band number, a layer number).
    pub index: u32,
    /// Byte offset of the section from the start of the file, a multiple of 64.
    pub offset: u64,
    /// Length of the section in bytes (padding after it is not included).
    pub len: u64,
    /// CRC-32 (IEEE) of the section's `len` bytes.
    pub crc32: u32,
    /// Zero.
    pub reserved: u32,
}

const HEADER_LEN: usize = std::mem::size_of::<FileHeader>();
const ENTRY_LEN: usize = std::mem::size_of::<SectionEntry>();
const _: () = assert!(HEADER_LEN == 64 && ENTRY_LEN == 32);

/// Upper bound on the section count, so that a corrupt count cannot make `parse` read or
/// allocate much.
pub const MAX_SECTIONS: u32 = 1 << 16;

/// The parsed header and section table of one file.
#[derive(Debug, Clone)]
pub struct Container {
    label: String,
    header: FileHeader,
    sections: Vec<SectionEntry>,
}

/// A section's location inside the file's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SectionRange {
    /// Byte offset from the start of the file.
    pub offset: usize,
    /// Length in bytes.
    pub len: usize,
}

impl SectionRange {
    /// The section's bytes.
    pub fn slice<'a>(&self, bytes: &'a [u8]) -> &'a [u8] {
        &bytes[self.offset..self.offset + self.len]
    }
}

fn header_crc(header: &FileHeader, table: &[u8]) -> u32 {
    let mut h = *header;
    h.header_crc32 = 0;
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(bytemuck::bytes_of(&h));
    hasher.update(table);
    hasher.finalize()
}

impl Container {
    /// Parses and checks the header and section table of `bytes`, a file whose magic must be
    /// `magic`. `label` (usually the file name) is used in error messages.
    pub fn parse(bytes: &[u8], magic: &[u8; 8], label: &str) -> Result<Container, FormatError> {
        let file = label.to_string();
        if bytes.len() < HEADER_LEN {
            return Err(FormatError::Truncated {
                file,
                what: "file header".into(),
                needed: HEADER_LEN as u64,
                len: bytes.len() as u64,
            });
        }
        let header: FileHeader = bytemuck::pod_read_unaligned(&bytes[..HEADER_LEN]);
        if &header.magic != magic {
            return Err(FormatError::BadMagic {
                file,
                expected: String::from_utf8_lossy(magic).into_owned(),
                found: header.magic,
            });
        }
        if header.format_version > FORMAT_VERSION
            || header.format_version < OLDEST_SUPPORTED_FORMAT_VERSION
        {
            return Err(FormatError::UnsupportedVersion {
                file,
                found: header.format_version,
                oldest: OLDEST_SUPPORTED_FORMAT_VERSION,
                newest: FORMAT_VERSION,
            });
        }
        if header.section_count > MAX_SECTIONS {
            return Err(FormatError::Corrupt {
                file,
                what: format!(
                    "section count {} exceeds the maximum {MAX_SECTIONS}",
                    header.section_count
                ),
            });
        }
        let table_end = HEADER_LEN + ENTRY_LEN * header.section_count as usize;
        if bytes.len() < table_end {
            return Err(FormatError::Truncated {
                file,
                what: "section table".into(),
                needed: table_end as u64,
                len: bytes.len() as u64,
            });
        }
        let table = &bytes[HEADER_LEN..table_end];
        let computed = header_crc(&header, table);
        if computed != header.header_crc32 {
            return Err(FormatError::HeaderChecksum {
                file,
                stored: header.header_crc32,
                computed,
            });
        }
        if header.file_len != bytes.len() as u64 {
            return Err(if (bytes.len() as u64) < header.file_len {
                FormatError::Truncated {
                    file,
                    what: "file body".into(),
                    needed: header.file_len,
                    len: bytes.len() as u64,
                }
            } else {
                FormatError::Corrupt {
                    file,
                    what: format!(
                        "file is {} bytes but its header says {}",
                        bytes.len(),
                        header.file_len
                    ),
                }
            });
        }
        let sections: Vec<SectionEntry> = table
            .chunks_exact(ENTRY_LEN)
            .map(bytemuck::pod_read_unaligned)
            .collect();
        let mut prev_end = table_end as u64;
        for s in &sections {
            let bad = |what: String| FormatError::Corrupt {
                file: label.to_string(),
                what,
            };
            if s.offset % SECTION_ALIGN as u64 != 0 {
                return Err(bad(format!(
                    "section (kind {}, index {}) starts at {}, not a multiple of {SECTION_ALIGN}",
                    s.kind, s.index, s.offset
                )));
            }
            let end = s
                .offset
                .checked_add(s.len)
                .filter(|&e| e <= header.file_len);
            let Some(end) = end else {
                return Err(bad(format!(
                    "section (kind {}, index {}) at {}+{} runs past the end of the file ({} bytes)",
                    s.kind, s.index, s.offset, s.len, header.file_len
                )));
            };
            if s.offset < prev_end {
                return Err(bad(format!(
                    "section (kind {}, index {}) at {} overlaps the previous section or the table",
                    s.kind, s.index, s.offset
                )));
            }
            prev_end = end;
        }
        Ok(Container {
            label: label.to_string(),
            header,
            sections,
        })
    }

    /// The file's label, as given to [`Container::parse`].
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The parsed header.
    pub fn header(&self) -> &FileHeader {
        &self.header
    }

    /// All section entries, in file order.
    pub fn sections(&self) -> &[SectionEntry] {
        &self.sections
    }

    /// Finds the section of `kind` and `index`; `name` describes it for the error message.
    pub fn section(&self, kind: u32, index: u32, name: &str) -> Result<SectionRange, FormatError> {
        self.sections
            .iter()
            .find(|s| s.kind == kind && s.index == index)
            .map(|s| SectionRange {
                offset: s.offset as usize,
                len: s.len as usize,
            })
            .ok_or_else(|| FormatError::MissingSection {
                file: self.label.clone(),
                section: name.to_string(),
            })
    }

    /// Like [`Container::section`], and checks that the section is exactly `expected_len`
    /// bytes long.
    pub fn section_exact(
        &self,
        kind: u32,
        index: u32,
        name: &str,
        expected_len: u64,
    ) -> Result<SectionRange, FormatError> {
        let r = self.section(kind, index, name)?;
        if r.len as u64 != expected_len {
            return Err(FormatError::SectionSize {
                file: self.label.clone(),
                section: name.to_string(),
                expected: expected_len,
                found: r.len as u64,
            });
        }
        Ok(r)
    }

    /// Recomputes every section's CRC-32 and compares it with the table. Reads the whole file.
    pub fn verify_checksums(&self, bytes: &[u8]) -> Result<(), FormatError> {
        for s in &self.sections {
            let data = &bytes[s.offset as usize..(s.offset + s.len) as usize];
            let computed = crc32fast::hash(data);
            if computed != s.crc32 {
                return Err(FormatError::SectionChecksum {
                    file: self.label.clone(),
                    kind: s.kind,
                    index: s.index,
                    stored: s.crc32,
                    computed,
                });
            }
        }
        Ok(())
    }
}

/// Reads a `Pod` value from the start of a section, checking its length.
pub fn read_pod<T: Pod>(
    bytes: &[u8],
    container: &Container,
    r: SectionRange,
    name: &str,
) -> Result<T, FormatError> {
    let size = std::mem::size_of::<T>();
    if r.len != size {
        return Err(FormatError::SectionSize {
            file: container.label().to_string(),
            section: name.to_string(),
            expected: size as u64,
            found: r.len as u64,
        });
    }
    Ok(bytemuck::pod_read_unaligned(r.slice(bytes)))
}

/// Casts a section's bytes to a slice of `T`, which the 64-byte section alignment makes
/// possible without copying.
pub fn cast_section<'a, T: Pod>(
    bytes: &'a [u8],
    container: &Container,
    r: SectionRange,
    name: &str,
) -> Result<&'a [T], FormatError> {
    bytemuck::try_cast_slice(r.slice(bytes)).map_err(|e| FormatError::Corrupt {
        file: container.label().to_string(),
        what: format!(
            "section {name} cannot be read as {}: {e:?}",
            std::any::type_name::<T>()
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Cursor, Write};

    fn sample() -> Vec<u8> {
        let mut w = ContainerWriter::new(Cursor::new(Vec::new()), *b"TESTFILE", 2).unwrap();
        w.begin_section(1, 0).unwrap();
        w.write_all(b"hello").unwrap();
        w.end_section().unwrap();
        w.begin_section(2, 7).unwrap();
        w.write_all(&[9u8; 100]).unwrap();
        w.end_section().unwrap();
        w.finish().unwrap().into_inner()
    }

    #[test]
    fn round_trip_and_alignment() {
        let bytes = sample();
        let c = Container::parse(&bytes, b"TESTFILE", "t").unwrap();
        assert_eq!(c.sections().len(), 2);
        let r = c.section(1, 0, "greeting").unwrap();
        assert_eq!(r.slice(&bytes), b"hello");
        assert_eq!(r.offset % SECTION_ALIGN, 0);
        let r2 = c.section(2, 7, "nines").unwrap();
        assert_eq!(r2.offset % SECTION_ALIGN, 0);
        c.verify_checksums(&bytes).unwrap();
        assert!(matches!(
            c.section(3, 0, "absent"),
            Err(FormatError::MissingSection { .. })
        ));
    }

    #[test]
    fn detects_wrong_magic_version_truncation_and_corruption() {
        let bytes = sample();
        assert!(matches!(
            Container::parse(&bytes, b"OTHERFIL", "t"),
            Err(FormatError::BadMagic { .. })
        ));
        let mut v = bytes.clone();
        v[8] = 99; // format_version
        assert!(matches!(
            Container::parse(&v, b"TESTFILE", "t"),
            Err(FormatError::UnsupportedVersion { found: 99, .. })
        ));
        assert!(matches!(
            Container::parse(&bytes[..bytes.len() - 1], b"TESTFILE", "t"),
            Err(FormatError::Truncated { .. })
        ));
        assert!(matches!(
            Container::parse(&bytes[..10], b"TESTFILE", "t"),
            Err(FormatError::Truncated { .. })
        ));
        let mut v = bytes.clone();
        v[70] ^= 1; // inside the section table
        assert!(matches!(
            Container::parse(&v, b"TESTFILE", "t"),
            Err(FormatError::HeaderChecksum { .. })
        ));
        let mut v = bytes.clone();
        let last = v.len() - 1;
        v[last] ^= 0xff; // inside the last section
        let c = Container::parse(&v, b"TESTFILE", "t").unwrap();
        assert!(matches!(
            c.verify_checksums(&v),
            Err(FormatError::SectionChecksum {
                kind: 2,
                index: 7,
                ..
            })
        ));
    }
}
