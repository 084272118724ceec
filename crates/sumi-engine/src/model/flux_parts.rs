//! A Flux model's T5 and transformer, kept loaded or loaded on demand as the offload setting
//! says (shared by the folder and the single-file loaders). Each is read once at load either
//! way, so a broken file is reported then, and the memory it holds is measured.

use std::sync::Arc;

use super::offload::{measured, Offload, OnDemandNetwork};
use crate::arch::flux::{FluxConfig, FluxTransformer};
use crate::arch::flux_network::{activation_bytes, FluxNetwork};
use crate::arch::network::DenoisingNetwork;
use crate::arch::t5::T5Encoder;
use crate::text::t5_text::{T5Loader, T5Text, T5Tokenizer};
use crate::weights::params::ParamTable;
use crate::Result;

/// Reads the transformer from its files.
pub(super) type TransformerLoader = Arc<dyn Fn() -> Result<FluxTransformer> + Send + Sync>;

/// T5 with `tokenizer`, kept or on demand; and the bytes it holds when loaded.
pub(super) fn t5_text(
    load: T5Loader,
    tokenizer: T5Tokenizer,
    max_len: usize,
    offload: Offload,
    device: &candle_core::Device,
) -> Result<(T5Text, u64)> {
    let ((model, _), bytes) = measured(|| load());
    let model: T5Encoder = model?;
    if !offload.encoders() {
        return Ok((T5Text::resident(tokenizer, model, max_len, device), bytes));
    }
    let width = model.config().d_model;
    drop(model);
    crate::alloc::release_free();
    Ok((
        T5Text::on_demand(tokenizer, load, width, max_len, device),
        bytes,
    ))
}

/// What the transformer loader gives the model.
pub(super) struct Network {
    /// The network, kept or on demand.
    pub network: Box<dyn DenoisingNetwork>,
    /// Its parameters for LoRA patching (empty on demand).
    pub tables: Vec<ParamTable>,
    /// Bytes it holds when loaded.
    pub bytes: u64,
    /// Whether it takes a distilled guidance scale (dev).
    pub guidance_distilled: bool,
    /// Its configuration.
    pub config: FluxConfig,
}

/// Refuses text encoders whose widths are not the ones the transformer takes (a CLIP-G or an
/// SD text encoder passed as CLIP-L, another T5), naming the part.
pub(super) fn check_widths(config: &FluxConfig, clip: usize, t5: usize) -> Result<()> {
    if clip != config.pooled_projection_dim {
        return Err(crate::Error::InvalidRequest(format!(
            "the CLIP text encoder gives {clip}-wide pooled vectors but this Flux transformer \
             takes {}: pass Flux's CLIP-L (clip_l.safetensors) with --clip-l",
            config.pooled_projection_dim
        )));
    }
    if t5 != config.joint_attention_dim {
        return Err(crate::Error::InvalidRequest(format!(
            "the T5 text encoder gives {t5}-wide token states but this Flux transformer takes \
             {}: pass T5 v1.1 XXL's encoder (t5xxl_*.safetensors or a GGUF of it) with --t5",
            config.joint_attention_dim
        )));
    }
    Ok(())
}

/// The transformer as a denoising network, kept or on demand.
pub(super) fn network(load: TransformerLoader, offload: Offload) -> Result<Network> {
    let ((transformer, tables), bytes) = measured(|| load());
    let transformer = transformer?;
    let guidance_distilled = transformer.has_guidance();
    let config = transformer.config().clone();
    if !offload.network() {
        return Ok(Network {
            network: Box::new(FluxNetwork::new(transformer)),
            tables,
            bytes,
            guidance_distilled,
            config,
        });
    }
    drop(transformer);
    crate::alloc::release_free();
    let in_channels = config.in_channels / 4;
    let reload =
        move || -> Result<Box<dyn DenoisingNetwork>> { Ok(Box::new(FluxNetwork::new(load()?))) };
    let cfg = config.clone();
    let network = OnDemandNetwork::new(
        Box::new(reload),
        in_channels,
        Box::new(move |h, w, b, e| activation_bytes(&cfg, h, w, b, e)),
    );
    Ok(Network {
        network: Box::new(network),
        tables: Vec::new(),
        bytes,
        guidance_distilled,
        config,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_encoders_of_other_widths_are_named() {
        let cfg: FluxConfig = serde_json::from_str(
            r#"{"in_channels": 64, "num_layers": 19, "num_single_layers": 38,
                "attention_head_dim": 128, "num_attention_heads": 24,
                "joint_attention_dim": 4096, "pooled_projection_dim": 768,
                "guidance_embeds": true, "axes_dims_rope": [16, 56, 56]}"#,
        )
        .unwrap();
        assert!(check_widths(&cfg, 768, 4096).is_ok());
        let clip_g = check_widths(&cfg, 1280, 4096).unwrap_err().to_string();
        assert!(
            clip_g.contains("1280-wide") && clip_g.contains("--clip-l"),
            "{clip_g}"
        );
        let small_t5 = check_widths(&cfg, 768, 1024).unwrap_err().to_string();
        assert!(
            small_t5.contains("1024-wide") && small_t5.contains("--t5"),
            "{small_t5}"
        );
    }
}
