//! Generated Matryoshka-like data for tests, the demo and CI-sized benchmarks.
//!
//! Real Matryoshka embeddings put most of the ranking signal in the first dims. This
//! generator imitates that: the scale of dim `d` decays as `(1 + d/8)^-decay`, items are
//! clustered (Gaussian around one of `clusters` centres), and item norms have a heavy
//! (log-normal) tail, so that the top inner products are not the top cosines. Queries are
//! drawn around the same centres with more noise. Every row is generated from its own
//! seeded stream, so the output is identical whatever the thread count.
//!
//! The default is *strongly* Matryoshka: the first dims carry most of the variance and the
//! cluster signal, so the 64-d prefix already holds much of the full-width ranking.
//! [`MatryoshkaLike::weak`] makes a *weakly* Matryoshka set: no decay (the signal is spread
//! evenly over all dims) and the first [`MatryoshkaLike::prefix_dims`] dims replace most of
//! the cluster signal by per-row noise ([`MatryoshkaLike::prefix_signal`]), so the prefix
//! alone ranks poorly and a cascade needs far more coarse candidates.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, LogNormal, StandardNormal};
use rayon::prelude::*;

/// Parameters of a generated set.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MatryoshkaLike {
    /// Full dimension.
    pub dim: usize,
    /// Number of cluster centres.
    pub clusters: usize,
    /// Exponent of the per-dim scale decay (larger: more of the signal in the prefix).
    pub decay: f32,
    /// Standard deviation of items around their centre (centres have unit variance).
    pub item_noise: f32,
    /// Standard deviation of queries around their centre.
    pub query_noise: f32,
    /// σ of the log-normal item norm factor (0: all factors 1).
    pub norm_sigma: f32,
    /// Seed of everything.
    pub seed: u64,
    /// Number of leading dims that [`MatryoshkaLike::prefix_signal`] applies to.
    pub prefix_dims: usize,
    /// Share of the cluster signal the first `prefix_dims` dims keep, in `[0, 1]`: there,
    /// the centre's component is scaled by `prefix_signal` and per-row noise of variance
    /// `1 - prefix_signal²` takes the place of the rest (same total variance). `1.0` (the
    /// default) leaves the prefix alone and generates exactly what earlier versions did.
    pub prefix_signal: f32,
}

impl Default for MatryoshkaLike {
    fn default() -> Self {
        MatryoshkaLike {
            dim: 1024,
            clusters: 256,
            decay: 0.5,
            item_noise: 0.6,
            query_noise: 1.0,
            norm_sigma: 0.35,
            seed: 42,
            prefix_dims: 64,
            prefix_signal: 1.0,
        }
    }
}

/// Factor on the cluster signal in the prefix of [`MatryoshkaLike::weak`] (its share of the
/// prefix's non-item-noise variance is the square, about half).
pub const WEAK_PREFIX_SIGNAL: f32 = 0.7;

fn row_rng(seed: u64, stream: u64, row: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ stream.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    rng.set_stream(row);
    rng
}

impl MatryoshkaLike {
    /// A set of this dimension with the other parameters at their defaults.
    pub fn with_dim(dim: usize, seed: u64) -> MatryoshkaLike {
        MatryoshkaLike {
            dim,
            seed,
            ..Default::default()
        }
    }

    /// A weakly Matryoshka set of this dimension: no decay (signal spread evenly over all
    /// dims) and a 64-d prefix (half the dims when `dim < 128`) whose cluster signal is
    /// scaled by [`WEAK_PREFIX_SIGNAL`], per-row noise making up the rest of its variance.
    /// At 20,000 × 1024 the exact 64-d top-10 holds about a quarter of the full-width
    /// top-10 (three quarters in the default, strong, set) and the 64-d top-1000 about 90%
    /// (all of it in the strong set).
    pub fn weak(dim: usize, seed: u64) -> MatryoshkaLike {
        MatryoshkaLike {
            decay: 0.0,
            prefix_dims: 64.min(dim / 2),
            prefix_signal: WEAK_PREFIX_SIGNAL,
            ..MatryoshkaLike::with_dim(dim, seed)
        }
    }

    /// Whether the prefix knob is in effect (`prefix_signal < 1` on at least one dim).
    fn weak_prefix(&self) -> bool {
        self.prefix_dims > 0 && self.prefix_signal < 1.0
    }

    fn scales(&self) -> Vec<f32> {
        (0..self.dim)
            .map(|d| (1.0 + d as f32 / 8.0).powf(-self.decay))
            .collect()
    }

    fn centres(&self) -> Vec<f32> {
        let mut rng = row_rng(self.seed, 1, 0);
        (0..self.clusters.max(1) * self.dim)
            .map(|_| rng.sample::<f32, _>(StandardNormal))
            .collect()
    }

    fn generate(&self, n: usize, stream: u64, noise: f32, norm_sigma: f32) -> Vec<f32> {
        let dim = self.dim;
        let scales = self.scales();
        let centres = self.centres();
        let clusters = self.clusters.max(1);
        let lognormal = LogNormal::new(0.0f32, norm_sigma.max(0.0)).ok();
        let weak_prefix = self.weak_prefix();
        let prefix_dims = self.prefix_dims;
        let prefix_signal = self.prefix_signal.clamp(0.0, 1.0);
        let prefix_noise = (1.0 - prefix_signal * prefix_signal).sqrt();
        let mut out = vec![0f32; n * dim];
        out.par_chunks_mut(dim.max(1))
            .enumerate()
            .for_each(|(row, x)| {
                let mut rng = row_rng(self.seed, stream, row as u64);
                let c = rng.gen_range(0..clusters);
                let centre = &centres[c * dim..(c + 1) * dim];
                let r = match (&lognormal, norm_sigma > 0.0) {
                    (Some(ln), true) => ln.sample(&mut rng),
                    _ => 1.0,
                };
                if !weak_prefix {
                    for d in 0..dim {
                        let e: f32 = rng.sample(StandardNormal);
                        x[d] = r * scales[d] * (centre[d] + noise * e);
                    }
                    return;
                }
                for d in 0..dim {
                    let e: f32 = rng.sample(StandardNormal);
                    let signal = if d < prefix_dims {
                        let z: f32 = rng.sample(StandardNormal);
                        prefix_signal * centre[d] + prefix_noise * z
                    } else {
                        centre[d]
                    };
                    x[d] = r * scales[d] * (signal + noise * e);
                }
            });
        out
    }

    /// `n` item vectors, row-major.
    pub fn items(&self, n: usize) -> Vec<f32> {
        self.generate(n, 2, self.item_noise, self.norm_sigma)
    }

    /// `n` query vectors, row-major, independent of the items.
    pub fn queries(&self, n: usize) -> Vec<f32> {
        self.generate(n, 3, self.query_noise, 0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_decaying() {
        let g = MatryoshkaLike::with_dim(128, 7);
        let a = g.items(300);
        assert_eq!(a, g.items(300));
        assert_ne!(a, MatryoshkaLike::with_dim(128, 8).items(300));
        let var = |d: usize| a.iter().skip(d).step_by(128).map(|x| x * x).sum::<f32>();
        assert!(
            var(0) > 3.0 * var(127),
            "variance must decay with dimension"
        );
        let norms: Vec<f32> = a
            .chunks(128)
            .map(|x| x.iter().map(|v| v * v).sum::<f32>().sqrt())
            .collect();
        let max = norms.iter().cloned().fold(0.0, f32::max);
        let min = norms.iter().cloned().fold(f32::MAX, f32::min);
        assert!(
            max > 2.0 * min,
            "norms must vary (heavy tail), got {min}..{max}"
        );
    }

    #[test]
    fn weak_prefix_changes_only_the_prefix_knob() {
        let strong = MatryoshkaLike::with_dim(128, 7);
        assert_eq!(
            strong.prefix_signal, 1.0,
            "the default must leave the prefix alone"
        );
        let explicit = MatryoshkaLike {
            prefix_dims: 0,
            prefix_signal: 0.1,
            ..strong
        };
        assert_eq!(
            explicit.items(50),
            strong.items(50),
            "no prefix dims: unchanged"
        );
        let weak = MatryoshkaLike::weak(128, 7);
        assert_eq!((weak.decay, weak.prefix_dims), (0.0, 64));
        let a = weak.items(200);
        assert_eq!(a, weak.items(200), "deterministic");
        assert_ne!(
            a,
            MatryoshkaLike {
                decay: 0.0,
                ..strong
            }
            .items(200)
        );
    }
}
