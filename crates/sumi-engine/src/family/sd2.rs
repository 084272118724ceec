//! Stable Diffusion 2.x: one OpenCLIP ViT-H text encoder (its penultimate layer, shipped as the
//! last one), linear transformer projections, eps or v prediction, 512 or 768 px.

use super::spec::{FamilySpec, Heads, LdmLayout, LdmTextEncoder, TextStyle};

/// SD 2.x (the same VAE as SD 1.x).
pub(super) const SPEC: FamilySpec = FamilySpec {
    display_name: "SD 2.x",
    text_encoders: 1,
    text_style: TextStyle::TruncatedLastLayer,
    cfg: 7.0,
    scaling_factor: 0.18215,
    preview: super::sd1::PREVIEW,
    ldm: LdmLayout {
        text_encoders: &[LdmTextEncoder {
            prefix: "cond_stage_model.model.",
            openclip: true,
            skip_last_layer: true,
            projection: false,
        }],
        heads: Heads::Width(64),
        sample_size: (64, 96),
    },
};
