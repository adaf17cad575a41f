//! The fMRLRec encoders: `mrl_index.ItemEncoder` (item features → item vectors, before
//! `Index.build`), `mrl_index.QueryEncoder` and `Index.recommend` (a user's history of item
//! ids → query vector → the index's best items).
//!
//! ONNX Runtime is the `onnxruntime` wheel's library, loaded at run time: the `runtime=`
//! argument if given, else `ORT_DYLIB_PATH`, else the `onnxruntime` package installed in this
//! Python environment (found without importing it), else the `.venv` of the checkout the
//! package was built from. One runtime per process: the first one loaded stays, and a
//! `runtime=` naming another library raises `RuntimeError`.

use crate::{id_lists, search_err, IdSpec};
use mrl_index::encoder::{self, EncoderError, ItemEncoder, QueryEncoder};
use mrl_index::{Filter, Hit, Index, SearchParams};
use numpy::ndarray::Array2;
use numpy::{IntoPyArray, PyArray2, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::exceptions::{PyFileNotFoundError, PyImportError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use rayon::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Histories per ONNX Runtime run: bounds the padded input (256 × 50 × 1024 floats, 52 MB).
const ENCODE_BATCH: usize = 256;

pub(crate) fn encoder_err(e: EncoderError) -> PyErr {
    let msg = e.to_string();
    match e {
        EncoderError::RuntimeNotFound { .. } | EncoderError::RuntimeLoad { .. } => {
            PyImportError::new_err(format!(
                "{msg} (or `pip install onnxruntime` into this Python environment)"
            ))
        }
        EncoderError::ModelLoad { ref path, .. } if !path.is_file() => {
            PyFileNotFoundError::new_err(msg)
        }
        EncoderError::Search(s) => search_err(s),
        EncoderError::Run(_) | EncoderError::RuntimeConflict { .. } => PyRuntimeError::new_err(msg),
        _ => PyValueError::new_err(msg),
    }
}

/// The ONNX Runtime library of the `onnxruntime` package installed in this Python
/// environment, found without importing the package.
fn python_runtime(py: Python<'_>) -> PyResult<Option<PathBuf>> {
    let spec = py
        .import("importlib.util")?
        .call_method1("find_spec", ("onnxruntime",))?;
    if spec.is_none() {
        return Ok(None);
    }
    let locations = spec.getattr("submodule_search_locations")?;
    if locations.is_none() {
        return Ok(None);
    }
    for dir in locations.try_iter()? {
        let dir: PathBuf = dir?.extract()?;
        if let Some(lib) = encoder::runtime_library_in(&dir.join("capi")) {
            return Ok(Some(lib));
        }
    }
    Ok(None)
}

/// Loads ONNX Runtime for this process (see the module documentation for the order).
fn ensure_runtime(py: Python<'_>, runtime: Option<&Path>) -> PyResult<()> {
    if let Some(path) = runtime {
        encoder::use_runtime(path).map_err(encoder_err)?;
    } else if encoder::loaded_runtime().is_none() && std::env::var_os("ORT_DYLIB_PATH").is_none() {
        if let Some(lib) = python_runtime(py)? {
            encoder::use_runtime(&lib).map_err(encoder_err)?;
        }
    }
    // Otherwise QueryEncoder::open looks for it (ORT_DYLIB_PATH, the built checkout's .venv)
    // and says where it looked when it finds nothing.
    Ok(())
}

/// Loads ONNX Runtime (see the module documentation), then the model at `path` with
/// `open`, without the GIL.
fn open_model<T: Send>(
    py: Python<'_>,
    path: &Path,
    runtime: Option<&Path>,
    open: fn(&Path) -> Result<T, EncoderError>,
) -> PyResult<Arc<T>> {
    ensure_runtime(py, runtime)?;
    let model = py.detach(|| open(path)).map_err(encoder_err)?;
    Ok(Arc::new(model))
}

/// `(cls, (path,))`: pickles a model as its path; unpickling loads it again.
fn reduce_to_path<'py>(
    cls: Bound<'py, pyo3::types::PyType>,
    path: &Path,
) -> PyResult<Bound<'py, PyTuple>> {
    let args = PyTuple::new(cls.py(), [path.to_path_buf()])?;
    PyTuple::new(cls.py(), [cls.into_any(), args.into_any()])
}

/// The fMRLRec query encoder (`query_encoder.onnx`): histories of item vectors → query
/// vectors.
#[pyclass(module = "mrl_index._mrl_index", name = "QueryEncoder", frozen)]
pub(crate) struct PyQueryEncoder {
    inner: Arc<QueryEncoder>,
    path: PathBuf,
}

impl PyQueryEncoder {
    pub(crate) fn inner(&self) -> &QueryEncoder {
        &self.inner
    }
}

#[pymethods]
impl PyQueryEncoder {
    /// Loads the query encoder at `path`; `runtime` names the ONNX Runtime library to load.
    #[new]
    #[pyo3(signature = (path, *, runtime=None))]
    fn new(py: Python<'_>, path: PathBuf, runtime: Option<PathBuf>) -> PyResult<Self> {
        let inner = open_model(py, &path, runtime.as_deref(), QueryEncoder::open)?;
        Ok(PyQueryEncoder { inner, path })
    }

    /// The vector dimension D (of item vectors and queries).
    #[getter]
    fn dim(&self) -> usize {
        self.inner.dim()
    }

    /// The model file.
    #[getter]
    fn path(&self) -> PathBuf {
        self.path.clone()
    }

    /// The ONNX Runtime library this process loaded (`None` before any encoder was opened).
    #[staticmethod]
    fn runtime() -> Option<PathBuf> {
        encoder::loaded_runtime()
    }

    /// Query vectors (`float32 [B, D]`) of histories of item vectors, oldest first: a 2-d
    /// array `[L, D]` is one history, a 3-d array `[B, L, D]` is B histories of L items, a
    /// sequence holds one history (2-d, or 1-d for one item) per user. Only the last 50
    /// items of a history are used.
    fn encode<'py>(
        &self,
        py: Python<'py>,
        histories: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let d = self.inner.dim();
        let np = py.import("numpy")?;
        let is_array = histories.is_instance(&np.getattr("ndarray")?)?;
        let items: Vec<Bound<'py, PyAny>> = if is_array {
            match histories.getattr("ndim")?.extract::<usize>()? {
                2 => vec![histories.clone()],
                3 => histories.try_iter()?.collect::<PyResult<_>>()?,
                n => {
                    return Err(PyValueError::new_err(format!(
                        "histories: a {n}-d array; give one history [L, {d}], a batch [B, L, {d}], or a list of histories"
                    )))
                }
            }
        } else {
            histories.try_iter()?.collect::<PyResult<_>>()?
        };
        let mut rows: Vec<PyReadonlyArray2<'py, f32>> = Vec::with_capacity(items.len());
        for (i, h) in items.iter().enumerate() {
            let what = format!("histories[{i}]");
            let m: PyReadonlyArray2<f32> = crate::as_matrix(py, h, &what, "float32")?.extract()?;
            if m.shape()[1] != d {
                return Err(PyValueError::new_err(format!(
                    "{what}: item vectors of {} dims; the encoder takes {d}",
                    m.shape()[1]
                )));
            }
            rows.push(m);
        }
        let slices = rows
            .iter()
            .map(|r| r.as_slice())
            .collect::<Result<Vec<&[f32]>, _>>()?;
        let enc = &self.inner;
        let out = py.detach(|| -> Result<Vec<f32>, EncoderError> {
            let mut out = Vec::with_capacity(slices.len() * d);
            for chunk in slices.chunks(ENCODE_BATCH) {
                out.extend(enc.encode(chunk)?);
            }
            Ok(out)
        });
        let out = out.map_err(encoder_err)?;
        to_matrix(py, out, d)
    }

    /// Query vectors (`float32 [B, D]`) of histories of item ids in `index` (oldest first):
    /// one list of ids, or one per user.
    fn encode_ids<'py>(
        &self,
        py: Python<'py>,
        index: &crate::PyIndex,
        histories: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let lists = histories_of(py, histories)?;
        let enc = &self.inner;
        let current = index.index();
        let idx = &*current;
        let out = py
            .detach(|| encode_ids(enc, idx, &lists))
            .map_err(encoder_err)?;
        to_matrix(py, out, self.inner.dim())
    }

    /// Pickles as its path (and loads the model again when unpickled).
    fn __reduce__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        reduce_to_path(py.get_type::<PyQueryEncoder>(), &self.path)
    }

    fn __repr__(&self) -> String {
        format!(
            "mrl_index.QueryEncoder({:?}, dim={})",
            self.path.display().to_string(),
            self.inner.dim()
        )
    }
}

/// The fMRLRec item encoder (`item_encoder.onnx`): item features → item vectors.
#[pyclass(module = "mrl_index._mrl_index", name = "ItemEncoder", frozen)]
pub(crate) struct PyItemEncoder {
    inner: Arc<ItemEncoder>,
    path: PathBuf,
}

#[pymethods]
impl PyItemEncoder {
    /// Loads the item encoder at `path`; `runtime` names the ONNX Runtime library to load.
    #[new]
    #[pyo3(signature = (path, *, runtime=None))]
    fn new(py: Python<'_>, path: PathBuf, runtime: Option<PathBuf>) -> PyResult<Self> {
        let inner = open_model(py, &path, runtime.as_deref(), ItemEncoder::open)?;
        Ok(PyItemEncoder { inner, path })
    }

    /// The feature dimension F.
    #[getter]
    fn in_dim(&self) -> usize {
        self.inner.in_dim()
    }

    /// The item vector dimension D.
    #[getter]
    fn dim(&self) -> usize {
        self.inner.out_dim()
    }

    /// The model file.
    #[getter]
    fn path(&self) -> PathBuf {
        self.path.clone()
    }

    /// Whether the model has an item-identity component (its `rows` input).
    #[getter]
    fn has_identity(&self) -> bool {
        self.inner.has_identity()
    }

    /// Item vectors (`float32 [n, D]`) of item features (`[n, F]`, real numbers; 1-d is one
    /// item), `batch` rows per inference. `rows`: each item's identity row for a model with an
    /// item-identity component (`-1` for an item it was not trained on: the text part alone);
    /// by default row r of `features` is identity row r (the training features file).
    #[pyo3(signature = (features, *, batch=1024, rows=None))]
    fn encode<'py>(
        &self,
        py: Python<'py>,
        features: &Bound<'py, PyAny>,
        batch: usize,
        rows: Option<Vec<i64>>,
    ) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let f: PyReadonlyArray2<f32> =
            crate::as_matrix(py, features, "features", "float32")?.extract()?;
        let enc = &self.inner;
        if f.shape()[1] != enc.in_dim() {
            return Err(PyValueError::new_err(format!(
                "features: {} columns; the item encoder takes {}",
                f.shape()[1],
                enc.in_dim()
            )));
        }
        let data = f.as_slice()?;
        let out = py
            .detach(|| match &rows {
                Some(rows) => enc.encode_rows(data, rows, batch),
                None => enc.encode(data, batch),
            })
            .map_err(encoder_err)?;
        to_matrix(py, out, enc.out_dim())
    }

    /// Pickles as its path (and loads the model again when unpickled).
    fn __reduce__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        reduce_to_path(py.get_type::<PyItemEncoder>(), &self.path)
    }

    fn __repr__(&self) -> String {
        format!(
            "mrl_index.ItemEncoder({:?}, in_dim={}, dim={})",
            self.path.display().to_string(),
            self.inner.in_dim(),
            self.inner.out_dim()
        )
    }
}

fn to_matrix(py: Python<'_>, data: Vec<f32>, d: usize) -> PyResult<Bound<'_, PyArray2<f32>>> {
    let n = data.len() / d.max(1);
    let a =
        Array2::from_shape_vec((n, d), data).map_err(|e| PyRuntimeError::new_err(e.to_string()))?;
    Ok(a.into_pyarray(py))
}

/// Histories of item ids: one list (1-d) or one per user (2-d array, sequence of sequences).
pub(crate) fn histories_of(py: Python<'_>, x: &Bound<'_, PyAny>) -> PyResult<Vec<Vec<u64>>> {
    Ok(match id_lists(py, x, "histories")? {
        IdSpec::Shared(one) => vec![one],
        IdSpec::PerQuery(many) => many,
    })
}

/// Encodes histories of ids, [`ENCODE_BATCH`] users per inference.
fn encode_ids(
    enc: &QueryEncoder,
    index: &Index,
    lists: &[Vec<u64>],
) -> Result<Vec<f32>, EncoderError> {
    let mut out = Vec::with_capacity(lists.len() * enc.dim());
    for chunk in lists.chunks(ENCODE_BATCH) {
        let refs: Vec<&[u64]> = chunk.iter().map(Vec::as_slice).collect();
        out.extend(enc.encode_ids_batch(index, &refs)?);
    }
    Ok(out)
}

/// What `Index.recommend` asks for, besides the histories.
pub(crate) struct Recommend<'a> {
    pub k: usize,
    pub params: SearchParams,
    pub keep_history: bool,
    pub exclude: Option<&'a IdSpec>,
    pub allow: Option<&'a IdSpec>,
}

/// Encodes every history and searches for each, its history excluded unless `keep_history`
/// (and `exclude`'s ids excluded as well). Runs without the GIL, on the caller's pool.
pub(crate) fn recommend(
    enc: &QueryEncoder,
    index: &Index,
    lists: &[Vec<u64>],
    r: &Recommend<'_>,
) -> Result<Vec<Vec<Hit>>, EncoderError> {
    // encode_ids_batch refuses an index of another dimension.
    let queries = encode_ids(enc, index, lists)?;
    let d = enc.dim();
    queries
        .par_chunks_exact(d)
        .enumerate()
        .map(|(i, q)| {
            let extra = r.exclude.map_or(&[][..], |e| e.for_query(i));
            let deny: std::borrow::Cow<'_, [u64]> = match (r.keep_history, extra.is_empty()) {
                (true, _) => extra.into(),
                (false, true) => lists[i].as_slice().into(),
                (false, false) => [lists[i].as_slice(), extra].concat().into(),
            };
            let filter = Filter {
                allow: r.allow.map(|a| a.for_query(i)),
                deny: &deny,
            };
            index.search_filtered(q, r.k, &r.params, &filter)
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(EncoderError::from)
}
