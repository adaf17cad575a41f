//! `mrl-index serve`: the HTTP service (see `mrl_index::serve`).

use clap::Args;
use mrl_index::serve::{Limits, ServeOptions};
use mrl_index::Error;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Arguments of `serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Index directory (a reload opens its current generation).
    #[arg(long)]
    index: PathBuf,
    /// The query encoder (query_encoder.onnx): enables /v1/recommend and the user endpoints.
    #[arg(long)]
    encoder: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// Search threads (0: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Streaming user states held in memory; the least recently used is evicted beyond it.
    #[arg(long, default_value_t = 100_000)]
    max_users: usize,
    /// User states are loaded from this file at start (if it exists) and saved to it on
    /// shutdown.
    #[arg(long)]
    state_file: Option<PathBuf>,
    /// The largest k a request may ask for.
    #[arg(long, default_value_t = Limits::default().max_k)]
    max_k: usize,
    /// The largest request body, in bytes.
    #[arg(long, default_value_t = Limits::default().max_body)]
    max_body: usize,
}

/// Runs `serve` until SIGTERM or SIGINT.
pub fn run(a: ServeArgs) -> Result<(), Error> {
    if a.threads > mrl_index::threads::MAX_THREADS {
        return Err(Error::Usage(format!(
            "--threads {}: at most {}",
            a.threads,
            mrl_index::threads::MAX_THREADS
        )));
    }
    if a.max_k == 0 || a.max_body == 0 || a.max_users == 0 {
        return Err(Error::Usage(
            "--max-k, --max-body and --max-users must be at least 1".into(),
        ));
    }
    let options = ServeOptions {
        index: a.index,
        encoder: a.encoder,
        threads: a.threads,
        max_users: a.max_users,
        state_file: a.state_file,
        limits: Limits {
            max_k: a.max_k,
            max_body: a.max_body,
            ..Limits::default()
        },
    };
    // The async runtime only parses and answers requests: searches run on the search pool.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|source| Error::Io {
            path: "tokio runtime".into(),
            source,
        })?;
    runtime.block_on(mrl_index::serve::run(options, a.addr))?;
    Ok(())
}
