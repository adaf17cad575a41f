//! Dot-product kernels.
//!
//! [`dot`] dispatches to `simsimd`, which picks the widest kernel the CPU supports at run time
//! (AVX-512 on the machines this project is measured on). [`dot_scalar`] is the reference the
//! SIMD path is property-tested against.

use simsimd::SpatialSimilarity;

/// Inner product of two equally long `f32` slices, computed by `simsimd`.
///
/// The slices must have the same length; callers in this crate guarantee it by construction
/// (rows and query bands are cut from the same width). Should the lengths ever differ, the
/// scalar reference over the common prefix is returned in release builds and a debug
/// assertion fires in debug builds.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len(), "dot product of slices of unequal length");
    match f32::dot(a, b) {
        Some(d) => d as f32,
        None => dot_scalar(a, b),
    }
}

/// Squared Euclidean distance of two equally long `f32` slices, computed by `simsimd`.
#[inline]
pub fn l2_squared(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len(), "distance of slices of unequal length");
    match f32::l2sq(a, b) {
        Some(d) => d as f32,
        None => a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum(),
    }
}

/// Scalar reference inner product, accumulated in `f64` (the precision simsimd's f32 kernels
/// return).
pub fn dot_scalar(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| f64::from(x) * f64::from(y))
        .sum::<f64>() as f32
}

/// Inner products of `query` with the rows `ids` of `rows`, a row-major matrix of `stride`
/// floats per row of which the first `query.len()` are used: `out[i] = query · row(ids[i])`.
///
/// The graph builder scores a node's neighbours with one call. With AVX2 and FMA (checked at
/// run time) every row is summed into four independent 8-lane accumulators, so a 64-d product
/// is eight fused multiply-adds that do not wait on one another, with no call per row; other
/// CPUs use [`dot`]. The result does not depend on the other ids in the call.
///
/// # Panics
///
/// If `query` is longer than `stride`, `out` shorter than `ids`, or a row is out of `rows`.
pub fn dot_rows(query: &[f32], rows: &[f32], stride: usize, ids: &[u32], out: &mut [f32]) {
    let len = query.len();
    assert!(len <= stride, "query of {len} floats, rows of {stride}");
    assert!(out.len() >= ids.len(), "output shorter than the ids");
    let n_rows = rows.len().checked_div(stride).unwrap_or(0);
    assert!(
        ids.iter().all(|&id| (id as usize) < n_rows),
        "row id out of {n_rows} rows"
    );
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has AVX2 and FMA (checked just above); every row read lies inside
        // `rows` (the ids were checked against its length, and `len <= stride`).
        unsafe { dot_rows_avx2(query, rows, stride, ids, out) };
        return;
    }
    for (o, &id) in out.iter_mut().zip(ids) {
        let start = id as usize * stride;
        *o = dot(query, &rows[start..start + len]);
    }
}

/// [`dot_rows`] on AVX2 with FMA.
///
/// # Safety
///
/// The CPU must support AVX2 and FMA, and `ids[i] · stride + query.len() <= rows.len()` for
/// every id.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_rows_avx2(query: &[f32], rows: &[f32], stride: usize, ids: &[u32], out: &mut [f32]) {
    use std::arch::x86_64::*;
    let len = query.len();
    let q = query.as_ptr();
    for (o, &id) in out.iter_mut().zip(ids) {
        // SAFETY: the caller guarantees the row and the CPU features; loads are unaligned.
        unsafe {
            let r = rows.as_ptr().add(id as usize * stride);
            let mut acc = [_mm256_setzero_ps(); 4];
            let mut i = 0;
            while i + 32 <= len {
                for (j, a) in acc.iter_mut().enumerate() {
                    let k = i + 8 * j;
                    *a = _mm256_fmadd_ps(_mm256_loadu_ps(q.add(k)), _mm256_loadu_ps(r.add(k)), *a);
                }
                i += 32;
            }
            while i + 8 <= len {
                acc[0] =
                    _mm256_fmadd_ps(_mm256_loadu_ps(q.add(i)), _mm256_loadu_ps(r.add(i)), acc[0]);
                i += 8;
            }
            let s = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
            let h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps::<1>(s));
            let h = _mm_add_ps(h, _mm_movehl_ps(h, h));
            let h = _mm_add_ss(h, _mm_movehdup_ps(h));
            let mut sum = _mm_cvtss_f32(h);
            while i < len {
                sum += *q.add(i) * *r.add(i);
                i += 1;
            }
            *o = sum;
        }
    }
}

/// Inner products of `weights` with the rows `ids` of `codes`, a row-major matrix of `stride`
/// bytes per row of which the first `weights.len()` are used, plus `bias`:
/// `out[i] = bias + Σ_d weights[d] · codes[row(ids[i])][d]`.
///
/// This is how 8-bit codes `x_d ≈ lo_d + step_d · c_d` are scored against an `f32` vector
/// `q`: with `weights = q ∘ step` and `bias = q · lo` the result is `q · x̂`. Same dispatch as
/// [`dot_rows`] (AVX2 and FMA, four accumulators, checked at run time), and the result does
/// not depend on the other ids in the call.
///
/// # Panics
///
/// If `weights` is longer than `stride`, `out` shorter than `ids`, or a row is out of `codes`.
pub fn dot_u8_rows(
    weights: &[f32],
    bias: f32,
    codes: &[u8],
    stride: usize,
    ids: &[u32],
    out: &mut [f32],
) {
    let len = weights.len();
    assert!(
        len <= stride,
        "weights of {len} values, rows of {stride} bytes"
    );
    assert!(out.len() >= ids.len(), "output shorter than the ids");
    let n_rows = codes.len().checked_div(stride).unwrap_or(0);
    assert!(
        ids.iter().all(|&id| (id as usize) < n_rows),
        "row id out of {n_rows} rows"
    );
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has AVX2 and FMA (checked just above); every row read lies inside
        // `codes` (the ids were checked against its length, and `len <= stride`).
        unsafe { dot_u8_rows_avx2(weights, bias, codes, stride, ids, out) };
        return;
    }
    for (o, &id) in out.iter_mut().zip(ids) {
        let start = id as usize * stride;
        let row = &codes[start..start + len];
        *o = bias
            + weights
                .iter()
                .zip(row)
                .map(|(&w, &c)| w * f32::from(c))
                .sum::<f32>();
    }
}

/// [`dot_u8_rows`] on AVX2 with FMA.
///
/// # Safety
///
/// The CPU must support AVX2 and FMA, and `ids[i] · stride + weights.len() <= codes.len()`
/// for every id.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_u8_rows_avx2(
    weights: &[f32],
    bias: f32,
    codes: &[u8],
    stride: usize,
    ids: &[u32],
    out: &mut [f32],
) {
    use std::arch::x86_64::*;
    let len = weights.len();
    let w = weights.as_ptr();
    for (o, &id) in out.iter_mut().zip(ids) {
        // SAFETY: the caller guarantees the row and the CPU features; 8-byte loads of codes
        // stay inside the row's first `len` bytes, loads are unaligned.
        unsafe {
            let r = codes.as_ptr().add(id as usize * stride);
            let widen = |k: usize| {
                _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(
                    r.add(k) as *const __m128i
                )))
            };
            let mut acc = [_mm256_setzero_ps(); 4];
            let mut i = 0;
            while i + 32 <= len {
                for (j, a) in acc.iter_mut().enumerate() {
                    let k = i + 8 * j;
                    *a = _mm256_fmadd_ps(_mm256_loadu_ps(w.add(k)), widen(k), *a);
                }
                i += 32;
            }
            while i + 8 <= len {
                acc[0] = _mm256_fmadd_ps(_mm256_loadu_ps(w.add(i)), widen(i), acc[0]);
                i += 8;
            }
            let s = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
            let h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps::<1>(s));
            let h = _mm_add_ps(h, _mm_movehl_ps(h, h));
            let h = _mm_add_ss(h, _mm_movehdup_ps(h));
            let mut sum = _mm_cvtss_f32(h);
            while i < len {
                sum += *w.add(i) * f32::from(*r.add(i));
                i += 1;
            }
            *o = bias + sum;
        }
    }
}

/// Hints the CPU to start loading the cache line holding `ptr`.
///
/// Used by the graph search and the cascade to overlap the memory latency of the next rows
/// with the arithmetic on the current ones. A no-op on targets without a prefetch instruction.
#[inline(always)]
pub fn prefetch<T>(ptr: *const T) {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: prefetch is a hint; it never faults and never reads memory architecturally,
        // whatever address it is given. SSE is part of the x86_64 baseline.
        #[allow(unused_unsafe)]
        unsafe {
            core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(
                ptr as *const i8,
            );
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = ptr;
}

/// Prefetches the first `bytes` bytes starting at `ptr`, one cache line at a time.
#[inline(always)]
pub fn prefetch_bytes<T>(ptr: *const T, bytes: usize) {
    let base = ptr as *const u8;
    let mut off = 0;
    while off < bytes {
        prefetch(base.wrapping_add(off));
        off += 64;
    }
}

/// Names the dot-product kernel `simsimd` selected on this CPU, for reports.
pub fn kernel_name() -> &'static str {
    use simsimd::capabilities as c;
    if c::uses_sapphire() {
        "sapphire (AVX-512 FP16)"
    } else if c::uses_genoa() {
        "genoa (AVX-512 BF16)"
    } else if c::uses_ice() {
        "ice (AVX-512 VNNI)"
    } else if c::uses_skylake() {
        "skylake (AVX-512F)"
    } else if c::uses_haswell() {
        "haswell (AVX2)"
    } else if c::uses_sve() {
        "sve"
    } else if c::uses_neon() {
        "neon"
    } else {
        "serial"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tolerance(a: &[f32], b: &[f32]) -> f32 {
        // Error bound for f32 products summed in a different order: relative to the sum of
        // absolute products.
        let mag: f64 = a
            .iter()
            .zip(b)
            .map(|(&x, &y)| (f64::from(x) * f64::from(y)).abs())
            .sum();
        (mag * 1e-5) as f32 + 1e-6
    }

    proptest! {
        #[test]
        fn simd_dot_matches_scalar(
            (a, b) in (0usize..1100).prop_flat_map(|n| (
                prop::collection::vec(-100.0f32..100.0, n),
                prop::collection::vec(-100.0f32..100.0, n),
            ))
        ) {
            let fast = dot(&a, &b);
            let slow = dot_scalar(&a, &b);
            prop_assert!((fast - slow).abs() <= tolerance(&a, &b),
                "simd {fast} vs scalar {slow} at len {}", a.len());
        }

        #[test]
        fn simd_l2_matches_scalar(
            (a, b) in (0usize..300).prop_flat_map(|n| (
                prop::collection::vec(-10.0f32..10.0, n),
                prop::collection::vec(-10.0f32..10.0, n),
            ))
        ) {
            let fast = l2_squared(&a, &b);
            let slow: f64 = a.iter().zip(&b).map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2)).sum();
            prop_assert!((f64::from(fast) - slow).abs() <= slow * 1e-5 + 1e-5);
        }

        #[test]
        fn dot_rows_matches_scalar(
            (len, extra, rows) in (0usize..200, 1usize..20).prop_flat_map(|(len, extra)| (
                Just(len),
                Just(extra),
                prop::collection::vec(-10.0f32..10.0, (len + extra) * 6),
            )),
            ids in prop::collection::vec(0u32..5, 0..12),
        ) {
            let stride = len + extra;
            let query = &rows[5 * stride..5 * stride + len];
            let mut out = vec![0f32; ids.len()];
            dot_rows(query, &rows[..5 * stride], stride, &ids, &mut out);
            for (&id, &got) in ids.iter().zip(&out) {
                let row = &rows[id as usize * stride..id as usize * stride + len];
                let want = dot_scalar(query, row);
                prop_assert!((got - want).abs() <= tolerance(query, row),
                    "row {id}: {got} vs {want} at len {len}");
            }
        }

        #[test]
        fn dot_u8_rows_matches_scalar(
            (len, extra, codes, weights) in (0usize..200, 1usize..20).prop_flat_map(|(len, extra)| (
                Just(len),
                Just(extra),
                prop::collection::vec(any::<u8>(), (len + extra) * 5),
                prop::collection::vec(-10.0f32..10.0, len),
            )),
            ids in prop::collection::vec(0u32..5, 0..12),
            bias in -5.0f32..5.0,
        ) {
            let stride = len + extra;
            let mut out = vec![0f32; ids.len()];
            dot_u8_rows(&weights, bias, &codes, stride, &ids, &mut out);
            for (&id, &got) in ids.iter().zip(&out) {
                let row: Vec<f32> = codes[id as usize * stride..id as usize * stride + len]
                    .iter()
                    .map(|&c| f32::from(c))
                    .collect();
                let want = bias + dot_scalar(&weights, &row);
                let tol = tolerance(&weights, &row) + 1e-5 * bias.abs();
                prop_assert!((got - want).abs() <= tol, "row {id}: {got} vs {want} at len {len}");
            }
        }

        #[test]
        fn simd_dot_on_unaligned_subslices(
            v in prop::collection::vec(-1.0f32..1.0, 130),
            start in 0usize..64,
            len in 0usize..64,
        ) {
            let a = &v[start..start + len];
            let b = &v[130 - len..];
            prop_assert!((dot(a, b) - dot_scalar(a, b)).abs() <= tolerance(a, b));
        }
    }

    #[test]
    fn dot_of_known_vectors() {
        assert_eq!(dot(&[1.0, 2.0, 3.0], &[4.0, -5.0, 6.0]), 12.0);
        assert_eq!(dot(&[], &[]), 0.0);
    }
}
