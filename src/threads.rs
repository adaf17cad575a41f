//! Thread pools: every part that runs on a chosen number of threads (the build, `tune`,
//! `bench`, the command line) gets its rayon pool here.

/// A rayon pool could not be started.
#[derive(Debug, thiserror::Error)]
#[error("cannot start a pool of {threads} threads: {reason}")]
pub struct ThreadPoolError {
    /// Threads asked for (0: all cores).
    pub threads: usize,
    /// Why rayon refused.
    pub reason: String,
}

/// The most threads a pool may have: a flag of millions would otherwise spawn them all
/// (each with its stack) before failing.
pub const MAX_THREADS: usize = 4096;

/// A rayon pool of `threads` threads (0: one per core; at most [`MAX_THREADS`]).
pub fn pool(threads: usize) -> Result<rayon::ThreadPool, ThreadPoolError> {
    if threads > MAX_THREADS {
        return Err(ThreadPoolError {
            threads,
            reason: format!("at most {MAX_THREADS} threads are supported"),
        });
    }
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| ThreadPoolError {
            threads,
            reason: e.to_string(),
        })
}

/// Runs `f` on a pool of `threads` threads (0: one per core).
pub fn with_threads<T: Send>(
    threads: usize,
    f: impl FnOnce() -> T + Send,
) -> Result<T, ThreadPoolError> {
    Ok(pool(threads)?.install(f))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_on_the_number_of_threads_asked_for() {
        assert_eq!(with_threads(3, rayon::current_num_threads).unwrap(), 3);
        assert_eq!(
            with_threads(0, rayon::current_num_threads).unwrap(),
            std::thread::available_parallelism().map_or(1, |n| n.get())
        );
    }

    #[test]
    fn a_huge_thread_count_is_an_error_before_any_thread_starts() {
        let err = with_threads(usize::MAX, || ()).unwrap_err().to_string();
        assert!(err.contains("at most 4096 threads"), "{err}");
    }
}
