//! Helpers shared by the LoRA tests: the fixture LoRAs and their references, snapshots of a
//! model's weights, and small LoRA files written on the fly.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{Device, Tensor};
use sumi_engine::arch::network::{AddedCond, NetCond};
use sumi_engine::model::LoraUse;
use sumi_engine::weights::lora::{LoraError, LoraFile};
use sumi_engine::{Error, Model};

use crate::support::{fixtures, max_abs, refs};

pub fn lora_dir() -> PathBuf {
    fixtures().join("lora")
}

pub fn lora_refs() -> (HashMap<String, Tensor>, serde_json::Value) {
    let dir = lora_dir();
    let t = candle_core::safetensors::load(dir.join("ref.safetensors"), &Device::Cpu).unwrap();
    let j = serde_json::from_str(&std::fs::read_to_string(dir.join("ref.json")).unwrap()).unwrap();
    (t, j)
}

pub fn load(name: &str) -> Model {
    Model::load(
        &fixtures().join(name),
        &Device::Cpu,
        candle_core::DType::F32,
    )
    .expect("fixture model loads")
}

pub fn open(name: &str) -> Arc<LoraFile> {
    Arc::new(LoraFile::open(&lora_dir().join(name)).expect("fixture LoRA opens"))
}

pub fn lora(file: &Arc<LoraFile>, te: f64, unet: f64) -> LoraUse {
    LoraUse {
        file: file.clone(),
        te,
        unet,
    }
}

/// Every parameter's values, by part and name.
pub fn snapshot(model: &Model) -> HashMap<String, Vec<u32>> {
    let p = model.params();
    let mut out = HashMap::new();
    let tables = std::iter::once(("unet".to_string(), &p.unet))
        .chain(p.text.iter().map(|(s, t)| (format!("te{s}"), t)));
    for (part, table) in tables {
        for (name, param) in table.iter() {
            let v: Vec<f32> = param.tensor.flatten_all().unwrap().to_vec1().unwrap();
            out.insert(
                format!("{part}.{name}"),
                v.iter().map(|x| x.to_bits()).collect(),
            );
        }
    }
    out
}

pub fn assert_same_weights(
    a: &HashMap<String, Vec<u32>>,
    b: &HashMap<String, Vec<u32>>,
    what: &str,
) {
    assert_eq!(a.len(), b.len(), "{what}: parameter count");
    for (k, v) in a {
        assert!(b[k] == *v, "{what}: {k} differs");
    }
}

/// Relative max difference (max |a - b| / max |b|).
pub fn rel(a: &Tensor, b: &Tensor) -> f32 {
    let scale = max_abs(b, &b.zeros_like().unwrap()).max(1e-6);
    max_abs(a, b) / scale
}

/// The UNet output and text conditioning the fixture references record.
pub fn outputs(model: &Model, model_name: &str) -> HashMap<String, Tensor> {
    let (t, j) = refs(model_name);
    let added = t.get("unet.text_embeds").map(|e| AddedCond {
        text_embeds: e.clone(),
        time_ids: t["unet.time_ids"].clone(),
    });
    let cond = NetCond::CrossAttention {
        context: t["unet.context"].clone(),
        added,
    };
    let mut out = HashMap::new();
    let unet = model
        .network
        .forward(&t["unet.x"], &t["unet.t"], &cond)
        .unwrap();
    out.insert("unet.out".to_string(), unet);
    let c = model
        .text
        .encode(
            j["text"]["prompt"].as_str().unwrap(),
            j["text"]["negative_prompt"].as_str().unwrap(),
            true,
        )
        .unwrap();
    out.insert("text.context".to_string(), c.context);
    if let Some(p) = c.pooled {
        out.insert("text.pooled".to_string(), p);
    }
    out
}

/// Writes a kohya LoRA with `modules` (module name without prefix, out, in) of rank 2.
pub fn write_lora(path: &Path, modules: &[(&str, usize, usize)], fill: f32) {
    let mut map = HashMap::new();
    for (i, (m, out, inp)) in modules.iter().enumerate() {
        let seed = i as f32;
        let down: Vec<f32> = (0..2 * inp)
            .map(|k| ((k as f32 + seed) * 0.37).sin() * fill)
            .collect();
        let up: Vec<f32> = (0..out * 2)
            .map(|k| ((k as f32 - seed) * 0.53).cos() * fill)
            .collect();
        map.insert(
            format!("{m}.lora_down.weight"),
            Tensor::from_vec(down, (2, *inp), &Device::Cpu).unwrap(),
        );
        map.insert(
            format!("{m}.lora_up.weight"),
            Tensor::from_vec(up, (*out, 2), &Device::Cpu).unwrap(),
        );
    }
    candle_core::safetensors::save(&map, path).unwrap();
}

pub fn lora_error(e: Error) -> LoraError {
    match e {
        Error::Lora(l) => l,
        other => panic!("expected a LoRA error, got {other}"),
    }
}

pub fn open_at(path: &Path) -> Arc<LoraFile> {
    Arc::new(LoraFile::open(path).unwrap())
}

/// Deterministic values in [-0.3, 0.3] of `shape` (LoRA factors written on the fly), varied by
/// `seed`.
pub fn randn(shape: &[usize], seed: f32) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n)
        .map(|k| ((k as f32 + seed) * 0.71).sin() * 0.3)
        .collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}
