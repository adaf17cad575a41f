//! Deny- and allow-lists: results respect them, and k results come back whenever k items
//! are eligible — with the coarse stage in the native prefix and in the learned code.

mod common;

use mrl_index::build::SpaceChoice;
use mrl_index::{Filter, IndexBuilder, SearchParams, SearchPlan};
use std::collections::HashSet;

/// Both coarse spaces of a 128-d set: a builder, and the plan prefix of its coarse stage.
fn spaces() -> [(&'static str, IndexBuilder, &'static str); 2] {
    [
        (
            "native",
            IndexBuilder::new().threads(1).space(SpaceChoice::Native),
            "64",
        ),
        (
            "learned",
            IndexBuilder::new()
                .threads(1)
                .space(SpaceChoice::Learned)
                .code_dim(64),
            "L64",
        ),
    ]
}

fn params(coarse: &str, keep: usize) -> SearchParams {
    let plan: SearchPlan = format!("{coarse}:{keep},128:k").parse().unwrap();
    SearchParams {
        plan: Some(plan),
        ef: Some(keep),
        width: None,
    }
}

#[test]
fn deny_list_removing_most_top_candidates_still_returns_k() {
    for (space, builder, coarse) in spaces() {
        let b = common::build(4000, 10, 128, 5, builder);
        let params = params(coarse, 400);
        let mut overlap = 0;
        for q in b.queries.chunks_exact(128) {
            // Deny the exact top 500: more than the coarse stage keeps.
            let top: Vec<u64> = b
                .index
                .exact_search(q, 500, 128, &Filter::NONE)
                .unwrap()
                .iter()
                .map(|h| h.id)
                .collect();
            let hits = b
                .index
                .search_filtered(q, 10, &params, &Filter::deny(&top))
                .unwrap();
            assert_eq!(hits.len(), 10, "{space}: k results must come back");
            let denied: HashSet<u64> = top.iter().copied().collect();
            assert!(
                hits.iter().all(|h| !denied.contains(&h.id)),
                "{space}: a denied id was returned"
            );
            let exact = b
                .index
                .exact_search(q, 10, 128, &Filter::deny(&top))
                .unwrap();
            overlap += hits
                .iter()
                .filter(|h| exact.iter().any(|e| e.id == h.id))
                .count();
        }
        let recall = overlap as f64 / 100.0;
        println!("{space}: recall@10 against exact filtered search: {recall}");
        assert!(
            recall >= 0.8,
            "{space}: filtered recall@10 too low: {recall}"
        );
    }
}

#[test]
fn deny_all_but_k_returns_exactly_those() {
    for (space, builder, _) in spaces() {
        let b = common::build(2000, 3, 128, 6, builder);
        let keep: Vec<u64> = (0..2000u64).filter(|i| i % 200 == 17).collect(); // 10 items
        let deny: Vec<u64> = (0..2000u64).filter(|i| !keep.contains(i)).collect();
        for q in b.queries.chunks_exact(128) {
            let hits = b
                .index
                .search_filtered(q, 10, &SearchParams::default(), &Filter::deny(&deny))
                .unwrap();
            let mut ids: Vec<u64> = hits.iter().map(|h| h.id).collect();
            ids.sort_unstable();
            assert_eq!(ids, keep, "{space}");
        }
    }
}

#[test]
fn allow_lists_small_and_large() {
    for (space, builder, coarse) in spaces() {
        let b = common::build(3000, 5, 128, 8, builder);
        let small: Vec<u64> = (0..3000u64).step_by(97).collect(); // 31 items: scanned exactly
        let large: Vec<u64> = (0..3000u64).filter(|i| i % 3 != 0).collect(); // graph with filter
        let params = params(coarse, 200);
        for q in b.queries.chunks_exact(128) {
            for allow in [&small, &large] {
                let hits = b
                    .index
                    .search_filtered(q, 10, &params, &Filter::allow(allow))
                    .unwrap();
                assert_eq!(hits.len(), 10, "{space}");
                let allowed: HashSet<u64> = allow.iter().copied().collect();
                assert!(hits.iter().all(|h| allowed.contains(&h.id)), "{space}");
                let exact = b
                    .index
                    .exact_search(q, 10, 128, &Filter::allow(allow))
                    .unwrap();
                let overlap = hits
                    .iter()
                    .filter(|h| exact.iter().any(|e| e.id == h.id))
                    .count();
                assert!(overlap >= 9, "{space}: allow-list recall {overlap}/10");
            }
            // Allow and deny together; unknown ids ignored.
            let allow: Vec<u64> = vec![1, 2, 3, 4, 5, 99_999];
            let f = mrl_index::Filter {
                allow: Some(&allow),
                deny: &[2, 4],
            };
            let mut ids: Vec<u64> = b
                .index
                .search_filtered(q, 10, &SearchParams::default(), &f)
                .unwrap()
                .iter()
                .map(|h| h.id)
                .collect();
            ids.sort_unstable();
            assert_eq!(
                ids,
                vec![1, 3, 5],
                "{space}: fewer eligible than k: all eligible come back"
            );
        }
    }
}
