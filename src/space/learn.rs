//! Fitting the learned coarse space: two linear maps, one for queries and one for items, whose
//! codes' inner product approximates the full-width inner product where it matters.
//!
//! With `Cq` the second-moment matrix of sample queries and `Cx` that of the items, the error
//! of a rank-`d` bilinear approximation `q·x ≈ (Aᵀq)·(Bᵀx)`, averaged over query–item pairs,
//! is `‖Cq^½ (I − A Bᵀ) Cx^½‖²_F`. Its minimiser comes from the SVD of `Cq^½ Cx^½ = U Σ Vᵀ`:
//!
//! ```text
//! A = Cq^-½ U_d Σ_d^½        (query map: row i of the file's QUERY_MAP is column i of A)
//! B = Cx^-½ V_d Σ_d^½        (item map)
//! ```
//!
//! (the closed form behind LeanVec-OOD's query-aware reductions). The components come in
//! order of singular value, so every prefix of the code is itself the best approximation of
//! its rank: the code is nested like a Matryoshka embedding, and the cascade can score a
//! short code prefix first and extend it. With no sample queries, `Cq = Cx` and the maps
//! reduce to the items' principal directions (`A = B`, PCA without centring).
//!
//! Inverse square roots are regularised by adding `ridge × λ_max` to every eigenvalue. All
//! sums run in a fixed order over fixed chunks, so the result is the same for a seed whatever
//! the thread count.

use super::SpaceError;
use crate::ingest::VectorSource;
use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, MatRef, Par, Side};
use rand::seq::index::sample;
use rand::SeedableRng;
use rayon::prelude::*;

/// Rows per chunk of the second-moment and encoding passes.
const CHUNK: usize = 2048;

pub use super::FitKind;

/// Settings of a fit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FitOptions {
    /// Dimensions of the code (≤ the full dimension).
    pub code_dim: usize,
    /// Items sampled for `Cx` (all of them when the catalogue is smaller).
    pub item_sample: usize,
    /// Seed of the item sample.
    pub seed: u64,
    /// Eigenvalue floor of the inverse square roots, relative to the largest eigenvalue.
    pub ridge: f64,
}

impl Default for FitOptions {
    fn default() -> Self {
        FitOptions {
            code_dim: 128,
            item_sample: 65_536,
            seed: 42,
            ridge: 1e-4,
        }
    }
}

/// A fitted pair of maps.
#[derive(Debug, Clone, PartialEq)]
pub struct Fitted {
    /// Full dimension.
    pub dim: usize,
    /// Code dimension.
    pub code_dim: usize,
    /// `code_dim × dim`, row-major: row `i` maps a query to code component `i`.
    pub query_map: Vec<f32>,
    /// `code_dim × dim`, row-major: row `i` maps an item to code component `i`.
    pub item_map: Vec<f32>,
    /// The singular values `Σ_d` (how much of the bilinear form each component carries).
    pub spectrum: Vec<f32>,
    /// Share of `‖Cq^½ Cx^½‖²_F` the `code_dim` components carry, in `[0, 1]`.
    pub captured: f64,
    /// What the query statistics came from.
    pub kind: FitKind,
    /// Query rows the fit used (0 for [`FitKind::ItemsOnly`]).
    pub n_fit_queries: usize,
    /// Item rows the fit used.
    pub n_fit_items: usize,
}

impl Fitted {
    /// The maps of a published space, as fitted (and scaled) when it was built: a delta
    /// segment's items are encoded with them, so its codes live in the base's space.
    pub fn of_space(space: &super::LearnedSpace) -> Fitted {
        let meta = space.meta();
        Fitted {
            dim: space.dim(),
            code_dim: space.code_dim(),
            query_map: space.query_map().to_vec(),
            item_map: space.item_map().to_vec(),
            spectrum: space.spectrum().to_vec(),
            captured: meta.captured,
            kind: space.kind(),
            n_fit_queries: meta.n_fit_queries as usize,
            n_fit_items: meta.n_fit_items as usize,
        }
    }

    /// Scales the item map and `codes` (made with it) by a power of two, and the query map
    /// by its inverse, so that the largest code value is near 2¹²: well inside half
    /// precision's range (±65,504) whatever the data's scale. Products of query and item
    /// codes are unchanged (powers of two scale exactly). Returns the factor.
    pub fn scale_codes(&mut self, codes: &mut [f32]) -> f32 {
        let max = codes.iter().fold(0.0f32, |m, &c| m.max(c.abs()));
        if max == 0.0 || !max.is_finite() {
            return 1.0;
        }
        let e = 12 - max.log2().ceil() as i32;
        let scale = 2f32.powi(e.clamp(-100, 100));
        for c in codes.iter_mut() {
            *c *= scale;
        }
        for m in &mut self.item_map {
            *m *= scale;
        }
        for m in &mut self.query_map {
            *m /= scale;
        }
        scale
    }
}

/// `Σ rowᵀ row / count` over the rows of a row-major matrix given chunk by chunk, in `f64`.
/// `rows(start, len, out)` fills `out` (`len × dim`) with rows `start..start + len`.
fn second_moment<F>(count: usize, dim: usize, rows: F) -> Result<Mat<f64>, SpaceError>
where
    F: Fn(usize, usize, &mut [f32]) -> Result<(), SpaceError> + Sync,
{
    let chunks: Vec<usize> = (0..count.div_ceil(CHUNK)).collect();
    let partial: Vec<Mat<f32>> = chunks
        .par_iter()
        .map(|&c| {
            let start = c * CHUNK;
            let len = CHUNK.min(count - start);
            let mut buf = vec![0f32; len * dim];
            rows(start, len, &mut buf)?;
            let x = MatRef::from_row_major_slice(&buf, len, dim);
            let mut m = Mat::<f32>::zeros(dim, dim);
            matmul(
                m.as_mut(),
                Accum::Replace,
                x.transpose(),
                x,
                1.0f32,
                Par::Seq,
            );
            Ok(m)
        })
        .collect::<Result<_, SpaceError>>()?;
    let mut sum = Mat::<f64>::zeros(dim, dim);
    for m in &partial {
        for j in 0..dim {
            for i in 0..dim {
                sum[(i, j)] += f64::from(m[(i, j)]);
            }
        }
    }
    let scale = 1.0 / count.max(1) as f64;
    for j in 0..dim {
        for i in 0..dim {
            sum[(i, j)] *= scale;
        }
    }
    Ok(sum)
}

/// `C^½` and its regularised inverse, from the symmetric eigendecomposition of `c`.
fn sqrt_and_inverse(c: &Mat<f64>, ridge: f64) -> Result<(Mat<f64>, Mat<f64>), SpaceError> {
    let dim = c.nrows();
    // Symmetrise: the partial sums are symmetric only up to rounding.
    let sym = Mat::<f64>::from_fn(dim, dim, |i, j| 0.5 * (c[(i, j)] + c[(j, i)]));
    let evd = sym
        .self_adjoint_eigen(Side::Lower)
        .map_err(|e| SpaceError::Numerical(format!("eigendecomposition failed: {e:?}")))?;
    let u = evd.U();
    let s = evd.S();
    let lmax = (0..dim).map(|i| s[i].max(0.0)).fold(0.0f64, f64::max);
    if lmax <= 0.0 || !lmax.is_finite() {
        return Err(SpaceError::Numerical(
            "the second-moment matrix is zero: every vector is 0".into(),
        ));
    }
    let floor = ridge * lmax;
    let mut root = Mat::<f64>::zeros(dim, dim);
    let mut inv = Mat::<f64>::zeros(dim, dim);
    let scaled = |f: &dyn Fn(f64) -> f64| Mat::<f64>::from_fn(dim, dim, |i, j| u[(i, j)] * f(s[j]));
    let us = scaled(&|l| (l.max(0.0) + floor).sqrt());
    let ui = scaled(&|l| 1.0 / (l.max(0.0) + floor).sqrt());
    matmul(
        root.as_mut(),
        Accum::Replace,
        us.as_ref(),
        u.transpose(),
        1.0,
        Par::Seq,
    );
    matmul(
        inv.as_mut(),
        Accum::Replace,
        ui.as_ref(),
        u.transpose(),
        1.0,
        Par::Seq,
    );
    Ok((root, inv))
}

/// Fits the maps on `items` and, if given, `queries` (row-major, `items.dim()` values per row).
/// Without queries the fit is [`FitKind::ItemsOnly`].
pub fn fit(
    items: &dyn VectorSource,
    queries: Option<&[f32]>,
    options: &FitOptions,
) -> Result<Fitted, SpaceError> {
    let dim = items.dim();
    let n = items.len();
    let d = options.code_dim;
    if d == 0 || d > dim {
        return Err(SpaceError::CodeDim { code_dim: d, dim });
    }
    if n == 0 {
        return Err(SpaceError::Numerical("no items to fit on".into()));
    }
    // The item sample: sorted rows for sequential reads.
    let mut rows: Vec<usize> = if options.item_sample >= n {
        (0..n).collect()
    } else {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(options.seed);
        sample(&mut rng, n, options.item_sample).into_vec()
    };
    rows.sort_unstable();
    let cx = second_moment(rows.len(), dim, |start, len, out| {
        for (i, r) in rows[start..start + len].iter().enumerate() {
            items.read_row(*r, &mut out[i * dim..(i + 1) * dim])?;
        }
        Ok(())
    })?;
    let (kind, n_fit_queries, cq) = match queries {
        Some(q) => {
            let nq = q.len() / dim;
            let cq = second_moment(nq, dim, |start, len, out| {
                out.copy_from_slice(&q[start * dim..(start + len) * dim]);
                Ok(())
            })?;
            (FitKind::QueryAware, nq, Some(cq))
        }
        None => (FitKind::ItemsOnly, 0, None),
    };
    let (lx, lx_inv) = sqrt_and_inverse(&cx, options.ridge)?;
    let (lq, lq_inv) = match &cq {
        Some(cq) => sqrt_and_inverse(cq, options.ridge)?,
        None => (lx.clone(), lx_inv.clone()),
    };
    let mut m = Mat::<f64>::zeros(dim, dim);
    matmul(
        m.as_mut(),
        Accum::Replace,
        lq.as_ref(),
        lx.as_ref(),
        1.0,
        Par::Seq,
    );
    let svd = m
        .svd()
        .map_err(|e| SpaceError::Numerical(format!("SVD failed: {e:?}")))?;
    let (u, s, v) = (svd.U(), svd.S(), svd.V());
    let total: f64 = (0..dim).map(|i| s[i] * s[i]).sum();
    let kept: f64 = (0..d).map(|i| s[i] * s[i]).sum();
    // A = Lq⁻¹ U_d Σ_d^½, B = Lx⁻¹ V_d Σ_d^½.
    let ud = Mat::<f64>::from_fn(dim, d, |i, j| u[(i, j)] * s[j].max(0.0).sqrt());
    let vd = Mat::<f64>::from_fn(dim, d, |i, j| v[(i, j)] * s[j].max(0.0).sqrt());
    let mut a = Mat::<f64>::zeros(dim, d);
    let mut b = Mat::<f64>::zeros(dim, d);
    matmul(
        a.as_mut(),
        Accum::Replace,
        lq_inv.as_ref(),
        ud.as_ref(),
        1.0,
        Par::Seq,
    );
    matmul(
        b.as_mut(),
        Accum::Replace,
        lx_inv.as_ref(),
        vd.as_ref(),
        1.0,
        Par::Seq,
    );
    let mut query_map = vec![0f32; d * dim];
    let mut item_map = vec![0f32; d * dim];
    for j in 0..d {
        // Fix each component's sign (both maps flip together, so products are unchanged):
        // the item map's largest entry is positive.
        let (mut arg, mut best) = (0, 0.0f64);
        for i in 0..dim {
            if b[(i, j)].abs() > best {
                best = b[(i, j)].abs();
                arg = i;
            }
        }
        let sign = if b[(arg, j)] < 0.0 { -1.0 } else { 1.0 };
        for i in 0..dim {
            query_map[j * dim + i] = (sign * a[(i, j)]) as f32;
            item_map[j * dim + i] = (sign * b[(i, j)]) as f32;
        }
    }
    if query_map.iter().chain(&item_map).any(|v| !v.is_finite()) {
        return Err(SpaceError::Numerical(
            "the fitted maps are not finite (degenerate sample?)".into(),
        ));
    }
    Ok(Fitted {
        dim,
        code_dim: d,
        query_map,
        item_map,
        spectrum: (0..d).map(|i| s[i] as f32).collect(),
        captured: if total > 0.0 { kept / total } else { 0.0 },
        kind,
        n_fit_queries,
        n_fit_items: rows.len(),
    })
}

/// The codes of every item of `source`: `len × code_dim`, row-major, `map` being a
/// `code_dim × dim` row-major item map. Parallel over fixed chunks; the result does not
/// depend on the thread count.
pub fn encode_items(
    source: &dyn VectorSource,
    map: &[f32],
    code_dim: usize,
    on_rows: &(dyn Fn(u64) + Sync),
) -> Result<Vec<f32>, SpaceError> {
    let n = source.len();
    let dim = source.dim();
    let mut codes = vec![0f32; n * code_dim];
    let map = MatRef::from_row_major_slice(map, code_dim, dim);
    codes
        .par_chunks_mut(CHUNK * code_dim)
        .enumerate()
        .try_for_each(|(c, out)| {
            let start = c * CHUNK;
            let len = out.len() / code_dim;
            let mut buf = vec![0f32; len * dim];
            for i in 0..len {
                source.read_row(start + i, &mut buf[i * dim..(i + 1) * dim])?;
            }
            let x = MatRef::from_row_major_slice(&buf, len, dim);
            let mut y = Mat::<f32>::zeros(len, code_dim);
            matmul(
                y.as_mut(),
                Accum::Replace,
                x,
                map.transpose(),
                1.0f32,
                Par::Seq,
            );
            for i in 0..len {
                for j in 0..code_dim {
                    out[i * code_dim + j] = y[(i, j)];
                }
            }
            on_rows(len as u64);
            Ok::<(), SpaceError>(())
        })?;
    Ok(codes)
}

/// Projects a row-major batch of vectors (`dim` values each) through a `code_dim × dim` map.
pub fn project(rows: &[f32], dim: usize, map: &[f32], code_dim: usize) -> Vec<f32> {
    let n = rows.len() / dim;
    let x = MatRef::from_row_major_slice(rows, n, dim);
    let m = MatRef::from_row_major_slice(map, code_dim, dim);
    let mut y = Mat::<f32>::zeros(n, code_dim);
    matmul(
        y.as_mut(),
        Accum::Replace,
        x,
        m.transpose(),
        1.0f32,
        Par::Seq,
    );
    let mut out = vec![0f32; n * code_dim];
    for i in 0..n {
        for j in 0..code_dim {
            out[i * code_dim + j] = y[(i, j)];
        }
    }
    out
}
