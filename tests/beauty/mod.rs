//! What the encoder, streaming and service tests share: finding ONNX Runtime, the committed
//! Beauty model files and fixtures, and the item vectors the item encoder makes from them.
// Each test binary uses its own subset of these.
#![allow(dead_code)]

use mrl_index::encoder::ItemEncoder;
use mrl_index::ingest::{read_matrix_f32, VectorSource};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Whether ONNX Runtime can be loaded; if not, prints why `test` is skipped, or panics
/// where the environment requires the runtime (`MRL_REQUIRE_ONNX_RUNTIME=1`, CI).
pub fn runtime_present(test: &str) -> bool {
    match mrl_index::encoder::find_runtime() {
        Ok(_) => true,
        Err(e) if std::env::var_os("MRL_REQUIRE_ONNX_RUNTIME").is_some_and(|v| v == "1") => {
            panic!("{test}: MRL_REQUIRE_ONNX_RUNTIME=1 but {e}")
        }
        Err(e) => {
            eprintln!("skipping {test}: {e}");
            false
        }
    }
}

/// A file of `datasets/beauty`.
pub fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("datasets/beauty")
        .join(name)
}

/// A JSON file of `datasets/beauty`.
pub fn json(name: &str) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(data(name)).unwrap()).unwrap()
}

/// A JSON array of numbers as floats.
pub fn floats(v: &serde_json::Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

/// The largest absolute difference of two equally long vectors.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// All item vectors (row r is item r + 1), from the item encoder over the committed
/// features, and their dimension.
pub fn item_vectors() -> &'static (Vec<f32>, usize) {
    static V: OnceLock<(Vec<f32>, usize)> = OnceLock::new();
    V.get_or_init(|| {
        let enc = ItemEncoder::open(&data("item_encoder.onnx")).expect(
            "ONNX Runtime and the item encoder load (run `bash tools/install-runtime.sh` first)",
        );
        let features = read_matrix_f32(&data("item_features.npy")).unwrap();
        assert_eq!(features.dim(), enc.in_dim());
        (
            enc.encode(features.as_slice(), 2048).unwrap(),
            enc.out_dim(),
        )
    })
}
