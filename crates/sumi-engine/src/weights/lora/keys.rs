//! Tensor names in LoRA files: which part of the model and which layer a key names, and the
//! role of the tensor in its module, for kohya (`lora_unet_down_blocks_0_..._to_q.lora_down.weight`,
//! LyCORIS roles, SDXL `lora_te1_` / `lora_te2_`, original LDM block names), diffusers / PEFT
//! (`unet.down_blocks.0....to_q.lora_A.weight`), ComfyUI
//! (`diffusion_model.double_blocks.0.img_attn.qkv.lora_down.weight`,
//! `text_encoders.clip_l.transformer.`) and old diffusers (`...processor.to_q_lora.down.weight`)
//! spellings; and the index from those names to the loaded model's parameters.

use std::collections::HashMap;

use crate::weights::ldm::LdmUnetNames;

/// The part of a model a LoRA module patches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Part {
    /// The denoising UNet.
    Unet,
    /// A text encoder: slot 0 is SD's only encoder or SDXL's first (`lora_te_` / `lora_te1_` /
    /// `text_encoder.`), slot 1 SDXL's second (`lora_te2_` / `text_encoder_2.`).
    Text(u8),
    /// A diffusion transformer (`transformer.`: Flux, SD3, ...), which no supported family has.
    Transformer,
}

impl Part {
    /// How the part is named in messages.
    pub fn label(self) -> &'static str {
        match self {
            Part::Unet => "UNet",
            Part::Text(0) => "text encoder",
            Part::Text(_) => "text encoder 2",
            Part::Transformer => "transformer",
        }
    }
}

/// How a file spells its keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Naming {
    /// kohya-ss / LyCORIS: `lora_unet_<module with _>.<role>`.
    Kohya,
    /// diffusers / PEFT: `unet.<module>.lora_A.weight`.
    Peft,
    /// diffusers before PEFT: `unet.<...>.processor.to_q_lora.down.weight`.
    DiffusersOld,
    /// ComfyUI: `diffusion_model.<module>.lora_down.weight`, `text_encoders.clip_l.transformer.`.
    ComfyUi,
    /// XLabs' Flux LoRAs: `double_blocks.0.processor.qkv_lora1.down.weight`.
    XLabs,
}

/// What one key of a LoRA file says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyParts {
    /// The part of the model.
    pub part: Part,
    /// The module as the file names it (for messages; kohya keys keep their prefix).
    pub module: String,
    /// The module's name with `.` as `_` and without `text_model_`, for looking layers up.
    pub lookup: String,
    /// The tensor's role in its module in kohya / LyCORIS spelling (`lora_down`, `lora_up`,
    /// `alpha`, `hada_w1_a`, `lokr_w2`, `dora_scale`, ...; `magnitude` for PEFT DoRA).
    pub role: String,
    /// How the file spells keys.
    pub naming: Naming,
}

const KOHYA_PREFIXES: [(&str, Part); 5] = [
    ("lora_unet_", Part::Unet),
    ("lora_te1_", Part::Text(0)),
    ("lora_te2_", Part::Text(1)),
    ("lora_te_", Part::Text(0)),
    ("lora_transformer_", Part::Transformer),
];

const DOTTED_PREFIXES: [(&str, Part); 6] = [
    ("unet.", Part::Unet),
    // ComfyUI's own LoRA files (Flux: `diffusion_model.double_blocks.0.img_attn.qkv`).
    ("diffusion_model.", Part::Unet),
    ("text_encoders.clip_l.transformer.", Part::Text(0)),
    ("text_encoder_2.", Part::Text(1)),
    ("text_encoder.", Part::Text(0)),
    ("transformer.", Part::Transformer),
];

/// Splits a LoRA file's key into its module and role; `None` for keys that belong to no
/// module (metadata-like entries such as `bundle_emb.*`).
pub fn parse_key(key: &str) -> Option<KeyParts> {
    for (prefix, part) in KOHYA_PREFIXES {
        if let Some(rest) = key.strip_prefix(prefix) {
            let (module, role) = rest.split_once('.')?;
            return Some(KeyParts {
                part,
                module: format!("{prefix}{module}"),
                lookup: normalise(part, module),
                role: kohya_role(role),
                naming: Naming::Kohya,
            });
        }
    }
    let key = key.strip_prefix("base_model.model.").unwrap_or(key);
    let (prefix, part, rest) = DOTTED_PREFIXES
        .iter()
        .find_map(|(p, part)| key.strip_prefix(p).map(|r| (*p, *part, r)))
        .unwrap_or(("", Part::Unet, key));
    let (module, role, naming) = dotted_module(part, rest)?;
    let naming = match prefix {
        "diffusion_model." | "text_encoders.clip_l.transformer." if naming == Naming::Peft => {
            Naming::ComfyUi
        }
        _ => naming,
    };
    Some(KeyParts {
        part,
        lookup: normalise(part, &module.replace('.', "_")),
        module,
        role,
        naming,
    })
}

/// The kohya / LyCORIS role of a kohya key's suffix (`lora_down.weight` -> `lora_down`).
fn kohya_role(suffix: &str) -> String {
    let role = suffix.strip_suffix(".weight").unwrap_or(suffix);
    match role {
        "lora_A" => "lora_down".into(),
        "lora_B" => "lora_up".into(),
        other => other.to_string(),
    }
}

/// The module path and role of a dotted (diffusers / PEFT) key within its part.
fn dotted_module(part: Part, rest: &str) -> Option<(String, String, Naming)> {
    const PEFT: [(&str, &str); 9] = [
        (".lora_A.weight", "lora_down"),
        (".lora_B.weight", "lora_up"),
        (".lora_B.bias", "lora_up_bias"),
        (".lora_magnitude_vector.weight", "magnitude"),
        (".lora_magnitude_vector", "magnitude"),
        (".lora_down.weight", "lora_down"),
        (".lora_up.weight", "lora_up"),
        (".dora_scale", "dora_scale"),
        (".alpha", "alpha"),
    ];
    for (suffix, role) in PEFT {
        if let Some(m) = rest.strip_suffix(suffix) {
            return Some((drop_processor(m), role.to_string(), Naming::Peft));
        }
    }
    if let Some(found) = xlabs_module(rest) {
        return Some(found);
    }
    const OLD: [(&str, &str); 6] = [
        (".lora.down.weight", "lora_down"),
        (".lora.up.weight", "lora_up"),
        (".lora_linear_layer.down.weight", "lora_down"),
        (".lora_linear_layer.up.weight", "lora_up"),
        ("_lora.down.weight", "lora_down"),
        ("_lora.up.weight", "lora_up"),
    ];
    for (suffix, role) in OLD {
        if let Some(m) = rest.strip_suffix(suffix) {
            let m = drop_processor(m);
            let m = if suffix.starts_with('_') {
                old_projection(part, &m)?
            } else {
                m
            };
            return Some((m, role.to_string(), Naming::DiffusersOld));
        }
    }
    None
}

/// XLabs' Flux LoRA layers (`double_blocks.0.processor.qkv_lora1.down.weight`): the module
/// (kept with `processor`) and role.
fn xlabs_module(rest: &str) -> Option<(String, String, Naming)> {
    const LAYERS: [&str; 6] = [
        "qkv_lora1",
        "qkv_lora2",
        "proj_lora1",
        "proj_lora2",
        "qkv_lora",
        "proj_lora",
    ];
    if !rest.starts_with("double_blocks.") && !rest.starts_with("single_blocks.") {
        return None;
    }
    for (suffix, role) in [(".down.weight", "lora_down"), (".up.weight", "lora_up")] {
        let Some(m) = rest.strip_suffix(suffix) else {
            continue;
        };
        let (parent, layer) = m.rsplit_once('.')?;
        if parent.ends_with(".processor") && LAYERS.contains(&layer) {
            return Some((m.to_string(), role.to_string(), Naming::XLabs));
        }
    }
    None
}

/// `attn1.processor.to_q` -> `attn1.to_q` (diffusers' attention processors held the old LoRA layers).
fn drop_processor(module: &str) -> String {
    module.replace(".processor.", ".").replace(".processor", "")
}

/// Old diffusers' `<attn>.to_q` (from `to_q_lora`) as the layer it patches: `to_out` is
/// `to_out.0` in a UNet and `out_proj` in CLIP; CLIP's q/k/v are `q_proj`/`k_proj`/`v_proj`.
fn old_projection(part: Part, module: &str) -> Option<String> {
    let (parent, proj) = module.rsplit_once('.')?;
    let layer = match (part, proj) {
        (Part::Text(_), "to_q") => "q_proj",
        (Part::Text(_), "to_k") => "k_proj",
        (Part::Text(_), "to_v") => "v_proj",
        (Part::Text(_), "to_out") => "out_proj",
        (_, "to_out") => "to_out.0",
        (_, other) => other,
    };
    Some(format!("{parent}.{layer}"))
}

/// The lookup spelling of a module: `.` as `_`, text encoders without `text_model_`.
fn normalise(part: Part, flat: &str) -> String {
    let flat = flat.replace('.', "_");
    match part {
        Part::Text(_) => flat
            .strip_prefix("text_model_")
            .map(str::to_string)
            .unwrap_or(flat),
        _ => flat,
    }
}

/// The loaded model's layers by every spelling a LoRA may use for them.
#[derive(Debug, Default)]
pub struct LayerIndex {
    layers: HashMap<(Part, String), String>,
}

impl LayerIndex {
    /// Indexes the parameters `names` of `part` (diffusers / transformers names): every
    /// `<module>.weight` under its module's lookup spelling and, for a UNet with `ldm`, under
    /// its original LDM module name too.
    pub fn add<'a>(
        &mut self,
        part: Part,
        names: impl Iterator<Item = &'a str>,
        ldm: Option<&LdmUnetNames>,
    ) {
        for name in names {
            let Some(module) = name.strip_suffix(".weight") else {
                continue;
            };
            let module = match part {
                Part::Text(_) => module.strip_prefix("text_model.").unwrap_or(module),
                _ => module,
            };
            self.layers
                .insert((part, normalise(part, module)), name.to_string());
            if let Some(l) = ldm.and_then(|l| l.ldm_name(name)) {
                if let Some(m) = l.strip_suffix(".weight") {
                    self.layers
                        .entry((part, normalise(part, m)))
                        .or_insert_with(|| name.to_string());
                }
            }
        }
    }

    /// The parameter (`<module>.weight`) a key's module names, if the model has it.
    pub fn find(&self, key: &KeyParts) -> Option<&str> {
        self.layers
            .get(&(key.part, key.lookup.clone()))
            .map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(key: &str) -> (Part, String, String, Naming) {
        let k = parse_key(key).unwrap();
        (k.part, k.lookup, k.role, k.naming)
    }

    #[test]
    fn kohya_keys() {
        assert_eq!(
            parts("lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight"),
            (
                Part::Unet,
                "down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q".into(),
                "lora_down".into(),
                Naming::Kohya
            )
        );
        assert_eq!(
            parts("lora_te2_text_model_encoder_layers_3_mlp_fc1.alpha"),
            (
                Part::Text(1),
                "encoder_layers_3_mlp_fc1".into(),
                "alpha".into(),
                Naming::Kohya
            )
        );
        assert_eq!(
            parts("lora_te_text_model_encoder_layers_0_self_attn_q_proj.hada_w1_a").2,
            "hada_w1_a"
        );
    }

    #[test]
    fn peft_and_old_diffusers_keys() {
        assert_eq!(
            parts("unet.mid_block.attentions.0.proj_in.lora_B.weight"),
            (
                Part::Unet,
                "mid_block_attentions_0_proj_in".into(),
                "lora_up".into(),
                Naming::Peft
            )
        );
        assert_eq!(
            parts("text_encoder_2.text_model.encoder.layers.1.self_attn.k_proj.lora_A.weight").0,
            Part::Text(1)
        );
        assert_eq!(
            parts("unet.down_blocks.0.attentions.0.transformer_blocks.0.attn2.processor.to_out_lora.up.weight"),
            (
                Part::Unet,
                "down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_out_0".into(),
                "lora_up".into(),
                Naming::DiffusersOld
            )
        );
        assert_eq!(
            parts("text_encoder.text_model.encoder.layers.0.self_attn.to_k_lora.down.weight").1,
            "encoder_layers_0_self_attn_k_proj"
        );
        assert_eq!(
            parts("text_encoder.text_model.encoder.layers.0.mlp.fc2.lora_linear_layer.down.weight")
                .1,
            "encoder_layers_0_mlp_fc2"
        );
        assert!(parse_key("bundle_emb.word.string_to_param.*").is_none());
    }

    #[test]
    fn comfyui_keys() {
        assert_eq!(
            parts("diffusion_model.double_blocks.3.img_attn.qkv.lora_down.weight"),
            (
                Part::Unet,
                "double_blocks_3_img_attn_qkv".into(),
                "lora_down".into(),
                Naming::ComfyUi
            )
        );
        assert_eq!(
            parts("text_encoders.clip_l.transformer.text_model.encoder.layers.0.mlp.fc1.alpha"),
            (
                Part::Text(0),
                "encoder_layers_0_mlp_fc1".into(),
                "alpha".into(),
                Naming::ComfyUi
            )
        );
        assert_eq!(
            parts("double_blocks.1.processor.qkv_lora2.up.weight"),
            (
                Part::Unet,
                "double_blocks_1_processor_qkv_lora2".into(),
                "lora_up".into(),
                Naming::XLabs
            )
        );
        assert!(parse_key("up_blocks.0.processor.up.weight").is_none());
    }
}
