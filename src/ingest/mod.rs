//! Ingest: reading item vectors, query vectors and id files from disk.
//!
//! Everything here sits at the edge of the crate: it turns user files (`.npy`, `.fvecs`) into
//! a [`VectorSource`] that the builder reads row by row, and it owns [`IngestError`], whose
//! variants name the file, row or field at fault.
//!
//! * [`open_vectors`] memory-maps a `.npy` (`<f4`, `<f2` or `<f8`, C order, 2-d) or `.fvecs`
//!   file and reads rows lazily, converting to `f32`.
//! * [`read_ids`] reads a `.npy` of integer ids (`<u8`, `<i8`, `<u4`, `<i4`).
//! * [`read_matrix_f32`] loads a whole vector file into a [`MatrixSource`].
//! * [`write_npy_f32`], [`write_npy_u64`] and [`write_fvecs`] write files atomically (temp
//!   file in the same directory, fsync, rename).

mod fvecs;
mod npy;

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// A row-major matrix of `len() × dim()` vectors that can be read one row at a time as `f32`.
///
/// Implementations convert from the stored element type (f16, f64) on read. They do not check
/// values for NaN or infinity: the builder does, so that it can name the row and column.
pub trait VectorSource: Sync {
    /// Number of rows (vectors).
    fn len(&self) -> usize;
    /// Whether the source holds no rows.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Number of columns (dimensions) of every row.
    fn dim(&self) -> usize;
    /// Copies row `row` into `out` (whose length must be `dim()`), converting to `f32`.
    fn read_row(&self, row: usize, out: &mut [f32]) -> Result<(), IngestError>;
    /// A short description of where the rows come from (a file path), used in error messages.
    fn origin(&self) -> String;
}

/// An in-memory row-major `f32` matrix, the simplest [`VectorSource`].
#[derive(Debug, Clone)]
pub struct MatrixSource {
    data: Vec<f32>,
    dim: usize,
}

/// What [`MatrixSource::origin`](VectorSource::origin) reports.
const MATRIX_ORIGIN: &str = "in-memory matrix";

impl MatrixSource {
    /// Wraps a row-major `data` buffer of rows of `dim` values each.
    ///
    /// Errors with [`IngestError::InvalidMatrix`] if `dim` is 0 or `data.len()` is not a
    /// multiple of `dim`. An empty `data` (zero rows) is allowed.
    pub fn new(data: Vec<f32>, dim: usize) -> Result<MatrixSource, IngestError> {
        if dim == 0 {
            return Err(IngestError::InvalidMatrix {
                reason: "dimension must be at least 1, got 0".to_string(),
            });
        }
        if !data.len().is_multiple_of(dim) {
            return Err(IngestError::InvalidMatrix {
                reason: format!(
                    "{} values is not a whole number of rows of dimension {dim}",
                    data.len()
                ),
            });
        }
        Ok(MatrixSource { data, dim })
    }

    /// The whole matrix, row-major.
    pub fn as_slice(&self) -> &[f32] {
        &self.data
    }

    /// Row `i` as a slice of `dim()` values.
    ///
    /// # Panics
    ///
    /// If `i >= len()`, like slice indexing. Use [`VectorSource::read_row`] for a checked copy.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }

    /// Gives back the row-major buffer.
    pub fn into_vec(self) -> Vec<f32> {
        self.data
    }
}

impl VectorSource for MatrixSource {
    fn len(&self) -> usize {
        self.data.len() / self.dim
    }

    fn dim(&self) -> usize {
        self.dim
    }

    fn read_row(&self, row: usize, out: &mut [f32]) -> Result<(), IngestError> {
        check_out_len(MATRIX_ORIGIN, self.dim, out.len())?;
        let slice = row
            .checked_mul(self.dim)
            .and_then(|s| Some((s, s.checked_add(self.dim)?)))
            .and_then(|(s, e)| self.data.get(s..e))
            .ok_or_else(|| IngestError::RowOutOfRange {
                origin: MATRIX_ORIGIN.to_string(),
                row,
                len: self.len(),
            })?;
        out.copy_from_slice(slice);
        Ok(())
    }

    fn origin(&self) -> String {
        MATRIX_ORIGIN.to_string()
    }
}

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
}

/// The `.npy` element types accepted for vectors.
const VECTOR_DTYPES: &str = "'<f4' (float32), '<f2' (float16) or '<f8' (float64)";
/// What to say for a big-endian vector dtype.
const VECTOR_DTYPES_LE: &str = "little-endian '<f4', '<f2' or '<f8' (convert with \
                                a.astype('<f4'))";
/// The `.npy` element types accepted for ids.
const ID_DTYPES: &str = "'<u8' (uint64), '<i8' (int64), '<u4' (uint32) or '<i4' (int32)";
/// What to say for a big-endian id dtype.
const ID_DTYPES_LE: &str = "little-endian '<u8', '<i8', '<u4' or '<i4' (convert with \
                            a.astype('<u8'))";

/// The file kinds [`open_vectors`] understands, by extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileKind {
    Npy,
    Fvecs,
}

fn file_kind(path: &Path) -> Option<FileKind> {
    let ext = path.extension()?.to_str()?;
    if ext.eq_ignore_ascii_case("npy") {
        Some(FileKind::Npy)
    } else if ext.eq_ignore_ascii_case("fvecs") {
        Some(FileKind::Fvecs)
    } else {
        None
    }
}

/// Element type of a memory-mapped vector file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Elem {
    F16,
    F32,
    F64,
}

impl Elem {
    fn size(self) -> usize {
        match self {
            Elem::F16 => 2,
            Elem::F32 => 4,
            Elem::F64 => 8,
        }
    }
}

/// A memory-mapped `.npy` or `.fvecs` file read lazily, row by row.
struct MappedSource {
    path: PathBuf,
    map: memmap2::Mmap,
    /// Byte offset of row 0's first value.
    first_value: usize,
    /// Bytes from one row's first value to the next's.
    stride: usize,
    rows: usize,
    dim: usize,
    elem: Elem,
    /// `.fvecs`: each row's values are preceded by an `i32` that must equal `dim`.
    dim_prefix: bool,
}

impl VectorSource for MappedSource {
    fn len(&self) -> usize {
        self.rows
    }

    fn dim(&self) -> usize {
        self.dim
    }

    fn read_row(&self, row: usize, out: &mut [f32]) -> Result<(), IngestError> {
        if out.len() != self.dim {
            // Built only on error: `origin()` allocates.
            return check_out_len(&self.origin(), self.dim, out.len());
        }
        if row >= self.rows {
            return Err(IngestError::RowOutOfRange {
                origin: self.origin(),
                row,
                len: self.rows,
            });
        }
        // In range: offsets were checked against the file size at open.
        let start = self.first_value + row * self.stride;
        let row_bytes = self.dim * self.elem.size();
        let bytes =
            self.map
                .get(start..start + row_bytes)
                .ok_or_else(|| IngestError::Truncated {
                    path: self.path.clone(),
                    expected_bytes: (start + row_bytes) as u64,
                    found_bytes: self.map.len() as u64,
                })?;
        if self.dim_prefix {
            let got = fvecs::read_i32(&self.map, start - 4).unwrap_or(0);
            if usize::try_from(got).ok() != Some(self.dim) {
                return Err(IngestError::RowDimMismatch {
                    path: self.path.clone(),
                    row,
                    expected: self.dim,
                    got: i64::from(got),
                });
            }
        }
        match self.elem {
            Elem::F32 => {
                for (o, c) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                    *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                }
            }
            Elem::F16 => {
                for (o, c) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                    *o = half::f16::from_le_bytes([c[0], c[1]]).to_f32();
                }
            }
            Elem::F64 => {
                for (o, c) in out.iter_mut().zip(bytes.chunks_exact(8)) {
                    let v = f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
                    // Values outside the f32 range become ±inf; the builder reports them.
                    *o = v as f32;
                }
            }
        }
        Ok(())
    }

    fn origin(&self) -> String {
        self.path.display().to_string()
    }
}

fn check_out_len(origin: &str, dim: usize, got: usize) -> Result<(), IngestError> {
    if got == dim {
        Ok(())
    } else {
        Err(IngestError::BufferLenMismatch {
            origin: origin.to_string(),
            expected: dim,
            got,
        })
    }
}

/// Opens and memory-maps `path` read-only, refusing empty files (which cannot be mapped).
///
/// The crate's only `unsafe` at the ingest edge; allowed here in case the crate denies it.
#[allow(unsafe_code)]
fn map_file(path: &Path) -> Result<memmap2::Mmap, IngestError> {
    let io = |source| IngestError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    if meta.is_dir() {
        return Err(io(std::io::Error::other(
            "is a directory; expected a .npy or .fvecs file",
        )));
    }
    if meta.len() == 0 {
        return Err(IngestError::EmptyFile {
            path: path.to_path_buf(),
        });
    }
    // SAFETY: the map is read-only and we only ever read it as bytes. If another process
    // truncates or rewrites the file while it is mapped, reads may see the new bytes or fault
    // (SIGBUS); that is the documented contract of every mmap-based reader, and input files
    // are not expected to change while the index is being built.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
    Ok(map)
}

/// Checks that the data after a `.npy` header is exactly `expected` bytes long.
fn check_data_len(
    path: &Path,
    map_len: usize,
    offset: usize,
    expected: usize,
) -> Result<(), IngestError> {
    let found = map_len.saturating_sub(offset);
    if found < expected {
        Err(IngestError::Truncated {
            path: path.to_path_buf(),
            expected_bytes: expected as u64,
            found_bytes: found as u64,
        })
    } else if found > expected {
        Err(IngestError::TrailingBytes {
            path: path.to_path_buf(),
            expected_bytes: expected as u64,
            found_bytes: found as u64,
        })
    } else {
        Ok(())
    }
}

/// Opens a vector file for lazy row-by-row reading, dispatching on its extension.
///
/// * `.npy` (any case): a 2-d `(rows, dim)` C-order array of `<f4`, `<f2` or `<f8`, in
///   format version 1.0, 2.0 or 3.0. f16 values are widened and f64 values narrowed to f32
///   (f64 values beyond the f32 range become ±inf; NaN/inf are left for the caller to reject).
/// * `.fvecs` (any case): rows of an `i32` dimension followed by that many `f32` values; all
///   rows must have the same dimension (checked here, up front).
///
/// The file is memory-mapped; its length, header and layout are validated before this
/// returns, so [`VectorSource::read_row`] only fails on a bad row index or buffer length.
/// A file with zero rows (shape `(0, d)`) opens fine with `len() == 0`.
///
/// # Errors
///
/// [`IngestError::UnsupportedExtension`] for other extensions, [`IngestError::Io`],
/// [`IngestError::EmptyFile`], and for malformed contents [`IngestError::NotNpy`],
/// [`IngestError::BadHeader`], [`IngestError::UnsupportedDtype`],
/// [`IngestError::FortranOrder`], [`IngestError::BadShape`], [`IngestError::Truncated`],
/// [`IngestError::TrailingBytes`], [`IngestError::NotFvecs`] or
/// [`IngestError::RowDimMismatch`], each naming the file.
pub fn open_vectors(path: &Path) -> Result<Box<dyn VectorSource + Send>, IngestError> {
    let kind = file_kind(path).ok_or_else(|| IngestError::UnsupportedExtension {
        path: path.to_path_buf(),
    })?;
    let map = map_file(path)?;
    let source = match kind {
        FileKind::Npy => open_npy_vectors(path, map)?,
        FileKind::Fvecs => {
            let layout = fvecs::parse_layout(path, &map)?;
            MappedSource {
                path: path.to_path_buf(),
                map,
                first_value: 4,
                stride: layout.row_bytes,
                rows: layout.rows,
                dim: layout.dim,
                elem: Elem::F32,
                dim_prefix: true,
            }
        }
    };
    Ok(Box::new(source))
}

fn open_npy_vectors(path: &Path, map: memmap2::Mmap) -> Result<MappedSource, IngestError> {
    let header = npy::parse_header(path, &map)?;
    let unsupported = |expected| IngestError::UnsupportedDtype {
        path: path.to_path_buf(),
        descr: header.descr.clone(),
        expected,
    };
    if !header.descr_is_simple {
        return Err(unsupported(VECTOR_DTYPES));
    }
    let (order, code) = npy::split_descr(&header.descr);
    let elem = match code {
        "f2" => Elem::F16,
        "f4" => Elem::F32,
        "f8" => Elem::F64,
        _ => return Err(unsupported(VECTOR_DTYPES)),
    };
    if order == npy::ByteOrder::Big {
        return Err(unsupported(VECTOR_DTYPES_LE));
    }
    if header.fortran_order {
        return Err(IngestError::FortranOrder {
            path: path.to_path_buf(),
        });
    }
    let (rows, dim) = match header.shape[..] {
        [rows, dim] if dim > 0 => (rows, dim),
        _ => {
            return Err(IngestError::BadShape {
                path: path.to_path_buf(),
                shape: header.shape.clone(),
                expected: "a 2-d array (rows, dim) with dim >= 1",
            })
        }
    };
    let expected = header
        .element_count()
        .and_then(|n| n.checked_mul(elem.size()))
        .ok_or_else(|| IngestError::BadHeader {
            path: path.to_path_buf(),
            reason: format!("shape {:?} is too large to address", header.shape),
        })?;
    check_data_len(path, map.len(), header.data_offset, expected)?;
    Ok(MappedSource {
        path: path.to_path_buf(),
        map,
        first_value: header.data_offset,
        stride: dim * elem.size(),
        rows,
        dim,
        elem,
        dim_prefix: false,
    })
}

/// Integer element types accepted for id files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IdElem {
    U64,
    I64,
    U32,
    I32,
}

/// Reads a `.npy` file of ids, one per vector.
///
/// The array must be 1-d `(n,)` or 2-d `(n, 1)` of `<u8` (uint64), `<i8` (int64), `<u4` or
/// `<i4`, with `n == expected_len`. Signed ids must be non-negative. Duplicates are not
/// checked here. Fortran order is accepted, as it has the same layout for these shapes.
///
/// # Errors
///
/// [`IngestError::UnsupportedExtension`] unless the extension is `.npy`,
/// [`IngestError::IdCountMismatch`] if `n != expected_len`, [`IngestError::NegativeId`]
/// naming the first negative row, and the header, dtype, shape and length errors of
/// [`open_vectors`].
pub fn read_ids(path: &Path, expected_len: usize) -> Result<Vec<u64>, IngestError> {
    if file_kind(path) != Some(FileKind::Npy) {
        return Err(IngestError::UnsupportedExtension {
            path: path.to_path_buf(),
        });
    }
    let map = map_file(path)?;
    let header = npy::parse_header(path, &map)?;
    let unsupported = |expected| IngestError::UnsupportedDtype {
        path: path.to_path_buf(),
        descr: header.descr.clone(),
        expected,
    };
    if !header.descr_is_simple {
        return Err(unsupported(ID_DTYPES));
    }
    let (order, code) = npy::split_descr(&header.descr);
    let elem = match code {
        "u8" => IdElem::U64,
        "i8" => IdElem::I64,
        "u4" => IdElem::U32,
        "i4" => IdElem::I32,
        _ => return Err(unsupported(ID_DTYPES)),
    };
    if order == npy::ByteOrder::Big {
        return Err(unsupported(ID_DTYPES_LE));
    }
    let n = match header.shape[..] {
        [n] | [n, 1] => n,
        _ => {
            return Err(IngestError::BadShape {
                path: path.to_path_buf(),
                shape: header.shape.clone(),
                expected: "a 1-d array (n,) or a 2-d array (n, 1)",
            })
        }
    };
    if n != expected_len {
        return Err(IngestError::IdCountMismatch {
            path: path.to_path_buf(),
            expected: expected_len,
            got: n,
        });
    }
    let size = match elem {
        IdElem::U64 | IdElem::I64 => 8,
        IdElem::U32 | IdElem::I32 => 4,
    };
    let expected = n.checked_mul(size).ok_or_else(|| IngestError::BadHeader {
        path: path.to_path_buf(),
        reason: format!("shape {:?} is too large to address", header.shape),
    })?;
    check_data_len(path, map.len(), header.data_offset, expected)?;
    let data = map.get(header.data_offset..).unwrap_or(&[]);
    let mut ids = Vec::with_capacity(n);
    let negative = |row, value| IngestError::NegativeId {
        path: path.to_path_buf(),
        row,
        value,
    };
    match elem {
        IdElem::U64 => ids.extend(
            data.chunks_exact(8)
                .map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]])),
        ),
        IdElem::U32 => ids.extend(
            data.chunks_exact(4)
                .map(|c| u64::from(u32::from_le_bytes([c[0], c[1], c[2], c[3]]))),
        ),
        IdElem::I64 => {
            for (row, c) in data.chunks_exact(8).enumerate() {
                let v = i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
                ids.push(u64::try_from(v).map_err(|_| negative(row, v))?);
            }
        }
        IdElem::I32 => {
            for (row, c) in data.chunks_exact(4).enumerate() {
                let v = i32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                ids.push(u64::try_from(v).map_err(|_| negative(row, i64::from(v)))?);
            }
        }
    }
    Ok(ids)
}

/// Loads a whole `.npy` or `.fvecs` vector file into memory as `f32` (for query files).
///
/// # Errors
///
/// Those of [`open_vectors`]; [`IngestError::InvalidMatrix`] if the matrix would not fit in
/// memory addressing.
pub fn read_matrix_f32(path: &Path) -> Result<MatrixSource, IngestError> {
    let source = open_vectors(path)?;
    let (rows, dim) = (source.len(), source.dim());
    let total = rows
        .checked_mul(dim)
        .ok_or_else(|| IngestError::InvalidMatrix {
            reason: format!("{}: {rows} × {dim} values is too large", path.display()),
        })?;
    let mut data = vec![0f32; total];
    for (row, out) in data.chunks_exact_mut(dim).enumerate() {
        source.read_row(row, out)?;
    }
    MatrixSource::new(data, dim)
}

/// Checks that `data` holds `rows × cols` values.
fn check_matrix(data: &[f32], rows: usize, cols: usize) -> Result<(), IngestError> {
    match rows.checked_mul(cols) {
        Some(n) if n == data.len() => Ok(()),
        _ => Err(IngestError::InvalidMatrix {
            reason: format!("{} values given for a {rows} × {cols} matrix", data.len()),
        }),
    }
}

/// Writes `data` (row-major, `rows × cols`) as a `.npy` file of `<f4`, format version 1.0,
/// with the header padded so the data starts at a multiple of 64 bytes.
///
/// The write is atomic: a temporary file in the same directory is written, fsynced and
/// renamed over `path`, so a failure never leaves a partial file at `path`.
///
/// # Errors
///
/// [`IngestError::InvalidMatrix`] if `data.len() != rows × cols`; [`IngestError::Io`].
pub fn write_npy_f32(
    path: &Path,
    data: &[f32],
    rows: usize,
    cols: usize,
) -> Result<(), IngestError> {
    check_matrix(data, rows, cols)?;
    let header = npy::encode_header("<f4", &[rows, cols]);
    write_atomic(path, |w| {
        w.write_all(&header)?;
        write_le_f32(w, data)
    })
}

/// Writes `data` as a 1-d `.npy` file of `<u8` (uint64), format version 1.0, atomically
/// (see [`write_npy_f32`]).
///
/// # Errors
///
/// [`IngestError::Io`].
pub fn write_npy_u64(path: &Path, data: &[u64]) -> Result<(), IngestError> {
    let header = npy::encode_header("<u8", &[data.len()]);
    write_atomic(path, |w| {
        w.write_all(&header)?;
        let mut buf = Vec::with_capacity(WRITE_CHUNK * 8);
        for chunk in data.chunks(WRITE_CHUNK) {
            buf.clear();
            for v in chunk {
                buf.extend_from_slice(&v.to_le_bytes());
            }
            w.write_all(&buf)?;
        }
        Ok(())
    })
}

/// Writes `data` (row-major, `rows × cols`) as an `.fvecs` file, atomically (see
/// [`write_npy_f32`]).
///
/// # Errors
///
/// [`IngestError::InvalidMatrix`] if `data.len() != rows × cols`, if `cols` is 0 or does not
/// fit in an `i32`, or if `rows` is 0 (an `.fvecs` file stores its dimension per row, so a
/// zero-row file would be empty and unreadable; use `.npy`); [`IngestError::Io`].
pub fn write_fvecs(path: &Path, data: &[f32], rows: usize, cols: usize) -> Result<(), IngestError> {
    check_matrix(data, rows, cols)?;
    let dim = match i32::try_from(cols) {
        Ok(d) if d > 0 => d,
        _ => {
            return Err(IngestError::InvalidMatrix {
                reason: format!(
                    ".fvecs needs a dimension between 1 and {}, got {cols}",
                    i32::MAX
                ),
            })
        }
    };
    if rows == 0 {
        return Err(IngestError::InvalidMatrix {
            reason: ".fvecs cannot store zero rows (the dimension is stored per row); use .npy"
                .to_string(),
        });
    }
    let prefix = dim.to_le_bytes();
    write_atomic(path, |w| {
        for row in data.chunks_exact(cols) {
            w.write_all(&prefix)?;
            write_le_f32(w, row)?;
        }
        Ok(())
    })
}

/// Values converted per `write_all` call by the writers.
const WRITE_CHUNK: usize = 16 * 1024;

fn write_le_f32(w: &mut impl Write, data: &[f32]) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(WRITE_CHUNK.min(data.len()) * 4);
    for chunk in data.chunks(WRITE_CHUNK) {
        buf.clear();
        for v in chunk {
            buf.extend_from_slice(&v.to_le_bytes());
        }
        w.write_all(&buf)?;
    }
    Ok(())
}

/// Distinguishes temp files of concurrent writes within one process.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Removes the temporary file on drop unless it was renamed into place.
struct TempGuard {
    path: PathBuf,
    armed: bool,
}

impl Drop for TempGuard {
    fn drop(&mut self) {
        if self.armed {
            // Best effort: the original error is what matters.
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Writes a file atomically: `fill` writes into a temporary file next to `path`, which is
/// then flushed, fsynced and renamed over `path` (and the directory fsynced, on Unix).
fn write_atomic(
    path: &Path,
    fill: impl FnOnce(&mut BufWriter<File>) -> std::io::Result<()>,
) -> Result<(), IngestError> {
    let io = |source| IngestError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file_name = path.file_name().ok_or_else(|| {
        io(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "path has no file name",
        ))
    })?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(file_name);
    temp_name.push(format!(
        ".tmp-{}-{}",
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let temp_path = dir.join(temp_name);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&temp_path)
        .map_err(io)?;
    let mut guard = TempGuard {
        path: temp_path,
        armed: true,
    };
    let mut writer = BufWriter::with_capacity(1 << 20, file);
    fill(&mut writer).map_err(io)?;
    let file = writer.into_inner().map_err(|e| io(e.into_error()))?;
    file.sync_all().map_err(io)?;
    drop(file);
    std::fs::rename(&guard.path, path).map_err(io)?;
    guard.armed = false;
    #[cfg(unix)]
    {
        // Make the rename itself durable. Best effort: some file systems refuse to fsync a
        // directory, and the data is already safely in place.
        if let Ok(d) = File::open(&dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}
