//! What a LoRA file is, from its header: format, the model family its shapes fit, rank, size.

use std::collections::{BTreeMap, BTreeSet};

use super::flux::is_flux_module;
use super::format::{update_shape, Kind, Modules};
use super::keys::{Naming, Part};
use crate::family::Family;

/// The facts a LoRA list shows.
#[derive(Clone, Debug, PartialEq)]
pub struct LoraFacts {
    /// How the keys are spelled.
    pub naming: Naming,
    /// The kinds of update its modules hold.
    pub kinds: Vec<Kind>,
    /// Whether some modules carry DoRA magnitudes.
    pub dora: bool,
    /// The parts of the model it patches.
    pub parts: Vec<Part>,
    /// The family its shapes and names fit, when they tell (Flux: kohya `double_blocks` /
    /// `single_blocks` or diffusers `single_transformer_blocks` modules; SDXL: a second text
    /// encoder or 2048-wide cross-attention; SD 2.x: 1024; SD 1.x: 768), else from kohya's metadata.
    pub fits: Option<Family>,
    /// The largest rank of its modules.
    pub rank: Option<usize>,
    /// Number of patched layers.
    pub modules: usize,
    /// File size in bytes.
    pub size: u64,
}

impl LoraFacts {
    /// A one-line name of the format, e.g. "kohya LoRA + LoCon", "LyCORIS LoHa", "PEFT LoRA + DoRA".
    pub fn format(&self) -> String {
        let kinds: Vec<&str> = self.kinds.iter().map(|k| k.label()).collect();
        let lycoris = self
            .kinds
            .iter()
            .any(|k| matches!(k, Kind::LoHa | Kind::LoHaTucker | Kind::LoKr));
        let naming = match self.naming {
            Naming::Kohya if lycoris => "LyCORIS",
            Naming::Kohya => "kohya",
            Naming::Peft => "PEFT",
            Naming::DiffusersOld => "diffusers (old)",
            Naming::ComfyUi => "ComfyUI",
            Naming::XLabs => "XLabs",
        };
        let dora = if self.dora { " + DoRA" } else { "" };
        format!("{naming} {}{dora}", kinds.join(" + "))
    }

    /// The family as a phrase for messages and lists.
    pub fn fits_label(&self) -> String {
        if self.fits == Some(Family::Flux) {
            return Family::Flux.display_name().to_string();
        }
        if self.parts.contains(&Part::Transformer) {
            return "a diffusion-transformer model (Flux, SD3, ...)".into();
        }
        match self.fits {
            Some(f) => f.display_name().to_string(),
            None => "an unknown family".into(),
        }
    }
}

/// The facts of `modules`, with `shape` giving a key's stored shape.
pub fn describe(
    modules: &Modules,
    shape: &dyn Fn(&str) -> Vec<usize>,
    metadata: &BTreeMap<String, String>,
    size: u64,
) -> LoraFacts {
    let ms = &modules.modules;
    let kinds: BTreeSet<Kind> = ms.iter().map(|m| m.kind).collect();
    let parts: BTreeSet<Part> = ms.iter().map(|m| m.key.part).collect();
    let naming = ms
        .iter()
        .map(|m| m.key.naming)
        .max()
        .unwrap_or(Naming::Kohya);
    let rank = ms
        .iter()
        .filter_map(|m| update_shape(m, shape).ok()?.rank)
        .max();
    LoraFacts {
        naming,
        kinds: kinds.into_iter().collect(),
        dora: ms.iter().any(|m| m.dora.is_some()),
        parts: parts.into_iter().collect(),
        fits: fits(modules, shape, metadata),
        rank,
        modules: ms.len(),
        size,
    }
}

/// The family whose shapes and names `modules` fit.
pub fn fits(
    modules: &Modules,
    shape: &dyn Fn(&str) -> Vec<usize>,
    metadata: &BTreeMap<String, String>,
) -> Option<Family> {
    let ms = &modules.modules;
    let base = metadata.get("ss_base_model_version").map(String::as_str);
    if ms.iter().any(|m| is_flux_module(m.key.part, &m.key.lookup))
        || base.is_some_and(|b| b.starts_with("flux"))
    {
        return Some(Family::Flux);
    }
    if ms.iter().any(|m| m.key.part == Part::Text(1)) {
        return Some(Family::Sdxl);
    }
    let width = |part: Part, suffixes: &[&str]| {
        ms.iter()
            .filter(|m| m.key.part == part && suffixes.iter().any(|s| m.key.lookup.ends_with(s)))
            .find_map(|m| update_shape(m, shape).ok().map(|u| u.shape[1]))
    };
    let by_width = match width(Part::Unet, &["attn2_to_k", "attn2_to_v"]) {
        Some(2048) => Some(Family::Sdxl),
        Some(1024) => Some(Family::Sd2),
        Some(768) => Some(Family::Sd1),
        _ => match width(Part::Text(0), &["self_attn_q_proj", "self_attn_k_proj"]) {
            Some(1024) => Some(Family::Sd2),
            Some(768) => Some(Family::Sd1),
            _ => None,
        },
    };
    by_width.or_else(|| {
        if base.is_some_and(|b| b.starts_with("sdxl_")) {
            Some(Family::Sdxl)
        } else if metadata.get("ss_v2").is_some_and(|v| v == "True") {
            Some(Family::Sd2)
        } else if base.is_some_and(|b| b.starts_with("sd_v1")) {
            Some(Family::Sd1)
        } else {
            None
        }
    })
}
