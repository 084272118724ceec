//! A request's prompts as the denoiser's guidance: the step count prompt editing counts in,
//! the encoding, and the conversion to the network's conditioning.

use std::sync::LazyLock;

use super::request::Request;
use crate::denoiser::{NetSchedule, PromptGuidance};
use crate::model::Model;
use crate::sampling::table::SamplerEntry;
use crate::text::{CondSchedule, Embeddings, EncodeOptions, PromptInfo};
use crate::Result;

/// Samplers A1111 marks `second_order` (`sd_samplers_kdiffusion.py`): its prompt schedules
/// count two model calls per step for them.
const SECOND_ORDER: [&str; 5] = [
    "heun",
    "dpm_2",
    "dpm_2_ancestral",
    "dpmpp_2s_ancestral",
    "dpmpp_sde",
];

/// The step count A1111 passes to prompt editing and alternation for `steps` steps of
/// `sampler` (`SamplerData.total_steps`): doubled for second-order samplers. The denoiser's
/// calls are counted against it, so a second-order run switches prompts at the call it reaches
/// that point, not at the step.
pub fn schedule_steps(sampler: &SamplerEntry, steps: u32) -> u32 {
    match SECOND_ORDER.contains(&sampler.id) {
        true => steps.saturating_mul(2),
        false => steps,
    }
}

/// What a generation takes besides the request: files the prompts may name, and the bytes of
/// the pictures an img2img request names by hash.
#[derive(Debug, Clone, Copy)]
pub struct GenerateInputs<'a> {
    /// Textual-inversion embeddings the prompts may use.
    pub embeddings: &'a Embeddings,
    /// The init picture's file bytes (`Img2Img::init_image` names their SHA-256).
    pub init_image: Option<&'a [u8]>,
    /// The mask's file bytes (`Img2Img::mask`).
    pub mask: Option<&'a [u8]>,
}

static NO_EMBEDDINGS: LazyLock<Embeddings> = LazyLock::new(Embeddings::empty);

impl Default for GenerateInputs<'static> {
    fn default() -> Self {
        Self {
            embeddings: &NO_EMBEDDINGS,
            init_image: None,
            mask: None,
        }
    }
}

/// The request's prompts encoded for `model` and turned into the denoiser's guidance.
pub(crate) fn guidance(
    model: &Model,
    request: &Request,
    sampler: &SamplerEntry,
    inputs: &GenerateInputs,
) -> Result<(PromptGuidance, PromptInfo)> {
    let opts = EncodeOptions {
        emphasis: request.emphasis,
        clip_skip: request.clip_skip,
        embeddings: inputs.embeddings,
        steps: schedule_steps(sampler, request.steps),
        max_sequence_length: request.max_sequence_length.map(|n| n as usize),
    };
    let guided = request.cfg != 1.0;
    let encoded =
        model
            .text
            .encode_prompts(&request.prompt, &request.negative_prompt, guided, &opts)?;
    let net = |schedule: CondSchedule| -> Result<NetSchedule> {
        schedule
            .into_iter()
            .map(|(end, c)| {
                let cond = model.info.family.conditioning(
                    c.context,
                    c.pooled.as_ref(),
                    request.width,
                    request.height,
                    request
                        .guidance
                        .unwrap_or(crate::family::flux::DEFAULT_GUIDANCE),
                )?;
                Ok((end, cond))
            })
            .collect()
    };
    let parts = encoded
        .cond
        .into_iter()
        .map(|(w, s)| Ok((w, net(s)?)))
        .collect::<Result<Vec<_>>>()?;
    let uncond = encoded
        .uncond
        .map(|s| Ok::<_, crate::Error>((net(s)?, request.cfg)))
        .transpose()?;
    Ok((PromptGuidance { parts, uncond }, encoded.info))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sampling::table::sampler;

    #[test]
    fn second_order_samplers_count_double() {
        assert_eq!(schedule_steps(sampler("Euler").unwrap(), 20), 20);
        assert_eq!(schedule_steps(sampler("Heun").unwrap(), 20), 40);
        assert_eq!(schedule_steps(sampler("DPM++ SDE").unwrap(), 10), 20);
        assert_eq!(schedule_steps(sampler("DPM++ 2S a").unwrap(), 10), 20);
        assert_eq!(schedule_steps(sampler("DPM2 a").unwrap(), 10), 20);
        assert_eq!(schedule_steps(sampler("DPM adaptive").unwrap(), 10), 10);
        assert_eq!(schedule_steps(sampler("DDIM").unwrap(), 10), 10);
    }
}
