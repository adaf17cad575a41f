//! The coarse graph: an HNSW graph over the first `coarse_dim` dims of every item, built by
//! this crate's builder ([`insert`]; `hnsw_rs` remains as a reference, [`build`]) into a
//! compact file of flat `u32` neighbour lists that is memory-mapped and searched by this
//! crate's own beam search ([`search`]).
//!
//! ```text
//! layer 0:  n × m0 u32            row r's neighbours at offset r·m0, padded with u32::MAX
//! layer l:  nodes_l  (k_l u32, sorted rows present in layer l)
//!           links_l  (k_l × m u32, neighbours of nodes_l[i] at offset i·m, padded)
//! ```
//!
//! By default neighbours are chosen by the inner-product dissimilarity `C − x·y`; the MIPS→L2
//! reduction (items get `sqrt(M² − ‖x‖²)` appended, queries 0) is available too
//! (`build::CoarseMetric`). Either way the search needs no extra dimension: it maximises
//! `q·x` on the prefix band.

#[cfg(feature = "build")]
pub mod build;
#[cfg(feature = "build")]
pub mod guided;
#[cfg(feature = "build")]
pub mod insert;
#[cfg(feature = "build")]
pub mod scoring;
pub mod search;

use crate::bytes::Bytes;
use crate::format::{cast_section, read_pod, Container, FormatError};
use bytemuck::{Pod, Zeroable};

/// Magic bytes of a graph file.
pub const GRAPH_MAGIC: [u8; 8] = *b"MRLGRAPH";

/// Marks an unused neighbour slot.
pub const NO_NEIGHBOUR: u32 = u32::MAX;

/// Section kinds of a graph file.
pub mod section {
    /// [`super::GraphMeta`].
    pub const META: u32 = 1;
    /// `graph::build::BuildInfo`, bincode-encoded (informational).
    pub const BUILD_INFO: u32 = 2;
    /// Layer 0 neighbour lists, `n × m0` u32.
    pub const LAYER0_LINKS: u32 = 3;
    /// Rows present in layer `index` (≥ 1), sorted, u32.
    pub const LAYER_NODES: u32 = 4;
    /// Neighbour lists of layer `index` (≥ 1), `k × m` u32.
    pub const LAYER_LINKS: u32 = 5;
}

/// The fixed-size metadata section of a graph file.
#[derive(Debug, Clone, Copy, Pod, Zeroable, PartialEq)]
#[repr(C)]
pub struct GraphMeta {
    /// Number of nodes (equals the store's item count).
    pub n_nodes: u64,
    /// Width of the prefix the graph was built on.
    pub coarse_dim: u32,
    /// Neighbour slots per node on layers ≥ 1 (HNSW's `M`).
    pub m: u32,
    /// Neighbour slots per node on layer 0 (2·M).
    pub m0: u32,
    /// Number of layers (≥ 1).
    pub n_layers: u32,
    /// Row of the entry point (a node of the top layer).
    pub entry_point: u32,
    /// `M = max ‖x[..coarse_dim]‖` over the items.
    pub max_norm: f32,
    /// How neighbours were chosen at build time: 0 = MIPS→L2 reduced space, 1 = inner-product
    /// dissimilarity. Informational: search maximises `q·x` either way.
    pub metric: u32,
    /// Which vectors the graph's nodes are: 0 = the store's native prefix of `coarse_dim`
    /// dims, 1 = the first `coarse_dim` dims of the learned code (format version 2).
    pub space: u32,
    /// Zero.
    pub reserved: [u32; 6],
}

/// One upper layer's location in the file.
#[derive(Debug, Clone, Copy)]
struct UpperLayer {
    nodes_offset: usize,
    count: usize,
    links_offset: usize,
}

/// A read-only coarse graph over a mapped (or owned) file.
pub struct CoarseGraph {
    bytes: Bytes,
    container: Container,
    meta: GraphMeta,
    layer0_offset: usize,
    upper: Vec<UpperLayer>,
}

impl std::fmt::Debug for CoarseGraph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CoarseGraph")
            .field("file", &self.container.label())
            .field("meta", &self.meta)
            .finish()
    }
}

impl CoarseGraph {
    /// Parses a graph from its bytes, checking structure and section sizes (not checksums).
    pub fn from_bytes(bytes: Bytes, label: &str) -> Result<CoarseGraph, FormatError> {
        let container = Container::parse(&bytes, &GRAPH_MAGIC, label)?;
        let corrupt = |what: String| FormatError::Corrupt {
            file: label.to_string(),
            what,
        };
        let mr = container.section(section::META, 0, "graph meta")?;
        let meta: GraphMeta = read_pod(&bytes, &container, mr, "graph meta")?;
        let n = usize::try_from(meta.n_nodes)
            .ok()
            .filter(|&n| n < u32::MAX as usize)
            .ok_or_else(|| corrupt(format!("node count {} is out of range", meta.n_nodes)))?;
        if n == 0 || meta.m == 0 || meta.m0 < meta.m || meta.n_layers == 0 || meta.n_layers > 64 {
            return Err(corrupt(format!(
                "invalid graph parameters: n={n}, m={}, m0={}, layers={}",
                meta.m, meta.m0, meta.n_layers
            )));
        }
        if meta.space > 1 {
            return Err(corrupt(format!(
                "unknown coarse space {} (0 native, 1 learned)",
                meta.space
            )));
        }
        if meta.entry_point as usize >= n {
            return Err(corrupt(format!(
                "entry point {} is not below the node count {n}",
                meta.entry_point
            )));
        }
        // Sizes are products of header fields: computed with checked arithmetic, so that a
        // crafted header cannot wrap them into a small (even zero) size that the section
        // table then matches.
        let size = |count: u64, slots: u32, what: &str| {
            count
                .checked_mul(u64::from(slots))
                .and_then(|x| x.checked_mul(4))
                .ok_or_else(|| {
                    corrupt(format!(
                        "{what}: {count} nodes × {slots} slots overflows a file size"
                    ))
                })
        };
        let l0 = container.section_exact(
            section::LAYER0_LINKS,
            0,
            "layer 0 links",
            size(n as u64, meta.m0, "layer 0 links")?,
        )?;
        cast_section::<u32>(&bytes, &container, l0, "layer 0 links")?;
        let mut upper = Vec::with_capacity(meta.n_layers as usize - 1);
        for l in 1..meta.n_layers {
            let name = format!("layer {l} nodes");
            let nr = container.section(section::LAYER_NODES, l, &name)?;
            if nr.len % 4 != 0 || nr.len / 4 > n {
                return Err(corrupt(format!(
                    "{name} has an impossible length {}",
                    nr.len
                )));
            }
            let count = nr.len / 4;
            cast_section::<u32>(&bytes, &container, nr, &name)?;
            let lname = format!("layer {l} links");
            let lr = container.section_exact(
                section::LAYER_LINKS,
                l,
                &lname,
                size(count as u64, meta.m, &lname)?,
            )?;
            cast_section::<u32>(&bytes, &container, lr, &lname)?;
            upper.push(UpperLayer {
                nodes_offset: nr.offset,
                count,
                links_offset: lr.offset,
            });
        }
        if let Some(top) = upper.last() {
            let nodes: &[u32] =
                bytemuck::cast_slice(&bytes[top.nodes_offset..top.nodes_offset + top.count * 4]);
            if nodes.binary_search(&meta.entry_point).is_err() {
                return Err(corrupt(format!(
                    "entry point {} is not a node of the top layer",
                    meta.entry_point
                )));
            }
        }
        Ok(CoarseGraph {
            bytes,
            container,
            meta,
            layer0_offset: l0.offset,
            upper,
        })
    }

    /// The graph's metadata.
    pub fn meta(&self) -> &GraphMeta {
        &self.meta
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.meta.n_nodes as usize
    }

    /// Always false: a graph has at least one node.
    pub fn is_empty(&self) -> bool {
        self.meta.n_nodes == 0
    }

    /// The space of the vectors the graph was built on.
    pub fn space(&self) -> crate::plan::Space {
        if self.meta.space == 1 {
            crate::plan::Space::Learned
        } else {
            crate::plan::Space::Native
        }
    }

    /// Number of layers.
    pub fn n_layers(&self) -> usize {
        self.meta.n_layers as usize
    }

    /// Nodes present in `layer` (all nodes for layer 0).
    pub fn layer_len(&self, layer: usize) -> usize {
        if layer == 0 {
            self.len()
        } else {
            self.upper[layer - 1].count
        }
    }

    /// The parsed container.
    pub fn container(&self) -> &Container {
        &self.container
    }

    /// Size of the file in bytes.
    pub fn file_len(&self) -> usize {
        self.bytes.len()
    }

    /// The build information stored in the file, if it decodes.
    #[cfg(feature = "build")]
    pub fn build_info(&self) -> Option<build::BuildInfo> {
        let r = self
            .container
            .section(section::BUILD_INFO, 0, "build info")
            .ok()?;
        build::BuildInfo::decode(r.slice(&self.bytes))
    }

    /// Row `node`'s layer-0 neighbour slots (unused slots hold [`NO_NEIGHBOUR`]).
    #[inline]
    pub fn layer0_neighbours(&self, node: u32) -> &[u32] {
        let m0 = self.meta.m0 as usize;
        let start = self.layer0_offset + node as usize * m0 * 4;
        bytemuck::cast_slice(&self.bytes[start..start + m0 * 4])
    }

    /// Starts loading row `node`'s layer-0 neighbour list into cache.
    #[inline]
    pub fn prefetch_layer0(&self, node: u32) {
        let m0 = self.meta.m0 as usize;
        let start = self.layer0_offset + node as usize * m0 * 4;
        crate::simd::prefetch_bytes(self.bytes.as_ptr().wrapping_add(start), m0 * 4);
    }

    fn layer_nodes(&self, layer: usize) -> &[u32] {
        let u = &self.upper[layer - 1];
        bytemuck::cast_slice(&self.bytes[u.nodes_offset..u.nodes_offset + u.count * 4])
    }

    /// Row `node`'s neighbour slots on `layer`, or `None` if the node is not in that layer.
    #[inline]
    pub fn neighbours(&self, layer: usize, node: u32) -> Option<&[u32]> {
        if layer == 0 {
            return (node < self.meta.n_nodes as u32).then(|| self.layer0_neighbours(node));
        }
        let pos = self.layer_nodes(layer).binary_search(&node).ok()?;
        let m = self.meta.m as usize;
        let u = &self.upper[layer - 1];
        let start = u.links_offset + pos * m * 4;
        Some(bytemuck::cast_slice(&self.bytes[start..start + m * 4]))
    }

    /// The full integrity pass: checksums, every neighbour id below the node count and not
    /// the node itself, padding only at the end of lists, upper-layer node lists sorted and
    /// nested (each layer's nodes are in the layer below).
    pub fn verify(&self) -> Result<(), FormatError> {
        self.container.verify_checksums(&self.bytes)?;
        let label = self.container.label();
        let corrupt = |what: String| FormatError::Corrupt {
            file: label.to_string(),
            what,
        };
        let n = self.len() as u32;
        let check_list = |layer: usize, node: u32, list: &[u32]| -> Result<(), FormatError> {
            let used = list.iter().take_while(|&&x| x != NO_NEIGHBOUR).count();
            if list[used..].iter().any(|&x| x != NO_NEIGHBOUR) {
                return Err(corrupt(format!(
                    "layer {layer} node {node}: neighbour slots after padding"
                )));
            }
            if let Some(&bad) = list[..used].iter().find(|&&x| x >= n || x == node) {
                return Err(corrupt(format!(
                    "layer {layer} node {node}: invalid neighbour {bad}"
                )));
            }
            Ok(())
        };
        for node in 0..n {
            check_list(0, node, self.layer0_neighbours(node))?;
        }
        for layer in 1..self.n_layers() {
            let nodes = self.layer_nodes(layer);
            if nodes.windows(2).any(|w| w[0] >= w[1]) {
                return Err(corrupt(format!("layer {layer} node list is not sorted")));
            }
            for &node in nodes {
                if layer > 1 && self.neighbours(layer - 1, node).is_none() {
                    return Err(corrupt(format!(
                        "node {node} is in layer {layer} but not in layer {}",
                        layer - 1
                    )));
                }
                if let Some(list) = self.neighbours(layer, node) {
                    check_list(layer, node, list)?;
                    if let Some(&x) = list
                        .iter()
                        .find(|&&x| x != NO_NEIGHBOUR && self.neighbours(layer, x).is_none())
                    {
                        return Err(corrupt(format!(
                            "layer {layer} node {node}: neighbour {x} is not in the layer"
                        )));
                    }
                } else {
                    return Err(corrupt(format!(
                        "node {node} listed in layer {layer} but not found"
                    )));
                }
            }
        }
        Ok(())
    }
}
