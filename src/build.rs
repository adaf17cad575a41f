//! [`IndexBuilder`]: from a [`VectorSource`] to a published index directory.
//!
//! ```text
//! source ──► scan (finite? norms per band, coarse prefixes) ──► store-<gen>.mrl
//!        ──► HNSW over the coarse prefixes (graph::build_graph) ──► graph-<gen>.mrl ──► MANIFEST
//! ```
//!
//! Data files get fresh names; `MANIFEST` is replaced atomically last, and files of older
//! generations are removed after it. A build that fails at any point removes what it wrote
//! and leaves the previous index, if any, as it was.

use crate::atomic::{sync_dir, AtomicFile};
use crate::graph::build::{
    build_graph, write_graph, BuildInfo, CoarseMetric, GraphBuilder, GraphParams, MAX_M,
};
use crate::ingest::{IngestError, VectorSource};
use crate::manifest::{self, ManifestMeta};
use crate::progress::Progress;
use crate::store::{validate_widths, write_store, StoreWriteError};
use rayon::prelude::*;
use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
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
    /// The thread pool could not be created.
    #[error("cannot start {threads} threads: {reason}")]
    ThreadPool {
        /// Threads asked for.
        threads: usize,
        /// Why it failed.
        reason: String,
    },
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
}

/// Builds indexes. Defaults: `m = 16`, `ef_construction = 200`, `coarse_dim = 64` (capped at
/// the full dimension), widths = powers of two from `coarse_dim` up to the full dimension,
/// seed 42, all cores.
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
        }
    }
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
        Ok(widths)
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
        let created_dir = prepare_dir(out_dir, self.overwrite)?;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(self.threads)
            .build()
            .map_err(|e| BuildError::ThreadPool {
                threads: self.threads,
                reason: e.to_string(),
            })?;
        let mut cleanup = Cleanup {
            files: Vec::new(),
            dir: created_dir.then(|| out_dir.to_path_buf()),
        };
        let report = pool
            .install(|| self.build_into(source, ids, &widths, out_dir, progress, &mut cleanup))?;
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
        cleanup: &mut Cleanup,
    ) -> Result<BuildReport, BuildError> {
        let n = source.len();
        let dim = source.dim();
        let t0 = Instant::now();
        let scan = scan_source(source, widths, self.coarse_dim, progress)?;
        let generation = new_generation(out_dir);
        let io_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| BuildError::Io { path, source }
        };

        let store_path = out_dir.join(manifest::store_file_name(generation));
        progress.stage("writing store", (n * widths.len()) as u64);
        let file = AtomicFile::create(&store_path).map_err(io_err(&store_path))?;
        let file = write_store(file, source, widths, &scan.norms, ids, |k| {
            progress.advance(k)
        })
        .map_err(|e| match e {
            StoreWriteError::Io(source) => BuildError::Io {
                path: store_path.clone(),
                source,
            },
            StoreWriteError::Ingest(e) => BuildError::Ingest(e),
        })?;
        cleanup.files.push(store_path.clone());
        file.commit().map_err(io_err(&store_path))?;
        progress.finish_stage();
        let store_seconds = t0.elapsed().as_secs_f64();

        let t1 = Instant::now();
        let params = GraphParams {
            m: self.m,
            ef_construction: self.ef_construction,
            seed: self.seed,
            metric: self.coarse_metric,
            builder: GraphBuilder::default(),
        };
        progress.stage("building coarse graph", n as u64);
        let exported = build_graph(&scan.coarse, self.coarse_dim, &params, &|k| {
            progress.advance(k)
        });
        progress.finish_stage();
        progress.stage("writing graph", 0);
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
        let meta = ManifestMeta {
            generation,
            n_items: n as u64,
            dim: dim as u32,
            coarse_dim: self.coarse_dim as u32,
            store_header_crc32: store_crc,
            graph_header_crc32: graph_crc,
        };
        let mpath = manifest::manifest_path(out_dir);
        crate::atomic::write_atomic(&mpath, &manifest::encode(&meta)).map_err(io_err(&mpath))?;
        // Published. From here on, failures only leave stale files behind.
        cleanup.files.clear();
        remove_stale(out_dir, &meta);
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
        })
    }
}

/// Removes files written by a build that did not publish.
struct Cleanup {
    files: Vec<PathBuf>,
    dir: Option<PathBuf>,
}

impl Cleanup {
    fn disarm(&mut self) {
        self.files.clear();
        self.dir = None;
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for f in &self.files {
            let _ = fs::remove_file(f);
        }
        if let Some(d) = &self.dir {
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
    let mut seen: HashMap<u64, usize> = HashMap::with_capacity(n);
    for (row, &id) in ids.iter().enumerate() {
        if let Some(first) = seen.insert(id, row) {
            return Err(BuildError::DuplicateId {
                id,
                first,
                second: row,
            });
        }
    }
    Ok(())
}

/// Creates `dir` if needed; refuses a directory holding an index (unless `overwrite`) or
/// other files. Returns whether it created the directory.
fn prepare_dir(dir: &Path, overwrite: bool) -> Result<bool, BuildError> {
    let io_err = |source| BuildError::Io {
        path: dir.to_path_buf(),
        source,
    };
    if !dir.exists() {
        fs::create_dir_all(dir).map_err(io_err)?;
        return Ok(true);
    }
    if !dir.is_dir() {
        return Err(BuildError::NotAnIndexDir {
            path: dir.to_path_buf(),
        });
    }
    if manifest::manifest_path(dir).exists() {
        if !overwrite {
            return Err(BuildError::IndexExists {
                path: dir.to_path_buf(),
            });
        }
        return Ok(false);
    }
    let mut entries = fs::read_dir(dir).map_err(io_err)?;
    if entries.next().is_some() {
        return Err(BuildError::NotAnIndexDir {
            path: dir.to_path_buf(),
        });
    }
    Ok(false)
}

/// A generation number not used by any file in `dir`.
fn new_generation(dir: &Path) -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut g = now ^ (u64::from(std::process::id()) << 40);
    while dir.join(manifest::store_file_name(g)).exists()
        || dir.join(manifest::graph_file_name(g)).exists()
    {
        g = g.wrapping_add(1);
    }
    g
}

fn header_crc_of(path: &Path) -> Result<u32, BuildError> {
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

/// Removes data files of other generations and leftover temporary files (best effort).
fn remove_stale(dir: &Path, meta: &ManifestMeta) {
    let keep = [meta.store_file(), meta.graph_file()];
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if manifest::is_data_file(&name) && !keep.contains(&name) {
                let _ = fs::remove_file(e.path());
            }
        }
    }
    let _ = sync_dir(dir);
}

/// What the scan pass learns about the input.
struct Scan {
    /// Band-major per-band norms.
    norms: Vec<f32>,
    /// Row-major coarse prefixes, `n × coarse_dim`.
    coarse: Vec<f32>,
}

const SCAN_CHUNK: usize = 4096;

/// Reads every row once, in parallel: rejects non-finite values (naming the first bad row and
/// column), computes per-band norms and copies the coarse prefixes.
fn scan_source(
    source: &dyn VectorSource,
    widths: &[usize],
    coarse_dim: usize,
    progress: &dyn Progress,
) -> Result<Scan, BuildError> {
    let n = source.len();
    let dim = source.dim();
    let n_bands = widths.len();
    progress.stage("checking input", n as u64);
    let mut coarse = vec![0f32; n * coarse_dim];
    let mut row_norms = vec![0f32; n * n_bands];
    coarse
        .par_chunks_mut(SCAN_CHUNK * coarse_dim)
        .zip(row_norms.par_chunks_mut(SCAN_CHUNK * n_bands))
        .enumerate()
        .try_for_each(|(chunk, (coarse_out, norms_out))| {
            let mut row = vec![0f32; dim];
            let first = chunk * SCAN_CHUNK;
            for (i, (c, nrm)) in coarse_out
                .chunks_exact_mut(coarse_dim)
                .zip(norms_out.chunks_exact_mut(n_bands))
                .enumerate()
            {
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
                c.copy_from_slice(&row[..coarse_dim]);
                let mut start = 0;
                for (b, &end) in widths.iter().enumerate() {
                    let band = &row[start..end];
                    nrm[b] = crate::simd::dot(band, band).sqrt();
                    start = end;
                }
            }
            progress.advance(coarse_out.len() as u64 / coarse_dim as u64);
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
    Ok(Scan { norms, coarse })
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
