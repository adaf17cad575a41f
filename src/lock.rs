//! The writer lock: at most one process at a time changes an index directory.
//!
//! A writer (a build, `tune --write` through [`crate::Index::publish_default_plan`]) takes an
//! exclusive advisory lock ([`std::fs::File::try_lock`]) on the file `LOCK` in the index
//! directory before it writes anything, and holds it until it has published its `MANIFEST`
//! and removed what is stale. A second writer is refused at once with
//! [`LockError::Held`]; it never waits and never deletes anything. Readers
//! ([`crate::Index::open`]) never take the lock: they rely on `MANIFEST` being replaced
//! atomically.
//!
//! `LOCK` is created when missing and is not a data file. Writers never delete it, so every
//! writer locks the same inode; the one exception is a build that created the directory
//! and fails, which removes the directory it made (and `LOCK` in it) while still holding the
//! lock. A writer that had opened `LOCK` just before sees, once it holds the lock, that the
//! path no longer names the file it locked, and is refused ([`LockError::Replaced`]).
//!
//! The holder writes its process id into `LOCK`, for the message a second writer gets; the
//! lock itself, not the text, is what excludes. The operating system releases the lock when
//! the holder exits, crashed or not, so a crash never leaves the directory locked. What a
//! crashed writer leaves are temporary files and unpublished data files; since no other
//! writer can exist while the lock is held, the next writer removes them
//! ([`WriterLock::remove_leftovers`]).

use crate::atomic::{is_temp_name, sync_dir};
use crate::manifest::{self, Manifest};
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// File name of the writer lock inside an index directory.
pub const LOCK_FILE: &str = "LOCK";

/// The writer lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another writer (process, or another handle in this process) holds the lock.
    #[error(
        "another writer holds the lock on {}{}: wait for it to finish (nothing was changed)",
        .path.display(),
        .pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
    )]
    Held {
        /// The lock file.
        path: PathBuf,
        /// The holder's process id, if it recorded one.
        pid: Option<u32>,
    },
    /// The lock file was removed or replaced between opening and locking it (a build that
    /// had created the directory gave up and removed it).
    #[error("{}: the lock file was removed or replaced while it was being locked; try again", .path.display())]
    Replaced {
        /// The lock file.
        path: PathBuf,
    },
    /// Creating, opening or locking the lock file failed.
    #[error("{}: cannot take the writer lock: {source}", .path.display())]
    Io {
        /// The lock file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
}

/// The lock path of an index directory.
pub fn lock_path(dir: &Path) -> PathBuf {
    dir.join(LOCK_FILE)
}

/// Whether `name` is the writer lock's file name.
pub fn is_lock_file(name: &str) -> bool {
    name == LOCK_FILE
}

/// The exclusive right to change one index directory; released when dropped.
#[derive(Debug)]
pub struct WriterLock {
    /// Held open for the lock's lifetime: closing it releases the lock.
    _file: File,
    path: PathBuf,
    dir: PathBuf,
}

impl WriterLock {
    /// Takes the writer lock of `dir` (which must exist), creating `DIR/LOCK` if missing.
    /// Fails at once with [`LockError::Held`] if another writer holds it.
    pub fn acquire(dir: &Path) -> Result<WriterLock, LockError> {
        let path = lock_path(dir);
        let file = open_lock_file(&path)?;
        WriterLock::lock_opened(file, dir, path)
    }

    /// Locks an opened lock file and checks that `path` still names it.
    fn lock_opened(file: File, dir: &Path, path: PathBuf) -> Result<WriterLock, LockError> {
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let pid = read_pid(&path);
                return Err(LockError::Held { path, pid });
            }
            Err(TryLockError::Error(source)) => return Err(LockError::Io { path, source }),
        }
        if !still_named(&file, &path) {
            return Err(LockError::Replaced { path });
        }
        // The process id is for the message a second writer gets; failing to record it
        // takes nothing from the lock.
        let _ = file
            .set_len(0)
            .and_then(|()| (&file).write_all(format!("{}\n", std::process::id()).as_bytes()));
        Ok(WriterLock {
            _file: file,
            path,
            dir: dir.to_path_buf(),
        })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The locked index directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Removes what crashed or failed writers left in the directory: every temporary file
    /// ([`is_temp_name`]), and, given the published manifest `current`, every data file of a
    /// generation it does not name ([`Manifest::generations`]). Holding the lock means no other writer exists, so none of them
    /// is being written. Best effort: a file that cannot be removed stays behind, harmless.
    pub fn remove_leftovers(&self, current: Option<&Manifest>) {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        let keep = current.map(Manifest::generations);
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let stale_data = keep.as_ref().is_some_and(|keep| {
                manifest::generation_of(&name).is_some_and(|g| !keep.contains(&g))
            });
            if is_temp_name(&name) || stale_data {
                let _ = fs::remove_file(e.path());
            }
        }
        let _ = sync_dir(&self.dir);
    }

    /// Removes the lock file, still holding the lock (released when `self` drops): for a
    /// build that created the directory and removes it again. Anyone who opened the file
    /// before is refused ([`LockError::Replaced`]) once they lock it.
    #[cfg_attr(not(feature = "build"), allow(dead_code))]
    pub(crate) fn remove_lock_file(&self) {
        let _ = fs::remove_file(&self.path);
    }
}

fn open_lock_file(path: &Path) -> Result<File, LockError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|source| LockError::Io {
            path: path.to_path_buf(),
            source,
        })
}

/// The process id a holder recorded in the lock file, if readable.
fn read_pid(path: &Path) -> Option<u32> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Whether `path` names the file `file` has open (on Unix, the same device and inode).
fn still_named(file: &File, path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        match (file.metadata(), fs::metadata(path)) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = file;
        path.is_file()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_writer_is_refused_at_once_with_the_holders_pid() {
        let dir = tempfile::tempdir().unwrap();
        let first = WriterLock::acquire(dir.path()).unwrap();
        assert_eq!(first.path(), dir.path().join(LOCK_FILE));
        let err = WriterLock::acquire(dir.path()).unwrap_err();
        match &err {
            LockError::Held { path, pid } => {
                assert_eq!(path, &dir.path().join(LOCK_FILE));
                assert_eq!(*pid, Some(std::process::id()));
            }
            other => panic!("{other:?}"),
        }
        let msg = err.to_string();
        assert!(
            msg.contains("another writer holds the lock on")
                && msg.contains("LOCK")
                && msg.contains(&format!("pid {}", std::process::id())),
            "{msg}"
        );
        drop(first);
        // Released on drop; the file stays (same inode for every writer).
        let again = WriterLock::acquire(dir.path()).unwrap();
        assert!(dir.path().join(LOCK_FILE).is_file());
        drop(again);
    }

    #[test]
    fn a_missing_directory_is_an_error_naming_the_lock_file() {
        let dir = tempfile::tempdir().unwrap();
        let err = WriterLock::acquire(&dir.path().join("missing")).unwrap_err();
        assert!(matches!(err, LockError::Io { .. }), "{err:?}");
        assert!(err.to_string().contains("missing/LOCK"), "{err}");
    }

    #[test]
    fn a_lock_file_removed_before_it_was_locked_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let holder = WriterLock::acquire(dir.path()).unwrap();
        // A second writer opens the file while the first holds it...
        let path = lock_path(dir.path());
        let late = open_lock_file(&path).unwrap();
        // ...the first removes it (a failed build removing the directory it made)...
        holder.remove_lock_file();
        drop(holder);
        assert!(!path.exists());
        // ...and the second, though it gets the lock, sees it no longer guards the path.
        let err = WriterLock::lock_opened(late, dir.path(), path.clone()).unwrap_err();
        assert!(matches!(err, LockError::Replaced { .. }), "{err:?}");
        // A fresh writer creates a new lock file.
        WriterLock::acquire(dir.path()).unwrap();
    }

    #[test]
    fn leftovers_are_removed_and_everything_else_kept() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let meta = crate::manifest::ManifestMeta {
            generation: 7,
            n_items: 0,
            dim: 0,
            coarse_dim: 0,
            store_header_crc32: 0,
            graph_header_crc32: 0,
        };
        let current = Manifest {
            meta,
            space: None,
            plan: None,
            segments: None,
        };
        let keep = [
            "MANIFEST",
            "store-0000000000000007.mrl",
            "graph-0000000000000007.mrl",
            "notes.txt",
            ".hidden",
        ];
        let temp = ".store-0000000000000009.mrl.tmp-4242-0-0badf00d";
        let stale = "graph-0000000000000009.mrl";
        for name in keep.iter().chain([&temp, &stale]) {
            fs::write(d.join(name), b"x").unwrap();
        }
        let lock = WriterLock::acquire(d).unwrap();
        // Without a manifest, only temporary files go.
        lock.remove_leftovers(None);
        assert!(!d.join(temp).exists());
        assert!(d.join(stale).exists());
        lock.remove_leftovers(Some(&current));
        assert!(!d.join(stale).exists());
        for name in keep.iter().chain([&LOCK_FILE]) {
            assert!(d.join(name).exists(), "{name} must be kept");
        }
    }
}
