//! Fast scalar math the kernels vectorise well.

/// `e^x` for `x <= 0` to about 2 ulp (inputs below -87 give about 0): 2^(x log2 e) split into
/// an integer power set in the exponent bits and a degree-6 polynomial in `f = x - n ln 2`.
#[inline(always)]
pub(crate) fn fast_exp(x: f32) -> f32 {
    let x = x.max(-87.0);
    let t = x * std::f32::consts::LOG2_E;
    // Round to nearest with the 1.5 * 2^23 trick (vectorises, unlike f32::round); the integer
    // then sits in the low mantissa bits of `r`, so no float-to-int conversion is needed.
    let r = t + 12_582_912.0;
    let n = r - 12_582_912.0;
    let ni = (r.to_bits() as i32).wrapping_sub(0x4B40_0000);
    // x - n ln2 with ln2 split in two parts (Cody-Waite) so large |x| keep their precision.
    let f = (x - n * 0.693_359_4) + n * 2.121_944_4e-4;
    // Taylor series of e^f for |f| <= ln2/2 to degree 6 (truncation error 1.2e-7), Horner form
    // with fused multiply-adds (the callers are compiled with FMA where the CPU has it).
    let p = f.mul_add(1.0 / 720.0, 1.0 / 120.0);
    let p = f.mul_add(p, 1.0 / 24.0);
    let p = f.mul_add(p, 1.0 / 6.0);
    let p = f.mul_add(p, 0.5);
    let p = f.mul_add(p, 1.0);
    let p = f.mul_add(p, 1.0);
    let bits = (ni.wrapping_add(127) as u32) << 23;
    p * f32::from_bits(bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_exp_is_accurate() {
        let mut worst = 0f32;
        for i in 0..=20000 {
            let x = -87.0 * i as f32 / 20000.0;
            let (got, want) = (fast_exp(x), x.exp());
            worst = worst.max(((got - want) / want).abs());
        }
        assert!(worst < 1e-6, "worst relative error {worst}");
        assert!(fast_exp(-200.0) < 1e-37);
    }
}
