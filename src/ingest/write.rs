//! Writing vector and id files, atomically: [`write_npy_f32`], [`write_npy_u64`],
//! [`write_npy_u64_matrix`] and [`write_fvecs`].

use super::{npy, IngestError};
use crate::atomic::AtomicFile;
use std::io::Write;
use std::path::Path;

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
        write_le(w, data, f32::to_le_bytes)
    })
}

/// Writes `data` as a 1-d `.npy` file of `<u8` (uint64), format version 1.0, atomically
/// (see [`write_npy_f32`]).
///
/// # Errors
///
/// [`IngestError::Io`].
pub fn write_npy_u64(path: &Path, data: &[u64]) -> Result<(), IngestError> {
    write_u64(path, data, &[data.len()])
}

/// Writes `data` (row-major, `rows × cols`) as a 2-d `.npy` file of `<u8` (uint64), format
/// version 1.0, atomically (see [`write_npy_f32`]); [`super::read_id_matrix`] reads it back.
///
/// # Errors
///
/// [`IngestError::InvalidMatrix`] if `data.len() != rows × cols`; [`IngestError::Io`].
pub fn write_npy_u64_matrix(
    path: &Path,
    data: &[u64],
    rows: usize,
    cols: usize,
) -> Result<(), IngestError> {
    if rows.checked_mul(cols) != Some(data.len()) {
        return Err(IngestError::InvalidMatrix {
            reason: format!("{} ids given for a {rows} × {cols} matrix", data.len()),
        });
    }
    write_u64(path, data, &[rows, cols])
}

fn write_u64(path: &Path, data: &[u64], shape: &[usize]) -> Result<(), IngestError> {
    let header = npy::encode_header("<u8", shape);
    write_atomic(path, |w| {
        w.write_all(&header)?;
        write_le(w, data, u64::to_le_bytes)
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
            write_le(w, row, f32::to_le_bytes)?;
        }
        Ok(())
    })
}

/// Values converted per `write_all` call by the writers.
const WRITE_CHUNK: usize = 16 * 1024;

/// Writes `data` little-endian, converting [`WRITE_CHUNK`] values per `write_all`.
fn write_le<T: Copy, const N: usize>(
    w: &mut impl Write,
    data: &[T],
    to_le: fn(T) -> [u8; N],
) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(WRITE_CHUNK.min(data.len()) * N);
    for chunk in data.chunks(WRITE_CHUNK) {
        buf.clear();
        for &v in chunk {
            buf.extend_from_slice(&to_le(v));
        }
        w.write_all(&buf)?;
    }
    Ok(())
}

/// Writes a file atomically through the crate's one atomic writer ([`AtomicFile`]: a
/// temporary file beside `path`, fsynced, renamed over it, the directory fsynced).
fn write_atomic(
    path: &Path,
    fill: impl FnOnce(&mut AtomicFile) -> std::io::Result<()>,
) -> Result<(), IngestError> {
    let io = |source| IngestError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = AtomicFile::create(path).map_err(io)?;
    fill(&mut file).map_err(io)?;
    file.commit().map_err(io)?;
    Ok(())
}
