//! The sampler node and the latent it starts from: seed, steps, CFG, sampler and scheduler,
//! size and batch, and the partial runs (`denoise`, `KSamplerAdvanced`'s step range) that
//! Sumi's settings cannot express.

use super::graph::{shown, Node};
use super::names::{self, StepNoise};
use super::Walk;
use crate::record::GenerationParams;

impl<'g> Walk<'g> {
    /// Reads the sampler `s` (a `KSampler` or `KSamplerAdvanced`) and its latent into `p`.
    pub(super) fn read_sampler(
        &mut self,
        s: Node<'g>,
        p: &mut GenerationParams,
        image_size: Option<(u32, u32)>,
    ) {
        let g = self.g;
        let empty_latent = self.read_latent(s, p, image_size);
        if s.class == "SamplerCustomAdvanced" {
            return self.read_custom_sampler(s, p, empty_latent);
        }
        let advanced = s.class == "KSamplerAdvanced";
        if let Some(seed) = self.ok(g.u64_of(s, if advanced { "noise_seed" } else { "seed" })) {
            p.seed = seed;
        }
        let steps = self.read_steps(s, p);
        if let Some(cfg) = self.ok(g.f64_of(s, "cfg")) {
            p.cfg = cfg;
        }
        if let Some(id) = self.ok(g.str_of(s, "sampler_name")) {
            p.sampler = self.sampler_name(id);
        }
        self.read_schedule(s, p);
        let Some(steps) = steps else { return };
        if advanced {
            self.check_step_range(s, steps);
        } else {
            self.check_denoise(s, steps, empty_latent);
        }
    }

    /// Reads the `steps` of node `n` into `p`, returning them when they could be read.
    pub(super) fn read_steps(&mut self, n: Node<'g>, p: &mut GenerationParams) -> Option<u64> {
        let steps = self.ok(self.g.u64_of(n, "steps"))?;
        match u32::try_from(steps) {
            Ok(v) => p.steps = v,
            Err(_) => self.fail(format!("the steps of {} are too many", n.label())),
        }
        Some(steps)
    }

    /// Reads the `scheduler` of node `n` into `p`, by its A1111 name where it has one.
    pub(super) fn read_schedule(&mut self, n: Node<'g>, p: &mut GenerationParams) {
        if let Some(id) = self.ok(self.g.str_of(n, "scheduler")) {
            p.schedule = names::schedule_name(id).unwrap_or(id).to_string();
        }
    }

    /// The A1111 name Sumi records for a ComfyUI sampler id (the id itself when it has none),
    /// noting what of its noise a re-run cannot reproduce or has to assume.
    pub(super) fn sampler_name(&mut self, id: &str) -> String {
        let Some(entry) = names::sampler(id) else {
            return id.to_string();
        };
        match entry.noise {
            StepNoise::Device => self.notes.push(format!(
                "{id} adds noise at every step, which ComfyUI draws on the device it samples on: \
                 the noise source comfy-nv assumes an NVIDIA GPU (where most ComfyUI images are \
                 made), comfy-cpu fits an image made on a CPU, and one made on another kind of \
                 GPU cannot be re-run exactly"
            )),
            StepNoise::BrownianGpu => self.notes.push(format!(
                "{id} built its Brownian noise on the GPU, which cannot be reproduced: a re-run \
                 uses the Brownian noise {} builds on the CPU, so details differ",
                id.trim_end_matches("_gpu")
            )),
            StepNoise::None | StepNoise::BrownianCpu => {}
        }
        entry.name.to_string()
    }

    /// Reads the latent the sampler starts from into `p`; true when it is an empty latent.
    fn read_latent(
        &mut self,
        s: Node<'g>,
        p: &mut GenerationParams,
        image_size: Option<(u32, u32)>,
    ) -> bool {
        let g = self.g;
        let Some(latent) = g.source(s, "latent_image") else {
            self.fail(format!("{} is linked to no latent", s.label()));
            return false;
        };
        if !super::EMPTY_LATENTS.contains(&latent.class) {
            self.fail(format!(
                "the sampler starts from {}, not from an empty latent (img2img, inpainting or a second pass)",
                latent.label()
            ));
            return false;
        }
        let side = |w: &mut Self, name: &str| {
            let v = w.ok(g.u64_of(latent, name))?;
            let side = u32::try_from(v).ok();
            if side.is_none() {
                w.fail(format!("the {name} of {} is too large", latent.label()));
            }
            side
        };
        if let (Some(width), Some(height)) = (side(self, "width"), side(self, "height")) {
            (p.width, p.height) = (width, height);
            if let Some((iw, ih)) = image_size.filter(|&size| size != (width, height)) {
                self.fail(format!(
                    "the image is {iw}x{ih} but the graph's empty latent is {width}x{height}"
                ));
            }
        }
        match g.u64_of(latent, "batch_size") {
            Ok(n) if n > 1 => self.notes.push(format!(
                "made in a batch of {n}: a re-run with this seed makes the batch's first image, which this one may not be"
            )),
            _ => {}
        }
        true
    }

    /// Notes a denoise below 1 (of a `KSampler` or `BasicScheduler`), which on an empty latent
    /// ComfyUI runs as the last steps of a longer schedule.
    pub(super) fn check_denoise(&mut self, s: Node<'g>, steps: u64, empty_latent: bool) {
        let denoise = match s.input("denoise") {
            None => return,
            Some(_) => match self.ok(self.g.f64_of(s, "denoise")) {
                Some(d) => d,
                None => return,
            },
        };
        // ComfyUI runs the full schedule above 0.9999.
        if denoise > 0.9999 || !empty_latent {
            return;
        }
        if denoise <= 0.0 {
            self.notes.push(format!(
                "denoise {denoise} of {}: ComfyUI ran no step, but a re-run runs every step",
                s.label()
            ));
            return;
        }
        let total = (steps as f64 / denoise) as u64;
        self.notes.push(format!(
            "denoise {denoise} on an empty latent: ComfyUI ran only the last {steps} steps of a \
             {total}-step schedule, starting from pure noise at a lower noise level, while a \
             re-run runs the whole {steps}-step schedule"
        ));
    }

    /// Fails unless a `KSamplerAdvanced` adds noise and runs every step.
    fn check_step_range(&mut self, s: Node<'g>, steps: u64) {
        let g = self.g;
        let add_noise = self.ok(g.str_of(s, "add_noise"));
        let start = self.ok(g.u64_of(s, "start_at_step"));
        let end = self.ok(g.u64_of(s, "end_at_step"));
        let leftover = self.ok(g.str_of(s, "return_with_leftover_noise"));
        let (Some(add_noise), Some(start), Some(end), Some(leftover)) =
            (add_noise, start, end, leftover)
        else {
            return;
        };
        if add_noise == "enable" && start == 0 && end >= steps {
            return;
        }
        self.fail(format!(
            "{} runs steps {start} to {} of {steps} (add_noise {}, return_with_leftover_noise {}), \
             but only a run of every step from fresh noise maps to Sumi's settings",
            s.label(),
            end.min(steps),
            shown(add_noise),
            shown(leftover)
        ));
    }
}
