//! [`VectorSource`], what the builder reads rows from, and [`MatrixSource`], its in-memory
//! form.

use super::IngestError;

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

/// Checks a caller's row buffer against the source's dimension.
pub(super) fn check_out_len(origin: &str, dim: usize, got: usize) -> Result<(), IngestError> {
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
