//! The `lora` component: a rank-32 kohya LoRA on every attention and feed-forward layer of the
//! model's UNet, applied and removed in place; time and resident memory of each.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use sumi_engine::model::{LoraBackup, LoraUse};
use sumi_engine::weights::lora::LoraFile;
use sumi_engine::{Model, Result};

use crate::random_model::write_random_safetensors;

/// Rank of the benchmark LoRA.
pub const RANK: usize = 32;

/// Whether a UNet parameter is the weight of an attention projection or a feed-forward layer.
fn targeted(name: &str) -> bool {
    name.contains("transformer_blocks.")
        && name.ends_with(".weight")
        && [
            ".to_q.",
            ".to_k.",
            ".to_v.",
            ".to_out.0.",
            ".ff.net.0.proj.",
            ".ff.net.2.",
        ]
        .iter()
        .any(|p| name.contains(p))
}

/// Writes the LoRA for `model` to `path`; returns the number of modules.
pub fn write_lora(path: &Path, model: &Model, seed: u64) -> Result<usize> {
    let mut shapes = BTreeMap::new();
    for (name, p) in model.params().unet.iter().filter(|(n, _)| targeted(n)) {
        let (out, inp) = p.tensor.dims2()?;
        let key = format!(
            "lora_unet_{}",
            name.trim_end_matches(".weight").replace('.', "_")
        );
        shapes.insert(format!("{key}.lora_down.weight"), vec![RANK, inp]);
        shapes.insert(format!("{key}.lora_up.weight"), vec![out, RANK]);
    }
    write_random_safetensors(path, &shapes, seed, true)?;
    Ok(shapes.len() / 2)
}

/// Resident memory now (Linux `VmRSS`), in bytes.
pub fn rss_bytes() -> Option<u64> {
    status_kb("VmRSS:")
}

fn status_kb(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
}

/// Resets the peak resident memory (`VmHWM`) to the current one (Linux 4.0+).
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// One apply or remove: seconds, resident memory left after it and at its peak, both above
/// what the process held before it (bytes).
#[derive(Debug, Clone, Copy)]
pub struct LoraRun {
    /// Wall time.
    pub seconds: f64,
    /// Resident memory after minus before.
    pub extra_after: Option<i64>,
    /// Peak resident memory during minus before.
    pub extra_peak: Option<i64>,
}

fn measured(f: &mut dyn FnMut() -> Result<()>) -> Result<LoraRun> {
    let before = rss_bytes();
    reset_peak();
    let t = Instant::now();
    f()?;
    let seconds = t.elapsed().as_secs_f64();
    let diff = |v: Option<u64>| Some(v? as i64 - before? as i64);
    Ok(LoraRun {
        seconds,
        extra_after: diff(rss_bytes()),
        extra_peak: diff(status_kb("VmHWM:")),
    })
}

/// Applies and removes `file` on `model` `repeats` times with `backup`; the (apply, remove) runs.
pub fn apply_remove(
    model: &mut Model,
    file: &Arc<LoraFile>,
    backup: LoraBackup,
    repeats: usize,
) -> Result<Vec<(LoraRun, LoraRun)>> {
    model.set_lora_backup(backup);
    let set = [LoraUse {
        file: file.clone(),
        te: 1.0,
        unet: 1.0,
    }];
    let device = model.device.clone();
    let mut out = Vec::new();
    for _ in 0..repeats.max(1) {
        let apply = measured(&mut || {
            model.set_loras(&set)?;
            Ok(device.synchronize()?)
        })?;
        let remove = measured(&mut || {
            model.clear_loras()?;
            Ok(device.synchronize()?)
        })?;
        out.push((apply, remove));
    }
    Ok(out)
}
