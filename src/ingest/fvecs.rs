//! The `.fvecs` format (as used by the TEXMEX / BIGANN benchmarks): each row is a little-endian
//! `i32` dimension `d` followed by `d` little-endian `f32` values. Every row must carry the same
//! `d`; there is no file header, so the row count is `file size / (4 + 4·d)`.

use std::path::Path;

use super::IngestError;

/// The layout of an `.fvecs` file, after validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FvecsLayout {
    /// Number of rows.
    pub(crate) rows: usize,
    /// Dimension of every row.
    pub(crate) dim: usize,
    /// Bytes per row: `4 + 4·dim`.
    pub(crate) row_bytes: usize,
}

/// Validates `bytes` (a whole `.fvecs` file, not empty) and returns its layout.
///
/// Checks that the first dimension field is positive, that the file size is a whole number of
/// rows, and that every row's dimension field equals the first. This reads one `i32` per row,
/// which touches every page of the file once.
pub(crate) fn parse_layout(path: &Path, bytes: &[u8]) -> Result<FvecsLayout, IngestError> {
    let not_fvecs = |reason: String| IngestError::NotFvecs {
        path: path.to_path_buf(),
        reason,
    };
    let first = read_i32(bytes, 0).ok_or_else(|| {
        not_fvecs(format!(
            "file is {} bytes long, too short for the 4-byte dimension field of the first row",
            bytes.len()
        ))
    })?;
    if first <= 0 {
        return Err(not_fvecs(format!(
            "the first row's dimension field is {first}; expected a positive i32 (is this really \
             an .fvecs file?)"
        )));
    }
    let dim =
        usize::try_from(first).map_err(|_| not_fvecs(format!("dimension {first} too large")))?;
    let row_bytes = dim
        .checked_mul(4)
        .and_then(|b| b.checked_add(4))
        .ok_or_else(|| not_fvecs(format!("dimension {first} too large")))?;
    if !bytes.len().is_multiple_of(row_bytes) {
        return Err(not_fvecs(format!(
            "file size {} bytes is not a multiple of the row size 4 + 4 × {dim} = {row_bytes} bytes \
             (dimension {dim} from the first row); the file is truncated or not .fvecs",
            bytes.len()
        )));
    }
    let rows = bytes.len() / row_bytes;
    for row in 1..rows {
        let got = read_i32(bytes, row * row_bytes).unwrap_or(0);
        if got != first {
            return Err(IngestError::RowDimMismatch {
                path: path.to_path_buf(),
                row,
                expected: dim,
                got: i64::from(got),
            });
        }
    }
    Ok(FvecsLayout {
        rows,
        dim,
        row_bytes,
    })
}

/// Reads a little-endian `i32` at byte `offset`, or `None` past the end.
pub(crate) fn read_i32(bytes: &[u8], offset: usize) -> Option<i32> {
    let end = offset.checked_add(4)?;
    let chunk: [u8; 4] = bytes.get(offset..end)?.try_into().ok()?;
    Some(i32::from_le_bytes(chunk))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fvecs(rows: &[&[f32]]) -> Vec<u8> {
        let mut out = Vec::new();
        for r in rows {
            out.extend_from_slice(&(r.len() as i32).to_le_bytes());
            for v in *r {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        out
    }

    fn parse(bytes: &[u8]) -> Result<FvecsLayout, IngestError> {
        parse_layout(Path::new("t.fvecs"), bytes)
    }

    #[test]
    fn layout_of_good_file() {
        let l = parse(&fvecs(&[&[1.0, 2.0, 3.0], &[4.0, 5.0, 6.0]])).unwrap();
        assert_eq!(
            l,
            FvecsLayout {
                rows: 2,
                dim: 3,
                row_bytes: 16
            }
        );
    }

    #[test]
    fn differing_row_dims_name_the_row() {
        let bytes = fvecs(&[&[1.0, 2.0], &[3.0, 4.0], &[5.0, 6.0, 7.0, 8.0], &[]]);
        // sizes: 12 + 12 + 20 + 4 = 48, a multiple of 12.
        let err = parse(&bytes).unwrap_err();
        match &err {
            IngestError::RowDimMismatch {
                row, expected, got, ..
            } => {
                assert_eq!((*row, *expected, *got), (2, 2, 4));
            }
            other => panic!("unexpected {other:?}"),
        }
        let msg = err.to_string();
        assert!(msg.contains("t.fvecs") && msg.contains("row 2"), "{msg}");
    }

    #[test]
    fn bad_first_dim_and_sizes_are_not_fvecs() {
        for bytes in [
            vec![],
            vec![1, 0],
            (-3i32).to_le_bytes().to_vec(),
            0i32.to_le_bytes().to_vec(),
            {
                let mut b = fvecs(&[&[1.0, 2.0]]);
                b.push(0);
                b
            },
            i32::MAX.to_le_bytes().to_vec(),
        ] {
            let err = parse(&bytes).unwrap_err();
            assert!(matches!(err, IngestError::NotFvecs { .. }), "{err}");
            assert!(err.to_string().starts_with("t.fvecs: "), "{err}");
        }
    }
}
