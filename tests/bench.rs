//! The benchmark harness: `mrl-index bench` end to end on a small index, ground-truth caching,
//! merging rows of several systems, the weakly Matryoshka generator, and bad input.

use mrl_index::bench::truth::{cache_path, load_or_compute, sidecar_path, write_ids_npy};
use mrl_index::bench::{
    self, BenchConfig, Row, SetKind, TruthSource, FAMILY_CASCADE, FAMILY_COARSE_GRAPH,
    FAMILY_EXACT_WIDTH,
};
use mrl_index::ingest::{read_matrix_f32, write_npy_f32, MatrixSource, VectorSource};
use mrl_index::progress::NoProgress;
use mrl_index::synth::MatryoshkaLike;
use mrl_index::{Index, IndexBuilder};
use std::path::{Path, PathBuf};
use std::process::Command;

const N: usize = 3000;
const NQ: usize = 40;
const DIM: usize = 256;

struct Fixture {
    dir: tempfile::TempDir,
    index_dir: PathBuf,
    queries_path: PathBuf,
    queries: Vec<f32>,
}

/// A 3,000 × 256 generated index (widths 64, 128, 256) and 40 queries in `queries.npy`.
fn fixture(seed: u64) -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let gen = MatryoshkaLike::with_dim(DIM, seed);
    let items = MatrixSource::new(gen.items(N), DIM).unwrap();
    let index_dir = dir.path().join("idx");
    IndexBuilder::new()
        .threads(2)
        .build(&items, None, &index_dir, &NoProgress)
        .expect("build");
    let queries = gen.queries(NQ);
    let queries_path = dir.path().join("queries.npy");
    write_npy_f32(&queries_path, &queries, NQ, DIM).unwrap();
    Fixture {
        dir,
        index_dir,
        queries_path,
        queries,
    }
}

fn mrl_index(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_mrl-index"))
        .args(args)
        .output()
        .expect("run mrl-index")
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn in_unit(v: Option<f64>, what: &str, r: &Row) -> f64 {
    let x = v.unwrap_or_else(|| panic!("{what} missing in {}", r.label));
    assert!((0.0..=1.0).contains(&x), "{what} = {x} in {}", r.label);
    x
}

#[test]
fn bench_command_writes_json_csv_svg_png_with_every_family() {
    let f = fixture(5);
    let out = f.dir.path().join("results.json");
    let csv = f.dir.path().join("results.csv");
    let plot = f.dir.path().join("results.svg");
    let o = mrl_index(&[
        "bench",
        "--index",
        s(&f.index_dir),
        "--queries",
        s(&f.queries_path),
        "-k",
        "10",
        "--threads",
        "2",
        "--quick",
        "--dataset",
        "synth-test",
        "--out",
        s(&out),
        "--csv",
        s(&csv),
        "--plot",
        s(&plot),
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "bench failed: {stderr}");
    assert!(
        stderr.contains("computed"),
        "first run computes the truth: {stderr}"
    );

    let rows: Vec<Row> = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    for family in [FAMILY_EXACT_WIDTH, FAMILY_COARSE_GRAPH, FAMILY_CASCADE] {
        assert!(
            rows.iter().any(|r| r.family == family),
            "family {family} missing"
        );
    }
    for r in &rows {
        assert_eq!(r.system, "mrl-index");
        assert_eq!(r.dataset, "synth-test");
        assert_eq!(
            (r.n_items, r.dim, r.n_queries, r.k),
            (Some(N as u64), Some(DIM as u64), Some(NQ as u64), Some(10))
        );
        in_unit(r.recall_at_1, "recall@1", r);
        in_unit(r.recall_at_10, "recall@10", r);
        in_unit(r.recall_at_100, "recall@100", r);
        assert!(r.qps_1_thread.unwrap() > 0.0 && r.qps_all_threads.unwrap() > 0.0);
        assert_eq!(r.threads_all, Some(2));
        let (p50, p95, p99) = (r.p50_us.unwrap(), r.p95_us.unwrap(), r.p99_us.unwrap());
        assert!(0.0 < p50 && p50 <= p95 && p95 <= p99, "{}", r.label);
        assert!(r.candidates_per_query.unwrap() > 0.0);
        assert!(r.mult_adds_per_query.unwrap() > 0.0);
        assert!(r.index_bytes.unwrap() > 0);
        assert!(!r.machine.is_empty() && r.timestamp.ends_with('Z'));
    }
    // The granularity curve: exact search at the full width is the truth itself.
    let full = rows
        .iter()
        .find(|r| r.family == FAMILY_EXACT_WIDTH && r.config["width"] == DIM)
        .expect("exact-width row at the full width");
    assert_eq!(full.recall_at_10, Some(1.0));
    assert_eq!(full.recall_at_100, Some(1.0));
    assert_eq!(full.mult_adds_per_query, Some((N * DIM) as f64));
    let narrow = rows
        .iter()
        .find(|r| r.family == FAMILY_EXACT_WIDTH && r.config["width"] == 64)
        .unwrap();
    assert!(
        narrow.recall_at_10.unwrap() < 1.0,
        "the 64-d prefix is not exact"
    );
    // Graph rows carry the graph's build time and both files' sizes.
    let cascade = rows.iter().find(|r| r.family == FAMILY_CASCADE).unwrap();
    assert!(cascade.build_seconds.unwrap() > 0.0);
    assert!(cascade.index_bytes.unwrap() > full.index_bytes.unwrap());
    assert!(rows
        .iter()
        .any(|r| r.family == FAMILY_CASCADE && r.config["default"] == true));

    let csv_text = std::fs::read_to_string(&csv).unwrap();
    let mut lines = csv_text.lines();
    let header = lines.next().unwrap();
    assert!(header.starts_with("system,family,label,dataset,n_items,dim,n_queries,k,recall_at_1"));
    assert!(header.contains("config.plan") && header.contains("config.width"));
    assert_eq!(lines.count(), rows.len());

    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(svg.contains("<svg") && svg.contains("</svg>"));
    for text in [
        "mrl-index / cascade",
        "mrl-index / coarse-graph",
        "mrl-index / exact-width",
        "Pareto front",
        "recall@10",
        "synth-test",
    ] {
        assert!(svg.contains(text), "plot lacks {text:?}");
    }
    let png_bytes = std::fs::read(plot.with_extension("png")).unwrap();
    let decoder = png::Decoder::new(png_bytes.as_slice());
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!((info.width, info.height), (1100, 700));
    let dark = buf[..info.buffer_size()]
        .chunks(3)
        .filter(|p| p.iter().all(|&c| c < 80))
        .count();
    assert!(
        dark > 2000,
        "the PNG must hold text and axes ({dark} dark pixels)"
    );

    // The second run reads the cached truth instead of computing it.
    let o = mrl_index(&[
        "bench",
        "--index",
        s(&f.index_dir),
        "--queries",
        s(&f.queries_path),
        "--quick",
        "--no-exact",
        "--threads",
        "1",
        "--out",
        s(&f.dir.path().join("again.jsonl")),
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(stderr.contains("(cached)"), "{stderr}");
    let again = bench::read_rows(&f.dir.path().join("again.jsonl")).unwrap();
    assert!(again.iter().all(|r| r.family != FAMILY_EXACT_WIDTH));
    assert_eq!(
        again[0].dataset, "idx",
        "dataset defaults to the index directory's name"
    );
}

#[test]
fn ground_truth_cache_is_reused_until_index_or_queries_change() {
    let f = fixture(6);
    let index = Index::open(&f.index_dir).unwrap();
    let (gt1, src1) = load_or_compute(&index, &f.queries, &f.queries_path, None, 10).unwrap();
    let cache = cache_path(&f.queries_path);
    assert_eq!(src1, TruthSource::Computed(Some(cache.clone())));
    assert!(cache.exists() && sidecar_path(&cache).exists());
    assert_eq!(cache.file_name().unwrap(), "queries.gt100.npy");
    assert_eq!((gt1.n_queries(), gt1.depth()), (NQ, 100));
    let (gt2, src2) = load_or_compute(&index, &f.queries, &f.queries_path, None, 10).unwrap();
    assert_eq!(src2, TruthSource::Cached(cache.clone()));
    assert!(!src2.computed());
    assert_eq!(gt2, gt1);

    // Other queries in the same file: recomputed.
    let other = MatryoshkaLike::with_dim(DIM, 99).queries(NQ);
    write_npy_f32(&f.queries_path, &other, NQ, DIM).unwrap();
    let (_, src3) = load_or_compute(&index, &other, &f.queries_path, None, 10).unwrap();
    assert!(src3.computed());

    // A rebuilt index (new generation): recomputed, then cached again.
    let gen = MatryoshkaLike::with_dim(DIM, 6);
    let items = MatrixSource::new(gen.items(N), DIM).unwrap();
    IndexBuilder::new()
        .threads(2)
        .overwrite(true)
        .build(&items, None, &f.index_dir, &NoProgress)
        .unwrap();
    let rebuilt = Index::open(&f.index_dir).unwrap();
    assert_ne!(rebuilt.manifest().generation, index.manifest().generation);
    let (_, src4) = load_or_compute(&rebuilt, &other, &f.queries_path, None, 10).unwrap();
    assert!(src4.computed());
    let (_, src5) = load_or_compute(&rebuilt, &other, &f.queries_path, None, 10).unwrap();
    assert_eq!(src5, TruthSource::Cached(cache));

    // A given ground truth is read as is.
    let given = f.dir.path().join("given.npy");
    let ids: Vec<u64> = (0..NQ as u64 * 10).collect();
    write_ids_npy(&given, &ids, NQ, 10).unwrap();
    let (gt, src) = load_or_compute(&rebuilt, &other, &f.queries_path, Some(&given), 10).unwrap();
    assert_eq!(src, TruthSource::Given(given));
    assert_eq!((gt.depth(), gt.row(1)[0]), (10, 10));
}

#[test]
fn compare_merges_systems_into_json_csv_table_and_plot() {
    let f = fixture(7);
    let index = Index::open(&f.index_dir).unwrap();
    let (truth, _) = load_or_compute(&index, &f.queries, &f.queries_path, None, 10).unwrap();
    let cfg = BenchConfig {
        exact_width: false,
        threads: 1,
        ..BenchConfig::quick(10, "synth-test")
    };
    let mut seen = 0;
    let ours = bench::run_bench(&index, &f.queries, &truth, &cfg, &mut |_| seen += 1).unwrap();
    assert_eq!(seen, ours.len());
    let a = f.dir.path().join("ours.json");
    bench::write_rows_json(&a, &ours).unwrap();

    // A peer's rows as JSON lines, with fields of its own and a float count.
    let b = f.dir.path().join("peer.jsonl");
    let mut peer = String::new();
    for (i, (recall, qps)) in [(0.85, 9000.0), (0.93, 5000.0), (0.991, 900.0)]
        .iter()
        .enumerate()
    {
        peer.push_str(&format!(
            "{{\"system\":\"faiss\",\"family\":\"hnsw-flat\",\"config\":{{\"efSearch\":{}}},\
             \"label\":\"efSearch={}\",\"dataset\":\"synth-test\",\"n_items\":3000.0,\"dim\":256,\
             \"n_queries\":40,\"k\":10,\"recall_at_1\":{recall},\"recall_at_10\":{recall},\
             \"recall_at_100\":null,\"qps_1_thread\":{qps},\"qps_all_threads\":null,\
             \"threads_all\":2,\"p50_us\":100,\"p95_us\":150,\"p99_us\":200,\
             \"candidates_per_query\":null,\"mult_adds_per_query\":null,\"build_seconds\":1.5,\
             \"index_bytes\":4000000,\"rss_bytes\":null,\"machine\":\"m\",\
             \"timestamp\":\"2026-01-01T00:00:00Z\",\"faiss_version\":\"1.8.0\"}}\n",
            16 << i,
            16 << i
        ));
    }
    std::fs::write(&b, peer).unwrap();

    let out = f.dir.path().join("cmp");
    let report = bench::compare(&[a.clone(), b.clone()], &out).unwrap();
    assert_eq!(report.rows, ours.len() + 3);
    assert!(report.series.contains(&"faiss / hnsw-flat".to_string()));
    assert!(report.series.contains(&"mrl-index / cascade".to_string()));
    for name in [
        "all.json",
        "all.csv",
        "table.md",
        "recall_qps.svg",
        "recall_qps.png",
    ] {
        assert!(out.join(name).exists(), "{name} missing");
    }
    let all = bench::read_rows(&out.join("all.json")).unwrap();
    assert_eq!(all.len(), report.rows);
    assert_eq!(all.last().unwrap().extra["faiss_version"], "1.8.0");
    let csv = std::fs::read_to_string(out.join("all.csv")).unwrap();
    assert_eq!(csv.lines().count(), report.rows + 1);
    assert!(csv.lines().next().unwrap().contains("faiss_version"));

    let table = std::fs::read_to_string(out.join("table.md")).unwrap();
    println!("{table}");
    // faiss reaches 0.90 at 5000 q/s and 0.99 at 900 q/s.
    assert!(
        table.contains("| synth-test | faiss | hnsw-flat | 0.90 | 5000 | 0.9300 |"),
        "{table}"
    );
    assert!(
        table.contains("| synth-test | faiss | hnsw-flat | 0.99 | 900 | 0.9910 |"),
        "{table}"
    );
    assert!(table.contains("| synth-test | mrl-index | cascade | 0.90 |"));
    assert!(table.contains("| synth-test | mrl-index | coarse-graph | 0.95 |"));
    let svg = std::fs::read_to_string(out.join("recall_qps.svg")).unwrap();
    assert!(svg.contains("faiss / hnsw-flat") && svg.contains("mrl-index / cascade"));

    // Rows of two data sets: series and table rows keep them apart, one plot each as well.
    let c = f.dir.path().join("peer-other.jsonl");
    let other = std::fs::read_to_string(&b)
        .unwrap()
        .replace("\"synth-test\"", "\"other set\"");
    std::fs::write(&c, other).unwrap();
    let out2 = f.dir.path().join("cmp2");
    bench::compare(&[a, c], &out2).unwrap();
    for name in ["recall_qps-other_set.png", "recall_qps-synth-test.svg"] {
        assert!(out2.join(name).exists(), "{name} missing");
    }
    let svg = std::fs::read_to_string(out2.join("recall_qps.svg")).unwrap();
    assert!(svg.contains("faiss / hnsw-flat (other set)"));
    let table = std::fs::read_to_string(out2.join("table.md")).unwrap();
    assert!(table.contains("| other set | faiss | hnsw-flat | 0.90 | 5000 |"));
}

#[test]
fn weak_set_prefix_holds_much_less_of_the_ranking_than_strong() {
    let dir = tempfile::tempdir().unwrap();
    let (n, nq, dim) = (4000, 60, 256);
    let strong =
        bench::write_set(SetKind::Strong, n, nq, 0, dim, 3, &dir.path().join("s")).unwrap();
    let weak = bench::write_set(SetKind::Weak, n, nq, 0, dim, 3, &dir.path().join("w")).unwrap();
    for r in [&strong, &weak] {
        let items = read_matrix_f32(&r.items_path).unwrap();
        let queries = read_matrix_f32(&r.queries_path).unwrap();
        assert_eq!((items.len(), items.dim()), (n, dim));
        assert_eq!((queries.len(), queries.dim()), (nq, dim));
        assert!(r.items_path.with_file_name("set.json").exists());
        let ks: Vec<usize> = r.shares.iter().map(|s| s.k).collect();
        assert_eq!(ks, [10, 100, 1000, 4000], "K capped at n");
        assert!(r.shares.windows(2).all(|w| w[0].share <= w[1].share));
    }
    let share = |r: &bench::SetReport, i: usize| r.shares[i].share;
    println!(
        "64-d share of the full-width top-10 at K = 10, 100, 1000: strong {:.3} {:.3} {:.3}, \
         weak {:.3} {:.3} {:.3}",
        share(&strong, 0),
        share(&strong, 1),
        share(&strong, 2),
        share(&weak, 0),
        share(&weak, 1),
        share(&weak, 2)
    );
    assert!(share(&strong, 0) >= 0.5, "the strong prefix must hold most");
    assert!(
        share(&strong, 0) - share(&weak, 0) >= 0.3,
        "weak top-10 share must be far below strong"
    );
    assert!(share(&weak, 1) <= share(&strong, 1) - 0.2);
    assert!(share(&strong, 2) >= 0.99);
}

#[test]
fn bad_input_gets_an_error_naming_the_file() {
    let f = fixture(8);
    let run = |queries: &Path, extra: &[&str]| {
        let mut args = vec![
            "bench",
            "--index",
            s(&f.index_dir),
            "--queries",
            s(queries),
            "--quick",
        ];
        args.extend_from_slice(extra);
        let o = mrl_index(&args);
        assert!(!o.status.success(), "must fail: {args:?}");
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    // A missing query file.
    let missing = f.dir.path().join("nope.npy");
    let e = run(&missing, &[]);
    assert!(e.contains("nope.npy"), "{e}");

    // Queries of the wrong dimension.
    let narrow = f.dir.path().join("narrow.npy");
    write_npy_f32(&narrow, &vec![0.5; 5 * 128], 5, 128).unwrap();
    let e = run(&narrow, &[]);
    assert!(
        e.contains("narrow.npy") && e.contains("128") && e.contains("256"),
        "{e}"
    );

    // Ground truth with too few rows, and with too few columns for k.
    let gt = f.dir.path().join("short-gt.npy");
    write_ids_npy(&gt, &vec![1; (NQ - 1) * 10], NQ - 1, 10).unwrap();
    let e = run(&f.queries_path, &["--ground-truth", s(&gt)]);
    assert!(e.contains("short-gt.npy") && e.contains("shape"), "{e}");
    let gt = f.dir.path().join("narrow-gt.npy");
    write_ids_npy(&gt, &vec![1; NQ * 5], NQ, 5).unwrap();
    let e = run(&f.queries_path, &["--ground-truth", s(&gt)]);
    assert!(
        e.contains("narrow-gt.npy") && e.contains("at least 10"),
        "{e}"
    );
    // Not a .npy at all.
    let gt = f.dir.path().join("text-gt.npy");
    std::fs::write(&gt, "1 2 3\n").unwrap();
    let e = run(&f.queries_path, &["--ground-truth", s(&gt)]);
    assert!(e.contains("text-gt.npy"), "{e}");
    // A missing index.
    let o = mrl_index(&[
        "bench",
        "--index",
        s(&f.dir.path().join("no-index")),
        "--queries",
        s(&f.queries_path),
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("no-index"));
}
