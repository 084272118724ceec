//! The model, CLIP and VAE chains behind a sampler: the checkpoint (or a model and its text
//! encoders loaded apart), LoRA loaders, clip skip and the prompt texts, turned into Sumi's
//! settings (LoRAs as A1111 prompt tags).

use super::graph::{shown, Node};
use super::names::file_stem;
use super::Walk;
use crate::record::GenerationParams;

/// Longest chain of loader nodes followed (a longer one, or a loop, is not understood).
const MAX_CHAIN: usize = 64;
/// Classes that load a checkpoint (model, CLIP and VAE).
const CHECKPOINTS: &[&str] = &["CheckpointLoaderSimple", "CheckpointLoader"];
/// Classes that load a diffusion model alone (Flux files), its text encoders and VAE loaded by
/// other nodes.
pub(super) const MODEL_LOADERS: &[&str] = &["UNETLoader", "UnetLoaderGGUF"];

/// A LoRA applied by a loader node, with the strength it has on one chain.
#[derive(Debug, Clone, PartialEq)]
struct Lora<'g> {
    node: &'g str,
    file: &'g str,
    strength: f64,
}

/// What feeds a text encoder.
#[derive(Debug, Default, Clone, PartialEq)]
struct ClipChain<'g> {
    checkpoint: Option<Node<'g>>,
    /// A `DualCLIPLoader` that loads the text encoders apart from the model.
    encoders: Option<Node<'g>>,
    clip_skip: Option<u32>,
    loras: Vec<Lora<'g>>,
}

/// A conditioning: its text, how it was encoded, and what was done to it after.
#[derive(Debug, Default)]
struct Conditioning<'g> {
    text: String,
    chain: ClipChain<'g>,
    /// The distilled guidance a `FluxGuidance` or `CLIPTextEncodeFlux` gave it (nearest first).
    guidance: Option<f64>,
    /// Whether a `ConditioningZeroOut` replaced it with zeros.
    zeroed: bool,
}

impl<'g> Walk<'g> {
    /// Reads the checkpoint, LoRAs, clip skip and both prompts of sampler `s` into `p`.
    pub(super) fn read_model_and_prompts(&mut self, s: Node<'g>, p: &mut GenerationParams) {
        let Some(s) = self.guider(s) else { return };
        let (checkpoint, model_loras) = self.model_chain(s);
        let one_conditioning = s.class == "BasicGuider";
        let positive = if one_conditioning {
            self.conditioning(s, "conditioning")
        } else {
            self.conditioning(s, "positive")
        };
        let negative = if one_conditioning {
            Conditioning {
                chain: positive.chain.clone(),
                zeroed: true,
                ..Default::default()
            }
        } else {
            self.conditioning(s, "negative")
        };
        if positive.chain != negative.chain {
            self.fail(
                "the prompt and the negative prompt are encoded with different CLIP settings"
                    .into(),
            );
        }
        let clip_checkpoint = positive.chain.checkpoint;
        if let (Some(a), Some(b)) = (checkpoint, clip_checkpoint) {
            if a != b {
                self.fail(format!(
                    "the model comes from {} but the text encoder from {}",
                    a.label(),
                    b.label()
                ));
            }
        }
        if let Some(c) = checkpoint.or(clip_checkpoint) {
            let input = if MODEL_LOADERS.contains(&c.class) {
                "unet_name"
            } else {
                "ckpt_name"
            };
            if let Some(file) = self.ok(self.g.str_of(c, input)) {
                p.model_name = file_stem(file).to_string();
            }
        }
        if let Some(encoders) = positive.chain.encoders {
            self.read_text_encoders(encoders, p);
        }
        p.guidance = positive.guidance;
        if positive.guidance.is_some() || positive.chain.encoders.is_some() {
            p.max_sequence_length = Some(super::flux::T5_MIN_TOKENS);
        }
        if positive.zeroed {
            self.fail("the prompt's conditioning is zeroed (ConditioningZeroOut)".into());
        }
        if negative.zeroed && p.cfg != 1.0 && !one_conditioning {
            self.fail(format!(
                "the negative conditioning is zeroed (ConditioningZeroOut) and CFG is {}, while \
                 Sumi's negative is always an encoded prompt",
                p.cfg
            ));
        }
        p.clip_skip = positive.chain.clip_skip.unwrap_or(1);
        if let Some(tag) = tag_like(&positive.text) {
            self.notes.push(format!(
                "the prompt holds {}, which ComfyUI encoded as words but Sumi reads as an extra-network tag",
                shown(tag)
            ));
        }
        let tags = self.lora_tags(&model_loras, &positive.chain.loras);
        p.prompt = with_tags(positive.text, &tags);
        // A zeroed negative has no text, whatever was encoded before it was zeroed.
        p.negative_prompt = if negative.zeroed {
            String::new()
        } else {
            negative.text
        };
    }

    /// Follows the sampler's model back to its checkpoint, collecting LoRAs (nearest first).
    fn model_chain(&mut self, s: Node<'g>) -> (Option<Node<'g>>, Vec<Lora<'g>>) {
        let mut loras = Vec::new();
        let mut at = self.g.source(s, "model");
        if at.is_none() {
            self.fail(format!("{} is linked to no model", s.label()));
        }
        for _ in 0..MAX_CHAIN {
            let Some(node) = at else {
                return (None, loras);
            };
            match node.class {
                c if CHECKPOINTS.contains(&c) => return (Some(node), loras),
                c if MODEL_LOADERS.contains(&c) => {
                    self.note_weight_dtype(node);
                    return (Some(node), loras);
                }
                "ModelSamplingFlux" => self.check_flux_shift(node),
                "LoraLoader" | "LoraLoaderModelOnly" => {
                    loras.extend(self.lora(node, "strength_model"))
                }
                _ => self.fail(format!(
                    "the model passes through {}, which Sumi does not apply",
                    node.label()
                )),
            }
            at = self.g.source(node, "model");
        }
        self.fail("the model's chain of nodes is too long or loops".into());
        (None, loras)
    }

    /// Reads the conditioning input `name` of `s` (a sampler or a guider), through the nodes
    /// that change a conditioning after it is encoded (`FluxGuidance`, `ConditioningZeroOut`).
    fn conditioning(&mut self, s: Node<'g>, name: &str) -> Conditioning<'g> {
        let g = self.g;
        let mut cond = Conditioning::default();
        let Some(mut node) = g.source(s, name) else {
            self.fail(format!("{} is linked to no {name} conditioning", s.label()));
            return cond;
        };
        for _ in 0..MAX_CHAIN {
            match node.class {
                "FluxGuidance" => {
                    let guidance = self.ok(g.f64_of(node, "guidance"));
                    cond.guidance = cond.guidance.or(guidance);
                }
                "ConditioningZeroOut" => cond.zeroed = true,
                _ => break,
            }
            let Some(next) = g.source(node, "conditioning") else {
                self.fail(format!("{} is linked to no conditioning", node.label()));
                return cond;
            };
            node = next;
        }
        let text = match node.class {
            "CLIPTextEncode" => self.ok(g.str_of(node, "text")),
            "CLIPTextEncodeFlux" => {
                let (text, guidance) = self.flux_text(node);
                cond.guidance = cond.guidance.or(guidance);
                text
            }
            _ => {
                self.fail(format!(
                    "the {name} conditioning comes from {}, not from CLIPTextEncode",
                    node.label()
                ));
                g.str_of(node, "text")
                    .or_else(|_| g.str_of(node, "text_g"))
                    .ok()
            }
        };
        cond.text = text.unwrap_or_default().to_string();
        if let Some(clip) = g.source(node, "clip") {
            cond.chain = self.clip_chain(clip);
        }
        cond
    }

    /// Follows a text encoder's CLIP back to its checkpoint, from `at`.
    fn clip_chain(&mut self, mut at: Node<'g>) -> ClipChain<'g> {
        let mut chain = ClipChain::default();
        for _ in 0..MAX_CHAIN {
            match at.class {
                c if CHECKPOINTS.contains(&c) => {
                    chain.checkpoint = Some(at);
                    return chain;
                }
                "DualCLIPLoader" => {
                    self.check_dual_clip(at);
                    chain.encoders = Some(at);
                    return chain;
                }
                "CLIPSetLastLayer" => self.clip_skip(at, &mut chain),
                "LoraLoader" => chain.loras.extend(self.lora(at, "strength_clip")),
                _ => self.fail(format!(
                    "the text encoder passes through {}, which Sumi does not apply",
                    at.label()
                )),
            }
            match self.g.source(at, "clip") {
                Some(next) => at = next,
                None => return chain,
            }
        }
        self.fail("the text encoder's chain of nodes is too long or loops".into());
        chain
    }

    /// Reads a `CLIPSetLastLayer`; the one nearest the encoder (met first) is the one that counts.
    fn clip_skip(&mut self, node: Node<'g>, chain: &mut ClipChain<'g>) {
        let Some(layer) = self.ok(self.g.i64_of(node, "stop_at_clip_layer")) else {
            return;
        };
        if chain.clip_skip.is_some() {
            return;
        }
        if (-24..=-1).contains(&layer) {
            chain.clip_skip = Some(layer.unsigned_abs() as u32);
        } else {
            self.fail(format!(
                "the stop_at_clip_layer of {} is {layer}, not from -24 to -1",
                node.label()
            ));
        }
    }

    /// The LoRA a loader node applies, with its strength input `strength`.
    fn lora(&mut self, node: Node<'g>, strength: &str) -> Option<Lora<'g>> {
        let file = self.ok(self.g.str_of(node, "lora_name"))?;
        let strength = self.ok(self.g.f64_of(node, strength))?;
        Some(Lora {
            node: node.id,
            file,
            strength,
        })
    }

    /// One A1111 tag per LoRA loader, in the order they apply (from the checkpoint out):
    /// `<lora:NAME:CLIP:MODEL>`, with one number when both strengths are equal.
    fn lora_tags(&mut self, model: &[Lora<'g>], clip: &[Lora<'g>]) -> Vec<String> {
        let mut order: Vec<&Lora> = model.iter().rev().collect();
        order.extend(
            clip.iter()
                .rev()
                .filter(|c| model.iter().all(|m| m.node != c.node)),
        );
        let strength = |list: &[Lora], node: &str| {
            list.iter()
                .find(|l| l.node == node)
                .map_or(0.0, |l| l.strength)
        };
        let mut tags = Vec::new();
        for lora in order {
            let (te, unet) = (strength(clip, lora.node), strength(model, lora.node));
            if te == 0.0 && unet == 0.0 {
                continue;
            }
            let name = file_stem(lora.file);
            if name.is_empty() || name.contains([':', '<', '>']) {
                self.fail(format!(
                    "the LoRA name {} cannot be written as a prompt tag",
                    shown(lora.file)
                ));
                continue;
            }
            tags.push(if te == unet {
                format!("<lora:{name}:{te}>")
            } else {
                format!("<lora:{name}:{te}:{unet}>")
            });
        }
        tags
    }

    /// Reads a VAE loaded apart from the checkpoint: A1111's `VAE` (its file name), or the
    /// first of Forge's modules when the text encoders were loaded apart too.
    pub(super) fn read_vae(&mut self, decode: Node<'g>, p: &mut GenerationParams) {
        match self.g.source(decode, "vae") {
            Some(v) if CHECKPOINTS.contains(&v.class) => {}
            Some(v) if v.class == "VAELoader" => {
                if let Some(file) = self.ok(self.g.str_of(v, "vae_name")) {
                    self.notes.push(format!(
                        "decoded with the separate VAE {}, which a re-run looks for beside the \
                         model",
                        shown(file)
                    ));
                    match p.modules.is_empty() {
                        true => p.vae_name = Some(file_name(file).to_string()),
                        false => p.modules.insert(0, file_stem(file).to_string()),
                    }
                }
            }
            Some(v) => self.fail(format!("the VAE comes from {}", v.label())),
            None => self.fail(format!("{} is linked to no VAE", decode.label())),
        }
    }
}

/// A file's name without the folders ComfyUI lists it under.
fn file_name(file: &str) -> &str {
    file.rsplit(['/', '\\']).next().unwrap_or(file)
}

/// The prompt with the LoRA tags after it. A space, not a comma, joins them: A1111 cuts a tag
/// out and encodes what is left, where a comma would be one more token.
fn with_tags(prompt: String, tags: &[String]) -> String {
    match (prompt.is_empty(), tags.is_empty()) {
        (_, true) => prompt,
        (true, false) => tags.join(" "),
        (false, false) => format!("{prompt} {}", tags.join(" ")),
    }
}

/// The first piece of text shaped like an extra-network tag (`<name:args>`), if any.
fn tag_like(text: &str) -> Option<&str> {
    let mut rest = text;
    while let Some(open) = rest.find('<') {
        let after = &rest[open + 1..];
        let name_len = after
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        if name_len > 0 && after[name_len..].starts_with(':') {
            if let Some(close) = after.find('>') {
                return Some(&rest[open..open + close + 2]);
            }
        }
        rest = after;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_stems_drop_folders_and_weight_extensions_only() {
        assert_eq!(
            file_stem("SDXL\\sd_xl_base_1.0.safetensors"),
            "sd_xl_base_1.0"
        );
        assert_eq!(file_stem("styles/ink.pt"), "ink");
        assert_eq!(file_stem("v1-5"), "v1-5");
        assert_eq!(file_stem("model.v2"), "model.v2");
    }

    #[test]
    fn tags_follow_the_prompt_after_a_space() {
        let tags = vec!["<lora:a:1>".to_string()];
        assert_eq!(with_tags("a cat".into(), &tags), "a cat <lora:a:1>");
        assert_eq!(with_tags(String::new(), &tags), "<lora:a:1>");
        assert_eq!(with_tags("a cat".into(), &[]), "a cat");
    }

    #[test]
    fn tag_like_text_is_found() {
        assert_eq!(tag_like("x <lora:foo:0.5> y"), Some("<lora:foo:0.5>"));
        assert_eq!(tag_like("a < b: c"), None);
        assert_eq!(tag_like("<3 <hypernet:h:1>"), Some("<hypernet:h:1>"));
        assert_eq!(tag_like("é<é:>"), Some("<é:>"));
    }
}
