//! # mrl-index
//!
//! Approximate maximum-inner-product search over Matryoshka embeddings: vectors whose every
//! prefix (8, 16, …, 1024 dims) is itself a trained embedding, scored by raw inner products.
//!
//! ```text
//! ingest (.npy/.fvecs) ──► store: every vector once, full width, band-major by nested width
//!                               (memory-mapped; band 0 = the native coarse prefix)
//! sample queries ──────► space: native prefix, or a learned query-aware map into a compact
//!   (optional)                  f16 code (space::learn), chosen by measurement (space::choose)
//!                      ──► coarse graph: HNSW on the coarse space (graph::insert, with an
//!                               inner-product dissimilarity, into flat u32 lists, mapped)
//!                      ──► default plan: tuned on held-out sample queries (tune)
//!                      ──► MANIFEST: publishes the generation atomically; later adds and
//!                          deletes publish delta segments and deletion bitmaps (writer),
//!                          compaction a new base
//! query ──► (learned) projected once: q·A over the code widths the plan uses
//!       ──► coarse stage: beam search on the graph (or an exact code scan), keep₀ candidates
//!       ──► cascade: each stage adds the next band's dot product (code, then native) to every
//!                    candidate's score (no dimension multiplied twice), keeps the best keepᵢ
//!       ──► hits {id, score}: exact inner products of the original vectors at the answer width
//!           (a live index: each segment's cascade, merged by score, deleted rows never)
//! ```
//!
//! In a recommender, a user's history goes through the query encoder to give the query
//! vector; the history's own items are usually excluded with a [`Filter`].
//!
//! ```no_run
//! use mrl_index::{Index, SearchParams, Filter};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dim = 256;
//! # #[cfg(feature = "build")]
//! # {
//! // Offline (feature `build`, on by default):
//! use mrl_index::{ingest::MatrixSource, progress::NoProgress, IndexBuilder};
//! let items = MatrixSource::new(vec![0.5; 1000 * dim], dim)?;
//! IndexBuilder::new().coarse_dim(64).build(&items, None, "my-index".as_ref(), &NoProgress)?;
//! # }
//!
//! // Online (the core: `default-features = false`):
//! let index = Index::open("my-index")?;           // O(1): maps the files
//! let query = vec![0.1f32; dim];
//! let hits = index.search(&query, 10, &SearchParams::default())?;
//! let history = [3u64, 17, 42];
//! let recs = index.search_filtered(&query, 10, &SearchParams::default(), &Filter::deny(&history))?;
//! # let _ = (hits, recs);
//! # Ok(())
//! # }
//! ```
//!
//! Module map. The core (always compiled): [`ingest`] reads and writes input files;
//! [`store`] is the embedding store; [`graph`] the coarse graph (its search; building it
//! needs `build`); [`space`] the learned coarse space; [`plan`] and [`search`] the cascade,
//! whose currency is a [`candidate::Candidate`]; [`rowset`] the visited and filter sets;
//! [`default_plan`] the tuned plan an index carries; [`index`] ties them into [`Index`];
//! [`format`](mod@format) is the container shared by all files (spec in
//! `index-formats/v3.md`), written through [`atomic`] (whose write points [`fault`] can fail,
//! for the crash tests) and read through [`bytes`]; [`lock`] lets one writer at a time change
//! an index directory; a live index adds [`segment`]s (delta segments of added items) and
//! [`deletes`] (deleted rows) to its base; [`exact`] is brute force for ground truth;
//! [`threads`] makes rayon pools. Feature `build`: `build` (`IndexBuilder`), `writer`
//! (`IndexWriter`: add, delete, replace, compact), `tune` (chooses default plans), `synth`
//! (Matryoshka-like test data).
//! Feature `encoder`: `encoder` (the ONNX encoders), `stream` (a user's query-encoder state
//! carried forward one item at a time). Feature `bench`: `bench`. Feature `serve`: `serve`
//! (the HTTP service: search, recommendations, streaming users, metrics, hot reload).

#![warn(missing_docs)]

pub mod atomic;
#[cfg(feature = "bench")]
pub mod bench;
#[cfg(feature = "build")]
pub mod build;
pub mod bytes;
pub mod candidate;
pub mod default_plan;
pub mod deletes;
#[cfg(feature = "encoder")]
pub mod encoder;
pub mod exact;
pub mod fault;
pub mod format;
pub mod graph;
pub mod index;
pub mod ingest;
pub mod lock;
pub mod manifest;
pub mod plan;
pub mod progress;
pub mod rowset;
pub mod search;
pub mod segment;
#[cfg(feature = "serve")]
pub mod serve;
pub mod simd;
pub mod space;
pub mod store;
#[cfg(feature = "encoder")]
pub mod stream;
#[cfg(feature = "build")]
pub mod synth;
pub mod threads;
#[cfg(feature = "build")]
pub mod tune;
#[cfg(feature = "build")]
pub mod writer;

#[cfg(feature = "build")]
pub use build::{BuildError, BuildReport, IndexBuilder};
pub use index::{Index, IndexError, OpenOptions};
pub use plan::{Keep, SearchPlan, Stage};
pub use search::{Filter, Hit, Scratch, SearchError, SearchParams};
#[cfg(feature = "build")]
pub use writer::{CompactOptions, IndexWriter, WriteError};

/// Any error of the crate, for callers that handle them alike (the command line does).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading input files.
    #[error(transparent)]
    Ingest(#[from] ingest::IngestError),
    /// Building an index.
    #[cfg(feature = "build")]
    #[error(transparent)]
    Build(#[from] BuildError),
    /// Opening or verifying an index.
    #[error(transparent)]
    Index(#[from] IndexError),
    /// Adding, deleting or compacting (a live index's writer).
    #[cfg(feature = "build")]
    #[error(transparent)]
    Write(#[from] WriteError),
    /// Answering a query.
    #[error(transparent)]
    Search(#[from] SearchError),
    /// Running an encoder.
    #[cfg(feature = "encoder")]
    #[error(transparent)]
    Encoder(#[from] encoder::EncoderError),
    /// Streaming user states through the query encoder.
    #[cfg(feature = "encoder")]
    #[error(transparent)]
    Stream(#[from] stream::StreamError),
    /// A search plan.
    #[error(transparent)]
    Plan(#[from] plan::PlanError),
    /// Starting a thread pool.
    #[error(transparent)]
    Threads(#[from] threads::ThreadPoolError),
    /// Benchmarks: their files and settings.
    #[cfg(feature = "bench")]
    #[error(transparent)]
    Bench(#[from] bench::BenchError),
    /// The HTTP service could not start or failed.
    #[cfg(feature = "serve")]
    #[error(transparent)]
    Serve(#[from] serve::ServeError),
    /// A command-line argument, or a combination of them, that cannot work (the message
    /// names the flag).
    #[error("{0}")]
    Usage(String),
    /// Reading or writing a file other than an index or a vector file (sequences, titles,
    /// results).
    #[error("{}: {source}", path.display())]
    Io {
        /// The file (`-` for standard output).
        path: std::path::PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A file whose contents are not what was expected (sequences, titles, fixtures).
    #[error("{}: {reason}", path.display())]
    BadFile {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

/// The README's Rust example, compiled as a doctest so that it cannot go stale.
#[cfg(all(doctest, feature = "build"))]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

#[cfg(test)]
mod send_sync {
    fn assert_send_sync<T: Send + Sync>() {}
    #[test]
    fn index_is_send_and_sync() {
        assert_send_sync::<crate::Index>();
    }
}
