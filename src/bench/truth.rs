//! Ground truth: the exact full-width top-100 of every query, computed with the blocked
//! brute-force scan on all cores and cached as an `.npy` of `u64` ids next to the queries.
//!
//! The cache for `Q.npy` is `Q.gt100.npy` (`[n_queries, 100]` ids, or fewer columns for an
//! index of fewer than 100 items) with a sidecar `Q.gt100.json` recording what it was
//! computed from: the index's manifest generation, item count and dimension, and the query
//! file's size and CRC-32. The cache is reused only when all of these match; both files are
//! written atomically.

use super::row::io_err;
use super::BenchError;
use crate::atomic::write_atomic;
use crate::exact::batch_top_k_gemm;
use crate::ingest::{read_id_matrix, write_npy_u64_matrix};
use crate::{Error, Index};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Depth of the cached ground truth: enough for recall@100.
pub const TRUTH_DEPTH: usize = 100;

/// The true nearest neighbours of each query, best first, as the index's external ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroundTruth {
    ids: Vec<u64>,
    n_queries: usize,
    depth: usize,
}

impl GroundTruth {
    /// Ground truth from row-major ids, `depth` per query.
    pub fn new(ids: Vec<u64>, n_queries: usize, depth: usize) -> Result<GroundTruth, Error> {
        if ids.len() != n_queries * depth {
            return Err(BenchError::Truth(format!(
                "{} ids is not {n_queries} queries × {depth}",
                ids.len()
            ))
            .into());
        }
        Ok(GroundTruth {
            ids,
            n_queries,
            depth,
        })
    }

    /// Number of queries.
    pub fn n_queries(&self) -> usize {
        self.n_queries
    }

    /// Ids per query.
    pub fn depth(&self) -> usize {
        self.depth
    }

    /// Query `q`'s true neighbours, best first.
    pub fn row(&self, q: usize) -> &[u64] {
        &self.ids[q * self.depth..(q + 1) * self.depth]
    }

    /// All ids, row-major.
    pub fn ids(&self) -> &[u64] {
        &self.ids
    }
}

/// Where the ground truth came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TruthSource {
    /// Read from the file given with `--ground-truth`.
    Given(PathBuf),
    /// Read from the cache next to the queries, computed by an earlier run.
    Cached(PathBuf),
    /// Computed by this run; the path is the cache written (`None` if it could not be).
    Computed(Option<PathBuf>),
}

impl TruthSource {
    /// Whether this run computed the ground truth (rather than reading it).
    pub fn computed(&self) -> bool {
        matches!(self, TruthSource::Computed(_))
    }
}

/// What a cache was computed from (the sidecar JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TruthKey {
    /// The index's manifest generation.
    pub index_generation: u64,
    /// Items in the index.
    pub n_items: u64,
    /// The index's full dimension.
    pub dim: u64,
    /// Queries.
    pub n_queries: u64,
    /// Ids per query.
    pub depth: u64,
    /// Size of the query file in bytes.
    pub queries_bytes: u64,
    /// CRC-32 of the query values (little-endian `f32`).
    pub queries_crc32: u32,
}

/// `Q.gt100.npy` for `Q.npy`: the cache file of a query file.
pub fn cache_path(queries_path: &Path) -> PathBuf {
    let stem = queries_path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "queries".into());
    queries_path.with_file_name(format!("{stem}.gt{TRUTH_DEPTH}.npy"))
}

/// The sidecar of a cache file: `Q.gt100.json` beside `Q.gt100.npy`.
pub fn sidecar_path(cache: &Path) -> PathBuf {
    cache.with_extension("json")
}

/// The key the cache for these queries against this index must carry.
pub fn truth_key(index: &Index, queries: &[f32], queries_path: &Path) -> TruthKey {
    let bytes: Vec<u8> = queries.iter().flat_map(|v| v.to_le_bytes()).collect();
    let n_queries = queries.len() / index.dim().max(1);
    TruthKey {
        index_generation: index.manifest().generation,
        n_items: index.len() as u64,
        dim: index.dim() as u64,
        n_queries: n_queries as u64,
        depth: TRUTH_DEPTH.min(index.len()) as u64,
        queries_bytes: std::fs::metadata(queries_path).map_or(0, |m| m.len()),
        queries_crc32: crc32fast::hash(&bytes),
    }
}

/// The exact full-width top-`depth` of every query (row-major queries), on the current
/// rayon pool, as external ids.
pub fn compute(index: &Index, queries: &[f32], depth: usize) -> GroundTruth {
    let full = index.store().bands().len();
    let depth = depth.min(index.len());
    let hits = batch_top_k_gemm(index.store(), queries, depth, full);
    let n_queries = hits.len();
    let ids = hits
        .iter()
        .flat_map(|h| {
            h.iter()
                .map(|x| x.id)
                .chain(std::iter::repeat(u64::MAX))
                .take(depth)
        })
        .collect();
    GroundTruth {
        ids,
        n_queries,
        depth,
    }
}

/// The ground truth for a benchmark run: read from `given` if set (at least `min_depth`
/// columns), else read from the cache beside the queries when its sidecar matches
/// [`truth_key`], else computed on the current rayon pool and cached (a cache that cannot be
/// written is reported on stderr and skipped).
pub fn load_or_compute(
    index: &Index,
    queries: &[f32],
    queries_path: &Path,
    given: Option<&Path>,
    min_depth: usize,
) -> Result<(GroundTruth, TruthSource), Error> {
    let n_queries = queries.len() / index.dim().max(1);
    if let Some(path) = given {
        let gt = read_ids_npy(path, n_queries, min_depth.min(index.len()))?;
        return Ok((gt, TruthSource::Given(path.to_path_buf())));
    }
    let key = truth_key(index, queries, queries_path);
    let cache = cache_path(queries_path);
    let sidecar = sidecar_path(&cache);
    if let Some(gt) = read_cache(&cache, &sidecar, &key) {
        return Ok((gt, TruthSource::Cached(cache)));
    }
    let gt = compute(index, queries, TRUTH_DEPTH);
    let written = write_ids_npy(&cache, gt.ids(), gt.n_queries(), gt.depth()).and_then(|()| {
        let text = serde_json::to_string_pretty(&key)
            .map_err(|e| BenchError::json(&sidecar, "cache sidecar", e))?;
        write_atomic(&sidecar, text.as_bytes()).map_err(|e| io_err(&sidecar, e))
    });
    match written {
        Ok(()) => Ok((gt, TruthSource::Computed(Some(cache)))),
        Err(e) => {
            eprintln!("warning: ground truth not cached: {e}");
            Ok((gt, TruthSource::Computed(None)))
        }
    }
}

fn read_cache(cache: &Path, sidecar: &Path, key: &TruthKey) -> Option<GroundTruth> {
    let text = std::fs::read_to_string(sidecar).ok()?;
    let stored: TruthKey = serde_json::from_str(&text).ok()?;
    if &stored != key {
        return None;
    }
    let gt = read_ids_npy(cache, key.n_queries as usize, key.depth as usize).ok()?;
    (gt.depth() == key.depth as usize).then_some(gt)
}

/// Writes row-major `u64` ids as a 2-d `.npy` (`<u8`, `[rows, cols]`), atomically (the
/// crate's `.npy` writer, [`crate::ingest::write_npy_u64_matrix`]).
pub fn write_ids_npy(path: &Path, ids: &[u64], rows: usize, cols: usize) -> Result<(), Error> {
    Ok(write_npy_u64_matrix(path, ids, rows, cols)?)
}

/// Reads a ground-truth `.npy`: a C-order 2-d array `[n_queries, ≥ min_depth]` of `<u8`,
/// `<i8`, `<u4` or `<i4` ids (negative ids are refused), through the crate's `.npy` reader
/// ([`crate::ingest::read_id_matrix`]). Every error names the file and says what shape was
/// expected.
pub fn read_ids_npy(path: &Path, n_queries: usize, min_depth: usize) -> Result<GroundTruth, Error> {
    let m = read_id_matrix(path)?;
    if m.rows != n_queries || m.cols < min_depth {
        return Err(BenchError::BadFile {
            path: path.to_path_buf(),
            reason: format!(
                "ground truth of shape [{}, {}]: expected [{n_queries}, ≥{min_depth}] (one row \
                 of neighbour ids per query, at least {min_depth} per row)",
                m.rows, m.cols
            ),
        }
        .into());
    }
    GroundTruth::new(m.ids, m.rows, m.cols)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_npy_round_trip_and_shape_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("gt.npy");
        let ids: Vec<u64> = (0..12).collect();
        write_ids_npy(&p, &ids, 3, 4).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        assert_eq!((bytes.len() - 12 * 8) % 64, 0, "data must start 64-aligned");
        let gt = read_ids_npy(&p, 3, 4).unwrap();
        assert_eq!(gt.row(1), &[4, 5, 6, 7]);
        assert_eq!(read_ids_npy(&p, 3, 2).unwrap().depth(), 4);
        let e = read_ids_npy(&p, 4, 4).unwrap_err().to_string();
        assert!(e.contains("gt.npy") && e.contains("[4, ≥4]"), "{e}");
        let e = read_ids_npy(&p, 3, 10).unwrap_err().to_string();
        assert!(e.contains("gt.npy") && e.contains("at least 10"), "{e}");
    }

    #[test]
    fn reads_signed_ids_as_numpy_writes_them() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("gt-i8.npy");
        let dict = "{'descr': '<i8', 'fortran_order': False, 'shape': (2, 2), }";
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        let pad = 64 - (10 + dict.len() + 1) % 64;
        bytes.extend_from_slice(&((dict.len() + pad + 1) as u16).to_le_bytes());
        bytes.extend_from_slice(dict.as_bytes());
        bytes.extend(std::iter::repeat_n(b' ', pad));
        bytes.push(b'\n');
        for v in [3i64, 1, 4, 1] {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        std::fs::write(&p, &bytes).unwrap();
        assert_eq!(read_ids_npy(&p, 2, 2).unwrap().ids(), &[3, 1, 4, 1]);
        let n = bytes.len();
        bytes[n - 8..].copy_from_slice(&(-1i64).to_le_bytes());
        std::fs::write(&p, &bytes).unwrap();
        let e = read_ids_npy(&p, 2, 2).unwrap_err().to_string();
        assert!(e.contains("gt-i8.npy") && e.contains("-1"), "{e}");
    }

    #[test]
    fn cache_names() {
        let c = cache_path(Path::new("/d/queries.npy"));
        assert_eq!(c, Path::new("/d/queries.gt100.npy"));
        assert_eq!(sidecar_path(&c), Path::new("/d/queries.gt100.json"));
    }
}
