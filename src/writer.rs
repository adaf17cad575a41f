//! [`IndexWriter`]: changes a published index without rebuilding it: add items (a new delta
//! segment), delete items (a new deletion file), replace items (both in one generation), and
//! compact (a new base of the live items, deltas and deleted rows dropped).
//!
//! ```text
//! IndexWriter::open(dir)      takes LOCK (a second writer is refused at once), removes
//!                             what a crashed writer left (temporary and unnamed data files)
//!   .add(items, ids, replace) store-<d>.mrl [space-<d>.mrl] [graph-<d>.mrl] [deleted-<x>.mrl]
//!   .delete(ids)              deleted-<x>.mrl
//!   .compact(options)         store/space/graph-<b'>.mrl, plan kept or retuned
//!        each: new files under fresh names, fsynced ──► MANIFEST replaced atomically
//!              ──► files no MANIFEST names any more removed
//! ```
//!
//! Readers never take the lock and never wait: they read `MANIFEST` and map what it names,
//! so they see the generation before a change or the one after, never a mix. A process
//! killed at any point leaves the last published generation intact; the files it had written
//! are not named by `MANIFEST` and the next writer removes them.

use crate::atomic::AtomicFile;
use crate::build::{
    first_duplicate, header_crc_of, native_prefix, new_generation, scan_source, BuildError,
    BuildReport, IndexBuilder, Reuse, SampleQueries, SpaceChoice,
};
use crate::deletes::{self, DeleteBits};
use crate::graph::build::{build_graph, write_graph, BuildInfo, CoarseMetric, GraphParams};
use crate::index::{read_manifest, IndexError};
use crate::ingest::{IngestError, VectorSource};
use crate::lock::{LockError, WriterLock};
use crate::manifest::{self, DeltaRef, Manifest, DELTA_HAS_GRAPH, DELTA_HAS_SPACE};
use crate::plan::Space;
use crate::progress::{NoProgress, Progress};
use crate::segment::DELTA_GRAPH_MIN_ITEMS;
use crate::space::learn::{encode_items, Fitted};
use crate::space::write_space;
use crate::store::write_store;
use crate::Index;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// A change to an index that cannot be made. Nothing was published: the index is as it was.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The index cannot be opened.
    #[error(transparent)]
    Index(#[from] IndexError),
    /// Another writer holds the index.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// Compaction's build failed.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// Reading the new items failed.
    #[error(transparent)]
    Ingest(#[from] IngestError),
    /// Writing a file failed (a full disk, for one).
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The new items' width is not the index's.
    #[error("{origin}: the items have {got} dims, the index {expected}")]
    Dimension {
        /// The items' file.
        origin: String,
        /// The index's dimension.
        expected: usize,
        /// The items'.
        got: usize,
    },
    /// No items to add.
    #[error("{origin}: no items to add")]
    Empty {
        /// The items' file.
        origin: String,
    },
    /// More items than one segment holds.
    #[error("{origin}: {n} items; one add takes at most {max}")]
    TooMany {
        /// The items' file.
        origin: String,
        /// Items given.
        n: usize,
        /// The limit.
        max: usize,
    },
    /// The ids are not one per item.
    #[error("{count} ids for {n} items: give one id per item")]
    IdCount {
        /// Ids given.
        count: usize,
        /// Items given.
        n: usize,
    },
    /// An id appears twice among the new items.
    #[error("id {id} appears twice among the new items (rows {first} and {second})")]
    DuplicateId {
        /// The id.
        id: u64,
        /// Its first row.
        first: usize,
        /// Its second row.
        second: usize,
    },
    /// New ids collide with live items and replacing was not asked for.
    #[error(
        "id {id} is already a live item of the index ({count} of the new ids are): replace them \
         (`--replace`) or choose other ids"
    )]
    IdExists {
        /// The first colliding id.
        id: u64,
        /// How many collide.
        count: usize,
    },
    /// Ids to delete that are not live items.
    #[error("id {id} is not a live item of the index ({count} of the ids given are not); nothing was deleted (`--missing-ok` deletes the others)")]
    UnknownId {
        /// The first unknown id.
        id: u64,
        /// How many are unknown.
        count: usize,
    },
    /// Too many delta segments.
    #[error("the index already has {n} delta segments (at most {max}): compact it first")]
    TooManyDeltas {
        /// Deltas now.
        n: usize,
        /// The limit.
        max: usize,
    },
    /// Nothing is left to compact into a base.
    #[error("every item of the index is deleted: a compacted base needs at least one live item")]
    NothingLive,
}

/// What [`IndexWriter::add`] published.
#[derive(Debug, Clone, PartialEq)]
pub struct AddReport {
    /// Items added.
    pub added: usize,
    /// Of them, replacements of live items (whose old rows are now deleted).
    pub replaced: usize,
    /// The new delta's generation.
    pub generation: u64,
    /// Whether the delta got its own graph (else it is scanned exactly).
    pub graph: bool,
    /// Bytes of the delta's files.
    pub bytes: u64,
    /// Wall time, seconds.
    pub seconds: f64,
}

/// What [`IndexWriter::delete`] published.
#[derive(Debug, Clone, PartialEq)]
pub struct DeleteReport {
    /// Live items deleted.
    pub deleted: usize,
    /// Ids given that were not live items (only with `missing_ok`).
    pub missing: usize,
}

/// What [`IndexWriter::compact`] did.
#[derive(Debug)]
pub struct CompactReport {
    /// Live items in the new base.
    pub items: usize,
    /// Deleted rows dropped.
    pub dropped: usize,
    /// Delta segments merged.
    pub merged_deltas: usize,
    /// The build of the new base (`None`: the index was already compact and nothing was
    /// asked to be refreshed).
    pub build: Option<BuildReport>,
}

/// How [`IndexWriter::compact`] refreshes the learned space and the default plan.
#[derive(Debug, Clone, Default)]
pub struct CompactOptions {
    /// Sample queries: the learned space is refitted and the plan retuned on them, as a
    /// fresh build does. Without them the base's maps re-encode every live item and its
    /// plan is kept (the layout does not change).
    pub sample_queries: Option<SampleQueries>,
    /// The recall@10 to retune for (with sample queries; default 0.95).
    pub target_recall: Option<f64>,
    /// Rebuild even an index with no delta and nothing deleted.
    pub force: bool,
}

/// The one writer of an index directory. Holds the directory's `LOCK` from
/// [`IndexWriter::open`] until dropped; every change publishes a new `MANIFEST`.
pub struct IndexWriter {
    dir: PathBuf,
    lock: WriterLock,
    threads: usize,
    graph_threshold: usize,
}

impl std::fmt::Debug for IndexWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IndexWriter")
            .field("dir", &self.dir)
            .finish()
    }
}

/// Files written but not yet named by a published `MANIFEST`: removed if dropped armed.
struct Unpublished(Vec<PathBuf>);

impl Drop for Unpublished {
    fn drop(&mut self) {
        for f in &self.0 {
            let _ = fs::remove_file(f);
        }
    }
}

impl IndexWriter {
    /// Opens the index in `dir` for writing: takes its lock (a second writer fails at once
    /// with [`WriteError::Lock`], naming the holder), then removes what a crashed writer
    /// left.
    pub fn open(dir: impl AsRef<Path>) -> Result<IndexWriter, WriteError> {
        let dir = dir.as_ref().to_path_buf();
        // An index must exist: refuse before creating a lock file in a stray directory.
        let manifest = read_manifest(&dir)?;
        let lock = WriterLock::acquire(&dir)?;
        lock.remove_leftovers(Some(&manifest));
        // Read again under the lock: what it names is what the next change builds on.
        let manifest = read_manifest(&dir)?;
        lock.remove_leftovers(Some(&manifest));
        Ok(IndexWriter {
            dir,
            lock,
            threads: 0,
            graph_threshold: DELTA_GRAPH_MIN_ITEMS,
        })
    }

    /// Threads for building graphs and compacting (0: all cores).
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = threads;
        self
    }

    /// The smallest added batch that gets its own graph (default
    /// [`DELTA_GRAPH_MIN_ITEMS`]); smaller deltas are scanned exactly at search time.
    pub fn graph_threshold(mut self, items: usize) -> Self {
        self.graph_threshold = items.max(1);
        self
    }

    /// The index directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn current(&self) -> Result<(Manifest, Index), WriteError> {
        let manifest = read_manifest(&self.dir)?;
        let index = Index::open_from(&self.dir, manifest.clone(), Default::default())?;
        Ok((manifest, index))
    }

    /// Adds `items` (with external `ids`, one per row; without, ids continue after the
    /// largest id the index ever held) as a new delta segment. An id of a live item is an
    /// error unless `replace`, which deletes the old row in the same generation.
    pub fn add(
        &mut self,
        items: &dyn VectorSource,
        ids: Option<&[u64]>,
        replace: bool,
    ) -> Result<AddReport, WriteError> {
        let t0 = Instant::now();
        let (current, index) = self.current()?;
        let origin = items.origin();
        let n = items.len();
        if items.dim() != index.dim() {
            return Err(WriteError::Dimension {
                origin,
                expected: index.dim(),
                got: items.dim(),
            });
        }
        if n == 0 {
            return Err(WriteError::Empty { origin });
        }
        let max = u32::MAX as usize - 1;
        if n > max {
            return Err(WriteError::TooMany { origin, n, max });
        }
        let deltas = index.deltas().len();
        if deltas >= manifest::MAX_DELTAS {
            return Err(WriteError::TooManyDeltas {
                n: deltas,
                max: manifest::MAX_DELTAS,
            });
        }
        let ids: Vec<u64> = match ids {
            Some(ids) => {
                check_ids(ids, n)?;
                ids.to_vec()
            }
            None => {
                let next = max_id(&index).map_or(0, |m| m.saturating_add(1));
                (0..n as u64).map(|i| next.saturating_add(i)).collect()
            }
        };
        let mut bits = segment_bits(&index);
        let lens = segment_lens(&index);
        let mut clash: Option<(u64, usize)> = None;
        let mut replaced = 0;
        for &id in &ids {
            if let Some((seg, row)) = index.locate(id) {
                if replace {
                    bits[seg].insert(row, lens[seg]);
                    replaced += 1;
                } else {
                    let c = clash.get_or_insert((id, 0));
                    c.1 += 1;
                }
            }
        }
        if let Some((id, count)) = clash {
            return Err(WriteError::IdExists { id, count });
        }
        let mut unpublished = Unpublished(Vec::new());
        let generation = new_generation(&self.dir);
        let pool = crate::threads::pool(self.threads).map_err(BuildError::from)?;
        let delta = pool.install(|| {
            write_delta(
                &self.dir,
                generation,
                items,
                &ids,
                &index,
                self.graph_threshold,
                &mut unpublished,
            )
        })?;
        let mut next = current.clone();
        let mut segments = next.segments.take().unwrap_or_default();
        segments.deltas.push(delta);
        bits.push(DeleteBits::none());
        if replaced > 0 {
            segments.deletes = Some(self.write_deletes(&bits, &mut unpublished)?);
        }
        next.segments = Some(segments);
        self.publish(&next, unpublished)?;
        let size = |name: String| fs::metadata(self.dir.join(name)).map_or(0, |m| m.len());
        Ok(AddReport {
            added: n,
            replaced,
            generation,
            graph: delta.has_graph(),
            bytes: size(manifest::store_file_name(generation))
                + size(manifest::space_file_name(generation))
                + size(manifest::graph_file_name(generation)),
            seconds: t0.elapsed().as_secs_f64(),
        })
    }

    /// Deletes the live items `ids`. An id that is not a live item is an error (nothing is
    /// deleted) unless `missing_ok`.
    pub fn delete(&mut self, ids: &[u64], missing_ok: bool) -> Result<DeleteReport, WriteError> {
        let (current, index) = self.current()?;
        let mut bits = segment_bits(&index);
        let lens = segment_lens(&index);
        let mut missing: Option<(u64, usize)> = None;
        let mut deleted = 0;
        for &id in ids {
            match index.locate(id) {
                Some((seg, row)) => deleted += usize::from(bits[seg].insert(row, lens[seg])),
                None => missing.get_or_insert((id, 0)).1 += 1,
            }
        }
        if let (Some((id, count)), false) = (missing, missing_ok) {
            return Err(WriteError::UnknownId { id, count });
        }
        let missing = missing.map_or(0, |m| m.1);
        if deleted == 0 {
            return Ok(DeleteReport { deleted, missing });
        }
        let mut unpublished = Unpublished(Vec::new());
        let mut next = current.clone();
        let mut segments = next.segments.take().unwrap_or_default();
        segments.deletes = Some(self.write_deletes(&bits, &mut unpublished)?);
        next.segments = Some(segments);
        self.publish(&next, unpublished)?;
        Ok(DeleteReport { deleted, missing })
    }

    /// Merges every delta and drops every deleted row into a new base, built like the first
    /// (the base's widths, coarse width, graph parameters and seed). Readers are not
    /// blocked: they keep the old generation's files until they refresh. Peak extra disk is
    /// the new base, written beside the old one until `MANIFEST` names it.
    pub fn compact(
        &mut self,
        options: &CompactOptions,
        progress: &dyn Progress,
    ) -> Result<CompactReport, WriteError> {
        let index = self.current()?.1;
        let dropped = index.deleted_count();
        let merged_deltas = index.deltas().len();
        if index.is_compacted() && !options.force && options.sample_queries.is_none() {
            return Ok(CompactReport {
                items: index.len(),
                dropped,
                merged_deltas,
                build: None,
            });
        }
        let live = LiveRows::new(&index);
        if live.rows.is_empty() {
            return Err(WriteError::NothingLive);
        }
        let graph = index.graph();
        let info = graph.build_info();
        let layout = index.layout();
        let widths = index.widths();
        let learned = layout.coarse_space == Space::Learned;
        let native_coarse = if learned {
            // The build takes the native coarse width and cuts the code's to it.
            widths
                .iter()
                .copied()
                .find(|&w| w >= layout.coarse_width)
                .unwrap_or(widths[0])
        } else {
            layout.coarse_width
        };
        let mut builder = IndexBuilder::new()
            .widths(widths)
            .coarse_dim(native_coarse)
            .m(graph.meta().m as usize)
            .coarse_metric(metric_of(graph))
            .threads(self.threads)
            .overwrite(true)
            .space(if learned {
                SpaceChoice::Learned
            } else {
                SpaceChoice::Native
            });
        if let Some(info) = &info {
            builder = builder
                .ef_construction(info.ef_construction as usize)
                .seed(info.seed);
        }
        if let Some(space) = index.space() {
            builder = builder.code_dim(space.code_dim());
        }
        builder = match &options.sample_queries {
            Some(q) => builder
                .sample_queries(q.clone())
                .target_recall(Some(options.target_recall.unwrap_or(0.95))),
            None => builder.target_recall(None).reuse(Reuse {
                fitted: index.space().map(Fitted::of_space),
                // The plan the base answers with: MANIFEST's, or a first-format
                // DEFAULT_PLAN file's (which the new base's manifest then carries).
                plan: index.tuned().map(|t| t.to_text()),
            }),
        };
        let ids: Vec<u64> = live.ids.clone();
        let report = builder.build_locked(&live, Some(&ids), &self.dir, progress, &self.lock)?;
        Ok(CompactReport {
            items: live.rows.len(),
            dropped,
            merged_deltas,
            build: Some(report),
        })
    }

    fn write_deletes(
        &self,
        bits: &[DeleteBits],
        unpublished: &mut Unpublished,
    ) -> Result<(u64, u32), WriteError> {
        let generation = new_generation(&self.dir);
        let path = self.dir.join(deletes::deletes_file_name(generation));
        let refs: Vec<&DeleteBits> = bits.iter().collect();
        let bytes = deletes::encode(&refs);
        unpublished.0.push(path.clone());
        crate::atomic::write_atomic(&path, &bytes).map_err(io_err(&path))?;
        Ok((generation, header_crc_of(&path)?))
    }

    /// Publishes `next` (files already written and fsynced), then removes what no longer
    /// belongs to it.
    fn publish(&self, next: &Manifest, mut unpublished: Unpublished) -> Result<(), WriteError> {
        let path = manifest::manifest_path(&self.dir);
        if let Err(e) = crate::atomic::write_atomic(&path, &manifest::encode(next)) {
            // Failed after the rename: published, so its files stay.
            if manifest::is_published(&self.dir, next) {
                unpublished.0.clear();
            }
            return Err(io_err(&path)(e));
        }
        unpublished.0.clear();
        self.lock.remove_leftovers(Some(next));
        Ok(())
    }
}

/// A file error naming `path`.
fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> WriteError + '_ {
    move |source| WriteError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The neighbour selection a graph was built with (its stored metric code).
fn metric_of(graph: &crate::graph::CoarseGraph) -> CoarseMetric {
    if graph.meta().metric == CoarseMetric::ReducedL2.code() {
        CoarseMetric::ReducedL2
    } else {
        CoarseMetric::InnerProduct
    }
}

/// Each segment's deleted rows (base first), to be extended.
fn segment_bits(index: &Index) -> Vec<DeleteBits> {
    std::iter::once(index.base_deleted().clone())
        .chain(index.deltas().iter().map(|d| d.deleted().clone()))
        .collect()
}

/// Each segment's row count (base first).
fn segment_lens(index: &Index) -> Vec<usize> {
    std::iter::once(index.store().len())
        .chain(index.deltas().iter().map(|d| d.store().len()))
        .collect()
}

/// The largest id any row of any segment has (deleted rows included, so an id is not
/// handed out again until a compaction drops the deleted rows that held it).
fn max_id(index: &Index) -> Option<u64> {
    std::iter::once(index.store())
        .chain(index.deltas().iter().map(|d| d.store()))
        .filter_map(|s| s.max_id())
        .max()
}

fn check_ids(ids: &[u64], n: usize) -> Result<(), WriteError> {
    if ids.len() != n {
        return Err(WriteError::IdCount {
            count: ids.len(),
            n,
        });
    }
    match first_duplicate(ids) {
        Some((id, first, second)) => Err(WriteError::DuplicateId { id, first, second }),
        None => Ok(()),
    }
}

/// The largest code a delta stores without rescaling its maps: half of binary16's largest
/// finite value.
const HALF_SAFE: f32 = 32_768.0;

/// Writes a delta segment's files under `generation`: the store, the codes in the base's
/// learned space, and a graph if it holds at least `graph_threshold` items.
fn write_delta(
    dir: &Path,
    generation: u64,
    items: &dyn VectorSource,
    ids: &[u64],
    index: &Index,
    graph_threshold: usize,
    unpublished: &mut Unpublished,
) -> Result<DeltaRef, WriteError> {
    let n = items.len();
    let widths = index.widths();
    let norms = scan_source(items, &widths, &NoProgress)?;
    let store_path = dir.join(manifest::store_file_name(generation));
    unpublished.0.push(store_path.clone());
    let file = AtomicFile::create(&store_path).map_err(io_err(&store_path))?;
    let file =
        write_store(file, items, &widths, &norms, Some(ids), |_| {}).map_err(|e| match e {
            crate::store::StoreWriteError::Io(source) => WriteError::Io {
                path: store_path.clone(),
                source,
            },
            crate::store::StoreWriteError::Ingest(e) => WriteError::Ingest(e),
        })?;
    file.commit().map_err(io_err(&store_path))?;
    drop(norms);
    let layout = index.layout();
    let mut flags = 0;
    let mut space_crc = 0;
    let coarse = match index.space() {
        Some(space) => {
            let mut fitted = Fitted::of_space(space);
            let d = fitted.code_dim;
            let mut codes = encode_items(items, &fitted.item_map, d, &|_| {})
                .map_err(|e| WriteError::Build(e.into()))?;
            // Items far larger than the base's would leave half precision's range (65,504):
            // only then are the delta's maps rescaled by a power of two (item map down,
            // query map up), which leaves every product unchanged. Otherwise the maps stay
            // the base's, bit for bit, and searches reuse the base's query code.
            let max = codes.iter().fold(0f32, |m, c| m.max(c.abs()));
            if max > HALF_SAFE || !max.is_finite() {
                fitted.scale_codes(&mut codes);
            }
            // Stored in half precision; the graph is built on the codes as searches read them.
            for c in codes.iter_mut() {
                *c = half::f16::from_f32(*c).to_f32();
            }
            let path = dir.join(manifest::space_file_name(generation));
            unpublished.0.push(path.clone());
            let file = AtomicFile::create(&path).map_err(io_err(&path))?;
            let file = write_space(file, &fitted, space.widths(), &codes, space.meta().seed)
                .map_err(io_err(&path))?;
            file.commit().map_err(io_err(&path))?;
            space_crc = header_crc_of(&path)?;
            flags |= DELTA_HAS_SPACE;
            let w = layout.coarse_width;
            codes
                .chunks_exact(d)
                .flat_map(|c| c[..w].iter().copied())
                .collect()
        }
        None => native_prefix(items, layout.coarse_width)?,
    };
    let mut graph_crc = 0;
    if n >= graph_threshold {
        let base = index.graph();
        let info = base.build_info();
        let params = GraphParams {
            m: base.meta().m as usize,
            ef_construction: info.as_ref().map_or(200, |i| i.ef_construction as usize),
            seed: info.as_ref().map_or(42, |i| i.seed),
            metric: metric_of(base),
            ..GraphParams::default()
        };
        let t = Instant::now();
        let mut exported = build_graph(&coarse, layout.coarse_width, &params, &|_| {});
        exported.meta.space = u32::from(index.space().is_some());
        let info = BuildInfo {
            crate_version: env!("CARGO_PKG_VERSION").to_string(),
            builder: params.builder.label(),
            m: params.m as u32,
            ef_construction: params.ef_construction as u32,
            max_layer: crate::graph::build::MAX_LAYER as u32,
            seed: params.seed,
            threads: rayon::current_num_threads() as u32,
            build_seconds: t.elapsed().as_secs_f64(),
        };
        let path = dir.join(manifest::graph_file_name(generation));
        unpublished.0.push(path.clone());
        let file = AtomicFile::create(&path).map_err(io_err(&path))?;
        let file = write_graph(file, &exported, &info).map_err(io_err(&path))?;
        file.commit().map_err(io_err(&path))?;
        graph_crc = header_crc_of(&path)?;
        flags |= DELTA_HAS_GRAPH;
    }
    Ok(DeltaRef {
        generation,
        n_items: n as u64,
        store_header_crc32: header_crc_of(&store_path)?,
        space_header_crc32: space_crc,
        graph_header_crc32: graph_crc,
        flags,
    })
}

/// The live rows of an index, base first, as a [`VectorSource`] for compaction.
struct LiveRows<'a> {
    index: &'a Index,
    /// `(segment, row)`.
    rows: Vec<(usize, u32)>,
    ids: Vec<u64>,
}

impl<'a> LiveRows<'a> {
    fn new(index: &'a Index) -> LiveRows<'a> {
        let mut rows = Vec::with_capacity(index.len());
        let mut ids = Vec::with_capacity(index.len());
        let mut segment = |seg: usize, store: &crate::store::Store, deleted: &DeleteBits| {
            for r in 0..store.len() as u32 {
                if !deleted.contains(r) {
                    rows.push((seg, r));
                    ids.push(store.id(r as usize));
                }
            }
        };
        segment(0, index.store(), index.base_deleted());
        for (i, d) in index.deltas().iter().enumerate() {
            segment(i + 1, d.store(), d.deleted());
        }
        LiveRows { index, rows, ids }
    }
}

impl VectorSource for LiveRows<'_> {
    fn len(&self) -> usize {
        self.rows.len()
    }
    fn dim(&self) -> usize {
        self.index.dim()
    }
    fn read_row(&self, row: usize, out: &mut [f32]) -> Result<(), IngestError> {
        let (seg, r) = self.rows[row];
        if let Some(store) = self.index.segment_store(seg) {
            store.read_vector(r as usize, out);
        }
        Ok(())
    }
    fn origin(&self) -> String {
        format!("the live items of {}", self.index.dir().display())
    }
}
