//! Stable Diffusion 1.x: one CLIP ViT-L text encoder (last layer), 1x1-conv transformer
//! projections, 512 px.

use super::spec::{FamilySpec, Heads, LdmLayout, LdmTextEncoder, PreviewCoefficients, TextStyle};

/// ComfyUI's latent -> RGB fit for the SD 1.x/2.x VAE (FACTS.md).
pub(super) const PREVIEW: PreviewCoefficients = PreviewCoefficients {
    weights: &[
        [0.3512, 0.2297, 0.3227],
        [0.3250, 0.4974, 0.2350],
        [-0.2829, 0.1762, 0.2721],
        [-0.2120, -0.2616, -0.7177],
    ],
    bias: [0.0, 0.0, 0.0],
};

/// SD 1.x.
pub(super) const SPEC: FamilySpec = FamilySpec {
    display_name: "SD 1.x",
    text_encoders: 1,
    text_style: TextStyle::LastLayer,
    cfg: 7.0,
    scaling_factor: 0.18215,
    preview: PREVIEW,
    ldm: LdmLayout {
        text_encoders: &[LdmTextEncoder {
            prefix: "cond_stage_model.transformer.",
            openclip: false,
            skip_last_layer: false,
            projection: false,
        }],
        heads: Heads::Count(8),
        sample_size: (64, 64),
    },
};
