//! Vector files read lazily from a memory map: [`open_vectors`] and [`read_matrix_f32`].

use super::source::check_out_len;
use super::{fvecs, npy, IngestError, MatrixSource, VectorSource};
use crate::bytes::Bytes;
use std::path::{Path, PathBuf};

/// The `.npy` element types accepted for vectors.
const VECTOR_DTYPES: &str = "'<f4' (float32), '<f2' (float16) or '<f8' (float64)";
/// What to say for a big-endian vector dtype.
const VECTOR_DTYPES_LE: &str = "little-endian '<f4', '<f2' or '<f8' (convert with \
                                a.astype('<f4'))";
/// The file kinds [`open_vectors`] understands, by extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FileKind {
    /// `.npy`.
    Npy,
    /// `.fvecs`.
    Fvecs,
}

pub(super) fn file_kind(path: &Path) -> Option<FileKind> {
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
    map: Bytes,
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

/// Maps `path` read-only (through [`Bytes::map_file`], the crate's one file mapper),
/// refusing directories and empty files with errors that say so.
pub(super) fn map_file(path: &Path) -> Result<Bytes, IngestError> {
    let io = |source| IngestError::Io {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(io)?;
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
    Bytes::map_file(path).map_err(io)
}

/// Checks that the data after a `.npy` header is exactly `expected` bytes long.
pub(super) fn check_data_len(
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

fn open_npy_vectors(path: &Path, map: Bytes) -> Result<MappedSource, IngestError> {
    let header = npy::parse_header(path, &map)?;
    let code = npy::element_code(
        path,
        &header,
        &["f2", "f4", "f8"],
        VECTOR_DTYPES,
        VECTOR_DTYPES_LE,
    )?;
    let elem = match code {
        "f2" => Elem::F16,
        "f4" => Elem::F32,
        _ => Elem::F64,
    };
    if header.fortran_order {
        return Err(IngestError::FortranOrder {
            path: path.to_path_buf(),
        });
    }
    let (rows, dim) = match header.shape[..] {
        // An empty file may claim any dimension: bound it, so that no reader sizes a buffer
        // by a dimension of trillions.
        [rows, dim] if dim > 0 && dim <= MAX_DIM => (rows, dim),
        _ => {
            return Err(IngestError::BadShape {
                path: path.to_path_buf(),
                shape: header.shape.clone(),
                expected: "a 2-d array (rows, dim) with 1 <= dim <= 16,777,216",
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

/// The largest vector dimension a file may declare (2²⁴).
pub const MAX_DIM: usize = 1 << 24;

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
