//! Flux.1 (dev and schnell): a flow-matching transformer conditioned on T5 token states and a
//! pooled CLIP-L vector, dev also on a distilled guidance scale; 16-channel latents.

use candle_core::{Device, Tensor};

use super::spec::{FamilySpec, Heads, LdmLayout, PreviewCoefficients, TextStyle};
use crate::arch::network::NetCond;
use crate::Result;

/// ComfyUI's latent -> RGB fit for the Flux VAE (`latent_formats.Flux`).
const PREVIEW: PreviewCoefficients = PreviewCoefficients {
    weights: &[
        [-0.0346, 0.0244, 0.0681],
        [0.0034, 0.0210, 0.0687],
        [0.0275, -0.0668, -0.0433],
        [-0.0174, 0.0160, 0.0617],
        [0.0859, 0.0721, 0.0329],
        [0.0004, 0.0383, 0.0115],
        [0.0405, 0.0861, 0.0915],
        [-0.0236, -0.0185, -0.0259],
        [-0.0245, 0.0250, 0.1180],
        [0.1008, 0.0755, -0.0421],
        [-0.0515, 0.0201, 0.0011],
        [0.0428, -0.0012, -0.0036],
        [0.0817, 0.0765, 0.0749],
        [-0.1264, -0.0522, -0.1103],
        [-0.0280, -0.0881, -0.0499],
        [-0.1262, -0.0982, -0.0778],
    ],
    bias: [-0.0329, -0.0718, -0.0851],
};

/// The distilled guidance scale dev models are run with when a request names none (diffusers'
/// `FluxPipeline`, Forge's "Distilled CFG Scale").
pub const DEFAULT_GUIDANCE: f64 = 3.5;

/// The T5 sequence length dev models were distilled with (schnell: 256).
pub const DEV_MAX_SEQUENCE: usize = 512;
/// The T5 sequence length of schnell models.
pub const SCHNELL_MAX_SEQUENCE: usize = 256;

/// ComfyUI's and Forge's constant time shift for guidance-distilled (dev) models; schnell's is 1.
pub const DEV_SHIFT: f64 = 1.15;

/// Flux.1.
pub(super) const SPEC: FamilySpec = FamilySpec {
    display_name: "Flux.1",
    text_encoders: 2,
    text_style: TextStyle::Flux,
    cfg: 1.0,
    scaling_factor: 0.3611,
    preview: PREVIEW,
    ldm: LdmLayout {
        text_encoders: &[],
        heads: Heads::Width(128),
        sample_size: (128, 128),
    },
};

/// The transformer's conditioning: T5 states, the pooled CLIP vector, and the guidance scale
/// for every row (ignored by models without guidance embeddings).
pub(super) fn conditioning(txt: Tensor, pooled: Option<&Tensor>, guidance: f64) -> Result<NetCond> {
    let rows = txt.dim(0)?;
    let pooled = match pooled {
        Some(p) => p.clone(),
        None => {
            return Err(crate::Error::InvalidRequest(
                "a Flux model needs the pooled CLIP-L vector of the prompt".into(),
            ))
        }
    };
    let guidance = Tensor::full(guidance as f32, rows, &Device::Cpu)?
        .to_device(txt.device())?
        .to_dtype(txt.dtype())?;
    Ok(NetCond::Flow {
        txt,
        pooled,
        guidance: Some(guidance),
    })
}
