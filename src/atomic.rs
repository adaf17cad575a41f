//! Crash-safe file creation: write a temporary file in the destination's directory, fsync it,
//! rename it over the destination, fsync the directory.
//!
//! A reader therefore sees either the old file or the complete new one, never a prefix. A
//! writer that fails or is dropped before [`AtomicFile::commit`] removes its temporary file.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// A file being written under a temporary name, published by [`AtomicFile::commit`].
pub struct AtomicFile {
    writer: Option<BufWriter<File>>,
    tmp_path: PathBuf,
    final_path: PathBuf,
}

impl AtomicFile {
    /// Creates `.<name>.tmp-<pid>-<nonce>` beside `final_path`.
    pub fn create(final_path: &Path) -> io::Result<AtomicFile> {
        let dir = parent_dir(final_path);
        let name = final_path
            .file_name()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?
            .to_string_lossy()
            .into_owned();
        let nonce = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let tmp_path = dir.join(format!(".{name}.tmp-{}-{nonce:08x}", std::process::id()));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp_path)?;
        Ok(AtomicFile {
            writer: Some(BufWriter::with_capacity(1 << 20, file)),
            tmp_path,
            final_path: final_path.to_path_buf(),
        })
    }

    /// The path the file will have once committed.
    pub fn final_path(&self) -> &Path {
        &self.final_path
    }

    fn writer(&mut self) -> &mut BufWriter<File> {
        self.writer
            .as_mut()
            .expect("AtomicFile used after commit (internal error)")
    }

    /// Flushes, fsyncs, renames over the final path and fsyncs the directory.
    pub fn commit(mut self) -> io::Result<PathBuf> {
        let writer = self
            .writer
            .take()
            .expect("AtomicFile committed twice (internal error)");
        let file = writer.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        drop(file);
        fs::rename(&self.tmp_path, &self.final_path)?;
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
}
