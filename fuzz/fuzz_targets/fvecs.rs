//! The `.fvecs` vector reader: per-row dimension fields and lengths; then every row read.
#![no_main]
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let path = common::write_input("input.fvecs", data);
    read_all(&path);
});

/// Opens the file as vectors and reads every row, then loads it whole.
pub fn read_all(path: &std::path::Path) {
    if let Ok(source) = mrl_index::ingest::open_vectors(path) {
        let mut row = vec![0f32; source.dim()];
        for r in 0..source.len() {
            let _ = source.read_row(r, &mut row);
        }
        let _ = source.read_row(source.len(), &mut row);
    }
    let _ = mrl_index::ingest::read_matrix_f32(path);
}
