//! The `ort` encoders reproduce the reference outputs committed with the model
//! (`datasets/beauty/fixtures/query_encoder_reference.json`, computed by ONNX Runtime from
//! Python), are safe to share between threads, and fail with clear errors.
//!
//! Needs the ONNX Runtime library: `bash tools/install-runtime.sh`. Without it the tests
//! that run a model print why and skip (they pass), so that a machine without Python can
//! still run the rest of the suite; with `MRL_REQUIRE_ONNX_RUNTIME=1` (CI sets it, after
//! installing the runtime) a missing runtime fails them instead.

mod beauty;

use beauty::{data, floats, item_vectors, json, max_abs_diff, runtime_present};
use mrl_index::encoder::{EncoderError, ItemEncoder, QueryEncoder};
use mrl_index::ingest::{read_matrix_f32, MatrixSource, VectorSource};
use mrl_index::progress::NoProgress;
use mrl_index::{Filter, Index, IndexBuilder, SearchParams};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, OnceLock};

fn reference() -> &'static serde_json::Value {
    static R: OnceLock<serde_json::Value> = OnceLock::new();
    R.get_or_init(|| json("fixtures/query_encoder_reference.json"))
}

#[test]
fn item_encoder_reproduces_reference_vectors() {
    if !runtime_present("item_encoder_reproduces_reference_vectors") {
        return;
    }
    let r = reference();
    let tol = r["tolerance_max_abs"].as_f64().unwrap() as f32;
    let (vectors, d) = item_vectors();
    assert_eq!(*d, 1024);
    assert_eq!(vectors.len(), 12101 * d);
    for (row, expected) in r["feature_rows"]
        .as_array()
        .unwrap()
        .iter()
        .zip(r["item_vectors"].as_array().unwrap())
    {
        let row = row.as_u64().unwrap() as usize;
        let diff = max_abs_diff(&vectors[row * d..(row + 1) * d], &floats(expected));
        assert!(diff <= tol, "item row {row}: max abs diff {diff}");
    }
}

/// The fixture's feature rows and those rows' features, row-major (`rows.len() × F`).
fn fixture_rows_and_features() -> (Vec<i64>, Vec<f32>) {
    let rows: Vec<i64> = reference()["feature_rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap())
        .collect();
    let features = read_matrix_f32(&data("item_features.npy")).unwrap();
    let subset = rows
        .iter()
        .flat_map(|&row| features.row(row as usize).to_vec())
        .collect();
    (rows, subset)
}

/// Asserts that `got` (`rows.len() × d`, row-major) holds the fixture's expected item vectors.
fn assert_reference_vectors(got: &[f32], d: usize, rows: &[i64]) {
    let r = reference();
    let tol = r["tolerance_max_abs"].as_f64().unwrap() as f32;
    for (i, expected) in r["item_vectors"].as_array().unwrap().iter().enumerate() {
        let diff = max_abs_diff(&got[i * d..(i + 1) * d], &floats(expected));
        assert!(diff <= tol, "identity row {}: max abs diff {diff}", rows[i]);
    }
}

#[test]
fn item_encoder_takes_identity_rows_for_a_subset_of_items() {
    if !runtime_present("item_encoder_takes_identity_rows_for_a_subset_of_items") {
        return;
    }
    let tol = reference()["tolerance_max_abs"].as_f64().unwrap() as f32;
    let enc = ItemEncoder::open(&data("item_encoder.onnx")).unwrap();
    let (rows, subset) = fixture_rows_and_features();
    // The rows alone, each with its identity row, give the catalogue's vectors (a model
    // without an identity component ignores the rows).
    let got = enc.encode_rows(&subset, &rows, 3).unwrap();
    let d = enc.out_dim();
    assert_reference_vectors(&got, d, &rows);
    match enc.encode_rows(&subset, &rows[..2], 3) {
        Err(EncoderError::DimensionMismatch {
            what,
            expected,
            got,
        }) => {
            assert!(what.contains("identity rows"), "{what}");
            assert_eq!((expected, got), (rows.len(), 2));
        }
        other => panic!(
            "expected a DimensionMismatch, got {:?}",
            other.map(|v| v.len())
        ),
    }
    // An item the model never saw (row -1) gets the text part alone: the same vector as any
    // other row outside the table.
    let cold = enc.encode_rows(&subset[..384], &[-1], 1).unwrap();
    let far = enc.encode_rows(&subset[..384], &[i64::MAX], 1).unwrap();
    assert_eq!(cold, far);
    let text_alone = max_abs_diff(&cold, &got[..d]);
    if enc.has_identity() {
        assert!(
            text_alone > 10.0 * tol,
            "identity row {} adds nothing",
            rows[0]
        );
    } else {
        assert!(
            text_alone <= tol,
            "a text-only model ignores rows: {text_alone}"
        );
    }
}

fn histories() -> Vec<Vec<u64>> {
    let r = reference();
    r["item_ids"]
        .as_array()
        .unwrap()
        .iter()
        .zip(r["lengths"].as_array().unwrap())
        .map(|(ids, len)| {
            let len = len.as_u64().unwrap() as usize;
            ids.as_array().unwrap()[..len]
                .iter()
                .map(|x| x.as_u64().unwrap())
                .collect()
        })
        .collect()
}

#[test]
fn query_encoder_reproduces_reference_queries_and_rankings() {
    if !runtime_present("query_encoder_reproduces_reference_queries_and_rankings") {
        return;
    }
    let r = reference();
    let tol = r["tolerance_max_abs"].as_f64().unwrap() as f32;
    let (vectors, d) = item_vectors();
    let d = *d;
    let enc = QueryEncoder::open(&data("query_encoder.onnx")).unwrap();
    assert_eq!(enc.dim(), d);
    let hists = histories();
    let rows: Vec<Vec<f32>> = hists
        .iter()
        .map(|h| {
            h.iter()
                .flat_map(|&id| vectors[(id as usize - 1) * d..id as usize * d].to_vec())
                .collect()
        })
        .collect();
    let refs: Vec<&[f32]> = rows.iter().map(Vec::as_slice).collect();
    let queries = enc.encode(&refs).unwrap();
    for (i, expected) in r["query"].as_array().unwrap().iter().enumerate() {
        let diff = max_abs_diff(&queries[i * d..(i + 1) * d], &floats(expected));
        assert!(
            diff <= tol,
            "user {i} (history length {}): max abs diff {diff}",
            hists[i].len()
        );
    }
    // Through an index with the item ids 1..=12101: gathering the history from the store gives
    // the same query, and exact search at 64 and 1024 dims gives the reference top-10.
    let dir = tempfile::tempdir().unwrap();
    let ids: Vec<u64> = (1..=12101).collect();
    IndexBuilder::new()
        .build(
            &MatrixSource::new(vectors.clone(), d).unwrap(),
            Some(&ids),
            dir.path(),
            &NoProgress,
        )
        .unwrap();
    let index = Index::open(dir.path()).unwrap();
    for (i, h) in hists.iter().enumerate() {
        let q = enc.encode_ids(&index, h).unwrap();
        assert!(max_abs_diff(&q, &queries[i * d..(i + 1) * d]) <= 1e-5);
        for width in ["64", "1024"] {
            let want: Vec<u64> = r["top10_item_ids_by_width"][width][i]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap())
                .collect();
            let got: Vec<u64> = index
                .exact_search(&q, 10, width.parse().unwrap(), &Filter::NONE)
                .unwrap()
                .iter()
                .map(|h| h.id)
                .collect();
            assert_eq!(got, want, "user {i}, width {width}");
        }
    }
    // All users in one inference (histories of different lengths, padded) give the same.
    let hist_refs: Vec<&[u64]> = hists.iter().map(Vec::as_slice).collect();
    let batch = enc.encode_ids_batch(&index, &hist_refs).unwrap();
    assert!(max_abs_diff(&batch, &queries) <= 1e-5);
    // A recommendation is the search of that query with the history excluded.
    let params = SearchParams::default();
    for (i, h) in hists.iter().enumerate() {
        let q = &queries[i * d..(i + 1) * d];
        let recommended = enc.recommend(&index, h, 20, &params, false).unwrap();
        assert!(
            recommended.iter().all(|hit| !h.contains(&hit.id)),
            "user {i}"
        );
        let searched = index
            .search_filtered(q, 20, &params, &Filter::deny(h))
            .unwrap();
        let ids = |hits: &[mrl_index::Hit]| hits.iter().map(|x| x.id).collect::<Vec<_>>();
        assert_eq!(ids(&recommended), ids(&searched), "user {i}");
        let kept = enc.recommend(&index, h, 20, &params, true).unwrap();
        let unfiltered = index
            .search_filtered(q, 20, &params, &Filter::NONE)
            .unwrap();
        assert_eq!(ids(&kept), ids(&unfiltered), "user {i}");
    }
    assert!(matches!(
        enc.recommend(&index, &[1, 999_999], 5, &params, false),
        Err(EncoderError::UnknownItem { id: 999_999 })
    ));
    assert!(matches!(
        enc.recommend(&index, &[1, 2], 0, &params, false),
        Err(EncoderError::Search(mrl_index::SearchError::ZeroK))
    ));
}

#[test]
fn encoders_are_shared_between_threads() {
    if !runtime_present("encoders_are_shared_between_threads") {
        return;
    }
    let (vectors, d) = item_vectors();
    let d = *d;
    let enc = Arc::new(QueryEncoder::open(&data("query_encoder.onnx")).unwrap());
    let hist: Vec<f32> = vectors[..5 * d].to_vec();
    let expected = enc.encode(&[&hist]).unwrap();
    let hist = Arc::new(hist);
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let (enc, hist) = (enc.clone(), hist.clone());
            std::thread::spawn(move || {
                (0..5)
                    .map(|_| enc.encode(&[&hist]).unwrap())
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for h in handles {
        for q in h.join().unwrap() {
            assert_eq!(q, expected);
        }
    }
}

#[test]
fn wrong_models_and_bad_inputs_are_errors() {
    if !runtime_present("wrong_models_and_bad_inputs_are_errors") {
        return;
    }
    assert!(matches!(
        ItemEncoder::open(&data("query_encoder.onnx")),
        Err(EncoderError::WrongModel { .. })
    ));
    assert!(matches!(
        QueryEncoder::open(&data("item_encoder.onnx")),
        Err(EncoderError::WrongModel { .. })
    ));
    let err = QueryEncoder::open(&data("missing.onnx")).err().unwrap();
    assert!(
        matches!(err, EncoderError::ModelLoad { .. }) && err.to_string().contains("missing.onnx")
    );
    let enc = QueryEncoder::open(&data("query_encoder.onnx")).unwrap();
    // One runtime per process: naming the loaded library again is fine, another is refused.
    let loaded = mrl_index::encoder::loaded_runtime().unwrap();
    mrl_index::encoder::use_runtime(&loaded).unwrap();
    let other = Path::new("/nonexistent/libonnxruntime.so");
    let err = mrl_index::encoder::use_runtime(other).unwrap_err();
    assert!(
        matches!(err, EncoderError::RuntimeConflict { .. })
            && err.to_string().contains("already loaded"),
        "{err}"
    );
    assert!(matches!(
        enc.encode(&[&[]]),
        Err(EncoderError::EmptyHistory)
    ));
    assert!(matches!(
        enc.encode(&[&[0.0; 100]]),
        Err(EncoderError::DimensionMismatch { .. })
    ));
}

#[test]
fn missing_runtime_is_a_clear_error_not_a_panic() {
    let out = Command::new(env!("CARGO_BIN_EXE_mrl-index"))
        .env("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so")
        .args(["embed-items", "--encoder"])
        .arg(data("item_encoder.onnx"))
        .arg("--features")
        .arg(data("item_features.npy"))
        .args(["--out", "/nonexistent/out.npy"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("ONNX Runtime library not found") && stderr.contains("ORT_DYLIB_PATH"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"));
}

#[test]
fn embed_items_takes_identity_rows_or_cold_items_from_the_command_line() {
    if !runtime_present("embed_items_takes_identity_rows_or_cold_items_from_the_command_line") {
        return;
    }
    let (rows, subset) = fixture_rows_and_features();
    let dim = subset.len() / rows.len();
    let rows_u64: Vec<u64> = rows.iter().map(|&r| r as u64).collect();
    let dir = tempfile::tempdir().unwrap();
    let feats = dir.path().join("features.npy");
    mrl_index::ingest::write_npy_f32(&feats, &subset, rows.len(), dim).unwrap();
    let rows_file = dir.path().join("rows.npy");
    mrl_index::ingest::write_npy_u64(&rows_file, &rows_u64).unwrap();
    let short_rows = dir.path().join("short.npy");
    mrl_index::ingest::write_npy_u64(&short_rows, &rows_u64[..2]).unwrap();
    let embed = |extra: &[&std::ffi::OsStr], out: &Path| {
        Command::new(env!("CARGO_BIN_EXE_mrl-index"))
            .args(["embed-items", "--encoder"])
            .arg(data("item_encoder.onnx"))
            .arg("--features")
            .arg(&feats)
            .arg("--out")
            .arg(out)
            .args(extra)
            .output()
            .unwrap()
    };
    // --rows: the subset's own identity rows give the catalogue's vectors.
    let with_rows = dir.path().join("with_rows.npy");
    let out = embed(&["--rows".as_ref(), rows_file.as_os_str()], &with_rows);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = read_matrix_f32(&with_rows).unwrap();
    assert_reference_vectors(got.as_slice(), got.dim(), &rows);
    // --cold: the title part alone, the same as the library's row -1.
    let cold = dir.path().join("cold.npy");
    let out = embed(&["--cold".as_ref()], &cold);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let enc = ItemEncoder::open(&data("item_encoder.onnx")).unwrap();
    let expect = enc.encode_rows(&subset, &[-1; 4], 4).unwrap();
    assert_eq!(
        read_matrix_f32(&cold).unwrap().as_slice(),
        expect.as_slice()
    );
    // A rows file of the wrong length is a clear error that writes nothing.
    let bad = dir.path().join("bad.npy");
    let out = embed(&["--rows".as_ref(), short_rows.as_os_str()], &bad);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("short.npy") && !stderr.contains("panicked"),
        "{stderr}"
    );
    assert!(!bad.exists());
    // --rows and --cold together are refused by the argument parser.
    let out = embed(
        &["--cold".as_ref(), "--rows".as_ref(), rows_file.as_os_str()],
        &bad,
    );
    assert_eq!(out.status.code(), Some(2));
}
