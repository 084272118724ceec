//! Seeded noise sources: the starting noise of a run and the fresh noise ancestral samplers draw
//! at each step.

pub mod philox;
pub mod torch_cpu;
pub mod variation;

use std::fmt;
use std::str::FromStr;

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};
use ts_rs::TS;

use crate::sampling::types::StepNoise;
use crate::{Error, Result};
use torch_cpu::TorchCpuRng;

/// Where a request's noise comes from (only torch's CPU generator so far).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, TS)]
pub enum NoiseSource {
    /// PyTorch's CPU generator: the same seed gives the same noise as diffusers and ComfyUI.
    #[default]
    #[serde(rename = "cpu")]
    TorchCpu,
}

impl NoiseSource {
    /// Every source, in the order a UI lists them.
    pub const ALL: [NoiseSource; 1] = [NoiseSource::TorchCpu];

    /// The short name used in requests, configs and the CLI.
    pub fn name(self) -> &'static str {
        match self {
            NoiseSource::TorchCpu => "cpu",
        }
    }

    /// The name a user sees.
    pub fn display_name(self) -> &'static str {
        match self {
            NoiseSource::TorchCpu => "CPU (torch-compatible)",
        }
    }

    /// A fresh noise stream for `seed`, ready for the initial latent and then the steps.
    pub fn seeded(self, seed: u64) -> SeededNoise {
        match self {
            NoiseSource::TorchCpu => SeededNoise {
                rng: TorchCpuRng::new(seed),
            },
        }
    }
}

impl fmt::Display for NoiseSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.display_name())
    }
}

impl FromStr for NoiseSource {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        NoiseSource::ALL
            .into_iter()
            .find(|src| src.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| Error::UnknownName {
                kind: "noise source",
                name: s.to_string(),
                valid: NoiseSource::ALL.map(|src| src.name()).join(", "),
            })
    }
}

/// One run's noise: the initial latent first, then one draw per sampler step, all from one
/// generator. Noise is made as f32 on the CPU and then cast and moved, so every device gets
/// the same values.
#[derive(Clone)]
pub struct SeededNoise {
    rng: TorchCpuRng,
}

impl SeededNoise {
    /// The starting latent (unit variance; the caller scales it by the first sigma).
    pub fn initial_latent(
        &mut self,
        shape: &[usize],
        device: &Device,
        dtype: DType,
    ) -> Result<Tensor> {
        self.draw(shape, device, dtype)
    }

    fn draw(&mut self, shape: &[usize], device: &Device, dtype: DType) -> Result<Tensor> {
        let values = self.rng.randn(shape.iter().product());
        let noise = Tensor::from_vec(values, shape, &Device::Cpu)?.to_dtype(dtype)?;
        Ok(noise.to_device(device)?)
    }
}

impl StepNoise for SeededNoise {
    fn sample(&mut self, like: &Tensor, _sigma: f64, _sigma_next: f64) -> Result<Tensor> {
        self.draw(like.dims(), like.device(), like.dtype())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_noise_shapes_and_continues() -> Result<()> {
        let mut noise = NoiseSource::TorchCpu.seeded(42);
        let x = noise.initial_latent(&[1, 4, 8, 8], &Device::Cpu, DType::F16)?;
        assert_eq!((x.dims(), x.dtype()), (&[1, 4, 8, 8][..], DType::F16));
        let step = noise.sample(&x, 1.0, 0.5)?;
        assert_eq!((step.dims(), step.dtype()), (&[1, 4, 8, 8][..], DType::F16));

        let mut rng = TorchCpuRng::new(42);
        let (first, second) = (rng.randn(256), rng.randn(256));
        let as_f16 = |v: Vec<f32>| Tensor::new(v, &Device::Cpu)?.to_dtype(DType::F16);
        let expect = |t: &Tensor, v| -> Result<()> {
            let diff =
                (t.flatten_all()?.to_dtype(DType::F32)? - as_f16(v)?.to_dtype(DType::F32)?)?;
            assert_eq!(diff.abs()?.max(0)?.to_scalar::<f32>()?, 0.0);
            Ok(())
        };
        expect(&x, first)?;
        expect(&step, second)
    }

    #[test]
    fn source_names() {
        assert_eq!(
            serde_json::to_string(&NoiseSource::TorchCpu).unwrap(),
            "\"cpu\""
        );
        let parsed: NoiseSource = serde_json::from_str("\"cpu\"").unwrap();
        assert_eq!(parsed, NoiseSource::TorchCpu);
        assert_eq!("CPU".parse::<NoiseSource>().unwrap(), NoiseSource::TorchCpu);
        assert!("gpu".parse::<NoiseSource>().is_err());
        assert_eq!(NoiseSource::TorchCpu.to_string(), "CPU (torch-compatible)");
    }
}
