//! Noise levels of flow-matching models (Flux.1): the sigma list diffusers' `FluxPipeline` runs,
//! driven by the model's `FlowMatchEulerDiscreteScheduler` config rather than by its name.
//!
//! diffusers starts from `linspace(1, 1/N, N)`, shifts it in time (a static `shift`, or with
//! `use_dynamic_shifting` a shift `mu` that grows with the image's token count), optionally
//! stretches it to end at `shift_terminal`, and appends 0. It does this arithmetic on float32
//! arrays, so it is done here in f32 too: the lists then agree to the last bit.

use serde::Deserialize;

use super::spacing::linspace;
use crate::{Error, Result};

/// diffusers' `FlowMatchEulerDiscreteScheduler` config, the fields that decide the sigmas
/// (unknown fields are ignored; defaults are diffusers').
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct FlowSchedulerConfig {
    /// Training timesteps; the network's timestep is `sigma * num_train_timesteps`.
    pub num_train_timesteps: usize,
    /// The static time shift (1 = none), used when `use_dynamic_shifting` is off.
    pub shift: f64,
    /// Shift by `mu`, interpolated from the image's token count (Flux.1-dev).
    pub use_dynamic_shifting: bool,
    /// `mu` at `base_image_seq_len` tokens.
    pub base_shift: f64,
    /// `mu` at `max_image_seq_len` tokens.
    pub max_shift: f64,
    /// Token count where `mu` is `base_shift`.
    pub base_image_seq_len: usize,
    /// Token count where `mu` is `max_shift`.
    pub max_image_seq_len: usize,
    /// `exponential` (Flux) or `linear`.
    pub time_shift_type: String,
    /// When set, the shifted list is stretched so its last sigma is this value.
    pub shift_terminal: Option<f64>,
    /// Sigma-conversion options Sumi does not apply; refused rather than ignored.
    pub use_karras_sigmas: bool,
    pub use_exponential_sigmas: bool,
    pub use_beta_sigmas: bool,
    pub invert_sigmas: bool,
}

impl Default for FlowSchedulerConfig {
    fn default() -> Self {
        Self {
            num_train_timesteps: 1000,
            shift: 1.0,
            use_dynamic_shifting: false,
            base_shift: 0.5,
            max_shift: 1.15,
            base_image_seq_len: 256,
            max_image_seq_len: 4096,
            time_shift_type: "exponential".into(),
            shift_terminal: None,
            use_karras_sigmas: false,
            use_exponential_sigmas: false,
            use_beta_sigmas: false,
            invert_sigmas: false,
        }
    }
}

/// How a flow schedule bends `t` towards the noisy end.
#[derive(Debug, Clone, Copy, PartialEq)]
enum TimeShift {
    /// `shift * t / (1 + (shift - 1) * t)`.
    Static(f64),
    /// `e^mu / (e^mu + (1/t - 1))`.
    Exponential(f64),
    /// `mu / (mu + (1/t - 1))`.
    Linear(f64),
}

impl FlowSchedulerConfig {
    /// Parses the text of a `scheduler_config.json` and checks that Sumi can follow it.
    pub fn from_json(text: &str) -> Result<Self> {
        let cfg: Self = serde_json::from_str(text)
            .map_err(|e| Error::InvalidRequest(format!("scheduler config is not valid: {e}")))?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<()> {
        let bad = |what: String| Err(Error::InvalidRequest(format!("scheduler config: {what}")));
        for (on, name) in [
            (self.use_karras_sigmas, "use_karras_sigmas"),
            (self.use_exponential_sigmas, "use_exponential_sigmas"),
            (self.use_beta_sigmas, "use_beta_sigmas"),
            (self.invert_sigmas, "invert_sigmas"),
        ] {
            if on {
                return bad(format!(
                    "{name} is not supported for flow models; choose the schedule with \
                     --schedule instead and set {name} to false"
                ));
            }
        }
        if self.num_train_timesteps < 2 {
            return bad(format!(
                "num_train_timesteps is {}; it must be at least 2",
                self.num_train_timesteps
            ));
        }
        if !(self.shift.is_finite() && self.shift > 0.0) {
            return bad(format!("shift is {}; it must be above 0", self.shift));
        }
        if self.use_dynamic_shifting && self.max_image_seq_len == self.base_image_seq_len {
            return bad("base_image_seq_len and max_image_seq_len must differ".into());
        }
        if !matches!(self.time_shift_type.as_str(), "exponential" | "linear") {
            return bad(format!(
                "time_shift_type '{}' is not supported; use exponential or linear",
                self.time_shift_type
            ));
        }
        if let Some(st) = self.shift_terminal {
            if !(0.0..1.0).contains(&st) {
                return bad(format!("shift_terminal is {st}; it must lie in [0, 1)"));
            }
        }
        Ok(())
    }

    /// The sigma to stretch the list to, if any (diffusers tests `if shift_terminal:`, so 0
    /// means none).
    fn terminal(&self) -> Option<f64> {
        self.shift_terminal.filter(|&t| t != 0.0)
    }

    /// diffusers' `calculate_shift`: `mu` on the line through (base_image_seq_len, base_shift)
    /// and (max_image_seq_len, max_shift), at `image_seq_len` tokens.
    pub fn mu(&self, image_seq_len: usize) -> f64 {
        let (x0, x1) = (
            self.base_image_seq_len as f64,
            self.max_image_seq_len as f64,
        );
        let m = (self.max_shift - self.base_shift) / (x1 - x0);
        let b = self.base_shift - m * x0;
        image_seq_len as f64 * m + b
    }

    fn time_shift(&self, image_seq_len: usize) -> TimeShift {
        if !self.use_dynamic_shifting {
            return TimeShift::Static(self.shift);
        }
        let mu = self.mu(image_seq_len);
        match self.time_shift_type.as_str() {
            "linear" => TimeShift::Linear(mu),
            _ => TimeShift::Exponential(mu),
        }
    }

    /// The sigmas `FluxPipeline` samples with for `steps` steps on an image of
    /// `image_seq_len` latent tokens (`(height / 16) * (width / 16)` for Flux), ending in 0.
    pub fn sigmas(&self, steps: usize, image_seq_len: usize) -> Result<Vec<f64>> {
        if steps == 0 {
            return Err(Error::InvalidRequest("steps must be at least 1".into()));
        }
        if self.terminal().is_some() && steps < 2 {
            return Err(Error::InvalidRequest(
                "this model's scheduler stretches its sigmas to end at shift_terminal, which \
                 needs at least 2 steps"
                    .into(),
            ));
        }
        let shift = self.time_shift(image_seq_len);
        // numpy's `linspace(1, 1/N, N)` in f64, then the scheduler's float32 array.
        let ts: Vec<f32> = linspace(1.0, 1.0 / steps as f64, steps)
            .into_iter()
            .map(|t| shift_t(shift, t as f32))
            .collect();
        let mut sigmas: Vec<f64> = match self.terminal() {
            Some(terminal) => stretch_to_terminal(&ts, terminal as f32),
            None => ts,
        }
        .into_iter()
        .map(f64::from)
        .collect();
        if sigmas.iter().any(|s| !s.is_finite()) {
            return Err(Error::InvalidRequest(
                "the scheduler config gives sigmas that are not finite".into(),
            ));
        }
        sigmas.push(0.0);
        Ok(sigmas)
    }
}

/// How many levels ComfyUI's and Forge's Flux model sampling tabulates (`ModelSamplingFlux`).
pub const FLOW_TABLE_LEVELS: usize = 10_000;

/// What a flow-matching model's noise levels add to the discrete table: the scheduler config
/// diffusers samples with, the constant shift ComfyUI and Forge sample with, and the size of
/// the image being made (diffusers' dynamic shift depends on it).
#[derive(Debug, Clone, PartialEq)]
pub struct FlowLevels {
    /// The model's `FlowMatchEulerDiscreteScheduler` config (the "Flow" schedule).
    pub config: FlowSchedulerConfig,
    /// ComfyUI's and Forge's constant `mu` (Flux dev 1.15, schnell 1.0).
    pub shift: f64,
    /// Latent tokens of the image being made: `(height / 16) * (width / 16)` for Flux.
    pub image_tokens: usize,
}

impl FlowLevels {
    /// The sigma at continuous time `t` in (0, 1]: `e^mu / (e^mu + 1/t - 1)` in f32, as
    /// ComfyUI's `flux_time_shift` computes it on torch's f32 tensors (where a number divided
    /// by a tensor is the number times the tensor's reciprocal).
    pub fn sigma(&self, t: f64) -> f64 {
        let (e, t) = (self.shift.exp() as f32, t as f32);
        f64::from(e * (1.0 / (e + (1.0 / t - 1.0))))
    }

    /// ComfyUI's table: the sigmas at `t = k / 10000` for `k = 1..=10000`, ascending.
    pub fn table(&self) -> Vec<f64> {
        (1..=FLOW_TABLE_LEVELS)
            .map(|k| self.sigma(f64::from(k as f32 / FLOW_TABLE_LEVELS as f32)))
            .collect()
    }

    /// The sigmas diffusers' pipeline samples with for `steps` steps on this image.
    pub fn pipeline_sigmas(&self, steps: usize) -> Result<Vec<f64>> {
        self.config.sigmas(steps, self.image_tokens.max(1))
    }
}

/// One shifted timestep, in f32 as numpy computes it (Python floats meet f32 arrays as f32).
fn shift_t(shift: TimeShift, t: f32) -> f32 {
    match shift {
        TimeShift::Static(s) => {
            let (s, s1) = (s as f32, (s - 1.0) as f32);
            s * t / (1.0 + s1 * t)
        }
        TimeShift::Exponential(mu) => {
            let e = mu.exp() as f32;
            e / (e + (1.0 / t - 1.0))
        }
        TimeShift::Linear(mu) => {
            let mu = mu as f32;
            mu / (mu + (1.0 / t - 1.0))
        }
    }
}

/// diffusers' `stretch_shift_to_terminal`: scale `1 - t` so the last value becomes `terminal`.
fn stretch_to_terminal(ts: &[f32], terminal: f32) -> Vec<f32> {
    let last = 1.0 - ts[ts.len() - 1];
    let scale = last / (1.0 - terminal);
    ts.iter().map(|&t| 1.0 - (1.0 - t) / scale).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Fixture {
        configs: std::collections::HashMap<String, serde_json::Value>,
        cases: Vec<Case>,
    }

    #[derive(Deserialize)]
    struct Case {
        config: String,
        steps: usize,
        height: usize,
        width: usize,
        image_seq_len: usize,
        sigmas: Vec<f64>,
    }

    fn fixture() -> Fixture {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/flow/flow.json");
        let text =
            std::fs::read_to_string(&path).expect("run tests/fixtures/flow/make_flow_fixtures.py");
        serde_json::from_str(&text).unwrap()
    }

    #[test]
    fn sigmas_match_flux_pipeline_bit_for_bit() {
        let fx = fixture();
        assert!(fx.cases.len() >= 50);
        for case in &fx.cases {
            let cfg =
                FlowSchedulerConfig::from_json(&fx.configs[&case.config].to_string()).unwrap();
            assert_eq!(case.image_seq_len, (case.height / 16) * (case.width / 16));
            let ours = cfg.sigmas(case.steps, case.image_seq_len).unwrap();
            let what = format!(
                "{} {} steps {}x{}",
                case.config, case.steps, case.width, case.height
            );
            assert_eq!(ours.len(), case.sigmas.len(), "{what}");
            // Every sigma is an f32 value; serde_json's default parser may miss the last bit of
            // the f64 spelling, so compare as f32.
            for (i, (a, b)) in ours.iter().zip(&case.sigmas).enumerate() {
                assert_eq!(*a as f32, *b as f32, "{what}: sigma {i}");
            }
        }
    }

    #[test]
    fn dynamic_shift_grows_with_the_image() {
        let dev = FlowSchedulerConfig {
            use_dynamic_shifting: true,
            ..Default::default()
        };
        assert!((dev.mu(256) - 0.5).abs() < 1e-12);
        assert!((dev.mu(4096) - 1.15).abs() < 1e-12);
        let small = dev.sigmas(20, 256).unwrap();
        let large = dev.sigmas(20, 4096).unwrap();
        assert!(small[10] < large[10], "{} vs {}", small[10], large[10]);
        assert_eq!((small[0], *small.last().unwrap()), (1.0, 0.0));
    }

    #[test]
    fn configs_sumi_cannot_follow_are_refused_with_the_field_named() {
        for (json, field) in [
            (r#"{"use_karras_sigmas": true}"#, "use_karras_sigmas"),
            (r#"{"invert_sigmas": true}"#, "invert_sigmas"),
            (r#"{"time_shift_type": "cosine"}"#, "time_shift_type"),
            (r#"{"shift": 0}"#, "shift"),
            (r#"{"shift_terminal": 1.5}"#, "shift_terminal"),
            (
                r#"{"use_dynamic_shifting": true, "max_image_seq_len": 256}"#,
                "max_image_seq_len",
            ),
        ] {
            let err = FlowSchedulerConfig::from_json(json)
                .unwrap_err()
                .to_string();
            assert!(err.contains(field), "{json}: {err}");
        }
        let terminal = FlowSchedulerConfig::from_json(r#"{"shift_terminal": 0.1}"#).unwrap();
        let err = terminal.sigmas(1, 256).unwrap_err().to_string();
        assert!(err.contains("at least 2 steps"), "{err}");
        let zero = FlowSchedulerConfig::from_json(r#"{"shift_terminal": 0.0}"#).unwrap();
        let plain = FlowSchedulerConfig::default();
        assert_eq!(zero.sigmas(4, 256).unwrap(), plain.sigmas(4, 256).unwrap());
        assert!(plain.sigmas(0, 256).is_err());
        assert_eq!(plain.sigmas(1, 256).unwrap(), vec![1.0, 0.0]);
    }
}
