// Tests for `mrl_index::ingest`: round trips through the writers and readers, hand-written
// `.npy` files of other dtypes and format versions, and every error variant.
//
// This file is also compiled as unit tests inside the crate (src/ingest/tests.rs includes it),
// so it must not use inner attributes or inner doc comments.

use std::path::{Path, PathBuf};

use mrl_index::ingest::*;
use proptest::prelude::*;

/// Builds a `.npy` file by hand: magic, version `major.0`, `dict` padded to 64 bytes, `data`.
fn npy_file(major: u8, dict: &str, data: &[u8]) -> Vec<u8> {
    let preamble = if major == 1 { 10 } else { 12 };
    let mut header = dict.to_string();
    while !(preamble + header.len() + 1).is_multiple_of(64) {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY".to_vec();
    out.push(major);
    out.push(0);
    if major == 1 {
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&(header.len() as u32).to_le_bytes());
    }
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

/// A version 1.0 `.npy` file with the usual dict layout.
fn npy_simple(descr: &str, fortran: bool, shape: &str, data: &[u8]) -> Vec<u8> {
    let fortran = if fortran { "True" } else { "False" };
    npy_file(
        1,
        &format!("{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': {shape}, }}"),
        data,
    )
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn fvecs_bytes(rows: &[&[f32]]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in rows {
        out.extend_from_slice(&(r.len() as i32).to_le_bytes());
        out.extend_from_slice(&f32_bytes(r));
    }
    out
}

fn put(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn all_rows(src: &dyn VectorSource) -> Vec<f32> {
    let mut out = vec![0f32; src.len() * src.dim()];
    for (i, row) in out.chunks_exact_mut(src.dim()).enumerate() {
        src.read_row(i, row).unwrap();
    }
    out
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Opens `path` expecting an error, and checks that its message names the file.
fn open_err(path: &Path) -> IngestError {
    let err = match open_vectors(path) {
        Ok(src) => panic!("{} opened with {} rows", path.display(), src.len()),
        Err(e) => e,
    };
    assert_names(&err, path);
    err
}

fn assert_names(err: &IngestError, path: &Path) {
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!("{}: ", path.display())),
        "message does not start with the file name: {msg}"
    );
}

#[test]
fn npy_f32_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("items.npy");
    let data: Vec<f32> = vec![
        1.0,
        -0.0,
        f32::MIN_POSITIVE / 4.0,
        f32::MAX,
        -3.25,
        f32::INFINITY,
        f32::NAN,
        7.0,
        0.1,
        1e-30,
        -1e30,
        2.5,
    ];
    write_npy_f32(&path, &data, 3, 4).unwrap();

    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    assert_eq!(
        (10 + header_len) % 64,
        0,
        "data offset must be a multiple of 64"
    );
    assert_eq!(bytes.len(), 10 + header_len + 12 * 4);
    assert_eq!(bytes[10 + header_len - 1], b'\n');

    let src = open_vectors(&path).unwrap();
    assert_eq!((src.len(), src.dim()), (3, 4));
    assert!(!src.is_empty());
    assert_eq!(src.origin(), path.display().to_string());
    assert_eq!(bits(&all_rows(&*src)), bits(&data));
    let mut row = [0f32; 4];
    src.read_row(1, &mut row).unwrap();
    assert_eq!(bits(&row), bits(&data[4..8]));
}

#[test]
fn read_matrix_f32_loads_everything() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.npy");
    let data: Vec<f32> = (0..30).map(|i| i as f32 * 0.5 - 3.0).collect();
    write_npy_f32(&path, &data, 10, 3).unwrap();
    let m = read_matrix_f32(&path).unwrap();
    assert_eq!((m.len(), m.dim()), (10, 3));
    assert_eq!(m.as_slice(), &data[..]);
    assert_eq!(m.row(4), &data[12..15]);
    assert_eq!(m.into_vec(), data);

    let fpath = dir.path().join("q.fvecs");
    write_fvecs(&fpath, &data, 10, 3).unwrap();
    assert_eq!(read_matrix_f32(&fpath).unwrap().into_vec(), data);
}

#[test]
fn matrix_source_api_and_errors() {
    let m = MatrixSource::new(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 2).unwrap();
    assert_eq!((m.len(), m.dim()), (3, 2));
    assert_eq!(m.row(2), &[5.0, 6.0]);
    let mut out = [0f32; 2];
    m.read_row(1, &mut out).unwrap();
    assert_eq!(out, [3.0, 4.0]);
    assert!(matches!(
        m.read_row(3, &mut out),
        Err(IngestError::RowOutOfRange { row: 3, len: 3, .. })
    ));
    assert!(matches!(
        m.read_row(usize::MAX, &mut out),
        Err(IngestError::RowOutOfRange { .. })
    ));
    assert!(matches!(
        m.read_row(0, &mut [0f32; 3]),
        Err(IngestError::BufferLenMismatch {
            expected: 2,
            got: 3,
            ..
        })
    ));
    let empty = MatrixSource::new(Vec::new(), 5).unwrap();
    assert!(empty.is_empty());
    assert_eq!(empty.dim(), 5);

    let err = MatrixSource::new(vec![1.0; 4], 0).unwrap_err();
    assert!(matches!(err, IngestError::InvalidMatrix { .. }), "{err}");
    let err = MatrixSource::new(vec![1.0; 5], 2).unwrap_err();
    assert!(matches!(err, IngestError::InvalidMatrix { .. }), "{err}");
    assert!(err.to_string().contains("5 values"), "{err}");
}

#[test]
fn npy_f16_read_back_widened() {
    let dir = tempfile::tempdir().unwrap();
    let values = [1.0f32, -2.5, 0.333, 65504.0, 6.1e-5, -0.0];
    let halves: Vec<half::f16> = values.iter().map(|&v| half::f16::from_f32(v)).collect();
    let data: Vec<u8> = halves.iter().flat_map(|h| h.to_le_bytes()).collect();
    let path = put(
        dir.path(),
        "h.npy",
        &npy_simple("<f2", false, "(2, 3)", &data),
    );
    let src = open_vectors(&path).unwrap();
    assert_eq!((src.len(), src.dim()), (2, 3));
    let expected: Vec<f32> = halves.iter().map(|h| h.to_f32()).collect();
    assert_eq!(bits(&all_rows(&*src)), bits(&expected));
}

#[test]
fn npy_f64_read_back_narrowed() {
    let dir = tempfile::tempdir().unwrap();
    let values = [1.0f64, -2.5, 0.1, 1e300, -1e300, 3.0e-8];
    let data: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let path = put(
        dir.path(),
        "d.npy",
        &npy_simple("<f8", false, "(3, 2)", &data),
    );
    let src = open_vectors(&path).unwrap();
    assert_eq!((src.len(), src.dim()), (3, 2));
    let got = all_rows(&*src);
    let expected: Vec<f32> = values.iter().map(|&v| v as f32).collect();
    assert_eq!(bits(&got), bits(&expected));
    assert_eq!(got[3], f32::INFINITY);
    assert_eq!(got[4], f32::NEG_INFINITY);
}

#[test]
fn npy_v2_and_v3_headers() {
    let dir = tempfile::tempdir().unwrap();
    let data = [1.5f32, 2.5, -3.5, 4.5];
    // Keys in a different order, odd whitespace, a py2-style long, no trailing comma.
    let dict = "{ 'shape' : ( 2,2L ),'fortran_order':False ,\"descr\":'<f4' }";
    let path = put(dir.path(), "v2.npy", &npy_file(2, dict, &f32_bytes(&data)));
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(bytes[6], 2);
    let src = open_vectors(&path).unwrap();
    assert_eq!((src.len(), src.dim()), (2, 2));
    assert_eq!(all_rows(&*src), data);

    let dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 4), }";
    let path = put(dir.path(), "v3.npy", &npy_file(3, dict, &f32_bytes(&data)));
    assert_eq!(all_rows(&*open_vectors(&path).unwrap()), data);
}

#[test]
fn unaligned_data_offset_is_fine() {
    // A header whose length is not padded at all: data starts at an odd offset.
    let dir = tempfile::tempdir().unwrap();
    let data = [1.0f32, 2.0, 3.0];
    let dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 3) }\n";
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    bytes.extend_from_slice(dict.as_bytes());
    assert_ne!(bytes.len() % 4, 0);
    bytes.extend_from_slice(&f32_bytes(&data));
    let path = put(dir.path(), "odd.npy", &bytes);
    assert_eq!(all_rows(&*open_vectors(&path).unwrap()), data);
}

#[test]
fn byte_order_variants_and_case_insensitive_extension() {
    let dir = tempfile::tempdir().unwrap();
    let data = [0.5f32, -0.5];
    let path = put(
        dir.path(),
        "pipe.npy",
        &npy_simple("|f4", false, "(1, 2)", &f32_bytes(&data)),
    );
    assert_eq!(all_rows(&*open_vectors(&path).unwrap()), data);
    if cfg!(target_endian = "little") {
        let path = put(
            dir.path(),
            "eq.npy",
            &npy_simple("=f4", false, "(1, 2)", &f32_bytes(&data)),
        );
        assert_eq!(all_rows(&*open_vectors(&path).unwrap()), data);
    }
    let path = put(
        dir.path(),
        "UP.NPY",
        &npy_simple("<f4", false, "(2, 1)", &f32_bytes(&data)),
    );
    assert_eq!(open_vectors(&path).unwrap().len(), 2);
    let path = put(dir.path(), "UP.FVecs", &fvecs_bytes(&[&data]));
    assert_eq!(all_rows(&*open_vectors(&path).unwrap()), data);
}

#[test]
fn zero_rows_open_with_len_zero() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("none.npy");
    write_npy_f32(&path, &[], 0, 8).unwrap();
    let src = open_vectors(&path).unwrap();
    assert_eq!((src.len(), src.dim()), (0, 8));
    assert!(src.is_empty());
    let mut out = [0f32; 8];
    assert!(matches!(
        src.read_row(0, &mut out),
        Err(IngestError::RowOutOfRange { row: 0, len: 0, .. })
    ));
    assert_eq!(read_matrix_f32(&path).unwrap().len(), 0);
}

#[test]
fn read_row_checks_buffer_and_range() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.fvecs");
    write_fvecs(&path, &[1.0, 2.0, 3.0, 4.0], 2, 2).unwrap();
    let src = open_vectors(&path).unwrap();
    let err = src.read_row(0, &mut [0f32; 3]).unwrap_err();
    assert!(
        matches!(
            err,
            IngestError::BufferLenMismatch {
                expected: 2,
                got: 3,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("x.fvecs"), "{err}");
    let err = src.read_row(2, &mut [0f32; 2]).unwrap_err();
    assert!(
        matches!(err, IngestError::RowOutOfRange { row: 2, len: 2, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("x.fvecs"), "{err}");
}

#[test]
fn fvecs_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("base.fvecs");
    let data: Vec<f32> = (0..15).map(|i| (i as f32).sin()).collect();
    write_fvecs(&path, &data, 5, 3).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(bytes.len(), 5 * (4 + 3 * 4));
    for r in 0..5 {
        let off = r * 16;
        assert_eq!(
            i32::from_le_bytes(bytes[off..off + 4].try_into().unwrap()),
            3
        );
    }
    let src = open_vectors(&path).unwrap();
    assert_eq!((src.len(), src.dim()), (5, 3));
    assert_eq!(bits(&all_rows(&*src)), bits(&data));

    // And a hand-written one.
    let path = put(
        dir.path(),
        "hand.fvecs",
        &fvecs_bytes(&[&[1.0, 2.0], &[3.0, 4.0]]),
    );
    assert_eq!(
        all_rows(&*open_vectors(&path).unwrap()),
        [1.0, 2.0, 3.0, 4.0]
    );
}

#[test]
fn write_fvecs_rejects_bad_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.fvecs");
    for (data, rows, cols) in [(vec![1.0f32; 6], 2, 4), (vec![], 0, 3), (vec![], 3, 0)] {
        let err = write_fvecs(&path, &data, rows, cols).unwrap_err();
        assert!(matches!(err, IngestError::InvalidMatrix { .. }), "{err}");
    }
    let err = write_npy_f32(&dir.path().join("bad.npy"), &[1.0; 5], 2, 3).unwrap_err();
    assert!(matches!(err, IngestError::InvalidMatrix { .. }), "{err}");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "nothing written"
    );
}

#[test]
fn ids_u64_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ids.npy");
    let ids = vec![0u64, 7, u64::MAX, 1 << 40, 42];
    write_npy_u64(&path, &ids).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    assert_eq!((10 + header_len) % 64, 0);
    assert!(String::from_utf8_lossy(&bytes[10..10 + header_len]).contains("(5,)"));
    assert_eq!(read_ids(&path, 5).unwrap(), ids);

    let path = dir.path().join("none.npy");
    write_npy_u64(&path, &[]).unwrap();
    assert_eq!(read_ids(&path, 0).unwrap(), Vec::<u64>::new());
}

#[test]
fn ids_other_dtypes_and_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let i64s: Vec<u8> = [5i64, 0, i64::MAX]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let path = put(
        dir.path(),
        "i8.npy",
        &npy_simple("<i8", false, "(3,)", &i64s),
    );
    assert_eq!(read_ids(&path, 3).unwrap(), vec![5, 0, i64::MAX as u64]);
    let path = put(
        dir.path(),
        "i8col.npy",
        &npy_simple("<i8", false, "(3, 1)", &i64s),
    );
    assert_eq!(read_ids(&path, 3).unwrap(), vec![5, 0, i64::MAX as u64]);

    let u32s: Vec<u8> = [1u32, u32::MAX]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let path = put(
        dir.path(),
        "u4.npy",
        &npy_simple("<u4", false, "(2,)", &u32s),
    );
    assert_eq!(read_ids(&path, 2).unwrap(), vec![1, u32::MAX as u64]);

    let i32s: Vec<u8> = [3i32, i32::MAX]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let path = put(
        dir.path(),
        "i4.npy",
        &npy_simple("<i4", false, "(2,)", &i32s),
    );
    assert_eq!(read_ids(&path, 2).unwrap(), vec![3, i32::MAX as u64]);
}

#[test]
fn negative_id_names_row() {
    let dir = tempfile::tempdir().unwrap();
    let data: Vec<u8> = [4i64, 9, -17, 3]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let path = put(
        dir.path(),
        "neg.npy",
        &npy_simple("<i8", false, "(4,)", &data),
    );
    let err = read_ids(&path, 4).unwrap_err();
    assert!(
        matches!(
            err,
            IngestError::NegativeId {
                row: 2,
                value: -17,
                ..
            }
        ),
        "{err}"
    );
    assert_names(&err, &path);
    assert!(err.to_string().contains("row 2"), "{err}");

    let data: Vec<u8> = [-1i32].iter().flat_map(|v| v.to_le_bytes()).collect();
    let path = put(
        dir.path(),
        "neg4.npy",
        &npy_simple("<i4", false, "(1,)", &data),
    );
    let err = read_ids(&path, 1).unwrap_err();
    assert!(
        matches!(
            err,
            IngestError::NegativeId {
                row: 0,
                value: -1,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn id_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ids.npy");
    write_npy_u64(&path, &[1, 2, 3]).unwrap();
    let err = read_ids(&path, 4).unwrap_err();
    assert!(
        matches!(
            err,
            IngestError::IdCountMismatch {
                expected: 4,
                got: 3,
                ..
            }
        ),
        "{err}"
    );
    assert_names(&err, &path);

    let path = put(
        dir.path(),
        "f.npy",
        &npy_simple("<f4", false, "(1,)", &[0; 4]),
    );
    let err = read_ids(&path, 1).unwrap_err();
    assert!(matches!(err, IngestError::UnsupportedDtype { .. }), "{err}");
    assert_names(&err, &path);

    let path = put(
        dir.path(),
        "be.npy",
        &npy_simple(">u8", false, "(1,)", &[0; 8]),
    );
    let err = read_ids(&path, 1).unwrap_err();
    assert!(matches!(err, IngestError::UnsupportedDtype { .. }), "{err}");
    assert!(err.to_string().contains("little-endian"), "{err}");

    let path = put(
        dir.path(),
        "2d.npy",
        &npy_simple("<u8", false, "(1, 2)", &[0; 16]),
    );
    let err = read_ids(&path, 1).unwrap_err();
    assert!(matches!(err, IngestError::BadShape { .. }), "{err}");
    assert_names(&err, &path);

    let path = put(
        dir.path(),
        "short.npy",
        &npy_simple("<u8", false, "(2,)", &[0; 12]),
    );
    let err = read_ids(&path, 2).unwrap_err();
    assert!(
        matches!(
            err,
            IngestError::Truncated {
                expected_bytes: 16,
                found_bytes: 12,
                ..
            }
        ),
        "{err}"
    );

    let path = put(dir.path(), "ids.fvecs", &fvecs_bytes(&[&[1.0]]));
    let err = read_ids(&path, 1).unwrap_err();
    assert!(
        matches!(err, IngestError::UnsupportedExtension { .. }),
        "{err}"
    );
    assert_names(&err, &path);

    let path = put(dir.path(), "empty.npy", b"");
    let err = read_ids(&path, 0).unwrap_err();
    assert!(matches!(err, IngestError::EmptyFile { .. }), "{err}");
}

#[test]
fn truncated_npy() {
    let dir = tempfile::tempdir().unwrap();
    let path = put(
        dir.path(),
        "items.npy",
        &npy_simple("<f4", false, "(32, 32)", &[0; 100]),
    );
    let err = open_err(&path);
    assert!(
        matches!(
            err,
            IngestError::Truncated {
                expected_bytes: 4096,
                found_bytes: 100,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "{}: truncated: expected 4096 bytes of data, found 100",
            path.display()
        )
    );
}

#[test]
fn trailing_bytes_npy() {
    let dir = tempfile::tempdir().unwrap();
    let path = put(
        dir.path(),
        "long.npy",
        &npy_simple("<f4", false, "(2, 2)", &[0; 17]),
    );
    let err = open_err(&path);
    assert!(
        matches!(
            err,
            IngestError::TrailingBytes {
                expected_bytes: 16,
                found_bytes: 17,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn wrong_magic_and_text_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = npy_simple("<f4", false, "(1, 1)", &[0; 4]);
    bytes[5] = b'X';
    let path = put(dir.path(), "magic.npy", &bytes);
    let err = open_err(&path);
    assert!(matches!(err, IngestError::NotNpy { .. }), "{err}");
    assert!(err.to_string().contains("NUMPX"), "{err}");

    let path = put(dir.path(), "text.npy", b"0.1,0.2,0.3\n0.4,0.5,0.6\n");
    let err = open_err(&path);
    assert!(matches!(err, IngestError::NotNpy { .. }), "{err}");
    assert!(err.to_string().contains("0.1,0.2,0.3"), "{err}");
    assert!(err.to_string().contains("\\x93NUMPY"), "{err}");
}

#[test]
fn garbage_header_is_bad_header() {
    let dir = tempfile::tempdir().unwrap();
    let path = put(
        dir.path(),
        "hdr.npy",
        &npy_file(1, "{'descr': '<f4', 'shape': (1, 1)}", &[0; 4]),
    );
    let err = open_err(&path);
    assert!(matches!(err, IngestError::BadHeader { .. }), "{err}");
    assert!(err.to_string().contains("fortran_order"), "{err}");

    let path = put(dir.path(), "hdr2.npy", &npy_file(1, "not a dict", &[]));
    assert!(matches!(open_err(&path), IngestError::BadHeader { .. }));

    let mut bytes = npy_simple("<f4", false, "(1, 1)", &[0; 4]);
    bytes[6] = 9;
    let path = put(dir.path(), "v9.npy", &bytes);
    let err = open_err(&path);
    assert!(matches!(err, IngestError::BadHeader { .. }), "{err}");
    assert!(err.to_string().contains("9.0"), "{err}");

    let path = put(
        dir.path(),
        "cut.npy",
        &npy_simple("<f4", false, "(1, 1)", &[])[..30],
    );
    assert!(matches!(open_err(&path), IngestError::BadHeader { .. }));
}

#[test]
fn fvecs_inconsistent_row_dims_name_row() {
    let dir = tempfile::tempdir().unwrap();
    // Row sizes 12, 12, 20, 4: 48 bytes, a whole number of 12-byte rows, but row 2 says 4.
    let bytes = fvecs_bytes(&[&[1.0, 2.0], &[3.0, 4.0], &[5.0, 6.0, 7.0, 8.0], &[]]);
    let path = put(dir.path(), "mixed.fvecs", &bytes);
    let err = open_err(&path);
    assert!(
        matches!(
            err,
            IngestError::RowDimMismatch {
                row: 2,
                expected: 2,
                got: 4,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("row 2"), "{err}");
}

#[test]
fn fvecs_bad_layouts() {
    let dir = tempfile::tempdir().unwrap();
    let path = put(dir.path(), "neg.fvecs", &(-4i32).to_le_bytes());
    let err = open_err(&path);
    assert!(matches!(err, IngestError::NotFvecs { .. }), "{err}");
    assert!(err.to_string().contains("-4"), "{err}");

    let mut bytes = fvecs_bytes(&[&[1.0, 2.0], &[3.0, 4.0]]);
    bytes.truncate(bytes.len() - 2);
    let path = put(dir.path(), "cut.fvecs", &bytes);
    let err = open_err(&path);
    assert!(matches!(err, IngestError::NotFvecs { .. }), "{err}");
    assert!(err.to_string().contains("multiple"), "{err}");

    let path = put(dir.path(), "tiny.fvecs", &[1, 0]);
    assert!(matches!(open_err(&path), IngestError::NotFvecs { .. }));

    // An .npy file renamed to .fvecs: the "dimension" is the magic read as an i32.
    let path = put(
        dir.path(),
        "really.fvecs",
        &npy_simple("<f4", false, "(1, 1)", &[0; 4]),
    );
    assert!(matches!(open_err(&path), IngestError::NotFvecs { .. }));
}

#[test]
fn empty_files_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["e.npy", "e.fvecs"] {
        let path = put(dir.path(), name, b"");
        let err = open_err(&path);
        assert!(matches!(err, IngestError::EmptyFile { .. }), "{err}");
        assert!(err.to_string().contains("empty"), "{err}");
    }
}

#[test]
fn wrong_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let path = put(
        dir.path(),
        "one.npy",
        &npy_simple("<f4", false, "(4,)", &[0; 16]),
    );
    let err = open_err(&path);
    assert!(
        matches!(&err, IngestError::BadShape { shape, .. } if shape == &[4]),
        "{err}"
    );
    assert!(err.to_string().contains("[4]"), "{err}");

    let path = put(
        dir.path(),
        "three.npy",
        &npy_simple("<f4", false, "(2, 3, 4)", &[0; 96]),
    );
    let err = open_err(&path);
    assert!(
        matches!(&err, IngestError::BadShape { shape, .. } if shape == &[2, 3, 4]),
        "{err}"
    );
    assert!(err.to_string().contains("[2, 3, 4]"), "{err}");

    let path = put(
        dir.path(),
        "zero.npy",
        &npy_simple("<f4", false, "(3, 0)", &[]),
    );
    assert!(matches!(open_err(&path), IngestError::BadShape { .. }));

    let path = put(
        dir.path(),
        "scalar.npy",
        &npy_simple("<f4", false, "()", &[0; 4]),
    );
    assert!(matches!(open_err(&path), IngestError::BadShape { .. }));
}

#[test]
fn fortran_order_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let path = put(
        dir.path(),
        "f.npy",
        &npy_simple("<f4", true, "(2, 2)", &[0; 16]),
    );
    let err = open_err(&path);
    assert!(matches!(err, IngestError::FortranOrder { .. }), "{err}");
    assert!(err.to_string().contains("C order required"), "{err}");
}

#[test]
fn unsupported_dtypes() {
    let dir = tempfile::tempdir().unwrap();
    let path = put(
        dir.path(),
        "be.npy",
        &npy_simple(">f4", false, "(1, 2)", &[0; 8]),
    );
    let err = open_err(&path);
    assert!(
        matches!(&err, IngestError::UnsupportedDtype { descr, .. } if descr == ">f4"),
        "{err}"
    );
    assert!(err.to_string().contains("little-endian"), "{err}");

    let path = put(
        dir.path(),
        "int.npy",
        &npy_simple("<i4", false, "(1, 2)", &[0; 8]),
    );
    let err = open_err(&path);
    assert!(matches!(err, IngestError::UnsupportedDtype { .. }), "{err}");
    assert!(err.to_string().contains("'<i4'"), "{err}");

    let dict = "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1, 1), }";
    let path = put(dir.path(), "rec.npy", &npy_file(1, dict, &[0; 4]));
    assert!(matches!(
        open_err(&path),
        IngestError::UnsupportedDtype { .. }
    ));
}

#[test]
fn unknown_extension_and_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["vectors.txt", "vectors", "vectors.npz", "vectors.bvecs"] {
        let path = put(
            dir.path(),
            name,
            &npy_simple("<f4", false, "(1, 1)", &[0; 4]),
        );
        let err = open_err(&path);
        assert!(
            matches!(err, IngestError::UnsupportedExtension { .. }),
            "{err}"
        );
    }
    let path = dir.path().join("missing.npy");
    let err = open_err(&path);
    assert!(matches!(err, IngestError::Io { .. }), "{err}");
    let err = read_ids(&path, 1).unwrap_err();
    assert!(matches!(err, IngestError::Io { .. }), "{err}");

    let sub = dir.path().join("adir.npy");
    std::fs::create_dir(&sub).unwrap();
    assert!(matches!(open_err(&sub), IngestError::Io { .. }));
}

#[test]
fn writes_are_atomic_and_leave_no_temp_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.npy");
    write_npy_f32(&path, &[1.0, 2.0], 1, 2).unwrap();
    // Overwrite in place.
    write_npy_f32(&path, &[3.0, 4.0, 5.0], 1, 3).unwrap();
    assert_eq!(
        read_matrix_f32(&path).unwrap().into_vec(),
        vec![3.0, 4.0, 5.0]
    );
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("out.npy")]);

    // The rename fails (the target is a non-empty directory): an error, and no temp file left.
    let blocked = dir.path().join("blocked.npy");
    std::fs::create_dir(&blocked).unwrap();
    std::fs::write(blocked.join("keep"), b"x").unwrap();
    let err = write_npy_f32(&blocked, &[1.0], 1, 1).unwrap_err();
    assert!(matches!(err, IngestError::Io { .. }), "{err}");
    assert_names(&err, &blocked);
    let err = write_npy_u64(&blocked, &[1]).unwrap_err();
    assert!(matches!(err, IngestError::Io { .. }), "{err}");
    let err = write_fvecs(&blocked, &[1.0], 1, 1).unwrap_err();
    assert!(matches!(err, IngestError::Io { .. }), "{err}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);

    // A directory that does not exist.
    let err = write_npy_u64(&dir.path().join("no/such/dir/ids.npy"), &[1]).unwrap_err();
    assert!(matches!(err, IngestError::Io { .. }), "{err}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn prop_npy_and_fvecs_round_trip_exactly(
        (rows, cols, raw) in (0usize..12, 1usize..12).prop_flat_map(|(r, c)| {
            (Just(r), Just(c), proptest::collection::vec(any::<u32>(), r * c))
        })
    ) {
        let data: Vec<f32> = raw.iter().map(|&b| f32::from_bits(b)).collect();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.npy");
        write_npy_f32(&path, &data, rows, cols).unwrap();
        let src = open_vectors(&path).unwrap();
        prop_assert_eq!((src.len(), src.dim()), (rows, cols));
        prop_assert_eq!(bits(&all_rows(&*src)), raw.clone());
        if rows > 0 {
            let path = dir.path().join("p.fvecs");
            write_fvecs(&path, &data, rows, cols).unwrap();
            let src = open_vectors(&path).unwrap();
            prop_assert_eq!((src.len(), src.dim()), (rows, cols));
            prop_assert_eq!(bits(&all_rows(&*src)), raw);
        }
    }

    #[test]
    fn prop_ids_round_trip(ids in proptest::collection::vec(any::<u64>(), 0..40)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ids.npy");
        write_npy_u64(&path, &ids).unwrap();
        prop_assert_eq!(read_ids(&path, ids.len()).unwrap(), ids);
    }

    #[test]
    fn prop_garbage_never_panics(
        tail in proptest::collection::vec(any::<u8>(), 0..200),
        with_magic in any::<bool>(),
        fvecs in any::<bool>(),
    ) {
        let mut bytes = if with_magic { b"\x93NUMPY\x01\x00".to_vec() } else { Vec::new() };
        bytes.extend_from_slice(&tail);
        let dir = tempfile::tempdir().unwrap();
        let path = put(dir.path(), if fvecs { "g.fvecs" } else { "g.npy" }, &bytes);
        if let Ok(src) = open_vectors(&path) {
            let _ = all_rows(&*src);
        }
        let _ = read_ids(&path, 3);
    }

    /// Header dictionaries built from the grammar's own pieces (keys, dtypes, tuples, nesting,
    /// stray punctuation), inside a valid preamble with a matching length: every case reaches
    /// the dictionary parser, which must answer with a value or a header, dtype or shape
    /// error, never a panic or a mismatched preamble error.
    #[test]
    fn prop_structured_npy_headers_reach_the_dictionary_parser(
        pieces in proptest::collection::vec(
            prop_oneof![
                Just("{"), Just("}"), Just("'descr'"), Just("'fortran_order'"), Just("'shape'"),
                Just(":"), Just(","), Just(" "), Just("'<f4'"), Just("'<f2'"), Just("'>f8'"),
                Just("'<u8'"), Just("'|u1'"), Just("[('a', '<f4')]"), Just("("), Just(")"),
                Just("True"), Just("False"), Just("None"), Just("3"), Just("0"), Just("-1"),
                Just("18446744073709551615"), Just("'"), Just("\""), Just("\\"), Just("é"),
                Just("(((((((("), Just("))))"), Just("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"),
            ],
            0..40,
        ),
        major in 1u8..=3,
        data_len in 0usize..64,
    ) {
        let dict: String = pieces.concat();
        let bytes = npy_file(major, &dict, &vec![0u8; data_len]);
        let dir = tempfile::tempdir().unwrap();
        let path = put(dir.path(), "s.npy", &bytes);
        match open_vectors(&path) {
            Ok(src) => {
                let _ = all_rows(&*src);
            }
            Err(e) => prop_assert!(
                matches!(
                    e,
                    IngestError::BadHeader { .. }
                        | IngestError::UnsupportedDtype { .. }
                        | IngestError::FortranOrder { .. }
                        | IngestError::BadShape { .. }
                        | IngestError::Truncated { .. }
                        | IngestError::TrailingBytes { .. }
                ),
                "{dict:?}: {e}"
            ),
        }
        let _ = read_ids(&path, 3);
        let _ = mrl_index::ingest::read_id_matrix(&path);
    }
}

#[test]
fn huge_shapes_are_refused_before_anything_is_allocated() {
    let dir = tempfile::tempdir().unwrap();
    // No rows, a dimension of 2^40: the file is valid in size (no data) but a reader would
    // size its row buffer by the dimension.
    let p = put(
        dir.path(),
        "wide.npy",
        &npy_simple("<f4", false, "(0, 1099511627776)", &[]),
    );
    let err = open_err(&p);
    assert!(matches!(err, IngestError::BadShape { .. }), "{err}");
    assert!(err.to_string().contains("16,777,216"), "{err}");
    // Shapes whose product overflows, or claims far more data than the file holds.
    let p = put(
        dir.path(),
        "overflow.npy",
        &npy_simple("<f4", false, "(18446744073709551615, 2)", &[]),
    );
    assert!(
        open_err(&p).to_string().contains("too large"),
        "{}",
        open_err(&p)
    );
    let p = put(
        dir.path(),
        "claims.npy",
        &npy_simple("<f4", false, "(1000000000000, 4)", &[0; 16]),
    );
    assert!(matches!(open_err(&p), IngestError::Truncated { .. }));
    let p = put(
        dir.path(),
        "ids.npy",
        &npy_simple("<u8", false, "(1000000000000,)", &[0; 8]),
    );
    let err = mrl_index::ingest::read_ids(&p, 1_000_000_000_000).unwrap_err();
    assert!(matches!(err, IngestError::Truncated { .. }), "{err}");
}
