//! A1111's `parameters` text ("infotext"): writing it exactly as A1111 does, and reading it as
//! A1111, stable-diffusion.cpp, Krita AI Diffusion and Fooocus write it.
//!
//! Layout: prompt lines, then an optional `Negative prompt:` line (and its continuation lines),
//! then one line of `Key: value` pairs joined with `", "`. Values holding `,`, `:` or a newline are
//! JSON-quoted. Known limit of the format itself: a prompt with a line that starts with
//! `Negative prompt:` cannot be told apart from a real negative prompt (Sumi's JSON chunk is exact).

use crate::record::{GenerationParams, NamedHash};

mod img2img;
mod lenient;

pub use lenient::{Lenient, A1111_CFG, A1111_SAMPLER, A1111_SIZE, A1111_STEPS};

/// The key prefix of the negative-prompt line.
const NEGATIVE_PREFIX: &str = "Negative prompt:";

/// Schedule names that older A1111 versions appended to the sampler name ("DPM++ 2M Karras").
pub const LEGACY_SCHEDULE_SUFFIXES: &[&str] = &[
    "Karras",
    "Exponential",
    "SGM Uniform",
    "Uniform",
    "Simple",
    "Normal",
    "DDIM",
    "Beta",
    "Align Your Steps",
    "Polyexponential",
    "KL Optimal",
];

/// The schedule assumed when a text names none (A1111's default).
pub const DEFAULT_SCHEDULE: &str = "Automatic";
/// The T5 prompt length of Forge's Flux images (it pads to 256 tokens and writes no length).
const FORGE_T5_TOKENS: u32 = 256;

/// Sampler ids used by stable-diffusion.cpp and ComfyUI, with their A1111 display names.
const SAMPLER_IDS: &[(&str, &str)] = &[
    ("euler_a", "Euler a"),
    ("euler_ancestral", "Euler a"),
    ("euler", "Euler"),
    ("heun", "Heun"),
    ("dpm2", "DPM2"),
    ("dpm_2", "DPM2"),
    ("dpm_2_ancestral", "DPM2 a"),
    ("dpm++2s_a", "DPM++ 2S a"),
    ("dpmpp_2s_ancestral", "DPM++ 2S a"),
    ("dpm++2m", "DPM++ 2M"),
    ("dpmpp_2m", "DPM++ 2M"),
    ("dpmpp_sde", "DPM++ SDE"),
    ("dpmpp_2m_sde", "DPM++ 2M SDE"),
    ("dpmpp_3m_sde", "DPM++ 3M SDE"),
    ("lms", "LMS"),
    ("lcm", "LCM"),
    ("ddim", "DDIM"),
    ("uni_pc", "UniPC"),
    ("uni_pc_bh2", "UniPC BH2"),
];

/// Scheduler ids used by stable-diffusion.cpp and ComfyUI, with their A1111 display names.
const SCHEDULE_IDS: &[(&str, &str)] = &[
    ("karras", "Karras"),
    ("exponential", "Exponential"),
    ("sgm_uniform", "SGM Uniform"),
    ("simple", "Simple"),
    ("normal", "Normal"),
    ("ddim_uniform", "DDIM"),
    ("beta", "Beta"),
    ("kl_optimal", "KL Optimal"),
];

/// What could be read from a `parameters` text; fields the text lacked are `None`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Parsed {
    /// The positive prompt.
    pub prompt: String,
    /// The negative prompt (empty when the text had no `Negative prompt:` line).
    pub negative_prompt: String,
    /// `Steps`.
    pub steps: Option<u32>,
    /// `Sampler`, as a display name with any legacy schedule suffix split off.
    pub sampler: Option<String>,
    /// `Schedule type`, or the suffix split off a legacy sampler name.
    pub schedule: Option<String>,
    /// `CFG scale`.
    pub cfg: Option<f64>,
    /// `Distilled CFG Scale` (Forge, Flux dev).
    pub guidance: Option<f64>,
    /// `Max sequence length` (Sumi, T5 tokens).
    pub max_sequence_length: Option<u32>,
    /// `Seed`.
    pub seed: Option<u64>,
    /// Width from `Size`.
    pub width: Option<u32>,
    /// Height from `Size`.
    pub height: Option<u32>,
    /// `Model`.
    pub model_name: Option<String>,
    /// `Model hash`.
    pub model_hash: Option<String>,
    /// `VAE`.
    pub vae_name: Option<String>,
    /// `VAE hash`.
    pub vae_hash: Option<String>,
    /// Forge's `Module 1`, `Module 2`, ..., in their order.
    pub modules: Vec<String>,
    /// `RNG` (A1111's noise source), lower-cased when it is one of A1111's own values.
    pub noise_source: Option<String>,
    /// `ENSD`.
    pub ensd: Option<u64>,
    /// `Variation seed`.
    pub variation_seed: Option<u64>,
    /// `Variation seed strength`.
    pub variation_strength: Option<f64>,
    /// `Clip skip`.
    pub clip_skip: Option<u32>,
    /// `Emphasis`, as Sumi names the mode.
    pub emphasis: Option<String>,
    /// `TI hashes`.
    pub ti_hashes: Vec<NamedHash>,
    /// `Lora hashes`.
    pub lora_hashes: Vec<NamedHash>,
    /// The image-to-image and hires fix keys.
    pub img2img: img2img::Img2ImgKeys,
    /// Every other pair (and known keys whose values could not be read), in text order.
    pub extras: Vec<(String, String)>,
    /// Whether a settings line (`Steps: ...`) was found at all.
    pub has_settings: bool,
}

/// Why parsed text cannot be turned into a complete request.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum InfotextError {
    /// The text has no `Steps: ..., Sampler: ...` settings line.
    #[error("the parameters text has no settings line (\"Steps: ..., Sampler: ..., Seed: ...\"); it was not written by an A1111-compatible tool")]
    NoSettings,
    /// A setting a request needs is absent or unreadable.
    #[error("the parameters text lacks a readable \"{0}\" setting; re-save the image from its tool or import it with its settings fixed")]
    Missing(&'static str),
}

impl Parsed {
    /// Builds the full request, failing when a needed setting is absent.
    pub fn to_params(&self) -> Result<GenerationParams, InfotextError> {
        if !self.has_settings {
            return Err(InfotextError::NoSettings);
        }
        let mut p = GenerationParams {
            prompt: self.prompt.clone(),
            negative_prompt: self.negative_prompt.clone(),
            seed: self.seed.ok_or(InfotextError::Missing("Seed"))?,
            steps: self.steps.ok_or(InfotextError::Missing("Steps"))?,
            cfg: self.cfg.ok_or(InfotextError::Missing("CFG scale"))?,
            guidance: self.guidance,
            // Forge pads Flux's T5 prompts to 256 tokens and writes no length (only a
            // guidance-distilled model writes "Distilled CFG Scale"); Sumi writes the one it used.
            max_sequence_length: self
                .max_sequence_length
                .or(self.guidance.map(|_| FORGE_T5_TOKENS)),
            sampler: self
                .sampler
                .clone()
                .ok_or(InfotextError::Missing("Sampler"))?,
            schedule: self
                .schedule
                .clone()
                .unwrap_or_else(|| DEFAULT_SCHEDULE.to_string()),
            width: self.width.ok_or(InfotextError::Missing("Size"))?,
            height: self.height.ok_or(InfotextError::Missing("Size"))?,
            model_name: self.model_name.clone().unwrap_or_default(),
            model_hash: self.model_hash.clone(),
            vae_name: self.vae_name.clone(),
            vae_hash: self.vae_hash.clone(),
            modules: self.modules.clone(),
            // A1111 leaves RNG out for its default, the GPU's own generator.
            noise_source: self
                .noise_source
                .clone()
                .unwrap_or_else(|| "gpu".to_string()),
            ensd: self.ensd.unwrap_or(0),
            variation_seed: self.variation_seed,
            variation_strength: self.variation_strength.unwrap_or(0.0),
            clip_skip: self.clip_skip.unwrap_or(1),
            emphasis: self
                .emphasis
                .clone()
                .unwrap_or_else(|| "original".to_string()),
            // A1111 writes 8-bit images by truncation.
            quantize: "truncate".into(),
            ti_hashes: self.ti_hashes.clone(),
            lora_hashes: self.lora_hashes.clone(),
            img2img: None,
            hires: None,
        };
        img2img::into_params(&self.img2img, &mut p);
        Ok(p)
    }
}

/// Writes a request as A1111 `parameters` text.
pub fn format(p: &GenerationParams) -> String {
    let mut out = p.prompt.clone();
    if !p.negative_prompt.is_empty() {
        out.push('\n');
        out.push_str(NEGATIVE_PREFIX);
        out.push(' ');
        out.push_str(&p.negative_prompt);
    }
    out.push('\n');
    let mut pairs: Vec<(&str, String)> = vec![
        ("Steps", p.steps.to_string()),
        ("Sampler", p.sampler.clone()),
    ];
    if !p.schedule.is_empty() {
        pairs.push(("Schedule type", p.schedule.clone()));
    }
    pairs.push(("CFG scale", p.cfg.to_string()));
    if let Some(g) = p.guidance {
        pairs.push(("Distilled CFG Scale", g.to_string()));
    }
    pairs.push(("Seed", p.seed.to_string()));
    pairs.push(("Size", format!("{}x{}", p.width, p.height)));
    if let Some(hash) = &p.model_hash {
        pairs.push(("Model hash", hash.clone()));
    }
    if !p.model_name.is_empty() {
        pairs.push(("Model", p.model_name.clone()));
    }
    if let Some(hash) = &p.vae_hash {
        pairs.push(("VAE hash", hash.clone()));
    }
    // Forge takes an A1111 `VAE` as the only module and then reads no `Module N`.
    if let Some(name) = p.vae_name.as_ref().filter(|_| p.modules.is_empty()) {
        pairs.push(("VAE", name.clone()));
    }
    if let Some(seed) = p.variation_seed.filter(|_| p.variation_strength != 0.0) {
        pairs.push(("Variation seed", seed.to_string()));
        pairs.push(("Variation seed strength", p.variation_strength.to_string()));
    }
    pairs.extend(img2img::strength_pair(p));
    if p.clip_skip > 1 {
        pairs.push(("Clip skip", p.clip_skip.to_string()));
    }
    if p.ensd != 0 {
        pairs.push(("ENSD", p.ensd.to_string()));
    }
    if let Some(n) = p.max_sequence_length {
        pairs.push(("Max sequence length", n.to_string()));
    }
    // A1111 writes no RNG for its default source, the GPU's generator.
    if !p.noise_source.is_empty() && p.noise_source != "gpu" {
        pairs.push(("RNG", rng_to_a1111(&p.noise_source)));
    }
    // A1111 adds these while it runs: LoRAs when they activate, then the text encoder's notes.
    if !p.lora_hashes.is_empty() {
        pairs.push(("Lora hashes", format_hashes(&p.lora_hashes)));
    }
    if !p.ti_hashes.is_empty() {
        pairs.push(("TI hashes", format_hashes(&p.ti_hashes)));
    }
    if let Some(name) = emphasis_to_a1111(&p.emphasis).filter(|_| has_weights(&p.prompt)) {
        pairs.push(("Emphasis", name.to_string()));
    }
    pairs.extend(img2img::extra_pairs(p));
    // Forge writes its modules last.
    let modules: Vec<String> = (1..=p.modules.len())
        .map(|i| format!("Module {i}"))
        .collect();
    pairs.extend(
        modules
            .iter()
            .map(String::as_str)
            .zip(p.modules.iter().cloned()),
    );
    let line: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{k}: {}", quote(v)))
        .collect();
    out.push_str(&line.join(", "));
    out
}

/// Quotes a value the way A1111 does, and also where a plain value would not read back exactly.
fn quote(v: &str) -> String {
    let needs =
        v.contains([',', ':', '\n']) || v.starts_with('"') || v.trim() != v || v.contains('\r');
    if needs {
        serde_json::to_string(v).unwrap_or_else(|_| v.to_string())
    } else {
        v.to_string()
    }
}

/// A1111 spells its noise sources in capitals; Sumi's lower-case ids map onto them.
fn rng_to_a1111(source: &str) -> String {
    match source {
        "cpu" | "gpu" | "nv" => source.to_uppercase(),
        other => other.to_string(),
    }
}

/// A1111's name of an emphasis mode, for every mode but its default.
fn emphasis_to_a1111(mode: &str) -> Option<&str> {
    EMPHASIS_NAMES
        .iter()
        .find(|(id, _)| *id == mode)
        .map_or(Some(mode), |(_, name)| Some(*name))
        .filter(|_| mode != "original")
}

/// Sumi's emphasis modes and A1111's names of them.
const EMPHASIS_NAMES: &[(&str, &str)] = &[
    ("original", "Original"),
    ("no-norm", "No norm"),
    ("ignore", "Ignore"),
    ("none", "None"),
];

/// Whether a prompt has emphasis brackets (A1111 writes `Emphasis` only then).
fn has_weights(prompt: &str) -> bool {
    prompt.contains(['(', ')', '[', ']'])
}

/// `name: hash, name: hash`, as A1111 writes `Lora hashes` and `TI hashes`.
fn format_hashes(list: &[NamedHash]) -> String {
    let items: Vec<String> = list
        .iter()
        .map(|h| format!("{}: {}", h.name, h.hash))
        .collect();
    items.join(", ")
}

/// Reads a `name: hash, name: hash` list; `None` when an item is not `name: hash`.
fn parse_hashes(value: &str) -> Option<Vec<NamedHash>> {
    value
        .split(',')
        .filter(|item| !item.trim().is_empty())
        .map(|item| {
            let (name, hash) = item.rsplit_once(':')?;
            let (name, hash) = (name.trim(), hash.trim());
            let hex = !hash.is_empty() && hash.chars().all(|c| c.is_ascii_hexdigit());
            (hex && !name.is_empty()).then(|| NamedHash {
                name: name.to_string(),
                hash: hash.to_ascii_lowercase(),
            })
        })
        .collect()
}

/// The inverse of [`rng_to_a1111`].
fn rng_from_a1111(source: &str) -> String {
    match source {
        "CPU" | "GPU" | "NV" => source.to_lowercase(),
        other => other.to_string(),
    }
}

/// Reads `parameters` text; never fails: what cannot be read ends up in the prompt or `extras`.
pub fn parse(text: &str) -> Parsed {
    let mut parsed = Parsed::default();
    let body = text.trim_end_matches(['\r', '\n']);
    let (head, settings) = match body.rfind('\n') {
        Some(i) => (&body[..i], &body[i + 1..]),
        None => ("", body),
    };
    let pairs = parse_pairs(settings.trim_end_matches('\r'));
    let head = match pairs {
        Some(pairs) if pairs.len() >= 3 => {
            parsed.has_settings = true;
            for (k, v) in pairs {
                apply_pair(&mut parsed, k, v);
            }
            split_legacy_sampler(&mut parsed);
            head
        }
        _ => text,
    };
    let (prompt, negative) = split_negative(head);
    parsed.prompt = prompt;
    parsed.negative_prompt = negative;
    parsed
}

/// Splits the lines before the settings line into prompt and negative prompt.
fn split_negative(head: &str) -> (String, String) {
    let mut offset = 0;
    for line in head.split('\n') {
        if line.starts_with(NEGATIVE_PREFIX) {
            let prompt = if offset == 0 { "" } else { &head[..offset - 1] };
            let after = &head[offset + NEGATIVE_PREFIX.len()..];
            let negative = after.strip_prefix(' ').unwrap_or(after);
            return (prompt.to_string(), negative.to_string());
        }
        offset += line.len() + 1;
    }
    (head.to_string(), String::new())
}

/// Stores one pair into its field, or into `extras` when unknown or unreadable.
fn apply_pair(p: &mut Parsed, key: String, value: String) {
    let ok = match key.as_str() {
        "Steps" => value.parse().map(|v| p.steps = Some(v)).is_ok(),
        "Sampler" => {
            let name = SAMPLER_IDS
                .iter()
                .find(|(id, _)| *id == value)
                .map(|(_, name)| *name)
                .or_else(|| crate::comfy::sampler_name(&value))
                .unwrap_or(value.as_str());
            p.sampler = Some(name.to_string());
            true
        }
        "Schedule type" => {
            let name = SCHEDULE_IDS
                .iter()
                .find(|(id, _)| *id == value)
                .map(|(_, name)| *name)
                .or_else(|| crate::comfy::schedule_name(&value))
                .unwrap_or(value.as_str());
            p.schedule = Some(name.to_string());
            true
        }
        // "NaN" and "inf" parse as numbers but are no guidance scale (and not storable).
        "CFG scale" => value
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .map(|v| p.cfg = Some(v))
            .is_some(),
        "Seed" => value.parse().map(|v| p.seed = Some(v)).is_ok(),
        "Size" => match value.split_once('x') {
            Some((w, h)) => match (w.trim().parse(), h.trim().parse()) {
                (Ok(w), Ok(h)) => {
                    p.width = Some(w);
                    p.height = Some(h);
                    true
                }
                _ => false,
            },
            None => false,
        },
        "Model hash" => {
            p.model_hash = Some(value.clone());
            true
        }
        "Model" => {
            p.model_name = Some(value.clone());
            true
        }
        "VAE hash" => {
            p.vae_hash = Some(value.clone());
            true
        }
        "VAE" => {
            p.vae_name = Some(value.clone());
            true
        }
        "RNG" => {
            p.noise_source = Some(rng_from_a1111(&value));
            true
        }
        "ENSD" => value.parse().map(|v| p.ensd = Some(v)).is_ok(),
        "Variation seed" => value.parse().map(|v| p.variation_seed = Some(v)).is_ok(),
        "Variation seed strength" => value
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .map(|v| p.variation_strength = Some(v))
            .is_some(),
        "Clip skip" => value.parse().map(|v| p.clip_skip = Some(v)).is_ok(),
        "Distilled CFG Scale" => value
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .map(|v| p.guidance = Some(v))
            .is_some(),
        "Max sequence length" => value
            .parse()
            .map(|v| p.max_sequence_length = Some(v))
            .is_ok(),
        "TI hashes" => parse_hashes(&value).map(|v| p.ti_hashes = v).is_some(),
        "Lora hashes" => parse_hashes(&value).map(|v| p.lora_hashes = v).is_some(),
        "Emphasis" => {
            let mode = EMPHASIS_NAMES
                .iter()
                .find(|(_, name)| *name == value)
                .map_or(value.as_str(), |(id, _)| id);
            p.emphasis = Some(mode.to_string());
            true
        }
        other if module_number(other) == Some(p.modules.len() + 1) => {
            p.modules.push(value.clone());
            true
        }
        other => img2img::apply(&mut p.img2img, other, &value),
    };
    if !ok {
        p.extras.push((key, value));
    }
}

/// N of Forge's `Module N` key.
fn module_number(key: &str) -> Option<usize> {
    key.strip_prefix("Module ")?.parse().ok()
}

/// Splits "DPM++ 2M Karras" into sampler "DPM++ 2M" and schedule "Karras" when no schedule was given.
fn split_legacy_sampler(p: &mut Parsed) {
    if p.schedule.is_some() {
        return;
    }
    let Some(sampler) = p.sampler.clone() else {
        return;
    };
    for suffix in LEGACY_SCHEDULE_SUFFIXES {
        let with_space = sampler
            .strip_suffix(suffix)
            .and_then(|s| s.strip_suffix(' '));
        if let Some(base) = with_space.filter(|b| !b.trim().is_empty()) {
            p.sampler = Some(base.to_string());
            p.schedule = Some((*suffix).to_string());
            return;
        }
    }
}

/// Reads a settings line as `Key: value` pairs; `None` when the line is not one.
fn parse_pairs(line: &str) -> Option<Vec<(String, String)>> {
    let mut pairs = Vec::new();
    let mut rest = line;
    loop {
        rest = rest.trim_start();
        if rest.is_empty() {
            break;
        }
        let colon = rest.find(':')?;
        let key = rest[..colon].trim_end();
        if !valid_key(key) {
            return None;
        }
        let after = rest[colon + 1..].trim_start_matches([' ', '\t']);
        let (value, remainder) = read_value(after);
        pairs.push((key.to_string(), value));
        let remainder = remainder.trim_start_matches([' ', '\t']);
        rest = match remainder.strip_prefix(',') {
            Some(r) => r,
            None if remainder.is_empty() => remainder,
            None => return None,
        };
    }
    Some(pairs)
}

/// A key as A1111 writes them: a word character, then word characters, spaces, `-` or `/`.
fn valid_key(key: &str) -> bool {
    let mut chars = key.chars();
    match chars.next() {
        Some(c) if c.is_alphanumeric() || c == '_' => {}
        _ => return false,
    }
    key.chars()
        .all(|c| c.is_alphanumeric() || matches!(c, '_' | ' ' | '-' | '/' | '.' | '(' | ')'))
}

/// Reads one value (JSON-quoted or plain up to the next comma); returns it and the rest of the line.
fn read_value(s: &str) -> (String, &str) {
    if s.starts_with('"') {
        if let Some(end) = closing_quote(s) {
            if let Ok(v) = serde_json::from_str::<String>(&s[..=end]) {
                return (v, &s[end + 1..]);
            }
        }
    }
    let end = s.find(',').unwrap_or(s.len());
    (s[..end].trim_end().to_string(), &s[end..])
}

/// Byte index of the quote that closes the JSON string starting at `s[0]`.
fn closing_quote(s: &str) -> Option<usize> {
    let mut escaped = false;
    for (i, b) in s.bytes().enumerate().skip(1) {
        match (escaped, b) {
            (true, _) => escaped = false,
            (false, b'\\') => escaped = true,
            (false, b'"') => return Some(i),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests;
