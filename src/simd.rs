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
