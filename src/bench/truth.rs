//! Ground truth: the exact full-width top-100 of every query, computed with the blocked
//! brute-force scan on all cores and cached as an `.npy` of `u64` ids next to the queries.
//!
//! The cache for `Q.npy` is `Q.gt100.npy` (`[n_queries, 100]` ids, or fewer columns for an
//! index of fewer than 100 items) with a sidecar `Q.gt100.json` recording what it was
//! computed from: the index's manifest generation, item count and dimension, and the query
//! file's size and CRC-32. The cache is reused only when all of these match; both files are
//! written atomically.

use super::row::io_err;
use crate::atomic::write_atomic;
use crate::exact::batch_top_k_gemm;
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
            return Err(Error::Other(format!(
                "ground truth: {} ids is not {n_queries} queries × {depth}",
                ids.len()
            )));
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
            .map_err(|e| Error::Other(format!("{}: {e}", sidecar.display())))?;
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

/// Writes row-major `u64` ids as a 2-d `.npy` (`<u8`, `[rows, cols]`), atomically.
pub fn write_ids_npy(path: &Path, ids: &[u64], rows: usize, cols: usize) -> Result<(), Error> {
    if ids.len() != rows * cols {
        return Err(Error::Other(format!(
            "{}: {} ids is not {rows} × {cols}",
            path.display(),
            ids.len()
        )));
    }
    let dict = format!("{{'descr': '<u8', 'fortran_order': False, 'shape': ({rows}, {cols}), }}");
    // magic (6) + version (2) + length (2) + dict + padding + '\n', a multiple of 64.
    let unpadded = 10 + dict.len() + 1;
    let total = unpadded.div_ceil(64) * 64;
    let mut bytes = Vec::with_capacity(total + ids.len() * 8);
    bytes.extend_from_slice(b"\x93NUMPY\x01\x00");
    bytes.extend_from_slice(&((total - 10) as u16).to_le_bytes());
    bytes.extend_from_slice(dict.as_bytes());
    bytes.resize(total - 1, b' ');
    bytes.push(b'\n');
    for id in ids {
        bytes.extend_from_slice(&id.to_le_bytes());
    }
    write_atomic(path, &bytes).map_err(|e| io_err(path, e))
}

/// Reads a ground-truth `.npy`: a C-order 2-d array `[n_queries, ≥ min_depth]` of `<u8`,
/// `<i8`, `<u4` or `<i4` ids (negative ids are refused). Every error names the file and says
/// what shape was expected.
pub fn read_ids_npy(path: &Path, n_queries: usize, min_depth: usize) -> Result<GroundTruth, Error> {
    let bytes = std::fs::read(path)
        .map_err(|e| Error::Other(format!("ground truth {}: {e}", path.display())))?;
    let bad = |reason: String| Error::Other(format!("ground truth {}: {reason}", path.display()));
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad("not a .npy file (no \\x93NUMPY magic)".into()));
    }
    let (header_len, start) = match bytes[6] {
        1 => (usize::from(u16::from_le_bytes([bytes[8], bytes[9]])), 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => return Err(bad(format!("unsupported .npy version {v}"))),
    };
    let data_offset = start + header_len;
    let dict = bytes
        .get(start..data_offset)
        .and_then(|d| std::str::from_utf8(d).ok())
        .ok_or_else(|| bad("truncated or non-text .npy header".into()))?;
    let descr = dict_value(dict, "descr")
        .map(str::to_string)
        .ok_or_else(|| bad("the .npy header has no 'descr'".into()))?;
    if dict_value(dict, "fortran_order") == Some("True") {
        return Err(bad("Fortran-order array; C order required".into()));
    }
    let shape_text = dict_value(dict, "shape").ok_or_else(|| bad("no 'shape' in header".into()))?;
    let shape: Vec<usize> = shape_text
        .trim_start_matches('(')
        .trim_end_matches(')')
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>())
        .collect::<Result<_, _>>()
        .map_err(|_| bad(format!("bad shape {shape_text:?}")))?;
    let size = match descr.as_str() {
        "<u8" | "<i8" => 8,
        "<u4" | "<i4" | "|u4" | "|i4" => 4,
        _ => {
            return Err(bad(format!(
                "dtype {descr:?}: expected integer ids (<u8, <i8, <u4 or <i4)"
            )))
        }
    };
    let signed = descr.contains('i');
    let (rows, cols) = match shape[..] {
        [r, c] => (r, c),
        _ => {
            return Err(bad(format!(
                "shape {shape:?}: expected a 2-d array [{n_queries}, ≥{min_depth}] (one row of \
                 neighbour ids per query)"
            )))
        }
    };
    if rows != n_queries || cols < min_depth {
        return Err(bad(format!(
            "shape [{rows}, {cols}]: expected [{n_queries}, ≥{min_depth}] (one row of neighbour \
             ids per query, at least {min_depth} per row)"
        )));
    }
    let need = rows * cols * size;
    let data = bytes.get(data_offset..).unwrap_or(&[]);
    if data.len() != need {
        return Err(bad(format!(
            "expected {need} bytes of data for shape [{rows}, {cols}], found {}",
            data.len()
        )));
    }
    let mut ids = Vec::with_capacity(rows * cols);
    for (i, c) in data.chunks_exact(size).enumerate() {
        let v: i128 = match (size, signed) {
            (8, false) => i128::from(u64::from_le_bytes(c.try_into().unwrap_or([0; 8]))),
            (8, true) => i128::from(i64::from_le_bytes(c.try_into().unwrap_or([0; 8]))),
            (_, false) => i128::from(u32::from_le_bytes(c.try_into().unwrap_or([0; 4]))),
            (_, true) => i128::from(i32::from_le_bytes(c.try_into().unwrap_or([0; 4]))),
        };
        let id = u64::try_from(v).map_err(|_| {
            bad(format!(
                "row {}, column {}: negative id {v}",
                i / cols,
                i % cols
            ))
        })?;
        ids.push(id);
    }
    GroundTruth::new(ids, rows, cols)
}

/// The value of `'key'` in a `.npy` header dict: a quoted string's contents, a tuple with
/// its parentheses, or a bare word (`True`, `False`).
fn dict_value<'a>(dict: &'a str, key: &str) -> Option<&'a str> {
    let pos = dict
        .find(&format!("'{key}'"))
        .or_else(|| dict.find(&format!("\"{key}\"")))?;
    let rest = &dict[pos + key.len() + 2..];
    let colon = rest.find(':')?;
    let v = rest[colon + 1..].trim_start();
    match v.chars().next()? {
        q @ ('\'' | '"') => {
            let end = v[1..].find(q)?;
            Some(&v[1..1 + end])
        }
        '(' => Some(&v[..=v.find(')')?]),
        _ => Some(v[..v.find([',', '}']).unwrap_or(v.len())].trim()),
    }
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
        assert!(
            e.contains("gt-i8.npy") && e.contains("negative id -1"),
            "{e}"
        );
    }

    #[test]
    fn cache_names() {
        let c = cache_path(Path::new("/d/queries.npy"));
        assert_eq!(c, Path::new("/d/queries.gt100.npy"));
        assert_eq!(sidecar_path(&c), Path::new("/d/queries.gt100.json"));
    }
}
