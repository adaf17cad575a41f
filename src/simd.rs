//! Dot-product kernels.
//!
//! [`dot`] dispatches to `simsimd`, which picks the widest kernel the CPU supports at run time
//! (AVX-512 on the machines this project is measured on). [`dot_scalar`] is the reference the
//! SIMD path is property-tested against.

use simsimd::SpatialSimilarity;

/// Inner product of two equally long `f32` slices.
///
/// On x86_64 with AVX-512F or AVX2+FMA (detected once at run time) this is the crate's own
/// kernel, four `f32` accumulators wide; elsewhere `simsimd` picks its kernel. The own
/// kernel exists because `simsimd`'s `f32` kernels accumulate in `f64`, and on the AVX2
/// machines this project is measured on that made the dot products a third of a search's
/// time (`benches/search.rs`, `dot/*`, compares the two).
///
/// The slices must have the same length; callers in this crate guarantee it by construction
/// (rows and query bands are cut from the same width). Should the lengths ever differ, the
/// common prefix is used in release builds and a debug assertion fires in debug builds.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len(), "dot product of slices of unequal length");
    let n = a.len().min(b.len());
    #[cfg(target_arch = "x86_64")]
    {
        match kernel() {
            // SAFETY: the CPU supports the instructions (detected); both pointers are valid
            // for `n` floats.
            Kernel::Avx512 => return unsafe { x86::dot_avx512(a.as_ptr(), b.as_ptr(), n) },
            // SAFETY: as above, AVX2 and FMA detected.
            Kernel::Avx2 => return unsafe { x86::dot_avx2(a.as_ptr(), b.as_ptr(), n) },
            Kernel::Scalar => {}
        }
    }
    dot_simsimd(&a[..n], &b[..n])
}

/// Inner product computed by `simsimd` (its run-time selected kernel, accumulating in
/// `f64`); the fallback of [`dot`] and its benchmark reference.
#[inline]
pub fn dot_simsimd(a: &[f32], b: &[f32]) -> f32 {
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

/// Inner products of `q` with consecutive rows of a row-major band: `out[i] = q ·
/// data[(first + i)·stride ..][..q.len()]` for every `i < out.len()`.
///
/// The scan kernel of the coarse stage: one pass over contiguous rows with no per-row
/// bounds checks or dispatch. Each row is summed exactly as [`dot`] sums it, so a scan and a
/// graph search give bitwise equal scores.
///
/// Panics if the rows do not fit in `data` or `q` is longer than `stride`.
pub fn dot_many(q: &[f32], data: &[f32], stride: usize, first: usize, out: &mut [f32]) {
    assert!(q.len() <= stride, "query longer than the row stride");
    let end = (first + out.len()) * stride;
    assert!(
        out.is_empty() || end - stride + q.len() <= data.len(),
        "rows {first}..{} out of the band",
        first + out.len()
    );
    let w = q.len();
    #[cfg(target_arch = "x86_64")]
    {
        let k = kernel();
        if k != Kernel::Scalar {
            let base = data.as_ptr();
            for (i, o) in out.iter_mut().enumerate() {
                // SAFETY: the kernel's instructions were detected; row `first + i` lies in
                // `data` (asserted above).
                *o = unsafe {
                    let row = base.add((first + i) * stride);
                    match k {
                        Kernel::Avx512 => x86::dot_avx512(q.as_ptr(), row, w),
                        _ => x86::dot_avx2(q.as_ptr(), row, w),
                    }
                };
            }
            return;
        }
    }
    for (i, o) in out.iter_mut().enumerate() {
        let start = (first + i) * stride;
        *o = dot(q, &data[start..start + w]);
    }
}

/// The scalar reference of [`dot_many`].
pub fn dot_many_scalar(q: &[f32], data: &[f32], stride: usize, first: usize, out: &mut [f32]) {
    for (i, o) in out.iter_mut().enumerate() {
        let start = (first + i) * stride;
        *o = q
            .iter()
            .zip(&data[start..start + q.len()])
            .map(|(a, b)| a * b)
            .sum();
    }
}

/// Inner product of an `f32` query with a row of IEEE half-precision values (stored as their
/// `u16` bits), accumulated in `f32`. The learned code is stored in half precision: half the
/// bytes to read per candidate, and a conversion instruction (F16C) per eight values.
#[inline]
pub fn dot_f16(q: &[f32], row: &[u16]) -> f32 {
    debug_assert_eq!(
        q.len(),
        row.len(),
        "dot product of slices of unequal length"
    );
    let n = q.len().min(row.len());
    #[cfg(target_arch = "x86_64")]
    {
        match kernel_f16() {
            // SAFETY: the CPU supports the instructions (detected); both pointers are valid
            // for `n` elements.
            Kernel::Avx512 => return unsafe { x86::dot_f16_avx512(q.as_ptr(), row.as_ptr(), n) },
            // SAFETY: as above (AVX2, FMA and F16C detected).
            Kernel::Avx2 => return unsafe { x86::dot_f16_avx2(q.as_ptr(), row.as_ptr(), n) },
            Kernel::Scalar => {}
        }
    }
    dot_f16_scalar(&q[..n], &row[..n])
}

/// The scalar reference of [`dot_f16`].
pub fn dot_f16_scalar(q: &[f32], row: &[u16]) -> f32 {
    q.iter()
        .zip(row)
        .map(|(&a, &b)| a * half::f16::from_bits(b).to_f32())
        .sum()
}

/// [`dot_many`] over a band of half-precision rows: `out[i] = q · data[(first + i)·stride
/// ..][..q.len()]`. Panics if the rows do not fit in `data` or `q` is longer than `stride`.
pub fn dot_many_f16(q: &[f32], data: &[u16], stride: usize, first: usize, out: &mut [f32]) {
    assert!(q.len() <= stride, "query longer than the row stride");
    let end = (first + out.len()) * stride;
    assert!(
        out.is_empty() || end - stride + q.len() <= data.len(),
        "rows {first}..{} out of the band",
        first + out.len()
    );
    #[cfg(target_arch = "x86_64")]
    {
        if kernel_f16() != Kernel::Scalar {
            let w = q.len();
            for (i, o) in out.iter_mut().enumerate() {
                let start = (first + i) * stride;
                // SAFETY: a kernel was detected; the row lies in `data` (asserted above).
                *o = unsafe {
                    match kernel_f16() {
                        Kernel::Avx512 => {
                            x86::dot_f16_avx512(q.as_ptr(), data.as_ptr().add(start), w)
                        }
                        _ => x86::dot_f16_avx2(q.as_ptr(), data.as_ptr().add(start), w),
                    }
                };
            }
            return;
        }
    }
    for (i, o) in out.iter_mut().enumerate() {
        let start = (first + i) * stride;
        *o = dot_f16_scalar(q, &data[start..start + q.len()]);
    }
}

/// Converts to IEEE half precision (round to nearest even; out-of-range values saturate to
/// ±infinity, which callers rule out beforehand).
pub fn to_f16_bits(x: f32) -> u16 {
    half::f16::from_f32(x).to_bits()
}

#[cfg(target_arch = "x86_64")]
fn kernel_f16() -> Kernel {
    use std::sync::OnceLock;
    static KERNEL: OnceLock<Kernel> = OnceLock::new();
    *KERNEL.get_or_init(|| {
        if !std::arch::is_x86_feature_detected!("f16c") {
            Kernel::Scalar
        } else {
            kernel()
        }
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
enum Kernel {
    Avx512,
    Avx2,
    Scalar,
}

#[cfg(target_arch = "x86_64")]
fn kernel() -> Kernel {
    use std::sync::OnceLock;
    static KERNEL: OnceLock<Kernel> = OnceLock::new();
    *KERNEL.get_or_init(|| {
        if std::arch::is_x86_feature_detected!("avx512f") {
            Kernel::Avx512
        } else if std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
        {
            Kernel::Avx2
        } else {
            Kernel::Scalar
        }
    })
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use core::arch::x86_64::*;

    /// # Safety
    /// The CPU must support AVX-512F; `a` and `b` must be valid for `n` floats.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn dot_avx512(a: *const f32, b: *const f32, n: usize) -> f32 {
        let mut acc = [_mm512_setzero_ps(); 4];
        let mut i = 0;
        while i + 64 <= n {
            for (j, acc) in acc.iter_mut().enumerate() {
                let o = i + 16 * j;
                *acc = _mm512_fmadd_ps(_mm512_loadu_ps(a.add(o)), _mm512_loadu_ps(b.add(o)), *acc);
            }
            i += 64;
        }
        while i + 16 <= n {
            acc[0] = _mm512_fmadd_ps(_mm512_loadu_ps(a.add(i)), _mm512_loadu_ps(b.add(i)), acc[0]);
            i += 16;
        }
        if i < n {
            let mask: __mmask16 = ((1u32 << (n - i)) - 1) as __mmask16;
            acc[1] = _mm512_fmadd_ps(
                _mm512_maskz_loadu_ps(mask, a.add(i)),
                _mm512_maskz_loadu_ps(mask, b.add(i)),
                acc[1],
            );
        }
        let s = _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]));
        _mm512_reduce_add_ps(s)
    }

    /// # Safety
    /// The CPU must support AVX2 and FMA; `a` and `b` must be valid for `n` floats.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot_avx2(a: *const f32, b: *const f32, n: usize) -> f32 {
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        while i + 32 <= n {
            for (j, acc) in acc.iter_mut().enumerate() {
                let o = i + 8 * j;
                *acc = _mm256_fmadd_ps(_mm256_loadu_ps(a.add(o)), _mm256_loadu_ps(b.add(o)), *acc);
            }
            i += 32;
        }
        while i + 8 <= n {
            acc[0] = _mm256_fmadd_ps(_mm256_loadu_ps(a.add(i)), _mm256_loadu_ps(b.add(i)), acc[0]);
            i += 8;
        }
        let s = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
        let mut total = hsum256(s);
        while i < n {
            total += *a.add(i) * *b.add(i);
            i += 1;
        }
        total
    }

    /// # Safety
    /// The CPU must support AVX-512F; `q` and `row` must be valid for `n` elements.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn dot_f16_avx512(q: *const f32, row: *const u16, n: usize) -> f32 {
        let mut a0 = _mm512_setzero_ps();
        let mut a1 = _mm512_setzero_ps();
        let mut i = 0;
        while i + 32 <= n {
            let x0 = _mm512_cvtph_ps(_mm256_loadu_si256(row.add(i) as *const __m256i));
            let x1 = _mm512_cvtph_ps(_mm256_loadu_si256(row.add(i + 16) as *const __m256i));
            a0 = _mm512_fmadd_ps(_mm512_loadu_ps(q.add(i)), x0, a0);
            a1 = _mm512_fmadd_ps(_mm512_loadu_ps(q.add(i + 16)), x1, a1);
            i += 32;
        }
        if i + 16 <= n {
            let x0 = _mm512_cvtph_ps(_mm256_loadu_si256(row.add(i) as *const __m256i));
            a0 = _mm512_fmadd_ps(_mm512_loadu_ps(q.add(i)), x0, a0);
            i += 16;
        }
        let mut total = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
        while i < n {
            total += *q.add(i) * f16_to_f32(*row.add(i));
            i += 1;
        }
        total
    }

    /// # Safety
    /// The CPU must support AVX2, FMA and F16C; `q` and `row` must be valid for `n` elements.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot_f16_avx2(q: *const f32, row: *const u16, n: usize) -> f32 {
        let mut a0 = _mm256_setzero_ps();
        let mut a1 = _mm256_setzero_ps();
        let mut i = 0;
        while i + 16 <= n {
            let x0 = _mm256_cvtph_ps(_mm_loadu_si128(row.add(i) as *const __m128i));
            let x1 = _mm256_cvtph_ps(_mm_loadu_si128(row.add(i + 8) as *const __m128i));
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q.add(i)), x0, a0);
            a1 = _mm256_fmadd_ps(_mm256_loadu_ps(q.add(i + 8)), x1, a1);
            i += 16;
        }
        if i + 8 <= n {
            let x0 = _mm256_cvtph_ps(_mm_loadu_si128(row.add(i) as *const __m128i));
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q.add(i)), x0, a0);
            i += 8;
        }
        let mut total = hsum256(_mm256_add_ps(a0, a1));
        while i < n {
            total += *q.add(i) * f16_to_f32(*row.add(i));
            i += 1;
        }
        total
    }

    #[inline(always)]
    fn f16_to_f32(bits: u16) -> f32 {
        half::f16::from_bits(bits).to_f32()
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn hsum256(v: __m256) -> f32 {
        let lo = _mm256_castps256_ps128(v);
        let hi = _mm256_extractf128_ps(v, 1);
        let s = _mm_add_ps(lo, hi);
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
        _mm_cvtss_f32(s)
    }
}

/// Inner products of `query` with the rows `ids` of `rows`, a row-major matrix of `stride`
/// floats per row of which the first `query.len()` are used: `out[i] = query · row(ids[i])`.
///
/// The graph builder scores a node's neighbours with one call: one bounds check and one
/// kernel dispatch per call rather than per row. Each row is summed exactly as [`dot`] sums
/// it, so the result does not depend on the other ids in the call.
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
    {
        let k = kernel();
        if k != Kernel::Scalar {
            for (o, &id) in out.iter_mut().zip(ids) {
                // SAFETY: the kernel's instructions were detected; row `id` lies in `rows`
                // (checked above, with `len <= stride`).
                *o = unsafe {
                    let row = rows.as_ptr().add(id as usize * stride);
                    match k {
                        Kernel::Avx512 => x86::dot_avx512(query.as_ptr(), row, len),
                        _ => x86::dot_avx2(query.as_ptr(), row, len),
                    }
                };
            }
            return;
        }
    }
    for (o, &id) in out.iter_mut().zip(ids) {
        let start = id as usize * stride;
        *o = dot(query, &rows[start..start + len]);
    }
}

/// Inner products of `weights` with the rows `ids` of `codes`, a row-major matrix of `stride`
/// bytes per row of which the first `weights.len()` are used, plus `bias`:
/// `out[i] = bias + Σ_d weights[d] · codes[row(ids[i])][d]`.
///
/// This is how 8-bit codes `x_d ≈ lo_d + step_d · c_d` are scored against an `f32` vector
/// `q`: with `weights = q ∘ step` and `bias = q · lo` the result is `q · x̂`. With AVX2 and
/// FMA (checked at run time) each row is widened eight bytes at a time into four `f32`
/// accumulators; the result does not depend on the other ids in the call.
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

    proptest! {
        #[test]
        fn dot_many_matches_scalar(
            (w, extra, rows) in (0usize..80, 0usize..20, 0usize..11),
            seed in any::<u64>(),
        ) {
            let stride = w + extra;
            let mut state = seed | 1;
            let mut next = || {
                state ^= state << 13; state ^= state >> 7; state ^= state << 17;
                ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            };
            let data: Vec<f32> = (0..(rows + 2) * stride.max(1)).map(|_| next()).collect();
            let q: Vec<f32> = (0..w).map(|_| next()).collect();
            for first in [0usize, 1] {
                let mut fast = vec![0f32; rows];
                let mut slow = vec![0f32; rows];
                dot_many(&q, &data, stride, first, &mut fast);
                dot_many_scalar(&q, &data, stride, first, &mut slow);
                for i in 0..rows {
                    let s = (first + i) * stride;
                    let tol = tolerance(&q, &data[s..s + w]);
                    prop_assert!((fast[i] - slow[i]).abs() <= tol, "row {i}: {} vs {}", fast[i], slow[i]);
                }
            }
        }
    }

    proptest! {
        #[test]
        fn f16_kernels_match_scalar(
            (w, rows) in (0usize..90, 1usize..7),
            seed in any::<u64>(),
        ) {
            let stride = w.div_ceil(32) * 32 + 32;
            let mut state = seed | 1;
            let mut next = || {
                state ^= state << 13; state ^= state >> 7; state ^= state << 17;
                ((state >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
            };
            let data: Vec<u16> = (0..rows * stride).map(|_| to_f16_bits(next())).collect();
            let q: Vec<f32> = (0..w).map(|_| next()).collect();
            let mut many = vec![0f32; rows];
            dot_many_f16(&q, &data, stride, 0, &mut many);
            for r in 0..rows {
                let row = &data[r * stride..r * stride + w];
                let slow = dot_f16_scalar(&q, row);
                let wide: Vec<f32> = row.iter().map(|&b| half::f16::from_bits(b).to_f32()).collect();
                let tol = tolerance(&q, &wide);
                prop_assert!((dot_f16(&q, row) - slow).abs() <= tol);
                prop_assert!((many[r] - slow).abs() <= tol);
            }
        }
    }

    #[test]
    fn dot_of_known_vectors() {
        assert_eq!(dot(&[1.0, 2.0, 3.0], &[4.0, -5.0, 6.0]), 12.0);
        assert_eq!(dot(&[], &[]), 0.0);
    }
}
