//! Generated Matryoshka-like data for tests, the demo and CI-sized benchmarks.
//!
//! Real Matryoshka embeddings put most of the ranking signal in the first dims. This
//! generator imitates that: the scale of dim `d` decays as `(1 + d/8)^-decay`, items are
//! clustered (Gaussian around one of `clusters` centres), and item norms have a heavy
//! (log-normal) tail, so that the top inner products are not the top cosines. Queries are
//! drawn around the same centres with more noise. Every row is generated from its own
//! seeded stream, so the output is identical whatever the thread count.

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
        }
    }
}

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
                for d in 0..dim {
                    let e: f32 = rng.sample(StandardNormal);
                    x[d] = r * scales[d] * (centre[d] + noise * e);
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
}
