//! The nodes of ComfyUI's Flux graphs that load or shape the model and its text: the weight
//! precision of `UNETLoader`, the text encoders of `DualCLIPLoader`, `CLIPTextEncodeFlux`'s two
//! texts, and the time shift of `ModelSamplingFlux`.

use super::graph::{shown, Node};
use super::names::file_stem;
use super::Walk;
use crate::record::GenerationParams;

/// The `mu` of ComfyUI's Flux dev model sampling when no node changes it, which Sumi's Flux
/// schedules use (`ModelSamplingFlux` in `comfy/model_sampling.py`).
const DEV_MU: f64 = 1.15;
/// ComfyUI pads the T5 prompt of a Flux model to at least this many tokens (and cuts none),
/// for dev as for schnell (`T5XXLTokenizer` in `comfy/text_encoders/flux.py`).
pub(super) const T5_MIN_TOKENS: u32 = 256;
/// Latent tokens at which `ModelSamplingFlux` reaches its `base_shift` and its `max_shift`.
const BASE_TOKENS: f64 = 256.0;
const MAX_TOKENS: f64 = 4096.0;

impl<'g> Walk<'g> {
    /// Notes a model whose weights ComfyUI ran at another precision than the file's.
    pub(super) fn note_weight_dtype(&mut self, loader: Node<'g>) {
        let Ok(dtype) = self.g.str_of(loader, "weight_dtype") else {
            return;
        };
        if dtype != "default" {
            let file = self.g.str_of(loader, "unet_name").unwrap_or_default();
            self.notes.push(format!(
                "ComfyUI ran the weights of {} as {dtype}, so a re-run at the file's own precision \
                 differs slightly",
                shown(file_stem(file))
            ));
        }
    }

    /// Fails unless a `DualCLIPLoader` loads Flux's text encoders.
    pub(super) fn check_dual_clip(&mut self, loader: Node<'g>) {
        let Some(kind) = self.ok(self.g.str_of(loader, "type")) else {
            return;
        };
        if kind != "flux" {
            self.fail(format!(
                "{} loads text encoders of type {}, and Sumi reads only Flux's pair from it",
                loader.label(),
                shown(kind)
            ));
        }
    }

    /// Reads the text encoder files a `DualCLIPLoader` loaded as Forge's modules, which a re-run
    /// looks for beside the model.
    pub(super) fn read_text_encoders(&mut self, loader: Node<'g>, p: &mut GenerationParams) {
        let files: Vec<&str> = ["clip_name1", "clip_name2"]
            .iter()
            .filter_map(|n| self.g.str_of(loader, n).ok())
            .collect();
        if !files.is_empty() {
            self.notes.push(format!(
                "encoded with the text encoders {}, which a re-run looks for beside the model",
                files
                    .iter()
                    .map(|f| shown(f))
                    .collect::<Vec<_>>()
                    .join(" and ")
            ));
        }
        p.modules
            .extend(files.iter().map(|f| file_stem(f).to_string()));
    }

    /// The text and guidance of a `CLIPTextEncodeFlux`. Sumi encodes one prompt with both
    /// encoders, so two different texts are not understood (the T5 one, which carries most of
    /// the prompt, is kept).
    pub(super) fn flux_text(&mut self, node: Node<'g>) -> (Option<&'g str>, Option<f64>) {
        let g = self.g;
        let guidance = self.ok(g.f64_of(node, "guidance"));
        let clip_l = self.ok(g.str_of(node, "clip_l"));
        let t5 = self.ok(g.str_of(node, "t5xxl"));
        if let (Some(a), Some(b)) = (clip_l, t5) {
            if a != b {
                self.fail(format!(
                    "{} gives CLIP-L and T5 different texts, and Sumi encodes one prompt with both \
                     (the T5 text is kept)",
                    node.label()
                ));
            }
        }
        (t5.or(clip_l), guidance)
    }

    /// Fails unless a `ModelSamplingFlux` shifts the sigmas as Sumi's Flux schedules do: its
    /// `mu` grows with the image's tokens from `base_shift` (256 tokens) to `max_shift` (4096),
    /// and only a `mu` of 1.15 (the defaults at 1024x1024) is ComfyUI's default for Flux dev.
    pub(super) fn check_flux_shift(&mut self, node: Node<'g>) {
        let g = self.g;
        let max = self.ok(g.f64_of(node, "max_shift"));
        let base = self.ok(g.f64_of(node, "base_shift"));
        let width = self.ok(g.u64_of(node, "width"));
        let height = self.ok(g.u64_of(node, "height"));
        let (Some(max), Some(base), Some(width), Some(height)) = (max, base, width, height) else {
            return;
        };
        let tokens = (width * height) as f64 / 256.0;
        let slope = (max - base) / (MAX_TOKENS - BASE_TOKENS);
        let mu = base + slope * (tokens - BASE_TOKENS);
        if (mu - DEV_MU).abs() > 1e-9 {
            self.fail(format!(
                "{} shifts the sigmas by mu {mu:.4} for {width}x{height}, while Sumi's Flux \
                 schedules shift by ComfyUI's default {DEV_MU} for Flux dev",
                node.label()
            ));
        }
    }
}
