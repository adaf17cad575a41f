//! The `.npy` vector reader: header, dtype, shape, data length; then every row read.
#![no_main]
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let path = common::write_input("input.npy", data);
    common::read_vectors(&path);
});
