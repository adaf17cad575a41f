//! Shared helpers of the integration tests.
#![allow(dead_code)]

use mrl_index::ingest::MatrixSource;
use mrl_index::progress::NoProgress;
use mrl_index::synth::MatryoshkaLike;
use mrl_index::{Index, IndexBuilder};
use std::path::Path;

/// A generated set and an index built over it.
pub struct Built {
    pub dir: tempfile::TempDir,
    pub index: Index,
    pub gen: MatryoshkaLike,
    pub items: Vec<f32>,
    pub queries: Vec<f32>,
}

/// Generates `n` items and `nq` queries of `dim` dims with `seed`, builds with `builder`.
pub fn build(n: usize, nq: usize, dim: usize, seed: u64, builder: IndexBuilder) -> Built {
    let gen = MatryoshkaLike::with_dim(dim, seed);
    let items = gen.items(n);
    let queries = gen.queries(nq);
    let dir = tempfile::tempdir().expect("temp dir");
    let src = MatrixSource::new(items.clone(), dim).expect("matrix");
    builder
        .build(&src, None, &dir.path().join("idx"), &NoProgress)
        .expect("build");
    let index = Index::open(dir.path().join("idx")).expect("open");
    Built {
        dir,
        index,
        gen,
        items,
        queries,
    }
}

/// Builds an index from explicit rows into `dir`.
pub fn build_rows(rows: &[f32], dim: usize, dir: &Path, builder: IndexBuilder) -> Index {
    let src = MatrixSource::new(rows.to_vec(), dim).expect("matrix");
    builder.build(&src, None, dir, &NoProgress).expect("build");
    Index::open(dir).expect("open")
}
