//! Which of a model's parts stay in memory between uses, and how much memory a run will need.
//!
//! With `encoders`, T5 is read when a prompt is encoded and released right after; with
//! `sequential`, the transformer too is read when sampling starts and released before the VAE
//! decodes, so the peak is the largest part plus activations instead of their sum.

use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use crate::arch::network::{DenoisingNetwork, NetCond};
use crate::weights::params::{record, ParamTable};
use crate::{Error, Result};

/// Which parts are loaded only while they are used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Offload {
    /// Every part stays loaded (fastest when memory allows).
    #[default]
    None,
    /// The T5 text encoder is loaded for each encoding and released after.
    Encoders,
    /// T5 as with `Encoders`, and the denoising network for each sampling run.
    Sequential,
}

impl Offload {
    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Offload::None => "none",
            Offload::Encoders => "encoders",
            Offload::Sequential => "sequential",
        }
    }

    /// Whether T5 is released after each encoding.
    pub fn encoders(self) -> bool {
        self != Offload::None
    }

    /// Whether the denoising network is released after each sampling run.
    pub fn network(self) -> bool {
        self == Offload::Sequential
    }
}

impl FromStr for Offload {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "none" => Ok(Offload::None),
            "encoders" => Ok(Offload::Encoders),
            "sequential" => Ok(Offload::Sequential),
            other => Err(Error::InvalidRequest(format!(
                "unknown offload {other:?}: use none, encoders or sequential"
            ))),
        }
    }
}

/// The process's anonymous resident memory (where loaded tensors live), in bytes.
pub fn anon_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("RssAnon:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Runs `load`, returning its value and the memory it left allocated: the bytes of the
/// tensors its layers took, or the growth of the process's memory when that is larger
/// (quantized weights are not in the parameter tables).
/// Also returns the parameter tables the load recorded (for LoRA patching).
pub fn measured<T>(load: impl FnOnce() -> T) -> ((T, Vec<ParamTable>), u64) {
    let before = anon_rss();
    let (value, tables) = record(load);
    let grown = match (before, anon_rss()) {
        (Some(b), Some(a)) => a.saturating_sub(b),
        _ => 0,
    };
    let held: u64 = tables
        .iter()
        .flat_map(|t| t.iter())
        .map(|(_, p)| (p.tensor.elem_count() * p.tensor.dtype().size_in_bytes()) as u64)
        .sum();
    ((value, tables), grown.max(held))
}

/// Bytes each part of a loaded model holds when loaded (measured at load).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PartBytes {
    /// The denoising network (UNet or transformer).
    pub network: u64,
    /// The text encoders that stay loaded (CLIP).
    pub text: u64,
    /// T5, for models that have it.
    pub t5: u64,
    /// The VAE.
    pub vae: u64,
}

/// A denoising network read from its files when it is first used and released on request.
pub struct OnDemandNetwork {
    load: Box<dyn Fn() -> Result<Box<dyn DenoisingNetwork>> + Send + Sync>,
    slot: Mutex<Option<Arc<dyn DenoisingNetwork>>>,
    in_channels: usize,
    activations: Box<dyn Fn(usize, usize, usize, usize) -> u64 + Send + Sync>,
}

impl OnDemandNetwork {
    /// A network `load` reads again whenever it is needed; `in_channels` and `activations`
    /// answer for it while it is not loaded.
    pub fn new(
        load: Box<dyn Fn() -> Result<Box<dyn DenoisingNetwork>> + Send + Sync>,
        in_channels: usize,
        activations: Box<dyn Fn(usize, usize, usize, usize) -> u64 + Send + Sync>,
    ) -> Self {
        Self {
            load,
            slot: Mutex::new(None),
            in_channels,
            activations,
        }
    }

    fn loaded(&self) -> candle_core::Result<Arc<dyn DenoisingNetwork>> {
        let mut slot = self.slot.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = slot.as_ref() {
            return Ok(n.clone());
        }
        let net: Arc<dyn DenoisingNetwork> = Arc::from(
            (self.load)().map_err(|e| candle_core::Error::Msg(format!("reloading: {e}")))?,
        );
        *slot = Some(net.clone());
        Ok(net)
    }
}

impl DenoisingNetwork for OnDemandNetwork {
    fn forward(&self, x: &Tensor, t: &Tensor, cond: &NetCond) -> candle_core::Result<Tensor> {
        self.loaded()?.forward(x, t, cond)
    }

    fn in_channels(&self) -> usize {
        self.in_channels
    }

    fn activation_bytes(&self, height: usize, width: usize, batch: usize, elem: usize) -> u64 {
        (self.activations)(height, width, batch, elem)
    }

    fn release(&self) {
        *self.slot.lock().unwrap_or_else(PoisonError::into_inner) = None;
        crate::alloc::release_free();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offload_names_parse_and_say_what_is_allowed() {
        for o in [Offload::None, Offload::Encoders, Offload::Sequential] {
            assert_eq!(o.name().parse::<Offload>().unwrap(), o);
        }
        let err = "all".parse::<Offload>().unwrap_err().to_string();
        assert!(err.contains("none, encoders or sequential"), "{err}");
        assert!(Offload::Sequential.network() && Offload::Sequential.encoders());
        assert!(Offload::Encoders.encoders() && !Offload::Encoders.network());
    }

    #[test]
    fn memory_held_by_a_load_is_measured() {
        let ((v, _), bytes) = measured(|| vec![1u8; 64 << 20]);
        assert_eq!(v.len(), 64 << 20);
        assert!(bytes >= 60 << 20, "{bytes}");
    }
}
