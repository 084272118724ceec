//! PyTorch's CPU random generator, reproduced bit for bit.
//!
//! Why torch compatibility matters: a seed only means something if it gives the same starting
//! noise everywhere. diffusers, ComfyUI and A1111 (with its default "CPU" RNG) all draw their
//! latents and ancestral-sampler noise from PyTorch's CPU generator, so matching that generator
//! bit for bit lets a seed from any of them reproduce the same image here, and the reverse.
//!
//! What torch does for `g = torch.Generator("cpu").manual_seed(s); torch.randn(shape, generator=g)`
//! (float32), as reproduced by [`TorchCpuRng`]:
//! * The generator is a 32-bit Mersenne Twister (mt19937). `manual_seed` accepts any Python int
//!   in `-2**63..2**64` (negatives are taken as their two's-complement `u64`), but the twister is
//!   seeded with the **low 32 bits** only: seeds `7` and `2**32 + 7` give the same noise.
//!   Reseeding also drops the cached normal sample (see below).
//! * Fewer than 16 elements: each element is a `double` Box-Muller sample from two 53-bit uniforms
//!   (each made of two 32-bit draws, first one high). Box-Muller gives two values; the second is
//!   cached in the generator and returned by the next small draw, even in a later `randn` call.
//! * 16 elements or more: all elements are first filled with 24-bit float uniforms, then every
//!   block of 16 is turned into normals in place by a float Box-Muller over the pairs
//!   `(j, j + 8)`. If the count is not a multiple of 16, 16 fresh uniforms are drawn for the
//!   last 16 slots and that block is redone. This path neither reads nor writes the cache.
//!   On x86-64 torch runs this block with AVX2 and Cephes-style polynomial `log`/`sincos`
//!   (its `avx_mathfun.h`), compiled with fused multiply-adds; [`box_muller_16`] evaluates the
//!   same polynomials with the same roundings. (Builds without AVX2, e.g. ARM, use libm instead
//!   and differ from x86 torch in the last bits.)

const MT_N: usize = 624;
const MT_M: usize = 397;

/// PyTorch's CPU random generator: mt19937 plus the cached second Box-Muller sample.
#[derive(Clone)]
pub struct TorchCpuRng {
    state: [u32; MT_N],
    next: usize,
    cached_normal: Option<f64>,
}

impl TorchCpuRng {
    /// A generator in the state `torch.Generator("cpu").manual_seed(seed)` leaves it in.
    pub fn new(seed: u64) -> Self {
        let mut state = [0u32; MT_N];
        // Only the low 32 bits seed the twister, as in torch.
        state[0] = seed as u32;
        for i in 1..MT_N {
            let prev = state[i - 1];
            state[i] = 1_812_433_253u32
                .wrapping_mul(prev ^ (prev >> 30))
                .wrapping_add(i as u32);
        }
        Self {
            state,
            next: MT_N,
            cached_normal: None,
        }
    }

    /// `torch.randn(shape, generator=g)` for any shape with `n` elements, in row-major order;
    /// continues the generator's stream.
    pub fn randn(&mut self, n: usize) -> Vec<f32> {
        if n < 16 {
            return (0..n).map(|_| self.normal_f64() as f32).collect();
        }
        let mut out: Vec<f32> = (0..n).map(|_| self.uniform_f32()).collect();
        for block in out.chunks_exact_mut(16) {
            box_muller_16(block);
        }
        if !n.is_multiple_of(16) {
            let tail = &mut out[n - 16..];
            for v in tail.iter_mut() {
                *v = self.uniform_f32();
            }
            box_muller_16(tail);
        }
        out
    }

    fn next_u32(&mut self) -> u32 {
        if self.next == MT_N {
            self.twist();
        }
        let mut y = self.state[self.next];
        self.next += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    fn twist(&mut self) {
        for i in 0..MT_N {
            let y = (self.state[i] & 0x8000_0000) | (self.state[(i + 1) % MT_N] & 0x7fff_ffff);
            let mag = if y & 1 == 1 { 0x9908_b0df } else { 0 };
            self.state[i] = self.state[(i + MT_M) % MT_N] ^ (y >> 1) ^ mag;
        }
        self.next = 0;
    }

    /// Uniform in [0, 1) from the low 24 bits of one draw.
    fn uniform_f32(&mut self) -> f32 {
        (self.next_u32() & 0x00ff_ffff) as f32 * (1.0 / (1u32 << 24) as f32)
    }

    /// Uniform in [0, 1) from the low 53 bits of two draws (the first is the high word).
    fn uniform_f64(&mut self) -> f64 {
        let hi = u64::from(self.next_u32());
        let lo = u64::from(self.next_u32());
        (((hi << 32) | lo) & ((1u64 << 53) - 1)) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// One standard normal sample in double precision, using and refilling the cache.
    fn normal_f64(&mut self) -> f64 {
        if let Some(v) = self.cached_normal.take() {
            return v;
        }
        let u1 = self.uniform_f64();
        let u2 = self.uniform_f64();
        let radius = (-2.0 * (-u2).ln_1p()).sqrt();
        let theta = 2.0 * std::f64::consts::PI * u1;
        self.cached_normal = Some(radius * theta.sin());
        radius * theta.cos()
    }
}

/// Turns 16 uniforms into 16 normals in place: `(1 - u[j], u[j + 8])` is one Box-Muller pair
/// whose cosine goes to slot `j` and sine to slot `j + 8`. Every multiply-add here is fused
/// exactly where torch's compiled AVX2 kernel fuses it.
fn box_muller_16(block: &mut [f32]) {
    let two_pi = (2.0 * std::f64::consts::PI) as f32;
    for j in 0..8 {
        let radius = (-2.0 * cephes_log(1.0 - block[j])).sqrt();
        let (sin, cos) = cephes_sincos(two_pi * block[j + 8]);
        // torch adds the mean (0) last, which also turns -0.0 into 0.0.
        block[j] = radius * cos + 0.0;
        block[j + 8] = radius * sin + 0.0;
    }
}

/// Cephes single-precision natural log, for `x` in (0, 1].
fn cephes_log(x: f32) -> f32 {
    const P: [f32; 9] = [
        7.037_683_6e-2,
        -1.151_461e-1,
        1.167_699_84e-1,
        -1.242_014_1e-1,
        1.424_932_3e-1,
        -1.666_805_8e-1,
        2.000_071_4e-1,
        -2.499_999_4e-1,
        3.333_333e-1,
    ];
    const Q1: f32 = -2.121_944_4e-4;
    const Q2: f32 = 0.693_359_4;
    // Split into mantissa m in [0.5, 1) and exponent e.
    let bits = x.to_bits();
    let mut e = ((bits >> 23) as i32 - 127) as f32 + 1.0;
    let m = f32::from_bits((bits & !0x7f80_0000) | 0.5f32.to_bits());
    let m = if m < std::f32::consts::FRAC_1_SQRT_2 {
        e -= 1.0;
        m + m - 1.0
    } else {
        m - 1.0
    };
    let z = m * m;
    let mut y = P[0];
    for p in &P[1..] {
        y = y.mul_add(m, *p);
    }
    y *= m;
    let y = y.mul_add(z, e * Q1) - z * 0.5;
    (m + y) + e * Q2
}

/// Cephes single-precision sine and cosine, for `x` in [0, 2*pi].
fn cephes_sincos(x: f32) -> (f32, f32) {
    const FOUR_OVER_PI: f32 = 1.273_239_5;
    const DP: [f32; 3] = [-0.785_156_25, -2.418_756_5e-4, -3.774_895e-8];
    let negative = x.is_sign_negative();
    let x = x.abs();
    // Octant, rounded up to even.
    let j = (((x * FOUR_OVER_PI) as i32) + 1) & !1;
    let y = j as f32;
    // Extended-precision reduction to [-pi/4, pi/4].
    let r = DP.iter().fold(x, |r, dp| y.mul_add(*dp, r));
    let z = r * r;

    let mut c = 2.443_315_7e-5f32.mul_add(z, -1.388_731_6e-3);
    c = c.mul_add(z, 4.166_664_6e-2);
    c *= z;
    let c = c.mul_add(z, -(z * 0.5)) + 1.0;

    let mut s = (-1.951_529_6e-4f32).mul_add(z, 8.332_161e-3);
    s = s.mul_add(z, -1.666_665_5e-1);
    s *= z;
    let s = s.mul_add(r, r);

    let (sin, cos) = if j & 2 == 0 { (s, c) } else { (c, s) };
    let sin_negative = negative ^ (j & 4 != 0);
    let cos_negative = !(j - 2) & 4 != 0;
    (
        if sin_negative { -sin } else { sin },
        if cos_negative { -cos } else { cos },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mersenne_twister_matches_reference_sequence() {
        // The C++ standard requires the 10000th output of mt19937 seeded with 5489 to be this.
        let mut rng = TorchCpuRng::new(5489);
        let last = (0..10_000).map(|_| rng.next_u32()).last().unwrap();
        assert_eq!(last, 4_123_659_995);
    }

    #[test]
    fn same_seed_same_noise_and_stream_continues() {
        let mut a = TorchCpuRng::new(123);
        let mut b = TorchCpuRng::new(123);
        let (a1, a2) = (a.randn(100), a.randn(100));
        assert_eq!(a1, b.randn(100));
        assert_eq!(a2, b.randn(100));
        assert_ne!(a1, a2);
        assert_ne!(a1, TorchCpuRng::new(124).randn(100));
    }

    #[test]
    fn seeds_use_only_the_low_32_bits() {
        let low = TorchCpuRng::new(7).randn(40);
        assert_eq!(TorchCpuRng::new((1 << 32) + 7).randn(40), low);
        assert_eq!(
            TorchCpuRng::new(u64::MAX).randn(40),
            TorchCpuRng::new(u32::MAX.into()).randn(40)
        );
    }

    #[test]
    fn small_draws_use_the_cached_sample() {
        // randn(1) twice gives the cosine and then the cached sine of one Box-Muller pair.
        let mut split = TorchCpuRng::new(9);
        let (first, second) = (split.randn(1), split.randn(1));
        assert_eq!([first[0], second[0]], TorchCpuRng::new(9).randn(2)[..]);
    }

    #[test]
    fn moments_are_standard_normal() {
        for n in [1_000_000, 1_000_000 + 7] {
            let x = TorchCpuRng::new(2024).randn(n);
            let mean = x.iter().map(|v| f64::from(*v)).sum::<f64>() / n as f64;
            let var = x
                .iter()
                .map(|v| (f64::from(*v) - mean).powi(2))
                .sum::<f64>()
                / n as f64;
            assert!(mean.abs() < 0.005, "mean {mean}");
            assert!((var - 1.0).abs() < 0.005, "variance {var}");
        }
        let mut rng = TorchCpuRng::new(5);
        let small: Vec<f64> = (0..100_000)
            .flat_map(|_| rng.randn(3))
            .map(f64::from)
            .collect();
        let mean = small.iter().sum::<f64>() / small.len() as f64;
        let var = small.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / small.len() as f64;
        assert!(
            mean.abs() < 0.01 && (var - 1.0).abs() < 0.02,
            "{mean} {var}"
        );
    }

    #[test]
    fn cephes_functions_are_accurate() {
        for i in 1..=1000 {
            let x = i as f32 / 1000.0;
            assert!((cephes_log(x) - x.ln()).abs() < 1e-6, "log {x}");
            let t = x * std::f32::consts::TAU;
            let (s, c) = cephes_sincos(t);
            assert!(
                (s - t.sin()).abs() < 1e-6 && (c - t.cos()).abs() < 1e-6,
                "sincos {t}"
            );
        }
    }
}
