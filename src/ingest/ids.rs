//! Integer id files: [`read_ids`] (one id per vector) and [`read_id_matrix`] (rows of ids,
//! such as ground-truth neighbour lists).

use super::mapped::{check_data_len, file_kind, map_file, FileKind};
use super::{npy, IngestError};
use std::path::Path;

/// The `.npy` element types accepted for ids.
const ID_DTYPES: &str = "'<u8' (uint64), '<i8' (int64), '<u4' (uint32) or '<i4' (int32)";
/// What to say for a big-endian id dtype.
const ID_DTYPES_LE: &str = "little-endian '<u8', '<i8', '<u4' or '<i4' (convert with \
                            a.astype('<u8'))";

/// Integer element types accepted for id files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IdElem {
    U64,
    I64,
    U32,
    I32,
}

impl IdElem {
    fn size(self) -> usize {
        match self {
            IdElem::U64 | IdElem::I64 => 8,
            IdElem::U32 | IdElem::I32 => 4,
        }
    }
}

/// A row-major matrix of ids read by [`read_id_matrix`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdMatrix {
    /// `rows × cols` ids, row-major.
    pub ids: Vec<u64>,
    /// Number of rows.
    pub rows: usize,
    /// Ids per row.
    pub cols: usize,
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
/// [`super::open_vectors`].
pub fn read_ids(path: &Path, expected_len: usize) -> Result<Vec<u64>, IngestError> {
    read_id_array(path, |shape, _| match shape {
        [n] | [n, 1] => {
            if *n == expected_len {
                Ok(())
            } else {
                Err(IngestError::IdCountMismatch {
                    path: path.to_path_buf(),
                    expected: expected_len,
                    got: *n,
                })
            }
        }
        _ => Err(IngestError::BadShape {
            path: path.to_path_buf(),
            shape: shape.to_vec(),
            expected: "a 1-d array (n,) or a 2-d array (n, 1)",
        }),
    })
}

/// Reads a `.npy` list of ids of any length: a 1-d array `(n,)` or a 2-d `(n, 1)`, of the
/// dtypes of [`read_ids`] (the ids to delete from a live index, for one).
///
/// # Errors
///
/// The errors of [`read_ids`] but the count mismatch.
pub fn read_id_list(path: &Path) -> Result<Vec<u64>, IngestError> {
    read_id_array(path, |shape, _| match shape {
        [_] | [_, 1] => Ok(()),
        _ => Err(IngestError::BadShape {
            path: path.to_path_buf(),
            shape: shape.to_vec(),
            expected: "a 1-d array (n,) or a 2-d array (n, 1)",
        }),
    })
}

/// Reads a 2-d `.npy` array of ids `(rows, cols)` in C order, of the dtypes of [`read_ids`].
///
/// # Errors
///
/// [`IngestError::BadShape`] for other shapes, [`IngestError::FortranOrder`] for a Fortran
/// array of more than one column, and the errors of [`read_ids`] but the count mismatch.
pub fn read_id_matrix(path: &Path) -> Result<IdMatrix, IngestError> {
    let mut dims = (0, 0);
    let ids = read_id_array(path, |shape, fortran| match shape {
        [r, c] => {
            if fortran && *r > 1 && *c > 1 {
                return Err(IngestError::FortranOrder {
                    path: path.to_path_buf(),
                });
            }
            dims = (*r, *c);
            Ok(())
        }
        _ => Err(IngestError::BadShape {
            path: path.to_path_buf(),
            shape: shape.to_vec(),
            expected: "a 2-d array (rows, ids per row)",
        }),
    })?;
    Ok(IdMatrix {
        ids,
        rows: dims.0,
        cols: dims.1,
    })
}

/// Reads every id of a `.npy` integer array after `check(shape, fortran_order)` accepts it.
fn read_id_array(
    path: &Path,
    check: impl FnOnce(&[usize], bool) -> Result<(), IngestError>,
) -> Result<Vec<u64>, IngestError> {
    if file_kind(path) != Some(FileKind::Npy) {
        return Err(IngestError::UnsupportedExtension {
            path: path.to_path_buf(),
        });
    }
    let map = map_file(path)?;
    let header = npy::parse_header(path, &map)?;
    let code = npy::element_code(
        path,
        &header,
        &["u8", "i8", "u4", "i4"],
        ID_DTYPES,
        ID_DTYPES_LE,
    )?;
    let elem = match code {
        "u8" => IdElem::U64,
        "i8" => IdElem::I64,
        "u4" => IdElem::U32,
        _ => IdElem::I32,
    };
    check(&header.shape, header.fortran_order)?;
    let too_large = || IngestError::BadHeader {
        path: path.to_path_buf(),
        reason: format!("shape {:?} is too large to address", header.shape),
    };
    let n = header.element_count().ok_or_else(too_large)?;
    let expected = n.checked_mul(elem.size()).ok_or_else(too_large)?;
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
