//! [`IngestError`]: every way an input file can be wrong, naming the file, row or field.

use std::path::PathBuf;

/// Errors met while reading or writing input files.
///
/// Every message starts with the file (or, for in-memory sources, what was being read) and
/// says what was expected and what was found.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// An operating-system error opening, mapping, reading or writing the file.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file being read or written.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The file is empty (0 bytes): neither a `.npy` nor an `.fvecs` file can be.
    #[error("{}: file is empty (0 bytes); expected a .npy or .fvecs file", path.display())]
    EmptyFile {
        /// The empty file.
        path: PathBuf,
    },
    /// The file name's extension is not one this reader understands.
    #[error(
        "{}: unsupported file extension; expected .npy or .fvecs for vectors, .npy for ids",
        path.display()
    )]
    UnsupportedExtension {
        /// The file.
        path: PathBuf,
    },
    /// A `.npy` file that does not start with the `\x93NUMPY` magic.
    #[error(
        "{}: not a .npy file: expected the magic bytes \"\\x93NUMPY\" at the start, found {found}",
        path.display()
    )]
    NotNpy {
        /// The file.
        path: PathBuf,
        /// The first bytes of the file, escaped and quoted.
        found: String,
    },
    /// An `.fvecs` file whose bytes do not have the `.fvecs` layout.
    #[error("{}: not a valid .fvecs file: {reason}", path.display())]
    NotFvecs {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// A `.npy` header that cannot be parsed or lacks a required key.
    #[error("{}: bad .npy header: {reason}", path.display())]
    BadHeader {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// A `.npy` element type this reader does not support (here or for this purpose).
    #[error("{}: unsupported dtype '{descr}': expected {expected}", path.display())]
    UnsupportedDtype {
        /// The file.
        path: PathBuf,
        /// The dtype found in the header (`descr`), or its source text if not a plain string.
        descr: String,
        /// The dtypes that are accepted.
        expected: &'static str,
    },
    /// A `.npy` array stored in Fortran (column-major) order.
    #[error(
        "{}: array is stored in Fortran order; C order required (save it with \
         numpy.ascontiguousarray(a))",
        path.display()
    )]
    FortranOrder {
        /// The file.
        path: PathBuf,
    },
    /// A `.npy` array whose shape does not fit the purpose.
    #[error("{}: bad shape {shape:?}: expected {expected}", path.display())]
    BadShape {
        /// The file.
        path: PathBuf,
        /// The shape found in the header.
        shape: Vec<usize>,
        /// The shape that was expected.
        expected: &'static str,
    },
    /// The data section is shorter than the header's shape and dtype require.
    #[error(
        "{}: truncated: expected {expected_bytes} bytes of data, found {found_bytes}",
        path.display()
    )]
    Truncated {
        /// The file.
        path: PathBuf,
        /// Bytes of data required by the header.
        expected_bytes: u64,
        /// Bytes of data present after the header.
        found_bytes: u64,
    },
    /// The data section is longer than the header's shape and dtype require.
    #[error(
        "{}: trailing bytes: expected {expected_bytes} bytes of data, found {found_bytes}",
        path.display()
    )]
    TrailingBytes {
        /// The file.
        path: PathBuf,
        /// Bytes of data required by the header.
        expected_bytes: u64,
        /// Bytes of data present after the header.
        found_bytes: u64,
    },
    /// An `.fvecs` row whose dimension field differs from the first row's.
    #[error(
        "{}: row {row} has dimension {got}, expected {expected} like the first row",
        path.display()
    )]
    RowDimMismatch {
        /// The file.
        path: PathBuf,
        /// The 0-based row index.
        row: usize,
        /// The dimension of the first row.
        expected: usize,
        /// The dimension field of this row.
        got: i64,
    },
    /// A negative value in a signed id file.
    #[error("{}: row {row}: negative id {value}; ids must be non-negative", path.display())]
    NegativeId {
        /// The file.
        path: PathBuf,
        /// The 0-based row index.
        row: usize,
        /// The id found.
        value: i64,
    },
    /// An id file whose length differs from the number of vectors.
    #[error(
        "{}: id count mismatch: expected {expected} ids (one per vector), found {got}",
        path.display()
    )]
    IdCountMismatch {
        /// The file.
        path: PathBuf,
        /// The number of vectors.
        expected: usize,
        /// The number of ids in the file.
        got: usize,
    },
    /// Arguments that do not describe a matrix ([`MatrixSource::new`], the writers).
    #[error("invalid matrix: {reason}")]
    InvalidMatrix {
        /// What was wrong.
        reason: String,
    },
    /// [`VectorSource::read_row`] was asked for a row past the end.
    #[error("{origin}: row {row} out of range: the source has {len} rows")]
    RowOutOfRange {
        /// The source's [`origin`](VectorSource::origin).
        origin: String,
        /// The row asked for.
        row: usize,
        /// The number of rows.
        len: usize,
    },
    /// [`VectorSource::read_row`] was given an output buffer of the wrong length.
    #[error("{origin}: output buffer holds {got} values, expected the dimension {expected}")]
    BufferLenMismatch {
        /// The source's [`origin`](VectorSource::origin).
        origin: String,
        /// The source's dimension.
        expected: usize,
        /// The buffer's length.
        got: usize,
    },
    /// A sequences file (`user item item ...` per line) that does not parse.
    #[error("{}: line {line}: {reason}", path.display())]
    BadSequences {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with the line.
        reason: String,
    },
}
