//! The live index: add, delete, replace and compact without a rebuild. Answers equal a fresh
//! build's over the same live items, deleted ids never come back, one writer at a time,
//! readers are never blocked and never see a mix of generations.

mod common;

use mrl_index::build::SpaceChoice;
use mrl_index::ingest::MatrixSource;
use mrl_index::progress::NoProgress;
use mrl_index::synth::MatryoshkaLike;
use mrl_index::writer::{CompactOptions, IndexWriter, WriteError};
use mrl_index::{Filter, Index, IndexBuilder, SearchParams, SearchPlan};
use std::collections::{HashMap, HashSet};
use std::path::Path;

const DIM: usize = 128;
const K: usize = 10;

fn builder(space: &str) -> IndexBuilder {
    let b = IndexBuilder::new()
        .threads(1)
        .widths(vec![32, 64, 128])
        .coarse_dim(32)
        .target_recall(None);
    match space {
        "native" => b.space(SpaceChoice::Native),
        _ => b.space(SpaceChoice::Learned).code_dim(64),
    }
}

/// Items by id, in a map the test keeps in step with the index.
struct Catalogue {
    vectors: HashMap<u64, Vec<f32>>,
}

impl Catalogue {
    fn rows(&self) -> (Vec<f32>, Vec<u64>) {
        let mut ids: Vec<u64> = self.vectors.keys().copied().collect();
        ids.sort_unstable();
        let rows = ids.iter().flat_map(|id| self.vectors[id].clone()).collect();
        (rows, ids)
    }
}

fn build(dir: &Path, rows: &[f32], ids: &[u64], b: IndexBuilder) -> Index {
    let src = MatrixSource::new(rows.to_vec(), DIM).unwrap();
    b.build(&src, Some(ids), dir, &NoProgress).unwrap();
    Index::open(dir).unwrap()
}

fn add(dir: &Path, rows: &[f32], ids: Option<&[u64]>, replace: bool) -> Result<usize, WriteError> {
    let src = MatrixSource::new(rows.to_vec(), DIM).unwrap();
    let mut w = IndexWriter::open(dir)?;
    Ok(w.add(&src, ids, replace)?.added)
}

fn recall(index: &Index, truth: &Index, queries: &[f32], params: &SearchParams) -> f64 {
    let mut hit = 0;
    for q in queries.chunks_exact(DIM) {
        let t: HashSet<u64> = truth
            .exact_search(q, K, DIM, &Filter::NONE)
            .unwrap()
            .iter()
            .map(|h| h.id)
            .collect();
        let found = index.search(q, K, params).unwrap();
        assert_eq!(found.len(), K);
        hit += found.iter().filter(|h| t.contains(&h.id)).count();
    }
    hit as f64 / (K * queries.len() / DIM) as f64
}

/// A base, two adds (one scanned exactly, one with its own graph) and deletions answer as a
/// fresh build over the same live items: exact search identically, the cascade within 0.01
/// recall, at the default plan and a tight one.
#[test]
fn after_adds_and_deletes_answers_equal_a_fresh_build() {
    for space in ["native", "learned"] {
        let gen = MatryoshkaLike::with_dim(DIM, 11);
        let all = gen.items(12_000);
        let queries = gen.queries(200);
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("live");
        let mut cat = Catalogue {
            vectors: HashMap::new(),
        };
        let row = |i: usize| all[i * DIM..(i + 1) * DIM].to_vec();
        for i in 0..6000 {
            cat.vectors.insert(i as u64 * 3, row(i));
        }
        let (rows, ids) = cat.rows();
        build(&dir, &rows, &ids, builder(space));
        // 1,000 items: below the graph threshold, scanned exactly.
        let small: Vec<u64> = (6000..7000).map(|i| i as u64 * 3).collect();
        let small_rows: Vec<f32> = (6000..7000).flat_map(row).collect();
        add(&dir, &small_rows, Some(&small), false).unwrap();
        // 5,000 items: their own graph.
        let large: Vec<u64> = (7000..12_000).map(|i| i as u64 * 3).collect();
        let large_rows: Vec<f32> = (7000..12_000).flat_map(row).collect();
        add(&dir, &large_rows, Some(&large), false).unwrap();
        for (i, id) in small.iter().chain(&large).enumerate() {
            cat.vectors.insert(*id, row(6000 + i));
        }
        // Delete a tenth, from every segment.
        let doomed: Vec<u64> = (0..12_000).step_by(10).map(|i| i as u64 * 3).collect();
        let mut w = IndexWriter::open(&dir).unwrap();
        assert_eq!(w.delete(&doomed, false).unwrap().deleted, doomed.len());
        drop(w);
        for id in &doomed {
            cat.vectors.remove(id);
        }

        let live = Index::open(&dir).unwrap();
        live.verify().unwrap();
        assert_eq!(live.len(), cat.vectors.len());
        assert_eq!(live.deltas().len(), 2);
        assert!(live.deltas()[0].graph().is_none() && live.deltas()[1].graph().is_some());
        // Codes in the base's space, with the base's maps: the query code is reused.
        assert!(live
            .deltas()
            .iter()
            .all(|d| d.shares_query_map() == (space == "learned")));
        assert_eq!(live.deleted_count(), doomed.len());

        let (rows, ids) = cat.rows();
        let fresh = build(&tmp.path().join("fresh"), &rows, &ids, builder(space));
        for q in queries.chunks_exact(DIM).take(50) {
            for width in [32, 64, 128] {
                let a = live.exact_search(q, K, width, &Filter::NONE).unwrap();
                let b = fresh.exact_search(q, K, width, &Filter::NONE).unwrap();
                assert_eq!(a, b, "{space}: exact search at width {width}");
            }
        }
        let coarse = if space == "native" { "32" } else { "L32" };
        let tight: SearchPlan = format!("{coarse}:60,64:25,128:k").parse().unwrap();
        for params in [SearchParams::default(), SearchParams::with_plan(tight)] {
            let r_live = recall(&live, &fresh, &queries, &params);
            let r_fresh = recall(&fresh, &fresh, &queries, &params);
            eprintln!(
                "{space} {:?}: live {r_live:.4}, fresh {r_fresh:.4}",
                params.plan
            );
            assert!(
                r_live >= r_fresh - 0.01,
                "{space}: recall {r_live} after add/delete, {r_fresh} for a fresh build"
            );
        }

        // Compaction: one base again, the same answers.
        let mut w = IndexWriter::open(&dir).unwrap();
        let report = w.compact(&CompactOptions::default(), &NoProgress).unwrap();
        assert_eq!((report.items, report.merged_deltas), (cat.vectors.len(), 2));
        assert_eq!(report.dropped, doomed.len());
        drop(w);
        let compacted = Index::open(&dir).unwrap();
        compacted.verify().unwrap();
        assert!(compacted.is_compacted());
        assert_eq!(compacted.len(), cat.vectors.len());
        assert_eq!(
            compacted.layout().coarse_space,
            live.layout().coarse_space,
            "{space}: compaction keeps the coarse space"
        );
        for q in queries.chunks_exact(DIM).take(20) {
            assert_eq!(
                compacted.exact_search(q, K, DIM, &Filter::NONE).unwrap(),
                fresh.exact_search(q, K, DIM, &Filter::NONE).unwrap()
            );
        }
        let r = recall(&compacted, &fresh, &queries, &SearchParams::default());
        let r_fresh = recall(&fresh, &fresh, &queries, &SearchParams::default());
        assert!(
            r >= r_fresh - 0.01,
            "{space}: compacted {r}, fresh {r_fresh}"
        );
        // Only the new base's files are left.
        let names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".mrl"))
            .collect();
        let expected = if space == "native" { 2 } else { 3 };
        assert_eq!(names.len(), expected, "{names:?}");
    }
}

/// Deleted ids never come back: at every width, under deny and allow lists (an allow-list
/// naming deleted ids included), and k results still come back while k live items exist.
#[test]
fn deleted_ids_are_never_returned() {
    for space in ["native", "learned"] {
        let b = common::build(3000, 30, DIM, 3, builder(space));
        let dir = b.dir.path().join("idx");
        let extra = b.gen.items(5000)[3000 * DIM..].to_vec();
        add(&dir, &extra[..500 * DIM], None, false).unwrap();
        add(&dir, &extra[500 * DIM..], None, false).unwrap();
        let index = Index::open(&dir).unwrap();
        assert_eq!(index.len(), 5000);
        // Delete the exact top 50 of every query at full width: the items any search would
        // most like to return.
        let mut doomed = HashSet::new();
        for q in b.queries.chunks_exact(DIM) {
            for h in index.exact_search(q, 50, DIM, &Filter::NONE).unwrap() {
                doomed.insert(h.id);
            }
        }
        let doomed_list: Vec<u64> = doomed.iter().copied().collect();
        IndexWriter::open(&dir)
            .unwrap()
            .delete(&doomed_list, false)
            .unwrap();
        let index = Index::open(&dir).unwrap();
        assert_eq!(index.len(), 5000 - doomed.len());
        let allow: Vec<u64> = doomed_list
            .iter()
            .copied()
            .chain((0..5000u64).step_by(7))
            .collect();
        let live_allowed = (0..5000u64)
            .step_by(7)
            .filter(|id| !doomed.contains(id))
            .count();
        let deny: Vec<u64> = (0..5000u64).step_by(3).collect();
        for q in b.queries.chunks_exact(DIM) {
            for width in [32, 64, 96, 128] {
                for filter in [Filter::NONE, Filter::deny(&deny), Filter::allow(&allow)] {
                    let params = SearchParams::at_width(width);
                    let hits = index.search_filtered(q, K, &params, &filter).unwrap();
                    assert_eq!(hits.len(), K.min(live_allowed));
                    for h in &hits {
                        assert!(
                            !doomed.contains(&h.id),
                            "{space}: deleted {} returned",
                            h.id
                        );
                        assert!(filter.allow.is_none_or(|a| a.contains(&h.id)));
                        assert!(!filter.deny.contains(&h.id));
                    }
                    let exact = index.exact_search(q, K, width, &filter).unwrap();
                    assert!(exact.iter().all(|h| !doomed.contains(&h.id)));
                }
            }
        }
        // Delete all but five live items: exactly those five come back.
        let keep: Vec<u64> = (0..5000u64)
            .filter(|id| !doomed.contains(id))
            .take(5)
            .collect();
        let rest: Vec<u64> = (0..5000u64)
            .filter(|id| !doomed.contains(id) && !keep.contains(id))
            .collect();
        IndexWriter::open(&dir)
            .unwrap()
            .delete(&rest, false)
            .unwrap();
        let index = Index::open(&dir).unwrap();
        assert_eq!(index.len(), 5);
        let q = &b.queries[..DIM];
        let mut got: Vec<u64> = index
            .search(q, K, &SearchParams::default())
            .unwrap()
            .iter()
            .map(|h| h.id)
            .collect();
        got.sort_unstable();
        assert_eq!(got, keep, "{space}");
        // Deleting ids that are not live is an error that deletes nothing, unless asked.
        let mut w = IndexWriter::open(&dir).unwrap();
        let err = w.delete(&[keep[0], rest[0]], false).unwrap_err();
        assert!(
            matches!(err, WriteError::UnknownId { id, count: 1 } if id == rest[0]),
            "{err}"
        );
        assert_eq!(Index::open(&dir).unwrap().len(), 5);
        let r = w.delete(&[keep[0], rest[0]], true).unwrap();
        assert_eq!((r.deleted, r.missing), (1, 1));
    }
}

/// Re-adding an id replaces its vector atomically: without `replace` it is an error that
/// changes nothing; with it, the old row is deleted and the new one answers.
#[test]
fn replace_swaps_an_items_vector() {
    let b = common::build(2000, 5, DIM, 9, builder("learned"));
    let dir = b.dir.path().join("idx");
    let target = 77u64;
    // The new vector for item 77: a query direction, so that 77 must top that query.
    let q = b.queries[..DIM].to_vec();
    let new_vec: Vec<f32> = q.iter().map(|x| x * 50.0).collect();
    let err = add(&dir, &new_vec, Some(&[target]), false).unwrap_err();
    assert!(
        matches!(err, WriteError::IdExists { id: 77, count: 1 }),
        "{err}"
    );
    assert!(Index::open(&dir).unwrap().is_compacted());
    add(&dir, &new_vec, Some(&[target]), true).unwrap();
    let index = Index::open(&dir).unwrap();
    assert_eq!(index.len(), 2000);
    assert_eq!(index.deleted_count(), 1);
    let mut v = vec![0f32; DIM];
    assert!(index.read_item(target, &mut v));
    assert_eq!(v, new_vec);
    let hits = index.search(&q, K, &SearchParams::default()).unwrap();
    assert_eq!(hits[0].id, target);
    assert_eq!(hits.iter().filter(|h| h.id == target).count(), 1);
    let expected: f32 = q.iter().zip(&new_vec).map(|(a, b)| a * b).sum();
    assert!((hits[0].score - expected).abs() <= 1e-3 * expected.abs());
    // Replaced again, then deleted: gone.
    add(&dir, &b.items[..DIM], Some(&[target]), true).unwrap();
    IndexWriter::open(&dir)
        .unwrap()
        .delete(&[target], false)
        .unwrap();
    let index = Index::open(&dir).unwrap();
    assert!(!index.read_item(target, &mut v));
    assert_eq!(index.len(), 1999);
    let hits = index.search(&q, 50, &SearchParams::default()).unwrap();
    assert!(hits.iter().all(|h| h.id != target));
}

/// One writer at a time: a second writer, a build and a retune are refused at once while
/// an `IndexWriter` is open; ids without `--ids` continue after the largest ever held.
#[test]
fn one_writer_at_a_time_and_fresh_ids() {
    let b = common::build(1000, 5, DIM, 4, builder("native"));
    let dir = b.dir.path().join("idx");
    let w = IndexWriter::open(&dir).unwrap();
    let err = IndexWriter::open(&dir).unwrap_err();
    assert!(matches!(err, WriteError::Lock(_)), "{err}");
    assert!(err.to_string().contains("LOCK"), "{err}");
    let src = MatrixSource::new(b.items.clone(), DIM).unwrap();
    let build_err = builder("native")
        .overwrite(true)
        .build(&src, None, &dir, &NoProgress)
        .unwrap_err();
    assert!(build_err.to_string().contains("LOCK"), "{build_err}");
    drop(w);
    // Ids continue after 999, and after deleted ones too.
    IndexWriter::open(&dir)
        .unwrap()
        .delete(&[999], false)
        .unwrap();
    add(&dir, &b.items[..2 * DIM], None, false).unwrap();
    let index = Index::open(&dir).unwrap();
    let mut v = vec![0f32; DIM];
    assert!(index.read_item(1000, &mut v) && index.read_item(1001, &mut v));
    assert!(!index.read_item(999, &mut v));
    // Bad input: another width, nothing to add, duplicate ids.
    let mut w = IndexWriter::open(&dir).unwrap();
    let narrow = MatrixSource::new(vec![0.0; 64], 64).unwrap();
    let e = w.add(&narrow, None, false).unwrap_err();
    assert!(e.to_string().contains("64 dims"), "{e}");
    let empty = MatrixSource::new(vec![], DIM).unwrap();
    assert!(matches!(
        w.add(&empty, None, false),
        Err(WriteError::Empty { .. })
    ));
    let two = MatrixSource::new(b.items[..2 * DIM].to_vec(), DIM).unwrap();
    let e = w.add(&two, Some(&[5000, 5000]), false).unwrap_err();
    assert!(matches!(e, WriteError::DuplicateId { id: 5000, .. }), "{e}");
    let nan = MatrixSource::new(vec![f32::NAN; DIM], DIM).unwrap();
    assert!(w.add(&nan, None, false).is_err());
    drop(w);
    assert_eq!(Index::open(&dir).unwrap().len(), 1001);
}

/// Readers are never blocked and never see a mix: while a writer adds, deletes and
/// compacts, reader threads open the index and search; every answer is the exact answer of
/// one published generation. An index opened before keeps its generation until `refresh`.
#[test]
fn readers_see_one_generation_while_a_writer_works() {
    let b = common::build(4000, 8, DIM, 21, builder("learned"));
    let dir = b.dir.path().join("idx");
    let extra = b.gen.items(4500)[4000 * DIM..].to_vec();
    let q = b.queries[..DIM].to_vec();
    let mut before = Index::open(&dir).unwrap();
    let answer = |i: &Index| -> Vec<u64> {
        i.exact_search(&q, K, DIM, &Filter::NONE)
            .unwrap()
            .iter()
            .map(|h| h.id)
            .collect()
    };
    let first = answer(&before);
    // Every generation this test publishes, by live count (each step changes it).
    let stop = std::sync::atomic::AtomicBool::new(false);
    let seen = std::sync::Mutex::new(HashMap::<usize, Vec<u64>>::new());
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let index = Index::open(&dir).expect("a reader always opens");
                    let got = answer(&index);
                    let hits = index.search(&q, K, &SearchParams::default()).unwrap();
                    assert_eq!(hits.len(), K);
                    let mut seen = seen.lock().unwrap();
                    let prev = seen.entry(index.len()).or_insert_with(|| got.clone());
                    assert_eq!(*prev, got, "one live count, one answer");
                }
            });
        }
        add(&dir, &extra, None, false).unwrap();
        IndexWriter::open(&dir)
            .unwrap()
            .delete(&first[..3], false)
            .unwrap();
        let mut w = IndexWriter::open(&dir).unwrap();
        w.compact(&CompactOptions::default(), &NoProgress).unwrap();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    // The index opened first still answers from its own (now unlinked) files.
    assert_eq!(answer(&before), first);
    assert_eq!(before.len(), 4000);
    assert!(before.refresh().unwrap());
    assert_eq!(before.len(), 4500 - 3);
    assert!(!before.refresh().unwrap());
    let now = answer(&before);
    assert!(now.iter().all(|id| !first[..3].contains(id)));
    before.verify().unwrap();
}

/// Compaction with sample queries refits the learned space and retunes the default plan on
/// them, as a fresh build does; without, the base's plan is kept.
#[test]
fn compaction_with_sample_queries_refits_and_retunes() {
    let b = common::build(3000, 300, DIM, 8, builder("learned"));
    let dir = b.dir.path().join("idx");
    let plan_before = Index::open(&dir).unwrap().default_plan().to_string();
    IndexWriter::open(&dir)
        .unwrap()
        .delete(&[1, 2, 3], false)
        .unwrap();
    let mut w = IndexWriter::open(&dir).unwrap().threads(1);
    let r = w.compact(&CompactOptions::default(), &NoProgress).unwrap();
    assert_eq!((r.items, r.dropped), (2997, 3));
    assert_eq!(
        Index::open(&dir).unwrap().default_plan().to_string(),
        plan_before
    );
    // Nothing left to merge: a no-op unless forced or given sample queries.
    let r = w.compact(&CompactOptions::default(), &NoProgress).unwrap();
    assert!(r.build.is_none());
    let options = CompactOptions {
        sample_queries: Some(mrl_index::build::SampleQueries::new(
            b.queries.clone(),
            DIM,
            "test queries",
        )),
        target_recall: Some(0.9),
        force: false,
    };
    let r = w.compact(&options, &NoProgress).unwrap();
    let report = r.build.expect("rebuilt");
    assert!(report.tuned.is_some(), "retuned on the sample queries");
    drop(w);
    let index = Index::open(&dir).unwrap();
    index.verify().unwrap();
    assert_eq!(index.len(), 2997);
    let space = index.space().expect("still a learned space");
    assert!(
        space.meta().n_fit_queries > 0,
        "refitted on the sample queries"
    );
    let tuned = index.tuned().expect("a tuned plan");
    assert!(
        tuned
            .info("source")
            .is_some_and(|s| s.contains("sample queries"))
            || tuned.info("recall").is_some()
    );
}
