//! The MANIFEST: its decoding, then the index it names (in the v2 and the v3 golden sets)
//! opened, searched and verified.
#![no_main]
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    alone(data);
    common::with_replaced("MANIFEST", data);
    // Segments sections name the v3 set's delta and deletion files: open those too.
    common::with_replaced_in(common::golden_v3_copy(), "MANIFEST", data);
});

fn alone(data: &[u8]) {
    if let Ok(m) = mrl_index::manifest::decode(data, "MANIFEST") {
        let _ = mrl_index::manifest::encode(&m);
        let _ = (
            m.meta.store_file(),
            m.meta.graph_file(),
            m.meta.space_file(),
        );
    }
}
