//! [`Index`]: an opened index directory, the type query services hold.

use crate::bytes::Bytes;
use crate::exact;
use crate::format::FormatError;
use crate::graph::CoarseGraph;
use crate::manifest::{self, ManifestMeta};
use crate::plan::SearchPlan;
use crate::search::{self, check_query, Filter, Hit, Scratch, SearchError, SearchParams};
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
    /// The files of the index disagree with each other.
    #[error("{dir}: inconsistent index: {what}")]
    Inconsistent {
        /// The index directory.
        dir: PathBuf,
        /// What disagrees.
        what: String,
    },
}

/// A read-only, memory-mapped index: the embedding store and the coarse graph.
///
/// `Index` is `Send + Sync`: share it (e.g. in an `Arc`) between query threads. Opening costs
/// the same for ten items or ten million: files are mapped and only their headers are read.
pub struct Index {
    dir: PathBuf,
    manifest: ManifestMeta,
    store: Store,
    graph: CoarseGraph,
    default_plan: SearchPlan,
    default_ef: Option<usize>,
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
    pub fn open_with(dir: impl AsRef<Path>, options: OpenOptions) -> Result<Index, IndexError> {
        let dir = dir.as_ref();
        if !dir.is_dir() {
            return Err(IndexError::NotFound {
                path: dir.to_path_buf(),
            });
        }
        let mpath = manifest::manifest_path(dir);
        if !mpath.exists() {
            return Err(IndexError::NotAnIndex {
                path: dir.to_path_buf(),
            });
        }
        let mbytes = std::fs::read(&mpath).map_err(read_err(&mpath))?;
        let manifest = manifest::decode(&mbytes, &mpath.display().to_string())?;
        let spath = dir.join(manifest.store_file());
        let gpath = dir.join(manifest.graph_file());
        let mut store = Store::from_bytes(
            Bytes::map_file(&spath).map_err(read_err(&spath))?,
            &spath.display().to_string(),
        )?;
        let mut graph_bytes = Bytes::map_file(&gpath).map_err(read_err(&gpath))?;
        if options.resident_coarse {
            graph_bytes = Bytes::copy_to_huge_pages(&graph_bytes).map_err(read_err(&gpath))?;
        }
        let graph = CoarseGraph::from_bytes(graph_bytes, &gpath.display().to_string())?;
        let inconsistent = |what: String| IndexError::Inconsistent {
            dir: dir.to_path_buf(),
            what,
        };
        if store.container().header().header_crc32 != manifest.store_header_crc32
            || graph.container().header().header_crc32 != manifest.graph_header_crc32
        {
            return Err(inconsistent(
                "the store or graph file is not the one MANIFEST names (header checksums differ)"
                    .into(),
            ));
        }
        if store.len() as u64 != manifest.n_items || graph.len() != store.len() {
            return Err(inconsistent(format!(
                "item counts differ: manifest {}, store {}, graph {}",
                manifest.n_items,
                store.len(),
                graph.len()
            )));
        }
        let coarse_dim = graph.meta().coarse_dim as usize;
        if store.bands_for_width(coarse_dim).is_none() || manifest.coarse_dim as usize != coarse_dim
        {
            return Err(inconsistent(format!(
                "the graph's coarse width {coarse_dim} is not a nested width of the store {:?}",
                store.widths()
            )));
        }
        store.advise_random();
        if options.resident_coarse {
            let coarse_bands = store
                .bands_for_width(coarse_dim)
                .expect("checked just above");
            store
                .make_bands_resident(coarse_bands)
                .map_err(read_err(&spath))?;
        }
        let mut default_plan = SearchPlan::default_for(&store.widths(), coarse_dim);
        let mut default_ef = None;
        let plan_path = dir.join(crate::tune::DEFAULT_PLAN_FILE);
        if plan_path.exists() {
            let text = std::fs::read_to_string(&plan_path).map_err(read_err(&plan_path))?;
            let (plan, ef) = crate::tune::parse_default_plan(&text)
                .and_then(|(p, ef)| {
                    p.check_against(&store.widths(), coarse_dim)
                        .map_err(|e| e.to_string())?;
                    Ok((p, ef))
                })
                .map_err(|e| inconsistent(format!("{}: {e}", plan_path.display())))?;
            default_plan = plan;
            default_ef = ef;
        }
        Ok(Index {
            dir: dir.to_path_buf(),
            manifest,
            store,
            graph,
            default_plan,
            default_ef,
        })
    }

    /// Full integrity check: every checksum and every structural invariant of both files.
    /// Reads every byte of the index.
    pub fn verify(&self) -> Result<(), IndexError> {
        self.store.verify()?;
        self.graph.verify()?;
        Ok(())
    }

    /// The index directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The manifest.
    pub fn manifest(&self) -> &ManifestMeta {
        &self.manifest
    }

    /// The embedding store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The coarse graph.
    pub fn graph(&self) -> &CoarseGraph {
        &self.graph
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.store.len()
    }

    /// Whether the index holds no items (never true for a built index).
    pub fn is_empty(&self) -> bool {
        self.store.is_empty()
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

    /// The plan used when [`SearchParams::plan`] is `None`: the index's `DEFAULT_PLAN` file
    /// if it has one (see [`crate::tune`]), else [`SearchPlan::default_for`] its widths.
    pub fn default_plan(&self) -> &SearchPlan {
        &self.default_plan
    }

    /// The beam width used with the default plan when [`SearchParams::ef`] is `None` (from
    /// `DEFAULT_PLAN`; `None` means the coarse keep).
    pub fn default_ef(&self) -> Option<usize> {
        self.default_ef
    }

    fn resolve<'a>(&'a self, params: &'a SearchParams) -> Result<&'a SearchPlan, SearchError> {
        match &params.plan {
            Some(p) => {
                p.check_against(&self.store.widths(), self.coarse_dim())?;
                Ok(p)
            }
            None => Ok(&self.default_plan),
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
        let mut out = Vec::with_capacity(k);
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
        let plan = self.resolve(params)?;
        let ef = match (&params.plan, params.ef) {
            (_, Some(ef)) => Some(ef),
            (None, None) => self.default_ef,
            (Some(_), None) => None,
        };
        search::cascade(
            &self.store,
            &self.graph,
            plan,
            ef,
            query,
            k,
            filter,
            scratch,
            out,
        );
        Ok(())
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
        if queries.len() % dim != 0 {
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

    /// Exact top-`k` by inner product over the first `width` dims (a nested width), scanning
    /// every item. The ground truth for recall.
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
        let n_bands = self.store.bands_for_width(width).ok_or_else(|| {
            SearchError::Plan(crate::plan::PlanError {
                plan: format!("exact@{width}"),
                reason: format!(
                    "width {width} is not one of the index's nested widths {:?}",
                    self.store.widths()
                ),
            })
        })?;
        Ok(exact::top_k(&self.store, query, k, n_bands, filter))
    }
}
