//! The `MANIFEST` file: names the generation of store and graph files that make up the
//! index, and ties them together by their header checksums.
//!
//! A build writes `store-<gen>.mrl` and `graph-<gen>.mrl` under fresh names, then replaces
//! `MANIFEST` atomically: a reader sees the old index or the new one, never a mix, and a
//! failed build leaves the previous index untouched.

use crate::format::{read_pod, Container, ContainerWriter, FormatError};
use bytemuck::{Pod, Zeroable};
use std::io::Cursor;
use std::path::{Path, PathBuf};

/// Magic bytes of the manifest.
pub const MANIFEST_MAGIC: [u8; 8] = *b"MRLMANIF";
/// File name of the manifest inside an index directory.
pub const MANIFEST_FILE: &str = "MANIFEST";
/// Section kind of [`ManifestMeta`].
pub const SECTION_META: u32 = 1;

/// The manifest's one section.
#[derive(Debug, Clone, Copy, Pod, Zeroable, PartialEq, Eq)]
#[repr(C)]
pub struct ManifestMeta {
    /// Generation number; names the data files.
    pub generation: u64,
    /// Item count (must equal the store's and the graph's).
    pub n_items: u64,
    /// Full dimension.
    pub dim: u32,
    /// Coarse width of the graph.
    pub coarse_dim: u32,
    /// Header CRC-32 of the store file.
    pub store_header_crc32: u32,
    /// Header CRC-32 of the graph file.
    pub graph_header_crc32: u32,
}

impl ManifestMeta {
    /// File name of this generation's store.
    pub fn store_file(&self) -> String {
        store_file_name(self.generation)
    }
    /// File name of this generation's graph.
    pub fn graph_file(&self) -> String {
        graph_file_name(self.generation)
    }
}

/// `store-<generation as 16 hex digits>.mrl`.
pub fn store_file_name(generation: u64) -> String {
    format!("store-{generation:016x}.mrl")
}

/// `graph-<generation as 16 hex digits>.mrl`.
pub fn graph_file_name(generation: u64) -> String {
    format!("graph-{generation:016x}.mrl")
}

/// Encodes a manifest file.
pub fn encode(meta: &ManifestMeta) -> Vec<u8> {
    let write = || -> std::io::Result<Vec<u8>> {
        let mut w = ContainerWriter::new(Cursor::new(Vec::new()), MANIFEST_MAGIC, 1)?;
        w.section(SECTION_META, 0, bytemuck::bytes_of(meta))?;
        Ok(w.finish()?.into_inner())
    };
    // Writing to memory cannot fail.
    write().unwrap_or_default()
}

/// Decodes a manifest file.
pub fn decode(bytes: &[u8], label: &str) -> Result<ManifestMeta, FormatError> {
    let c = Container::parse(bytes, &MANIFEST_MAGIC, label)?;
    c.verify_checksums(bytes)?;
    let r = c.section(SECTION_META, 0, "manifest")?;
    read_pod(bytes, &c, r, "manifest")
}

/// The manifest path of an index directory.
pub fn manifest_path(dir: &Path) -> PathBuf {
    dir.join(MANIFEST_FILE)
}

/// Whether `name` is a data file of some generation (`store-*.mrl` or `graph-*.mrl`).
pub fn is_data_file(name: &str) -> bool {
    (name.starts_with("store-") || name.starts_with("graph-")) && name.ends_with(".mrl")
}
