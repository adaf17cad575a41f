//! [`IndexBuilder`]: from a [`VectorSource`] to a published index directory.
//!
//! ```text
//! source ──► scan (finite? norms per band) ──► store-<gen>.mrl (native, full width)
//! sample queries ──► held out for tuning | fit ──► learned space (space/learn.rs)
//!        ──► coarse space chosen by coverage on held-out queries (space/choose.rs):
//!            native prefix, or learned code ──► space-<gen>.mrl
//!        ──► HNSW over the coarse vectors (graph::build_graph) ──► graph-<gen>.mrl
//!        ──► plan tuned on the held-out queries (tune.rs) ──► MANIFEST (publishes all)
//! ```
//!
//! Data files get fresh names; `MANIFEST` is replaced atomically last, and files of older
//! generations are removed after it. A build that fails at any point removes what it wrote
//! and leaves the previous index, if any, as it was.
//!
//! A build holds the directory's writer lock ([`crate::lock::WriterLock`]) from before it
//! looks at the directory until the manifest is published and stale files are removed: a
//! second build (or `tune --write`) into the same directory fails at once with
//! [`BuildError::Lock`] instead of deleting the first one's files. Holding it, the build
//! removes what crashed writers left: temporary files at the start, data files of other
//! generations at the end.

use crate::atomic::AtomicFile;
use crate::default_plan::DefaultPlan;
use crate::graph::build::{
    build_graph, write_graph, BuildInfo, CoarseMetric, GraphBuilder, GraphParams, MAX_M,
};
use crate::ingest::{IngestError, VectorSource};
use crate::lock::{LockError, WriterLock};
use crate::manifest::{self, Manifest, ManifestMeta, SpaceRef};
use crate::progress::Progress;
use crate::space::choose::{coverage, Coverage};
use crate::space::learn::{encode_items, fit, FitOptions};
use crate::space::{write_space, SpaceError};
use crate::store::{validate_widths, write_store, StoreWriteError};
use crate::tune::{tune, TuneOptions};
use crate::Index;
use rand::seq::index::sample;
use rand::SeedableRng;
use rayon::prelude::*;
use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// A build that cannot proceed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A parameter is out of its valid range.
    #[error("invalid parameter {name} = {value}: {reason}")]
    InvalidParameter {
        /// Parameter name as on the command line.
        name: &'static str,
        /// The value given.
        value: String,
        /// The valid range or rule.
        reason: String,
    },
    /// The nested widths do not describe a layout of the vectors.
    #[error("invalid widths: {0}")]
    InvalidWidths(String),
    /// The input has no rows.
    #[error("{origin}: empty input: no vectors to index")]
    EmptyInput {
        /// Where the rows come from.
        origin: String,
    },
    /// The input holds more rows than an index can address.
    #[error("{origin}: {n} vectors exceed the limit of {max}")]
    TooManyItems {
        /// Where the rows come from.
        origin: String,
        /// Rows in the input.
        n: usize,
        /// The limit.
        max: usize,
    },
    /// A value is NaN or infinite.
    #[error("{origin}: row {row}, column {col} is {value}: all values must be finite")]
    NonFinite {
        /// Where the rows come from.
        origin: String,
        /// Row (0-based).
        row: usize,
        /// Column (0-based).
        col: usize,
        /// The value.
        value: f32,
    },
    /// The ids file does not have one id per vector.
    #[error("{count} ids for {n} vectors: need exactly one id per vector")]
    IdCount {
        /// Ids given.
        count: usize,
        /// Vectors given.
        n: usize,
    },
    /// Two rows have the same external id.
    #[error("duplicate id {id} at rows {first} and {second}")]
    DuplicateId {
        /// The id.
        id: u64,
        /// First row holding it.
        first: usize,
        /// Second row holding it.
        second: usize,
    },
    /// The output directory already holds an index and overwriting was not asked for.
    #[error("{path}: already holds an index (use --force to replace it)")]
    IndexExists {
        /// The directory.
        path: PathBuf,
    },
    /// The output directory holds other files.
    #[error("{path}: exists and is not an mrl-index directory; refusing to write into it")]
    NotAnIndexDir {
        /// The directory.
        path: PathBuf,
    },
    /// Another writer holds the output directory, or its writer lock cannot be taken.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// Reading the input failed.
    #[error(transparent)]
    Ingest(#[from] IngestError),
    /// A file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The sample queries or the learned space.
    #[error(transparent)]
    Space(#[from] SpaceError),
    /// Tuning the default plan on the held-out queries failed.
    #[error("tuning the default plan: {0}")]
    Tune(#[from] crate::search::SearchError),
    /// The freshly written index did not open.
    #[error("opening the freshly built index: {0}")]
    Reopen(#[from] crate::index::IndexError),
    /// The thread pool could not be created.
    #[error(transparent)]
    ThreadPool(#[from] crate::threads::ThreadPoolError),
}

/// What a build produced.
#[derive(Debug, Clone, PartialEq)]
pub struct BuildReport {
    /// Items indexed.
    pub n_items: usize,
    /// Full dimension.
    pub dim: usize,
    /// Nested widths.
    pub widths: Vec<usize>,
    /// Store file size in bytes.
    pub store_bytes: u64,
    /// Graph file size in bytes.
    pub graph_bytes: u64,
    /// Seconds validating the input and writing the store.
    pub store_seconds: f64,
    /// Seconds building and writing the graph.
    pub graph_seconds: f64,
    /// Layers in the graph.
    pub graph_layers: usize,
    /// The coarse space the graph is built in.
    pub space: crate::plan::Space,
    /// Space file size in bytes (0 without a learned space).
    pub space_bytes: u64,
    /// Seconds fitting the learned space, choosing the coarse space and encoding the items.
    pub space_seconds: f64,
    /// How deep each coarse space must go (when the space was chosen automatically).
    pub coverage: Option<Coverage>,
    /// The default plan tuned on held-out queries (with what was measured), if tuned.
    pub tuned: Option<DefaultPlan>,
    /// Seconds tuning the default plan.
    pub tune_seconds: f64,
}

/// Which coarse space a build uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SpaceChoice {
    /// Measure on held-out queries and take the learned space only where it needs at most
    /// half the native coarse depth ([`Coverage::prefers_learned`]).
    #[default]
    Auto,
    /// The native prefix, as before learned spaces existed.
    Native,
    /// The learned code, always.
    Learned,
}

/// Sample queries a build learns its coarse space from and tunes its plan on.
#[derive(Clone, PartialEq)]
pub struct SampleQueries {
    rows: Arc<[f32]>,
    dim: usize,
    origin: String,
}

impl std::fmt::Debug for SampleQueries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SampleQueries")
            .field("origin", &self.origin)
            .field("rows", &(self.rows.len() / self.dim.max(1)))
            .field("dim", &self.dim)
            .finish()
    }
}

impl SampleQueries {
    /// Queries from a source (read into memory): e.g. the query vectors of validation
    /// users other than the ones the index will be evaluated on.
    pub fn from_source(source: &dyn VectorSource) -> Result<SampleQueries, IngestError> {
        let dim = source.dim();
        let mut rows = vec![0f32; source.len() * dim];
        for (r, row) in rows.chunks_exact_mut(dim.max(1)).enumerate() {
            source.read_row(r, row)?;
        }
        Ok(SampleQueries {
            rows: rows.into(),
            dim,
            origin: source.origin(),
        })
    }

    /// Queries from memory: row-major, `dim` values per row.
    pub fn new(rows: Vec<f32>, dim: usize, origin: impl Into<String>) -> SampleQueries {
        SampleQueries {
            rows: rows.into(),
            dim,
            origin: origin.into(),
        }
    }

    /// Number of queries.
    pub fn len(&self) -> usize {
        self.rows.len() / self.dim.max(1)
    }

    /// Whether there are no queries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Builds indexes. Defaults: `m = 16`, `ef_construction = 200`, `coarse_dim = 64` (capped at
/// the full dimension), widths = powers of two from `coarse_dim` up to the full dimension,
/// seed 42, all cores; the coarse space chosen automatically ([`SpaceChoice::Auto`]) with a
/// learned code of [`default_code_dim`] dims; the default plan tuned for recall@10 ≥ 0.95
/// on held-out sample queries (or, without any, on held-out items).
#[derive(Debug, Clone, PartialEq)]
pub struct IndexBuilder {
    widths: Option<Vec<usize>>,
    coarse_dim: usize,
    m: usize,
    ef_construction: usize,
    seed: u64,
    threads: usize,
    overwrite: bool,
    coarse_metric: CoarseMetric,
    space: SpaceChoice,
    code_dim: Option<usize>,
    sample_queries: Option<SampleQueries>,
    target_recall: Option<f64>,
    /// Compaction without sample queries: the base's fitted maps and plan, kept.
    reuse: Option<Reuse>,
}

/// What a compaction without sample queries keeps of the base it replaces.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Reuse {
    /// The base's learned space (its maps re-encode every live item), if it has one.
    pub fitted: Option<crate::space::learn::Fitted>,
    /// The base's default plan text (the layout is unchanged, so it still applies).
    pub plan: Option<String>,
}

impl Default for IndexBuilder {
    fn default() -> Self {
        IndexBuilder {
            widths: None,
            coarse_dim: 64,
            m: 16,
            ef_construction: 200,
            seed: 42,
            threads: 0,
            overwrite: false,
            coarse_metric: CoarseMetric::default(),
            space: SpaceChoice::default(),
            code_dim: None,
            sample_queries: None,
            target_recall: Some(DEFAULT_TARGET_RECALL),
            reuse: None,
        }
    }
}

/// The recall@10 a build tunes its default plan for.
pub const DEFAULT_TARGET_RECALL: f64 = 0.95;
/// Results per query the tuning target refers to.
pub const TUNE_K: usize = 10;
/// Largest learned code a build makes by default: 256 dims (an eighth of a 1024-d store's
/// bytes, the code being stored in half precision).
pub const MAX_DEFAULT_CODE_DIM: usize = 256;

/// The default learned code dimension for `dim`-d vectors: a quarter of the full width (in
/// half precision the code then costs an eighth of the store), a multiple of 16, between 16
/// and [`MAX_DEFAULT_CODE_DIM`], never beyond `dim`.
pub fn default_code_dim(dim: usize) -> usize {
    ((dim / 4) / 16 * 16)
        .clamp(16, MAX_DEFAULT_CODE_DIM)
        .min(dim)
}

/// The default nested widths for `dim`: powers of two from `coarse_dim`, then `dim`.
pub fn default_widths(dim: usize, coarse_dim: usize) -> Vec<usize> {
    let mut widths = Vec::new();
    let mut w = coarse_dim.min(dim).max(1);
    while w < dim {
        widths.push(w);
        w *= 2;
    }
    widths.push(dim);
    widths
}

/// The nested widths of a learned code of `code_dim` dims whose first band (the graph's) is
/// `coarse` wide: doubling from `coarse`, ending at `code_dim`.
pub fn code_widths(coarse: usize, code_dim: usize) -> Vec<usize> {
    let mut widths = Vec::new();
    let mut w = coarse.min(code_dim).max(1);
    while w < code_dim {
        widths.push(w);
        w *= 2;
    }
    widths.push(code_dim);
    widths
}

impl IndexBuilder {
    /// A builder with the defaults.
    pub fn new() -> IndexBuilder {
        IndexBuilder::default()
    }

    /// Nested widths (band ends), strictly increasing, ending at the full dimension and
    /// containing `coarse_dim`.
    pub fn widths(mut self, widths: Vec<usize>) -> Self {
        self.widths = Some(widths);
        self
    }

    /// Width of the prefix the coarse graph is built on.
    pub fn coarse_dim(mut self, coarse_dim: usize) -> Self {
        self.coarse_dim = coarse_dim;
        self
    }

    /// HNSW `M`: neighbours per node on upper layers (2·M on layer 0). 2..=256.
    pub fn m(mut self, m: usize) -> Self {
        self.m = m;
        self
    }

    /// HNSW `efConstruction`: candidate list size during insertion. ≥ 1.
    pub fn ef_construction(mut self, ef: usize) -> Self {
        self.ef_construction = ef;
        self
    }

    /// Seed of the insertion order. With one thread, builds are bit-reproducible.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Threads for the build; 0 for all cores.
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = threads;
        self
    }

    /// How the coarse graph chooses neighbours at build time (default: inner product).
    pub fn coarse_metric(mut self, metric: CoarseMetric) -> Self {
        self.coarse_metric = metric;
        self
    }

    /// Whether an existing index in the output directory may be replaced.
    pub fn overwrite(mut self, overwrite: bool) -> Self {
        self.overwrite = overwrite;
        self
    }

    /// Which coarse space to use (default: chosen by measurement, [`SpaceChoice::Auto`]).
    pub fn space(mut self, space: SpaceChoice) -> Self {
        self.space = space;
        self
    }

    /// Dimensions of the learned code (default: [`default_code_dim`] of the input).
    pub fn code_dim(mut self, code_dim: usize) -> Self {
        self.code_dim = Some(code_dim);
        self
    }

    /// Sample queries of the traffic the index will serve (e.g. validation users' query
    /// vectors): part of them fits the learned space, the rest is held out to choose the
    /// space and tune the default plan. Without them the build learns from the items and
    /// tunes on held-out items.
    pub fn sample_queries(mut self, queries: SampleQueries) -> Self {
        self.sample_queries = Some(queries);
        self
    }

    /// The mean recall@10 the default plan must reach on held-out queries (default 0.95);
    /// `None` skips tuning (the default plan is then the untuned one of the layout).
    pub fn target_recall(mut self, target: Option<f64>) -> Self {
        self.target_recall = target;
        self
    }

    /// Keeps the base's maps and plan instead of fitting and tuning (compaction).
    pub(crate) fn reuse(mut self, reuse: Reuse) -> Self {
        self.reuse = Some(reuse);
        self
    }

    /// Checks the parameters against the input's dimension and returns the widths to use.
    pub fn check(&self, dim: usize) -> Result<Vec<usize>, BuildError> {
        if !(2..=MAX_M).contains(&self.m) {
            return Err(BuildError::InvalidParameter {
                name: "m",
                value: self.m.to_string(),
                reason: format!("must be between 2 and {MAX_M}"),
            });
        }
        if self.ef_construction == 0 || self.ef_construction > 1 << 20 {
            return Err(BuildError::InvalidParameter {
                name: "ef-construction",
                value: self.ef_construction.to_string(),
                reason: "must be between 1 and 1048576".into(),
            });
        }
        if self.coarse_dim == 0 || self.coarse_dim > dim {
            return Err(BuildError::InvalidParameter {
                name: "coarse-dim",
                value: self.coarse_dim.to_string(),
                reason: format!("must be between 1 and the full dimension {dim}"),
            });
        }
        let widths = match &self.widths {
            Some(w) => w.clone(),
            None => default_widths(dim, self.coarse_dim),
        };
        validate_widths(&widths, dim).map_err(BuildError::InvalidWidths)?;
        if !widths.contains(&self.coarse_dim) {
            return Err(BuildError::InvalidWidths(format!(
                "coarse-dim {} must be one of the widths {widths:?}",
                self.coarse_dim
            )));
        }
        if let Some(t) = self.target_recall {
            if !(t > 0.0 && t <= 1.0) {
                return Err(BuildError::InvalidParameter {
                    name: "target-recall",
                    value: t.to_string(),
                    reason: "must be in (0, 1]".into(),
                });
            }
        }
        let code_dim = self.code_dim_for(dim);
        if code_dim == 0 || code_dim > dim {
            return Err(BuildError::InvalidParameter {
                name: "code-dim",
                value: code_dim.to_string(),
                reason: format!("must be between 1 and the full dimension {dim}"),
            });
        }
        if let Some(q) = &self.sample_queries {
            if q.dim != dim {
                return Err(SpaceError::QueryDim {
                    origin: q.origin.clone(),
                    expected: dim,
                    got: q.dim,
                }
                .into());
            }
            if let Some((i, &value)) = q.rows.iter().enumerate().find(|(_, v)| !v.is_finite()) {
                return Err(SpaceError::NonFiniteQuery {
                    origin: q.origin.clone(),
                    row: i / dim,
                    col: i % dim,
                    value,
                }
                .into());
            }
            let needed = min_sample_queries(code_dim);
            if q.len() < needed {
                return Err(SpaceError::TooFewQueries {
                    origin: q.origin.clone(),
                    rows: q.len(),
                    needed,
                }
                .into());
            }
        }
        Ok(widths)
    }

    fn code_dim_for(&self, dim: usize) -> usize {
        self.code_dim.unwrap_or_else(|| default_code_dim(dim))
    }

    /// Builds an index over `source` (with optional external `ids`, one per row) into
    /// `out_dir`, reporting to `progress`.
    pub fn build(
        &self,
        source: &dyn VectorSource,
        ids: Option<&[u64]>,
        out_dir: &Path,
        progress: &dyn Progress,
    ) -> Result<BuildReport, BuildError> {
        let widths = self.check_input(source, ids)?;
        let created_dir = ensure_dir(out_dir)?;
        // Locked before the directory is inspected: a second writer fails here, at once.
        let lock = WriterLock::acquire(out_dir).inspect_err(|_| {
            if created_dir {
                // Only succeeds if still empty.
                let _ = fs::remove_dir(out_dir);
            }
        })?;
        self.build_holding(source, ids, &widths, out_dir, progress, &lock, created_dir)
    }

    /// [`IndexBuilder::build`] by a writer that already holds the directory's lock (a
    /// compaction replacing its base).
    pub(crate) fn build_locked(
        &self,
        source: &dyn VectorSource,
        ids: Option<&[u64]>,
        out_dir: &Path,
        progress: &dyn Progress,
        lock: &WriterLock,
    ) -> Result<BuildReport, BuildError> {
        let widths = self.check_input(source, ids)?;
        self.build_holding(source, ids, &widths, out_dir, progress, lock, false)
    }

    /// The parameters against the input, the input's size and its ids; the widths to use.
    fn check_input(
        &self,
        source: &dyn VectorSource,
        ids: Option<&[u64]>,
    ) -> Result<Vec<usize>, BuildError> {
        let origin = source.origin();
        let widths = self.check(source.dim())?;
        let n = source.len();
        if n == 0 {
            return Err(BuildError::EmptyInput { origin });
        }
        let max = u32::MAX as usize - 1;
        if n > max {
            return Err(BuildError::TooManyItems { origin, n, max });
        }
        if let Some(ids) = ids {
            check_ids(ids, n)?;
        }
        Ok(widths)
    }

    #[allow(clippy::too_many_arguments)]
    fn build_holding(
        &self,
        source: &dyn VectorSource,
        ids: Option<&[u64]>,
        widths: &[usize],
        out_dir: &Path,
        progress: &dyn Progress,
        lock: &WriterLock,
        created_dir: bool,
    ) -> Result<BuildReport, BuildError> {
        let mut cleanup = Cleanup {
            files: Vec::new(),
            dir: created_dir.then(|| out_dir.to_path_buf()),
            lock,
        };
        check_dir(out_dir, self.overwrite)?;
        let pool = crate::threads::pool(self.threads)?;
        let report =
            pool.install(|| self.build_into(source, ids, widths, out_dir, progress, &mut cleanup))?;
        cleanup.disarm();
        Ok(report)
    }

    fn build_into(
        &self,
        source: &dyn VectorSource,
        ids: Option<&[u64]>,
        widths: &[usize],
        out_dir: &Path,
        progress: &dyn Progress,
        cleanup: &mut Cleanup<'_>,
    ) -> Result<BuildReport, BuildError> {
        let n = source.len();
        let dim = source.dim();
        let t0 = Instant::now();
        // No other writer exists: temporary files are a crashed one's leftovers.
        cleanup.lock.remove_leftovers(None);
        let norms = scan_source(source, widths, progress)?;
        let generation = new_generation(out_dir);
        let io_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| BuildError::Io { path, source }
        };

        let store_path = out_dir.join(manifest::store_file_name(generation));
        progress.stage("writing store", (n * widths.len()) as u64);
        let file = AtomicFile::create(&store_path).map_err(io_err(&store_path))?;
        let file = write_store(file, source, widths, &norms, ids, |k| progress.advance(k))
            .map_err(|e| match e {
                StoreWriteError::Io(source) => BuildError::Io {
                    path: store_path.clone(),
                    source,
                },
                StoreWriteError::Ingest(e) => BuildError::Ingest(e),
            })?;
        drop(norms);
        cleanup.files.push(store_path.clone());
        file.commit().map_err(io_err(&store_path))?;
        progress.finish_stage();
        let store_seconds = t0.elapsed().as_secs_f64();

        // Held-out queries for choosing the space and tuning; the rest fit the space.
        let t_space = Instant::now();
        let held = self.held_out(source)?;
        let code_dim = self.code_dim_for(dim);
        let coarse_code = self.coarse_dim.min(code_dim);
        let reused = self.reuse.as_ref().map(|r| r.fitted.clone());
        let (learned, cover) = match (reused, self.space) {
            (Some(fitted), _) => (fitted, None),
            (None, SpaceChoice::Native) => (None, None),
            (None, choice) => {
                progress.stage("learning the coarse space", 0);
                let fitted = fit(
                    source,
                    held.fit_rows.as_deref(),
                    &FitOptions {
                        code_dim,
                        seed: self.seed,
                        ..FitOptions::default()
                    },
                )?;
                progress.finish_stage();
                let cover = if choice == SpaceChoice::Auto {
                    let nq = held.queries.len() / dim;
                    let m = nq.min(COVERAGE_QUERIES);
                    Some(coverage(
                        source,
                        &held.queries[..m * dim],
                        held.exclude_rows.as_ref().map(|e| &e[..m]),
                        &fitted,
                        coarse_code,
                        COVERAGE_ITEMS,
                        self.seed,
                    )?)
                } else {
                    None
                };
                let use_it = cover.as_ref().is_none_or(Coverage::prefers_learned);
                (use_it.then_some(fitted), cover)
            }
        };
        let mut learned = learned;
        let (coarse_vectors, coarse_width, codes) = match &mut learned {
            Some(fitted) => {
                progress.stage("encoding items", n as u64);
                let mut codes =
                    encode_items(source, &fitted.item_map, code_dim, &|k| progress.advance(k))?;
                fitted.scale_codes(&mut codes);
                // The graph is built on the codes as the search will read them.
                for c in codes.iter_mut() {
                    *c = half::f16::from_f32(*c).to_f32();
                }
                progress.finish_stage();
                let coarse: Vec<f32> = codes
                    .chunks_exact(code_dim)
                    .flat_map(|c| c[..coarse_code].iter().copied())
                    .collect();
                (coarse, coarse_code, Some(codes))
            }
            None => (
                native_prefix(source, self.coarse_dim)?,
                self.coarse_dim,
                None,
            ),
        };
        let space_seconds = t_space.elapsed().as_secs_f64();
        let mut space_ref = None;
        let mut space_bytes = 0;
        if let (Some(fitted), Some(codes)) = (&learned, &codes) {
            let code_widths = code_widths(coarse_code, code_dim);
            let space_path = out_dir.join(manifest::space_file_name(generation));
            let file = AtomicFile::create(&space_path).map_err(io_err(&space_path))?;
            let file = write_space(file, fitted, &code_widths, codes, self.seed)
                .map_err(io_err(&space_path))?;
            cleanup.files.push(space_path.clone());
            file.commit().map_err(io_err(&space_path))?;
            space_ref = Some(SpaceRef {
                header_crc32: header_crc_of(&space_path)?,
                code_dim: code_dim as u32,
                reserved: [0; 2],
            });
            space_bytes = fs::metadata(&space_path).map(|m| m.len()).unwrap_or(0);
        }
        drop(codes);

        let t1 = Instant::now();
        let params = GraphParams {
            m: self.m,
            ef_construction: self.ef_construction,
            seed: self.seed,
            metric: self.coarse_metric,
            builder: GraphBuilder::default(),
        };
        progress.stage("building coarse graph", n as u64);
        let mut exported = build_graph(&coarse_vectors, coarse_width, &params, &|k| {
            progress.advance(k)
        });
        drop(coarse_vectors);
        progress.finish_stage();
        progress.stage("writing graph", 0);
        exported.meta.space = u32::from(learned.is_some());
        let info = BuildInfo {
            crate_version: env!("CARGO_PKG_VERSION").to_string(),
            builder: params.builder.label(),
            m: self.m as u32,
            ef_construction: self.ef_construction as u32,
            max_layer: crate::graph::build::MAX_LAYER as u32,
            seed: self.seed,
            threads: rayon::current_num_threads() as u32,
            build_seconds: t1.elapsed().as_secs_f64(),
        };
        let graph_path = out_dir.join(manifest::graph_file_name(generation));
        let file = AtomicFile::create(&graph_path).map_err(io_err(&graph_path))?;
        let file = write_graph(file, &exported, &info).map_err(io_err(&graph_path))?;
        cleanup.files.push(graph_path.clone());
        file.commit().map_err(io_err(&graph_path))?;
        progress.finish_stage();
        let graph_seconds = t1.elapsed().as_secs_f64();

        let store_crc = header_crc_of(&store_path)?;
        let graph_crc = header_crc_of(&graph_path)?;
        let mut manifest = Manifest {
            meta: ManifestMeta {
                generation,
                n_items: n as u64,
                dim: dim as u32,
                coarse_dim: coarse_width as u32,
                store_header_crc32: store_crc,
                graph_header_crc32: graph_crc,
            },
            space: space_ref,
            plan: None,
            segments: None,
        };

        // Tune the default plan on the held-out queries, through the files just written.
        let t_tune = Instant::now();
        let tuned = match self.target_recall {
            Some(target) => {
                progress.stage("tuning the default plan", 0);
                let index = Index::assemble(out_dir, manifest.clone(), Default::default(), false)?;
                // Held-out items are far easier queries than real traffic, which rarely comes
                // from the items' own distribution (on the generated strong set a plan at
                // 0.995 on held-out items gives 0.956 on the set's queries): without sample
                // queries the plan must cut the miss rate tenfold (0.995 for a 0.95 target).
                let internal = if held.exclude_rows.is_some() {
                    1.0 - (1.0 - target) / FALLBACK_MISS_DIVISOR
                } else {
                    target
                };
                let options = TuneOptions {
                    exclude: held.exclude_ids(&index),
                    ..TuneOptions::new(TUNE_K, internal)
                };
                let result = tune(&index, &held.queries, &options)?;
                let mut plan = result.default_plan(TUNE_K, internal, &held.describe());
                // Every narrower nested width gets its own plan: the learned code ranks a
                // truncated query less well than a whole one, and a native graph needs less
                // for a short sub-model.
                let nq = (held.queries.len() / dim).min(WIDTH_TUNE_QUERIES);
                for &w in widths.iter().filter(|&&w| w < dim) {
                    let options = TuneOptions {
                        width: Some(w),
                        exclude: options.exclude.as_ref().map(|e| e[..nq].to_vec()),
                        ..options.clone()
                    };
                    let r = tune(&index, &held.queries[..nq * dim], &options)?;
                    let mut p = r.default_plan(TUNE_K, internal, &held.describe());
                    p.notes.clear();
                    plan.widths.push((w, p));
                }
                progress.finish_stage();
                Some(plan)
            }
            None => None,
        };
        let tune_seconds = t_tune.elapsed().as_secs_f64();
        // Always a plan section: it makes the manifest version 2, so a first-format
        // DEFAULT_PLAN file left in the directory is never read for this generation.
        let kept = self
            .reuse
            .as_ref()
            .and_then(|r| r.plan.as_deref())
            .and_then(|text| {
                let layout = Index::assemble(out_dir, manifest.clone(), Default::default(), false)
                    .ok()?
                    .layout()
                    .clone();
                let d = DefaultPlan::parse(text).ok()?;
                d.check_against_layout(&layout).ok()?;
                Some(d)
            });
        let published = tuned.clone().or(kept).unwrap_or_else(|| {
            let layout = Index::assemble(out_dir, manifest.clone(), Default::default(), false)
                .map(|i| i.layout().clone());
            let mut d = DefaultPlan::new(
                match layout {
                    Ok(l) => crate::plan::SearchPlan::default_for_layout(&l),
                    Err(_) => crate::plan::SearchPlan::default_for(widths, coarse_width),
                },
                None,
            );
            d.notes
                .push("not tuned (built with tuning off): the layout's default plan".into());
            d
        });
        manifest.plan = Some(published.to_text());

        let mpath = manifest::manifest_path(out_dir);
        if let Err(e) = crate::atomic::write_atomic(&mpath, &manifest::encode(&manifest)) {
            // Failed after the rename (the directory's fsync): published, its files stay.
            if manifest::is_published(out_dir, &manifest) {
                cleanup.disarm();
            }
            return Err(io_err(&mpath)(e));
        }
        // Published. From here on, failures only leave stale files behind.
        cleanup.files.clear();
        remove_stale(out_dir, cleanup.lock, &manifest);
        let size = |p: &Path| fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        Ok(BuildReport {
            n_items: n,
            dim,
            widths: widths.to_vec(),
            store_bytes: size(&store_path),
            graph_bytes: size(&graph_path),
            store_seconds,
            graph_seconds,
            graph_layers: exported.meta.n_layers as usize,
            space: if learned.is_some() {
                crate::plan::Space::Learned
            } else {
                crate::plan::Space::Native
            },
            space_bytes,
            space_seconds,
            coverage: cover,
            tuned,
            tune_seconds,
        })
    }

    /// Splits the sample queries into fitting rows and held-out tuning queries, or without
    /// sample queries draws held-out pseudo-queries from the items.
    fn held_out(&self, source: &dyn VectorSource) -> Result<HeldOut, BuildError> {
        let n = source.len();
        let dim = source.dim();
        // Exact ground truth for the held-out queries costs n·dim multiply-adds each: keep it
        // near 2·10¹¹ in all (seconds on two cores), between 100 and 1,000 queries.
        let budget = (2e11 / (n as f64 * dim as f64)) as usize;
        let cap = budget.clamp(100, 1000);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(self.seed ^ 0x6865_6c64);
        match &self.sample_queries {
            Some(q) => {
                let nq = q.len();
                let h = (nq / 5).clamp(1, cap);
                let mut pick = sample(&mut rng, nq, h).into_vec();
                pick.sort_unstable();
                let mut queries = Vec::with_capacity(h * dim);
                let mut fit_rows = Vec::with_capacity((nq - h) * dim);
                let mut next = pick.iter().peekable();
                for (r, row) in q.rows.chunks_exact(dim).enumerate() {
                    if next.peek() == Some(&&r) {
                        next.next();
                        queries.extend_from_slice(row);
                    } else {
                        fit_rows.extend_from_slice(row);
                    }
                }
                Ok(HeldOut {
                    queries,
                    fit_rows: Some(fit_rows),
                    exclude_rows: None,
                    origin: q.origin.clone(),
                })
            }
            None => {
                let h = cap.min(n);
                let mut pick = sample(&mut rng, n, h).into_vec();
                pick.sort_unstable();
                let mut queries = vec![0f32; h * dim];
                for (i, &r) in pick.iter().enumerate() {
                    source.read_row(r, &mut queries[i * dim..(i + 1) * dim])?;
                }
                Ok(HeldOut {
                    queries,
                    fit_rows: None,
                    exclude_rows: Some(pick),
                    origin: source.origin(),
                })
            }
        }
    }
}

/// Held-out queries of a build and where they came from.
struct HeldOut {
    /// Row-major, full width.
    queries: Vec<f32>,
    /// Sample queries left for fitting the space (`None`: fit on the items alone).
    fit_rows: Option<Vec<f32>>,
    /// Pseudo-queries drawn from the items: the row each one is (to leave out of its own
    /// answer).
    exclude_rows: Option<Vec<usize>>,
    origin: String,
}

impl HeldOut {
    fn exclude_ids(&self, index: &Index) -> Option<Vec<u64>> {
        self.exclude_rows
            .as_ref()
            .map(|rows| rows.iter().map(|&r| index.store().id(r)).collect())
    }

    fn describe(&self) -> String {
        match self.exclude_rows {
            Some(_) => format!("held-out items of {} as queries", self.origin),
            None => format!("held-out sample queries of {}", self.origin),
        }
    }
}

/// Without sample queries the build tunes on held-out items for a miss rate this many times
/// smaller than the target's.
pub const FALLBACK_MISS_DIVISOR: f64 = 10.0;

/// Held-out queries each narrower width is tuned on at most.
const WIDTH_TUNE_QUERIES: usize = 300;

/// Held-out queries the coverage comparison uses at most.
const COVERAGE_QUERIES: usize = 500;
/// Items the coverage comparison samples at most.
const COVERAGE_ITEMS: usize = 20_000;

/// Sample queries a query-aware space needs: twice the code dimension, and at least 100.
pub fn min_sample_queries(code_dim: usize) -> usize {
    (2 * code_dim).max(100)
}

/// The first `coarse_dim` dims of every item, row-major.
pub(crate) fn native_prefix(
    source: &dyn VectorSource,
    coarse_dim: usize,
) -> Result<Vec<f32>, BuildError> {
    let n = source.len();
    let dim = source.dim();
    let mut coarse = vec![0f32; n * coarse_dim];
    coarse
        .par_chunks_mut(SCAN_CHUNK * coarse_dim)
        .enumerate()
        .try_for_each(|(chunk, out)| {
            let mut row = vec![0f32; dim];
            for (i, c) in out.chunks_exact_mut(coarse_dim).enumerate() {
                source.read_row(chunk * SCAN_CHUNK + i, &mut row)?;
                c.copy_from_slice(&row[..coarse_dim]);
            }
            Ok::<(), IngestError>(())
        })?;
    Ok(coarse)
}

/// Removes files written by a build that did not publish, and the directory if the build
/// created it. The writer lock it borrows outlives it: released after everything is removed.
struct Cleanup<'a> {
    files: Vec<PathBuf>,
    dir: Option<PathBuf>,
    lock: &'a WriterLock,
}

impl Cleanup<'_> {
    fn disarm(&mut self) {
        self.files.clear();
        self.dir = None;
    }
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        for f in &self.files {
            let _ = fs::remove_file(f);
        }
        if let Some(d) = &self.dir {
            // The lock file goes with the directory this build created, while still locked.
            self.lock.remove_lock_file();
            // Only succeeds if empty: never removes anything but what this build created.
            let _ = fs::remove_dir(d);
        }
    }
}

fn check_ids(ids: &[u64], n: usize) -> Result<(), BuildError> {
    if ids.len() != n {
        return Err(BuildError::IdCount {
            count: ids.len(),
            n,
        });
    }
    match first_duplicate(ids) {
        Some((id, first, second)) => Err(BuildError::DuplicateId { id, first, second }),
        None => Ok(()),
    }
}

/// The first id given twice: `(id, first row, second row)`.
pub(crate) fn first_duplicate(ids: &[u64]) -> Option<(u64, usize, usize)> {
    let mut seen: HashMap<u64, usize> = HashMap::with_capacity(ids.len());
    ids.iter()
        .enumerate()
        .find_map(|(row, &id)| seen.insert(id, row).map(|first| (id, first, row)))
}

/// Creates `dir` if needed (so that it can be locked). Returns whether it created it.
fn ensure_dir(dir: &Path) -> Result<bool, BuildError> {
    if dir.exists() {
        if !dir.is_dir() {
            return Err(BuildError::NotAnIndexDir {
                path: dir.to_path_buf(),
            });
        }
        return Ok(false);
    }
    fs::create_dir_all(dir).map_err(|source| BuildError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    Ok(true)
}

/// With the writer lock held: refuses a directory holding an index (unless `overwrite`) or
/// other files. The lock file and temporary files of crashed writers do not count.
fn check_dir(dir: &Path, overwrite: bool) -> Result<(), BuildError> {
    if manifest::manifest_path(dir).exists() {
        if !overwrite {
            return Err(BuildError::IndexExists {
                path: dir.to_path_buf(),
            });
        }
        return Ok(());
    }
    let entries = fs::read_dir(dir).map_err(|source| BuildError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    for e in entries {
        let e = e.map_err(|source| BuildError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let name = e.file_name();
        let name = name.to_string_lossy();
        // The lock, temporary files and data files of an unpublished generation (a first
        // build that crashed before its MANIFEST) are a writer's; anything else is the
        // user's, and the directory is refused.
        if !crate::lock::is_lock_file(&name)
            && !crate::atomic::is_temp_name(&name)
            && manifest::generation_of(&name).is_none()
        {
            return Err(BuildError::NotAnIndexDir {
                path: dir.to_path_buf(),
            });
        }
    }
    Ok(())
}

/// A generation number not used by any file in `dir`.
pub(crate) fn new_generation(dir: &Path) -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut g = now ^ (u64::from(std::process::id()) << 40);
    while dir.join(manifest::store_file_name(g)).exists()
        || dir.join(manifest::graph_file_name(g)).exists()
        || dir.join(manifest::space_file_name(g)).exists()
        || dir.join(crate::deletes::deletes_file_name(g)).exists()
    {
        g = g.wrapping_add(1);
    }
    g
}

pub(crate) fn header_crc_of(path: &Path) -> Result<u32, BuildError> {
    use std::io::Read;
    let mut head = [0u8; 64];
    fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .map_err(|source| BuildError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    let header: crate::format::FileHeader = bytemuck::pod_read_unaligned(&head);
    Ok(header.header_crc32)
}

/// Removes a first-format `DEFAULT_PLAN` (the new manifest carries the plans) and, under the
/// writer lock, data files of other generations and leftover temporary files (best effort).
fn remove_stale(dir: &Path, lock: &WriterLock, manifest: &Manifest) {
    let _ = fs::remove_file(dir.join(crate::default_plan::DEFAULT_PLAN_FILE));
    lock.remove_leftovers(Some(manifest));
}

const SCAN_CHUNK: usize = 4096;

/// Reads every row once, in parallel: rejects non-finite values (naming the first bad row and
/// column) and computes the per-band norms (band-major).
pub(crate) fn scan_source(
    source: &dyn VectorSource,
    widths: &[usize],
    progress: &dyn Progress,
) -> Result<Vec<f32>, BuildError> {
    let n = source.len();
    let dim = source.dim();
    let n_bands = widths.len();
    progress.stage("checking input", n as u64);
    let mut row_norms = vec![0f32; n * n_bands];
    row_norms
        .par_chunks_mut(SCAN_CHUNK * n_bands)
        .enumerate()
        .try_for_each(|(chunk, norms_out)| {
            let mut row = vec![0f32; dim];
            let first = chunk * SCAN_CHUNK;
            for (i, nrm) in norms_out.chunks_exact_mut(n_bands).enumerate() {
                let r = first + i;
                source.read_row(r, &mut row)?;
                if let Some((col, &value)) = row.iter().enumerate().find(|(_, v)| !v.is_finite()) {
                    return Err(BuildError::NonFinite {
                        origin: source.origin(),
                        row: r,
                        col,
                        value,
                    });
                }
                let mut start = 0;
                for (b, &end) in widths.iter().enumerate() {
                    let band = &row[start..end];
                    // Summed and rooted in f64, rounded once: the stored norms do not
                    // depend on the CPU's dot-product kernel.
                    let sq: f64 = band.iter().map(|&x| f64::from(x) * f64::from(x)).sum();
                    nrm[b] = sq.sqrt() as f32;
                    start = end;
                }
            }
            progress.advance((norms_out.len() / n_bands) as u64);
            Ok(())
        })
        .map_err(|e| first_error(e, source))?;
    progress.finish_stage();
    let mut norms = vec![0f32; n * n_bands];
    for r in 0..n {
        for b in 0..n_bands {
            norms[b * n + r] = row_norms[r * n_bands + b];
        }
    }
    Ok(norms)
}

/// Parallel chunks may report a later bad row first; rescan in order to name the first one.
fn first_error(e: BuildError, source: &dyn VectorSource) -> BuildError {
    let BuildError::NonFinite { row: found, .. } = &e else {
        return e;
    };
    let mut row = vec![0f32; source.dim()];
    for r in 0..*found {
        if source.read_row(r, &mut row).is_err() {
            break;
        }
        if let Some((col, &value)) = row.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return BuildError::NonFinite {
                origin: source.origin(),
                row: r,
                col,
                value,
            };
        }
    }
    e
}
