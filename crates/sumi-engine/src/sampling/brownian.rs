//! Noise for SDE samplers that depends on the noise levels rather than on the step index: a
//! seeded Brownian motion W over sigma, sampled lazily by bisection (a Brownian tree), so that a
//! run with more steps sees a refinement of the same path.
//!
//! The numbers are torchsde's: [`BrownianNoise`] is k-diffusion's `BrownianTreeNoiseSampler`
//! over `torchsde.BrownianTree`, as ComfyUI's `dpmpp_sde`, `dpmpp_2m_sde` and `dpmpp_3m_sde` use
//! it (`seed` = the sampler's seed, tree on the CPU) and as A1111 does for a batch of one
//! (`seed` = the image's seed; A1111 draws on the latent's device, so only a CPU run of A1111
//! gives these numbers). The same seed, sigma list and sequence of calls give the same noise
//! tensors bit for bit (`tests/fixtures/brownian/`).
//!
//! The parts, each free of tensors:
//! * `seed_sequence`: numpy's `SeedSequence`, which seeds every node of the tree;
//! * `interval`: torchsde's tree itself (time quantisation, splitting, Brownian bridges);
//! * `sampler`: k-diffusion's wrapper (ordering, sign, scaling to unit variance, float32).

mod interval;
mod sampler;
mod seed_sequence;

use candle_core::Tensor;

use self::sampler::TreeNoiseSampler;
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

/// `n` standard normal numbers, a pure function of `(seed, stream)` (Box-Muller over
/// splitmix64). Not torch's numbers and not used by the tree: a cheap seeded source for tests.
pub fn gaussians(seed: u64, stream: u64, n: usize) -> Vec<f32> {
    let mut s = seed;
    let mut state = splitmix64(&mut s) ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03);
    let mut out = Vec::with_capacity(n + 1);
    while out.len() < n {
        // u1 in (0, 1], u2 in [0, 1).
        let u1 = ((splitmix64(&mut state) >> 11) + 1) as f64 / (1u64 << 53) as f64;
        let u2 = (splitmix64(&mut state) >> 11) as f64 / (1u64 << 53) as f64;
        let r = (-2.0 * u1.ln()).sqrt();
        let th = std::f64::consts::TAU * u2;
        out.push((r * th.cos()) as f32);
        out.push((r * th.sin()) as f32);
    }
    out.truncate(n);
    out
}

/// Brownian-tree noise over sigma in `[sigma_min, sigma_max]`, derived from a seed:
/// k-diffusion's `BrownianTreeNoiseSampler(x, sigma_min, sigma_max, seed=seed)`.
///
/// `sample(like, sigma, sigma_next)` returns `(W(sigma_next) - W(sigma)) / sqrt(|sigma_next -
/// sigma|)`, a standard normal tensor; increments over disjoint intervals are independent and a
/// fine step's noise is consistent with the coarse step containing it. Sigmas are taken as f32
/// (the reference's sigma tensors are float32) and queries outside the range are clamped to it.
/// The tree is made at the first `sample`, for that many elements, and made afresh if a later
/// call has another element count.
#[derive(Debug, Clone)]
pub struct BrownianNoise {
    seed: u64,
    sigma_min: f32,
    sigma_max: f32,
    sampler: Option<TreeNoiseSampler>,
}

impl BrownianNoise {
    /// A tree over `[sigma_min, sigma_max]` (the smallest non-zero and the largest sigma of the
    /// run).
    pub fn new(seed: u64, sigma_min: f64, sigma_max: f64) -> Self {
        Self {
            seed,
            sigma_min: sigma_min as f32,
            sigma_max: sigma_max as f32,
            sampler: None,
        }
    }

    /// A tree spanning a sigma list as k-diffusion's SDE samplers, A1111 and ComfyUI make it:
    /// `sigmas[sigmas > 0].min()` to `sigmas.max()`.
    pub fn for_sigmas(seed: u64, sigmas: &[f64]) -> Self {
        let max = sigmas.iter().copied().fold(0.0, f64::max);
        let min = sigmas
            .iter()
            .copied()
            .filter(|s| *s > 0.0)
            .fold(f64::INFINITY, f64::min);
        Self::new(seed, if min.is_finite() { min } else { max }, max)
    }

    /// The noise sampler for samples of `size` elements.
    fn sampler(&mut self, size: usize) -> &mut TreeNoiseSampler {
        let (seed, lo, hi) = (self.seed, self.sigma_min, self.sigma_max);
        if self.sampler.as_ref().map(TreeNoiseSampler::size) != Some(size) {
            self.sampler = None;
        }
        self.sampler
            .get_or_insert_with(|| TreeNoiseSampler::new(seed, lo, hi, size))
    }
}

impl StepNoise for BrownianNoise {
    fn sample(&mut self, like: &Tensor, sigma: f64, sigma_next: f64) -> Result<Tensor> {
        let v = self
            .sampler(like.elem_count())
            .sample(sigma as f32, sigma_next as f32);
        Ok(Tensor::from_vec(v, like.shape(), like.device())?.to_dtype(like.dtype())?)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use candle_core::{DType, Device};

    use super::*;

    fn stats(v: &[f64]) -> (f64, f64) {
        let n = v.len() as f64;
        let mean = v.iter().sum::<f64>() / n;
        (mean, v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n)
    }

    fn values(t: &Tensor) -> Vec<f32> {
        t.to_dtype(DType::F32)
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.to_vec1())
            .unwrap()
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
        let like = Tensor::zeros(20_000, DType::F32, &Device::Cpu).unwrap();
        let get = |tree: &mut BrownianNoise, a: f64, b: f64| -> Vec<f64> {
            let t = tree.sample(&like, a, b).unwrap();
            values(&t).into_iter().map(f64::from).collect()
        };
        let mut tree = BrownianNoise::new(11, 0.03, 14.6);
        let coarse = get(&mut tree, 5.0, 1.0);
        let (m, var) = stats(&coarse);
        assert!(m.abs() < 0.03 && (var - 1.0).abs() < 0.05, "{m} {var}");
        // Two halves recombine into the coarse step (same path; f32 rounding apart).
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
        // The same seed and calls give the same numbers; another seed other numbers.
        let mut again = BrownianNoise::new(11, 0.03, 14.6);
        assert_eq!(get(&mut again, 5.0, 1.0), coarse);
        let mut other = BrownianNoise::new(12, 0.03, 14.6);
        assert_ne!(get(&mut other, 5.0, 1.0), coarse);
    }

    #[test]
    fn tensors_match_k_diffusion() -> Result<()> {
        // Cases of tests/fixtures/brownian (see make_brownian_fixtures.py): dpmpp_2m_sde and
        // dpmpp_sde on [1, 4, 8, 8], a latent under 16 elements and a batch of two.
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/brownian");
        let fx = candle_core::safetensors::load(dir.join("reference.safetensors"), &Device::Cpu)?;
        let meta: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json"))?)
                .map_err(|e| crate::Error::InvalidRequest(e.to_string()))?;
        for n in [0, 6, 13, 14] {
            let case = &meta["cases"][n];
            let seed = case["seed"].as_u64().unwrap();
            let shape: Vec<usize> = case["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap() as usize)
                .collect();
            let sigmas: Vec<f64> = fx[&format!("case{n}.sigmas")]
                .to_dtype(DType::F64)?
                .to_vec1()?;
            let queries = &fx[&format!("case{n}.queries")];
            let noise = &fx[&format!("case{n}.noise")];
            let mut tree = BrownianNoise::for_sigmas(seed, &sigmas);
            let mut half = BrownianNoise::for_sigmas(seed, &sigmas);
            let like = Tensor::zeros(shape.as_slice(), DType::F32, &Device::Cpu)?;
            let like_half = like.to_dtype(DType::F16)?;
            for q in 0..queries.dims()[0] {
                let pair: Vec<f32> = queries.get(q)?.to_vec1()?;
                let (s, s_next) = (f64::from(pair[0]), f64::from(pair[1]));
                let want = noise.get(q)?;
                let got = tree.sample(&like, s, s_next)?;
                assert_eq!(got.dims(), shape.as_slice());
                assert_eq!(values(&got), values(&want), "case {n} call {q}");
                // Other dtypes get the f32 noise cast.
                let got = half.sample(&like_half, s, s_next)?;
                assert_eq!(got.dtype(), DType::F16);
                assert_eq!(values(&got), values(&want.to_dtype(DType::F16)?));
            }
        }
        Ok(())
    }
}
