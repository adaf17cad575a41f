//! The fMRLRec encoders: ONNX-exported graphs run through ONNX Runtime (`ort`).
//!
//! ```text
//! item features [N, F] ──► ItemEncoder  ──► item vectors [N, D]   (offline, before `build`)
//! history ids ──► rows gathered from the store ──► QueryEncoder ──► query [D] ──► Index::search
//! ```
//!
//! ONNX Runtime is loaded at run time (`ort`'s `load-dynamic`): from `ORT_DYLIB_PATH` if set,
//! else from the `onnxruntime` wheel in the project's `.venv` (made by `tools/setup.sh`), found
//! from the working directory or the executable upwards, else from the `onnxruntime` package
//! of `python3`. A missing runtime is an [`EncoderError::RuntimeNotFound`], never a panic.
//!
//! Both encoders are `Send + Sync`; `ort`'s `Session::run` needs `&mut`, so each encoder holds
//! its session behind a mutex (one inference at a time per encoder; ONNX Runtime parallelises
//! inside a run).

use crate::index::Index;
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
    #[error("ONNX Runtime library not found (looked in: {searched}); run tools/setup.sh to install the onnxruntime wheel into .venv, or set ORT_DYLIB_PATH to libonnxruntime.so")]
    RuntimeNotFound {
        /// Where it was looked for.
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
}

static ENVIRONMENT: OnceLock<Result<ort::environment::Environment, EncoderError>> = OnceLock::new();

fn site_packages_candidates(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for venv in [root.join(".venv"), root.join("tools/peers/.venv")] {
        let lib = venv.join("lib");
        if let Ok(entries) = std::fs::read_dir(&lib) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().starts_with("python3") {
                    out.push(e.path().join("site-packages/onnxruntime/capi"));
                }
            }
        }
    }
    out
}

fn library_in(dir: &Path) -> Option<PathBuf> {
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

/// Finds the ONNX Runtime shared library (see the module documentation for the order).
pub fn find_runtime() -> Result<PathBuf, EncoderError> {
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH") {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(EncoderError::RuntimeNotFound {
                searched: format!("ORT_DYLIB_PATH={} (no such file)", p.display()),
            })
        };
    }
    let mut searched = Vec::new();
    for root in &checkout_roots() {
        for dir in site_packages_candidates(root) {
            if let Some(lib) = library_in(&dir) {
                return Ok(lib);
            }
        }
        searched.push(format!("{}/.venv", root.display()));
    }
    // Last resort: the onnxruntime package of the system's python3.
    if let Ok(out) = std::process::Command::new("python3")
        .args([
            "-c",
            "import onnxruntime, os; print(os.path.join(os.path.dirname(onnxruntime.__file__), 'capi'))",
        ])
        .output()
    {
        if out.status.success() {
            let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            if let Some(lib) = library_in(&dir) {
                return Ok(lib);
            }
        }
    }
    searched.dedup();
    searched.push("python3's onnxruntime package".into());
    Err(EncoderError::RuntimeNotFound {
        searched: searched.join(", "),
    })
}

fn environment() -> Result<&'static ort::environment::Environment, EncoderError> {
    let env = ENVIRONMENT.get_or_init(|| {
        let path = find_runtime()?;
        let load = std::panic::catch_unwind(|| {
            ort::init_from(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| b.with_name("mrl-index").build().map_err(|e| e.to_string()))
        });
        match load {
            Ok(Ok(env)) => Ok(env),
            Ok(Err(reason)) => Err(EncoderError::RuntimeLoad { path, reason }),
            Err(_) => Err(EncoderError::RuntimeLoad {
                path,
                reason: "ONNX Runtime panicked while loading (wrong or incompatible library?)"
                    .into(),
            }),
        }
    });
    match env {
        Ok(e) => Ok(e),
        Err(e) => Err(clone_error(e)),
    }
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
pub struct ItemEncoder {
    session: Mutex<Session>,
    in_dim: usize,
    out_dim: usize,
}

impl ItemEncoder {
    /// Loads `item_encoder.onnx`.
    pub fn open(path: &Path) -> Result<ItemEncoder, EncoderError> {
        let (session, in_dim, out_dim) =
            open_session(path, "item encoder", "features", "item_vectors")?;
        Ok(ItemEncoder {
            session: Mutex::new(session),
            in_dim,
            out_dim,
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

    /// Encodes row-major features (`n × F`) in batches of `batch` rows; returns `n × D`.
    pub fn encode(&self, features: &[f32], batch: usize) -> Result<Vec<f32>, EncoderError> {
        if !features.len().is_multiple_of(self.in_dim) {
            return Err(EncoderError::DimensionMismatch {
                what: "item features",
                expected: self.in_dim,
                got: features.len() % self.in_dim,
            });
        }
        let n = features.len() / self.in_dim;
        let mut out = Vec::with_capacity(n * self.out_dim);
        let mut session = self.session.lock().map_err(run_err)?;
        for chunk in features.chunks(batch.max(1) * self.in_dim) {
            let rows = chunk.len() / self.in_dim;
            let input =
                Tensor::from_array(([rows, self.in_dim], chunk.to_vec())).map_err(run_err)?;
            let outputs = session
                .run(ort::inputs!["features" => input])
                .map_err(run_err)?;
            let (_, data) = outputs["item_vectors"]
                .try_extract_tensor::<f32>()
                .map_err(run_err)?;
            if data.len() != rows * self.out_dim {
                return Err(EncoderError::Run(format!(
                    "item encoder returned {} values for {rows} rows",
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
    session: Mutex<Session>,
    dim: usize,
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
        if index.dim() != self.dim {
            return Err(EncoderError::DimensionMismatch {
                what: "index vectors for the query encoder",
                expected: self.dim,
                got: index.dim(),
            });
        }
        let rows = gather_history(index, history)?;
        self.encode(&[&rows])
    }
}

/// The item vectors of `history` (external ids, oldest first; only the last [`MAX_HISTORY`])
/// read from the index's store, row-major: the query encoder's input for one user.
pub fn gather_history(index: &Index, history: &[u64]) -> Result<Vec<f32>, EncoderError> {
    if history.is_empty() {
        return Err(EncoderError::EmptyHistory);
    }
    let dim = index.dim();
    let recent = &history[history.len().saturating_sub(MAX_HISTORY)..];
    let mut rows = vec![0f32; recent.len() * dim];
    for (i, &id) in recent.iter().enumerate() {
        let row = index
            .store()
            .row_of(id)
            .ok_or(EncoderError::UnknownItem { id })?;
        index
            .store()
            .read_vector(row as usize, &mut rows[i * dim..(i + 1) * dim]);
    }
    Ok(rows)
}

/// Directories that may hold this checkout: the working directory and its ancestors, the
/// executable's ancestors, and the source tree the crate was built from.
pub fn checkout_roots() -> Vec<PathBuf> {
    let mut roots = Vec::new();
    if let Ok(cwd) = std::env::current_dir() {
        roots.extend(cwd.ancestors().map(Path::to_path_buf));
    }
    if let Ok(exe) = std::env::current_exe() {
        roots.extend(exe.ancestors().skip(1).map(Path::to_path_buf));
    }
    roots.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    roots
}
