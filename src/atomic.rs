//! Crash-safe file creation: write a temporary file in the destination's directory, fsync it,
//! rename it over the destination, fsync the directory.
//!
//! A reader therefore sees either the old file or the complete new one, never a prefix. A
//! writer that fails or is dropped before [`AtomicFile::commit`] removes its temporary file.
//! It is the crate's one atomic writer: index files, manifests, and the `.npy` files that
//! `ingest` and `bench` write all go through it.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Distinguishes the temporary files of concurrent writers within one process.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A file being written under a temporary name, published by [`AtomicFile::commit`].
pub struct AtomicFile {
    writer: Option<BufWriter<PointFile>>,
    tmp_path: PathBuf,
    final_path: PathBuf,
}

impl AtomicFile {
    /// Creates `.<name>.tmp-<pid>-<count>-<nonce>` beside `final_path` (a name
    /// [`is_temp_name`] recognises).
    pub fn create(final_path: &Path) -> io::Result<AtomicFile> {
        let dir = parent_dir(final_path);
        let name = final_path
            .file_name()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?
            .to_string_lossy()
            .into_owned();
        // The process id and a per-process counter keep concurrent writers apart; the clock
        // keeps apart a process that reuses a crashed one's id.
        let nonce = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let count = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp_path = dir.join(format!(
            ".{name}.tmp-{}-{count}-{nonce:08x}",
            std::process::id()
        ));
        crate::fault::point()?;
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp_path)?;
        Ok(AtomicFile {
            writer: Some(BufWriter::with_capacity(1 << 20, PointFile(file))),
            tmp_path,
            final_path: final_path.to_path_buf(),
        })
    }

    /// The path the file will have once committed.
    pub fn final_path(&self) -> &Path {
        &self.final_path
    }

    fn writer(&mut self) -> &mut BufWriter<PointFile> {
        self.writer
            .as_mut()
            .expect("AtomicFile used after commit (internal error)")
    }

    /// Flushes, fsyncs, renames over the final path and fsyncs the directory. If any step
    /// before the rename fails, the temporary file is removed.
    pub fn commit(mut self) -> io::Result<PathBuf> {
        let writer = self
            .writer
            .take()
            .expect("AtomicFile committed twice (internal error)");
        let published = writer
            .into_inner()
            .map_err(|e| e.into_error())
            .and_then(|file| crate::fault::point().and_then(|()| file.0.sync_all()))
            .and_then(|()| crate::fault::point())
            .and_then(|()| fs::rename(&self.tmp_path, &self.final_path));
        if let Err(e) = published {
            // Not published: nothing to report if the removal fails too.
            let _ = fs::remove_file(&self.tmp_path);
            return Err(e);
        }
        crate::fault::point()?;
        sync_dir(parent_dir(&self.final_path))?;
        Ok(self.final_path.clone())
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.writer().write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.writer().flush()
    }
}

/// The temporary file under the buffer: each write that reaches the operating system is a
/// write point of [`crate::fault`].
struct PointFile(File);

impl Write for PointFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        crate::fault::point()?;
        self.0.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl Seek for PointFile {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.0.seek(pos)
    }
}

impl Seek for AtomicFile {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.writer().seek(pos)
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.writer.take().is_some() {
            // Not committed: remove the partial file. Nothing to report if that fails too.
            let _ = fs::remove_file(&self.tmp_path);
        }
    }
}

/// Whether `name` is the name of a temporary file [`AtomicFile::create`] makes:
/// `.<name>.tmp-<pid>-<count>-<nonce>` (decimal process id and count, hexadecimal nonce).
/// In an index directory held by the writer lock, every such file is a leftover of a writer
/// that crashed ([`crate::lock::WriterLock::remove_leftovers`]).
pub fn is_temp_name(name: &str) -> bool {
    let Some((base, tail)) = name.rsplit_once(".tmp-") else {
        return false;
    };
    let mut parts = tail.split('-');
    let digits = |s: Option<&str>, radix: u32| {
        s.is_some_and(|s| !s.is_empty() && s.chars().all(|c| c.is_digit(radix)))
    };
    base.len() > 1
        && base.starts_with('.')
        && digits(parts.next(), 10)
        && digits(parts.next(), 10)
        && digits(parts.next(), 16)
        && parts.next().is_none()
}

/// Writes `data` to `path` atomically.
pub fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    let mut f = AtomicFile::create(path)?;
    f.write_all(data)?;
    f.commit()?;
    Ok(())
}

/// The directory holding `path` (`.` for a bare file name).
pub fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Fsyncs a directory so that a rename inside it is durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_publishes_and_drop_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.bin");
        write_atomic(&p, b"hello").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"hello");
        {
            let mut f = AtomicFile::create(&p).unwrap();
            f.write_all(b"half-written").unwrap();
            // dropped without commit
        }
        assert_eq!(fs::read(&p).unwrap(), b"hello", "old file must survive");
        let leftovers: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "temporary file must be removed");
    }

    #[test]
    fn a_failed_rename_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        // The destination is a non-empty directory: the rename fails.
        let p = dir.path().join("blocked");
        fs::create_dir(&p).unwrap();
        fs::write(p.join("keep"), b"x").unwrap();
        assert!(write_atomic(&p, b"data").is_err());
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("blocked")]);
    }

    #[test]
    fn temporary_names_are_recognised() {
        let dir = tempfile::tempdir().unwrap();
        let f = AtomicFile::create(&dir.path().join("MANIFEST")).unwrap();
        let name = f.tmp_path.file_name().unwrap().to_str().unwrap().to_owned();
        assert!(is_temp_name(&name), "{name}");
        drop(f);
        for yes in [
            ".MANIFEST.tmp-1-0-0",
            ".store-00000000000000ff.mrl.tmp-4242-17-0badf00d",
        ] {
            assert!(is_temp_name(yes), "{yes}");
        }
        for no in [
            "MANIFEST",
            "LOCK",
            "store-00000000000000ff.mrl",
            "MANIFEST.tmp-1-0-0",
            "..tmp-1-0-0",
            ".MANIFEST.tmp-1-0",
            ".MANIFEST.tmp-1-0-0-0",
            ".MANIFEST.tmp-x-0-0",
            ".MANIFEST.tmp-1-0-zz",
            ".MANIFEST.tmp-",
        ] {
            assert!(!is_temp_name(no), "{no}");
        }
    }

    #[test]
    fn concurrent_writers_in_one_process_do_not_collide() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("same.bin");
        // Many temporary files of one destination open at once, in one process.
        let files: Vec<AtomicFile> = (0..64).map(|_| AtomicFile::create(&p).unwrap()).collect();
        let temps: std::collections::HashSet<_> =
            files.iter().map(|f| f.tmp_path.clone()).collect();
        assert_eq!(temps.len(), 64);
        for (i, mut f) in files.into_iter().enumerate() {
            f.write_all(&[i as u8]).unwrap();
            f.commit().unwrap();
        }
        assert_eq!(fs::read(&p).unwrap(), vec![63]);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
