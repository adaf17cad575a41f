//! Golden files: small indexes checked in under `tests/golden/vN/` must keep opening,
//! verifying and answering exactly as when they were written, with the current code.
//! `v1` is a native index (format version 1); `v2` holds a learned coarse space (code
//! bands, a graph on the code, query and item maps) and a tuned default plan section.
//! A fresh build of the same data must produce a byte-identical store file (and, for v2,
//! the same maps and codes), so any change to the formats is deliberate (bump
//! `FORMAT_VERSION` and add a new golden set).
//!
//! The answers are checked twice per set: with a plan whose beam scans every item (exact,
//! `expected.json` in v1) and with beams narrow enough (`ef × 16 < n`) that the search walks
//! the golden graph (v1's `expected-graph.json`, v2's `expected.json`); the tests assert that
//! the walk happened (`SearchStats::exact_coarse` is false).
//!
//! The reading checks need only the core (`--no-default-features`); the fresh-build checks
//! need the `build` feature. Regenerate (only when the format version changes, into a new
//! folder): `cargo test --test golden -- --ignored regenerate_golden`

use mrl_index::search::Scratch;
use mrl_index::{Filter, Hit, Index, SearchParams};
use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

const N: usize = 300;
const DIM: usize = 32;
const NQ: usize = 8;
const K: usize = 5;

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/v1")
}

fn golden_v2_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/v2")
}

fn golden_v3_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/v3")
}

/// The v3 set's changes to the v2 base: a delta of 40 items with its own graph (ids
/// 5,000,000 + i), a delta of 12 scanned items of which 2 replace base items, and 5
/// deletions.
const V3_REPLACED: [u64; 2] = [1_000_000, 1_000_007];
const V3_DELETED: [u64; 5] = [1_000_014, 1_000_021, 5_000_000, 5_000_001, 1_000_700];

// expected*.json: {"plan": "...", "ef": N, "queries": [[f32; 32]; 8],
//                  "results": [[{"id": u64, "score": f32}; 5]; 8]}

/// Checks `dir/file` against the current code's answers to its queries (ids exactly; scores
/// to float rounding, since the dot-product kernel is chosen per CPU at run time and may sum
/// in another order than the one that wrote the file); returns each query with its hits.
/// Where the file's beam is narrow enough to walk the graph, checks that it did.
fn check_expected(index: &Index, dir: &Path, file: &str) -> Vec<(Vec<f32>, Vec<Hit>)> {
    let expected: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(dir.join(file)).unwrap()).unwrap();
    let plan = expected["plan"].as_str().unwrap().parse().unwrap();
    let ef = expected["ef"].as_u64().unwrap() as usize;
    let params = SearchParams {
        plan: Some(plan),
        ef: Some(ef),
        width: None,
    };
    let walks_graph = ef * mrl_index::search::EXACT_COARSE_FRACTION < index.len();
    let queries = expected["queries"].as_array().unwrap();
    let results = expected["results"].as_array().unwrap();
    assert_eq!(queries.len(), NQ);
    let mut scratch = Scratch::default();
    let mut answered = Vec::new();
    for (q, want) in queries.iter().zip(results) {
        let q: Vec<f32> = q
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        let mut hits = Vec::new();
        index
            .search_with(&mut scratch, &q, K, &params, &Filter::NONE, &mut hits)
            .unwrap();
        assert_eq!(
            !scratch.stats.exact_coarse,
            walks_graph,
            "{file}: ef {ef} on {} items must {} the graph",
            index.len(),
            if walks_graph { "walk" } else { "not walk" }
        );
        if walks_graph {
            assert!(scratch.stats.coarse_scored < index.len());
        }
        let want = want.as_array().unwrap();
        assert_eq!(hits.len(), want.len());
        for (h, w) in hits.iter().zip(want) {
            assert_eq!(h.id, w["id"].as_u64().unwrap(), "{file}");
            let want = w["score"].as_f64().unwrap();
            assert!(
                (f64::from(h.score) - want).abs() <= 1e-6 * want.abs().max(1.0),
                "{file}: score of id {}: {} vs {want}",
                h.id,
                h.score
            );
        }
        answered.push((q, hits));
    }
    answered
}

#[test]
fn golden_v1_index_reads_verifies_and_answers_as_written() {
    let dir = golden_dir();
    let index = Index::open(&dir).expect("golden index opens");
    index.verify().expect("golden index verifies");
    assert_eq!(index.len(), N);
    assert_eq!(index.widths(), vec![8, 16, 32]);
    assert_eq!(index.coarse_dim(), 8);
    assert_eq!(index.store().container().header().format_version, 1);
    for (q, hits) in check_expected(&index, &dir, "expected.json") {
        let exact = index.exact_search(&q, K, DIM, &Filter::NONE).unwrap();
        assert_eq!(hits, exact, "this plan covers all items, so it is exact");
    }
}

#[test]
fn golden_v1_graph_is_walked_and_answers_as_written() {
    let dir = golden_dir();
    let index = Index::open(&dir).unwrap();
    let answered = check_expected(&index, &dir, "expected-graph.json");
    // The walk finds most of the exact answers (a check that the graph is a usable one,
    // not only the same one).
    let (mut found, mut total) = (0, 0);
    for (q, hits) in &answered {
        let exact = index.exact_search(q, K, DIM, &Filter::NONE).unwrap();
        total += exact.len();
        found += hits
            .iter()
            .filter(|h| exact.iter().any(|e| e.id == h.id))
            .count();
    }
    assert!(found * 10 >= total * 8, "recall {found}/{total}");
}

#[test]
fn golden_v2_index_reads_verifies_and_answers_as_written() {
    let dir = golden_v2_dir();
    let index = Index::open(&dir).expect("golden v2 index opens");
    index.verify().expect("golden v2 index verifies");
    assert_eq!(index.len(), N);
    assert_eq!(index.widths(), vec![8, 16, 32]);
    let space = index
        .space()
        .expect("the v2 golden index holds a learned space");
    assert_eq!(space.widths(), &[8, 16]);
    assert_eq!(space.code_dim(), 16);
    assert_eq!(index.layout().coarse_space, mrl_index::plan::Space::Learned);
    assert_eq!(
        index.graph().meta().space,
        1,
        "the graph is built on the code"
    );
    // The tuned default plan section decodes and starts on the learned space.
    let tuned = index
        .tuned()
        .expect("the v2 golden index holds a tuned plan");
    assert_eq!(
        tuned.plan.stages()[0].space,
        mrl_index::plan::Space::Learned
    );
    assert!(tuned.info("recall").is_some());
    // The default search answers every query with scores that are exact full-width inner
    // products (every item's exact score, by id, from an exact search over all of them).
    for (q, _) in check_expected(&index, &dir, "expected.json") {
        let exact: HashMap<u64, f32> = index
            .exact_search(&q, N, DIM, &Filter::NONE)
            .unwrap()
            .into_iter()
            .map(|h| (h.id, h.score))
            .collect();
        let hits = index.search(&q, K, &SearchParams::default()).unwrap();
        assert_eq!(hits.len(), K);
        for h in &hits {
            let want = exact[&h.id];
            assert!(
                (h.score - want).abs() <= 1e-4 * want.abs().max(1.0),
                "id {}: score {} vs exact {want}",
                h.id,
                h.score
            );
        }
    }
}

/// The v3 golden index (a live index: the v2 base, two delta segments, a deletion file)
/// opens, verifies and answers as written; deleted and replaced rows never come back.
#[test]
fn golden_v3_live_index_reads_verifies_and_answers_as_written() {
    let dir = golden_v3_dir();
    let index = Index::open(&dir).expect("golden v3 index opens");
    index.verify().expect("golden v3 index verifies");
    let manifest = fs::read(dir.join("MANIFEST")).unwrap();
    assert_eq!(u32::from_le_bytes(manifest[8..12].try_into().unwrap()), 3);
    assert_eq!(index.deltas().len(), 2);
    assert_eq!(index.deltas()[0].store().len(), 40);
    assert!(index.deltas()[0].graph().is_some() && index.deltas()[1].graph().is_none());
    assert!(index.deltas().iter().all(|d| d.space().is_some()));
    assert_eq!(index.deleted_count(), V3_DELETED.len() + V3_REPLACED.len());
    assert_eq!(
        index.len(),
        N + 40 + 12 - V3_DELETED.len() - V3_REPLACED.len()
    );
    let expected: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let params = SearchParams {
        plan: Some(expected["plan"].as_str().unwrap().parse().unwrap()),
        ef: Some(expected["ef"].as_u64().unwrap() as usize),
        width: None,
    };
    let queries = expected["queries"].as_array().unwrap();
    let results = expected["results"].as_array().unwrap();
    assert_eq!(queries.len(), NQ);
    for (q, want) in queries.iter().zip(results) {
        let q: Vec<f32> = q
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        let hits = index.search(&q, K, &params).unwrap();
        let want = want.as_array().unwrap();
        assert_eq!(hits.len(), want.len());
        for (h, w) in hits.iter().zip(want) {
            assert_eq!(h.id, w["id"].as_u64().unwrap());
            let ws = w["score"].as_f64().unwrap() as f32;
            assert!((h.score - ws).abs() <= 1e-4 * ws.abs().max(1.0));
        }
        let all = index
            .exact_search(&q, index.len(), DIM, &Filter::NONE)
            .unwrap();
        assert_eq!(all.len(), index.len());
        assert!(all.iter().all(|h| !V3_DELETED.contains(&h.id)));
        // A replaced id comes back once, with its new vector's score.
        for id in V3_REPLACED {
            assert_eq!(all.iter().filter(|h| h.id == id).count(), 1);
        }
    }
}

/// Fresh builds of the golden data (the `build` feature).
#[cfg(feature = "build")]
mod fresh {
    use super::*;
    use mrl_index::build::{SampleQueries, SpaceChoice};
    use mrl_index::format::{Container, SectionEntry};
    use mrl_index::graph::{section, GRAPH_MAGIC};
    use mrl_index::ingest::MatrixSource;
    use mrl_index::progress::NoProgress;
    use mrl_index::synth::MatryoshkaLike;
    use mrl_index::IndexBuilder;

    /// The v1 graph check's plan: a beam of 10 over 300 items walks the graph.
    const V1_GRAPH_PLAN: &str = "8:10,16:10,32:k";
    const V1_GRAPH_EF: usize = 10;

    /// The v2 query plan: a small beam on the learned graph (so the golden graph is
    /// traversed), then the code and the native width.
    const V2_PLAN: &str = "L8:10,L16:10,32:k";
    const V2_EF: usize = 10;

    /// Sample queries for the v2 set: the generator's queries with their energy moved to the
    /// last dims and a common offset (out of the items' distribution, as real user vectors).
    fn sample_queries(n: usize) -> Vec<f32> {
        let gen = MatryoshkaLike::with_dim(DIM, 2025);
        let offset = MatryoshkaLike::with_dim(DIM, 99).queries(1);
        let mut q = gen.queries(n);
        for row in q.chunks_exact_mut(DIM) {
            for (d, v) in row.iter_mut().enumerate() {
                let t = d as f32 / DIM as f32;
                *v = *v * (0.3 + 1.7 * t * t) + 0.5 * offset[d];
            }
        }
        q
    }

    /// The v2 builder: the v1 settings, the learned space forced, a 16-d code (code widths
    /// 8 and 16) and 200 sample queries.
    fn builder_v2() -> IndexBuilder {
        builder()
            .space(SpaceChoice::Learned)
            .code_dim(16)
            .sample_queries(SampleQueries::new(
                sample_queries(200),
                DIM,
                "golden sample",
            ))
    }

    fn build_v2_into(dir: &Path) {
        let (items, _, ids) = data();
        let src = MatrixSource::new(items, DIM).unwrap();
        builder_v2()
            .overwrite(true)
            .build(&src, Some(&ids), dir, &NoProgress)
            .unwrap();
    }

    fn data() -> (Vec<f32>, Vec<f32>, Vec<u64>) {
        let gen = MatryoshkaLike {
            clusters: 8,
            ..MatryoshkaLike::with_dim(DIM, 2024)
        };
        let ids: Vec<u64> = (0..N as u64).map(|i| 1_000_000 + i * 7).collect();
        (gen.items(N), gen.queries(NQ), ids)
    }

    fn builder() -> IndexBuilder {
        IndexBuilder::new()
            .coarse_dim(8)
            .widths(vec![8, 16, 32])
            .m(8)
            .ef_construction(50)
            .seed(7)
            .threads(1)
    }

    fn build_into(dir: &Path) {
        let (items, _, ids) = data();
        let src = MatrixSource::new(items, DIM).unwrap();
        builder()
            .overwrite(true)
            .build(&src, Some(&ids), dir, &NoProgress)
            .unwrap();
    }

    fn file_with_prefix(dir: &Path, prefix: &str) -> Vec<u8> {
        let path = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix}* file in {}", dir.display()));
        fs::read(path).unwrap()
    }

    /// The graph file's section table without the build-info section (which records the build
    /// time): offsets, lengths and CRC-32s of the metadata and every neighbour list.
    fn graph_content(dir: &Path) -> Vec<SectionEntry> {
        let bytes = file_with_prefix(dir, "graph-");
        let c = Container::parse(&bytes, &GRAPH_MAGIC, "graph").unwrap();
        c.sections()
            .iter()
            .filter(|s| s.kind != section::BUILD_INFO)
            .copied()
            .collect()
    }

    #[test]
    fn fresh_build_writes_the_golden_store_byte_for_byte() {
        // Every section of a fresh store is byte-identical to the golden one, but the per-band
        // norms: the golden file's were summed by the dot-product kernel of the CPU that wrote
        // it, fresh ones are summed in f64 and rounded once (independent of the CPU), so they
        // agree to float rounding.
        use mrl_index::store::{section as store_section, STORE_MAGIC};
        let tmp = tempfile::tempdir().unwrap();
        build_into(tmp.path());
        let fresh = file_with_prefix(tmp.path(), "store-");
        let golden = file_with_prefix(&golden_dir(), "store-");
        assert_eq!(fresh.len(), golden.len(), "the store layout changed");
        let fc = Container::parse(&fresh, &STORE_MAGIC, "fresh").unwrap();
        let gc = Container::parse(&golden, &STORE_MAGIC, "golden").unwrap();
        assert_eq!(fc.header().format_version, gc.header().format_version);
        assert_eq!(fc.sections().len(), gc.sections().len());
        for (f, g) in fc.sections().iter().zip(gc.sections()) {
            assert_eq!(
                (f.kind, f.index, f.offset, f.len),
                (g.kind, g.index, g.offset, g.len)
            );
            let (fb, gb) = (
                &fresh[f.offset as usize..(f.offset + f.len) as usize],
                &golden[g.offset as usize..(g.offset + g.len) as usize],
            );
            if f.kind == store_section::BAND_NORMS {
                let fv: &[f32] = bytemuck::cast_slice(fb);
                let gv: &[f32] = bytemuck::cast_slice(gb);
                for (a, b) in fv.iter().zip(gv) {
                    assert!((a - b).abs() <= 1e-6 * b.abs().max(1.0), "norm {a} vs {b}");
                }
            } else {
                assert!(
                    fb == gb,
                    "the store format changed (section kind {} index {}): bump FORMAT_VERSION and add a new golden set",
                    f.kind,
                    f.index
                );
            }
        }
    }

    #[test]
    fn single_threaded_builds_are_reproducible() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        build_into(a.path());
        build_into(b.path());
        assert_eq!(graph_content(a.path()), graph_content(b.path()));
        // A different seed gives a different insertion order, hence a different graph.
        let c = tempfile::tempdir().unwrap();
        let (items, _, ids) = data();
        builder()
            .seed(8)
            .build(
                &MatrixSource::new(items, DIM).unwrap(),
                Some(&ids),
                c.path(),
                &NoProgress,
            )
            .unwrap();
        assert_ne!(graph_content(a.path()), graph_content(c.path()));
    }

    #[test]
    fn fresh_build_writes_the_golden_v2_space() {
        // The maps and codes come from a closed-form fit: a fresh build agrees with the golden
        // one to float rounding (the linear algebra may sum in another order on another CPU),
        // the widths and spectrum length exactly, and the store byte for byte but the norms.
        let tmp = tempfile::tempdir().unwrap();
        build_v2_into(tmp.path());
        let fresh = Index::open(tmp.path()).unwrap();
        let golden = Index::open(golden_v2_dir()).unwrap();
        let (f, g) = (fresh.space().unwrap(), golden.space().unwrap());
        assert_eq!(f.widths(), g.widths());
        assert_eq!(f.code_dim(), g.code_dim());
        assert_eq!(f.spectrum().len(), g.spectrum().len());
        let close = |what: &str, a: &[f32], b: &[f32]| {
            assert_eq!(a.len(), b.len(), "{what} length");
            let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-30);
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                assert!(
                    (x - y).abs() <= 1e-3 * scale,
                    "{what}[{i}]: fresh {x} vs golden {y} (scale {scale}): the learned space changed"
                );
            }
        };
        close("query map", f.query_map(), g.query_map());
        close("item map", f.item_map(), g.item_map());
        close("spectrum", f.spectrum(), g.spectrum());
        for b in 0..g.bands().len() {
            let decode = |s: &[u16]| -> Vec<f32> {
                s.iter()
                    .map(|&h| half::f16::from_bits(h).to_f32())
                    .collect()
            };
            close(
                &format!("code band {b}"),
                &decode(f.band_data(b)),
                &decode(g.band_data(b)),
            );
        }
        assert_eq!(
            fresh.store().container().sections().len(),
            golden.store().container().sections().len()
        );
    }

    /// Writes `dir/file`: the data's queries and the index's answers with `plan`, `ef`.
    fn write_expected(dir: &Path, file: &str, plan: &str, ef: usize) {
        let index = Index::open(dir).unwrap();
        let (_, queries, _) = data();
        let params = SearchParams {
            plan: Some(plan.parse().unwrap()),
            ef: Some(ef),
            width: None,
        };
        let mut qs = Vec::new();
        let mut rs = Vec::new();
        for q in queries.chunks_exact(DIM) {
            let hits = index.search(q, K, &params).unwrap();
            qs.push(serde_json::json!(q));
            rs.push(serde_json::json!(hits
                .iter()
                .map(|h| serde_json::json!({"id": h.id, "score": h.score}))
                .collect::<Vec<_>>()));
        }
        let v = serde_json::json!({"plan": plan, "ef": ef, "queries": qs, "results": rs});
        fs::write(dir.join(file), serde_json::to_string_pretty(&v).unwrap()).unwrap();
    }

    #[test]
    #[ignore = "writes tests/golden/v3; run only to create a new golden set"]
    fn regenerate_golden_v3() {
        use mrl_index::writer::IndexWriter;
        let dir = golden_v3_dir();
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.parent().unwrap()).unwrap();
        build_v2_into(&dir);
        let gen = MatryoshkaLike::with_dim(DIM, 2026);
        let extra = gen.items(52);
        let mut w = IndexWriter::open(&dir)
            .unwrap()
            .threads(1)
            .graph_threshold(32);
        let first = MatrixSource::new(extra[..40 * DIM].to_vec(), DIM).unwrap();
        let ids: Vec<u64> = (0..40).map(|i| 5_000_000 + i).collect();
        w.add(&first, Some(&ids), false).unwrap();
        let second = MatrixSource::new(extra[40 * DIM..].to_vec(), DIM).unwrap();
        let ids: Vec<u64> = V3_REPLACED
            .iter()
            .copied()
            .chain(6_000_000..6_000_010)
            .collect();
        w.add(&second, Some(&ids), true).unwrap();
        w.delete(&V3_DELETED, false).unwrap();
        drop(w);
        fs::remove_file(dir.join("LOCK")).unwrap();
        write_expected(&dir, "expected.json", V2_PLAN, V2_EF);
    }

    #[test]
    #[ignore = "writes tests/golden/v2; run only to create a new golden set"]
    fn regenerate_golden_v2() {
        let dir = golden_v2_dir();
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.parent().unwrap()).unwrap();
        build_v2_into(&dir);
        write_expected(&dir, "expected.json", V2_PLAN, V2_EF);
    }

    #[test]
    #[ignore = "writes tests/golden/v1; run only to create a new golden set"]
    fn regenerate_golden() {
        let dir = golden_dir();
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.parent().unwrap()).unwrap();
        build_into(&dir);
        write_expected(&dir, "expected.json", &format!("8:{N},16:50,32:k"), N);
        write_expected(&dir, "expected-graph.json", V1_GRAPH_PLAN, V1_GRAPH_EF);
    }

    #[test]
    #[ignore = "writes the graph-walking answers of the existing golden sets (no rebuild)"]
    fn regenerate_golden_graph_answers() {
        write_expected(
            &golden_dir(),
            "expected-graph.json",
            V1_GRAPH_PLAN,
            V1_GRAPH_EF,
        );
        write_expected(&golden_v2_dir(), "expected.json", V2_PLAN, V2_EF);
    }
}
