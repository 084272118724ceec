//! Model families (SD 1.x, SD 2.x, SDXL, Flux.1): how a family is recognised from its configs, and what
//! each one decides (defaults, text encoder layers, preview colours, extra conditioning). Each
//! family's knowledge lives in its own module; nothing elsewhere matches on the family.

pub mod flux;
mod sd1;
mod sd2;
pub mod sdxl;
pub mod spec;

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use crate::arch::network::NetCond;
use crate::Result;
use spec::FamilySpec;

/// The architecture family of a model; decides defaults and preview coefficients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// Stable Diffusion 1.x (CLIP ViT-L text encoder, conv projections).
    Sd1,
    /// Stable Diffusion 2.x (OpenCLIP text encoder, linear projections).
    Sd2,
    /// Stable Diffusion XL (two text encoders, added size/crop conditioning).
    Sdxl,
    /// Flux.1 dev and schnell (flow-matching transformer, T5 and CLIP-L).
    Flux,
}

impl Family {
    /// Every family, in the order a UI lists them.
    pub const ALL: [Family; 4] = [Family::Sd1, Family::Sd2, Family::Sdxl, Family::Flux];

    /// The family's facts and defaults.
    pub fn spec(self) -> &'static FamilySpec {
        match self {
            Family::Sd1 => &sd1::SPEC,
            Family::Sd2 => &sd2::SPEC,
            Family::Sdxl => &sdxl::SPEC,
            Family::Flux => &flux::SPEC,
        }
    }

    /// Human-readable name.
    pub fn display_name(self) -> &'static str {
        self.spec().display_name
    }

    /// How many text encoders the family's models have.
    pub fn text_encoders(self) -> usize {
        self.spec().text_encoders
    }

    /// Recognises the family of a UNet model from its structure, never from its name: the
    /// UNet config's added embedding and projections, the pipeline class, and whether the
    /// folder has a second text encoder.
    pub fn detect(
        addition_embed_type: Option<&str>,
        use_linear_projection: bool,
        class_name: Option<&str>,
        has_second_text_encoder: bool,
    ) -> Family {
        let xl = addition_embed_type == Some("text_time")
            || class_name.is_some_and(|c| c.contains("XL"))
            || has_second_text_encoder;
        if xl {
            Family::Sdxl
        } else if use_linear_projection {
            Family::Sd2
        } else {
            Family::Sd1
        }
    }

    /// The network conditioning for one image of `width` x `height`: the text context, plus
    /// what the family adds (SDXL's pooled text and size ids; Flux's pooled CLIP vector and
    /// distilled `guidance` scale).
    pub fn conditioning(
        self,
        context: Tensor,
        pooled: Option<&Tensor>,
        width: u32,
        height: u32,
        guidance: f64,
    ) -> Result<NetCond> {
        if self == Family::Flux {
            return flux::conditioning(context, pooled, guidance);
        }
        let added = match (self, pooled) {
            (Family::Sdxl, Some(p)) => Some(sdxl::size_conditioning(p, width, height)?),
            _ => None,
        };
        Ok(NetCond::CrossAttention { context, added })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_are_told_apart_by_structure() {
        assert_eq!(Family::detect(None, false, None, false), Family::Sd1);
        assert_eq!(Family::detect(None, true, None, false), Family::Sd2);
        assert_eq!(
            Family::detect(Some("text_time"), true, None, false),
            Family::Sdxl
        );
        assert_eq!(
            Family::detect(None, true, Some("StableDiffusionXLPipeline"), false),
            Family::Sdxl
        );
        assert_eq!(Family::detect(None, true, None, true), Family::Sdxl);
    }

    #[test]
    fn sdxl_size_ids_follow_diffusers() {
        let pooled =
            Tensor::zeros((2, 3), candle_core::DType::F32, &candle_core::Device::Cpu).unwrap();
        let NetCond::CrossAttention { added: Some(a), .. } = Family::Sdxl
            .conditioning(pooled.clone(), Some(&pooled), 832, 1216, 0.0)
            .unwrap()
        else {
            panic!("SDXL has added conditioning")
        };
        assert_eq!(
            a.time_ids.to_vec2::<f32>().unwrap(),
            vec![vec![1216.0, 832.0, 0.0, 0.0, 1216.0, 832.0]; 2]
        );
        let NetCond::CrossAttention { added, .. } = Family::Sd1
            .conditioning(pooled.clone(), None, 64, 64, 0.0)
            .unwrap()
        else {
            panic!("SD1 takes cross-attention conditioning")
        };
        assert!(added.is_none());
    }
}
