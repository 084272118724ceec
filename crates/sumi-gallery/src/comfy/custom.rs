//! ComfyUI's custom sampling shape, as its Flux example uses it: a `SamplerCustomAdvanced` whose
//! seed comes from `RandomNoise`, its sampler from `KSamplerSelect`, its steps, scheduler and
//! denoise from `BasicScheduler`, and its model, conditionings and CFG from a guider
//! (`BasicGuider` runs CFG 1 on one conditioning, `CFGGuider` a positive and a negative).

use super::graph::Node;
use super::Walk;
use crate::record::GenerationParams;

/// Guider classes whose model, conditionings and CFG Sumi reads.
const GUIDERS: &[&str] = &["BasicGuider", "CFGGuider"];

impl<'g> Walk<'g> {
    /// Reads a `SamplerCustomAdvanced` `s` and the nodes feeding it into `p`.
    pub(super) fn read_custom_sampler(
        &mut self,
        s: Node<'g>,
        p: &mut GenerationParams,
        empty_latent: bool,
    ) {
        let g = self.g;
        if let Some(n) = self.feeding(s, "noise", &["RandomNoise"]) {
            if let Some(seed) = self.ok(g.u64_of(n, "noise_seed")) {
                p.seed = seed;
            }
        }
        if let Some(n) = self.feeding(s, "sampler", &["KSamplerSelect"]) {
            if let Some(id) = self.ok(g.str_of(n, "sampler_name")) {
                p.sampler = self.sampler_name(id);
            }
        }
        if let Some(n) = self.feeding(s, "guider", GUIDERS) {
            if n.class == "BasicGuider" {
                p.cfg = 1.0;
            } else if let Some(cfg) = self.ok(g.f64_of(n, "cfg")) {
                p.cfg = cfg;
            }
        }
        if let Some(n) = self.feeding(s, "sigmas", &["BasicScheduler"]) {
            self.read_schedule(n, p);
            if let Some(steps) = self.read_steps(n, p) {
                self.check_denoise(n, steps, empty_latent);
            }
        }
    }

    /// The node of one of `classes` that input `name` of `s` is linked to; `None` with the
    /// reason recorded when it is missing or of another class.
    fn feeding(&mut self, s: Node<'g>, name: &str, classes: &[&str]) -> Option<Node<'g>> {
        match self.g.source(s, name) {
            Some(n) if classes.contains(&n.class) => Some(n),
            Some(n) => {
                self.fail(format!(
                    "{} takes its {name} from {}, not from {}",
                    s.label(),
                    n.label(),
                    classes.join(" or ")
                ));
                None
            }
            None => {
                self.fail(format!("{} is linked to no {name}", s.label()));
                None
            }
        }
    }

    /// The node whose `model` and conditionings sampler `s` uses: `s` itself, or the guider of
    /// a `SamplerCustomAdvanced` (`None` when that is not one Sumi reads).
    pub(super) fn guider(&self, s: Node<'g>) -> Option<Node<'g>> {
        if s.class != "SamplerCustomAdvanced" {
            return Some(s);
        }
        self.g
            .source(s, "guider")
            .filter(|n| GUIDERS.contains(&n.class))
    }
}
