//! The learned-space container: parsed alone and verified, then as the space of the golden index, opened, searched and verified.
#![no_main]
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    alone(data);
    common::with_replaced("space-", data);
});

fn alone(data: &[u8]) {
    use mrl_index::bytes::Bytes;
    let Ok(space) = mrl_index::space::LearnedSpace::from_bytes(Bytes::copy_from(data), "space")
    else {
        return;
    };
    let q = common::queries(space.dim(), 1, data);
    let mut code = vec![0f32; space.code_dim()];
    space.project_query(&q, space.dim(), &mut code);
    if !space.is_empty() {
        let _ = space.prefix_dot(&code, space.len() - 1, space.bands().len());
    }
    let _ = space.verify();
}
