//! Fault injection for the crash tests: every step of [`crate::atomic`] that writes to disk
//! is a numbered *write point*, and the environment variable `MRL_INDEX_FAULT` makes one of
//! them fail the way a real machine fails.
//!
//! ```text
//! MRL_INDEX_FAULT=kill@N     the process kills itself with SIGKILL at write point N (1-based)
//! MRL_INDEX_FAULT=enospc@N   write point N, and every later one, fails with ENOSPC
//!                            ("No space left on device", as a full disk answers)
//! ```
//!
//! Write points, in the order a writer meets them: creating a temporary file, each write of
//! its buffer (1 MiB) to the operating system, its fsync, the rename that publishes it, and
//! the directory's fsync.
//! A test runs a writer (`mrl-index add`, `delete`, `compact`) once per point until the run
//! completes without reaching the point, and checks after each that the index opens,
//! verifies and answers as the last published generation. Unset (always, outside those
//! tests), a write point costs one relaxed atomic load.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// The environment variable that arms a fault.
pub const FAULT_ENV: &str = "MRL_INDEX_FAULT";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    Kill(u64),
    NoSpace(u64),
}

static ARMED: OnceLock<Option<Fault>> = OnceLock::new();
static POINTS: AtomicU64 = AtomicU64::new(0);

fn parse(text: &str) -> Option<Fault> {
    let (what, at) = text.trim().split_once('@')?;
    let at: u64 = at.parse().ok().filter(|&n| n > 0)?;
    match what {
        "kill" => Some(Fault::Kill(at)),
        "enospc" => Some(Fault::NoSpace(at)),
        _ => None,
    }
}

fn armed() -> Option<Fault> {
    *ARMED.get_or_init(|| {
        let text = std::env::var(FAULT_ENV).ok()?;
        let fault = parse(&text);
        if fault.is_none() {
            eprintln!("warning: {FAULT_ENV}={text:?} is not kill@N or enospc@N; ignored");
        }
        fault
    })
}

/// A write point: counts it and, if a fault is armed for it, fails (ENOSPC) or kills the
/// process (SIGKILL).
#[inline]
pub fn point() -> io::Result<()> {
    let Some(fault) = armed() else {
        return Ok(());
    };
    let n = POINTS.fetch_add(1, Ordering::Relaxed) + 1;
    match fault {
        Fault::NoSpace(at) if n >= at => Err(io::Error::from_raw_os_error(28)),
        Fault::Kill(at) if n == at => kill_self(),
        _ => Ok(()),
    }
}

fn kill_self() -> ! {
    #[cfg(unix)]
    {
        // SAFETY: `kill` with this process's id and SIGKILL has no memory effects; the
        // process ends here.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
    std::process::abort()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_well_formed_faults_arm() {
        assert_eq!(parse("kill@3"), Some(Fault::Kill(3)));
        assert_eq!(parse(" enospc@12 "), Some(Fault::NoSpace(12)));
        for bad in ["", "kill", "kill@0", "kill@-1", "oom@2", "kill@x"] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}
