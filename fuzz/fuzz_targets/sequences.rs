//! The user-sequences reader (`user item item ...` per line).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = mrl_index::ingest::parse_sequences(data, std::path::Path::new("sequences.txt"));
});
