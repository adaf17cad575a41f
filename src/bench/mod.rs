//! Benchmark harness: recall against throughput and latency per granularity, in a row schema
//! shared with the peer systems' scripts (`tools/peers`).
//!
//! ```text
//! queries ──► ground truth: exact full-width top-100 (cached next to the queries)   [truth]
//!         ──► sweeps, one family each:                                             [sweep]
//!               exact-width   exact flat search at every nested width
//!               coarse-graph  the coarse graph alone (plan `<coarse>:k`) over ef
//!               cascade       cascade plans over coarse keep × ef, and the default plan
//!         ──► rows {recall@1/10/100, q/s on 1 and all threads, p50/p95/p99 µs, work per
//!               query, build seconds, index bytes, RSS}                              [row]
//!         ──► JSON / JSON lines / CSV, recall-vs-q/s plot (SVG + PNG)          [row, plot]
//! several runs or systems ──► merged JSON, CSV, Markdown table, plot             [compare]
//! ```
//!
//! [`data`] writes generated strongly or weakly Matryoshka sets as `.npy` files for
//! `mrl-index build` and the Python peers, with the share of the full-width top-10 their
//! 64-d prefix holds.
//!
//! ```no_run
//! use mrl_index::bench::{self, BenchConfig};
//! use mrl_index::{ingest, Index};
//! use std::path::Path;
//!
//! # fn main() -> Result<(), mrl_index::Error> {
//! let index = Index::open("my-index")?;
//! let qpath = Path::new("queries.npy");
//! let queries = ingest::read_matrix_f32(qpath)?;
//! let (truth, _source) =
//!     bench::truth::load_or_compute(&index, queries.as_slice(), qpath, None, 10)?;
//! let cfg = BenchConfig::quick(10, "my-data");
//! let rows = bench::run_bench(&index, queries.as_slice(), &truth, &cfg, &mut |_| {})?;
//! bench::write_rows_json(Path::new("results.json"), &rows)?;
//! bench::plot_rows(&rows, Path::new("results.svg"))?; // results.svg and results.png
//! # Ok(())
//! # }
//! ```

pub mod compare;
pub mod data;
mod error;
pub mod plot;
pub mod row;
pub mod sweep;
pub mod truth;

pub use compare::{compare, table_markdown, CompareReport};
pub use data::{prefix_share, write_set, PrefixShare, SetKind, SetReport};
pub use error::BenchError;
pub use plot::{plot_rows, render_png, render_svg};
pub use row::{read_rows, rows_to_csv, write_rows_csv, write_rows_json, Row};
pub use sweep::{
    run_bench, BenchConfig, FAMILY_CASCADE, FAMILY_COARSE_GRAPH, FAMILY_EXACT_WIDTH, SYSTEM,
};
pub use truth::{GroundTruth, TruthSource};
