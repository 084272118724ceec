//! Stable Diffusion XL: two text encoders (penultimate layers joined, pooled output of the
//! second), and the added size/crop conditioning of its UNet.

use candle_core::{Result, Tensor};

use super::spec::{FamilySpec, Heads, LdmLayout, LdmTextEncoder, PreviewCoefficients, TextStyle};
use crate::arch::network::AddedCond;

/// SDXL.
pub(super) const SPEC: FamilySpec = FamilySpec {
    display_name: "SDXL",
    text_encoders: 2,
    text_style: TextStyle::Penultimate,
    cfg: 6.0,
    scaling_factor: 0.13025,
    preview: PreviewCoefficients {
        weights: &[
            [0.3651, 0.4232, 0.4341],
            [-0.2533, -0.0042, 0.1068],
            [0.1076, 0.1111, -0.0362],
            [-0.3165, -0.2492, -0.2188],
        ],
        bias: [0.1084, -0.0175, -0.0011],
    },
    ldm: LdmLayout {
        text_encoders: &[
            LdmTextEncoder {
                prefix: "conditioner.embedders.0.transformer.",
                openclip: false,
                skip_last_layer: false,
                projection: false,
            },
            LdmTextEncoder {
                prefix: "conditioner.embedders.1.model.",
                openclip: true,
                skip_last_layer: false,
                projection: true,
            },
        ],
        heads: Heads::Width(64),
        sample_size: (128, 128),
    },
};

/// The UNet's added conditioning for an image of `width` x `height`: the pooled text embedding
/// and the six time ids (original size, crop top-left 0,0, target size), one row per pooled row.
pub fn size_conditioning(pooled: &Tensor, width: u32, height: u32) -> Result<AddedCond> {
    let (h, w) = (height as f32, width as f32);
    let ids = Tensor::new(&[h, w, 0.0, 0.0, h, w], pooled.device())?
        .unsqueeze(0)?
        .repeat((pooled.dim(0)?, 1))?;
    Ok(AddedCond {
        text_embeds: pooled.clone(),
        time_ids: ids,
    })
}
