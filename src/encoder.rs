//! The fMRLRec encoders: ONNX-exported graphs run through ONNX Runtime (`ort`).
//!
//! ```text
//! item features [N, F] ──► ItemEncoder  ──► item vectors [N, D]   (offline, before `build`)
//! history ids ──► rows gathered from the store ──► QueryEncoder ──► query [D] ──► Index::search
//! ```
//!
//! ONNX Runtime is loaded at run time (`ort`'s `load-dynamic`) from exactly two places, in
//! order ([`find_runtime`]):
//!
//! 1. `ORT_DYLIB_PATH`, if set (the library file itself);
//! 2. the `onnxruntime` wheel in `.venv` or `tools/peers/.venv` of the checkout this crate was
//!    built from (`CARGO_MANIFEST_DIR`; made by `tools/install-runtime.sh` or
//!    `tools/setup.sh`).
//!
//! Nothing else: not the working directory or its ancestors, not the executable's
//! directories, not the system's `python3`. A shared library is code run inside the process,
//! so it is only taken from where the user put it on purpose. A missing runtime is an
//! [`EncoderError::RuntimeNotFound`] listing where it looked, never a panic. A program that
//! knows where its runtime is (the Python package finds the `onnxruntime` wheel of its own
//! environment) calls [`use_runtime`] before opening an encoder.
//!
//! ONNX Runtime allows one environment per process: the first load wins, for the life of
//! the process ([`loaded_runtime`] says which library it was).
//!
//! Both encoders are `Send + Sync`; `ort`'s `Session::run` needs `&mut`, so each encoder holds
//! its session behind a mutex (one inference at a time per encoder; ONNX Runtime parallelises
//! inside a run).

use crate::index::Index;
use crate::search::{Filter, Hit, SearchError, SearchParams};
use ort::session::Session;
use ort::value::Tensor;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

/// The encoder's history length: longer histories keep their most recent items.
pub const MAX_HISTORY: usize = 50;

/// Errors of the encoders.
#[derive(Debug, thiserror::Error)]
pub enum EncoderError {
    /// No ONNX Runtime library was found.
    #[error("ONNX Runtime library not found (looked in: {searched}); set ORT_DYLIB_PATH to libonnxruntime.so, or run tools/install-runtime.sh in the checkout to install the onnxruntime wheel into its .venv")]
    RuntimeNotFound {
        /// Where it was looked for, in order.
        searched: String,
    },
    /// The library was found but could not be loaded.
    #[error("{path}: cannot load ONNX Runtime: {reason}")]
    RuntimeLoad {
        /// The library.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// [`use_runtime`] asked for a library other than the one this process already loaded.
    #[error("ONNX Runtime is already loaded from {loaded} in this process; cannot also load {asked} (one runtime per process)")]
    RuntimeConflict {
        /// The library in use.
        loaded: PathBuf,
        /// The library asked for.
        asked: PathBuf,
    },
    /// The model file could not be loaded.
    #[error("{path}: cannot load the ONNX model: {reason}")]
    ModelLoad {
        /// The model file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The model does not have the inputs and outputs this encoder expects.
    #[error("{path}: not a {expected} model: {reason}")]
    WrongModel {
        /// The model file.
        path: PathBuf,
        /// Which encoder was expected.
        expected: &'static str,
        /// What differs.
        reason: String,
    },
    /// Input of the wrong size.
    #[error("{what}: expected {expected} values, got {got}")]
    DimensionMismatch {
        /// Which input.
        what: &'static str,
        /// Expected length.
        expected: usize,
        /// Given length.
        got: usize,
    },
    /// A history item id that is not in the index.
    #[error("history item id {id} is not in the index")]
    UnknownItem {
        /// The id.
        id: u64,
    },
    /// An empty history.
    #[error("the history is empty: a query needs at least one item")]
    EmptyHistory,
    /// Inference failed.
    #[error("ONNX Runtime inference failed: {0}")]
    Run(String),
    /// The search that follows the encoding (in [`QueryEncoder::recommend`]) failed.
    #[error(transparent)]
    Search(#[from] SearchError),
}

/// The process's ONNX Runtime environment and the library it was loaded from (or why it
/// could not be).
type Runtime = Result<(ort::environment::Environment, PathBuf), EncoderError>;

static ENVIRONMENT: OnceLock<Runtime> = OnceLock::new();

/// The virtual environments of `root` that may hold the `onnxruntime` wheel.
fn venvs(root: &Path) -> [PathBuf; 2] {
    [root.join(".venv"), root.join("tools/peers/.venv")]
}

/// The `onnxruntime/capi` directories of the Python versions installed in `venv`.
fn capi_dirs(venv: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(venv.join("lib")) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with("python3") {
                out.push(e.path().join("site-packages/onnxruntime/capi"));
            }
        }
    }
    out.sort();
    out
}

/// The ONNX Runtime library file in `dir` (an `onnxruntime/capi` directory of the PyPI
/// wheel), preferring the fully versioned name; `None` if there is none.
pub fn runtime_library_in(dir: &Path) -> Option<PathBuf> {
    let mut libs: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .map(|n| n.to_string_lossy().starts_with("libonnxruntime.so"))
                .unwrap_or(false)
        })
        .collect();
    libs.sort();
    // Prefer the fully versioned file (libonnxruntime.so.1.xx.y) when several exist.
    libs.pop()
}

/// The checkouts whose virtual environments [`find_runtime`] searches: only the one this
/// crate was built from (`CARGO_MANIFEST_DIR`), never the working directory or the
/// executable's directories.
pub fn runtime_roots() -> Vec<PathBuf> {
    vec![PathBuf::from(env!("CARGO_MANIFEST_DIR"))]
}

/// Finds the ONNX Runtime shared library: `ORT_DYLIB_PATH` if set, else the `onnxruntime`
/// wheel in the virtual environments of [`runtime_roots`] (see the module documentation).
pub fn find_runtime() -> Result<PathBuf, EncoderError> {
    find_runtime_in(
        std::env::var_os("ORT_DYLIB_PATH").map(PathBuf::from),
        &runtime_roots(),
    )
}

/// [`find_runtime`] with the environment override and the roots given: the override if
/// given (which must be a file), else the first library in `roots`' virtual environments.
fn find_runtime_in(
    env_override: Option<PathBuf>,
    roots: &[PathBuf],
) -> Result<PathBuf, EncoderError> {
    if let Some(p) = env_override {
        return if p.is_file() {
            Ok(p)
        } else {
            Err(EncoderError::RuntimeNotFound {
                searched: format!("ORT_DYLIB_PATH={} (no such file)", p.display()),
            })
        };
    }
    let mut searched = vec!["ORT_DYLIB_PATH (not set)".to_string()];
    for root in roots {
        for venv in venvs(root) {
            for dir in capi_dirs(&venv) {
                if let Some(lib) = runtime_library_in(&dir) {
                    return Ok(lib);
                }
            }
            searched.push(venv.display().to_string());
        }
    }
    Err(EncoderError::RuntimeNotFound {
        searched: searched.join(", "),
    })
}

/// Loads the ONNX Runtime library at `path`.
fn load_runtime(path: PathBuf) -> Runtime {
    if !path.is_file() {
        return Err(EncoderError::RuntimeNotFound {
            searched: format!("{} (no such file)", path.display()),
        });
    }
    let load = std::panic::catch_unwind(|| {
        ort::init_from(&path)
            .map_err(|e| e.to_string())
            .and_then(|b| b.with_name("mrl-index").build().map_err(|e| e.to_string()))
    });
    match load {
        Ok(Ok(env)) => Ok((env, path)),
        Ok(Err(reason)) => Err(EncoderError::RuntimeLoad { path, reason }),
        Err(_) => Err(EncoderError::RuntimeLoad {
            path,
            reason: "ONNX Runtime panicked while loading (wrong or incompatible library?)".into(),
        }),
    }
}

fn loaded(
    runtime: &'static Runtime,
) -> Result<&'static (ort::environment::Environment, PathBuf), EncoderError> {
    runtime.as_ref().map_err(clone_error)
}

/// Loads ONNX Runtime from the library at `path` for this process, instead of looking for
/// it with [`find_runtime`]. One environment per process: if a runtime was already loaded,
/// asking for the same file again is fine, and another file is an
/// [`EncoderError::RuntimeConflict`]; if loading already failed, that error is returned.
pub fn use_runtime(path: &Path) -> Result<(), EncoderError> {
    let (_, used) = loaded(ENVIRONMENT.get_or_init(|| load_runtime(path.to_path_buf())))?;
    let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    };
    if same(used, path) {
        Ok(())
    } else {
        Err(EncoderError::RuntimeConflict {
            loaded: used.clone(),
            asked: path.to_path_buf(),
        })
    }
}

/// The ONNX Runtime library this process loaded, if one was loaded.
pub fn loaded_runtime() -> Option<PathBuf> {
    match ENVIRONMENT.get() {
        Some(Ok((_, path))) => Some(path.clone()),
        _ => None,
    }
}

fn environment() -> Result<&'static ort::environment::Environment, EncoderError> {
    let runtime = ENVIRONMENT.get_or_init(|| load_runtime(find_runtime()?));
    Ok(&loaded(runtime)?.0)
}

fn clone_error(e: &EncoderError) -> EncoderError {
    match e {
        EncoderError::RuntimeNotFound { searched } => EncoderError::RuntimeNotFound {
            searched: searched.clone(),
        },
        EncoderError::RuntimeLoad { path, reason } => EncoderError::RuntimeLoad {
            path: path.clone(),
            reason: reason.clone(),
        },
        EncoderError::RuntimeConflict { loaded, asked } => EncoderError::RuntimeConflict {
            loaded: loaded.clone(),
            asked: asked.clone(),
        },
        other => EncoderError::Run(other.to_string()),
    }
}

/// Opens a session on `path` and reads the last dimension of its named input and output.
fn open_session(
    path: &Path,
    expected: &'static str,
    input: &str,
    output: &str,
) -> Result<(Session, usize, usize), EncoderError> {
    let env = environment()?;
    if !path.is_file() {
        return Err(EncoderError::ModelLoad {
            path: path.to_path_buf(),
            reason: "no such file".into(),
        });
    }
    let session = Session::builder(env)
        .and_then(|mut b| b.commit_from_file(path))
        .map_err(|e| EncoderError::ModelLoad {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    let wrong = |reason: String| EncoderError::WrongModel {
        path: path.to_path_buf(),
        expected,
        reason,
    };
    let last_dim = |outlets: &[ort::value::Outlet], name: &str| -> Result<usize, EncoderError> {
        let o = outlets
            .iter()
            .find(|o| o.name() == name)
            .ok_or_else(|| wrong(format!("no tensor named {name:?}")))?;
        let shape = o
            .dtype()
            .tensor_shape()
            .ok_or_else(|| wrong(format!("{name:?} is not a tensor")))?;
        shape
            .last()
            .copied()
            .filter(|&d| d > 0)
            .map(|d| d as usize)
            .ok_or_else(|| wrong(format!("{name:?} has no fixed last dimension")))
    };
    let in_dim = last_dim(session.inputs(), input)?;
    let out_dim = last_dim(session.outputs(), output)?;
    Ok((session, in_dim, out_dim))
}

fn run_err(e: impl std::fmt::Display) -> EncoderError {
    EncoderError::Run(e.to_string())
}

/// Item features → item vectors (`item_encoder.onnx`: `features [N, F]` → `item_vectors [N, D]`).
///
/// A model with an item-identity component also takes `rows [N]` (int64): each item's row in
/// the table of items it was trained on, the same row as in the training features file (item id
/// r + 1 is row r for the Beauty model). A row outside the table (such as `-1`, for an item the
/// model never saw) gives the text part alone. [`ItemEncoder::encode`] gives row r of `features`
/// identity row r (the catalogue's own features file, in its own order);
/// [`ItemEncoder::encode_rows`] takes the rows explicitly.
pub struct ItemEncoder {
    session: Mutex<Session>,
    in_dim: usize,
    out_dim: usize,
    identity: bool,
}

impl ItemEncoder {
    /// Loads `item_encoder.onnx`.
    pub fn open(path: &Path) -> Result<ItemEncoder, EncoderError> {
        let (session, in_dim, out_dim) =
            open_session(path, "item encoder", "features", "item_vectors")?;
        let identity = session.inputs().iter().any(|i| i.name() == "rows");
        Ok(ItemEncoder {
            session: Mutex::new(session),
            in_dim,
            out_dim,
            identity,
        })
    }

    /// Feature dimension F.
    pub fn in_dim(&self) -> usize {
        self.in_dim
    }

    /// Item vector dimension D.
    pub fn out_dim(&self) -> usize {
        self.out_dim
    }

    /// Whether the model has an item-identity component (the `rows` input).
    pub fn has_identity(&self) -> bool {
        self.identity
    }

    /// Encodes row-major features (`n × F`) in batches of `batch` rows; returns `n × D`. Row r
    /// of `features` is identity row r (see the type's documentation): use this on the features
    /// file the model was trained with, or [`ItemEncoder::encode_rows`] otherwise.
    pub fn encode(&self, features: &[f32], batch: usize) -> Result<Vec<f32>, EncoderError> {
        let n = self.rows_of(features)?;
        let rows: Vec<i64> = (0..n as i64).collect();
        self.run(features, &rows, batch)
    }

    /// Encodes row-major features (`n × F`) whose identity rows are `rows` (`n` of them; `-1`
    /// or any row outside the model's table for an item it was not trained on). A model
    /// without an identity component ignores `rows`.
    pub fn encode_rows(
        &self,
        features: &[f32],
        rows: &[i64],
        batch: usize,
    ) -> Result<Vec<f32>, EncoderError> {
        let n = self.rows_of(features)?;
        if rows.len() != n {
            return Err(EncoderError::DimensionMismatch {
                what: "identity rows (one per item)",
                expected: n,
                got: rows.len(),
            });
        }
        self.run(features, rows, batch)
    }

    fn rows_of(&self, features: &[f32]) -> Result<usize, EncoderError> {
        if !features.len().is_multiple_of(self.in_dim) {
            return Err(EncoderError::DimensionMismatch {
                what: "item features",
                expected: self.in_dim,
                got: features.len() % self.in_dim,
            });
        }
        Ok(features.len() / self.in_dim)
    }

    fn run(&self, features: &[f32], rows: &[i64], batch: usize) -> Result<Vec<f32>, EncoderError> {
        let batch = batch.max(1);
        let mut out = Vec::with_capacity(rows.len() * self.out_dim);
        let mut session = self.session.lock().map_err(run_err)?;
        for (chunk, ids) in features.chunks(batch * self.in_dim).zip(rows.chunks(batch)) {
            let n = ids.len();
            let input = Tensor::from_array(([n, self.in_dim], chunk.to_vec())).map_err(run_err)?;
            let outputs = if self.identity {
                let ids = Tensor::from_array(([n], ids.to_vec())).map_err(run_err)?;
                session.run(ort::inputs!["features" => input, "rows" => ids])
            } else {
                session.run(ort::inputs!["features" => input])
            }
            .map_err(run_err)?;
            let (_, data) = outputs["item_vectors"]
                .try_extract_tensor::<f32>()
                .map_err(run_err)?;
            if data.len() != n * self.out_dim {
                return Err(EncoderError::Run(format!(
                    "item encoder returned {} values for {n} rows",
                    data.len()
                )));
            }
            out.extend_from_slice(data);
        }
        Ok(out)
    }
}

/// A user's history of item vectors → query vector (`query_encoder.onnx`:
/// `history [B, L, D]` left-aligned, oldest first, + `lengths [B]` → `query [B, D]`).
pub struct QueryEncoder {
    pub(crate) session: Mutex<Session>,
    dim: usize,
    /// Whether the file has the step interface ([`crate::stream`]).
    pub(crate) step: crate::stream::StepInterface,
}

impl QueryEncoder {
    /// Loads `query_encoder.onnx`.
    pub fn open(path: &Path) -> Result<QueryEncoder, EncoderError> {
        let (session, in_dim, out_dim) = open_session(path, "query encoder", "history", "query")?;
        if in_dim != out_dim {
            return Err(EncoderError::WrongModel {
                path: path.to_path_buf(),
                expected: "query encoder",
                reason: format!("history width {in_dim} differs from query width {out_dim}"),
            });
        }
        Ok(QueryEncoder {
            step: crate::stream::StepInterface::detect(&session, path, out_dim),
            session: Mutex::new(session),
            dim: out_dim,
        })
    }

    /// Vector dimension D.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Encodes a batch of histories, each a row-major `len × D` matrix of item vectors (oldest
    /// first; only the last [`MAX_HISTORY`] are used). Returns `B × D`.
    pub fn encode(&self, histories: &[&[f32]]) -> Result<Vec<f32>, EncoderError> {
        let d = self.dim;
        let mut lengths = Vec::with_capacity(histories.len());
        for h in histories {
            if h.is_empty() {
                return Err(EncoderError::EmptyHistory);
            }
            if h.len() % d != 0 {
                return Err(EncoderError::DimensionMismatch {
                    what: "history item vectors",
                    expected: d,
                    got: h.len() % d,
                });
            }
            lengths.push((h.len() / d).min(MAX_HISTORY));
        }
        let b = histories.len();
        if b == 0 {
            return Ok(Vec::new());
        }
        let l = lengths.iter().copied().max().unwrap_or(1);
        let mut history = vec![0f32; b * l * d];
        for (i, h) in histories.iter().enumerate() {
            let len = lengths[i];
            let recent = &h[h.len() - len * d..];
            history[i * l * d..i * l * d + len * d].copy_from_slice(recent);
        }
        let lengths_i64: Vec<i64> = lengths.iter().map(|&x| x as i64).collect();
        let mut session = self.session.lock().map_err(run_err)?;
        let hist = Tensor::from_array(([b, l, d], history)).map_err(run_err)?;
        let lens = Tensor::from_array(([b], lengths_i64)).map_err(run_err)?;
        let outputs = session
            .run(ort::inputs!["history" => hist, "lengths" => lens])
            .map_err(run_err)?;
        let (_, data) = outputs["query"]
            .try_extract_tensor::<f32>()
            .map_err(run_err)?;
        if data.len() != b * d {
            return Err(EncoderError::Run(format!(
                "query encoder returned {} values for {b} histories",
                data.len()
            )));
        }
        Ok(data.to_vec())
    }

    /// Gathers the item vectors of `history` (external ids, oldest first) from the index's
    /// store and encodes them into one query vector.
    pub fn encode_ids(&self, index: &Index, history: &[u64]) -> Result<Vec<f32>, EncoderError> {
        self.encode_ids_batch(index, &[history])
    }

    /// [`encode_ids`](Self::encode_ids) for many users in one inference: `B × D`.
    pub fn encode_ids_batch(
        &self,
        index: &Index,
        histories: &[&[u64]],
    ) -> Result<Vec<f32>, EncoderError> {
        if index.dim() != self.dim {
            return Err(EncoderError::DimensionMismatch {
                what: "index vectors for the query encoder",
                expected: self.dim,
                got: index.dim(),
            });
        }
        let rows = histories
            .iter()
            .map(|h| gather_history(index, h))
            .collect::<Result<Vec<_>, _>>()?;
        let rows: Vec<&[f32]> = rows.iter().map(Vec::as_slice).collect();
        self.encode(&rows)
    }

    /// A recommendation: encodes `history` (external ids, oldest first) and searches the
    /// index for the `k` best items, the whole history excluded unless `keep_history`.
    pub fn recommend(
        &self,
        index: &Index,
        history: &[u64],
        k: usize,
        params: &SearchParams,
        keep_history: bool,
    ) -> Result<Vec<Hit>, EncoderError> {
        let query = self.encode_ids(index, history)?;
        let filter = if keep_history {
            Filter::NONE
        } else {
            Filter::deny(history)
        };
        Ok(index.search_filtered(&query, k, params, &filter)?)
    }
}

/// The item vectors of `history` (external ids, oldest first; only the last [`MAX_HISTORY`])
/// read from the index (any segment; deleted items are unknown), row-major: the query encoder's input for one user.
pub fn gather_history(index: &Index, history: &[u64]) -> Result<Vec<f32>, EncoderError> {
    if history.is_empty() {
        return Err(EncoderError::EmptyHistory);
    }
    let dim = index.dim();
    let recent = &history[history.len().saturating_sub(MAX_HISTORY)..];
    let mut rows = vec![0f32; recent.len() * dim];
    for (i, &id) in recent.iter().enumerate() {
        if !index.read_item(id, &mut rows[i * dim..(i + 1) * dim]) {
            return Err(EncoderError::UnknownItem { id });
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Plants `libonnxruntime.so.1.0.0` in `root/.venv` as the wheel would put it.
    fn plant(root: &Path) -> PathBuf {
        let capi = root.join(".venv/lib/python3.11/site-packages/onnxruntime/capi");
        std::fs::create_dir_all(&capi).unwrap();
        let lib = capi.join("libonnxruntime.so.1.0.0");
        std::fs::write(&lib, b"not a library").unwrap();
        lib
    }

    #[test]
    fn only_the_built_checkout_is_searched() {
        // Not the working directory, its ancestors or the executable's: those are where a
        // library could be planted.
        assert_eq!(
            runtime_roots(),
            vec![PathBuf::from(env!("CARGO_MANIFEST_DIR"))]
        );
    }

    #[test]
    fn a_library_in_an_ancestors_venv_is_not_picked_up() {
        let tmp = tempfile::tempdir().unwrap();
        let planted = plant(tmp.path());
        let below = tmp.path().join("work/checkout");
        std::fs::create_dir_all(&below).unwrap();
        // Searching the checkout below finds nothing, and says exactly where it looked.
        let err = find_runtime_in(None, std::slice::from_ref(&below)).unwrap_err();
        let EncoderError::RuntimeNotFound { searched } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(
            searched,
            &format!(
                "ORT_DYLIB_PATH (not set), {}, {}",
                below.join(".venv").display(),
                below.join("tools/peers/.venv").display()
            )
        );
        let msg = err.to_string();
        assert!(
            msg.contains("set ORT_DYLIB_PATH") && msg.contains("tools/install-runtime.sh"),
            "{msg}"
        );
        // The root that holds it, named explicitly, does find it.
        assert_eq!(
            find_runtime_in(None, &[tmp.path().to_path_buf()]).unwrap(),
            planted
        );
    }

    #[test]
    fn ort_dylib_path_wins_and_must_exist() {
        let tmp = tempfile::tempdir().unwrap();
        plant(tmp.path());
        let other = tmp.path().join("libonnxruntime.so");
        std::fs::write(&other, b"x").unwrap();
        let roots = [tmp.path().to_path_buf()];
        assert_eq!(find_runtime_in(Some(other.clone()), &roots).unwrap(), other);
        let missing = tmp.path().join("missing.so");
        let err = find_runtime_in(Some(missing), &roots).unwrap_err();
        assert!(
            err.to_string().contains("missing.so (no such file)"),
            "{err}"
        );
    }
}
