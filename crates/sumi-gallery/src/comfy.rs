//! Reading a ComfyUI PNG's settings from its `prompt` chunk: the API graph that made the image.
//! (ComfyUI also writes `workflow`, the editor's graph, which adds nothing a re-run needs.)
//!
//! Understood, the common txt2img shape: `SaveImage` <- `VAEDecode` <- one `KSampler` (or a
//! `KSamplerAdvanced` that runs every step), whose latent is an `EmptyLatentImage`, whose model
//! comes from `CheckpointLoaderSimple` through any `LoraLoader`/`LoraLoaderModelOnly` nodes, and
//! whose conditionings are `CLIPTextEncode` nodes fed by the same checkpoint's CLIP through
//! LoRA loaders and an optional `CLIPSetLastLayer`. A `VAELoader` may supply the decoder. Each
//! LoRA becomes an A1111 tag at the end of the prompt (`<lora:NAME:CLIP:MODEL>`, one number when
//! both strengths are equal), so that Sumi's LoRA mechanism loads the same files.
//!
//! Flux graphs are understood too: the model from `UNETLoader` (or ComfyUI-GGUF's
//! `UnetLoaderGGUF`) and its text encoders from `DualCLIPLoader`, `FluxGuidance` or
//! `CLIPTextEncodeFlux` setting the distilled guidance, `ConditioningZeroOut` as the unused
//! negative at CFG 1, `EmptySD3LatentImage`, and the `SamplerCustomAdvanced` shape of ComfyUI's
//! Flux example (`RandomNoise`, `KSamplerSelect`, `BasicScheduler`, `BasicGuider` or
//! `CFGGuider`), with a `ModelSamplingFlux` whose shift is the one Sumi's Flux schedules use.
//!
//! Recorded as ComfyUI runs: emphasis `comfy`, quantize `truncate` and noise source `comfy-nv`.
//! The starting noise of ComfyUI comes from the CPU whatever the hardware, so the source only
//! matters for samplers that add noise at each step, drawn on the sampling device: for those a
//! note says that an NVIDIA GPU is assumed (where most ComfyUI images are made). The `_gpu` SDE
//! samplers build their Brownian noise on the GPU, which no CPU reproduces: a note says so.
//!
//! Any other graph (img2img, upscalers, ControlNet, several samplers, custom nodes between the
//! sampler and the saved image) is read as far as it goes, the rest taking ComfyUI's defaults,
//! with a note per part not understood ([`NOT_UNDERSTOOD`]). Values linked from value nodes
//! (seed or text nodes) are followed one step.

mod chains;
mod custom;
mod flux;
mod graph;
mod names;
mod sampler;
#[cfg(test)]
mod tests;

use graph::{Graph, Node};

use crate::record::GenerationParams;

pub(crate) use names::{sampler_name, schedule_name};

/// Key of ComfyUI's text chunk holding the API graph.
pub const PROMPT_KEY: &str = "prompt";
/// What an imported ComfyUI image records as the engine that made it.
pub const ENGINE_NAME: &str = "ComfyUI";
/// How every note about a part of the graph that Sumi does not follow starts.
pub const NOT_UNDERSTOOD: &str = "ComfyUI graph not understood: ";

/// Sampler classes whose settings Sumi reads.
const SAMPLERS: &[&str] = &["KSampler", "KSamplerAdvanced", "SamplerCustomAdvanced"];
/// Classes that make an empty latent of a given size.
const EMPTY_LATENTS: &[&str] = &["EmptyLatentImage", "EmptySD3LatentImage"];
/// Decoder classes between the sampler and the saved image.
const DECODERS: &[&str] = &["VAEDecode", "VAEDecodeTiled"];
/// Classes that save (or show) the image, most specific first.
const SAVERS: &[&str] = &["SaveImage", "PreviewImage"];

/// What a ComfyUI graph says about the image.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    /// The settings, as far as they could be read (ComfyUI's defaults for the rest).
    pub params: GenerationParams,
    /// Sentences for the import's note: parts not understood first, then other remarks.
    pub notes: Vec<String>,
    /// Whether the whole graph has the understood shape (no [`NOT_UNDERSTOOD`] note).
    pub understood: bool,
}

/// Reads a `prompt` chunk; `None` when the text is not a ComfyUI API graph. `image_size`, the
/// PNG's own size, picks the saved image among several and sizes what the graph does not.
pub fn read(prompt: &str, image_size: Option<(u32, u32)>) -> Option<Reading> {
    let graph = Graph::parse(prompt)?;
    let mut walk = Walk {
        g: &graph,
        reasons: Vec::new(),
        notes: Vec::new(),
    };
    let params = walk.params(image_size);
    let understood = walk.reasons.is_empty();
    let notes = walk
        .reasons
        .iter()
        .map(|r| format!("{NOT_UNDERSTOOD}{r}"))
        .chain(walk.notes)
        .collect();
    Some(Reading {
        params,
        notes,
        understood,
    })
}

/// ComfyUI's starting values (`KSampler`, `EmptyLatentImage`) and its rules for a re-run.
pub fn defaults(image_size: Option<(u32, u32)>) -> GenerationParams {
    let (width, height) = image_size.unwrap_or((512, 512));
    GenerationParams {
        steps: 20,
        cfg: 8.0,
        sampler: "Euler".into(),
        schedule: "Normal".into(),
        width,
        height,
        ..with_comfy_rules(GenerationParams::default())
    }
}

/// `p` to be re-run as ComfyUI runs: its emphasis, its 8-bit conversion and its noise.
pub fn with_comfy_rules(p: GenerationParams) -> GenerationParams {
    GenerationParams {
        emphasis: "comfy".into(),
        quantize: "truncate".into(),
        noise_source: "comfy-nv".into(),
        ..p
    }
}

/// One reading of a graph: the reasons it is not understood and the other remarks so far.
struct Walk<'g> {
    g: &'g Graph,
    reasons: Vec<String>,
    notes: Vec<String>,
}

/// The path from a saved image back to its sampler.
struct Trace<'g> {
    decode: Option<Node<'g>>,
    sampler: Option<Node<'g>>,
    reasons: Vec<String>,
    notes: Vec<String>,
}

impl<'g> Walk<'g> {
    /// Records a reason the graph is not understood (once, though a loop may meet it often).
    fn fail(&mut self, why: String) {
        if !self.reasons.contains(&why) {
            self.reasons.push(why);
        }
    }

    /// The value, or `None` with its error recorded as a reason.
    fn ok<T>(&mut self, r: Result<T, String>) -> Option<T> {
        r.map_err(|why| self.fail(why)).ok()
    }

    /// Reads every setting the graph holds.
    fn params(&mut self, image_size: Option<(u32, u32)>) -> GenerationParams {
        let mut p = defaults(image_size);
        let Some(trace) = self.saved_image(image_size) else {
            return p;
        };
        self.reasons.extend(trace.reasons);
        self.notes.extend(trace.notes);
        let Some(s) = trace.sampler else {
            return p;
        };
        self.read_sampler(s, &mut p, image_size);
        self.read_model_and_prompts(s, &mut p);
        if let Some(decode) = trace.decode {
            self.read_vae(decode, &mut p);
        }
        p
    }

    /// The path of the saved image: among the nodes that save one, a plain path before one
    /// through other nodes, and then the one whose empty latent has the PNG's size.
    fn saved_image(&mut self, image_size: Option<(u32, u32)>) -> Option<Trace<'g>> {
        let outputs = self.outputs();
        if outputs.is_empty() {
            self.fail("no node saves an image (no SaveImage)".into());
            return None;
        }
        let mut traces: Vec<Trace> = outputs.into_iter().map(|o| self.trace(o)).collect();
        // A latent of the PNG's size beats one of unknown size, which beats another size.
        let rank = |t: &Trace| {
            let fit = match (image_size, self.latent_size(t.sampler)) {
                (Some(image), Some(latent)) if image == latent => 2,
                (Some(_), Some(_)) => 0,
                _ => 1,
            };
            (t.reasons.is_empty(), fit)
        };
        let best = traces.iter().map(rank).max()?;
        let mut samplers: Vec<&str> = traces
            .iter()
            .filter(|t| rank(t) == best)
            .filter_map(|t| t.sampler.map(|s| s.id))
            .collect();
        samplers.sort_unstable();
        samplers.dedup();
        let at = traces.iter().position(|t| rank(t) == best)?;
        let chosen = traces.swap_remove(at);
        if samplers.len() > 1 {
            let label = chosen.sampler.map(|s| s.label()).unwrap_or_default();
            self.fail(format!(
                "the graph saves images made by {} different samplers, and this one is taken to come from {label}",
                samplers.len()
            ));
        }
        Some(chosen)
    }

    /// The nodes that save the image: `SaveImage`, else `PreviewImage`, else any node that
    /// takes `images` and feeds no other node (a custom saver).
    fn outputs(&self) -> Vec<Node<'g>> {
        for class in SAVERS {
            let found: Vec<Node> = self.g.nodes().filter(|n| n.class == *class).collect();
            if !found.is_empty() {
                return found;
            }
        }
        let used = self.g.used_ids();
        self.g
            .nodes()
            .filter(|n| !used.contains(n.id) && self.g.source(*n, "images").is_some())
            .collect()
    }

    /// Follows a saved image back to its decoder and sampler.
    fn trace(&self, output: Node<'g>) -> Trace<'g> {
        let mut t = Trace {
            decode: None,
            sampler: None,
            reasons: Vec::new(),
            notes: Vec::new(),
        };
        let Some(image) = self.g.source(output, "images") else {
            t.reasons
                .push(format!("{} is linked to no image", output.label()));
            return t;
        };
        let sampler_class = |c: &str| SAMPLERS.contains(&c);
        if !DECODERS.contains(&image.class) {
            t.reasons.push(format!(
                "the saved image comes from {}, not straight from VAEDecode (an upscaler or another image step)",
                image.label()
            ));
            t.sampler = self.g.nearest_upstream(image, sampler_class);
            return t;
        }
        t.decode = Some(image);
        if image.class == "VAEDecodeTiled" {
            t.notes.push(
                "the image was decoded in tiles (VAEDecodeTiled) and Sumi decodes it whole, so a re-run may differ slightly"
                    .into(),
            );
        }
        match self.g.source(image, "samples") {
            Some(s) if sampler_class(s.class) => t.sampler = Some(s),
            Some(other) => {
                t.reasons.push(format!(
                    "the latent passes through {} between the sampler and the decoder",
                    other.label()
                ));
                t.sampler = self.g.nearest_upstream(other, sampler_class);
            }
            None => t
                .reasons
                .push(format!("{} is linked to no latent", image.label())),
        }
        if t.sampler.is_none() {
            t.reasons.push(
                "no KSampler, KSamplerAdvanced or SamplerCustomAdvanced makes the saved image"
                    .into(),
            );
        }
        t
    }

    /// Width and height of the empty latent a sampler starts from.
    fn latent_size(&self, sampler: Option<Node<'g>>) -> Option<(u32, u32)> {
        let latent = self.g.source(sampler?, "latent_image")?;
        if !EMPTY_LATENTS.contains(&latent.class) {
            return None;
        }
        let side = |name| {
            self.g
                .u64_of(latent, name)
                .ok()
                .and_then(|v| u32::try_from(v).ok())
        };
        Some((side("width")?, side("height")?))
    }
}
