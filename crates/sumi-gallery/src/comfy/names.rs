//! Names: model files as Sumi knows them, and ComfyUI's sampler and scheduler ids
//! (`comfy/samplers.py`: `KSAMPLER_NAMES`, `SAMPLER_NAMES`,
//! `SCHEDULER_NAMES`) and the A1111 display names Sumi records them by.

/// Extensions of weight files, cut off names to get the name Sumi knows a model by.
const WEIGHT_EXTENSIONS: &[&str] = &["safetensors", "ckpt", "pt", "pth", "bin", "gguf", "sft"];

/// A model file's name as Sumi knows it: no folders, no weight-file extension.
pub(crate) fn file_stem(file: &str) -> &str {
    let name = file.rsplit(['/', '\\']).next().unwrap_or(file);
    match name.rsplit_once('.') {
        Some((stem, ext)) if WEIGHT_EXTENSIONS.contains(&ext.to_ascii_lowercase().as_str()) => stem,
        _ => name,
    }
}

/// What Sumi records for one ComfyUI sampler id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SamplerId {
    /// ComfyUI's id.
    pub id: &'static str,
    /// The A1111 display name of the same algorithm.
    pub name: &'static str,
    /// How ComfyUI draws the noise this sampler adds at its steps.
    pub noise: StepNoise,
}

/// How a ComfyUI sampler draws the noise it adds at its steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StepNoise {
    /// It adds none.
    None,
    /// Fresh noise per step from a generator on the sampling device, seeded with the seed.
    Device,
    /// A Brownian tree seeded with the seed, built on the CPU.
    BrownianCpu,
    /// A Brownian tree built on the GPU (the `_gpu` ids).
    BrownianGpu,
}

use StepNoise::{BrownianCpu as Bc, BrownianGpu as Bg, Device as Dv, None as No};

/// Every ComfyUI sampler id with an A1111 equivalent. The ids not listed (`euler_cfg_pp`,
/// `heunpp2`, `ipndm`, `deis`, `res_multistep`, `er_sde`, `sa_solver`, ...) have none and are
/// recorded as they are.
const SAMPLERS: &[SamplerId] = &[
    s("euler", "Euler", No),
    s("euler_ancestral", "Euler a", Dv),
    s("heun", "Heun", No),
    s("dpm_2", "DPM2", No),
    s("dpm_2_ancestral", "DPM2 a", Dv),
    s("lms", "LMS", No),
    s("dpm_fast", "DPM fast", No),
    s("dpm_adaptive", "DPM adaptive", No),
    s("dpmpp_2s_ancestral", "DPM++ 2S a", Dv),
    s("dpmpp_sde", "DPM++ SDE", Bc),
    s("dpmpp_sde_gpu", "DPM++ SDE", Bg),
    s("dpmpp_2m", "DPM++ 2M", No),
    s("dpmpp_2m_sde", "DPM++ 2M SDE", Bc),
    s("dpmpp_2m_sde_gpu", "DPM++ 2M SDE", Bg),
    s("dpmpp_2m_sde_heun", "DPM++ 2M SDE Heun", Bc),
    s("dpmpp_2m_sde_heun_gpu", "DPM++ 2M SDE Heun", Bg),
    s("dpmpp_3m_sde", "DPM++ 3M SDE", Bc),
    s("dpmpp_3m_sde_gpu", "DPM++ 3M SDE", Bg),
    s("ddpm", "DDPM", Dv),
    s("lcm", "LCM", Dv),
    // ComfyUI runs its "ddim" as Euler (with a random inpainting noise that txt2img never uses).
    s("ddim", "Euler", No),
    s("uni_pc", "UniPC", No),
    s("uni_pc_bh2", "UniPC BH2", No),
];

/// A table row.
const fn s(id: &'static str, name: &'static str, noise: StepNoise) -> SamplerId {
    SamplerId { id, name, noise }
}

/// ComfyUI's scheduler ids and A1111's names for them.
const SCHEDULERS: &[(&str, &str)] = &[
    ("simple", "Simple"),
    ("sgm_uniform", "SGM Uniform"),
    ("karras", "Karras"),
    ("exponential", "Exponential"),
    ("ddim_uniform", "DDIM"),
    ("beta", "Beta"),
    ("normal", "Normal"),
    ("linear_quadratic", "Linear Quadratic"),
    ("kl_optimal", "KL Optimal"),
];

/// The row of a ComfyUI sampler id, when it has an A1111 equivalent.
pub(crate) fn sampler(id: &str) -> Option<&'static SamplerId> {
    SAMPLERS.iter().find(|e| e.id == id)
}

/// The A1111 display name of a ComfyUI sampler id.
pub(crate) fn sampler_name(id: &str) -> Option<&'static str> {
    sampler(id).map(|e| e.name)
}

/// The A1111 display name of a ComfyUI scheduler id.
pub(crate) fn schedule_name(id: &str) -> Option<&'static str> {
    SCHEDULERS
        .iter()
        .find(|(comfy, _)| *comfy == id)
        .map(|(_, name)| *name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpu_variants_share_their_algorithm_with_the_cpu_ones() {
        assert_eq!(sampler_name("dpmpp_2m_sde_gpu"), Some("DPM++ 2M SDE"));
        assert_eq!(
            sampler("dpmpp_2m_sde_gpu").unwrap().noise,
            StepNoise::BrownianGpu
        );
        assert_eq!(
            sampler("dpmpp_2m_sde").unwrap().noise,
            StepNoise::BrownianCpu
        );
        assert_eq!(sampler("euler_ancestral").unwrap().noise, StepNoise::Device);
        assert_eq!(sampler_name("ddim"), Some("Euler"));
        assert_eq!(sampler_name("heunpp2"), None);
        assert_eq!(schedule_name("ddim_uniform"), Some("DDIM"));
        assert_eq!(schedule_name("turbo"), None);
    }
}
