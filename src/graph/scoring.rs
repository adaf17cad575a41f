//! The vectors the graph builder scores against each other: the prefixes themselves
//! ([`ExactRows`], an aligned `f32` copy) or 8-bit codes of them ([`Sq8Codes`]).
//!
//! Both build metrics order pairs by a dot product ([`super::build::CoarseDistance`]): the
//! inner-product dissimilarity `C − x·y` by `x·y`, and the reduced L2 `2M² − 2x'·y'` by the
//! dot product of the reduced rows `x' = [x, sqrt(M² − ‖x‖²)]`. So a space only scores: a
//! [`Prepared`] vector against stored rows, higher meaning closer.
//!
//! Insertion is bound by memory latency, not arithmetic: a 64-d `f32` row is four cache lines
//! read at random, its 8-bit code one. The codes are per-dimension affine,
//! `x_d ≈ lo_d + step_d · c_d` with `c_d` in 0..=255 spanning the dimension's range, and are
//! scored asymmetrically: the node being inserted keeps its exact values, so a score is
//! `q · x̂ = q·lo + (q ∘ step) · c`, one fused multiply-add per byte.

use super::build::CoarseMetric;
use crate::bytes::HugeZeroed;
use crate::simd;
use rayon::prelude::*;

/// A vector ready to be scored against stored rows.
#[derive(Debug, Clone, Default)]
pub struct Prepared {
    /// The vector (exact rows) or the vector times the code steps (codes).
    weights: Vec<f32>,
    /// Zero (exact rows) or the vector's product with the code offsets (codes).
    bias: f32,
}

/// Rows the builder scores.
pub trait Space: Sync {
    /// Number of rows.
    fn len(&self) -> usize;
    /// Whether there are no rows.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Prepares row `row` as exactly as the space knows it (the node being inserted).
    fn prepare_exact(&self, row: u32, out: &mut Prepared);
    /// Prepares row `row` as the space stores it (a candidate compared with other stored
    /// rows in the selection heuristic).
    fn prepare_stored(&self, row: u32, out: &mut Prepared);
    /// `out[i]` = the score of `q` with row `ids[i]`.
    fn scores(&self, q: &Prepared, ids: &[u32], out: &mut Vec<f32>);
    /// Starts loading row `row` into cache.
    fn prefetch(&self, row: u32);
}

/// Squared norms of the rows and the largest of them.
fn norms2(coarse: &[f32], dim: usize) -> (Vec<f32>, f32) {
    let norms2: Vec<f32> = coarse
        .par_chunks_exact(dim)
        .map(|x| simd::dot(x, x))
        .collect();
    let max2 = norms2.iter().copied().fold(0.0f32, f32::max);
    (norms2, max2)
}

/// Writes row `x` as the builder sees it: itself, or reduced (`[x, sqrt(M² − ‖x‖²)]`).
#[inline]
fn build_row(x: &[f32], n2: f32, max2: f32, metric: CoarseMetric, out: &mut [f32]) {
    out[..x.len()].copy_from_slice(x);
    if metric == CoarseMetric::ReducedL2 {
        out[x.len()] = (max2 - n2).max(0.0).sqrt();
    }
}

/// The width of a built row.
fn width(dim: usize, metric: CoarseMetric) -> usize {
    match metric {
        CoarseMetric::InnerProduct => dim,
        CoarseMetric::ReducedL2 => dim + 1,
    }
}

/// One cache line of floats: the unit of the aligned row copy.
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C, align(64))]
struct Line([f32; 16]);

/// An aligned `f32` copy of the rows, each starting on a cache line: exact scores.
pub struct ExactRows {
    lines: HugeZeroed<Line>,
    /// Floats per row in `lines` (a multiple of 16).
    stride: usize,
    /// Floats of a row that are used.
    width: usize,
}

impl ExactRows {
    /// Copies the rows of `coarse` (n × `dim`) as `metric` builds them. Returns the rows
    /// and the largest row norm of `coarse`.
    pub fn new(coarse: &[f32], dim: usize, metric: CoarseMetric) -> (ExactRows, f32) {
        let n = coarse.len() / dim;
        let (norms2, max2) = norms2(coarse, dim);
        let width = width(dim, metric);
        let stride = width.div_ceil(16) * 16;
        let mut lines = HugeZeroed::<Line>::new(n * stride / 16);
        let flat: &mut [f32] = bytemuck::cast_slice_mut(&mut lines);
        flat.par_chunks_exact_mut(stride)
            .zip(coarse.par_chunks_exact(dim))
            .zip(&norms2)
            .for_each(|((out, x), &n2)| build_row(x, n2, max2, metric, out));
        let rows = ExactRows {
            lines,
            stride,
            width,
        };
        (rows, max2.sqrt())
    }

    #[inline]
    fn flat(&self) -> &[f32] {
        bytemuck::cast_slice(&self.lines)
    }

    #[inline]
    fn row(&self, r: u32) -> &[f32] {
        let start = r as usize * self.stride;
        &self.flat()[start..start + self.width]
    }
}

impl Space for ExactRows {
    fn len(&self) -> usize {
        self.lines.len() * 16 / self.stride
    }

    fn prepare_exact(&self, row: u32, out: &mut Prepared) {
        out.weights.clear();
        out.weights.extend_from_slice(self.row(row));
        out.bias = 0.0;
    }

    fn prepare_stored(&self, row: u32, out: &mut Prepared) {
        self.prepare_exact(row, out);
    }

    #[inline]
    fn scores(&self, q: &Prepared, ids: &[u32], out: &mut Vec<f32>) {
        out.resize(ids.len(), 0.0);
        simd::dot_rows(&q.weights, self.flat(), self.stride, ids, out);
    }

    #[inline]
    fn prefetch(&self, row: u32) {
        let ptr = self
            .lines
            .as_ptr()
            .wrapping_add(row as usize * self.stride / 16);
        simd::prefetch_bytes(ptr, self.width * 4);
    }
}

/// 8-bit per-dimension affine codes of the rows (one byte per dimension, rows padded to
/// whole cache lines), scored asymmetrically against the exact node being inserted.
pub struct Sq8Codes<'a> {
    coarse: &'a [f32],
    dim: usize,
    metric: CoarseMetric,
    norms2: Vec<f32>,
    max2: f32,
    codes: HugeZeroed<u8>,
    /// Bytes per row in `codes` (a multiple of 64).
    stride: usize,
    lo: Vec<f32>,
    step: Vec<f32>,
}

impl<'a> Sq8Codes<'a> {
    /// Encodes the rows of `coarse` (n × `dim`) as `metric` builds them. Returns the codes
    /// and the largest row norm of `coarse`.
    pub fn new(coarse: &'a [f32], dim: usize, metric: CoarseMetric) -> (Sq8Codes<'a>, f32) {
        let n = coarse.len() / dim;
        let (norms2, max2) = norms2(coarse, dim);
        let width = width(dim, metric);
        let (lo, hi) = coarse
            .par_chunks_exact(dim)
            .zip(&norms2)
            .fold(
                || {
                    (
                        vec![f32::INFINITY; width],
                        vec![f32::NEG_INFINITY; width],
                        vec![0.0; width],
                    )
                },
                |(mut lo, mut hi, mut row), (x, &n2)| {
                    build_row(x, n2, max2, metric, &mut row);
                    for ((l, h), &v) in lo.iter_mut().zip(&mut hi).zip(&row) {
                        *l = l.min(v);
                        *h = h.max(v);
                    }
                    (lo, hi, row)
                },
            )
            .map(|(lo, hi, _)| (lo, hi))
            .reduce(
                || (vec![f32::INFINITY; width], vec![f32::NEG_INFINITY; width]),
                |(mut lo, mut hi), (l2, h2)| {
                    for ((l, h), (a, b)) in lo.iter_mut().zip(&mut hi).zip(l2.iter().zip(&h2)) {
                        *l = l.min(*a);
                        *h = h.max(*b);
                    }
                    (lo, hi)
                },
            );
        let step: Vec<f32> = lo.iter().zip(&hi).map(|(l, h)| (h - l) / 255.0).collect();
        let stride = width.div_ceil(64) * 64;
        let mut codes = HugeZeroed::<u8>::new(n * stride);
        codes
            .par_chunks_exact_mut(stride)
            .zip(coarse.par_chunks_exact(dim))
            .zip(&norms2)
            .for_each_init(
                || vec![0f32; width],
                |row, ((out, x), &n2)| {
                    build_row(x, n2, max2, metric, row);
                    for (d, (c, &v)) in out.iter_mut().zip(row.iter()).enumerate() {
                        *c = if step[d] > 0.0 {
                            ((v - lo[d]) / step[d]).round().clamp(0.0, 255.0) as u8
                        } else {
                            0
                        };
                    }
                },
            );
        let space = Sq8Codes {
            coarse,
            dim,
            metric,
            norms2,
            max2,
            codes,
            stride,
            lo,
            step,
        };
        (space, max2.sqrt())
    }

    /// Turns the built row in `out.weights` into weights and bias for scoring codes.
    fn finish(&self, out: &mut Prepared) {
        out.bias = simd::dot(&out.weights, &self.lo);
        for (w, &s) in out.weights.iter_mut().zip(&self.step) {
            *w *= s;
        }
    }
}

impl Space for Sq8Codes<'_> {
    fn len(&self) -> usize {
        self.norms2.len()
    }

    fn prepare_exact(&self, row: u32, out: &mut Prepared) {
        let r = row as usize;
        out.weights.resize(self.lo.len(), 0.0);
        build_row(
            &self.coarse[r * self.dim..(r + 1) * self.dim],
            self.norms2[r],
            self.max2,
            self.metric,
            &mut out.weights,
        );
        self.finish(out);
    }

    fn prepare_stored(&self, row: u32, out: &mut Prepared) {
        let start = row as usize * self.stride;
        let code = &self.codes[start..start + self.lo.len()];
        out.weights.clear();
        out.weights.extend(
            code.iter()
                .zip(self.lo.iter().zip(&self.step))
                .map(|(&c, (&l, &s))| l + s * f32::from(c)),
        );
        self.finish(out);
    }

    #[inline]
    fn scores(&self, q: &Prepared, ids: &[u32], out: &mut Vec<f32>) {
        out.resize(ids.len(), 0.0);
        simd::dot_u8_rows(&q.weights, q.bias, &self.codes, self.stride, ids, out);
    }

    #[inline]
    fn prefetch(&self, row: u32) {
        let ptr = self.codes.as_ptr().wrapping_add(row as usize * self.stride);
        simd::prefetch(ptr);
        if self.stride > 64 {
            simd::prefetch_bytes(ptr.wrapping_add(64), self.lo.len() - 64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_score_close_to_exact_rows() {
        let dim = 32;
        let x = crate::synth::MatryoshkaLike::with_dim(dim, 4).items(2000);
        for metric in [CoarseMetric::InnerProduct, CoarseMetric::ReducedL2] {
            let (exact, m1) = ExactRows::new(&x, dim, metric);
            let (codes, m2) = Sq8Codes::new(&x, dim, metric);
            assert_eq!((m1, exact.len(), codes.len()), (m2, 2000, 2000));
            let ids: Vec<u32> = (0..2000).collect();
            let (mut pe, mut pc, mut ps) = Default::default();
            let (mut se, mut sc, mut ss) = (Vec::new(), Vec::new(), Vec::new());
            for q in [0u32, 7, 1999] {
                exact.prepare_exact(q, &mut pe);
                codes.prepare_exact(q, &mut pc);
                codes.prepare_stored(q, &mut ps);
                exact.scores(&pe, &ids, &mut se);
                codes.scores(&pc, &ids, &mut sc);
                codes.scores(&ps, &ids, &mut ss);
                // Errors are a small share of the spread of the scores.
                let spread = se.iter().fold(0f32, |a, &b| a.max(b.abs()));
                let worst = |other: &[f32]| {
                    se.iter()
                        .zip(other)
                        .fold(0f32, |a, (x, y)| a.max((x - y).abs()))
                        / spread
                };
                let (asym, sym) = (worst(&sc), worst(&ss));
                println!("{metric:?} row {q}: worst error {asym:.4} (asymmetric), {sym:.4} (both coded) of the largest score");
                assert!(
                    asym < 0.01 && sym < 0.04,
                    "{metric:?} row {q}: {asym} {sym}"
                );
            }
        }
    }
}
