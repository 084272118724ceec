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
use philox::PhiloxRng;
use torch_cpu::TorchCpuRng;

/// Where a request's noise comes from: the generator of the starting noise and of the fresh noise
/// ancestral samplers draw at each step.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, TS)]
pub enum NoiseSource {
    /// PyTorch's CPU generator for the start and every step: diffusers, and A1111's "CPU" RNG.
    #[default]
    #[serde(rename = "cpu")]
    TorchCpu,
    /// A1111's "NV" RNG (its emulation of `torch.randn` on an NVIDIA GPU) for the start and every
    /// step; what A1111's default "GPU" RNG draws on NVIDIA hardware.
    #[serde(rename = "nv")]
    Nv,
    /// ComfyUI on the CPU: the start from PyTorch's CPU generator, each step's noise from a fresh
    /// CPU generator seeded with the seed.
    #[serde(rename = "comfy-cpu")]
    ComfyCpu,
    /// ComfyUI on an NVIDIA GPU: the start from PyTorch's CPU generator, each step's noise from a
    /// fresh GPU generator seeded with the seed (emulated as A1111's "NV" does).
    #[serde(rename = "comfy-nv")]
    ComfyNv,
}

impl NoiseSource {
    /// Every source, in the order a UI lists them.
    pub const ALL: [NoiseSource; 4] = [
        NoiseSource::TorchCpu,
        NoiseSource::Nv,
        NoiseSource::ComfyCpu,
        NoiseSource::ComfyNv,
    ];

    /// The short name used in requests, configs and the CLI.
    pub fn name(self) -> &'static str {
        match self {
            NoiseSource::TorchCpu => "cpu",
            NoiseSource::Nv => "nv",
            NoiseSource::ComfyCpu => "comfy-cpu",
            NoiseSource::ComfyNv => "comfy-nv",
        }
    }

    /// The name a user sees.
    pub fn display_name(self) -> &'static str {
        match self {
            NoiseSource::TorchCpu => "CPU (torch-compatible)",
            NoiseSource::Nv => "NV (A1111's NVIDIA GPU noise)",
            NoiseSource::ComfyCpu => "ComfyUI on the CPU",
            NoiseSource::ComfyNv => "ComfyUI on an NVIDIA GPU",
        }
    }

    /// The generator of the starting noise for `seed`.
    fn start(self, seed: u64) -> Generator {
        match self {
            NoiseSource::Nv => Generator::Nv(PhiloxRng::new(seed)),
            _ => Generator::Torch(Box::new(TorchCpuRng::new(seed))),
        }
    }

    /// A fresh noise stream for `seed`, ready for the initial latent and then the steps, without
    /// variation seed or ENSD.
    pub fn seeded(self, seed: u64) -> SeededNoise {
        NoiseSpec {
            source: self,
            seed,
            ensd: 0,
            variation: None,
        }
        .stream()
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

/// A variation seed: the starting noise is A1111's slerp from the seed's noise towards this
/// seed's by `strength` (0 = the seed's noise, 1 = this seed's).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Variation {
    /// The variation seed (A1111's subseed).
    pub seed: u64,
    /// How far towards its noise, 0 to 1.
    pub strength: f64,
}

/// Everything that decides a run's noise.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NoiseSpec {
    /// The generators.
    pub source: NoiseSource,
    /// The seed.
    pub seed: u64,
    /// A1111's eta noise seed delta: when non-zero the step noise comes from a generator seeded
    /// with `seed + ensd` once the starting noise is drawn.
    pub ensd: u64,
    /// A variation seed, when its strength is not 0.
    pub variation: Option<Variation>,
}

impl NoiseSpec {
    /// The noise stream of a run: its starting latent first, then the steps.
    pub fn stream(&self) -> SeededNoise {
        SeededNoise {
            spec: *self,
            rng: self.source.start(self.seed),
        }
    }
}

/// One generator, as a source draws it.
#[derive(Clone)]
enum Generator {
    /// Boxed: its state (mt19937) is 2.5 KB, the other's a few words.
    Torch(Box<TorchCpuRng>),
    Nv(PhiloxRng),
}

impl Generator {
    fn randn(&mut self, n: usize) -> Vec<f32> {
        match self {
            Generator::Torch(g) => g.randn(n),
            Generator::Nv(g) => g.randn(n),
        }
    }
}

/// One run's noise: the initial latent first, then one draw per sampler step. Noise is made as
/// f32 on the CPU and then cast and moved, so every device gets the same values.
#[derive(Clone)]
pub struct SeededNoise {
    spec: NoiseSpec,
    rng: Generator,
}

impl SeededNoise {
    /// The starting latent (unit variance; the caller scales it by the first sigma): the seed's
    /// noise, slerped towards the variation seed's when there is one. Afterwards the generator
    /// moves on as A1111's `ImageRNG` (or ComfyUI) has it.
    pub fn initial_latent(
        &mut self,
        shape: &[usize],
        device: &Device,
        dtype: DType,
    ) -> Result<Tensor> {
        let n = shape.iter().product();
        let mut values = self.rng.randn(n);
        if let Some(v) = self.spec.variation.filter(|v| v.strength != 0.0) {
            let other = self.spec.source.start(v.seed).randn(n);
            let dims = slerp_shape(shape)?;
            values = variation::slerp(v.strength, &values, &other, dims)
                .map_err(|e| Error::InvalidRequest(format!("variation seed: {e}")))?;
        }
        let spec = self.spec;
        self.rng = match spec.source {
            // ComfyUI draws each step's noise from a fresh generator seeded with the seed.
            NoiseSource::ComfyCpu => Generator::Torch(Box::new(TorchCpuRng::new(spec.seed))),
            NoiseSource::ComfyNv => Generator::Nv(PhiloxRng::new(spec.seed)),
            _ if spec.ensd != 0 => {
                let seed = spec.seed.checked_add(spec.ensd).ok_or_else(|| {
                    Error::InvalidRequest(format!(
                        "seed {} + ENSD {} is past the largest seed; use a smaller ENSD",
                        spec.seed, spec.ensd
                    ))
                })?;
                spec.source.start(seed)
            }
            _ => self.rng.clone(),
        };
        to_tensor(values, shape, device, dtype)
    }
}

/// The `[C, H, W]` of a latent shape `[1, C, H, W]` (or `[C, H, W]`), as A1111 slerps it.
fn slerp_shape(shape: &[usize]) -> Result<[usize; 3]> {
    match shape {
        [1, c, h, w] | [c, h, w] => Ok([*c, *h, *w]),
        _ => Err(Error::InvalidRequest(format!(
            "a variation seed needs one image's latent, not shape {shape:?}"
        ))),
    }
}

fn to_tensor(values: Vec<f32>, shape: &[usize], device: &Device, dtype: DType) -> Result<Tensor> {
    let noise = Tensor::from_vec(values, shape, &Device::Cpu)?.to_dtype(dtype)?;
    Ok(noise.to_device(device)?)
}

impl StepNoise for SeededNoise {
    fn sample(&mut self, like: &Tensor, _sigma: f64, _sigma_next: f64) -> Result<Tensor> {
        let values = self.rng.randn(like.elem_count());
        to_tensor(values, like.dims(), like.device(), like.dtype())
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
        assert_eq!("NV".parse::<NoiseSource>().unwrap(), NoiseSource::Nv);
        assert_eq!(
            serde_json::to_string(&NoiseSource::ComfyNv).unwrap(),
            "\"comfy-nv\""
        );
        assert_eq!(NoiseSource::TorchCpu.to_string(), "CPU (torch-compatible)");
    }

    fn draws(spec: NoiseSpec, steps: usize) -> Vec<Vec<f32>> {
        let mut noise = spec.stream();
        let x = noise
            .initial_latent(&[1, 4, 4, 4], &Device::Cpu, DType::F32)
            .unwrap();
        let mut out = vec![x.flatten_all().unwrap().to_vec1().unwrap()];
        for _ in 0..steps {
            let s = noise.sample(&x, 1.0, 0.5).unwrap();
            out.push(s.flatten_all().unwrap().to_vec1().unwrap());
        }
        out
    }

    fn spec(source: NoiseSource) -> NoiseSpec {
        NoiseSpec {
            source,
            seed: 42,
            ensd: 0,
            variation: None,
        }
    }

    #[test]
    fn each_source_draws_the_start_and_steps_from_its_generators() {
        let (mut torch, mut nv) = (TorchCpuRng::new(42), PhiloxRng::new(42));
        let t: Vec<Vec<f32>> = (0..3).map(|_| torch.randn(64)).collect();
        let p: Vec<Vec<f32>> = (0..3).map(|_| nv.randn(64)).collect();
        assert_eq!(draws(spec(NoiseSource::TorchCpu), 2), t);
        assert_eq!(draws(spec(NoiseSource::Nv), 2), p);
        // ComfyUI: steps from a fresh generator seeded with the seed.
        assert_eq!(
            draws(spec(NoiseSource::ComfyCpu), 2),
            vec![t[0].clone(), t[0].clone(), t[1].clone()]
        );
        assert_eq!(
            draws(spec(NoiseSource::ComfyNv), 2),
            vec![t[0].clone(), p[0].clone(), p[1].clone()]
        );
    }

    #[test]
    fn ensd_reseeds_the_steps_and_a_variation_moves_the_start() {
        let mut s = spec(NoiseSource::Nv);
        s.ensd = 31337;
        let mut after = PhiloxRng::new(42 + 31337);
        let got = draws(s, 2);
        assert_eq!(got[0], PhiloxRng::new(42).randn(64));
        assert_eq!(got[1], after.randn(64));
        assert_eq!(got[2], after.randn(64));

        let mut v = spec(NoiseSource::TorchCpu);
        v.variation = Some(Variation {
            seed: 7,
            strength: 1.0,
        });
        let full = draws(v, 1);
        let other = TorchCpuRng::new(7).randn(64);
        let close = full[0]
            .iter()
            .zip(&other)
            .all(|(a, b)| (a - b).abs() < 1e-5);
        assert!(close, "strength 1 is the variation seed's noise");
        let mut own = TorchCpuRng::new(42);
        own.randn(64);
        assert_eq!(
            full[1],
            own.randn(64),
            "the steps go on from the seed's generator"
        );
        let mut big = spec(NoiseSource::TorchCpu);
        (big.seed, big.ensd) = (u64::MAX, 1);
        assert!(big
            .stream()
            .initial_latent(&[1, 4, 4, 4], &Device::Cpu, DType::F32)
            .is_err());
    }
}
