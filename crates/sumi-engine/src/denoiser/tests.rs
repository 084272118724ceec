use std::sync::atomic::AtomicBool;
use std::sync::Mutex;

use candle_core::{Device, Tensor};

use super::*;
use crate::sampling::schedules::SchedulerConfig;

/// A network whose output is the mean of its conditioning's context per row, and which records
/// the context lengths of each call.
struct Probe {
    calls: Mutex<Vec<Vec<usize>>>,
}

impl DenoisingNetwork for Probe {
    fn forward(&self, x: &Tensor, _t: &Tensor, cond: &NetCond) -> candle_core::Result<Tensor> {
        let NetCond::CrossAttention { context, .. } = cond else {
            candle_core::bail!("the probe takes cross-attention conditioning");
        };
        let (b, n, _) = context.dims3()?;
        self.calls.lock().unwrap().push(vec![b, n]);
        let m = context
            .mean_keepdim(2)?
            .mean_keepdim(1)?
            .reshape((b, 1, 1, 1))?;
        x.zeros_like()?.broadcast_add(&m)
    }

    fn in_channels(&self) -> usize {
        1
    }

    fn activation_bytes(&self, _height: usize, _width: usize, _batch: usize, _elem: usize) -> u64 {
        0
    }
}

fn cond(value: f32, tokens: usize) -> NetCond {
    NetCond::CrossAttention {
        context: Tensor::full(value, (1, tokens, 2), &Device::Cpu).unwrap(),
        added: None,
    }
}

fn levels() -> NoiseLevels {
    NoiseLevels::from_config(&SchedulerConfig::default()).unwrap()
}

fn eps(d: &ModelDenoiser) -> f32 {
    let x = Tensor::zeros((1, 1, 1, 1), DType::F32, &Device::Cpu).unwrap();
    // With x = 0 the eps prediction is -x0 / sigma; at sigma 1 the output is -eps.
    let x0 = d.denoise(&x, 1.0).unwrap();
    -x0.flatten_all().unwrap().to_vec1::<f32>().unwrap()[0]
}

#[test]
fn schedules_switch_by_model_call_and_and_parts_combine() {
    let probe = Probe {
        calls: Mutex::new(Vec::new()),
    };
    let lv = levels();
    let cancel = AtomicBool::new(false);
    let guidance = PromptGuidance {
        parts: vec![
            (1.0, vec![(1, cond(1.0, 77)), (9, cond(2.0, 77))]),
            (0.5, vec![(9, cond(4.0, 154))]),
        ],
        uncond: Some((vec![(9, cond(0.5, 77))], 3.0)),
    };
    let d = ModelDenoiser::new(
        &probe,
        &lv,
        Parametrization::Epsilon,
        guidance,
        DType::F32,
        &cancel,
    )
    .unwrap();
    // Calls 0 and 1 use the first entry: 0.5 + 3 * (1 - 0.5) + 1.5 * (4 - 0.5).
    assert_eq!(eps(&d), 0.5 + 1.5 + 5.25);
    assert_eq!(eps(&d), 7.25);
    assert_eq!(eps(&d), 0.5 + 4.5 + 5.25);
    // Past the last entry A1111 goes back to the first.
    for _ in 3..10 {
        eps(&d);
    }
    assert_eq!(eps(&d), 7.25);
    // Parts padded to one batch; the negative of another length runs alone.
    let calls = probe.calls.lock().unwrap();
    assert_eq!(calls[0], vec![1, 77]);
    assert_eq!(calls[1], vec![2, 154]);
    assert_eq!(d.evals(), 11);
}

#[test]
fn equal_lengths_share_one_call_and_plain_guidance_converts() {
    let probe = Probe {
        calls: Mutex::new(Vec::new()),
    };
    let lv = levels();
    let cancel = AtomicBool::new(false);
    let guidance = Guidance {
        cond: cond(2.0, 77),
        uncond: Some((cond(1.0, 77), 7.0)),
    };
    let d = ModelDenoiser::new(
        &probe,
        &lv,
        Parametrization::Epsilon,
        guidance,
        DType::F32,
        &cancel,
    )
    .unwrap();
    assert_eq!(eps(&d), 8.0);
    assert_eq!(probe.calls.lock().unwrap().as_slice(), &[vec![2, 77]]);
    let bad = PromptGuidance {
        parts: vec![
            (1.0, vec![(9, cond(1.0, 77))]),
            (1.0, vec![(9, cond(1.0, 77))]),
        ],
        uncond: None,
    };
    assert!(ModelDenoiser::new(
        &probe,
        &lv,
        Parametrization::Epsilon,
        bad,
        DType::F32,
        &cancel
    )
    .is_err());
}
