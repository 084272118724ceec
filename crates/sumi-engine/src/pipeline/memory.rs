//! Whether a request fits in memory, checked before it runs, so that a size the device cannot
//! hold is refused with a message instead of exhausting the machine. The network estimates its
//! own activations (`DenoisingNetwork::activation_bytes`); the VAE decode tiles itself when its
//! whole-image decode would not fit, so it never refuses.

use super::request::Request;
use crate::model::offload::{Offload, PartBytes};
use crate::model::Model;
use crate::{Error, Result};

/// Refuses `need` bytes when `free` (what the device can still give, when known) cannot hold
/// them, saying how much is needed and what is free.
pub fn check_fits(need: u64, free: Option<u64>, what: &str) -> Result<()> {
    const GIB: f64 = (1u64 << 30) as f64;
    match free {
        // Leave a tenth for everything the estimate does not count.
        Some(free) if need > free / 10 * 9 => Err(Error::InvalidRequest(format!(
            "{what} needs about {:.1} GiB of memory but only {:.1} GiB are free: choose a \
             smaller size, or close other programs",
            need as f64 / GIB,
            free as f64 / GIB
        ))),
        _ => Ok(()),
    }
}

/// The memory a run holds at its peak: the parts that are loaded together, from their sizes
/// measured at load, plus the network's activations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryPlan {
    /// The parts' sizes.
    pub parts: PartBytes,
    /// The network's activations for the request.
    pub activations: u64,
    /// The peak with the model's offload setting.
    pub peak: u64,
    /// The peak with every part loaded together (`--offload none`).
    pub all_loaded: u64,
}

impl MemoryPlan {
    /// One line for a terminal: the peak and what makes it up, in GiB.
    pub fn describe(&self) -> String {
        let g = |b: u64| b as f64 / (1u64 << 30) as f64;
        let p = &self.parts;
        let mut line = format!(
            "about {:.1} GiB at the peak (network {:.2}, text encoders {:.2}",
            g(self.peak),
            g(p.network),
            g(p.text)
        );
        if p.t5 > 0 {
            line.push_str(&format!(", T5 {:.2}", g(p.t5)));
        }
        line.push_str(&format!(
            ", VAE {:.2}, activations {:.2} GiB)",
            g(p.vae),
            g(self.activations)
        ));
        if self.all_loaded != self.peak {
            line.push_str(&format!(
                "; {:.1} GiB with every part loaded",
                g(self.all_loaded)
            ));
        }
        line
    }
}

/// The memory `request` needs on `model`: with `--offload encoders` T5 is loaded only while
/// prompts are encoded, with `sequential` the network only while sampling runs.
pub fn memory_plan(model: &Model, request: &Request) -> MemoryPlan {
    let down = model.info.downscale as usize;
    let (h, w) = (
        request.height as usize / down,
        request.width as usize / down,
    );
    let batch = if request.cfg != 1.0 { 2 } else { 1 };
    let activations = model
        .network
        .activation_bytes(h, w, batch, model.dtype.size_in_bytes());
    let p = model.memory;
    let always = p.text + p.vae;
    let all_loaded = always + p.network + p.t5 + activations;
    let peak = match model.offload {
        Offload::None => all_loaded,
        Offload::Encoders => always + p.network + p.t5.max(activations),
        Offload::Sequential => always + p.t5.max(p.network + activations),
    };
    MemoryPlan {
        parts: p,
        activations,
        peak,
        all_loaded,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_does_not_fit_and_says_how_much() {
        assert!(check_fits(1 << 30, Some(8 << 30), "x").is_ok());
        assert!(check_fits(100 << 30, None, "x").is_ok());
        let e = check_fits(100 << 30, Some(8 << 30), "a 16384x16384 image").unwrap_err();
        assert!(
            e.to_string()
                .contains("needs about 100.0 GiB of memory but only 8.0 GiB are free"),
            "{e}"
        );
    }
}
