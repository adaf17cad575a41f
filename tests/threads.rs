//! One `Index` searched from many threads at once gives exactly the single-threaded results.

mod common;

use mrl_index::{Filter, IndexBuilder, SearchParams};
use std::sync::Arc;

#[test]
fn concurrent_searches_match_single_threaded() {
    let b = common::build(5000, 64, 256, 99, IndexBuilder::new().threads(1));
    let index = Arc::new(b.index);
    let queries = Arc::new(b.queries);
    let params = SearchParams::default();
    let expected: Vec<_> = queries
        .chunks_exact(256)
        .map(|q| index.search(q, 10, &params).unwrap())
        .collect();
    let expected = Arc::new(expected);
    let handles: Vec<_> = (0..8)
        .map(|t| {
            let (index, queries, expected) = (index.clone(), queries.clone(), expected.clone());
            std::thread::spawn(move || {
                let params = SearchParams::default();
                for round in 0..3 {
                    // Each thread walks the queries in a different order.
                    for i in 0..64 {
                        let qi = (i * 7 + t * 13 + round) % 64;
                        let q = &queries[qi * 256..(qi + 1) * 256];
                        let hits = index.search(q, 10, &params).unwrap();
                        assert_eq!(hits, expected[qi], "thread {t}, query {qi}");
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("search thread panicked");
    }
    let batch = index
        .search_batch(&queries, 10, &params, &Filter::NONE)
        .unwrap();
    assert_eq!(&batch, expected.as_ref());
}
