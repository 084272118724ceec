//! Sumi's torch-compatible noise against values written by PyTorch itself
//! (`tests/fixtures/make_noise_fixtures.py`); every value must match bit for bit.

use std::collections::BTreeMap;
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use safetensors::{Dtype, SafeTensors};
use sumi_engine::noise::torch_cpu::TorchCpuRng;
use sumi_engine::noise::NoiseSource;
use sumi_engine::sampling::StepNoise;

/// One reference tensor: seed, shape, index within a run of draws (if any) and the values.
struct Reference {
    name: String,
    seed: u64,
    shape: Vec<usize>,
    call: Option<usize>,
    values: Vec<f32>,
}

fn load_references() -> Vec<Reference> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/noise/reference.safetensors");
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let mut refs: Vec<Reference> = file
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            assert_eq!(view.dtype(), Dtype::F32, "{name}");
            let values = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                .collect();
            let mut parts = name.split('.');
            let seed = parts.next().unwrap().strip_prefix("seed").unwrap();
            let dims = parts.next().unwrap().strip_prefix("shape").unwrap();
            let call = parts
                .next()
                .map(|c| c.strip_prefix("call").unwrap().parse().unwrap());
            let shape: Vec<usize> = dims.split('x').map(|d| d.parse().unwrap()).collect();
            assert_eq!(shape, view.shape(), "{name}");
            Reference {
                seed: seed.parse().unwrap(),
                shape,
                call,
                values,
                name,
            }
        })
        .collect();
    refs.sort_by_key(|r| (r.seed, r.call, r.name.clone()));
    refs
}

fn assert_bitwise_equal(name: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{name}: length");
    let diffs: Vec<usize> = (0..got.len())
        .filter(|&i| got[i].to_bits() != want[i].to_bits())
        .collect();
    assert!(
        diffs.is_empty(),
        "{name}: {} of {} values differ, first at {}: got {} want {}",
        diffs.len(),
        got.len(),
        diffs[0],
        got[diffs[0]],
        want[diffs[0]]
    );
}

#[test]
fn single_draws_match_torch_bitwise() {
    let refs = load_references();
    let singles: Vec<&Reference> = refs.iter().filter(|r| r.call.is_none()).collect();
    assert!(
        singles.len() >= 50,
        "fixture has only {} single draws",
        singles.len()
    );
    for r in singles {
        let got = TorchCpuRng::new(r.seed).randn(r.shape.iter().product());
        assert_bitwise_equal(&r.name, &got, &r.values);
    }
}

#[test]
fn consecutive_draws_match_torch_bitwise() {
    let refs = load_references();
    let mut runs: BTreeMap<u64, Vec<&Reference>> = BTreeMap::new();
    for r in refs.iter().filter(|r| r.call.is_some()) {
        runs.entry(r.seed).or_default().push(r);
    }
    assert!(runs.len() >= 5, "fixture has only {} runs", runs.len());
    for draws in runs.values() {
        let mut rng = TorchCpuRng::new(draws[0].seed);
        for (k, r) in draws.iter().enumerate() {
            assert_eq!(
                r.call,
                Some(k),
                "{}: runs must be numbered 0, 1, 2...",
                r.name
            );
            let got = rng.randn(r.shape.iter().product());
            assert_bitwise_equal(&r.name, &got, &r.values);
        }
    }
}

#[test]
fn seeded_noise_tensors_match_torch_bitwise() -> sumi_engine::Result<()> {
    let refs = load_references();
    let run: Vec<&Reference> = refs
        .iter()
        .filter(|r| r.seed == 1_234_567_890 && r.call.is_some())
        .collect();
    assert_eq!(run.len(), 3);
    let mut noise = NoiseSource::TorchCpu.seeded(run[0].seed);
    let mut x = noise.initial_latent(&run[0].shape, &Device::Cpu, DType::F32)?;
    let mut draws = vec![x.clone()];
    for _ in 1..run.len() {
        x = noise.sample(&x, 1.0, 0.5)?;
        draws.push(x.clone());
    }
    for (t, r) in draws.iter().zip(&run) {
        assert_eq!(t.dims(), &r.shape[..], "{}", r.name);
        let want = Tensor::from_vec(r.values.clone(), &r.shape[..], &Device::Cpu)?;
        assert_bitwise_equal(
            &r.name,
            &t.flatten_all()?.to_vec1()?,
            &want.flatten_all()?.to_vec1()?,
        );
    }
    Ok(())
}
