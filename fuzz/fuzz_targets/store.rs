//! The store container: parsed alone (every accessor), then as the store of the golden index, opened, searched and verified.
#![no_main]
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    alone(data);
    common::with_replaced("store-", data);
});

fn alone(data: &[u8]) {
    use mrl_index::bytes::Bytes;
    let Ok(store) = mrl_index::store::Store::from_bytes(Bytes::copy_from(data), "store") else {
        return;
    };
    let n = store.len();
    // A store of no items may claim any dimension; the harness's own buffers stay small.
    if store.dim() > 1 << 16 {
        return;
    }
    let mut v = vec![0f32; store.dim()];
    let q = common::queries(store.dim(), 1, data);
    for row in [0, n / 2, n.saturating_sub(1)] {
        if row < n {
            store.read_vector(row, &mut v);
            let _ = store.prefix_dot(&q, row, store.bands().len());
            let _ = store.id(row);
        }
    }
    for id in [0, 1, 5, u64::MAX] {
        if let Some(row) = store.row_of(id) {
            assert!((row as usize) < n, "row_of returned row {row} of {n}");
        }
    }
    let _ = mrl_index::exact::top_k(&store, &q, 3, store.bands().len(), &mrl_index::Filter::NONE);
    let _ = store.verify();
}
