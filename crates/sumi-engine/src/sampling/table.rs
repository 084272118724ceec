//! The one table of samplers and schedules: the names users know (A1111 display names and
//! ComfyUI ids), the functions, and what the pipeline needs to know about each.

use super::samplers as s;
use super::schedules as sch;
use super::schedules::ScheduleFn;
use super::solvers as sv;
use super::types::SamplerFn;
use crate::{Error, Result};

/// How a sampler's starting latent is made from unit Gaussian noise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitNoise {
    /// k-diffusion/A1111: `noise * sigma_max`.
    SigmaMax,
    /// diffusers' schedulers (start at x_vp = noise): `noise * sqrt(1 + sigma_max^2)`.
    VariancePreserving,
}

impl InitNoise {
    /// Factor to multiply unit noise with, for a run whose first sigma is `sigma_max`.
    pub fn scale(self, sigma_max: f64) -> f64 {
        match self {
            InitNoise::SigmaMax => sigma_max,
            InitNoise::VariancePreserving => (1.0 + sigma_max * sigma_max).sqrt(),
        }
    }
}

/// Where a stochastic sampler's fresh noise should come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoiseKind {
    /// The sampler draws no noise.
    None,
    /// Independent noise per step, from the request's seeded source.
    PerStep,
    /// A Brownian tree over sigma (`BrownianNoise`), so results hold across step counts.
    Brownian,
}

/// One sampler row.
#[derive(Debug, Clone, Copy)]
pub struct SamplerEntry {
    /// A1111's display name ("DPM++ 2M").
    pub name: &'static str,
    /// ComfyUI's id ("dpmpp_2m").
    pub id: &'static str,
    /// The sampler function.
    pub func: SamplerFn,
    /// Model evaluations per step (the last step of some samplers costs fewer).
    pub evals_per_step: usize,
    /// Whether the sampler injects fresh noise.
    pub stochastic: bool,
    /// Which noise source stochastic steps want.
    pub noise: NoiseKind,
    /// How the initial latent is scaled.
    pub init_noise: InitNoise,
    /// Schedule id used for "Automatic".
    pub default_schedule: &'static str,
    /// Chooses its own steps between `sigmas[0]` and the smallest non-zero sigma and ends
    /// there (DPM fast/adaptive); `sigmas.len() - 1` is then its budget of model calls.
    pub own_steps: bool,
}

/// One schedule row.
#[derive(Debug, Clone, Copy)]
pub struct ScheduleEntry {
    /// A1111's display name ("Karras").
    pub name: &'static str,
    /// ComfyUI's id ("karras"), or Sumi's where ComfyUI has none.
    pub id: &'static str,
    /// Other accepted names.
    pub aliases: &'static [&'static str],
    /// The schedule function.
    pub func: ScheduleFn,
}

/// A k-diffusion sampler row; the optional last argument is its "Automatic" schedule (A1111's
/// per-sampler default), else Normal.
macro_rules! k {
    ($name:expr, $id:expr, $f:expr, $evals:expr, $noise:expr) => {
        k!($name, $id, $f, $evals, $noise, "normal")
    };
    ($name:expr, $id:expr, $f:expr, $evals:expr, $noise:expr, $sched:expr) => {
        SamplerEntry {
            name: $name,
            id: $id,
            func: $f,
            evals_per_step: $evals,
            stochastic: !matches!($noise, NoiseKind::None),
            noise: $noise,
            init_noise: InitNoise::SigmaMax,
            default_schedule: $sched,
            own_steps: false,
        }
    };
}

/// A sampler from diffusers' schedulers: starts from variance-preserving noise.
macro_rules! d {
    ($name:expr, $id:expr, $f:expr, $noise:expr, $sched:expr) => {
        SamplerEntry {
            name: $name,
            id: $id,
            func: $f,
            evals_per_step: 1,
            stochastic: !matches!($noise, NoiseKind::None),
            noise: $noise,
            init_noise: InitNoise::VariancePreserving,
            default_schedule: $sched,
            own_steps: false,
        }
    };
}

use NoiseKind::{Brownian as B, None as D, PerStep as A};

/// Every sampler, in the order A1111 lists them.
pub static SAMPLERS: &[SamplerEntry] = &[
    k!("DPM++ 2M", "dpmpp_2m", s::dpmpp_2m, 1, D, "karras"),
    k!("DPM++ SDE", "dpmpp_sde", s::dpmpp_sde, 2, B, "karras"),
    k!(
        "DPM++ 2M SDE",
        "dpmpp_2m_sde",
        s::dpmpp_2m_sde,
        1,
        B,
        "exponential"
    ),
    k!(
        "DPM++ 2S a",
        "dpmpp_2s_ancestral",
        s::dpmpp_2s_ancestral,
        2,
        A,
        "karras"
    ),
    k!(
        "DPM++ 3M SDE",
        "dpmpp_3m_sde",
        s::dpmpp_3m_sde,
        1,
        B,
        "exponential"
    ),
    k!("Euler a", "euler_ancestral", s::euler_ancestral, 1, A),
    k!("Euler", "euler", s::euler, 1, D),
    k!("LMS", "lms", s::lms, 1, D),
    k!("Heun", "heun", s::heun, 2, D),
    k!("DPM2", "dpm_2", s::dpm_2, 2, D),
    k!("DPM2 a", "dpm_2_ancestral", s::dpm_2_ancestral, 2, A),
    SamplerEntry {
        own_steps: true,
        ..k!("DPM fast", "dpm_fast", sv::dpm_fast, 1, D)
    },
    SamplerEntry {
        own_steps: true,
        ..k!("DPM adaptive", "dpm_adaptive", sv::dpm_adaptive, 3, D)
    },
    d!("DDIM", "ddim", s::ddim, D, "ddim_timesteps"),
    d!("DDPM", "ddpm", s::ddpm, A, "ddpm_timesteps"),
    d!("PLMS", "plms", s::plms, D, "ddim_timesteps"),
    d!("UniPC", "uni_pc", sv::uni_pc, D, "normal"),
    d!("UniPC BH2", "uni_pc_bh2", sv::uni_pc_bh2, D, "normal"),
    d!("LCM", "lcm", s::lcm, A, "lcm"),
];

/// Samplers that run another way on flow-matching models, as ComfyUI runs them there.
pub static FLOW_SAMPLERS: &[SamplerEntry] = &[k!(
    "Euler a",
    "euler_ancestral",
    s::euler_ancestral_rf,
    1,
    A
)];

/// How `entry` runs on a flow-matching model: its flow variant, itself when its update holds
/// for any parametrization (deterministic k-diffusion samplers), else `None`.
pub fn flow_sampler(entry: &'static SamplerEntry) -> Option<&'static SamplerEntry> {
    if let Some(v) = FLOW_SAMPLERS.iter().find(|f| f.id == entry.id) {
        return Some(v);
    }
    (entry.init_noise == InitNoise::SigmaMax && !entry.stochastic).then_some(entry)
}

/// Every schedule.
pub static SCHEDULES: &[ScheduleEntry] = &[
    ScheduleEntry {
        name: "Normal",
        id: "normal",
        aliases: &["Uniform"],
        func: sch::normal,
    },
    ScheduleEntry {
        name: "Karras",
        id: "karras",
        aliases: &[],
        func: sch::karras,
    },
    ScheduleEntry {
        name: "Exponential",
        id: "exponential",
        aliases: &[],
        func: sch::exponential,
    },
    ScheduleEntry {
        name: "SGM Uniform",
        id: "sgm_uniform",
        aliases: &[],
        func: sch::sgm_uniform,
    },
    ScheduleEntry {
        name: "Simple",
        id: "simple",
        aliases: &[],
        func: sch::simple,
    },
    ScheduleEntry {
        name: "DDIM",
        id: "ddim_uniform",
        aliases: &[],
        func: sch::ddim_uniform,
    },
    ScheduleEntry {
        name: "Beta",
        id: "beta",
        aliases: &[],
        func: sch::beta,
    },
    ScheduleEntry {
        name: "Align Your Steps",
        id: "align_your_steps",
        aliases: &["ays", "Align Your Steps SD1", "ays_sd1"],
        func: sch::align_your_steps_sd1,
    },
    ScheduleEntry {
        name: "Align Your Steps SDXL",
        id: "align_your_steps_sdxl",
        aliases: &["ays_sdxl"],
        func: sch::align_your_steps_sdxl,
    },
    ScheduleEntry {
        name: "LCM",
        id: "lcm",
        aliases: &[],
        func: sch::lcm,
    },
    ScheduleEntry {
        name: "DDIM timesteps",
        id: "ddim_timesteps",
        aliases: &["diffusers"],
        func: sch::ddim_timesteps,
    },
    ScheduleEntry {
        name: "Flow",
        id: "flow",
        aliases: &["FlowMatchEuler", "flux"],
        func: sch::flow,
    },
    ScheduleEntry {
        name: "DDPM timesteps",
        id: "ddpm_timesteps",
        aliases: &[],
        func: sch::ddpm_timesteps,
    },
];

fn eq(a: &str, b: &str) -> bool {
    a.trim().eq_ignore_ascii_case(b)
}

fn sampler_names() -> String {
    SAMPLERS
        .iter()
        .map(|e| format!("{} ({})", e.name, e.id))
        .collect::<Vec<_>>()
        .join(", ")
}

fn schedule_names() -> String {
    SCHEDULES
        .iter()
        .map(|e| format!("{} ({})", e.name, e.id))
        .collect::<Vec<_>>()
        .join(", ")
}

fn find_sampler(name: &str) -> Option<&'static SamplerEntry> {
    SAMPLERS.iter().find(|e| eq(name, e.name) || eq(name, e.id))
}

fn find_schedule(name: &str) -> Option<&'static ScheduleEntry> {
    SCHEDULES
        .iter()
        .find(|e| eq(name, e.name) || eq(name, e.id) || e.aliases.iter().any(|a| eq(name, a)))
}

/// Looks a sampler up by display name or id, case-insensitively.
pub fn sampler(name: &str) -> Result<&'static SamplerEntry> {
    find_sampler(name).ok_or_else(|| Error::UnknownName {
        kind: "sampler",
        name: name.to_string(),
        valid: sampler_names(),
    })
}

/// Looks a schedule up by display name, id or alias, case-insensitively.
pub fn schedule(name: &str) -> Result<&'static ScheduleEntry> {
    find_schedule(name).ok_or_else(|| Error::UnknownName {
        kind: "schedule",
        name: name.to_string(),
        valid: schedule_names(),
    })
}

/// The schedule to use with `sampler` for a requested schedule name; "Automatic" (or an empty
/// name) picks the sampler's default.
pub fn schedule_for(sampler: &SamplerEntry, name: &str) -> Result<&'static ScheduleEntry> {
    if name.trim().is_empty() || eq(name, "automatic") {
        schedule(sampler.default_schedule)
    } else {
        schedule(name)
    }
}

/// Parses a sampler name that may carry A1111's pre-1.9 schedule suffix ("DPM++ 2M Karras"):
/// returns the sampler and the schedule named in it, if any.
pub fn parse_sampler(
    name: &str,
) -> Result<(&'static SamplerEntry, Option<&'static ScheduleEntry>)> {
    if let Some(e) = find_sampler(name) {
        return Ok((e, None));
    }
    let trimmed = name.trim();
    for sc in SCHEDULES {
        for suffix in [sc.name, sc.id]
            .into_iter()
            .chain(sc.aliases.iter().copied())
        {
            let n = suffix.len();
            if trimmed.len() > n + 1
                && trimmed.is_char_boundary(trimmed.len() - n)
                && eq(&trimmed[trimmed.len() - n..], suffix)
                && trimmed.as_bytes()[trimmed.len() - n - 1] == b' '
            {
                if let Some(e) = find_sampler(&trimmed[..trimmed.len() - n - 1]) {
                    return Ok((e, Some(sc)));
                }
            }
        }
    }
    Err(Error::UnknownName {
        kind: "sampler",
        name: name.to_string(),
        valid: sampler_names(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_resolve_case_insensitively() {
        assert_eq!(sampler("euler A").unwrap().id, "euler_ancestral");
        assert_eq!(sampler("EULER_ANCESTRAL").unwrap().name, "Euler a");
        assert_eq!(sampler("dpm++ 2m").unwrap().id, "dpmpp_2m");
        assert_eq!(schedule("KARRAS").unwrap().id, "karras");
        assert_eq!(schedule("sgm uniform").unwrap().id, "sgm_uniform");
    }

    #[test]
    fn legacy_combined_names_parse() {
        let (s, sc) = parse_sampler("DPM++ 2M Karras").unwrap();
        assert_eq!((s.id, sc.unwrap().id), ("dpmpp_2m", "karras"));
        let (s, sc) = parse_sampler("Euler a").unwrap();
        assert_eq!(s.id, "euler_ancestral");
        assert!(sc.is_none());
        let (s, sc) = parse_sampler("euler exponential").unwrap();
        assert_eq!((s.id, sc.unwrap().id), ("euler", "exponential"));
        for (legacy, sampler_id, schedule_id) in [
            ("DPM++ 2M SDE Karras", "dpmpp_2m_sde", "karras"),
            ("DPM++ 3M SDE Exponential", "dpmpp_3m_sde", "exponential"),
            ("DPM++ 2S a Karras", "dpmpp_2s_ancestral", "karras"),
            ("DPM++ SDE Karras", "dpmpp_sde", "karras"),
            ("DPM2 a Karras", "dpm_2_ancestral", "karras"),
            ("DPM2 Karras", "dpm_2", "karras"),
            ("LMS Karras", "lms", "karras"),
            ("dpmpp_2m sgm_uniform", "dpmpp_2m", "sgm_uniform"),
        ] {
            let (s, sc) = parse_sampler(legacy).unwrap();
            assert_eq!(
                (s.id, sc.map(|e| e.id)),
                (sampler_id, Some(schedule_id)),
                "{legacy}"
            );
        }
        let (s, sc) = parse_sampler("DPM++ 2M SDE").unwrap();
        assert_eq!((s.id, sc.is_none()), ("dpmpp_2m_sde", true));
    }

    #[test]
    fn unknown_names_list_the_valid_ones() {
        let err = parse_sampler("Eulerr").unwrap_err().to_string();
        assert!(
            err.contains("Eulerr") && err.contains("DPM++ 2M (dpmpp_2m)"),
            "{err}"
        );
        let err = schedule("karas").unwrap_err().to_string();
        assert!(err.contains("Karras (karras)"), "{err}");
        assert!(parse_sampler("DPM++ 2M Karrass").is_err());
    }

    #[test]
    fn ids_and_names_are_unique_and_defaults_exist() {
        let mut seen = std::collections::HashSet::new();
        for e in SAMPLERS {
            let own: std::collections::HashSet<_> =
                [e.name, e.id].iter().map(|n| n.to_lowercase()).collect();
            for n in own {
                assert!(seen.insert(n.clone()), "sampler name {n} used twice");
            }
            assert!(schedule(e.default_schedule).is_ok(), "{}", e.id);
        }
        let mut seen = std::collections::HashSet::new();
        for e in SCHEDULES {
            let own: std::collections::HashSet<_> = [e.name, e.id]
                .iter()
                .chain(e.aliases)
                .map(|n| n.to_lowercase())
                .collect();
            for n in own {
                assert!(seen.insert(n.clone()), "schedule name {n} used twice");
            }
        }
    }

    #[test]
    fn automatic_picks_the_sampler_default() {
        assert_eq!(
            schedule_for(sampler("DDIM").unwrap(), "Automatic")
                .unwrap()
                .id,
            "ddim_timesteps"
        );
        assert_eq!(schedule_for(sampler("LCM").unwrap(), "").unwrap().id, "lcm");
        assert_eq!(
            schedule_for(sampler("DDPM").unwrap(), "").unwrap().id,
            "ddpm_timesteps"
        );
        assert_eq!(
            schedule_for(sampler("Euler").unwrap(), "automatic")
                .unwrap()
                .id,
            "normal"
        );
        assert_eq!(
            schedule_for(sampler("Euler").unwrap(), "Karras")
                .unwrap()
                .id,
            "karras"
        );
        assert!(schedule_for(sampler("Euler").unwrap(), "nope").is_err());
    }

    #[test]
    fn init_noise_scales() {
        assert_eq!(InitNoise::SigmaMax.scale(3.0), 3.0);
        assert!((InitNoise::VariancePreserving.scale(3.0) - 10f64.sqrt()).abs() < 1e-12);
    }
}
