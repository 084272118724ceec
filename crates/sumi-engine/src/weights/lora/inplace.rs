//! `W += U` into a weight's own storage on the CPU: the sum in f32, rounded once to the
//! weight's type, on all cores, with no weight-sized buffer. Every value is checked before any
//! is written, so a sum that is not finite (or too large for f16) leaves the weight as it was.

use candle_core::{CpuStorage, InplaceOp2, Layout, Result, Tensor};
use half::{bf16, f16};
use rayon::prelude::*;

const CHUNK: usize = 1 << 16;

struct AddF32;

fn slices<'a, T, U>(
    w: &'a mut [T],
    lw: &Layout,
    u: &'a [U],
    lu: &Layout,
) -> Result<(&'a mut [T], &'a [U])> {
    let (Some((a, b)), Some((c, d))) = (lw.contiguous_offsets(), lu.contiguous_offsets()) else {
        candle_core::bail!("in-place LoRA add needs contiguous tensors");
    };
    if b - a != d - c {
        candle_core::bail!("in-place LoRA add: {} values into {}", d - c, b - a);
    }
    Ok((&mut w[a..b], &u[c..d]))
}

fn add<T: Copy + Send + Sync>(
    w: &mut [T],
    u: &[f32],
    to: impl Fn(f32) -> T + Sync,
    from: impl Fn(T) -> f32 + Sync,
    limit: f32,
) -> Result<()> {
    let ok = w
        .par_chunks(CHUNK)
        .zip(u.par_chunks(CHUNK))
        .all(|(w, u)| w.iter().zip(u).all(|(&a, &b)| (from(a) + b).abs() <= limit));
    if !ok {
        candle_core::bail!("not finite");
    }
    w.par_chunks_mut(CHUNK)
        .zip(u.par_chunks(CHUNK))
        .for_each(|(w, u)| {
            w.iter_mut()
                .zip(u)
                .for_each(|(a, &b)| *a = to(from(*a) + b))
        });
    Ok(())
}

impl InplaceOp2 for AddF32 {
    fn name(&self) -> &'static str {
        "lora-add-f32"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<()> {
        let CpuStorage::F32(u) = s2 else {
            candle_core::bail!("in-place LoRA add: the update must be f32");
        };
        match s1 {
            CpuStorage::F32(w) => {
                let (w, u) = slices(w, l1, u, l2)?;
                add(w, u, |x| x, |x| x, f32::MAX)
            }
            CpuStorage::F16(w) => {
                let (w, u) = slices(w, l1, u, l2)?;
                add(w, u, f16::from_f32, f16::to_f32, 65504.0)
            }
            CpuStorage::BF16(w) => {
                let (w, u) = slices(w, l1, u, l2)?;
                add(w, u, bf16::from_f32, bf16::to_f32, f32::MAX)
            }
            _ => candle_core::bail!("in-place LoRA add: unsupported weight type"),
        }
    }
}

/// Adds `update` (f32, same number of values) into `weight` in place when both live on the
/// CPU: `Ok(true)` when done, `Ok(false)` when the sum would not be finite (nothing written),
/// `Err` on other devices or layouts (the caller takes the general path).
pub fn add_into(weight: &Tensor, update: &Tensor) -> Result<bool> {
    if !weight.device().is_cpu() {
        candle_core::bail!("in-place LoRA add runs on the CPU only");
    }
    match weight.inplace_op2(update, &AddF32) {
        Ok(()) => Ok(true),
        Err(e) if e.to_string().contains("not finite") => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    #[test]
    fn adds_in_place_and_refuses_overflow() {
        let w = Tensor::new(&[1f32, 2., 3., 4.], &Device::Cpu).unwrap();
        let view = w.narrow(0, 2, 2).unwrap();
        let u = Tensor::new(&[0.5f32, -1.], &Device::Cpu).unwrap();
        assert!(add_into(&view, &u).unwrap());
        assert_eq!(w.to_vec1::<f32>().unwrap(), vec![1., 2., 3.5, 3.]);
        let h = w.to_dtype(DType::F16).unwrap();
        let big = Tensor::new(&[7e4f32, 0., 0., 0.], &Device::Cpu).unwrap();
        assert!(!add_into(&h, &big).unwrap());
        let back: Vec<f32> = h.to_dtype(DType::F32).unwrap().to_vec1().unwrap();
        assert_eq!(back, vec![1., 2., 3.5, 3.]);
    }
}
