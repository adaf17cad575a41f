//! Errors in the structure or integrity of an index file.

/// A file that is not a valid index file of a supported version.
///
/// Every variant names the file it concerns.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// The file does not start with the expected magic bytes.
    #[error("{file}: not an mrl-index {expected} file (magic bytes {found:?})")]
    BadMagic {
        /// The file.
        file: String,
        /// The expected magic, as text.
        expected: String,
        /// The bytes found.
        found: [u8; 8],
    },
    /// The file's format version is newer or older than this code reads.
    #[error("{file}: format version {found} is not supported (this build reads versions {oldest} to {newest})")]
    UnsupportedVersion {
        /// The file.
        file: String,
        /// Version stored in the file.
        found: u32,
        /// Oldest version this code reads.
        oldest: u32,
        /// Newest version this code reads (the one it writes).
        newest: u32,
    },
    /// The file is shorter than its structure requires.
    #[error("{file}: truncated: the {what} needs {needed} bytes but the file has {len}")]
    Truncated {
        /// The file.
        file: String,
        /// Which part was cut off.
        what: String,
        /// Bytes required.
        needed: u64,
        /// Bytes present.
        len: u64,
    },
    /// The header or section table does not match its checksum.
    #[error("{file}: header checksum mismatch (stored {stored:08x}, computed {computed:08x}): the file is corrupt")]
    HeaderChecksum {
        /// The file.
        file: String,
        /// Stored CRC-32.
        stored: u32,
        /// Recomputed CRC-32.
        computed: u32,
    },
    /// A section's data does not match its checksum (found by `verify`).
    #[error("{file}: checksum mismatch in section kind {kind} index {index} (stored {stored:08x}, computed {computed:08x}): the file is corrupt")]
    SectionChecksum {
        /// The file.
        file: String,
        /// Section kind.
        kind: u32,
        /// Section index.
        index: u32,
        /// Stored CRC-32.
        stored: u32,
        /// Recomputed CRC-32.
        computed: u32,
    },
    /// A section the format requires is absent.
    #[error("{file}: missing section {section}")]
    MissingSection {
        /// The file.
        file: String,
        /// The section's name.
        section: String,
    },
    /// A section's length disagrees with the counts in the file's metadata.
    #[error("{file}: section {section} is {found} bytes, expected {expected}")]
    SectionSize {
        /// The file.
        file: String,
        /// The section's name.
        section: String,
        /// Expected length in bytes.
        expected: u64,
        /// Length found.
        found: u64,
    },
    /// Any other structural inconsistency.
    #[error("{file}: corrupt: {what}")]
    Corrupt {
        /// The file.
        file: String,
        /// What is wrong.
        what: String,
    },
}
