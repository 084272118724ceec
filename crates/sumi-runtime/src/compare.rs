//! Comparisons: one prompt and seed through several settings (the cells), saved as one group.

use serde::Deserialize;
use sumi_engine::model::MAX_LORA_WEIGHT;
use sumi_engine::sampling::img2img::check_strength;
use sumi_engine::sampling::table::{parse_sampler, schedule};
use sumi_engine::text::prompt::{extra_network_spans, lora_tag};
use sumi_engine::Request;
use ts_rs::TS;

use crate::limits::MAX_COMPARE_CELLS;
use crate::{Result, RuntimeError};

/// What one cell of a comparison changes: a sampler and schedule, and optionally the steps,
/// the CFG scale, the denoising strength (img2img) or the weight of one of the prompt's LoRAs.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, TS)]
pub struct Variant {
    /// Sampler name.
    pub sampler: String,
    /// Schedule name.
    pub schedule: String,
    /// Steps, when this cell changes them.
    #[serde(default)]
    pub steps: Option<u32>,
    /// CFG scale, when this cell changes it.
    #[serde(default)]
    pub cfg: Option<f64>,
    /// Denoising strength, when this cell changes it (the request must be img2img).
    #[serde(default)]
    #[ts(optional)]
    pub strength: Option<f64>,
    /// The weight of one LoRA the prompt names with a `<lora:NAME:w>` tag, when this cell
    /// changes it.
    #[serde(default)]
    #[ts(optional)]
    pub lora: Option<LoraWeight>,
}

/// A LoRA of the prompt and the weight a comparison cell gives it.
#[derive(Debug, Clone, Deserialize, PartialEq, TS)]
pub struct LoraWeight {
    /// The name in the prompt's `<lora:NAME:w>` tag.
    pub name: String,
    /// The weight that replaces the tag's (text encoder and UNet alike).
    pub weight: f64,
}

/// The request of every cell: `base` with each variant's changes, in order. Refuses fewer than
/// two cells or more than [`MAX_COMPARE_CELLS`].
pub fn cells(base: &Request, variants: &[Variant]) -> Result<Vec<Request>> {
    if variants.len() < 2 {
        return Err(RuntimeError::Invalid(
            "Pick at least two values to compare (two samplers, schedules, step counts or CFG values).".into(),
        ));
    }
    if variants.len() > MAX_COMPARE_CELLS {
        return Err(RuntimeError::Invalid(format!(
            "That makes {} images; a comparison holds at most {MAX_COMPARE_CELLS}. Pick fewer values.",
            variants.len()
        )));
    }
    variants.iter().map(|v| cell(base, v)).collect()
}

/// The request of one cell: `base` with `v`'s changes. A strength needs an img2img request; a
/// LoRA weight needs a prompt whose `<lora:NAME:w>` tag names that LoRA.
pub fn cell(base: &Request, v: &Variant) -> Result<Request> {
    let mut r = base.clone();
    set_sampler(&mut r, &v.sampler, Some(&v.schedule))?;
    r.steps = v.steps.unwrap_or(base.steps);
    r.cfg = v.cfg.unwrap_or(base.cfg);
    if let Some(s) = v.strength {
        check_strength(s)?;
        let img = r.img2img.as_mut().ok_or_else(|| {
            RuntimeError::Invalid(
                "Comparing denoising strengths needs a starting picture: give an init image \
                 (img2img), or compare something else."
                    .into(),
            )
        })?;
        img.strength = s;
    }
    if let Some(l) = &v.lora {
        r.prompt = set_lora_weight(&r.prompt, &l.name, l.weight)?;
    }
    Ok(r)
}

/// `prompt` with the weight of its `<lora:NAME:...>` tag replaced by `weight` (for the text
/// encoder and the UNet alike; a dynamic rank is kept). Fails when no tag names that LoRA.
pub fn set_lora_weight(prompt: &str, name: &str, weight: f64) -> Result<String> {
    if !weight.is_finite() || weight.abs() > MAX_LORA_WEIGHT {
        return Err(RuntimeError::Invalid(format!(
            "LoRA {name:?}: weight {weight} is outside -10..10"
        )));
    }
    let found = extra_network_spans(prompt)
        .into_iter()
        .find_map(|(range, net)| {
            let tag = lora_tag(&net).ok()?;
            (tag.name == name).then_some((range, net.kind, tag.dyn_dim))
        });
    let Some((range, kind, dyn_dim)) = found else {
        return Err(RuntimeError::Invalid(format!(
            "The prompt has no <lora:{name}:WEIGHT> tag: add one to compare that LoRA's weights."
        )));
    };
    let tag = match dyn_dim {
        Some(d) => format!("<{kind}:{name}:{weight}:{weight}:{d}>"),
        None => format!("<{kind}:{name}:{weight}>"),
    };
    Ok(format!(
        "{}{tag}{}",
        &prompt[..range.start],
        &prompt[range.end..]
    ))
}

/// Sets the request's sampler by any name users know (A1111, ComfyUI, or a legacy name such as
/// "DPM++ 2M Karras" that also names a schedule) and its schedule, both by their display names.
/// A schedule named here wins over a legacy name's; empty or "Automatic" names none.
pub fn set_sampler(r: &mut Request, sampler: &str, schedule_name: Option<&str>) -> Result<()> {
    let (entry, legacy) = parse_sampler(sampler)?;
    r.sampler = entry.name.to_string();
    let named = schedule_name
        .map(str::trim)
        .filter(|s| !s.is_empty() && !s.eq_ignore_ascii_case("automatic"));
    match (named, legacy) {
        (Some(name), _) => r.schedule = schedule(name)?.name.to_string(),
        (None, Some(s)) => r.schedule = s.name.to_string(),
        (None, None) => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Request {
        Request {
            prompt: "p".into(),
            negative_prompt: String::new(),
            seed: 1,
            steps: 10,
            cfg: 7.0,
            sampler: "Euler".into(),
            schedule: "Normal".into(),
            width: 64,
            height: 64,
            noise: Default::default(),
            ..Default::default()
        }
    }

    fn v(sampler: &str, schedule: &str, steps: Option<u32>) -> Variant {
        Variant {
            sampler: sampler.into(),
            schedule: schedule.into(),
            steps,
            ..Default::default()
        }
    }

    #[test]
    fn a_strength_axis_changes_the_img2img_strength_and_needs_an_init_image() {
        let strengths = [0.3, 0.7].map(|s| Variant {
            sampler: "Euler".into(),
            strength: Some(s),
            ..Default::default()
        });
        let e = cells(&base(), &strengths).unwrap_err();
        assert!(e.to_string().contains("starting picture"), "{e}");
        let mut i2i = base();
        i2i.img2img = Some(Default::default());
        let got = cells(&i2i, &strengths).unwrap();
        let got: Vec<f64> = got
            .iter()
            .map(|r| r.img2img.as_ref().unwrap().strength)
            .collect();
        assert_eq!(got, [0.3, 0.7]);
        let mut bad = strengths.clone();
        bad[1].strength = Some(1.5);
        assert!(cells(&i2i, &bad).is_err());
    }

    #[test]
    fn a_lora_weight_axis_rewrites_that_tag_only() {
        let mut b = base();
        b.prompt = "a fox <lora:ink:0.8:0.2>, <lora:paper:1> <hypernet:x:1>".into();
        let weights = [0.0, 0.5, 1.0].map(|w| Variant {
            sampler: "Euler".into(),
            lora: Some(LoraWeight {
                name: "ink".into(),
                weight: w,
            }),
            ..Default::default()
        });
        let got: Vec<String> = cells(&b, &weights)
            .unwrap()
            .into_iter()
            .map(|r| r.prompt)
            .collect();
        assert_eq!(
            got,
            [
                "a fox <lora:ink:0>, <lora:paper:1> <hypernet:x:1>",
                "a fox <lora:ink:0.5>, <lora:paper:1> <hypernet:x:1>",
                "a fox <lora:ink:1>, <lora:paper:1> <hypernet:x:1>",
            ]
        );
        assert_eq!(
            set_lora_weight("<lyco:ink:1:1:8> x", "ink", 0.25).unwrap(),
            "<lyco:ink:0.25:0.25:8> x"
        );
        let e = set_lora_weight("a fox <lora:paper:1>", "ink", 1.0).unwrap_err();
        assert!(e.to_string().contains("no <lora:ink:WEIGHT> tag"), "{e}");
        assert!(set_lora_weight("<lora:ink:1>", "ink", 11.0).is_err());
    }

    #[test]
    fn cells_change_what_their_variant_says_within_the_cap() {
        let got = cells(
            &base(),
            &[
                v("euler_ancestral", "karras", Some(4)),
                v("DPM++ 2M Karras", "", None),
                v("DPM++ 2M Karras", "Exponential", None),
            ],
        )
        .unwrap();
        assert_eq!(
            (
                got[0].sampler.as_str(),
                got[0].schedule.as_str(),
                got[0].steps
            ),
            ("Euler a", "Karras", 4)
        );
        assert_eq!(
            (
                got[1].sampler.as_str(),
                got[1].schedule.as_str(),
                got[1].steps
            ),
            ("DPM++ 2M", "Karras", 10)
        );
        assert_eq!(got[2].schedule, "Exponential", "a named schedule wins");
        let e = cells(&base(), &[v("Euler", "Normal", None)]).unwrap_err();
        assert!(e.to_string().contains("at least two"), "{e}");
        let many = vec![v("Euler", "Normal", None); MAX_COMPARE_CELLS + 1];
        let e = cells(&base(), &many).unwrap_err();
        assert!(e.to_string().contains("at most 16"), "{e}");
        assert!(cells(
            &base(),
            &[v("Nope", "Normal", None), v("Euler", "Normal", None)]
        )
        .is_err());
    }
}
