//! A1111's "NV" noise source: a CPU reproduction of what `torch.randn` draws on an NVIDIA GPU.
//!
//! A1111 (`modules/rng_philox.py`) emulates CUDA's Philox 4x32-10 generator with numpy, so that a
//! seed gives the same noise with or without an NVIDIA card. [`PhiloxRng`] reproduces that
//! emulation bit for bit (see "Exactness" below).
//!
//! # One draw
//! A generator is a seed and an offset (the number of draws made so far, starting at 0). A draw of
//! `n` values (a tensor of any shape with `n` elements, row-major) computes, for every index `i`:
//! * Philox 4x32-10 with counter `[offset, 0, i, 0]` and key `[seed & 0xffff_ffff, seed >> 32]`;
//!   the two first output words `x`, `y` are kept, the other two are discarded.
//! * One Box-Muller value, in double precision: `u = x * 2^-32 + 2^-33`,
//!   `v = y * c + c / 2` with `c` the float32 nearest to `2^-32 * 2pi`, and the result is
//!   `sqrt(-2 ln u) * sin v`, rounded to float32.
//!
//! The offset then grows by one, whatever `n` is: a draw uses one counter row however large it is,
//! so successive draws of any sizes never overlap.
//!
//! A1111 takes the seed as a Python int and stores it in a uint64 array, so it accepts exactly the
//! seeds `0..=2^64-1` (numpy refuses negative or larger ones). The index is a uint32, so a draw of
//! more than 2^32 values would repeat (no image comes near that); the offset wraps after 2^32 draws.
//!
//! # Exactness
//! The Philox words and `u`, `v` are exact integer / IEEE arithmetic, done in the same order as
//! numpy (no fused multiply-adds). `ln` and `sin` come from the platform's libm. numpy has its own
//! SIMD `log` on AVX-512 machines, which disagrees with glibc's in the last bit of about 0.35% of
//! the doubles; a double's last bit only changes the float32 result when the double lies right at
//! a float32 rounding boundary (a chance of the order of 1e-9 per value), and no such value turned
//! up: the fixture, 42 draws of 4x128x128 (7 seeds, 6 successive draws each) and 4 million values
//! computed both ways in numpy are all identical. A1111 itself differs this much between CPUs.
//!
//! # How A1111 uses it (`modules/rng.py`, `ImageRNG`, RNG source "NV")
//! (A1111 meant "NV" to give, on any hardware, what its default source "GPU" draws on an NVIDIA
//! card; that claim is A1111's and is not checked here.) A1111 keeps one generator per image of
//! the batch. For an image with seed `s`, latent shape
//! `C x H/8 x W/8`:
//! * **First noise** (`ImageRNG.first()`, the starting latent; txt2img multiplies it by
//!   `sigmas[0]`, img2img adds it times the first sigma of its schedule): one draw of
//!   `C*H/8*W/8` values from `PhiloxRng::new(s)` (offset 0 -> 1).
//! * **Variation seed** (subseed `t`, strength `k != 0`): a second draw of the same size from a
//!   fresh `PhiloxRng::new(t)`; the first noise is replaced by `slerp(k, noise(s), noise(t))`
//!   (see `variation.rs`). The image's own generator is still at offset 1 afterwards.
//! * **ENSD** (eta noise seed delta, a setting): if it is non-zero, once the first noise is drawn
//!   the image's generator is replaced by `PhiloxRng::new(s + ENSD)` (offset 0). Otherwise the
//!   generator keeps going from offset 1.
//! * **Later noise** (`ImageRNG.next()`): every `torch.randn_like` inside a k-diffusion sampler
//!   (Euler a, DPM2 a, DPM++ 2S a, the churn noise of Euler/Heun/DPM2, ...) is hijacked to
//!   `next()`, which makes one draw of the full latent size `C*H/8*W/8` from the image's
//!   generator, whatever tensor the sampler asked for. So the k-th draw after the first noise
//!   (k = 1, 2, ...) is at offset k of the seed's generator, or, with ENSD, at offset k - 1 of the
//!   `s + ENSD` generator. (A1111 adds the two as Python ints; a sum of 2^64 or more makes numpy
//!   raise, so `checked_add` is the faithful choice.)
//! * DPM++ SDE / 2M SDE / 3M SDE take their noise from k-diffusion's `BrownianTreeNoiseSampler`
//!   (seeded with the image seeds), not from this generator.
//! * Batches: image `i` of a batch uses seed `seed + i` (only when the variation strength is 0;
//!   with a variation strength every image keeps `seed`) and subseed `subseed + i`.
//! * A hires-fix second pass builds a new `ImageRNG` for the upscaled latent: fresh generators,
//!   offset 0 again, the same rules.

/// Philox round multipliers.
const PHILOX_M0: u32 = 0xD251_1F53;
const PHILOX_M1: u32 = 0xCD9E_8D57;
/// Philox key increments (Weyl sequence).
const PHILOX_W0: u32 = 0x9E37_79B9;
const PHILOX_W1: u32 = 0xBB67_AE85;
const PHILOX_ROUNDS: usize = 10;

// A1111 keeps these as float32 arrays and numpy widens them to double when they meet the uint32
// words, so the double values of the float32 constants are what enter the arithmetic.
/// float32(2.3283064e-10) = 2^-32.
const U_SCALE: f64 = f32::from_bits(0x2f80_0000) as f64;
/// Half of [`U_SCALE`], 2^-33.
const U_OFFSET: f64 = f32::from_bits(0x2f00_0000) as f64;
/// float32(2.3283064e-10 * 6.2831855), i.e. float32(2pi) * 2^-32.
const V_SCALE: f64 = f32::from_bits(0x30c9_0fdb) as f64;
/// Half of [`V_SCALE`].
const V_OFFSET: f64 = f32::from_bits(0x3049_0fdb) as f64;

/// A1111's "NV" generator: Philox 4x32-10 plus Box-Muller, as `rng_philox.Generator` computes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PhiloxRng {
    seed: u64,
    offset: u32,
}

impl PhiloxRng {
    /// A fresh generator for `seed`, as `rng_philox.Generator(seed)` (offset 0).
    pub fn new(seed: u64) -> Self {
        Self { seed, offset: 0 }
    }

    /// A generator for `seed` that has already made `offset` draws.
    pub fn with_offset(seed: u64, offset: u32) -> Self {
        Self { seed, offset }
    }

    /// The seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The number of draws made so far (the counter row the next draw uses).
    pub fn offset(&self) -> u32 {
        self.offset
    }

    /// `Generator.randn(shape)` for a shape with `n` elements: `n` standard normal values in
    /// row-major order. Advances the offset by one.
    pub fn randn(&mut self, n: usize) -> Vec<f32> {
        let mut out = vec![0.0; n];
        self.fill_randn(&mut out);
        out
    }

    /// The same draw as [`PhiloxRng::randn`] written into `out` (its length is the element count).
    pub fn fill_randn(&mut self, out: &mut [f32]) {
        let keys = key_schedule(self.seed);
        let offset = self.offset;
        for (i, value) in out.iter_mut().enumerate() {
            // A1111's element index is a uint32 (see the module docs).
            let [x, y] = philox_pair(offset, i as u32, &keys);
            *value = box_muller(x, y);
        }
        self.offset = self.offset.wrapping_add(1);
    }
}

/// The ten round keys for `seed`: `[low word, high word]`, bumped by the Weyl constants.
fn key_schedule(seed: u64) -> [[u32; 2]; PHILOX_ROUNDS] {
    let mut keys = [[0u32; 2]; PHILOX_ROUNDS];
    let mut key = [seed as u32, (seed >> 32) as u32];
    for round_key in keys.iter_mut() {
        *round_key = key;
        key = [
            key[0].wrapping_add(PHILOX_W0),
            key[1].wrapping_add(PHILOX_W1),
        ];
    }
    keys
}

/// The first two output words of Philox 4x32-10 for counter `[offset, 0, index, 0]`.
fn philox_pair(offset: u32, index: u32, keys: &[[u32; 2]; PHILOX_ROUNDS]) -> [u32; 2] {
    let mut c = [offset, 0, index, 0];
    for key in keys {
        c = philox_round(c, *key);
    }
    [c[0], c[1]]
}

/// One Philox 4x32 round.
fn philox_round(c: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let p0 = u64::from(c[0]) * u64::from(PHILOX_M0);
    let p1 = u64::from(c[2]) * u64::from(PHILOX_M1);
    [
        (p1 >> 32) as u32 ^ c[1] ^ key[0],
        p1 as u32,
        (p0 >> 32) as u32 ^ c[3] ^ key[1],
        p0 as u32,
    ]
}

/// The first Box-Muller value for the words `x`, `y`, in A1111's precision and order.
fn box_muller(x: u32, y: u32) -> f32 {
    // u lies in [2^-33, 1 - 2^-33]: the logarithm is finite and negative.
    let u = f64::from(x) * U_SCALE + U_OFFSET;
    let v = f64::from(y) * V_SCALE + V_OFFSET;
    let radius = (-2.0 * u.ln()).sqrt();
    (radius * v.sin()) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURE: &str = include_str!("../../../../tests/fixtures/noise/philox.json");

    fn fixture() -> serde_json::Value {
        serde_json::from_str(FIXTURE).expect("philox.json parses")
    }

    fn u64_of(v: &serde_json::Value) -> u64 {
        v.as_u64().expect("an unsigned integer")
    }

    fn shape_len(v: &serde_json::Value) -> usize {
        let dims = v.as_array().expect("a shape array");
        dims.iter().map(|d| u64_of(d) as usize).product()
    }

    fn bits_of(v: &serde_json::Value) -> Vec<u32> {
        let items = v.as_array().expect("an array of bit patterns");
        items.iter().map(|b| u64_of(b) as u32).collect()
    }

    fn to_bits(values: &[f32]) -> Vec<u32> {
        values.iter().map(|v| v.to_bits()).collect()
    }

    /// FNV-1a (64-bit) over the little-endian bytes of the float32 values.
    fn fnv1a64(values: &[f32]) -> u64 {
        let mut hash = 0xcbf2_9ce4_8422_2325u64;
        for byte in values.iter().flat_map(|v| v.to_le_bytes()) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        hash
    }

    /// Checks one stored draw: every value, or the head, the tail and the summary.
    fn check_draw(label: &str, got: &[f32], want: &serde_json::Value) {
        if let Some(bits) = want.get("bits") {
            assert_eq!(to_bits(got), bits_of(bits), "{label}: values");
            return;
        }
        let head = bits_of(&want["head_bits"]);
        let tail = bits_of(&want["tail_bits"]);
        assert_eq!(to_bits(&got[..head.len()]), head, "{label}: first values");
        assert_eq!(
            to_bits(&got[got.len() - tail.len()..]),
            tail,
            "{label}: last values"
        );
        let hash = u64::from_str_radix(want["fnv1a64"].as_str().expect("a hex string"), 16);
        assert_eq!(Ok(fnv1a64(got)), hash, "{label}: checksum of all values");
        // The reference sum adds the values one by one in f64, as this does; it is stored as bits
        // because a decimal reader need not round to the same last bit.
        let n = got.len() as f64;
        let sum: f64 = got.iter().map(|&v| f64::from(v)).sum();
        let want_sum = u64::from_str_radix(want["sum_bits"].as_str().expect("a hex string"), 16);
        assert_eq!(Ok(sum.to_bits()), want_sum, "{label}: sum");
        let mean = sum / n;
        let var = got
            .iter()
            .map(|&v| (f64::from(v) - mean).powi(2))
            .sum::<f64>()
            / n;
        let want_mean = want["mean"].as_f64().expect("a mean");
        let want_std = want["std"].as_f64().expect("a std");
        assert!((mean - want_mean).abs() < 1e-12, "{label}: mean");
        assert!((var.sqrt() - want_std).abs() < 1e-12, "{label}: std");
    }

    #[test]
    fn constants_are_a1111s_float32_roundings() {
        assert_eq!(U_SCALE, f64::from(2.3283064e-10_f64 as f32));
        assert_eq!(U_OFFSET, U_SCALE / 2.0);
        assert_eq!(
            V_SCALE,
            f64::from((2.3283064e-10_f64 * 6.2831855_f64) as f32)
        );
        assert_eq!(V_OFFSET, V_SCALE / 2.0);
    }

    #[test]
    fn docstring_example_of_rng_philox() {
        // rng_philox.py's own example, seed 0, shape 3x4 (printed with 8 digits there).
        let want = [
            -0.924_662_6,
            -0.425_344_15,
            -2.643_845_7,
            0.145_183_88,
            -0.120_866_47,
            -0.579_725_6,
            -0.622_851_2,
            -0.328_387_1,
            -1.074_542_3,
            -0.363_144_07,
            -1.671_050_7,
            2.265_505,
        ];
        let got = PhiloxRng::new(0).randn(12);
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{g} vs {w}");
        }
    }

    #[test]
    fn single_draws_match_a1111_bit_for_bit() {
        let fx = fixture();
        let draws = fx["draws"].as_array().expect("draws");
        assert!(!draws.is_empty());
        for draw in draws {
            let seed = u64_of(&draw["seed"]);
            let n = shape_len(&draw["shape"]);
            let got = PhiloxRng::new(seed).randn(n);
            check_draw(&format!("seed {seed} shape {}", draw["shape"]), &got, draw);
        }
    }

    #[test]
    fn successive_draws_match_a1111_bit_for_bit() {
        let fx = fixture();
        let sequences = fx["sequences"].as_array().expect("sequences");
        assert!(!sequences.is_empty());
        for sequence in sequences {
            let seed = u64_of(&sequence["seed"]);
            let mut rng = PhiloxRng::new(seed);
            for (k, draw) in sequence["draws"]
                .as_array()
                .expect("draws")
                .iter()
                .enumerate()
            {
                assert_eq!(rng.offset() as usize, k);
                let got = rng.randn(shape_len(&draw["shape"]));
                check_draw(&format!("seed {seed} draw {k}"), &got, draw);
            }
        }
    }

    #[test]
    fn fill_and_offsets_agree_with_randn() {
        let mut a = PhiloxRng::new(77);
        let first = a.randn(100);
        let second = a.randn(10);
        assert_eq!(a.offset(), 2);
        let mut out = vec![0.0; 10];
        PhiloxRng::with_offset(77, 1).fill_randn(&mut out);
        assert_eq!(to_bits(&out), to_bits(&second));
        // The values of a draw do not depend on its length.
        assert_eq!(to_bits(&PhiloxRng::new(77).randn(7)), to_bits(&first[..7]));
    }

    #[test]
    fn empty_draw_still_advances() {
        let mut rng = PhiloxRng::new(5);
        assert!(rng.randn(0).is_empty());
        assert_eq!(rng.offset(), 1);
    }

    #[test]
    fn offset_wraps_instead_of_overflowing() {
        let mut rng = PhiloxRng::with_offset(1, u32::MAX);
        let _ = rng.randn(1);
        assert_eq!(rng.offset(), 0);
    }

    #[test]
    fn standard_normal_over_a_million_values() {
        let values = PhiloxRng::new(2024).randn(1_000_000);
        let n = values.len() as f64;
        let mean = values.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
        let var = values
            .iter()
            .map(|&v| (f64::from(v) - mean).powi(2))
            .sum::<f64>()
            / n;
        assert!(mean.abs() < 0.005, "mean {mean}");
        assert!((var.sqrt() - 1.0).abs() < 0.005, "std {}", var.sqrt());
        assert!(values.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn seeds_and_offsets_give_different_noise() {
        let a = PhiloxRng::new(1).randn(64);
        let b = PhiloxRng::new(2).randn(64);
        let c = PhiloxRng::new(1 + (1 << 32)).randn(64);
        let d = PhiloxRng::with_offset(1, 1).randn(64);
        for other in [&b, &c, &d] {
            let same = a.iter().zip(other.iter()).filter(|(x, y)| x == y).count();
            assert_eq!(same, 0);
        }
    }
}
