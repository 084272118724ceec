//! A1111's image-to-image and hires fix keys (`Denoising strength`, `Mask blur`, `Inpaint
//! area`, `Masked area padding`, `Masked content`, `Hires upscale`, `Hires resize`, `Hires
//! steps`, `Hires upscaler`, `Hires sampler`, `Hires schedule type`, `Hires prompt`, `Hires
//! negative prompt`), written and read as A1111 does.

use crate::record::{GenerationParams, HiresParams, SourceParams};

/// What the keys of one text said.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Img2ImgKeys {
    /// `Denoising strength`.
    pub strength: Option<f64>,
    /// `Mask blur`.
    pub mask_blur: Option<u32>,
    /// `Inpaint area: Only masked`.
    pub only_masked: bool,
    /// `Masked area padding`.
    pub masked_padding: Option<u32>,
    /// `Masked content`, as Sumi names it.
    pub masked_content: Option<String>,
    /// The hires keys, when any was present.
    pub hires: Option<HiresParams>,
}

/// `Denoising strength`, written before `Clip skip` as A1111 orders it.
pub fn strength_pair(p: &GenerationParams) -> Option<(&'static str, String)> {
    let s = match (&p.img2img, &p.hires) {
        (Some(i), _) => i.strength,
        (None, Some(h)) => h.strength,
        (None, None) => return None,
    };
    Some(("Denoising strength", s.to_string()))
}

/// The other keys, written after the prompt options as A1111's extra parameters.
pub fn extra_pairs(p: &GenerationParams) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if let Some(i) = p.img2img.as_ref().filter(|i| i.mask.is_some()) {
        out.push(("Mask blur", i.mask_blur.to_string()));
        if i.only_masked {
            out.push(("Inpaint area", "Only masked".into()));
            out.push(("Masked area padding", i.masked_padding.to_string()));
        }
        out.push(("Masked content", i.masked_content.replace('_', " ")));
    }
    if let Some(h) = &p.hires {
        if h.width == 0 && h.height == 0 {
            out.push(("Hires upscale", h.scale.to_string()));
        } else {
            out.push(("Hires resize", format!("{}x{}", h.width, h.height)));
        }
        if h.steps != 0 {
            out.push(("Hires steps", h.steps.to_string()));
        }
        out.push(("Hires upscaler", h.upscaler.clone()));
        if !h.sampler.is_empty() && h.sampler != p.sampler {
            out.push(("Hires sampler", h.sampler.clone()));
        }
        if !h.schedule.is_empty() && h.schedule != p.schedule {
            out.push(("Hires schedule type", h.schedule.clone()));
        }
        if !h.prompt.is_empty() && h.prompt != p.prompt {
            out.push(("Hires prompt", h.prompt.clone()));
        }
        if !h.negative_prompt.is_empty() && h.negative_prompt != p.negative_prompt {
            out.push(("Hires negative prompt", h.negative_prompt.clone()));
        }
    }
    out
}

fn hires(k: &mut Img2ImgKeys) -> &mut HiresParams {
    k.hires.get_or_insert_with(Default::default)
}

/// Reads one pair; false when the key is not one of these or its value does not read.
pub fn apply(k: &mut Img2ImgKeys, key: &str, value: &str) -> bool {
    let num = |v: &str| v.trim().parse::<f64>().ok().filter(|v| v.is_finite());
    match key {
        "Denoising strength" => num(value).map(|v| k.strength = Some(v)).is_some(),
        "Mask blur" => value.parse().map(|v| k.mask_blur = Some(v)).is_ok(),
        "Inpaint area" => {
            k.only_masked = value.eq_ignore_ascii_case("Only masked");
            true
        }
        "Masked area padding" => value.parse().map(|v| k.masked_padding = Some(v)).is_ok(),
        "Masked content" => {
            k.masked_content = Some(value.trim().to_lowercase().replace(' ', "_"));
            true
        }
        "Hires upscale" => num(value).map(|v| hires(k).scale = v).is_some(),
        "Hires resize" => match value.split_once('x') {
            Some((w, h)) => match (w.trim().parse(), h.trim().parse()) {
                (Ok(w), Ok(h)) => {
                    let p = hires(k);
                    (p.width, p.height) = (w, h);
                    true
                }
                _ => false,
            },
            None => false,
        },
        "Hires steps" => value.parse().map(|v| hires(k).steps = v).is_ok(),
        "Hires upscaler" => {
            hires(k).upscaler = value.to_string();
            true
        }
        "Hires sampler" => {
            hires(k).sampler = value.to_string();
            true
        }
        "Hires schedule type" => {
            hires(k).schedule = value.to_string();
            true
        }
        "Hires prompt" => {
            hires(k).prompt = value.to_string();
            true
        }
        "Hires negative prompt" => {
            hires(k).negative_prompt = value.to_string();
            true
        }
        _ => false,
    }
}

/// Puts what the keys said into `p`: a hires pass, or an img2img whose source Sumi does not
/// have (an empty `init_image`: a re-run needs the picture given again).
pub fn into_params(k: &Img2ImgKeys, p: &mut GenerationParams) {
    if let Some(h) = &k.hires {
        let mut h = h.clone();
        if let Some(s) = k.strength {
            h.strength = s;
        }
        p.hires = Some(h);
    } else if let Some(strength) = k.strength {
        let d = SourceParams::default();
        let inpaint = k.mask_blur.is_some() || k.masked_content.is_some();
        p.img2img = Some(SourceParams {
            strength,
            mask: inpaint.then(String::new),
            mask_blur: k.mask_blur.unwrap_or(d.mask_blur),
            only_masked: k.only_masked,
            masked_padding: k.masked_padding.unwrap_or(d.masked_padding),
            masked_content: k.masked_content.clone().unwrap_or(d.masked_content),
            ..d
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hires_and_inpaint_keys_round_trip() {
        let p = GenerationParams {
            hires: Some(HiresParams {
                scale: 1.5,
                steps: 10,
                strength: 0.55,
                upscaler: "Latent (bicubic)".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let text = crate::infotext::format(&p);
        assert!(text.contains("Denoising strength: 0.55"), "{text}");
        assert!(
            text.contains("Hires upscale: 1.5, Hires steps: 10, Hires upscaler: Latent (bicubic)"),
            "{text}"
        );
        let back = crate::infotext::parse(&text).to_params().unwrap();
        assert_eq!(back.hires, p.hires);
        let q = GenerationParams {
            img2img: Some(SourceParams {
                init_image: "a".repeat(64),
                mask: Some("b".repeat(64)),
                mask_blur: 8,
                only_masked: true,
                masked_padding: 16,
                strength: 0.4,
                ..Default::default()
            }),
            ..Default::default()
        };
        let text = crate::infotext::format(&q);
        assert!(text.contains("Mask blur: 8, Inpaint area: Only masked, Masked area padding: 16, Masked content: original"), "{text}");
        let back = crate::infotext::parse(&text).to_params().unwrap();
        let i = back.img2img.unwrap();
        assert_eq!(
            (
                i.init_image.as_str(),
                i.strength,
                i.mask_blur,
                i.masked_padding
            ),
            ("", 0.4, 8, 16)
        );
        assert!(i.only_masked && i.mask == Some(String::new()));
    }
}
