//! Recall of the default plan and of the coarse graph search against exact search, and the
//! cascade's exactness properties.

mod common;

use mrl_index::build::SpaceChoice;
use mrl_index::candidate::Candidate;
use mrl_index::exact::{batch_top_k, mean_recall, recall_at, rows_top_k};
use mrl_index::graph::build::{
    build_graph, build_hnsw, export, write_graph, BuildInfo, GraphBuilder, GraphParams,
};
use mrl_index::graph::search::{search_graph, GraphScratch, MatrixScorer};
use mrl_index::graph::CoarseGraph;
use mrl_index::search::PrefixScorer;
use mrl_index::{Filter, Index, IndexBuilder, OpenOptions, SearchParams, SearchPlan};
use std::io::Cursor;

#[test]
fn default_plan_recall_at_10_is_at_least_0_95() {
    let seed = 20261122;
    let (n, nq, dim) = (20_000, 200, 512);
    println!("generated Matryoshka-like set: {n} items × {dim} dims, {nq} queries, seed {seed}");
    let b = common::build(n, nq, dim, seed, IndexBuilder::new().threads(1));
    let full = b.index.store().bands().len();
    let truth = batch_top_k(b.index.store(), &b.queries, 10, full);
    let found = b
        .index
        .search_batch(&b.queries, 10, &SearchParams::default(), &Filter::NONE)
        .unwrap();
    let recall = mean_recall(&found, &truth, 10);
    println!(
        "default plan {} recall@10 = {recall:.4}",
        b.index.default_plan()
    );
    assert!(
        recall >= 0.95,
        "recall@10 {recall} below 0.95 (seed {seed})"
    );
    // The data must not be trivial: the coarse prefix alone must miss part of the answer.
    let coarse = batch_top_k(b.index.store(), &b.queries, 10, 1);
    let coarse_recall = mean_recall(&coarse, &truth, 10);
    println!("exact 64-d top-10 recall against full width = {coarse_recall:.4}");
    assert!(
        coarse_recall < 0.9,
        "generated set too easy: 64-d alone gives {coarse_recall}"
    );
}

#[test]
fn final_scores_are_exact_full_width_inner_products() {
    let b = common::build(3000, 20, 256, 7, IndexBuilder::new().threads(1));
    let dim = 256;
    for q in b.queries.chunks_exact(dim) {
        let hits = b.index.search(q, 10, &SearchParams::default()).unwrap();
        assert_eq!(hits.len(), 10);
        for w in hits.windows(2) {
            assert!(w[0].score >= w[1].score, "hits must be best first");
        }
        for h in &hits {
            let row = &b.items[h.id as usize * dim..(h.id as usize + 1) * dim];
            let exact: f64 = row
                .iter()
                .zip(q)
                .map(|(a, b)| f64::from(*a) * f64::from(*b))
                .sum();
            let tol = 1e-4 * exact.abs().max(1.0);
            assert!(
                (f64::from(h.score) - exact).abs() <= tol,
                "score {} vs exact {exact} for id {}",
                h.score,
                h.id
            );
        }
    }
}

#[test]
fn plan_covering_everything_equals_exact_search() {
    // Keeping every item at the coarse stage makes the cascade exact.
    let b = common::build(
        1500,
        20,
        128,
        3,
        IndexBuilder::new().threads(1).space(SpaceChoice::Native),
    );
    let plan: SearchPlan = "64:1500,128:k".parse().unwrap();
    let params = SearchParams {
        plan: Some(plan),
        ef: Some(1500),
        width: None,
    };
    for q in b.queries.chunks_exact(128) {
        let hits = b.index.search(q, 10, &params).unwrap();
        let exact = b.index.exact_search(q, 10, 128, &Filter::NONE).unwrap();
        assert_eq!(hits, exact, "bitwise equal scores and ids");
    }
}

#[test]
fn graph_walk_then_full_width_rescoring_is_exact_on_the_walked_pool() {
    // Through the graph path (ef × 16 < n, checked): a plan that rescores its whole coarse
    // pool at full width returns exactly the best of that pool by exact inner product, and
    // the pool holds most of the true top-10.
    let n = 4000;
    let b = common::build(
        n,
        20,
        128,
        8,
        IndexBuilder::new().threads(1).space(SpaceChoice::Native),
    );
    let ef = 200;
    assert!(ef * mrl_index::search::EXACT_COARSE_FRACTION < n);
    let params = |plan: &str| SearchParams {
        plan: Some(plan.parse().unwrap()),
        ef: Some(ef),
        width: None,
    };
    let mut scratch = mrl_index::Scratch::new();
    let (mut pool, mut hits) = (Vec::new(), Vec::new());
    let mut found = 0;
    for q in b.queries.chunks_exact(128) {
        b.index
            .search_with(
                &mut scratch,
                q,
                ef,
                &params("64:k"),
                &Filter::NONE,
                &mut pool,
            )
            .unwrap();
        assert!(
            !scratch.stats.exact_coarse,
            "the coarse stage walked the graph"
        );
        b.index
            .search_with(
                &mut scratch,
                q,
                10,
                &params("64:200,128:k"),
                &Filter::NONE,
                &mut hits,
            )
            .unwrap();
        assert!(!scratch.stats.exact_coarse);
        // The exact best 10 of the walked pool, from the exact scores of all items.
        let all = b.index.exact_search(q, n, 128, &Filter::NONE).unwrap();
        let in_pool: std::collections::HashSet<u64> = pool.iter().map(|h| h.id).collect();
        let want: Vec<_> = all
            .iter()
            .filter(|h| in_pool.contains(&h.id))
            .take(10)
            .collect();
        assert_eq!(hits.len(), 10);
        for (h, w) in hits.iter().zip(&want) {
            assert_eq!(h.id, w.id);
            assert!((h.score - w.score).abs() <= 1e-5 * w.score.abs().max(1.0));
        }
        found += all[..10]
            .iter()
            .filter(|t| hits.iter().any(|h| h.id == t.id))
            .count();
    }
    let recall = found as f64 / (10.0 * 20.0);
    assert!(recall >= 0.9, "recall@10 through the graph {recall}");
}

#[test]
fn epoch_marks_and_the_row_set_walk_the_graph_alike() {
    // Graphs of up to EPOCH_ROWS rows mark visits with epochs, larger ones with a RowSet;
    // forced onto the RowSet, a walk of the same graph must return the same pool.
    let b = common::build(
        3000,
        20,
        128,
        9,
        IndexBuilder::new().threads(1).space(SpaceChoice::Native),
    );
    let index = &b.index;
    let mut epochs = GraphScratch::default();
    let mut set = GraphScratch::with_epoch_rows(0);
    let (mut a, mut c) = (Vec::new(), Vec::new());
    for q in b.queries.chunks_exact(128) {
        let scorer = PrefixScorer::new(index.store(), q, 1);
        for ef in [10, 50, 150] {
            search_graph(index.graph(), &scorer, ef, &mut epochs, |_| true, &mut a);
            search_graph(index.graph(), &scorer, ef, &mut set, |r| r % 3 != 0, &mut c);
            let mut c_all = Vec::new();
            let mut set2 = GraphScratch::with_epoch_rows(0);
            search_graph(index.graph(), &scorer, ef, &mut set2, |_| true, &mut c_all);
            a.sort_by(|x, y| y.cmp(x));
            c_all.sort_by(|x, y| y.cmp(x));
            assert_eq!(a, c_all, "ef {ef}");
            assert!(c.iter().all(|x| x.row % 3 != 0));
        }
    }
    assert!(set.visited_bytes() > 0 && epochs.visited_bytes() >= 3000 * 4);
}

#[test]
fn resident_coarse_copy_gives_identical_results() {
    // Two-band coarse prefix (coarse_dim 128) so that more than one band is copied.
    let b = common::build(
        4000,
        30,
        256,
        11,
        IndexBuilder::new()
            .threads(1)
            .coarse_dim(128)
            .space(SpaceChoice::Native),
    );
    let resident = Index::open_with(
        b.dir.path().join("idx"),
        OpenOptions {
            resident_coarse: true,
        },
    )
    .unwrap();
    resident.verify().unwrap();
    let plans = [None, Some("128:200,256:k".parse::<SearchPlan>().unwrap())];
    for plan in plans {
        let params = SearchParams {
            plan,
            ef: Some(200),
            width: None,
        };
        for q in b.queries.chunks_exact(256) {
            let a = b.index.search(q, 10, &params).unwrap();
            let r = resident.search(q, 10, &params).unwrap();
            assert_eq!(a.len(), 10);
            assert_eq!(a, r, "bitwise equal ids and scores");
        }
    }
    for q in b.queries.chunks_exact(256).take(5) {
        assert_eq!(
            b.index.exact_search(q, 10, 128, &Filter::NONE).unwrap(),
            resident.exact_search(q, 10, 128, &Filter::NONE).unwrap()
        );
    }
}

#[test]
fn own_graph_search_recall_at_least_hnsw_rs_search_on_same_graph() {
    let (n, nq, dim, c) = (10_000usize, 200usize, 128usize, 64usize);
    let b = common::build(n, nq, dim, 11, IndexBuilder::new().threads(1));
    let store = b.index.store();
    // Rebuild the same graph here to keep hnsw_rs's own object for its search.
    let mut coarse = Vec::with_capacity(n * c);
    for r in 0..n {
        coarse.extend_from_slice(store.row(0, r));
    }
    let params = GraphParams {
        m: 16,
        ef_construction: 100,
        seed: 5,
        metric: Default::default(),
        builder: GraphBuilder::HnswRs,
    };
    let pool = mrl_index::threads::pool(1).unwrap();
    let reference = pool.install(|| build_hnsw(&coarse, c, &params, &|_| {}));
    let exported = export(&reference, params.m);
    let info = BuildInfo {
        crate_version: "test".into(),
        builder: "hnsw_rs".into(),
        m: 16,
        ef_construction: 100,
        max_layer: 16,
        seed: 5,
        threads: 1,
        build_seconds: 0.0,
    };
    let bytes = write_graph(Cursor::new(Vec::new()), &exported, &info)
        .unwrap()
        .into_inner();
    let graph =
        CoarseGraph::from_bytes(mrl_index::bytes::Bytes::copy_from(&bytes), "test graph").unwrap();
    graph.verify().unwrap();
    let truth = batch_top_k(store, &b.queries, 10, 1);
    for ef in [10usize, 32, 64] {
        let mut ours = 0.0;
        let mut theirs = 0.0;
        let mut scratch = GraphScratch::default();
        let mut out: Vec<Candidate> = Vec::new();
        for (qi, q) in b.queries.chunks_exact(dim).enumerate() {
            let scorer = PrefixScorer::new(store, q, 1);
            search_graph(&graph, &scorer, ef, &mut scratch, |_| true, &mut out);
            out.sort_unstable_by(|a, b| b.cmp(a));
            let hits: Vec<mrl_index::Hit> = out
                .iter()
                .take(10)
                .map(|c| mrl_index::Hit {
                    id: c.row as u64,
                    score: c.score,
                })
                .collect();
            ours += recall_at(&hits, &truth[qi], 10);
            let rows = reference.search(&q[..c], 10, ef);
            let hits: Vec<mrl_index::Hit> = rows
                .iter()
                .map(|&r| mrl_index::Hit {
                    id: r as u64,
                    score: 0.0,
                })
                .collect();
            theirs += recall_at(&hits, &truth[qi], 10);
        }
        ours /= nq as f64;
        theirs /= nq as f64;
        println!("ef {ef}: own search recall@10 {ours:.4}, hnsw_rs search {theirs:.4}");
        assert!(
            ours >= theirs - 0.005,
            "ef {ef}: own {ours} < hnsw_rs {theirs}"
        );
    }
}

/// Coarse recall@10 of `graph` searched by the index's own beam search at `ef`, against the
/// exact top-10 on the same rows.
fn graph_recall(
    graph: &CoarseGraph,
    rows: &[f32],
    dim: usize,
    queries: &[f32],
    truth: &[Vec<Candidate>],
    ef: usize,
) -> f64 {
    let mut scratch = GraphScratch::default();
    let mut out: Vec<Candidate> = Vec::new();
    let mut found = 0;
    for (q, t) in queries.chunks_exact(dim).zip(truth) {
        let scorer = MatrixScorer::new(rows, dim, q);
        search_graph(graph, &scorer, ef, &mut scratch, |_| true, &mut out);
        out.sort_unstable_by(|a, b| b.cmp(a));
        found += out
            .iter()
            .take(10)
            .filter(|c| t.iter().any(|x| x.row == c.row))
            .count();
    }
    found as f64 / (10 * truth.len()) as f64
}

#[test]
fn native_graph_recall_at_least_hnsw_rs_graph() {
    // Both builders on the same rows with the same parameters, both graphs searched by
    // search_graph: the native graph must find the exact top-10 at least as often as the
    // hnsw_rs one, less a small tolerance for the randomness of two different builds.
    let (n, nq, dim, seed) = (10_000usize, 500usize, 64usize, 17u64);
    println!("generated Matryoshka-like set: {n} items × {dim} dims, {nq} queries, seed {seed}");
    let gen = mrl_index::synth::MatryoshkaLike::with_dim(dim, seed);
    let (rows, queries) = (gen.items(n), gen.queries(nq));
    let truth = rows_top_k(&rows, dim, &queries, 10);
    let info = |builder: GraphBuilder| BuildInfo {
        crate_version: "test".into(),
        builder: builder.label(),
        m: 16,
        ef_construction: 100,
        max_layer: 16,
        seed,
        threads: 0,
        build_seconds: 0.0,
    };
    let graphs: Vec<CoarseGraph> = [GraphBuilder::Native, GraphBuilder::HnswRs]
        .into_iter()
        .map(|builder| {
            let params = GraphParams {
                m: 16,
                ef_construction: 100,
                seed,
                builder,
                ..Default::default()
            };
            let graph = build_graph(&rows, dim, &params, &|_| {}).to_coarse_graph(&info(builder));
            graph.verify().unwrap();
            graph
        })
        .collect();
    for ef in [10usize, 32, 64] {
        let native = graph_recall(&graphs[0], &rows, dim, &queries, &truth, ef);
        let reference = graph_recall(&graphs[1], &rows, dim, &queries, &truth, ef);
        // Two independent builds differ by chance: allow three standard errors of the
        // difference of two recalls measured on 10 × nq trials (0.019 at recall 0.89), far
        // below what a broken builder loses (a graph without long links or with unpruned
        // neighbour lists loses tenths at ef 10).
        let p = (native + reference) / 2.0;
        let tolerance = 3.0 * (2.0 * p * (1.0 - p) / (10 * nq) as f64).sqrt();
        println!(
            "ef {ef}: coarse recall@10 native {native:.4}, hnsw_rs {reference:.4}, \
             tolerance {tolerance:.4}"
        );
        assert!(
            native >= reference - tolerance,
            "ef {ef}: native {native} < hnsw_rs {reference} - {tolerance} (seed {seed})"
        );
    }
}

#[test]
fn index_build_records_the_native_builder() {
    let b = common::build(2000, 5, 128, 3, IndexBuilder::new().threads(1));
    let info = b.index.graph().build_info().expect("build info decodes");
    assert!(
        info.builder.starts_with("mrl-index native"),
        "builder {:?}",
        info.builder
    );
}
