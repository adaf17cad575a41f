//! [`Index`]: an opened index directory, the type query services hold.

use crate::bytes::Bytes;
use crate::default_plan::DefaultPlan;
use crate::deletes::DeleteBits;
use crate::exact;
use crate::format::FormatError;
use crate::graph::CoarseGraph;
use crate::manifest::{self, Manifest, ManifestMeta};
use crate::plan::{IndexLayout, SearchPlan, Space};
use crate::search::{self, check_query, Filter, Hit, Scratch, SearchError, SearchParams, Share};
use crate::segment::Delta;
use crate::space::LearnedSpace;
use crate::store::Store;
use rayon::prelude::*;
use std::cell::RefCell;
use std::path::{Path, PathBuf};

/// An index that cannot be opened or verified.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// The directory does not exist.
    #[error("{path}: no such index directory")]
    NotFound {
        /// The directory.
        path: PathBuf,
    },
    /// The directory holds no `MANIFEST`.
    #[error("{path}: not an mrl-index directory (no MANIFEST file)")]
    NotAnIndex {
        /// The directory.
        path: PathBuf,
    },
    /// Reading a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A file is malformed or corrupt.
    #[error(transparent)]
    Format(#[from] FormatError),
    /// Another writer holds the index directory, or its writer lock cannot be taken
    /// (retuning with [`Index::publish_default_plan`]).
    #[error(transparent)]
    Lock(#[from] crate::lock::LockError),
    /// The files of the index disagree with each other.
    #[error("{dir}: inconsistent index: {what}")]
    Inconsistent {
        /// The index directory.
        dir: PathBuf,
        /// What disagrees.
        what: String,
    },
}

/// A read-only, memory-mapped index: the embedding store, the coarse graph and, for models
/// whose native prefixes are weak, the learned coarse space; in a live index also the delta
/// segments of items added since the base was built and the deleted rows
/// ([`crate::segment`]).
///
/// `Index` is `Send + Sync`: share it (e.g. in an `Arc`) between query threads. Opening costs
/// the same for ten items or ten million: files are mapped and only their headers are read
/// (and a live index's deletion bitmaps, `n/8` bytes). An open index keeps the generation it
/// opened; [`Index::refresh`] moves to the newest.
pub struct Index {
    dir: PathBuf,
    manifest: Manifest,
    store: Store,
    graph: CoarseGraph,
    space: Option<LearnedSpace>,
    /// The base's deleted rows.
    base_deleted: DeleteBits,
    deltas: Vec<Delta>,
    /// Items not deleted, over every segment.
    live: usize,
    layout: IndexLayout,
    default_plan: SearchPlan,
    /// The default plan cut to each nested width, `(width, plan)`, made once at open so
    /// that searches of a narrower answer width allocate nothing.
    width_plans: Vec<(usize, SearchPlan)>,
    default_ef: Option<usize>,
    tuned: Option<DefaultPlan>,
    resident_coarse: bool,
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index")
            .field("dir", &self.dir)
            .field("store", &self.store)
            .field("graph", &self.graph)
            .finish()
    }
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::new());
}

/// Reads and decodes the `MANIFEST` of the index directory `dir`.
pub(crate) fn read_manifest(dir: &Path) -> Result<Manifest, IndexError> {
    if !dir.is_dir() {
        return Err(IndexError::NotFound {
            path: dir.to_path_buf(),
        });
    }
    let mpath = manifest::manifest_path(dir);
    let mbytes = match manifest::read_bytes(&mpath) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(IndexError::NotAnIndex {
                path: dir.to_path_buf(),
            })
        }
        Err(e) => return Err(read_err(&mpath)(e)),
    };
    Ok(manifest::decode(&mbytes, &mpath.display().to_string())?)
}

fn read_err(path: &Path) -> impl FnOnce(std::io::Error) -> IndexError + '_ {
    move |source| IndexError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// How [`Index::open_with`] holds the index in memory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpenOptions {
    /// Copy the coarse prefix bands and the coarse graph out of the mapped files into
    /// anonymous memory advised for transparent huge pages. The coarse search reads both
    /// at random; with 4 KiB pages most of its reads also miss the TLB once the index
    /// outgrows the caches. Costs `n × coarse_dim × 4` bytes plus the graph file's size in
    /// resident (not reclaimable) memory and one sequential read of both at open; the
    /// wider bands stay mapped. Results are identical either way.
    pub resident_coarse: bool,
}

impl Index {
    /// Opens the index in `dir`: reads `MANIFEST`, maps the store and graph files and checks
    /// their structure (not their checksums: see [`Index::verify`]).
    pub fn open(dir: impl AsRef<Path>) -> Result<Index, IndexError> {
        Index::open_with(dir, OpenOptions::default())
    }

    /// [`Index::open`] with options.
    ///
    /// A writer may publish a new generation and remove files of the old one between
    /// reading `MANIFEST` and mapping the files it names. If a data file is missing, the
    /// manifest is read again and, if it changed, the generation it names is opened (once);
    /// otherwise the error stands.
    pub fn open_with(dir: impl AsRef<Path>, options: OpenOptions) -> Result<Index, IndexError> {
        let dir = dir.as_ref();
        let manifest = read_manifest(dir)?;
        Index::open_from(dir, manifest, options)
    }

    /// Opens the generation `manifest` (read from `dir` by [`read_manifest`]) names, retrying
    /// once from a newly read manifest if its files are gone and the generation changed.
    pub(crate) fn open_from(
        dir: &Path,
        manifest: Manifest,
        options: OpenOptions,
    ) -> Result<Index, IndexError> {
        let read = manifest.clone();
        match Index::assemble(dir, manifest, options, true) {
            Err(IndexError::Io { path, source })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                let again = read_manifest(dir)?;
                if again == read {
                    return Err(IndexError::Io { path, source });
                }
                Index::assemble(dir, again, options, true)
            }
            opened => opened,
        }
    }

    /// Opens the data files `manifest` names in `dir` (the manifest itself may not be
    /// published yet: a build tunes its plan through this before publishing, with
    /// `legacy_plan` false so that a first-format `DEFAULT_PLAN` left there is not read).
    pub(crate) fn assemble(
        dir: &Path,
        manifest: Manifest,
        options: OpenOptions,
        legacy_plan: bool,
    ) -> Result<Index, IndexError> {
        let mpath = manifest::manifest_path(dir);
        let meta = manifest.meta;
        let spath = dir.join(meta.store_file());
        let gpath = dir.join(meta.graph_file());
        let mut store = Store::from_bytes(
            Bytes::map_file(&spath).map_err(read_err(&spath))?,
            &spath.display().to_string(),
        )?;
        let mut graph_bytes = Bytes::map_file(&gpath).map_err(read_err(&gpath))?;
        if options.resident_coarse {
            graph_bytes = Bytes::copy_to_huge_pages(&graph_bytes).map_err(read_err(&gpath))?;
        }
        let graph = CoarseGraph::from_bytes(graph_bytes, &gpath.display().to_string())?;
        let space = match &manifest.space {
            Some(_) => {
                let path = dir.join(meta.space_file());
                let space = LearnedSpace::from_bytes(
                    Bytes::map_file(&path).map_err(read_err(&path))?,
                    &path.display().to_string(),
                )?;
                Some(space)
            }
            None => None,
        };
        let inconsistent = |what: String| IndexError::Inconsistent {
            dir: dir.to_path_buf(),
            what,
        };
        if store.container().header().header_crc32 != meta.store_header_crc32
            || graph.container().header().header_crc32 != meta.graph_header_crc32
        {
            return Err(inconsistent(
                "the store or graph file is not the one MANIFEST names (header checksums differ)"
                    .into(),
            ));
        }
        if store.dim() as u64 != u64::from(meta.dim) {
            return Err(inconsistent(format!(
                "the manifest's dimension {} is not the store's {}",
                meta.dim,
                store.dim()
            )));
        }
        if store.len() as u64 != meta.n_items || graph.len() != store.len() {
            return Err(inconsistent(format!(
                "item counts differ: manifest {}, store {}, graph {}",
                meta.n_items,
                store.len(),
                graph.len()
            )));
        }
        let coarse_dim = graph.meta().coarse_dim as usize;
        if meta.coarse_dim as usize != coarse_dim {
            return Err(inconsistent(format!(
                "the manifest's coarse width {} is not the graph's {coarse_dim}",
                meta.coarse_dim
            )));
        }
        let layout = match (&space, &manifest.space) {
            (Some(space), Some(sref)) => {
                if space.container().header().header_crc32 != sref.header_crc32 {
                    return Err(inconsistent(
                        "the space file is not the one MANIFEST names (header checksums differ)"
                            .into(),
                    ));
                }
                if space.len() != store.len() || space.dim() != store.dim() {
                    return Err(inconsistent(format!(
                        "the space holds {} codes of {}-d vectors, the store {} of {}-d",
                        space.len(),
                        space.dim(),
                        store.len(),
                        store.dim()
                    )));
                }
                if graph.space() != Space::Learned || space.widths()[0] != coarse_dim {
                    return Err(inconsistent(format!(
                        "the graph must be built on the learned code's first band ({} dims)",
                        space.widths()[0]
                    )));
                }
                IndexLayout {
                    widths: store.widths(),
                    code_widths: space.widths().to_vec(),
                    coarse_space: Space::Learned,
                    coarse_width: coarse_dim,
                }
            }
            _ => {
                if graph.space() != Space::Native || store.bands_for_width(coarse_dim).is_none() {
                    return Err(inconsistent(format!(
                        "the graph's coarse width {coarse_dim} is not a nested width of the store {:?}",
                        store.widths()
                    )));
                }
                IndexLayout::native(&store.widths(), coarse_dim)
            }
        };
        store.advise_random();
        let mut space = space;
        if options.resident_coarse {
            match (&mut space, layout.coarse_space) {
                (Some(space), Space::Learned) => {
                    space.make_coarse_resident().map_err(read_err(&gpath))?
                }
                _ => {
                    let coarse_bands = store
                        .bands_for_width(coarse_dim)
                        .expect("checked just above");
                    store
                        .make_bands_resident(coarse_bands)
                        .map_err(read_err(&spath))?;
                }
            }
        }
        // The default plan: tuned and published with this generation (the manifest), else,
        // for indexes of the first format, a DEFAULT_PLAN file written by `tune --write`,
        // else the untuned default of the layout.
        let legacy_path = dir.join(crate::default_plan::DEFAULT_PLAN_FILE);
        let tuned_text = match &manifest.plan {
            Some(text) => Some((text.clone(), mpath.clone())),
            None if legacy_plan && manifest.space.is_none() && legacy_path.exists() => Some((
                std::fs::read_to_string(&legacy_path).map_err(read_err(&legacy_path))?,
                legacy_path,
            )),
            None => None,
        };
        let tuned = match tuned_text {
            Some((text, path)) => {
                let d = DefaultPlan::parse(&text)
                    .and_then(|d| {
                        d.check_against_layout(&layout)?;
                        Ok(d)
                    })
                    .map_err(|e| inconsistent(format!("{} (default plan): {e}", path.display())))?;
                Some(d)
            }
            None => None,
        };
        let (default_plan, default_ef) = match &tuned {
            Some(d) => (d.plan.clone(), d.ef),
            None => (SearchPlan::default_for_layout(&layout), None),
        };
        let width_plans = layout
            .widths
            .iter()
            .filter_map(|&w| Some((w, default_plan.for_width(&layout, w)?)))
            .collect();
        let (base_deleted, deltas) =
            crate::segment::open(dir, &manifest, &store, space.as_ref(), &layout)?;
        let live =
            store.len() - base_deleted.count() + deltas.iter().map(Delta::live).sum::<usize>();
        Ok(Index {
            dir: dir.to_path_buf(),
            manifest,
            store,
            graph,
            space,
            base_deleted,
            deltas,
            live,
            layout,
            default_plan,
            width_plans,
            default_ef,
            tuned,
            resident_coarse: options.resident_coarse,
        })
    }

    /// Full integrity check: every checksum and every structural invariant of both files.
    /// Reads every byte of the index.
    pub fn verify(&self) -> Result<(), IndexError> {
        self.store.verify()?;
        self.graph.verify()?;
        if let Some(space) = &self.space {
            space.verify()?;
        }
        for d in &self.deltas {
            d.verify()?;
        }
        Ok(())
    }

    /// Moves to the newest published generation if `MANIFEST` changed since this index was
    /// opened (an add, a delete, a compaction or a rebuild); returns whether it moved. On an
    /// error the index stays as it was.
    pub fn refresh(&mut self) -> Result<bool, IndexError> {
        let newest = read_manifest(&self.dir)?;
        if newest == self.manifest {
            return Ok(false);
        }
        let options = OpenOptions {
            resident_coarse: self.resident_coarse,
        };
        *self = Index::open_from(&self.dir.clone(), newest, options)?;
        Ok(true)
    }

    /// Writes `plan` into the index's `MANIFEST` (a new manifest naming the same data files,
    /// replaced atomically), so that it becomes the index's default. Takes the directory's
    /// writer lock ([`crate::lock::WriterLock`]) for the duration: fails at once with
    /// [`IndexError::Lock`] while a build or another retune runs, and, holding it, removes
    /// what crashed writers left (temporary files, data files of other generations). Fails
    /// if the directory no longer holds the generation this index was opened on.
    pub fn publish_default_plan(&self, plan: &DefaultPlan) -> Result<(), IndexError> {
        let index = self;
        let dir = index.dir();
        let lock = crate::lock::WriterLock::acquire(dir)?;
        let mpath = manifest::manifest_path(dir);
        let io = |source| IndexError::Io {
            path: mpath.clone(),
            source,
        };
        let bytes = manifest::read_bytes(&mpath).map_err(io)?;
        let mut current = manifest::decode(&bytes, &mpath.display().to_string())?;
        if current.meta != *index.manifest() {
            return Err(IndexError::Inconsistent {
                dir: dir.to_path_buf(),
                what: "the index was rebuilt since it was opened; tune the new one".into(),
            });
        }
        plan.check_against_layout(index.layout())
            .map_err(|what| IndexError::Inconsistent {
                dir: dir.to_path_buf(),
                what,
            })?;
        current.plan = Some(plan.to_text());
        crate::atomic::write_atomic(&mpath, &manifest::encode(&current)).map_err(io)?;
        // A DEFAULT_PLAN file of the first format would be shadowed: remove it.
        let legacy = dir.join(crate::default_plan::DEFAULT_PLAN_FILE);
        if legacy.exists() {
            std::fs::remove_file(&legacy).map_err(|source| IndexError::Io {
                path: legacy,
                source,
            })?;
        }
        lock.remove_leftovers(Some(&current));
        Ok(())
    }

    /// The index directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The manifest's generation, counts and checksums (of the base segment).
    pub fn manifest(&self) -> &ManifestMeta {
        &self.manifest.meta
    }

    /// The whole decoded manifest, segments included.
    pub fn full_manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The delta segments, oldest first (empty for a compacted index).
    pub fn deltas(&self) -> &[Delta] {
        &self.deltas
    }

    /// The base segment's deleted rows.
    pub fn base_deleted(&self) -> &DeleteBits {
        &self.base_deleted
    }

    /// Deleted rows over every segment (compaction drops them).
    pub fn deleted_count(&self) -> usize {
        self.base_deleted.count()
            + self
                .deltas
                .iter()
                .map(|d| d.deleted().count())
                .sum::<usize>()
    }

    /// Whether the index is its base alone: no delta segment and nothing deleted. Ground
    /// truth over [`Index::store`], tuning and benchmarks need this (compact first).
    pub fn is_compacted(&self) -> bool {
        self.deltas.is_empty() && self.base_deleted.is_empty()
    }

    /// Where the live item `id` is: `(segment, row)`, segment 0 the base and `i` the `i`-th
    /// delta; `None` if no live item has that id. Newer segments first (a replaced id's old
    /// row is deleted anyway).
    pub fn locate(&self, id: u64) -> Option<(usize, u32)> {
        for (i, d) in self.deltas.iter().enumerate().rev() {
            if let Some(r) = d.store().row_of(id) {
                if !d.deleted().contains(r) {
                    return Some((i + 1, r));
                }
            }
        }
        self.store
            .row_of(id)
            .filter(|&r| !self.base_deleted.contains(r))
            .map(|r| (0, r))
    }

    /// The store of segment `segment` (0 the base, `i` the `i`-th delta).
    pub fn segment_store(&self, segment: usize) -> Option<&Store> {
        match segment {
            0 => Some(&self.store),
            i => self.deltas.get(i - 1).map(Delta::store),
        }
    }

    /// Reads the full vector of the live item `id` into `out` (length `dim`); `false` if no
    /// live item has that id.
    pub fn read_item(&self, id: u64, out: &mut [f32]) -> bool {
        match self
            .locate(id)
            .and_then(|(s, r)| Some((self.segment_store(s)?, r)))
        {
            Some((store, row)) => {
                store.read_vector(row as usize, out);
                true
            }
            None => false,
        }
    }

    /// The learned coarse space, if the index has one.
    pub fn space(&self) -> Option<&LearnedSpace> {
        self.space.as_ref()
    }

    /// The widths and coarse space plans are checked against.
    pub fn layout(&self) -> &IndexLayout {
        &self.layout
    }

    /// The tuned default plan with what was measured when it was chosen, if the index has
    /// one (a build tunes by default; `tune --write` retunes).
    pub fn tuned(&self) -> Option<&DefaultPlan> {
        self.tuned.as_ref()
    }

    /// The base segment's embedding store (the whole catalogue when
    /// [`Index::is_compacted`]).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The coarse graph.
    pub fn graph(&self) -> &CoarseGraph {
        &self.graph
    }

    /// Number of live items: every segment's, less the deleted ones.
    pub fn len(&self) -> usize {
        self.live
    }

    /// Whether the index holds no live item (a built index always has some, but every one
    /// may have been deleted since).
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Full dimension.
    pub fn dim(&self) -> usize {
        self.store.dim()
    }

    /// The nested widths.
    pub fn widths(&self) -> Vec<usize> {
        self.store.widths()
    }

    /// The coarse graph's width.
    pub fn coarse_dim(&self) -> usize {
        self.graph.meta().coarse_dim as usize
    }

    /// The plan used when [`SearchParams::plan`] is `None`: the plan the build (or `tune
    /// --write`) tuned, else [`SearchPlan::default_for_layout`].
    pub fn default_plan(&self) -> &SearchPlan {
        &self.default_plan
    }

    /// The beam width used with the default plan when [`SearchParams::ef`] is `None` (from
    /// `DEFAULT_PLAN`; `None` means the coarse keep).
    pub fn default_ef(&self) -> Option<usize> {
        self.default_ef
    }

    /// The plan, beam width and answer width of a search with `params`.
    fn resolve<'a>(
        &'a self,
        params: &'a SearchParams,
    ) -> Result<(&'a SearchPlan, Option<usize>, usize), SearchError> {
        let dim = self.dim();
        if let Some(w) = params.width {
            if w == 0 || w > dim {
                return Err(SearchError::Width { width: w, dim });
            }
        }
        match &params.plan {
            Some(p) => {
                p.check_against_layout(&self.layout)?;
                let width = params.width.unwrap_or(p.final_width());
                if width > p.final_width() {
                    return Err(SearchError::Plan(crate::plan::PlanError {
                        plan: p.to_string(),
                        reason: format!(
                            "it ends at width {} but the answer width is {width}",
                            p.final_width()
                        ),
                    }));
                }
                Ok((p, params.ef, width))
            }
            None => {
                // The default beam belongs to the default plan's coarse keep, whatever width.
                let ef = params.ef.or(self.default_ef).or_else(|| {
                    match self.default_plan.stages()[0].keep {
                        crate::plan::Keep::Count(c) => Some(c),
                        crate::plan::Keep::K => None,
                    }
                });
                match params.width {
                    Some(w) if w < dim => {
                        // The plan tuned for the nested width that holds `w`, else the
                        // full-width plan cut to it.
                        let nested = self.layout.native_width_at_least(w);
                        if let Some(t) = self
                            .tuned
                            .as_ref()
                            .zip(nested)
                            .and_then(|(t, n)| t.for_width(n))
                        {
                            return Ok((&t.plan, params.ef.or(t.ef), w));
                        }
                        let nested = nested.expect("width checked above");
                        let plan = self
                            .width_plans
                            .iter()
                            .find(|(n, _)| *n == nested)
                            .map(|(_, p)| p)
                            .expect("a plan for every nested width");
                        Ok((plan, ef, w))
                    }
                    _ => Ok((&self.default_plan, ef, dim)),
                }
            }
        }
    }

    /// The `k` best items for `query` (best first) by the plan in `params`.
    pub fn search(
        &self,
        query: &[f32],
        k: usize,
        params: &SearchParams,
    ) -> Result<Vec<Hit>, SearchError> {
        self.search_filtered(query, k, params, &Filter::NONE)
    }

    /// Like [`Index::search`], returning only items the filter allows. When at least `k`
    /// items are eligible, `k` come back.
    pub fn search_filtered(
        &self,
        query: &[f32],
        k: usize,
        params: &SearchParams,
        filter: &Filter,
    ) -> Result<Vec<Hit>, SearchError> {
        let mut out = Vec::with_capacity(k.min(self.len()).max(1));
        SCRATCH
            .with(|s| self.search_with(&mut s.borrow_mut(), query, k, params, filter, &mut out))?;
        Ok(out)
    }

    /// The allocation-free form: searches with the caller's `scratch` into `out` (cleared
    /// first). With a warm scratch and `out` of capacity `k`, nothing is allocated.
    pub fn search_with(
        &self,
        scratch: &mut Scratch,
        query: &[f32],
        k: usize,
        params: &SearchParams,
        filter: &Filter,
        out: &mut Vec<Hit>,
    ) -> Result<(), SearchError> {
        if k == 0 {
            return Err(SearchError::ZeroK);
        }
        check_query(&self.store, query)?;
        let (plan, ef, width) = self.resolve(params)?;
        out.clear();
        // The base, then each delta with its share of every keep; the scores are exact at
        // the answer width, so merging the segments' hits by score is exact.
        let mut stats = search::SearchStats::default();
        let deltas = self.deltas.iter().map(|d| {
            d.parts(Share {
                items: d.live(),
                total: self.live,
            })
        });
        for parts in std::iter::once(self.parts()).chain(deltas) {
            if parts.share.items == 0 {
                continue;
            }
            search::cascade(parts, plan, ef, query, width, k, filter, scratch, out);
            stats.add(&scratch.stats);
        }
        scratch.stats = stats;
        if self.deltas.is_empty() {
            return Ok(());
        }
        out.sort_unstable_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.id.cmp(&b.id)));
        out.truncate(k);
        Ok(())
    }

    /// The plan and beam width a search with `params` runs (the default plan cut to the
    /// answer width, or the explicit plan, checked against the index).
    pub fn effective_plan(
        &self,
        params: &SearchParams,
    ) -> Result<(SearchPlan, Option<usize>), SearchError> {
        let (plan, ef, _) = self.resolve(params)?;
        Ok((plan.clone(), ef))
    }

    /// The coarse stage of the search `params` describe, alone: up to `keep` candidates
    /// (store rows with their coarse scores, unordered). For tuning.
    #[cfg(feature = "build")]
    pub(crate) fn coarse_candidates(
        &self,
        scratch: &mut Scratch,
        query: &[f32],
        keep: usize,
        params: &SearchParams,
        filter: &Filter,
    ) -> Result<Vec<crate::candidate::Candidate>, SearchError> {
        check_query(&self.store, query)?;
        let (plan, ef, width) = self.resolve(params)?;
        Ok(search::coarse_only(
            self.parts(),
            plan,
            ef,
            query,
            width,
            keep,
            filter,
            scratch,
        ))
    }

    /// The base segment's parts.
    fn parts(&self) -> search::Parts<'_> {
        search::Parts {
            store: &self.store,
            graph: Some(&self.graph),
            space: self.space.as_ref(),
            deleted: Some(&self.base_deleted),
            share: Share::WHOLE,
            reuse_code: false,
        }
    }

    /// Searches many queries (row-major, `dim` values each) in parallel on the current rayon
    /// pool, with the same filter for all.
    pub fn search_batch(
        &self,
        queries: &[f32],
        k: usize,
        params: &SearchParams,
        filter: &Filter,
    ) -> Result<Vec<Vec<Hit>>, SearchError> {
        let dim = self.dim();
        if !queries.len().is_multiple_of(dim) {
            return Err(SearchError::DimensionMismatch {
                expected: dim,
                got: queries.len() % dim,
            });
        }
        if k == 0 {
            return Err(SearchError::ZeroK);
        }
        self.resolve(params)?;
        queries
            .par_chunks_exact(dim)
            .map(|q| self.search_filtered(q, k, params, filter))
            .collect()
    }

    /// Exact top-`k` by inner product over the first `width` dims (any width from 1 to the
    /// full dimension), scanning every item. The ground truth for recall.
    pub fn exact_search(
        &self,
        query: &[f32],
        k: usize,
        width: usize,
        filter: &Filter,
    ) -> Result<Vec<Hit>, SearchError> {
        if k == 0 {
            return Err(SearchError::ZeroK);
        }
        check_query(&self.store, query)?;
        let dim = self.dim();
        let n_bands = self
            .layout
            .native_width_at_least(width)
            .filter(|_| width > 0)
            .and_then(|w| self.store.bands_for_width(w))
            .ok_or(SearchError::Width { width, dim })?;
        let mut padded;
        let query = if width < self.store.bands()[n_bands - 1].end {
            padded = query[..width].to_vec();
            padded.resize(dim, 0.0);
            &padded[..]
        } else {
            query
        };
        let mut hits = exact::top_k_live(
            &self.store,
            query,
            k,
            n_bands,
            filter,
            Some(&self.base_deleted),
        );
        if self.deltas.is_empty() {
            return Ok(hits);
        }
        for d in &self.deltas {
            hits.extend(exact::top_k_live(
                d.store(),
                query,
                k,
                n_bands,
                filter,
                Some(d.deleted()),
            ));
        }
        hits.sort_unstable_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.id.cmp(&b.id)));
        hits.truncate(k);
        Ok(hits)
    }
}

#[cfg(all(test, feature = "build"))]
mod tests {
    use super::*;
    use crate::build::SpaceChoice;
    use crate::ingest::MatrixSource;
    use crate::progress::NoProgress;
    use crate::synth::MatryoshkaLike;
    use crate::IndexBuilder;

    const DIM: usize = 32;

    /// Builds (or rebuilds) `n` items into `dir`, untuned.
    fn build(dir: &Path, n: usize, seed: u64) {
        let items = MatrixSource::new(MatryoshkaLike::with_dim(DIM, seed).items(n), DIM).unwrap();
        IndexBuilder::new()
            .coarse_dim(8)
            .widths(vec![8, 16, 32])
            .space(SpaceChoice::Native)
            .target_recall(None)
            .threads(1)
            .overwrite(true)
            .build(&items, None, dir, &NoProgress)
            .unwrap();
    }

    /// A reader reads MANIFEST, then a rebuild publishes a new generation and removes the
    /// old one's files before the reader maps them: the reader reads MANIFEST again and
    /// opens the new generation. The steps run in this order, deterministically.
    #[test]
    fn open_retries_once_when_a_rebuild_removed_what_it_read() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("idx");
        build(&dir, 200, 1);
        let old = read_manifest(&dir).unwrap();
        build(&dir, 300, 2);
        assert!(!dir.join(old.meta.store_file()).exists());
        let index = Index::open_from(&dir, old.clone(), OpenOptions::default()).unwrap();
        assert_eq!(index.len(), 300);
        assert_ne!(index.manifest().generation, old.meta.generation);
        index.verify().unwrap();
    }

    /// A data file missing from the generation MANIFEST still names is an error naming it,
    /// not a loop.
    #[test]
    fn a_missing_file_of_the_current_generation_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("idx");
        build(&dir, 200, 1);
        let m = read_manifest(&dir).unwrap();
        let gpath = dir.join(m.meta.graph_file());
        std::fs::remove_file(&gpath).unwrap();
        match Index::open(&dir) {
            Err(IndexError::Io { path, source }) => {
                assert_eq!(path, gpath);
                assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
            }
            other => panic!("{other:?}"),
        }
    }
}
