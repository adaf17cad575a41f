//! Search latency per plan, and the kernels under it (dot product per width, one cascade
//! stage, coarse graph search), on a generated Matryoshka-like set.
//!
//! `cargo bench --bench search` (set `MRL_BENCH_ITEMS` for a larger set; default 50,000 × 1024).
//! Compare plans as ratios within one run: the machines are shared and noisy.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use mrl_index::candidate::Candidate;
use mrl_index::graph::search::{search_graph, GraphScratch};
use mrl_index::ingest::MatrixSource;
use mrl_index::progress::NoProgress;
use mrl_index::search::PrefixScorer;
use mrl_index::synth::MatryoshkaLike;
use mrl_index::{simd, Filter, Hit, Index, IndexBuilder, Scratch, SearchParams, SearchPlan};
use std::sync::OnceLock;

const DIM: usize = 1024;

struct Fixture {
    _dir: tempfile::TempDir,
    index: Index,
    queries: Vec<f32>,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let n: usize = std::env::var("MRL_BENCH_ITEMS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(50_000);
        let gen = MatryoshkaLike::with_dim(DIM, 42);
        let dir = tempfile::tempdir().expect("temp dir");
        let src = MatrixSource::new(gen.items(n), DIM).expect("items");
        IndexBuilder::new()
            .build(&src, None, &dir.path().join("idx"), &NoProgress)
            .expect("build");
        let index = Index::open(dir.path().join("idx")).expect("open");
        Fixture {
            _dir: dir,
            index,
            queries: gen.queries(64),
        }
    })
}

fn bench_plans(c: &mut Criterion) {
    let f = fixture();
    let mut group = c.benchmark_group("search_per_plan");
    let default = f.index.default_plan().to_string();
    for plan in [
        default.as_str(),
        "64:500,128:150,256:50,512:20,1024:k",
        "64:2000,128:600,256:200,512:60,1024:k",
        "64:1000,1024:k",
    ] {
        let params = SearchParams::with_plan(plan.parse::<SearchPlan>().expect("plan"));
        let mut scratch = Scratch::new();
        let mut out: Vec<Hit> = Vec::with_capacity(10);
        let mut i = 0;
        group.bench_with_input(BenchmarkId::from_parameter(plan), &params, |b, params| {
            b.iter(|| {
                let q = &f.queries[(i % 64) * DIM..(i % 64 + 1) * DIM];
                i += 1;
                f.index
                    .search_with(&mut scratch, q, 10, params, &Filter::NONE, &mut out)
                    .expect("search");
                black_box(&out);
            })
        });
    }
    group.finish();
}

fn bench_kernels(c: &mut Criterion) {
    let f = fixture();
    let mut group = c.benchmark_group("dot");
    let a: Vec<f32> = f.queries[..DIM].to_vec();
    let b: Vec<f32> = f.queries[DIM..2 * DIM].to_vec();
    for w in [64usize, 128, 256, 512, 1024] {
        group.throughput(Throughput::Elements(w as u64));
        group.bench_with_input(BenchmarkId::new("simsimd", w), &w, |bch, &w| {
            bch.iter(|| simd::dot(black_box(&a[..w]), black_box(&b[..w])))
        });
        group.bench_with_input(BenchmarkId::new("scalar", w), &w, |bch, &w| {
            bch.iter(|| simd::dot_scalar(black_box(&a[..w]), black_box(&b[..w])))
        });
    }
    group.finish();

    let store = f.index.store();
    let q = &f.queries[..DIM];
    let mut group = c.benchmark_group("coarse_graph_search");
    for ef in [100usize, 500, 1000] {
        let mut scratch = GraphScratch::default();
        let mut out: Vec<Candidate> = Vec::new();
        group.bench_with_input(BenchmarkId::from_parameter(ef), &ef, |b, &ef| {
            b.iter(|| {
                let scorer = PrefixScorer::new(store, q, 1);
                search_graph(
                    f.index.graph(),
                    &scorer,
                    ef,
                    &mut scratch,
                    |_| true,
                    &mut out,
                );
                black_box(out.len())
            })
        });
    }
    group.finish();

    // One cascade stage: extend 1000 random candidates by the 512..1024 band.
    let mut group = c.benchmark_group("cascade_stage");
    let band = store.bands().len() - 1;
    let bspec = store.bands()[band];
    let rows: Vec<u32> = (0..1000u32)
        .map(|i| (i * 7919) % store.len() as u32)
        .collect();
    group.throughput(Throughput::Elements(rows.len() as u64));
    group.bench_function(BenchmarkId::new("extend_1000", bspec.width()), |b| {
        b.iter(|| {
            let mut s = 0.0f32;
            for &r in &rows {
                s += simd::dot(&q[bspec.start..bspec.end], store.row(band, r as usize));
            }
            black_box(s)
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(3));
    targets = bench_plans, bench_kernels
}
criterion_main!(benches);
