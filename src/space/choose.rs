//! Choosing between the native prefix and the learned code as the coarse space, at build time.
//!
//! On a sample of items, for each of the build's held-out queries: the exact full-width
//! top-10 within the sample, and how deep the coarse ranking must go (native prefix of
//! `coarse` dims, or the first `coarse` dims of the learned code) to hold 97% of it. The
//! deeper a coarse stage must go, the more it costs; the learned space has its own costs (the
//! query projection, and rescoring every survivor's whole native prefix), so it is chosen only
//! when it needs at most half the native depth. Strongly Matryoshka models keep the native
//! space: their index is exactly what it was before learned spaces existed.

use super::learn::{project, Fitted};
use super::SpaceError;
use crate::ingest::VectorSource;
use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, MatRef, Par};
use rand::seq::index::sample;
use rand::SeedableRng;

/// Share of the full-width top-10 a coarse ranking must hold.
pub const COVERAGE: f64 = 0.97;
/// Depths (within the item sample) tried.
const DEPTHS: [usize; 12] = [
    10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000, 20_000, 50_000,
];

/// How deep each coarse space must go to hold [`COVERAGE`] of the full-width top-10.
#[derive(Debug, Clone, PartialEq)]
pub struct Coverage {
    /// Items in the sample.
    pub items: usize,
    /// Queries measured.
    pub queries: usize,
    /// `(depth, native share, learned share)` for each depth tried.
    pub shares: Vec<(usize, f64, f64)>,
    /// Smallest depth at which the native prefix holds [`COVERAGE`] (the sample size if none).
    pub native_depth: usize,
    /// Smallest depth at which the learned code holds [`COVERAGE`].
    pub learned_depth: usize,
}

impl Coverage {
    /// Whether the learned space should be the coarse space: it needs at most half the
    /// native depth.
    pub fn prefers_learned(&self) -> bool {
        self.learned_depth * 2 <= self.native_depth
    }
}

fn top(scores: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    let k = k.min(idx.len());
    if k == 0 {
        return Vec::new();
    }
    idx.select_nth_unstable_by(k - 1, |&a, &b| scores[b].total_cmp(&scores[a]));
    idx.truncate(k);
    idx
}

/// Measures [`Coverage`] on up to `max_items` items (seeded sample) and `queries` (row-major,
/// full width). `exclude[i]`, if given, is a sampled row to leave out of query `i`'s truth
/// (pseudo-queries drawn from the items).
pub fn coverage(
    items: &dyn VectorSource,
    queries: &[f32],
    exclude: Option<&[usize]>,
    fitted: &Fitted,
    coarse: usize,
    max_items: usize,
    seed: u64,
) -> Result<Coverage, SpaceError> {
    let dim = items.dim();
    let n = items.len();
    let nq = queries.len() / dim;
    let mut rows: Vec<usize> = if max_items >= n {
        (0..n).collect()
    } else {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 0x636f_7665);
        sample(&mut rng, n, max_items).into_vec()
    };
    rows.sort_unstable();
    let m = rows.len();
    let mut x = vec![0f32; m * dim];
    for (i, &r) in rows.iter().enumerate() {
        items.read_row(r, &mut x[i * dim..(i + 1) * dim])?;
    }
    let c = coarse.min(fitted.code_dim).min(dim);
    let xs = MatRef::from_row_major_slice(&x, m, dim);
    let qs = MatRef::from_row_major_slice(queries, nq, dim);
    let gemm = |a: MatRef<'_, f32>, b: MatRef<'_, f32>| {
        let mut out = Mat::<f32>::zeros(a.nrows(), b.nrows());
        matmul(
            out.as_mut(),
            Accum::Replace,
            a,
            b.transpose(),
            1.0f32,
            Par::rayon(0),
        );
        out
    };
    let full = gemm(qs, xs);
    let native = gemm(qs.subcols(0, c), xs.subcols(0, c));
    let qc = project(queries, dim, &fitted.query_map[..c * dim], c);
    let xc = project(&x, dim, &fitted.item_map[..c * dim], c);
    let learned = gemm(
        MatRef::from_row_major_slice(&qc, nq, c),
        MatRef::from_row_major_slice(&xc, m, c),
    );
    let depths: Vec<usize> = DEPTHS
        .iter()
        .copied()
        .filter(|&d| d < m)
        .chain(std::iter::once(m))
        .collect();
    let mut hits = vec![(0usize, 0usize); depths.len()];
    let mut total = 0usize;
    let row_of = |mat: &Mat<f32>, i: usize| -> Vec<f32> { (0..m).map(|j| mat[(i, j)]).collect() };
    for i in 0..nq {
        let mut f = row_of(&full, i);
        if let Some(ex) = exclude {
            if let Ok(pos) = rows.binary_search(&ex[i]) {
                f[pos] = f32::NEG_INFINITY;
            }
        }
        let truth = top(&f, 10.min(m));
        total += truth.len();
        let nat = row_of(&native, i);
        let lea = row_of(&learned, i);
        // Rank of each truth item in each coarse ranking.
        for &t in &truth {
            let nrank = nat.iter().filter(|&&s| s > nat[t]).count();
            let lrank = lea.iter().filter(|&&s| s > lea[t]).count();
            for (j, &d) in depths.iter().enumerate() {
                hits[j].0 += usize::from(nrank < d);
                hits[j].1 += usize::from(lrank < d);
            }
        }
    }
    let total = total.max(1) as f64;
    let shares: Vec<(usize, f64, f64)> = depths
        .iter()
        .zip(&hits)
        .map(|(&d, &(a, b))| (d, a as f64 / total, b as f64 / total))
        .collect();
    let depth_of = |pick: &dyn Fn(&(usize, f64, f64)) -> f64| {
        shares
            .iter()
            .find(|s| pick(s) >= COVERAGE)
            .map_or(m, |s| s.0)
    };
    let native_depth = depth_of(&|s| s.1);
    let learned_depth = depth_of(&|s| s.2);
    Ok(Coverage {
        items: m,
        queries: nq,
        shares,
        native_depth,
        learned_depth,
    })
}
