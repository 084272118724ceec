//! Noise for SDE samplers that depends on the noise levels rather than on the step index: a
//! seeded Brownian motion W over sigma, sampled lazily by bisection (a Brownian tree), so that a
//! run with more steps sees a refinement of the same path (k-diffusion's
//! `BrownianTreeNoiseSampler` semantics; the random numbers themselves differ from torchsde's).

use candle_core::Tensor;

use super::types::StepNoise;
use crate::Result;

/// splitmix64: the state update and output mix used to derive independent streams.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `n` standard normal numbers, a pure function of `(seed, stream)` (Box-Muller over splitmix64).
pub fn gaussians(seed: u64, stream: u64, n: usize) -> Vec<f32> {
    gaussians64(seed, stream, n)
        .into_iter()
        .map(|v| v as f32)
        .collect()
}

fn gaussians64(seed: u64, stream: u64, n: usize) -> Vec<f64> {
    let mut s = seed;
    let mut state = splitmix64(&mut s) ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03);
    let mut out = Vec::with_capacity(n + 1);
    while out.len() < n {
        // u1 in (0, 1], u2 in [0, 1).
        let u1 = ((splitmix64(&mut state) >> 11) + 1) as f64 / (1u64 << 53) as f64;
        let u2 = (splitmix64(&mut state) >> 11) as f64 / (1u64 << 53) as f64;
        let r = (-2.0 * u1.ln()).sqrt();
        let th = std::f64::consts::TAU * u2;
        out.push(r * th.cos());
        out.push(r * th.sin());
    }
    out.truncate(n);
    out
}

/// Brownian-tree noise over sigma in `[sigma_min, sigma_max]`, derived from a seed.
///
/// `sample(like, sigma, sigma_next)` returns `(W(sigma_next) - W(sigma)) / sqrt(|sigma -
/// sigma_next|)`, a standard normal tensor; increments over disjoint intervals are independent
/// and a fine step's noise is consistent with the coarse step containing it.
#[derive(Debug, Clone)]
pub struct BrownianNoise {
    seed: u64,
    t0: f64,
    t1: f64,
    depth: u32,
    /// W at the last few queried times (samplers ask for adjacent intervals).
    cache: Vec<(f64, Vec<f64>)>,
}

impl BrownianNoise {
    /// A tree over `[sigma_min, sigma_max]` (the smallest non-zero and the largest sigma of the
    /// run); queries outside are clamped to it.
    pub fn new(seed: u64, sigma_min: f64, sigma_max: f64) -> Self {
        let (t0, t1) = if sigma_min <= sigma_max {
            (sigma_min, sigma_max)
        } else {
            (sigma_max, sigma_min)
        };
        Self {
            seed,
            t0,
            t1,
            depth: 24,
            cache: Vec::new(),
        }
    }

    /// A tree spanning a sigma list (its largest and smallest non-zero entries).
    pub fn for_sigmas(seed: u64, sigmas: &[f64]) -> Self {
        let max = sigmas.iter().copied().fold(0.0, f64::max);
        let min = sigmas
            .iter()
            .copied()
            .filter(|s| *s > 0.0)
            .fold(f64::INFINITY, f64::min);
        Self::new(seed, if min.is_finite() { min } else { max }, max)
    }

    /// W(t) for `n` independent elements; W(t0) = 0.
    fn w(&self, t: f64, n: usize) -> Vec<f64> {
        let t = t.clamp(self.t0, self.t1);
        let (mut a, mut b) = (self.t0, self.t1);
        let mut wa = vec![0.0; n];
        let scale = (b - a).sqrt();
        let mut wb: Vec<f64> = gaussians64(self.seed, 0, n)
            .into_iter()
            .map(|z| z * scale)
            .collect();
        let mut node = 1u64;
        for _ in 0..self.depth {
            if t <= a {
                return wa;
            }
            if t >= b {
                return wb;
            }
            let m = 0.5 * (a + b);
            let sd = (0.25 * (b - a)).sqrt();
            let z = gaussians64(self.seed, node, n);
            let wm: Vec<f64> = wa
                .iter()
                .zip(&wb)
                .zip(&z)
                .map(|((x, y), z)| 0.5 * (x + y) + sd * z)
                .collect();
            if t < m {
                (b, wb, node) = (m, wm, 2 * node);
            } else {
                (a, wa, node) = (m, wm, 2 * node + 1);
            }
        }
        // Below the tree's resolution: interpolate linearly.
        let f = (t - a) / (b - a);
        wa.iter().zip(&wb).map(|(x, y)| x + f * (y - x)).collect()
    }
}

impl BrownianNoise {
    /// W(t), from the cache when this time was queried recently.
    fn w_cached(&mut self, t: f64, n: usize) -> Vec<f64> {
        if let Some((_, w)) = self.cache.iter().find(|(ct, w)| *ct == t && w.len() == n) {
            return w.clone();
        }
        let w = self.w(t, n);
        if self.cache.len() >= 4 {
            self.cache.remove(0);
        }
        self.cache.push((t, w.clone()));
        w
    }
}

impl StepNoise for BrownianNoise {
    fn sample(&mut self, like: &Tensor, sigma: f64, sigma_next: f64) -> Result<Tensor> {
        let n = like.elem_count();
        let (ta, tb) = (
            sigma.clamp(self.t0, self.t1),
            sigma_next.clamp(self.t0, self.t1),
        );
        let dt = (tb - ta).abs();
        let v: Vec<f32> = if dt > 0.0 {
            let (wa, wb) = (self.w_cached(ta, n), self.w_cached(tb, n));
            let inv = 1.0 / dt.sqrt();
            wa.iter()
                .zip(&wb)
                .map(|(a, b)| ((b - a) * inv) as f32)
                .collect()
        } else {
            vec![0.0; n]
        };
        Ok(Tensor::from_vec(v, like.shape(), like.device())?.to_dtype(like.dtype())?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn stats(v: &[f64]) -> (f64, f64) {
        let n = v.len() as f64;
        let mean = v.iter().sum::<f64>() / n;
        (mean, v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n)
    }

    #[test]
    fn gaussians_are_standard_and_seeded() {
        let v: Vec<f64> = gaussians(3, 1, 200_000)
            .into_iter()
            .map(f64::from)
            .collect();
        let (m, var) = stats(&v);
        assert!(m.abs() < 0.01 && (var - 1.0).abs() < 0.02, "{m} {var}");
        assert_eq!(gaussians(3, 1, 10), gaussians(3, 1, 10));
        assert_ne!(gaussians(3, 1, 10), gaussians(3, 2, 10));
        assert_ne!(gaussians(3, 1, 10), gaussians(4, 1, 10));
    }

    #[test]
    fn tree_increments_are_standard_independent_and_refine() {
        let like = Tensor::zeros(20_000, candle_core::DType::F32, &Device::Cpu).unwrap();
        let mut tree = BrownianNoise::new(11, 0.03, 14.6);
        let get = |tree: &mut BrownianNoise, a: f64, b: f64| -> Vec<f64> {
            let t = tree.sample(&like, a, b).unwrap();
            t.to_dtype(candle_core::DType::F64)
                .unwrap()
                .to_vec1()
                .unwrap()
        };
        let coarse = get(&mut tree, 5.0, 1.0);
        let (m, var) = stats(&coarse);
        assert!(m.abs() < 0.03 && (var - 1.0).abs() < 0.05, "{m} {var}");
        // Two halves recombine into the coarse step exactly (same path).
        let (h1, h2) = (get(&mut tree, 5.0, 3.0), get(&mut tree, 3.0, 1.0));
        for i in 0..coarse.len() {
            let joined = (h1[i] * 2f64.sqrt() + h2[i] * 2f64.sqrt()) / 4f64.sqrt();
            assert!(
                (joined - coarse[i]).abs() < 1e-5,
                "{joined} vs {}",
                coarse[i]
            );
        }
        // Disjoint increments are uncorrelated.
        let corr = h1.iter().zip(&h2).map(|(a, b)| a * b).sum::<f64>() / h1.len() as f64;
        assert!(corr.abs() < 0.03, "{corr}");
        // Same seed, same noise; queries are pure.
        assert_eq!(get(&mut tree, 5.0, 1.0), coarse);
        let mut other = BrownianNoise::new(12, 0.03, 14.6);
        assert_ne!(get(&mut other, 5.0, 1.0), coarse);
    }
}
