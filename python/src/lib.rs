//! `mrl_index`: the Python face of mrl-index. numpy arrays in, numpy arrays out; the GIL is
//! released for every build, search and encoding (the encoders are in [`encoder`]); errors are Python exceptions carrying the Rust
//! message (`ValueError` for bad input, `FileNotFoundError`, `FileExistsError`, `OSError`,
//! and `mrl_index.IndexCorrupt` for checksum or structure failures).

use mrl_index::build::SampleQueries;
use mrl_index::ingest::{IngestError, VectorSource};
use mrl_index::progress::NoProgress;
use mrl_index::writer::{CompactOptions, IndexWriter, WriteError};
use mrl_index::{BuildError, Filter, Hit, Index, IndexBuilder, IndexError, SearchError};
use mrl_index::{SearchParams, SearchPlan};
use numpy::ndarray::Array2;
use numpy::PyUntypedArrayMethods;
use numpy::{IntoPyArray, PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2};
use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyFileExistsError, PyFileNotFoundError, PyOSError};
use pyo3::exceptions::{PyKeyError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use rayon::prelude::*;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

mod encoder;

create_exception!(
    mrl_index,
    IndexCorrupt,
    PyException,
    "An index file failed a checksum or structure check (the message names the file)."
);

fn index_err(e: IndexError) -> PyErr {
    let msg = e.to_string();
    match e {
        IndexError::NotFound { .. } | IndexError::NotAnIndex { .. } => {
            PyFileNotFoundError::new_err(msg)
        }
        IndexError::Format(_) | IndexError::Inconsistent { .. } => IndexCorrupt::new_err(msg),
        _ => PyOSError::new_err(msg),
    }
}

pub(crate) fn search_err(e: SearchError) -> PyErr {
    PyValueError::new_err(e.to_string())
}

fn build_err(e: BuildError) -> PyErr {
    let msg = e.to_string();
    match e {
        BuildError::IndexExists { .. } | BuildError::NotAnIndexDir { .. } => {
            PyFileExistsError::new_err(msg)
        }
        BuildError::Io { .. } | BuildError::Lock(_) => PyOSError::new_err(msg),
        BuildError::Ingest(IngestError::Io { .. }) => PyOSError::new_err(msg),
        _ => PyValueError::new_err(msg),
    }
}

/// A numpy array (or anything `numpy.asarray` takes) as a C-contiguous float32 matrix: a
/// float32 C-contiguous array is used as it is (no copy), other real dtypes are converted,
/// a 1-d array is one row. Booleans, complex numbers, strings and objects are refused.
pub(crate) fn as_matrix<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    what: &str,
    dtype: &str,
) -> PyResult<Bound<'py, PyAny>> {
    // The common case, a C-contiguous float32 matrix, is used as it is, with no call into
    // numpy (they were most of the per-call cost of a one-query search).
    if dtype == "float32" {
        if let Ok(a) = x.cast::<PyArray2<f32>>() {
            if a.is_c_contiguous() {
                return Ok(x.clone());
            }
        }
    }
    let np = py.import("numpy")?;
    let arr = np.call_method1("asarray", (x,))?;
    let kind: String = arr.getattr("dtype")?.getattr("kind")?.extract()?;
    let ok = if dtype == "float32" {
        matches!(kind.as_str(), "f" | "i" | "u")
    } else {
        matches!(kind.as_str(), "i" | "u")
    };
    if !ok {
        let found: String = arr.getattr("dtype")?.str()?.extract()?;
        return Err(PyTypeError::new_err(format!(
            "{what}: dtype {found} is not accepted; give {}",
            if dtype == "float32" {
                "real numbers (float32 is read without a copy)"
            } else {
                "integer ids"
            }
        )));
    }
    let ndim: usize = arr.getattr("ndim")?.extract()?;
    let arr = match ndim {
        1 => arr.call_method1("reshape", ((1i64, -1i64),))?,
        2 => arr,
        n => {
            return Err(PyValueError::new_err(format!(
                "{what}: a {n}-d array; give one vector (1-d) or one per row (2-d)"
            )))
        }
    };
    if kind == "i" {
        let negative = np.call_method1("less", (&arr, 0))?;
        if np.call_method1("any", (negative,))?.extract::<bool>()? {
            return Err(PyValueError::new_err(format!(
                "{what}: ids must be non-negative"
            )));
        }
    }
    let kwargs = PyDict::new(py);
    kwargs.set_item("dtype", dtype)?;
    np.call_method("ascontiguousarray", (arr,), Some(&kwargs))
}

/// Query vectors borrowed from numpy: one (a 1-d float32 array, used as it is) or a matrix.
enum QueryRows<'py> {
    One(PyReadonlyArray1<'py, f32>),
    Many(PyReadonlyArray2<'py, f32>),
}

impl QueryRows<'_> {
    /// The queries, row-major.
    fn as_slice(&self) -> PyResult<&[f32]> {
        Ok(match self {
            QueryRows::One(a) => a.as_slice()?,
            QueryRows::Many(a) => a.as_slice()?,
        })
    }
}

/// Queries (see [`as_matrix`]) of the index's dimension `dim`, one per row.
fn query_matrix<'py>(
    py: Python<'py>,
    queries: &Bound<'py, PyAny>,
    dim: usize,
) -> PyResult<QueryRows<'py>> {
    // One C-contiguous float32 query, the per-call case, is used as it is, like a matrix.
    if let Ok(a) = queries.cast::<PyArray1<f32>>() {
        if a.is_c_contiguous() {
            let got = a.len();
            if got != dim {
                return Err(search_err(SearchError::DimensionMismatch {
                    expected: dim,
                    got,
                }));
            }
            return Ok(QueryRows::One(a.readonly()));
        }
    }
    let q: PyReadonlyArray2<f32> = as_matrix(py, queries, "queries", "float32")?.extract()?;
    if q.shape()[1] != dim {
        return Err(search_err(SearchError::DimensionMismatch {
            expected: dim,
            got: q.shape()[1],
        }));
    }
    Ok(QueryRows::Many(q))
}

/// A cascade plan string, parsed.
fn parse_plan(plan: Option<&str>) -> PyResult<Option<SearchPlan>> {
    plan.map(str::parse::<SearchPlan>)
        .transpose()
        .map_err(|e| PyValueError::new_err(e.to_string()))
}

/// Ids given as a list or array applied to every query, as `None`.
fn id_list(py: Python<'_>, x: Option<&Bound<'_, PyAny>>, what: &str) -> PyResult<Option<Vec<u64>>> {
    let Some(x) = x else { return Ok(None) };
    if x.is_none() {
        return Ok(None);
    }
    // An empty list is ids, whatever dtype numpy would give it (float64).
    if x.len().is_ok_and(|n| n == 0) {
        return Ok(Some(Vec::new()));
    }
    let arr = as_matrix(py, x, what, "uint64")?;
    let m: PyReadonlyArray2<u64> = arr.extract()?;
    Ok(Some(m.as_slice()?.to_vec()))
}

/// Ids of a filter: one list for every query, or one list per query.
pub(crate) enum IdSpec {
    Shared(Vec<u64>),
    PerQuery(Vec<Vec<u64>>),
}

impl IdSpec {
    pub(crate) fn for_query(&self, i: usize) -> &[u64] {
        match self {
            IdSpec::Shared(ids) => ids,
            IdSpec::PerQuery(lists) => &lists[i],
        }
    }
}

/// A filter's ids: `None`, a 1-d list or array (every query), or a 2-d array or a sequence
/// of sequences (one per query; there must be as many as queries).
fn id_spec(
    py: Python<'_>,
    x: Option<&Bound<'_, PyAny>>,
    what: &str,
    n_queries: usize,
) -> PyResult<Option<IdSpec>> {
    let Some(x) = x else { return Ok(None) };
    if x.is_none() {
        return Ok(None);
    }
    let spec = id_lists(py, x, what)?;
    if let IdSpec::PerQuery(lists) = &spec {
        if lists.len() != n_queries {
            return Err(PyValueError::new_err(format!(
                "{what}: {} lists for {n_queries} queries; give one list for all queries or one per query",
                lists.len()
            )));
        }
    }
    Ok(Some(spec))
}

/// Ids as one list (a 1-d list or array) or many (a 2-d array or a sequence of sequences).
pub(crate) fn id_lists(py: Python<'_>, x: &Bound<'_, PyAny>, what: &str) -> PyResult<IdSpec> {
    let np = py.import("numpy")?;
    let per_query = if x.is_instance(&np.getattr("ndarray")?)? {
        x.getattr("ndim")?.extract::<usize>()? == 2
    } else if x.is_instance_of::<pyo3::types::PyList>()
        || x.is_instance_of::<pyo3::types::PyTuple>()
    {
        match x.try_iter()?.next() {
            Some(first) => {
                let first = first?;
                !(first.is_instance_of::<pyo3::types::PyInt>()
                    || first.is_instance(&np.getattr("integer")?)?)
            }
            None => false,
        }
    } else {
        false
    };
    if !per_query {
        return Ok(IdSpec::Shared(
            id_list(py, Some(x), what)?.unwrap_or_default(),
        ));
    }
    let mut lists = Vec::new();
    for (i, row) in x.try_iter()?.enumerate() {
        let row = row?;
        lists.push(id_list(py, Some(&row), &format!("{what}[{i}]"))?.unwrap_or_default());
    }
    Ok(IdSpec::PerQuery(lists))
}

/// Item vectors (`vectors`, n × dim real numbers) as a float32 matrix and its width.
fn item_rows<'py>(
    py: Python<'py>,
    vectors: &Bound<'py, PyAny>,
) -> PyResult<(PyReadonlyArray2<'py, f32>, usize)> {
    let arr = as_matrix(py, vectors, "vectors", "float32")?;
    let rows: PyReadonlyArray2<f32> = arr.extract()?;
    let dim = rows.shape()[1];
    if dim == 0 {
        return Err(PyValueError::new_err("vectors: 0 columns"));
    }
    Ok((rows, dim))
}

/// A row-major float32 matrix borrowed from numpy, as the builder's input.
struct Rows<'a> {
    data: &'a [f32],
    dim: usize,
}

impl VectorSource for Rows<'_> {
    fn len(&self) -> usize {
        self.data.len() / self.dim
    }
    fn dim(&self) -> usize {
        self.dim
    }
    fn read_row(&self, row: usize, out: &mut [f32]) -> Result<(), IngestError> {
        let start = row * self.dim;
        match self.data.get(start..start + self.dim) {
            Some(r) if out.len() == self.dim => {
                out.copy_from_slice(r);
                Ok(())
            }
            Some(_) => Err(IngestError::BufferLenMismatch {
                origin: self.origin(),
                expected: self.dim,
                got: out.len(),
            }),
            None => Err(IngestError::RowOutOfRange {
                origin: self.origin(),
                row,
                len: self.len(),
            }),
        }
    }
    fn origin(&self) -> String {
        "numpy array".into()
    }
}

/// The answer of a search: ids (`uint64 [n, k]`) and scores (`float32 [n, k]`).
type Answers<'py> = (Bound<'py, PyArray2<u64>>, Bound<'py, PyArray2<f32>>);

/// Hits of many queries as `(ids uint64 [n, k], scores float32 [n, k])`; a query with fewer
/// than `k` hits (filters) is padded with id 2⁶⁴−1 and score −inf.
fn to_arrays<'py>(py: Python<'py>, hits: &[Vec<Hit>], k: usize) -> Answers<'py> {
    let n = hits.len();
    let mut ids = Array2::<u64>::from_elem((n, k), u64::MAX);
    let mut scores = Array2::<f32>::from_elem((n, k), f32::NEG_INFINITY);
    for (i, h) in hits.iter().enumerate() {
        for (j, hit) in h.iter().take(k).enumerate() {
            ids[[i, j]] = hit.id;
            scores[[i, j]] = hit.score;
        }
    }
    (ids.into_pyarray(py), scores.into_pyarray(py))
}

/// Runs `f` on a pool of `threads` threads (the global pool when `None`). Pools are made
/// once per thread count and kept: making one per call cost about 0.3 ms, more than a
/// search of one query.
fn run_on<T: Send>(threads: Option<usize>, f: impl FnOnce() -> T + Send) -> PyResult<T> {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static POOLS: OnceLock<Mutex<HashMap<usize, Arc<rayon::ThreadPool>>>> = OnceLock::new();
    let Some(t) = threads else { return Ok(f()) };
    let pool = {
        let mut pools = POOLS
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match pools.get(&t) {
            Some(p) => Arc::clone(p),
            None => {
                let p = Arc::new(
                    mrl_index::threads::pool(t)
                        .map_err(|e| PyValueError::new_err(e.to_string()))?,
                );
                pools.insert(t, Arc::clone(&p));
                p
            }
        }
    };
    Ok(pool.install(f))
}

/// `f(i, row)` for every row of `data` (rows of `dim` values): one row on the calling thread
/// (a search is single-threaded, and handing it to a pool cost more than a fast query), more
/// on a pool of `threads` threads (see [`run_on`]).
fn per_row<T: Send>(
    threads: Option<usize>,
    data: &[f32],
    dim: usize,
    f: impl Fn(usize, &[f32]) -> T + Sync + Send,
) -> PyResult<Vec<T>> {
    if data.len() <= dim {
        if let Some(t) = threads.filter(|&t| t > mrl_index::threads::MAX_THREADS) {
            return Err(PyValueError::new_err(format!(
                "threads={t}: at most {} threads are supported",
                mrl_index::threads::MAX_THREADS
            )));
        }
        return Ok(data.chunks_exact(dim).map(|row| f(0, row)).collect());
    }
    run_on(threads, || {
        data.par_chunks_exact(dim)
            .enumerate()
            .map(|(i, row)| f(i, row))
            .collect()
    })
}

/// An mrl-index index directory, opened (memory-mapped).
#[pyclass(module = "mrl_index._mrl_index", name = "Index", frozen)]
pub(crate) struct PyIndex {
    /// The generation searches use; `refresh` (and this object's own add, delete and
    /// compact) swap it whole, searches in flight keep theirs.
    inner: RwLock<Arc<Index>>,
    path: PathBuf,
}

impl PyIndex {
    fn wrap(index: Index, path: PathBuf) -> PyIndex {
        PyIndex {
            inner: RwLock::new(Arc::new(index)),
            path,
        }
    }

    /// The current generation.
    pub(crate) fn index(&self) -> Arc<Index> {
        self.inner
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Runs `change` with this index's writer (taken for the call), then moves this object
    /// to the generation it published.
    fn write<T>(
        &self,
        threads: Option<usize>,
        change: impl FnOnce(&mut IndexWriter) -> Result<T, WriteError>,
    ) -> PyResult<T> {
        let mut w = IndexWriter::open(&self.path)
            .map_err(write_err)?
            .threads(threads.unwrap_or(0));
        let r = change(&mut w).map_err(write_err)?;
        drop(w);
        self.refresh_inner().map_err(index_err)?;
        Ok(r)
    }

    /// Opens the newest generation if it changed; whether it did.
    fn refresh_inner(&self) -> Result<bool, IndexError> {
        let current = self.index();
        // Opened fresh rather than refreshed in place: searches may share the Arc.
        let next = Index::open(&self.path)?;
        if next.full_manifest() == current.full_manifest() {
            return Ok(false);
        }
        *self
            .inner
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(next);
        Ok(true)
    }
}

fn write_err(e: WriteError) -> PyErr {
    let msg = e.to_string();
    match e {
        WriteError::Index(e) => index_err(e),
        WriteError::Build(e) => build_err(e),
        WriteError::Lock(_) | WriteError::Io { .. } => PyOSError::new_err(msg),
        WriteError::Ingest(IngestError::Io { .. }) => PyOSError::new_err(msg),
        WriteError::UnknownId { .. } => PyKeyError::new_err(msg),
        _ => PyValueError::new_err(msg),
    }
}

#[pymethods]
impl PyIndex {
    /// Opens the index in `path` (cheap: maps the files and checks their structure).
    #[staticmethod]
    fn open(py: Python<'_>, path: PathBuf) -> PyResult<PyIndex> {
        let p = path.clone();
        let index = py.detach(move || Index::open(&p)).map_err(index_err)?;
        Ok(PyIndex::wrap(index, path))
    }

    /// Builds an index of `vectors` (n × dim, real numbers) into `path` and opens it.
    #[staticmethod]
    #[pyo3(signature = (path, vectors, ids=None, *, widths=None, coarse_dim=64, m=16,
        ef_construction=200, seed=42, threads=None, sample_queries=None, force=false))]
    #[allow(clippy::too_many_arguments)]
    fn build(
        py: Python<'_>,
        path: PathBuf,
        vectors: &Bound<'_, PyAny>,
        ids: Option<&Bound<'_, PyAny>>,
        widths: Option<Vec<usize>>,
        coarse_dim: usize,
        m: usize,
        ef_construction: usize,
        seed: u64,
        threads: Option<usize>,
        sample_queries: Option<&Bound<'_, PyAny>>,
        force: bool,
    ) -> PyResult<PyIndex> {
        let (rows, dim) = item_rows(py, vectors)?;
        let ids = id_list(py, ids, "ids")?;
        let mut builder = IndexBuilder::new()
            .coarse_dim(coarse_dim)
            .m(m)
            .ef_construction(ef_construction)
            .seed(seed)
            .overwrite(force)
            .threads(threads.unwrap_or(0));
        if let Some(w) = widths {
            builder = builder.widths(w);
        }
        if let Some(q) = sample_queries {
            let q = as_matrix(py, q, "sample_queries", "float32")?;
            let q: PyReadonlyArray2<f32> = q.extract()?;
            builder = builder.sample_queries(SampleQueries::new(
                q.as_slice()?.to_vec(),
                q.shape()[1],
                "sample_queries (numpy)",
            ));
        }
        let data = rows.as_slice()?;
        let p = path.clone();
        let index = py.detach(|| -> Result<Index, PyErr> {
            let source = Rows { data, dim };
            builder
                .build(&source, ids.as_deref(), &p, &NoProgress)
                .map_err(build_err)?;
            Index::open(&p).map_err(index_err)
        })?;
        Ok(PyIndex::wrap(index, path))
    }

    /// Live items (every segment's, less the deleted ones).
    fn __len__(&self) -> usize {
        self.index().len()
    }

    /// Moves to the newest published generation if the index changed on disk (an add,
    /// delete or compaction by any process); returns whether it moved. Searches already
    /// running finish on the generation they started with.
    fn refresh(&self, py: Python<'_>) -> PyResult<bool> {
        py.detach(|| self.refresh_inner()).map_err(index_err)
    }

    /// Adds `vectors` (n × dim) as a new delta segment, with `ids` (one per row; default:
    /// after the largest id the index held), then moves this object to the new
    /// generation. An id of a live item raises ValueError unless `replace`, which swaps the
    /// item's vector. Another writer holding the index raises OSError. Returns what was
    /// added, as a dict.
    #[pyo3(signature = (vectors, ids=None, *, replace=false, threads=None))]
    fn add<'py>(
        &self,
        py: Python<'py>,
        vectors: &Bound<'_, PyAny>,
        ids: Option<&Bound<'_, PyAny>>,
        replace: bool,
        threads: Option<usize>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let (rows, dim) = item_rows(py, vectors)?;
        let ids = id_list(py, ids, "ids")?;
        let data = rows.as_slice()?;
        let report = py.detach(|| {
            self.write(threads, |w| {
                w.add(&Rows { data, dim }, ids.as_deref(), replace)
            })
        })?;
        let d = PyDict::new(py);
        d.set_item("added", report.added)?;
        d.set_item("replaced", report.replaced)?;
        d.set_item("graph", report.graph)?;
        d.set_item("bytes", report.bytes)?;
        d.set_item("seconds", report.seconds)?;
        Ok(d)
    }

    /// Deletes the live items `ids`, then moves this object to the new generation; returns
    /// how many were deleted. An id that is not a live item raises KeyError (nothing is
    /// deleted) unless `missing_ok`.
    #[pyo3(signature = (ids, *, missing_ok=false))]
    fn delete(&self, py: Python<'_>, ids: &Bound<'_, PyAny>, missing_ok: bool) -> PyResult<usize> {
        let ids = id_list(py, Some(ids), "ids")?.unwrap_or_default();
        py.detach(|| self.write(None, |w| w.delete(&ids, missing_ok)))
            .map(|r| r.deleted)
    }

    /// Merges the delta segments and drops the deleted rows into a new base, then moves this
    /// object to it. With `sample_queries` the learned space is refitted and the default
    /// plan retuned; without, the base's are kept. Returns what it did, as a dict.
    #[pyo3(signature = (*, sample_queries=None, force=false, threads=None))]
    fn compact<'py>(
        &self,
        py: Python<'py>,
        sample_queries: Option<&Bound<'_, PyAny>>,
        force: bool,
        threads: Option<usize>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let sample_queries = match sample_queries {
            Some(q) => {
                let q = as_matrix(py, q, "sample_queries", "float32")?;
                let q: PyReadonlyArray2<f32> = q.extract()?;
                Some(SampleQueries::new(
                    q.as_slice()?.to_vec(),
                    q.shape()[1],
                    "sample_queries (numpy)",
                ))
            }
            None => None,
        };
        let options = CompactOptions {
            sample_queries,
            target_recall: None,
            force,
        };
        let report = py.detach(|| self.write(threads, |w| w.compact(&options, &NoProgress)))?;
        let d = PyDict::new(py);
        d.set_item("items", report.items)?;
        d.set_item("dropped", report.dropped)?;
        d.set_item("merged_deltas", report.merged_deltas)?;
        d.set_item("rebuilt", report.build.is_some())?;
        Ok(d)
    }

    /// The full dimension of the vectors.
    #[getter]
    fn dim(&self) -> usize {
        self.index().dim()
    }

    /// The nested widths (Matryoshka prefixes) the store is cut into.
    #[getter]
    fn widths(&self) -> Vec<usize> {
        self.index().widths()
    }

    /// The index directory.
    #[getter]
    fn path(&self) -> PathBuf {
        self.path.clone()
    }

    /// What the index holds and how it searches by default, as a dict.
    fn info<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let i = self.index();
        let d = PyDict::new(py);
        d.set_item("path", self.path.clone())?;
        d.set_item("items", i.len())?;
        d.set_item("dim", i.dim())?;
        d.set_item("widths", i.widths())?;
        d.set_item("coarse_dim", i.coarse_dim())?;
        d.set_item(
            "coarse_space",
            if i.space().is_some() {
                "learned"
            } else {
                "native"
            },
        )?;
        d.set_item("default_plan", i.default_plan().to_string())?;
        d.set_item("default_ef", i.default_ef())?;
        d.set_item("generation", i.manifest().generation)?;
        d.set_item("tuned", i.tuned().is_some())?;
        d.set_item("live_items", i.len())?;
        d.set_item("base_items", i.store().len())?;
        d.set_item("deleted", i.deleted_count())?;
        d.set_item(
            "delta_segments",
            i.deltas()
                .iter()
                .map(|x| (x.store().len(), x.deleted().count(), x.graph().is_some()))
                .collect::<Vec<_>>(),
        )?;
        Ok(d)
    }

    /// The `k` best items of each query: `(ids uint64 [n, k], scores float32 [n, k])`.
    #[pyo3(signature = (queries, k=10, *, width=None, plan=None, ef=None, exclude=None,
        allow=None, threads=None))]
    #[allow(clippy::too_many_arguments)]
    fn search<'py>(
        &self,
        py: Python<'py>,
        queries: &Bound<'py, PyAny>,
        k: usize,
        width: Option<usize>,
        plan: Option<&str>,
        ef: Option<usize>,
        exclude: Option<&Bound<'py, PyAny>>,
        allow: Option<&Bound<'py, PyAny>>,
        threads: Option<usize>,
    ) -> PyResult<Answers<'py>> {
        let q = query_matrix(py, queries, self.index().dim())?;
        let params = SearchParams {
            plan: parse_plan(plan)?,
            ef,
            width,
        };
        let data = q.as_slice()?;
        let n = data.len() / self.index().dim();
        let exclude = id_spec(py, exclude, "exclude", n)?;
        let allow = id_spec(py, allow, "allow", n)?;
        let index = &*self.index();
        let hits = py.detach(|| {
            per_row(threads, data, index.dim(), |i, row| {
                let filter = Filter {
                    allow: allow.as_ref().map(|a| a.for_query(i)),
                    deny: exclude.as_ref().map_or(&[], |e| e.for_query(i)),
                };
                index.search_filtered(row, k, &params, &filter)
            })
        })?;
        let hits = hits
            .into_iter()
            .collect::<Result<Vec<_>, _>>()
            .map_err(search_err)?;
        Ok(to_arrays(py, &hits, k))
    }

    /// Exact top-`k` by inner product over the first `width` dims (default: all), scanning
    /// every item: the ground truth.
    #[pyo3(signature = (queries, k=10, width=None, *, threads=None))]
    fn exact_search<'py>(
        &self,
        py: Python<'py>,
        queries: &Bound<'py, PyAny>,
        k: usize,
        width: Option<usize>,
        threads: Option<usize>,
    ) -> PyResult<Answers<'py>> {
        let dim = self.index().dim();
        let q = query_matrix(py, queries, dim)?;
        let data = q.as_slice()?;
        let index = &*self.index();
        let width = width.unwrap_or(dim);
        let hits = py.detach(|| {
            per_row(threads, data, dim, |_, row| {
                index.exact_search(row, k, width, &Filter::NONE)
            })
        })?;
        let hits = hits
            .into_iter()
            .collect::<Result<Vec<_>, _>>()
            .map_err(search_err)?;
        Ok(to_arrays(py, &hits, k))
    }

    /// Recommendations: each history (item ids, oldest first; one list, or one per user)
    /// through `encoder`, then the `k` best items, the history excluded unless
    /// `keep_history`. `(ids uint64 [n, k], scores float32 [n, k])`, as `search`.
    #[pyo3(signature = (histories, k=10, *, encoder, keep_history=false, width=None,
        plan=None, ef=None, exclude=None, allow=None, threads=None))]
    #[allow(clippy::too_many_arguments)]
    fn recommend<'py>(
        &self,
        py: Python<'py>,
        histories: &Bound<'py, PyAny>,
        k: usize,
        encoder: &encoder::PyQueryEncoder,
        keep_history: bool,
        width: Option<usize>,
        plan: Option<&str>,
        ef: Option<usize>,
        exclude: Option<&Bound<'py, PyAny>>,
        allow: Option<&Bound<'py, PyAny>>,
        threads: Option<usize>,
    ) -> PyResult<Answers<'py>> {
        if k == 0 {
            // Refused before any encoding is spent on it.
            return Err(search_err(SearchError::ZeroK));
        }
        let lists = encoder::histories_of(py, histories)?;
        let n = lists.len();
        let exclude = id_spec(py, exclude, "exclude", n)?;
        let allow = id_spec(py, allow, "allow", n)?;
        let r = encoder::Recommend {
            k,
            params: SearchParams {
                plan: parse_plan(plan)?,
                ef,
                width,
            },
            keep_history,
            exclude: exclude.as_ref(),
            allow: allow.as_ref(),
        };
        let current = self.index();
        let (enc, index) = (encoder.inner(), &*current);
        let hits = py.detach(|| run_on(threads, || encoder::recommend(enc, index, &lists, &r)))?;
        let hits = hits.map_err(encoder::encoder_err)?;
        Ok(to_arrays(py, &hits, k))
    }

    /// Checks every byte of the index (checksums and invariants); raises `IndexCorrupt`.
    fn verify(&self, py: Python<'_>) -> PyResult<()> {
        let index = &*self.index();
        py.detach(|| index.verify()).map_err(index_err)
    }

    /// Pickles as its path: unpickling opens the index again.
    fn __reduce__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        let open = py.get_type::<PyIndex>().getattr("open")?;
        let args = PyTuple::new(py, [self.path.clone()])?;
        PyTuple::new(py, [open, args.into_any()])
    }

    fn __repr__(&self) -> String {
        format!(
            "mrl_index.Index({:?}, items={}, dim={})",
            self.path.display().to_string(),
            self.index().len(),
            self.index().dim()
        )
    }
}

/// Mean recall@k: for each row, the share of `truth`'s first `k` ids found among `found`'s
/// first `k` (k = `found`'s column count; padding ids 2⁶⁴−1 never count).
#[pyfunction]
fn recall_at_k(
    py: Python<'_>,
    found: &Bound<'_, PyAny>,
    truth: &Bound<'_, PyAny>,
) -> PyResult<f64> {
    let f = as_matrix(py, found, "found", "uint64")?;
    let t = as_matrix(py, truth, "truth", "uint64")?;
    let f: PyReadonlyArray2<u64> = f.extract()?;
    let t: PyReadonlyArray2<u64> = t.extract()?;
    let (n, k) = (f.shape()[0], f.shape()[1]);
    if t.shape()[0] != n || t.shape()[1] < k || k == 0 {
        return Err(PyValueError::new_err(format!(
            "found is {n} × {k} and truth {} × {}: give one truth row per query with at least k ids, k ≥ 1",
            t.shape()[0],
            t.shape()[1]
        )));
    }
    let (f, t) = (f.as_array(), t.as_array());
    let mut total = 0.0;
    for i in 0..n {
        let truth: std::collections::HashSet<u64> = (0..k)
            .map(|j| t[[i, j]])
            .filter(|&x| x != u64::MAX)
            .collect();
        let hit = (0..k).filter(|&j| truth.contains(&f[[i, j]])).count();
        total += hit as f64 / k as f64;
    }
    Ok(if n == 0 { 0.0 } else { total / n as f64 })
}

#[pymodule]
fn _mrl_index(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyIndex>()?;
    m.add_class::<encoder::PyQueryEncoder>()?;
    m.add_class::<encoder::PyItemEncoder>()?;
    m.add_function(wrap_pyfunction!(recall_at_k, m)?)?;
    m.add("IndexCorrupt", m.py().get_type::<IndexCorrupt>())?;
    Ok(())
}
