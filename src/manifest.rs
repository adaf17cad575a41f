//! The `MANIFEST` file: names the generation of data files that make up the index, ties them
//! together by their header checksums, and carries the index's tuned default plan.
//!
//! A build writes `store-<gen>.mrl`, `graph-<gen>.mrl` and, with a learned coarse space,
//! `space-<gen>.mrl` under fresh names, then replaces `MANIFEST` atomically: a reader sees
//! the old index or the new one, never a mix, and a failed build leaves the previous index
//! untouched. Retuning (`mrl-index tune --write`) publishes a new `MANIFEST` naming the same
//! data files with another plan, so a plan always belongs to the generation it was tuned on.
//!
//! Sections: `1` [`ManifestMeta`] (always); `2` [`SpaceRef`] (an index with a learned
//! space); `3` the default plan as UTF-8 text (see [`crate::default_plan::DefaultPlan`]);
//! `4` [`Segments`] (a live index: delta segments of added items and a deletion file). A
//! manifest with section 4 is written as format version 3, else one with section 2 or 3 as
//! version 2.

use crate::format::{cast_section, read_pod, Container, ContainerWriter, FormatError};
use bytemuck::{Pod, Zeroable};
use std::io::Cursor;
use std::path::{Path, PathBuf};

/// Magic bytes of the manifest.
pub const MANIFEST_MAGIC: [u8; 8] = *b"MRLMANIF";
/// File name of the manifest inside an index directory.
pub const MANIFEST_FILE: &str = "MANIFEST";
/// Section kind of [`ManifestMeta`].
pub const SECTION_META: u32 = 1;
/// Section kind of [`SpaceRef`].
pub const SECTION_SPACE: u32 = 2;
/// Section kind of the default plan text.
pub const SECTION_PLAN: u32 = 3;
/// Section kind of [`Segments`].
pub const SECTION_SEGMENTS: u32 = 4;
/// Most delta segments a manifest may name (compaction merges them long before).
pub const MAX_DELTAS: usize = 4096;
/// Longest default-plan text a manifest may carry.
pub const MAX_PLAN_TEXT: usize = 16 * 1024;

/// The manifest's first section.
#[derive(Debug, Clone, Copy, Pod, Zeroable, PartialEq, Eq)]
#[repr(C)]
pub struct ManifestMeta {
    /// Generation number; names the data files.
    pub generation: u64,
    /// Item count (must equal the store's and the graph's).
    pub n_items: u64,
    /// Full dimension.
    pub dim: u32,
    /// Coarse width of the graph (native prefix, or learned code prefix with a space).
    pub coarse_dim: u32,
    /// Header CRC-32 of the store file.
    pub store_header_crc32: u32,
    /// Header CRC-32 of the graph file.
    pub graph_header_crc32: u32,
}

/// The manifest's learned-space section: the index has `space-<gen>.mrl` and its graph is
/// built on the learned code.
#[derive(Debug, Clone, Copy, Pod, Zeroable, PartialEq, Eq)]
#[repr(C)]
pub struct SpaceRef {
    /// Header CRC-32 of the space file.
    pub header_crc32: u32,
    /// Dimensions of the learned code.
    pub code_dim: u32,
    /// Zero.
    pub reserved: [u32; 2],
}

/// The head of the segments section: the deletion file, then `n_deltas` [`DeltaRef`]s.
#[derive(Debug, Clone, Copy, Pod, Zeroable, PartialEq, Eq, Default)]
#[repr(C)]
pub struct SegmentsHead {
    /// Generation naming `deleted-<gen>.mrl` (meaningful when `has_deletes` is 1).
    pub deletes_generation: u64,
    /// Header CRC-32 of the deletion file.
    pub deletes_header_crc32: u32,
    /// 1 if the index has a deletion file, else 0.
    pub has_deletes: u32,
    /// Delta segments that follow.
    pub n_deltas: u32,
    /// Zero.
    pub reserved: [u32; 3],
}

/// One delta segment: the items one `add` published, in files named by its own generation
/// (`store-<gen>.mrl`, `space-<gen>.mrl` when the base has a learned space, `graph-<gen>.mrl`
/// when the delta is large enough for a graph).
#[derive(Debug, Clone, Copy, Pod, Zeroable, PartialEq, Eq)]
#[repr(C)]
pub struct DeltaRef {
    /// Generation naming the delta's files.
    pub generation: u64,
    /// Items in the delta (deleted ones included).
    pub n_items: u64,
    /// Header CRC-32 of its store.
    pub store_header_crc32: u32,
    /// Header CRC-32 of its space file (0 without).
    pub space_header_crc32: u32,
    /// Header CRC-32 of its graph (0 without).
    pub graph_header_crc32: u32,
    /// Bit 0: has a space file; bit 1: has a graph.
    pub flags: u32,
}

/// [`DeltaRef::flags`] bit: the delta has a space file.
pub const DELTA_HAS_SPACE: u32 = 1;
/// [`DeltaRef::flags`] bit: the delta has a graph.
pub const DELTA_HAS_GRAPH: u32 = 2;

impl DeltaRef {
    /// Whether the delta has a space file.
    pub fn has_space(&self) -> bool {
        self.flags & DELTA_HAS_SPACE != 0
    }
    /// Whether the delta has a graph (else it is scanned exactly).
    pub fn has_graph(&self) -> bool {
        self.flags & DELTA_HAS_GRAPH != 0
    }
}

/// The delta segments and deletion file of a live index (format version 3).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Segments {
    /// The deletion file's generation and header CRC-32, if any row is deleted.
    pub deletes: Option<(u64, u32)>,
    /// The delta segments, oldest first.
    pub deltas: Vec<DeltaRef>,
}

impl Segments {
    /// Whether there is nothing beyond the base.
    pub fn is_empty(&self) -> bool {
        self.deletes.is_none() && self.deltas.is_empty()
    }
}

/// A decoded manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// Generation, counts and the store's and graph's checksums.
    pub meta: ManifestMeta,
    /// The learned space, if the index has one.
    pub space: Option<SpaceRef>,
    /// The default plan's text, if tuned.
    pub plan: Option<String>,
    /// Delta segments and deletions (`None` or empty: the base alone).
    pub segments: Option<Segments>,
}

impl Manifest {
    /// The generations of every data file this manifest names: the base's, each delta's and
    /// the deletion file's. Any other data file in the directory is stale.
    pub fn generations(&self) -> Vec<u64> {
        let mut g = vec![self.meta.generation];
        if let Some(s) = &self.segments {
            g.extend(s.deltas.iter().map(|d| d.generation));
            g.extend(s.deletes.map(|(gen, _)| gen));
        }
        g
    }
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
    /// File name of this generation's learned space.
    pub fn space_file(&self) -> String {
        space_file_name(self.generation)
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

/// `space-<generation as 16 hex digits>.mrl`.
pub fn space_file_name(generation: u64) -> String {
    format!("space-{generation:016x}.mrl")
}

/// Encodes a manifest file.
pub fn encode(m: &Manifest) -> Vec<u8> {
    let segments = m.segments.as_ref().filter(|s| !s.is_empty());
    let sections = 1
        + u32::from(m.space.is_some())
        + u32::from(m.plan.is_some())
        + u32::from(segments.is_some());
    let version = if segments.is_some() {
        3
    } else if sections > 1 {
        2
    } else {
        crate::format::BASE_FORMAT_VERSION
    };
    let write = || -> std::io::Result<Vec<u8>> {
        let mut w = ContainerWriter::with_version(
            Cursor::new(Vec::new()),
            MANIFEST_MAGIC,
            sections,
            version,
        )?;
        w.section(SECTION_META, 0, bytemuck::bytes_of(&m.meta))?;
        if let Some(space) = &m.space {
            w.section(SECTION_SPACE, 0, bytemuck::bytes_of(space))?;
        }
        if let Some(plan) = &m.plan {
            w.section(SECTION_PLAN, 0, plan.as_bytes())?;
        }
        if let Some(s) = segments {
            let head = SegmentsHead {
                deletes_generation: s.deletes.map_or(0, |d| d.0),
                deletes_header_crc32: s.deletes.map_or(0, |d| d.1),
                has_deletes: u32::from(s.deletes.is_some()),
                n_deltas: s.deltas.len() as u32,
                reserved: [0; 3],
            };
            let mut data = bytemuck::bytes_of(&head).to_vec();
            data.extend_from_slice(bytemuck::cast_slice(&s.deltas));
            w.section(SECTION_SEGMENTS, 0, &data)?;
        }
        Ok(w.finish()?.into_inner())
    };
    // Writing to memory cannot fail.
    write().unwrap_or_default()
}

/// Decodes a manifest file, verifying its checksums (it is small).
pub fn decode(bytes: &[u8], label: &str) -> Result<Manifest, FormatError> {
    let c = Container::parse(bytes, &MANIFEST_MAGIC, label)?;
    c.verify_checksums(bytes)?;
    let r = c.section(SECTION_META, 0, "manifest")?;
    let meta: ManifestMeta = read_pod(bytes, &c, r, "manifest")?;
    let has = |kind| c.sections().iter().any(|s| s.kind == kind);
    let space = if has(SECTION_SPACE) {
        let r = c.section(SECTION_SPACE, 0, "manifest space")?;
        Some(read_pod::<SpaceRef>(bytes, &c, r, "manifest space")?)
    } else {
        None
    };
    let plan = if has(SECTION_PLAN) {
        let r = c.section(SECTION_PLAN, 0, "manifest plan")?;
        let corrupt = |what: String| FormatError::Corrupt {
            file: label.to_string(),
            what,
        };
        if r.len > MAX_PLAN_TEXT {
            return Err(corrupt(format!(
                "the default plan is {} bytes long (at most {MAX_PLAN_TEXT})",
                r.len
            )));
        }
        let text: &[u8] = cast_section(bytes, &c, r, "manifest plan")?;
        Some(
            String::from_utf8(text.to_vec())
                .map_err(|_| corrupt("the default plan is not UTF-8 text".into()))?,
        )
    } else {
        None
    };
    let segments = if has(SECTION_SEGMENTS) {
        Some(decode_segments(bytes, &c, label, meta.generation)?)
    } else {
        None
    };
    Ok(Manifest {
        meta,
        space,
        plan,
        segments,
    })
}

fn decode_segments(
    bytes: &[u8],
    c: &Container,
    label: &str,
    base: u64,
) -> Result<Segments, FormatError> {
    let corrupt = |what: String| FormatError::Corrupt {
        file: label.to_string(),
        what,
    };
    let r = c.section(SECTION_SEGMENTS, 0, "manifest segments")?;
    let head_len = std::mem::size_of::<SegmentsHead>();
    let entry = std::mem::size_of::<DeltaRef>();
    if r.len < head_len {
        return Err(corrupt(format!(
            "the segments section is {} bytes, shorter than its {head_len}-byte head",
            r.len
        )));
    }
    let data = r.slice(bytes);
    let head: SegmentsHead = bytemuck::pod_read_unaligned(&data[..head_len]);
    let n = head.n_deltas as usize;
    if n > MAX_DELTAS || r.len != head_len + n * entry {
        return Err(corrupt(format!(
            "the segments section is {} bytes for {} delta segments (at most {MAX_DELTAS}, {entry} bytes each)",
            r.len, head.n_deltas
        )));
    }
    if head.has_deletes > 1
        || head.reserved != [0; 3]
        || (head.has_deletes == 0 && (head.deletes_generation, head.deletes_header_crc32) != (0, 0))
    {
        return Err(corrupt(format!(
            "the segments section's head is malformed (has_deletes {}, deletion file {:016x}, reserved {:?})",
            head.has_deletes, head.deletes_generation, head.reserved
        )));
    }
    if c.header().format_version < 3 {
        return Err(corrupt(format!(
            "a segments section in a version-{} manifest (live indexes are version 3)",
            c.header().format_version
        )));
    }
    let deltas: Vec<DeltaRef> = data[head_len..]
        .chunks_exact(entry)
        .map(bytemuck::pod_read_unaligned)
        .collect();
    if let Some(d) = deltas.iter().find(|d| d.flags & !3 != 0) {
        return Err(corrupt(format!(
            "delta {:016x} has unknown flags {:#x}",
            d.generation, d.flags
        )));
    }
    // Every data file belongs to one segment: generations are distinct.
    let mut gens: Vec<u64> = deltas.iter().map(|d| d.generation).collect();
    gens.push(base);
    gens.extend((head.has_deletes == 1).then_some(head.deletes_generation));
    gens.sort_unstable();
    if gens.windows(2).any(|w| w[0] == w[1]) {
        return Err(corrupt(
            "two segments (the base included) or the deletion file share a generation".into(),
        ));
    }
    Ok(Segments {
        deletes: (head.has_deletes == 1)
            .then_some((head.deletes_generation, head.deletes_header_crc32)),
        deltas,
    })
}

/// The manifest path of an index directory.
pub fn manifest_path(dir: &Path) -> PathBuf {
    dir.join(MANIFEST_FILE)
}

/// Whether the `MANIFEST` in `dir` is `m`: after a failed publication, whether it failed
/// after the rename (the directory's fsync) and so published `m` anyway, whose files must
/// then stay.
pub fn is_published(dir: &Path, m: &Manifest) -> bool {
    let path = manifest_path(dir);
    read_bytes(&path)
        .ok()
        .and_then(|b| decode(&b, "MANIFEST").ok())
        .is_some_and(|on_disk| on_disk == *m)
}

/// The largest `MANIFEST` read (16 MiB; a real one is a few KiB of plans): a huge or
/// endless file is refused instead of read into memory whole.
pub const MAX_MANIFEST_BYTES: u64 = 16 << 20;

/// Reads the `MANIFEST` at `path`, refusing one longer than [`MAX_MANIFEST_BYTES`] (an
/// [`std::io::ErrorKind::InvalidData`] error saying so).
pub fn read_bytes(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(MAX_MANIFEST_BYTES + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("longer than {MAX_MANIFEST_BYTES} bytes: not a MANIFEST"),
        ));
    }
    Ok(bytes)
}

/// Whether `name` is a data file of some generation ([`generation_of`] reads one). Never
/// `MANIFEST`, the writers' `LOCK` ([`crate::lock::LOCK_FILE`]) or a temporary file (which
/// starts with a dot).
pub fn is_data_file(name: &str) -> bool {
    generation_of(name).is_some()
}

/// The generation of a data file name written by a build or a live-index writer (`store-`,
/// `graph-`, `space-` or `deleted-`, 16 lowercase hex digits, `.mrl`), or `None` for any
/// other name.
pub fn generation_of(name: &str) -> Option<u64> {
    let rest = ["store-", "graph-", "space-", "deleted-"]
        .iter()
        .find_map(|p| name.strip_prefix(p))?;
    let hex = rest.strip_suffix(".mrl")?;
    let lower_hex = |c: char| c.is_ascii_digit() || ('a'..='f').contains(&c);
    if hex.len() != 16 || !hex.chars().all(lower_hex) {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_of_reads_only_build_names() {
        assert_eq!(generation_of(&store_file_name(0xab)), Some(0xab));
        assert_eq!(generation_of(&space_file_name(u64::MAX)), Some(u64::MAX));
        for name in [
            "store-ab.mrl",
            "store-00000000000000AB.mrl",
            "graph-00000000000000ab.mrl.bak",
            "notes-00000000000000ab.mrl",
            "store-+000000000000000.mrl",
        ] {
            assert_eq!(generation_of(name), None, "{name}");
        }
    }

    #[test]
    fn lock_manifest_and_temporary_files_are_not_data() {
        assert!(is_data_file(&store_file_name(1)));
        assert!(is_data_file(&space_file_name(u64::MAX)));
        for name in [
            MANIFEST_FILE,
            crate::lock::LOCK_FILE,
            ".store-0000000000000001.mrl.tmp-7-0-0badf00d",
            "store-0000000000000001.mrl.tmp-7-0-0",
        ] {
            assert!(!is_data_file(name), "{name}");
        }
    }
}
