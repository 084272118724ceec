//! Schedules and samplers against the references in `tests/fixtures/sampling/` (written by
//! `make_sampling_fixtures.py` from k-diffusion and diffusers), plus run-level properties.

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::OnceLock;

use candle_core::{DType, Device, Tensor};
use proptest::prelude::*;

use super::*;
use crate::Error;

struct Fixture {
    tensors: HashMap<String, Tensor>,
    meta: serde_json::Value,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/sampling");
        let tensors =
            candle_core::safetensors::load(dir.join("reference.safetensors"), &Device::Cpu)
                .expect("run tests/fixtures/sampling/make_sampling_fixtures.py");
        let meta = serde_json::from_str(
            &std::fs::read_to_string(dir.join("reference.json")).expect("reference.json"),
        )
        .expect("reference.json parses");
        Fixture { tensors, meta }
    })
}

fn vec64(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

fn levels(config: &str) -> NoiseLevels {
    let cfg: SchedulerConfig =
        serde_json::from_value(fixture().meta["configs"][config].clone()).unwrap();
    NoiseLevels::from_config(&cfg).unwrap()
}

#[test]
fn training_levels_match_reference() {
    for cfg in ["sd15", "linear", "cosine"] {
        let want = vec64(&fixture().tensors[&format!("levels.{cfg}")]);
        let lv = levels(cfg);
        assert_eq!(lv.sigmas().len(), want.len());
        for (t, (g, w)) in lv.sigmas().iter().zip(&want).enumerate() {
            assert!(
                (g / w - 1.0).abs() <= 2.5e-7,
                "{cfg} sigma[{t}]: {g} vs {w}"
            );
        }
        assert_eq!(lv.sigma_min(), lv.sigmas()[0]);
        assert_eq!(lv.sigma_max(), *lv.sigmas().last().unwrap());
    }
}

#[test]
fn schedules_match_reference() {
    let f = fixture();
    let mut worst = 0.0f64;
    let cases = f.meta["schedules"].as_array().unwrap();
    // Every schedule of the table, for every config and step count in {1, 2, 10, 20, 50}.
    // The Flow schedule is a flow model's (tests in `flow.rs` and `tests/flux_pipeline.rs`).
    for e in SCHEDULES.iter().filter(|e| e.id != "flow") {
        for cfg in ["sd15", "linear", "cosine"] {
            for n in [1u64, 2, 10, 20, 50] {
                assert!(
                    cases.iter().any(|c| c["schedule"] == e.id
                        && c["config"] == cfg
                        && c["steps"].as_u64() == Some(n)),
                    "no reference for schedule {} / {cfg} / {n} steps",
                    e.id
                );
            }
        }
    }
    for c in cases {
        let key = c["key"].as_str().unwrap();
        let want = vec64(&f.tensors[key]);
        let lv = levels(c["config"].as_str().unwrap());
        let entry = schedule(c["schedule"].as_str().unwrap()).unwrap();
        let got = (entry.func)(&lv, c["steps"].as_u64().unwrap() as usize).unwrap();
        assert_eq!(got.len(), want.len(), "{key}: {got:?} vs {want:?}");
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            let rel = if *w == 0.0 {
                g.abs()
            } else {
                (g / w - 1.0).abs()
            };
            worst = worst.max(rel);
            assert!(rel <= 1e-6, "{key}[{i}]: {g} vs {w} (rel {rel:e})");
        }
    }
    eprintln!("schedules: worst relative error {worst:e}");
}

/// The analytic toy denoiser of the fixture: per element an equal mixture of N(+m, s2) and
/// N(-m, s2); counts its calls.
struct Toy {
    m: Tensor,
    s2: f64,
    calls: Cell<usize>,
}

impl Toy {
    fn new(dtype: DType) -> Self {
        let f = fixture();
        Self {
            m: f.tensors["toy.m"].to_dtype(dtype).unwrap(),
            s2: f.meta["toy"]["s2"].as_f64().unwrap(),
            calls: Cell::new(0),
        }
    }
}

impl Denoiser for Toy {
    fn denoise(&self, x: &Tensor, sigma: f64) -> crate::Result<Tensor> {
        self.calls.set(self.calls.get() + 1);
        let v = self.s2 + sigma * sigma;
        let th = (self.m.mul(x)?.affine(1.0 / v, 0.0)?).tanh()?;
        let mix = self.m.mul(&th)?.affine(sigma * sigma / v, 0.0)?;
        Ok((x.affine(self.s2 / v, 0.0)? + mix)?)
    }
}

/// Noise handed out from a fixed list, in order.
struct Replay {
    draws: Vec<Tensor>,
    next: usize,
}

impl StepNoise for Replay {
    fn sample(&mut self, like: &Tensor, _s: f64, _sn: f64) -> crate::Result<Tensor> {
        let t = self
            .draws
            .get(self.next)
            .unwrap_or_else(|| panic!("sampler drew more than the {} noises", self.draws.len()))
            .to_dtype(like.dtype())?;
        self.next += 1;
        Ok(t)
    }
}

/// Seeded, counter-based Gaussian noise for property tests.
struct Seeded(u64);

impl StepNoise for Seeded {
    fn sample(&mut self, like: &Tensor, _s: f64, _sn: f64) -> crate::Result<Tensor> {
        self.0 += 1;
        let n = like.elem_count();
        let v = brownian::gaussians(self.0, 0, n);
        Ok(Tensor::from_vec(v, like.shape(), like.device())?.to_dtype(like.dtype())?)
    }
}

#[test]
fn trajectories_match_reference() {
    let f = fixture();
    let mut worst = HashMap::<String, f64>::new();
    let mut checked = HashMap::<String, usize>::new();
    for (ci, c) in f.meta["cases"].as_array().unwrap().iter().enumerate() {
        let id = c["sampler"].as_str().unwrap();
        let what = format!(
            "{id} / {} / {} steps ({})",
            c["schedule"].as_str().unwrap(),
            c["steps"],
            c["source"].as_str().unwrap()
        );
        let entry = sampler(id).unwrap();
        let sigmas = vec64(&f.tensors[&format!("case.{ci}.sigmas")]);
        let want_traj = &f.tensors[&format!("case.{ci}.traj")];
        // f32 like a real run, except for DPM adaptive: its first error estimates (~1e-8) are
        // below f32 resolution, so its step sizes follow rounding noise there.
        let dtype = if id == "dpm_adaptive" {
            DType::F64
        } else {
            DType::F32
        };
        let unit = f.tensors[&format!("case.{ci}.unit")]
            .to_dtype(dtype)
            .unwrap();
        let init = match c["init_noise"].as_str().unwrap() {
            "sigma_max" => InitNoise::SigmaMax,
            _ => InitNoise::VariancePreserving,
        };
        assert_eq!(entry.init_noise, init, "{what}: start convention");
        let x = unit.affine(entry.init_noise.scale(sigmas[0]), 0.0).unwrap();
        let draws = match f.tensors.get(&format!("case.{ci}.noise")) {
            Some(t) => (0..t.dim(0).unwrap()).map(|i| t.get(i).unwrap()).collect(),
            None => vec![],
        };
        let mut noise = Replay { draws, next: 0 };
        let toy = Toy::new(dtype);
        let mut steps = Vec::new();
        let mut on_step = |s: &StepInfo| {
            steps.push((s.index, s.model_evals, s.x.clone()));
            Flow::Continue
        };
        let mut ctx = SampleCtx {
            noise: &mut noise,
            on_step: &mut on_step,
        };
        let out = (entry.func)(&toy, x, &sigmas, &mut ctx).unwrap();
        let n = steps.len();
        if !entry.own_steps {
            assert_eq!(n, sigmas.len() - 1, "{what}: on_step calls");
        }
        assert_eq!(n, want_traj.dim(0).unwrap(), "{what}: steps");
        assert_eq!(
            toy.calls.get() as u64,
            c["model_calls"].as_u64().unwrap(),
            "{what}: model calls"
        );
        assert_eq!(
            steps.last().unwrap().1,
            toy.calls.get(),
            "{what}: model_evals"
        );
        assert_eq!(
            noise.next as u64,
            c["noise_draws"].as_u64().unwrap(),
            "{what}: noise draws"
        );
        let vp = c["space"].as_str().unwrap() == "vp";
        for (i, (index, _, x)) in steps.iter().enumerate() {
            assert_eq!(*index, i);
            // diffusers' references are in its variance-preserving space.
            let to_space = if vp {
                1.0 / (1.0 + sigmas[i + 1].powi(2)).sqrt()
            } else {
                1.0
            };
            let got: Vec<f64> = vec64(x).into_iter().map(|v| v * to_space).collect();
            let want = vec64(&want_traj.get(i).unwrap());
            let err = got
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f64::max);
            let w = worst.entry(id.to_string()).or_default();
            *w = w.max(err);
            assert!(err <= 1e-4, "{what}: step {i} max abs error {err:e}");
        }
        assert_eq!(
            vec64(&out),
            vec64(&steps[n - 1].2),
            "{what}: returned latent"
        );
        *checked.entry(id.to_string()).or_default() += 1;
    }
    for e in SAMPLERS {
        assert!(
            checked.contains_key(e.id),
            "{} has no reference trajectory",
            e.id
        );
    }
    eprintln!("trajectories checked per sampler: {checked:?}");
    eprintln!("worst max abs error per sampler: {worst:?}");
}

fn run(
    entry: &SamplerEntry,
    steps: usize,
    schedule_id: &str,
    cancel_at: Option<usize>,
) -> (crate::Result<Tensor>, usize, usize, Vec<usize>) {
    let lv = levels("sd15");
    let sigmas = (schedule(schedule_id).unwrap().func)(&lv, steps).unwrap();
    let unit = Tensor::from_vec(brownian::gaussians(7, 0, 64), (1, 4, 4, 4), &Device::Cpu).unwrap();
    let x = unit.affine(entry.init_noise.scale(sigmas[0]), 0.0).unwrap();
    let toy = Toy::new(DType::F32);
    let mut seeded = Seeded(42);
    let mut tree = BrownianNoise::for_sigmas(42, &sigmas);
    let noise: &mut dyn StepNoise = match entry.noise {
        NoiseKind::Brownian => &mut tree,
        _ => &mut seeded,
    };
    let mut reported = Vec::new();
    let mut totals = Vec::new();
    let mut evals_at_cancel = 0;
    let mut on_step = |s: &StepInfo| {
        reported.push(s.index);
        totals.push(s.total);
        if Some(s.index) == cancel_at {
            evals_at_cancel = s.model_evals;
            Flow::Cancel
        } else {
            Flow::Continue
        }
    };
    let mut ctx = SampleCtx {
        noise,
        on_step: &mut on_step,
    };
    let out = (entry.func)(&toy, x, &sigmas, &mut ctx);
    if cancel_at.is_none() {
        // Every step reports the same total, and that is the number of steps reported (or 0
        // where it is not known in advance).
        assert!(
            totals
                .iter()
                .all(|t| *t == reported.len() || (entry.own_steps && *t == 0)),
            "{}",
            entry.id
        );
        if !entry.own_steps {
            assert_eq!(reported.len(), sigmas.len() - 1, "{}", entry.id);
        }
    }
    (out, toy.calls.get(), evals_at_cancel, reported)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn any_sampler_finishes_finite_and_repeatably(
        which in 0..SAMPLERS.len(),
        steps in 1usize..=50,
        sched in 0..SCHEDULES.len() - 1,
    ) {
        let entry = &SAMPLERS[which];
        let discrete: Vec<_> = SCHEDULES.iter().filter(|e| e.id != "flow").collect();
        let sched = discrete[sched].id;
        let (a, _, _, reported) = run(entry, steps, sched, None);
        let a = a.unwrap();
        let n = (schedule(sched).unwrap().func)(&levels("sd15"), steps).unwrap().len() - 1;
        // Own-step samplers choose their count; DPM adaptive takes none when the schedule's
        // second-to-last sigma is already sigma_max (one step on Normal).
        let want_steps = if entry.own_steps { reported.len() } else { n };
        prop_assert_eq!(reported, (0..want_steps).collect::<Vec<_>>());
        let va = vec64(&a);
        prop_assert!(va.iter().all(|v| v.is_finite()), "{}: non-finite", entry.id);
        let (b, _, _, _) = run(entry, steps, sched, None);
        let (ba, bb): (Vec<f32>, Vec<f32>) = (
            a.flatten_all().unwrap().to_vec1().unwrap(),
            b.unwrap().flatten_all().unwrap().to_vec1().unwrap(),
        );
        prop_assert!(
            ba.iter().zip(&bb).all(|(x, y)| x.to_bits() == y.to_bits()),
            "{}: re-run differs", entry.id
        );
    }
}

#[test]
fn cancel_stops_before_the_next_step() {
    for entry in SAMPLERS {
        for k in [0usize, 2, 4] {
            let (out, calls, evals_at_cancel, reported) = run(entry, 12, "karras", Some(k));
            assert!(
                matches!(out, Err(Error::Cancelled)),
                "{}: not cancelled",
                entry.id
            );
            assert_eq!(reported.last(), Some(&k), "{}", entry.id);
            assert_eq!(
                calls, evals_at_cancel,
                "{}: model ran after cancel at {k}",
                entry.id
            );
            assert!(calls > k, "{}", entry.id);
        }
    }
}

#[test]
fn brownian_sde_runs_are_stable_across_step_counts() {
    // With the same Brownian seed, doubling the steps refines the same noise path, so the
    // results stay close; another seed lands elsewhere.
    let lv = levels("sd15");
    let unit = Tensor::from_vec(brownian::gaussians(5, 0, 64), (1, 4, 4, 4), &Device::Cpu).unwrap();
    for id in ["dpmpp_2m_sde", "dpmpp_3m_sde", "dpmpp_sde"] {
        let entry = sampler(id).unwrap();
        let out = |steps: usize, seed: u64| -> Vec<f64> {
            let sigmas = schedules::karras(&lv, steps).unwrap();
            let mut tree = BrownianNoise::for_sigmas(seed, &sigmas);
            let mut on_step = |_: &StepInfo| Flow::Continue;
            let mut ctx = SampleCtx {
                noise: &mut tree,
                on_step: &mut on_step,
            };
            let x = unit.affine(sigmas[0], 0.0).unwrap();
            vec64(&(entry.func)(&Toy::new(DType::F32), x, &sigmas, &mut ctx).unwrap())
        };
        let dist = |a: &[f64], b: &[f64]| {
            a.iter()
                .zip(b)
                .map(|(x, y)| (x - y).powi(2))
                .sum::<f64>()
                .sqrt()
        };
        let (a, b, other) = (out(40, 1), out(80, 1), out(80, 2));
        let (same, diff) = (dist(&a, &b), dist(&b, &other));
        assert!(
            same < 0.25 * diff,
            "{id}: 40 vs 80 steps {same}, other seed {diff}"
        );
    }
}

#[test]
fn stochastic_samplers_match_reference_statistics() {
    // With their own noise (a Brownian tree for the SDE samplers), the final samples over many
    // seeds must show the same mean and variance as k-diffusion's runs with its own noise
    // (torchsde's Brownian tree), standardised per element by the data's std.
    let f = fixture();
    let stats = &f.meta["stats"];
    let toy = Toy::new(DType::F64);
    let m = vec64(&toy.m);
    let sigmas = (schedule(stats["schedule"].as_str().unwrap()).unwrap().func)(
        &levels("sd15"),
        stats["steps"].as_u64().unwrap() as usize,
    )
    .unwrap();
    let refs = stats["samplers"].as_object().unwrap();
    assert_eq!(refs.len(), 6);
    for (id, want) in refs {
        let entry = sampler(id).unwrap();
        assert!(entry.stochastic, "{id}");
        let (mut sum, mut sum2, mut count) = (0.0, 0.0, 0.0);
        for seed in 0..200u64 {
            let unit = Tensor::from_vec(
                brownian::gaussians(1000 + seed, 0, 64),
                (1, 4, 4, 4),
                &Device::Cpu,
            )
            .unwrap()
            .to_dtype(DType::F64)
            .unwrap();
            let x = unit.affine(entry.init_noise.scale(sigmas[0]), 0.0).unwrap();
            let mut seeded = Seeded(seed << 20);
            let mut tree = BrownianNoise::for_sigmas(seed, &sigmas);
            let noise: &mut dyn StepNoise = match entry.noise {
                NoiseKind::Brownian => &mut tree,
                _ => &mut seeded,
            };
            let mut on_step = |_: &StepInfo| Flow::Continue;
            let mut ctx = SampleCtx {
                noise,
                on_step: &mut on_step,
            };
            let out = vec64(&(entry.func)(&toy, x, &sigmas, &mut ctx).unwrap());
            for (v, mi) in out.iter().zip(&m) {
                let z = v / (toy.s2 + mi * mi).sqrt();
                sum += z;
                sum2 += z * z;
                count += 1.0;
            }
        }
        let mean = sum / count;
        let var = sum2 / count - mean * mean;
        let (want_mean, want_var) = (
            want["mean"].as_f64().unwrap(),
            want["var"].as_f64().unwrap(),
        );
        eprintln!(
            "{id}: mean {mean:.4} (k-diffusion {want_mean:.4}), variance {var:.4} ({want_var:.4})"
        );
        assert!(
            (mean - want_mean).abs() < 0.04,
            "{id}: mean {mean} vs {want_mean}"
        );
        assert!(
            (var - want_var).abs() < 0.06,
            "{id}: variance {var} vs {want_var}"
        );
    }
}
