//! Delta segments: the items added to a live index since its base was built, each `add` one
//! immutable segment, and the deletion set over all segments.
//!
//! ```text
//! MANIFEST (generation N) ─┬─ base:   store-<b>.mrl  graph-<b>.mrl  [space-<b>.mrl]
//!                          ├─ delta:  store-<d1>.mrl [space-<d1>.mrl] [graph-<d1>.mrl]
//!                          ├─ delta:  store-<d2>.mrl ...
//!                          └─ deleted-<x>.mrl: one bitmap per segment
//! search(q) = merge by exact score of { base cascade, each delta's cascade } minus deleted
//! ```
//!
//! A delta is laid out like the base: the same nested widths, codes in the base's learned
//! space (its maps copied, so a query projects identically), and a coarse graph of its own
//! once it holds [`crate::segment::DELTA_GRAPH_MIN_ITEMS`] items; a smaller one is scanned
//! exactly. Every plan valid for the base is therefore valid for each delta; a delta's
//! search keeps its share of each stage's candidates ([`crate::search`]), and the merged
//! scores are exact inner products, so merging loses nothing.

use crate::bytes::Bytes;
use crate::deletes::{self, DeleteBits};
use crate::graph::CoarseGraph;
use crate::index::IndexError;
use crate::manifest::{self, DeltaRef, Manifest};
use crate::plan::{IndexLayout, Space};
use crate::search::{Parts, Share};
use crate::space::LearnedSpace;
use crate::store::Store;
use std::path::{Path, PathBuf};

/// A delta below this many items gets no graph: scanning it is cheaper than walking one.
pub const DELTA_GRAPH_MIN_ITEMS: usize = 4096;

/// One delta segment, opened (memory-mapped).
pub struct Delta {
    generation: u64,
    store: Store,
    graph: Option<CoarseGraph>,
    space: Option<LearnedSpace>,
    deleted: DeleteBits,
    /// Its query map is the base's, bit for bit: searches reuse the base's query code.
    same_query_map: bool,
}

impl std::fmt::Debug for Delta {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delta")
            .field("generation", &self.generation)
            .field("items", &self.store.len())
            .field("deleted", &self.deleted.count())
            .field("graph", &self.graph.is_some())
            .finish()
    }
}

impl Delta {
    /// The generation naming its files.
    pub fn generation(&self) -> u64 {
        self.generation
    }
    /// Its store.
    pub fn store(&self) -> &Store {
        &self.store
    }
    /// Its coarse graph (`None`: scanned exactly).
    pub fn graph(&self) -> Option<&CoarseGraph> {
        self.graph.as_ref()
    }
    /// Its learned-space codes, when the base has a learned space.
    pub fn space(&self) -> Option<&LearnedSpace> {
        self.space.as_ref()
    }
    /// Its deleted rows.
    pub fn deleted(&self) -> &DeleteBits {
        &self.deleted
    }
    /// Whether its query map is the base's, bit for bit (searches then reuse the base's
    /// query code instead of projecting the query again).
    pub fn shares_query_map(&self) -> bool {
        self.same_query_map
    }
    /// Items in it that are not deleted.
    pub fn live(&self) -> usize {
        self.store.len() - self.deleted.count()
    }
    /// Bytes of its files.
    pub fn file_bytes(&self) -> u64 {
        (self.store.file_len()
            + self.space.as_ref().map_or(0, |s| s.file_len())
            + self.graph.as_ref().map_or(0, |g| g.file_len())) as u64
    }

    pub(crate) fn parts(&self, share: Share) -> Parts<'_> {
        Parts {
            store: &self.store,
            graph: self.graph.as_ref(),
            space: self.space.as_ref(),
            deleted: Some(&self.deleted),
            share,
            reuse_code: self.same_query_map,
        }
    }

    /// Full integrity check of its files.
    pub fn verify(&self) -> Result<(), IndexError> {
        self.store.verify()?;
        if let Some(g) = &self.graph {
            g.verify()?;
        }
        if let Some(s) = &self.space {
            s.verify()?;
        }
        Ok(())
    }
}

fn map(path: &Path) -> Result<Bytes, IndexError> {
    Bytes::map_file(path).map_err(|source| IndexError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn label(path: &Path) -> String {
    path.display().to_string()
}

/// Opens the delta segments and the deletion file `manifest` names, checked against the
/// base (`base_store`, `layout`): the base's deleted rows, then the deltas.
pub(crate) fn open(
    dir: &Path,
    manifest: &Manifest,
    base_store: &Store,
    base_space: Option<&LearnedSpace>,
    layout: &IndexLayout,
) -> Result<(DeleteBits, Vec<Delta>), IndexError> {
    let Some(segments) = &manifest.segments else {
        return Ok((DeleteBits::none(), Vec::new()));
    };
    let inconsistent = |what: String| IndexError::Inconsistent {
        dir: dir.to_path_buf(),
        what,
    };
    let mut deltas = Vec::with_capacity(segments.deltas.len());
    for r in &segments.deltas {
        let mut d = open_delta(dir, r, base_store, layout, &inconsistent)?;
        // Compared once at open (code_dim × dim floats): equal unless the delta's items
        // needed rescaling into half precision.
        d.same_query_map = match (&d.space, base_space) {
            (Some(a), Some(b)) => a.query_map() == b.query_map(),
            _ => false,
        };
        deltas.push(d);
    }
    let Some((gen, crc)) = segments.deletes else {
        return Ok((DeleteBits::none(), deltas));
    };
    let path = dir.join(deletes::deletes_file_name(gen));
    let bytes = map(&path)?;
    let container =
        crate::format::Container::parse(&bytes, &deletes::DELETES_MAGIC, &label(&path))?;
    if container.header().header_crc32 != crc {
        return Err(inconsistent(format!(
            "{} is not the deletion file MANIFEST names (header checksums differ)",
            path.display()
        )));
    }
    let lens: Vec<usize> = std::iter::once(base_store.len())
        .chain(deltas.iter().map(|d| d.store.len()))
        .collect();
    let mut bits = deletes::decode(&bytes, &lens, &label(&path))?.into_iter();
    let base = bits.next().unwrap_or_default();
    for (d, b) in deltas.iter_mut().zip(bits) {
        d.deleted = b;
    }
    Ok((base, deltas))
}

fn open_delta(
    dir: &Path,
    r: &DeltaRef,
    base_store: &Store,
    layout: &IndexLayout,
    inconsistent: &dyn Fn(String) -> IndexError,
) -> Result<Delta, IndexError> {
    let g = r.generation;
    let spath = dir.join(manifest::store_file_name(g));
    let store = Store::from_bytes(map(&spath)?, &label(&spath))?;
    let name = |p: &PathBuf| p.display().to_string();
    if store.container().header().header_crc32 != r.store_header_crc32 {
        return Err(inconsistent(format!(
            "{} is not the delta store MANIFEST names (header checksums differ)",
            name(&spath)
        )));
    }
    if store.len() as u64 != r.n_items || store.dim() != base_store.dim() {
        return Err(inconsistent(format!(
            "{}: {} items of {} dims, but MANIFEST says {} items and the base has {} dims",
            name(&spath),
            store.len(),
            store.dim(),
            r.n_items,
            base_store.dim()
        )));
    }
    if store.widths() != layout.widths {
        return Err(inconsistent(format!(
            "{}: nested widths {:?}, the base's are {:?}",
            name(&spath),
            store.widths(),
            layout.widths
        )));
    }
    let learned = layout.coarse_space == Space::Learned;
    if r.has_space() != learned {
        return Err(inconsistent(format!(
            "delta {g:016x} {} a space file but the base {} a learned space",
            if r.has_space() { "has" } else { "lacks" },
            if learned { "has" } else { "has no" }
        )));
    }
    let space = if r.has_space() {
        let path = dir.join(manifest::space_file_name(g));
        let space = LearnedSpace::from_bytes(map(&path)?, &label(&path))?;
        if space.container().header().header_crc32 != r.space_header_crc32
            || space.len() != store.len()
            || space.widths() != layout.code_widths.as_slice()
        {
            return Err(inconsistent(format!(
                "{} does not match MANIFEST and the delta's store (checksum, items or code widths)",
                name(&path)
            )));
        }
        Some(space)
    } else {
        None
    };
    let graph = if r.has_graph() {
        let path = dir.join(manifest::graph_file_name(g));
        let graph = CoarseGraph::from_bytes(map(&path)?, &label(&path))?;
        if graph.container().header().header_crc32 != r.graph_header_crc32
            || graph.len() != store.len()
            || graph.meta().coarse_dim as usize != layout.coarse_width
            || graph.space() != layout.coarse_space
        {
            return Err(inconsistent(format!(
                "{} does not match MANIFEST and the base's coarse space (checksum, items, width or space)",
                name(&path)
            )));
        }
        Some(graph)
    } else {
        None
    };
    store.advise_random();
    Ok(Delta {
        generation: g,
        store,
        graph,
        space,
        deleted: DeleteBits::none(),
        same_query_map: false,
    })
}
