//! The plan string parser (`64:200,256:50,1024:k`, `L64:…`) and the default-plan text an
//! index carries, each then checked against the golden index's layout and searched with.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mrl_index::default_plan::DefaultPlan;
use mrl_index::{Index, SearchParams, SearchPlan};
use std::sync::OnceLock;

#[path = "common.rs"]
mod common;

fn index() -> &'static Index {
    static INDEX: OnceLock<Index> = OnceLock::new();
    INDEX.get_or_init(|| Index::open(common::golden_copy()).expect("the golden index opens"))
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let index = index();
    let q = common::queries(index.dim(), 1, data);
    if let Ok(plan) = text.parse::<SearchPlan>() {
        let _ = plan.to_string();
        let _ = plan.check_against_layout(index.layout());
        let params = SearchParams::with_plan(plan);
        let _ = index.search(&q, 10, &params);
        let _ = index.effective_plan(&params);
    }
    if let Ok(d) = DefaultPlan::parse(text) {
        let _ = d.to_text();
        if d.check_against_layout(index.layout()).is_ok() {
            let _ = index.search(&q, 10, &SearchParams::with_plan(d.plan.clone()));
        }
    }
});
