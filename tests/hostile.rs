//! Hostile input: files that pass `Index::open` (structure only) but hold corrupt data, and
//! arguments at the edges of their types. Nothing may panic: a search answers (possibly
//! fewer or different items), `verify` names the problem. Each test is a bug once reproduced
//! with the release binary, or a class the fuzzers (fuzz/) cover, fixed and kept here.
//!
//! The lean core alone: the indexes are copies of the committed golden index (format 2,
//! external ids, a learned space), patched section by section.

use mrl_index::exact;
use mrl_index::format::Container;
use mrl_index::graph::{self, CoarseGraph, GraphMeta};
use mrl_index::store::{self, IdEntry};
use mrl_index::{Filter, Index, SearchParams, SearchPlan};
use std::path::{Path, PathBuf};

/// A copy of tests/golden/v2 in a fresh temporary directory.
fn golden_copy() -> (tempfile::TempDir, PathBuf) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/v2");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("index");
    std::fs::create_dir(&dir).unwrap();
    for e in std::fs::read_dir(&src).unwrap().flatten() {
        if !e.file_name().to_string_lossy().ends_with(".json") {
            std::fs::copy(e.path(), dir.join(e.file_name())).unwrap();
        }
    }
    (tmp, dir)
}

/// The file of `dir` whose name starts with `prefix`.
fn file(dir: &Path, prefix: &str) -> PathBuf {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
        .unwrap()
}

/// Rewrites section (`kind`, `index`) of the container file at `path` in place with `f`
/// (the section table and header, so the checks of open, are untouched).
fn patch_section(path: &Path, magic: &[u8; 8], kind: u32, index: u32, f: impl FnOnce(&mut [u8])) {
    let mut bytes = std::fs::read(path).unwrap();
    let c = Container::parse(&bytes, magic, "patched").unwrap();
    let r = c.section(kind, index, "patched").unwrap();
    f(&mut bytes[r.offset..r.offset + r.len]);
    std::fs::write(path, bytes).unwrap();
}

fn u32s(bytes: &mut [u8]) -> &mut [u32] {
    bytemuck::cast_slice_mut(bytes)
}

fn query(dim: usize) -> Vec<f32> {
    (0..dim)
        .map(|i| ((i * 37 % 11) as f32 - 5.0) / 5.0)
        .collect()
}

/// The coarse stage's name in a plan string (`L8` on the golden index's learned space).
fn coarse(index: &Index) -> String {
    match index.graph().space() {
        mrl_index::plan::Space::Learned => format!("L{}", index.coarse_dim()),
        mrl_index::plan::Space::Native => index.coarse_dim().to_string(),
    }
}

/// Every kind of search a caller can run; none may panic. Returns the default search's hits.
fn search_everything(index: &Index) -> Vec<mrl_index::Hit> {
    let q = query(index.dim());
    let ids: Vec<u64> = index.store().ids().iter().take(20).copied().collect();
    let hits = index.search(&q, 10, &SearchParams::default()).unwrap();
    for w in index.widths() {
        index.search(&q, 5, &SearchParams::at_width(w)).unwrap();
    }
    index
        .search_filtered(&q, 10, &SearchParams::default(), &Filter::deny(&ids))
        .unwrap();
    index
        .search_filtered(&q, 5, &SearchParams::default(), &Filter::allow(&ids))
        .unwrap();
    // The graph walk, not the exact coarse scan: a beam below 1/16 of the 300 items.
    let plan: SearchPlan = format!("{}:10,{}:k", coarse(index), index.dim())
        .parse()
        .unwrap();
    let walk = SearchParams {
        ef: Some(10),
        ..SearchParams::with_plan(plan)
    };
    let mut scratch = mrl_index::Scratch::new();
    let mut out = Vec::new();
    index
        .search_with(&mut scratch, &q, 10, &walk, &Filter::NONE, &mut out)
        .unwrap();
    // On a corrupt graph the walk may come back short; the exact fallback still answers k.
    assert_eq!(out.len(), 10);
    index
        .exact_search(&q, 10, index.dim(), &Filter::deny(&ids))
        .unwrap();
    hits
}

#[test]
fn out_of_range_neighbour_ids_end_the_list_instead_of_panicking() {
    // Was: "index out of bounds: the len is 12101 but the index is 2147483632" at
    // src/graph/search.rs, exit 101, on a graph whose ids were overwritten.
    let (_tmp, dir) = golden_copy();
    let gpath = file(&dir, "graph-");
    let bytes = std::fs::read(&gpath).unwrap();
    let n_layers = CoarseGraph::from_bytes(mrl_index::bytes::Bytes::copy_from(&bytes), "g")
        .unwrap()
        .n_layers() as u32;
    patch_section(
        &gpath,
        &graph::GRAPH_MAGIC,
        graph::section::LAYER0_LINKS,
        0,
        |b| {
            for (i, x) in u32s(b).iter_mut().enumerate() {
                if i % 3 == 0 {
                    *x = 2_147_483_632;
                }
            }
        },
    );
    for l in 1..n_layers {
        patch_section(
            &gpath,
            &graph::GRAPH_MAGIC,
            graph::section::LAYER_LINKS,
            l,
            |b| {
                u32s(b).iter_mut().for_each(|x| *x = u32::MAX - 1);
            },
        );
    }
    let index = Index::open(&dir).expect("structure is intact: open succeeds");
    let hits = search_everything(&index);
    assert!(!hits.is_empty());
    let err = index.verify().unwrap_err().to_string();
    assert!(err.contains("graph-") && err.contains("checksum"), "{err}");
}

#[test]
fn id_table_rows_past_the_end_are_unknown_ids_not_a_panic() {
    // Was: a filtered search panicked at src/search.rs (`row_of` trusted unverified rows).
    let (_tmp, dir) = golden_copy();
    let spath = file(&dir, "store-");
    patch_section(
        &spath,
        &store::STORE_MAGIC,
        store::section::ID_INDEX,
        0,
        |b| {
            let entries: &mut [IdEntry] = bytemuck::cast_slice_mut(b);
            for e in entries.iter_mut().step_by(2) {
                e.row = u64::MAX - e.row;
            }
        },
    );
    let index = Index::open(&dir).unwrap();
    let n = index.len();
    for id in index.store().ids().iter().take(50) {
        if let Some(row) = index.store().row_of(*id) {
            assert!((row as usize) < n);
        }
    }
    search_everything(&index);
    assert!(index.verify().is_err());
}

#[test]
fn non_finite_stored_values_keep_results_ordered() {
    // A store whose vectors hold NaN and infinities (open does not read the data): results
    // still come back ordered by the IEEE total order, best first, and verify names the row.
    let (_tmp, dir) = golden_copy();
    let spath = file(&dir, "store-");
    for band in 0..4 {
        let bytes = std::fs::read(&spath).unwrap();
        let c = Container::parse(&bytes, &store::STORE_MAGIC, "s").unwrap();
        if c.section(store::section::BAND, band, "band").is_err() {
            break;
        }
        patch_section(
            &spath,
            &store::STORE_MAGIC,
            store::section::BAND,
            band,
            |b| {
                let v: &mut [f32] = bytemuck::cast_slice_mut(b);
                for (i, x) in v.iter_mut().enumerate() {
                    match i % 7 {
                        0 => *x = f32::NAN,
                        1 => *x = f32::INFINITY,
                        2 => *x = f32::NEG_INFINITY,
                        _ => {}
                    }
                }
            },
        );
    }
    let index = Index::open(&dir).unwrap();
    let hits = search_everything(&index);
    assert!(hits
        .windows(2)
        .all(|w| w[0].score.total_cmp(&w[1].score).is_ge()));
    let err = index.verify().unwrap_err().to_string();
    assert!(err.contains("store-"), "{err}");
}

#[test]
fn section_sizes_that_wrap_are_corrupt_not_accepted() {
    // Was: `n * m0 * 4` computed unchecked; 2^31 nodes × 2^31 slots × 4 wraps to 0 in a
    // release build, so an empty layer-0 section passed the size check.
    use mrl_index::format::ContainerWriter;
    use std::io::{Cursor, Write};
    let meta = GraphMeta {
        n_nodes: 1 << 31,
        coarse_dim: 8,
        m: 1,
        m0: 1 << 31,
        n_layers: 1,
        entry_point: 0,
        max_norm: 1.0,
        metric: 1,
        space: 0,
        reserved: [0; 6],
    };
    let mut w = ContainerWriter::new(Cursor::new(Vec::new()), graph::GRAPH_MAGIC, 2).unwrap();
    w.begin_section(graph::section::META, 0).unwrap();
    w.write_all(bytemuck::bytes_of(&meta)).unwrap();
    w.end_section().unwrap();
    w.begin_section(graph::section::LAYER0_LINKS, 0).unwrap();
    w.end_section().unwrap();
    let bytes = w.finish().unwrap().into_inner();
    let err = CoarseGraph::from_bytes(mrl_index::bytes::Bytes::copy_from(&bytes), "g.mrl")
        .unwrap_err()
        .to_string();
    assert!(err.contains("overflows"), "{err}");
}

#[test]
fn k_zero_and_huge_k_ef_keep_are_answered_without_panic_or_huge_allocation() {
    let (_tmp, dir) = golden_copy();
    let index = Index::open(&dir).unwrap();
    let q = query(index.dim());
    let n = index.len();
    // Was: exact::batch_top_k panicked on k = 0 (select_nth_unstable_by(k - 1)).
    let truth = exact::batch_top_k(index.store(), &q, 0, index.store().bands().len());
    assert_eq!(truth, vec![Vec::new()]);
    assert!(index.search(&q, 0, &SearchParams::default()).is_err());
    // k, beam and keeps of billions cost what the catalogue costs.
    let all = index
        .search(&q, usize::MAX, &SearchParams::default())
        .unwrap();
    assert_eq!(all.len(), n);
    let wide = SearchParams {
        ef: Some(usize::MAX),
        ..SearchParams::default()
    };
    assert_eq!(index.search(&q, 10, &wide).unwrap().len(), 10);
    let plan: SearchPlan = format!("{}:18446744073709551615,{}:k", coarse(&index), index.dim())
        .parse()
        .unwrap();
    let hits = index
        .search(&q, 1 << 40, &SearchParams::with_plan(plan))
        .unwrap();
    assert_eq!(hits.len(), n);
    let gemm_free = exact::top_k(index.store(), &q, usize::MAX, 1, &Filter::NONE);
    assert_eq!(gemm_free.len(), n);
}

#[test]
fn a_huge_manifest_is_refused_without_being_read_whole() {
    let (_tmp, dir) = golden_copy();
    let mpath = dir.join("MANIFEST");
    // A sparse file of 64 GiB: reading it whole would exhaust memory.
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&mpath)
        .unwrap();
    f.set_len(64 << 30).unwrap();
    drop(f);
    let err = Index::open(&dir).unwrap_err().to_string();
    assert!(
        err.contains("MANIFEST") && err.contains("longer than 16777216 bytes"),
        "{err}"
    );
}
