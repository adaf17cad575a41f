//! The graph container: parsed alone and verified, then as the graph of the golden index, opened, searched and verified.
#![no_main]
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    alone(data);
    common::with_replaced("graph-", data);
});

fn alone(data: &[u8]) {
    use mrl_index::bytes::Bytes;
    use mrl_index::graph::search::{search_graph, GraphScratch, MatrixScorer};
    let Ok(graph) = mrl_index::graph::CoarseGraph::from_bytes(Bytes::copy_from(data), "graph")
    else {
        return;
    };
    let _ = graph.verify();
    // A small scorer: the graph's rows are scored on a matrix of its own size, capped so that
    // a huge node count costs nothing here (the graph's own structure was checked at parse).
    let n = graph.len();
    if n > 1 << 16 {
        return;
    }
    let dim = 4;
    let rows = common::queries(dim, n, data);
    let q = common::queries(dim, 1, &[1]);
    let scorer = MatrixScorer::new(&rows, dim, &q);
    let mut out = Vec::new();
    for scratch in [GraphScratch::default(), GraphScratch::with_epoch_rows(0)] {
        let mut scratch = scratch;
        search_graph(&graph, &scorer, 10, &mut scratch, |r| r % 2 == 0, &mut out);
        assert!(out.iter().all(|c| (c.row as usize) < n));
    }
}
