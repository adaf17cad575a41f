//! The ids reader: 1-d id files (with and without an expected count) and 2-d id matrices.
#![no_main]
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let path = common::write_input("ids.npy", data);
    let expected = data.first().map_or(0, |&b| usize::from(b));
    let _ = mrl_index::ingest::read_ids(&path, expected);
    if let Ok(ids) = mrl_index::ingest::read_ids(&path, usize::MAX) {
        let _ = ids.len();
    }
    let _ = mrl_index::ingest::read_id_matrix(&path);
});
