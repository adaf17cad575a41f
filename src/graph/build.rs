//! Building the coarse graph and writing it into this crate's graph file.
//!
//! [`build_graph`] dispatches on [`GraphBuilder`]: the native builder ([`super::insert`], the
//! default) or `hnsw_rs`. `hnsw_rs` inserts points concurrently and its search allocates on
//! every step, so it is used for construction only: [`build_hnsw`] inserts the prefixes,
//! [`export`] copies its layers into flat neighbour lists. Either way [`write_graph`] writes
//! the [`ExportedGraph`]. The [`ReferenceHnsw`] keeps `hnsw_rs`'s own search available as the
//! reference tests compare against.

use super::{section, GraphMeta, GRAPH_MAGIC, NO_NEIGHBOUR};
use crate::format::ContainerWriter;
use hnsw_rs::prelude::{Distance, Hnsw};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use std::io::{self, Seek, Write};

/// `hnsw_rs`'s `file_dump` works only with 16 layers; we keep its default for the same
/// level distribution.
pub const MAX_LAYER: usize = 16;
/// `hnsw_rs` prints and exits the process for more connections than this.
pub const MAX_M: usize = 256;

/// How neighbours are chosen while building the coarse graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CoarseMetric {
    /// Inner-product dissimilarity `C − x·y` with `C = 1.01·M²` (`M` the largest prefix norm),
    /// so it stays non-negative for every pair of items (ip-NSW style). The default: on the
    /// generated 100k × 1024 set it reaches coarse recall@10 0.94 at ef 16 where the reduced-L2
    /// graph reaches 0.19 (`examples/ip_graph.rs`).
    #[default]
    InnerProduct,
    /// Squared L2 in the MIPS→L2 reduced space (items get `sqrt(M² − ‖x‖²)` appended).
    ReducedL2,
}

impl CoarseMetric {
    /// The value stored in [`super::GraphMeta::metric`].
    pub fn code(self) -> u32 {
        match self {
            CoarseMetric::InnerProduct => 1,
            CoarseMetric::ReducedL2 => 0,
        }
    }
}

/// Which implementation builds the coarse graph. Both write the same file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GraphBuilder {
    /// This crate's HNSW builder ([`super::insert`]): flat preallocated lists, per-node
    /// locks, batched SIMD scoring. The default.
    #[default]
    Native,
    /// `hnsw_rs`, then [`export`]: the reference the native graph is tested against.
    HnswRs,
}

impl GraphBuilder {
    /// The name recorded in [`BuildInfo::builder`].
    pub fn label(self) -> String {
        match self {
            GraphBuilder::Native => format!("mrl-index native {}", env!("CARGO_PKG_VERSION")),
            GraphBuilder::HnswRs => "hnsw_rs 0.3".to_string(),
        }
    }
}

/// Parameters of the graph build, with the HNSW paper's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GraphParams {
    /// Neighbours kept per node on layers ≥ 1 (`M`); layer 0 keeps `2·M`.
    pub m: usize,
    /// Size of the dynamic candidate list during insertion (`efConstruction`).
    pub ef_construction: usize,
    /// Seed of the insertion order.
    pub seed: u64,
    /// Neighbour selection during the build.
    pub metric: CoarseMetric,
    /// The implementation that builds the graph.
    pub builder: GraphBuilder,
}

impl Default for GraphParams {
    /// `IndexBuilder`'s defaults: `m` 16, `ef_construction` 200, seed 42, inner product,
    /// the native builder.
    fn default() -> Self {
        GraphParams {
            m: 16,
            ef_construction: 200,
            seed: 42,
            metric: CoarseMetric::default(),
            builder: GraphBuilder::default(),
        }
    }
}

/// Builds the coarse graph over the rows of `coarse` (n × `dim`) with the implementation
/// `params.builder` names, on the current rayon pool (bit-reproducible with one thread).
/// `on_inserted` is called with counts as insertion progresses.
///
/// Parameters must have been validated (`m` in 2..=256, `ef_construction` ≥ 1) and `coarse`
/// must hold at least one row.
pub fn build_graph(
    coarse: &[f32],
    dim: usize,
    params: &GraphParams,
    on_inserted: &(dyn Fn(u64) + Sync),
) -> ExportedGraph {
    match params.builder {
        GraphBuilder::Native => super::insert::build_native(
            coarse,
            dim,
            params,
            &super::insert::NativeOptions::default(),
            on_inserted,
        ),
        GraphBuilder::HnswRs => export(&build_hnsw(coarse, dim, params, on_inserted), params.m),
    }
}

/// The build-time dissimilarity handed to `hnsw_rs`, clamped at 0 as it requires.
#[derive(Debug, Clone, Copy)]
pub struct CoarseDistance {
    metric: CoarseMetric,
    /// `C` of the inner-product dissimilarity.
    offset: f32,
}

impl Distance<f32> for CoarseDistance {
    fn eval(&self, a: &[f32], b: &[f32]) -> f32 {
        match self.metric {
            CoarseMetric::ReducedL2 => crate::simd::l2_squared(a, b).max(0.0),
            CoarseMetric::InnerProduct => (self.offset - crate::simd::dot(a, b)).max(0.0),
        }
    }
}

/// Build information stored, bincode-encoded, in the graph file. Informational: search does
/// not read it.
#[derive(Debug, Clone, PartialEq, bincode::Encode, bincode::Decode)]
pub struct BuildInfo {
    /// Version of mrl-index that built the graph.
    pub crate_version: String,
    /// The graph library used for construction.
    pub builder: String,
    /// HNSW `M`.
    pub m: u32,
    /// HNSW `efConstruction`.
    pub ef_construction: u32,
    /// `hnsw_rs` `max_layer`.
    pub max_layer: u32,
    /// Seed of the insertion order.
    pub seed: u64,
    /// Threads used for insertion (1 gives a bit-reproducible graph).
    pub threads: u32,
    /// Wall-clock seconds spent building the graph (insertion and export).
    pub build_seconds: f64,
}

const INFO_LIMIT: usize = 4096;

impl BuildInfo {
    /// Encodes with bincode's standard configuration (see `index-formats/v1.md`).
    pub fn encode(&self) -> Vec<u8> {
        bincode::encode_to_vec(self, bincode::config::standard()).unwrap_or_default()
    }

    /// Decodes, refusing anything over 4 KiB.
    pub fn decode(bytes: &[u8]) -> Option<BuildInfo> {
        let config = bincode::config::standard().with_limit::<INFO_LIMIT>();
        bincode::decode_from_slice(bytes, config)
            .ok()
            .map(|(v, _)| v)
    }
}

/// Appends the MIPS→L2 coordinate: each row `x` of `coarse` (n × dim) becomes
/// `[x, sqrt(M² − ‖x‖²)]` with `M` the largest row norm. Returns the rows and `M`.
pub fn reduce_for_mips(coarse: &[f32], dim: usize) -> (Vec<f32>, f32) {
    let norms2: Vec<f32> = coarse
        .chunks_exact(dim)
        .map(|x| crate::simd::dot(x, x))
        .collect();
    let max2 = norms2.iter().cloned().fold(0.0f32, f32::max);
    let mut out = Vec::with_capacity(norms2.len() * (dim + 1));
    for (x, n2) in coarse.chunks_exact(dim).zip(&norms2) {
        out.extend_from_slice(x);
        out.push((max2 - n2).max(0.0).sqrt());
    }
    (out, max2.sqrt())
}

/// An `hnsw_rs` graph over the prefixes, kept for export and as a reference searcher.
pub struct ReferenceHnsw {
    hnsw: Hnsw<'static, f32, CoarseDistance>,
    dim: usize,
    n: usize,
    max_norm: f32,
    metric: CoarseMetric,
}

/// Inserts the rows of `coarse` (n × `dim`, the prefix of every item) into an `hnsw_rs` graph
/// in a seeded random order. Uses the current rayon pool; with one thread the result is
/// bit-reproducible. `on_inserted` is called with counts as insertion progresses.
///
/// Parameters must have been validated (`m` in 2..=256, `ef_construction` ≥ 1).
pub fn build_hnsw(
    coarse: &[f32],
    dim: usize,
    params: &GraphParams,
    on_inserted: &(dyn Fn(u64) + Sync),
) -> ReferenceHnsw {
    let n = coarse.len() / dim;
    let (reduced, max_norm) = match params.metric {
        CoarseMetric::ReducedL2 => reduce_for_mips(coarse, dim),
        CoarseMetric::InnerProduct => {
            let max2 = coarse
                .chunks_exact(dim)
                .map(|x| crate::simd::dot(x, x))
                .fold(0.0f32, f32::max);
            (Vec::new(), max2.sqrt())
        }
    };
    let (vectors, width): (&[f32], usize) = match params.metric {
        CoarseMetric::ReducedL2 => (&reduced, dim + 1),
        CoarseMetric::InnerProduct => (coarse, dim),
    };
    let distance = CoarseDistance {
        metric: params.metric,
        offset: 1.01 * max_norm * max_norm + f32::MIN_POSITIVE,
    };
    let hnsw =
        Hnsw::<f32, CoarseDistance>::new(params.m, n, MAX_LAYER, params.ef_construction, distance);
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(params.seed));
    let rows: Vec<(&[f32], usize)> = order
        .iter()
        .map(|&r| (&vectors[r * width..(r + 1) * width], r))
        .collect();
    if rayon::current_num_threads() <= 1 {
        for (i, item) in rows.iter().enumerate() {
            hnsw.insert_slice(*item);
            if i % 1000 == 999 {
                on_inserted(1000);
            }
        }
        on_inserted((n % 1000) as u64);
    } else {
        // The first points go in one by one so that the concurrent phase starts from a
        // connected graph rather than racing on an empty one.
        let warm = n.min(1000);
        for item in &rows[..warm] {
            hnsw.insert_slice(*item);
        }
        on_inserted(warm as u64);
        for chunk in rows[warm..].chunks(10_000) {
            hnsw.parallel_insert_slice(&chunk.to_vec());
            on_inserted(chunk.len() as u64);
        }
    }
    ReferenceHnsw {
        hnsw,
        dim,
        n,
        max_norm,
        metric: params.metric,
    }
}

impl ReferenceHnsw {
    /// `hnsw_rs`'s own search for the best `k` rows by inner product with `query` (the
    /// prefix, `dim` long), with its `ef`.
    pub fn search(&self, query: &[f32], k: usize, ef: usize) -> Vec<u32> {
        let mut q = Vec::with_capacity(self.dim + 1);
        q.extend_from_slice(&query[..self.dim]);
        if self.metric == CoarseMetric::ReducedL2 {
            q.push(0.0);
        }
        self.hnsw
            .search(&q, k, ef)
            .into_iter()
            .map(|nb| nb.d_id as u32)
            .collect()
    }

    /// Number of points inserted.
    pub fn len(&self) -> usize {
        self.n
    }

    /// Whether no point was inserted.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }
}

/// A coarse graph in memory, ready to be written.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportedGraph {
    /// Metadata.
    pub meta: GraphMeta,
    /// Layer 0 links, `n × m0`.
    pub layer0: Vec<u32>,
    /// For each layer ≥ 1: sorted node rows and their `k × m` links.
    pub upper: Vec<(Vec<u32>, Vec<u32>)>,
}

impl ExportedGraph {
    /// The graph as a searchable [`super::CoarseGraph`] in memory (written with `info`, then
    /// parsed): for experiments and tests that do not write an index.
    pub fn to_coarse_graph(&self, info: &BuildInfo) -> super::CoarseGraph {
        let bytes = write_graph(io::Cursor::new(Vec::new()), self, info)
            .expect("writing to memory cannot fail")
            .into_inner();
        super::CoarseGraph::from_bytes(crate::bytes::Bytes::copy_from(&bytes), "in-memory graph")
            .expect("a built graph parses")
    }
}

/// Copies the layers of an `hnsw_rs` graph into flat neighbour lists (closest first, as
/// `hnsw_rs` orders them), with `m` slots per node on upper layers and `2m` on layer 0.
pub fn export(reference: &ReferenceHnsw, m: usize) -> ExportedGraph {
    let n = reference.n;
    let m0 = 2 * m;
    let indexation = reference.hnsw.get_point_indexation();
    let top = indexation.get_max_level_observed() as usize;
    let mut layer0 = vec![NO_NEIGHBOUR; n * m0];
    let mut upper_lists: Vec<Vec<(u32, Vec<u32>)>> = vec![Vec::new(); top];
    let mut levels = vec![0u8; n];
    for point in indexation {
        levels[point.get_origin_id()] = point.get_point_id().0;
    }
    for point in indexation {
        let row = point.get_origin_id();
        let level = point.get_point_id().0 as usize;
        let hoods = point.get_neighborhood_id();
        for (layer, hood) in hoods.iter().enumerate().take(level + 1) {
            // hnsw_rs occasionally leaves a node of a lower level in an upper layer's list;
            // such a link leads nowhere on that layer, so it is dropped.
            let list: Vec<u32> = hood
                .iter()
                .map(|nb| nb.d_id as u32)
                .filter(|&x| x as usize != row && levels[x as usize] as usize >= layer)
                .collect();
            if layer == 0 {
                for (slot, &x) in layer0[row * m0..(row + 1) * m0].iter_mut().zip(&list) {
                    *slot = x;
                }
            } else {
                upper_lists[layer - 1].push((row as u32, list));
            }
        }
    }
    let mut upper = Vec::with_capacity(top);
    for mut lists in upper_lists {
        lists.sort_unstable_by_key(|(row, _)| *row);
        let nodes: Vec<u32> = lists.iter().map(|(r, _)| *r).collect();
        let mut links = vec![NO_NEIGHBOUR; nodes.len() * m];
        for (i, (_, list)) in lists.iter().enumerate() {
            for (slot, &x) in links[i * m..(i + 1) * m].iter_mut().zip(list) {
                *slot = x;
            }
        }
        upper.push((nodes, links));
    }
    let entry_point = match upper.last() {
        Some((nodes, _)) if !nodes.is_empty() => indexation
            .get_layer_iterator(top)
            .next()
            .map(|p| p.get_origin_id() as u32)
            .unwrap_or(nodes[0]),
        _ => indexation
            .get_layer_iterator(0)
            .next()
            .map(|p| p.get_origin_id() as u32)
            .unwrap_or(0),
    };
    ExportedGraph {
        meta: GraphMeta {
            n_nodes: n as u64,
            coarse_dim: reference.dim as u32,
            m: m as u32,
            m0: m0 as u32,
            n_layers: (top + 1) as u32,
            entry_point,
            max_norm: reference.max_norm,
            metric: reference.metric.code(),
            space: 0,
            reserved: [0; 6],
        },
        layer0,
        upper,
    }
}

/// Writes a graph file.
pub fn write_graph<W: Write + Seek>(
    out: W,
    graph: &ExportedGraph,
    info: &BuildInfo,
) -> io::Result<W> {
    let sections = 3 + 2 * graph.upper.len() as u32;
    // A graph over the learned code needs format version 2 (older readers must refuse it).
    let version = if graph.meta.space == 0 {
        crate::format::BASE_FORMAT_VERSION
    } else {
        2
    };
    let mut w = ContainerWriter::with_version(out, GRAPH_MAGIC, sections, version)?;
    w.section(section::META, 0, bytemuck::bytes_of(&graph.meta))?;
    w.section(section::BUILD_INFO, 0, &info.encode())?;
    w.section(
        section::LAYER0_LINKS,
        0,
        bytemuck::cast_slice(&graph.layer0),
    )?;
    for (i, (nodes, links)) in graph.upper.iter().enumerate() {
        let layer = i as u32 + 1;
        w.section(section::LAYER_NODES, layer, bytemuck::cast_slice(nodes))?;
        w.section(section::LAYER_LINKS, layer, bytemuck::cast_slice(links))?;
    }
    w.finish()
}
