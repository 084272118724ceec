//! k-diffusion's `BrownianTreeNoiseSampler` (with its `BatchedBrownianTree`) for one seed and a
//! float32 latent on the CPU: ComfyUI's `dpmpp_*_sde` samplers, and A1111 for a batch of one
//! when its latent is on the CPU.
//!
//! `BrownianTreeNoiseSampler(x, sigma_min, sigma_max, seed)` sorts its two ends (remembering
//! the sign of the order) and builds `torchsde.BrownianTree` over them. A call
//! `noise(sigma, sigma_next)` sorts the pair the same way, asks the tree for the increment over
//! it, multiplies by the product of both signs and divides by `sqrt(|sigma_next - sigma|)`,
//! everything in float32 since the sigmas are 0-d float32 tensors.

use super::interval::BrownianInterval;

/// The noise sampler: standard normal increments of one seeded Brownian motion over sigma.
#[derive(Debug, Clone)]
pub struct TreeNoiseSampler {
    tree: BrownianInterval,
    sign: f32,
}

/// `BatchedBrownianTree.sort`: the pair in increasing order and -1 if it was not (ties
/// included).
fn sort(a: f32, b: f32) -> (f32, f32, f32) {
    if a < b {
        (a, b, 1.0)
    } else {
        (b, a, -1.0)
    }
}

impl TreeNoiseSampler {
    /// `BrownianTreeNoiseSampler(x, sigma_min, sigma_max, seed=seed)` for an `x` of `size`
    /// elements.
    pub fn new(seed: u64, sigma_min: f32, sigma_max: f32, size: usize) -> Self {
        let (t0, t1, sign) = sort(sigma_min, sigma_max);
        Self {
            tree: BrownianInterval::new(seed, t0.into(), t1.into(), size),
            sign,
        }
    }

    /// Number of elements per sample.
    pub fn size(&self) -> usize {
        self.tree.size()
    }

    /// `noise_sampler(sigma, sigma_next)`: `(W(sigma_next) - W(sigma)) / sqrt(|sigma_next -
    /// sigma|)`, standard normal per element. Where k-diffusion divides zero by zero (equal
    /// sigmas) or gets non-finite sigmas, this returns zeros.
    pub fn sample(&mut self, sigma: f32, sigma_next: f32) -> Vec<f32> {
        let scale = (sigma_next - sigma).abs().sqrt();
        if !(scale > 0.0 && scale.is_finite()) {
            return vec![0.0; self.size()];
        }
        let (t0, t1, sign) = sort(sigma, sigma_next);
        let sign = self.sign * sign;
        self.tree
            .increment(t0.into(), t1.into())
            .into_iter()
            .map(|w| (w * sign) / scale)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::OnceLock;

    use super::super::interval::round_decimal6;
    use super::super::seed_sequence::{int_words, SeedSequence};
    use super::*;

    /// `tests/fixtures/brownian/`, written by `make_brownian_fixtures.py` from torchsde and
    /// k-diffusion.
    struct Fixture {
        tensors: HashMap<String, Vec<f64>>,
        meta: serde_json::Value,
    }

    fn fixture() -> &'static Fixture {
        static F: OnceLock<Fixture> = OnceLock::new();
        F.get_or_init(|| {
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../tests/fixtures/brownian");
            let bytes = std::fs::read(dir.join("reference.safetensors"))
                .expect("run tests/fixtures/brownian/make_brownian_fixtures.py");
            let file = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors");
            let tensors = file
                .tensors()
                .into_iter()
                .map(|(name, view)| (name, values(&view)))
                .collect();
            let meta = std::fs::read_to_string(dir.join("reference.json")).expect("json");
            Fixture {
                tensors,
                meta: serde_json::from_str(&meta).expect("reference.json parses"),
            }
        })
    }

    /// Every element as f64 (exact for the f32 and f64 tensors of the fixture).
    fn values(view: &safetensors::tensor::TensorView) -> Vec<f64> {
        match view.dtype() {
            safetensors::Dtype::F32 => view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]).into())
                .collect(),
            safetensors::Dtype::F64 => view
                .data()
                .chunks_exact(8)
                .map(|b| f64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
                .collect(),
            other => panic!("unexpected dtype {other:?}"),
        }
    }

    fn tensor(name: &str) -> &'static [f64] {
        &fixture().tensors[name]
    }

    #[test]
    fn noise_matches_k_diffusion_bit_for_bit() {
        let cases = fixture().meta["cases"].as_array().unwrap();
        assert_eq!(cases.len(), 16);
        for (n, case) in cases.iter().enumerate() {
            let seed = case["seed"].as_u64().unwrap();
            let size: usize = case["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap() as usize)
                .product();
            let what = format!("case {n} {case}");
            // The range is what the sampler derives from its sigma list.
            let sigmas = tensor(&format!("case{n}.sigmas"));
            let range = tensor(&format!("case{n}.range"));
            let max = sigmas.iter().copied().fold(0.0, f64::max);
            let min = sigmas
                .iter()
                .copied()
                .filter(|s| *s > 0.0)
                .fold(f64::INFINITY, f64::min);
            assert_eq!([min, max], range, "{what}");

            let mut sampler = TreeNoiseSampler::new(seed, min as f32, max as f32, size);
            let queries = tensor(&format!("case{n}.queries"));
            let want = tensor(&format!("case{n}.noise"));
            assert_eq!(want.len(), queries.len() / 2 * size, "{what}");
            for (q, (pair, want)) in queries
                .chunks_exact(2)
                .zip(want.chunks_exact(size))
                .enumerate()
            {
                let got = sampler.sample(pair[0] as f32, pair[1] as f32);
                let worst = got
                    .iter()
                    .zip(want)
                    .map(|(g, w)| (f64::from(*g) - w).abs())
                    .fold(0.0, f64::max);
                let exact = got
                    .iter()
                    .zip(want)
                    .all(|(g, w)| f64::from(*g).to_bits() == w.to_bits());
                assert!(exact, "{what}, call {q} {pair:?}: max abs diff {worst:e}");
            }
        }
    }

    #[test]
    fn times_round_like_python() {
        let (xs, ys) = (tensor("round6.x"), tensor("round6.y"));
        assert!(xs.len() > 5000);
        for (x, y) in xs.iter().zip(ys) {
            assert_eq!(round_decimal6(*x).to_bits(), y.to_bits(), "round({x}, 6)");
        }
    }

    #[test]
    fn seed_sequences_match_numpy() {
        for case in fixture().meta["seed_sequences"].as_array().unwrap() {
            let entropy = int_words(case["entropy"].as_u64().unwrap().into());
            let key: Vec<u32> = case["spawn_key"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|k| int_words(k.as_u64().unwrap().into()))
                .collect();
            let want: Vec<u32> = case["state"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as u32)
                .collect();
            let pool = case["pool_size"].as_u64().unwrap() as usize;
            let got = SeedSequence::new(&entropy, &key, pool).generate_state(want.len());
            assert_eq!(got, want, "{case}");
        }
    }

    #[test]
    fn equal_or_bad_sigmas_give_zeros() {
        let mut sampler = TreeNoiseSampler::new(1, 0.03, 14.6, 32);
        assert_eq!(sampler.sample(2.0, 2.0), vec![0.0; 32]);
        assert_eq!(sampler.sample(f32::NAN, 2.0), vec![0.0; 32]);
        assert_eq!(sampler.sample(2.0, f32::INFINITY), vec![0.0; 32]);
        let reversed = sampler.sample(1.0, 2.0);
        let forward = sampler.sample(2.0, 1.0);
        let negated: Vec<f32> = forward.iter().map(|v| -v).collect();
        assert_eq!(reversed, negated);
    }
}
