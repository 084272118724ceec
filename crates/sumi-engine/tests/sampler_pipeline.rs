//! Property: any sampler with any schedule and 1..=50 steps, run through the pipeline on the
//! tiny SD1.5 fixture, finishes with finite values, emits `Started` then exactly one `Step`
//! event per step in order, and a re-run gives a bit-identical latent.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use candle_core::{DType, Device, Tensor};
use proptest::prelude::*;
use sumi_engine::pipeline::sample_latent;
use sumi_engine::sampling::{schedule, SAMPLERS, SCHEDULES};
use sumi_engine::{Event, Model, Request};

fn model() -> Model {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/sd15");
    Model::load(&dir, &Device::Cpu, DType::F32).expect("fixture model loads")
}

fn bits(t: &Tensor) -> Vec<u32> {
    t.flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
        .into_iter()
        .map(f32::to_bits)
        .collect()
}

proptest! {
    // Each case runs the tiny UNet up to ~300 times; a few cases keep CI (2 cores) quick, and
    // the sampler-level property in `sampling::tests` covers many more on a toy denoiser.
    #![proptest_config(ProptestConfig { cases: 6, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn any_sampler_runs_through_the_pipeline(
        which in 0..SAMPLERS.len(),
        // The last schedules include the flow models' own (Flow), which an SD model refuses.
        sched in 0..SCHEDULES.len(),
        steps in 1u32..=50,
        seed in any::<u32>(),
    ) {
        prop_assume!(SCHEDULES[sched].id != "flow");
        let model = model();
        let entry = &SAMPLERS[which];
        let mut req = Request::with_defaults(&model.info, "a red circle", seed as u64);
        req.sampler = entry.name.into();
        req.schedule = SCHEDULES[sched].name.into();
        req.steps = steps;
        req.cfg = 1.0; // one UNet pass per evaluation: the properties do not depend on CFG
        req.width = 64;
        req.height = 64;
        let cancel = AtomicBool::new(false);
        let mut events = Vec::new();
        let a = sample_latent(&model, &req, &cancel, &mut |e| events.push(e)).unwrap();
        let what = format!("{} / {} / {steps} steps", entry.id, SCHEDULES[sched].id);
        let n = (schedule(SCHEDULES[sched].id).unwrap().func)(&model.levels, steps as usize)
            .unwrap()
            .len()
            - 1;
        let total = match events.first() {
            Some(Event::Started { total, .. }) => *total,
            other => panic!("{what}: first event {other:?}"),
        };
        prop_assert_eq!(total, n, "{}", what);
        let mut last_evals = 0;
        for (i, e) in events[1..].iter().enumerate() {
            match e {
                Event::Step { index, total: t, sigma, model_evals, .. } => {
                    prop_assert_eq!(*index, i, "{}", what);
                    // DPM adaptive cannot know its step count in advance and reports 0.
                    prop_assert!(*t == n || (entry.own_steps && (*t == 0 || *t < n)), "{}: total {}", what, t);
                    prop_assert!(sigma.is_finite() && *sigma >= 0.0, "{}", what);
                    prop_assert!(*model_evals > last_evals, "{}: model_evals", what);
                    last_evals = *model_evals;
                }
                other => panic!("{what}: unexpected event {other:?}"),
            }
        }
        let reported = events.len() - 1;
        if entry.own_steps {
            prop_assert!(reported >= 1, "{}", what);
        } else {
            prop_assert_eq!(reported, n, "{}: one Step event per step", what);
            prop_assert!(last_evals <= n * entry.evals_per_step + 1, "{}: {} evals", what, last_evals);
        }
        let va = bits(&a);
        prop_assert!(
            a.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().all(|v| v.is_finite()),
            "{}: non-finite latent", what
        );
        let b = sample_latent(&model, &req, &cancel, &mut |_| {}).unwrap();
        prop_assert!(va == bits(&b), "{}: re-run differs", what);
    }
}
