//! Every sampler's full trajectory on the tiny fixture UNets (SD1.5 eps, SD2 v-prediction) with
//! CFG, against k-diffusion's samplers and diffusers' schedulers
//! (`tests/fixtures/sampling/make_unet_fixtures.py`): each step's latent within 1e-3, the same
//! number of model calls and noise draws, and Sumi's schedules giving the reference sigma lists.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use candle_core::{DType, Device, Tensor};
use sumi_engine::arch::network::NetCond;
use sumi_engine::denoiser::{Guidance, ModelDenoiser};
use sumi_engine::sampling::{sampler, schedule, Flow, SampleCtx, StepInfo, StepNoise, SAMPLERS};
use sumi_engine::Model;

const TOLERANCE: f64 = 1e-3;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn vec64(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

fn max_abs(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

/// The reference's noise pool, handed out in order.
struct Replay<'a> {
    pool: &'a Tensor,
    next: usize,
}

impl StepNoise for Replay<'_> {
    fn sample(&mut self, like: &Tensor, _s: f64, _sn: f64) -> sumi_engine::Result<Tensor> {
        let n = self.pool.get(self.next)?.to_dtype(like.dtype())?;
        self.next += 1;
        Ok(n)
    }
}

struct Step {
    x: Vec<f64>,
    denoised: Vec<f64>,
}

#[test]
fn unet_trajectories_match_reference() {
    let dir = fixtures().join("sampling");
    let t = candle_core::safetensors::load(dir.join("unet.safetensors"), &Device::Cpu)
        .expect("run tests/fixtures/sampling/make_unet_fixtures.py");
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("unet.json")).unwrap()).unwrap();
    let cfg = meta["cfg"].as_f64().unwrap();
    let cancel = AtomicBool::new(false);
    let mut models = HashMap::new();
    // (model, sampler) -> (cases, worst max abs error over every step)
    let mut worst = BTreeMap::<(String, String), (usize, f64)>::new();
    let mut failures = Vec::new();
    for (ci, c) in meta["cases"].as_array().unwrap().iter().enumerate() {
        let key = c["model"].as_str().unwrap();
        let id = c["sampler"].as_str().unwrap();
        let what = format!("{key} {id} / {} ({})", c["schedule"], c["source"]);
        let model = models.entry(key.to_string()).or_insert_with(|| {
            Model::load(&fixtures().join(key), &Device::Cpu, DType::F32).expect("fixture model")
        });
        let entry = sampler(id).unwrap();
        let want_sigmas = vec64(&t[&format!("case.{ci}.sigmas")]);
        let sigmas = match c["schedule"].as_str() {
            Some(name) => {
                let got =
                    (schedule(name).unwrap().func)(&model.levels, want_sigmas.len() - 1).unwrap();
                assert_eq!(got.len(), want_sigmas.len(), "{what}: sigmas {got:?}");
                for (g, w) in got.iter().zip(&want_sigmas) {
                    let rel = if *w == 0.0 {
                        g.abs()
                    } else {
                        (g / w - 1.0).abs()
                    };
                    assert!(rel <= 1e-6, "{what}: sigma {g} vs {w}");
                }
                got
            }
            None => want_sigmas,
        };
        let context = &t[&format!("{key}.context")];
        let row = |i: usize| NetCond::CrossAttention {
            context: context.narrow(0, i, 1).unwrap(),
            added: None,
        };
        let guidance = if cfg != 1.0 {
            Guidance {
                cond: row(1),
                uncond: Some((row(0), cfg)),
            }
        } else {
            Guidance {
                cond: row(0),
                uncond: None,
            }
        };
        let denoiser = ModelDenoiser::new(
            model.network.as_ref(),
            &model.levels,
            model.info.prediction,
            guidance,
            DType::F32,
            &cancel,
        )
        .unwrap();
        let x = (&t[&format!("{key}.unit")] * entry.init_noise.scale(sigmas[0])).unwrap();
        let mut noise = Replay {
            pool: &t[&format!("{key}.noise")],
            next: 0,
        };
        let mut steps = Vec::new();
        let mut on_step = |s: &StepInfo| {
            assert_eq!(s.index, steps.len(), "{id}: step index");
            steps.push(Step {
                x: vec64(s.x),
                denoised: vec64(s.denoised),
            });
            Flow::Continue
        };
        let mut ctx = SampleCtx {
            noise: &mut noise,
            on_step: &mut on_step,
        };
        let out = (entry.func)(&denoiser, x, &sigmas, &mut ctx).unwrap();
        // DPM fast picks its own steps within the sigma range; the others take one per sigma.
        let n = if entry.own_steps {
            steps.len()
        } else {
            sigmas.len() - 1
        };
        assert_eq!(steps.len(), n, "{what}: steps reported");
        assert_eq!(vec64(&out), steps[n - 1].x, "{what}: returned latent");
        assert_eq!(
            denoiser.evals() as u64,
            c["model_calls"].as_u64().unwrap(),
            "{what}: model calls"
        );
        assert_eq!(
            noise.next as u64,
            c["noise_draws"].as_u64().unwrap(),
            "{what}: noise draws"
        );
        let want = &t[&format!("case.{ci}.traj")];
        let recorded = want.dim(0).unwrap();
        if c["last_step_is_x0"].as_bool().unwrap() {
            // diffusers' bh1 step to sigma 0 is NaN; the exact limit is the x0 estimate.
            assert_eq!(recorded, n - 1, "{what}");
            assert_eq!(sigmas[n], 0.0, "{what}");
            let err = max_abs(&steps[n - 1].x, &steps[n - 1].denoised);
            assert!(err <= 1e-6, "{what}: last step is not x0 ({err:e})");
        } else {
            assert_eq!(recorded, n, "{what}: reference steps");
        }
        let vp = c["space"].as_str().unwrap() == "vp";
        let w = worst.entry((key.into(), id.into())).or_default();
        w.0 += 1;
        for (i, step) in steps.iter().take(recorded).enumerate() {
            // diffusers' references are in its variance-preserving space.
            let scale = if vp {
                1.0 / (1.0 + sigmas[i + 1].powi(2)).sqrt()
            } else {
                1.0
            };
            let got: Vec<f64> = step.x.iter().map(|v| v * scale).collect();
            let err = max_abs(&got, &vec64(&want.get(i).unwrap()));
            w.1 = w.1.max(err);
            if err > TOLERANCE {
                failures.push(format!("{what}: step {i} max abs error {err:e}"));
            }
        }
    }
    for e in SAMPLERS.iter().filter(|e| e.id != "dpm_adaptive") {
        assert!(
            worst.contains_key(&("sd15".into(), e.id.into())),
            "{} has no UNet reference",
            e.id
        );
    }
    for ((key, id), (cases, err)) in &worst {
        eprintln!("{key} {id}: {cases} cases, worst max abs error {err:.2e}");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
