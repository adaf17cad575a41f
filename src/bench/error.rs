//! [`BenchError`]: what can go wrong in a benchmark run, naming the file or setting at fault.

use std::path::PathBuf;

/// Errors of the benchmark harness (its own files and settings; errors of the index, the
/// search or the input files keep their own types in [`crate::Error`]).
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// Reading or writing a file.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A JSON file (rows, a cache sidecar, a set description) that does not parse, does not
    /// hold what was expected, or cannot be written.
    #[error("{}: {what}: {source}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// Where in the file, or what was being read (`row 3`, `line 7`, `rows`).
        what: String,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },
    /// A file whose contents are not what the harness expects.
    #[error("{}: {reason}", path.display())]
    BadFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Ground truth of the wrong shape for the queries or `k`.
    #[error("ground truth: {0}")]
    Truth(String),
    /// Settings or inputs that cannot be benchmarked; the message names the setting.
    #[error("{0}")]
    Invalid(String),
    /// Drawing a plot failed (the plotting library's message).
    #[error("drawing the plot: {0}")]
    Plot(String),
}

impl BenchError {
    /// An [`BenchError::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> BenchError {
        BenchError::Io {
            path: path.into(),
            source,
        }
    }

    /// A [`BenchError::Json`] for `path`.
    pub fn json(
        path: impl Into<PathBuf>,
        what: impl Into<String>,
        source: serde_json::Error,
    ) -> BenchError {
        BenchError::Json {
            path: path.into(),
            what: what.into(),
            source,
        }
    }
}
