//! The deletion file of a live index: decoded alone for segments of several sizes, then as
//! the deletion file of the v3 golden index, opened, searched and verified.
#![no_main]
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    for lens in [&[300usize, 40, 12][..], &[0], &[1, 64, 65]] {
        if let Ok(bits) = mrl_index::deletes::decode(data, lens, "deleted") {
            let refs: Vec<_> = bits.iter().collect();
            let again = mrl_index::deletes::encode(&refs);
            let back = mrl_index::deletes::decode(&again, lens, "deleted").expect("round trip");
            assert_eq!(back, bits);
            for (b, &n) in bits.iter().zip(lens) {
                let _ = (0..n as u32 + 2).filter(|&r| b.contains(r)).count();
            }
        }
    }
    common::with_replaced_in(common::golden_v3_copy(), "deleted-", data);
});
