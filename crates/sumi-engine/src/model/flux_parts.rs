//! A Flux model's T5 and transformer, kept loaded or loaded on demand as the offload setting
//! says (shared by the folder and the single-file loaders). Each is read once at load either
//! way, so a broken file is reported then, and the memory it holds is measured.

use std::sync::Arc;

use super::offload::{measured, Offload, OnDemandNetwork};
use crate::arch::flux::FluxTransformer;
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
}

/// The transformer as a denoising network, kept or on demand.
pub(super) fn network(load: TransformerLoader, offload: Offload) -> Result<Network> {
    let ((transformer, tables), bytes) = measured(|| load());
    let transformer = transformer?;
    let guidance_distilled = transformer.has_guidance();
    if !offload.network() {
        return Ok(Network {
            network: Box::new(FluxNetwork::new(transformer)),
            tables,
            bytes,
            guidance_distilled,
        });
    }
    let config = transformer.config().clone();
    drop(transformer);
    let in_channels = config.in_channels / 4;
    let reload =
        move || -> Result<Box<dyn DenoisingNetwork>> { Ok(Box::new(FluxNetwork::new(load()?))) };
    let network = OnDemandNetwork::new(
        Box::new(reload),
        in_channels,
        Box::new(move |h, w, b, e| activation_bytes(&config, h, w, b, e)),
    );
    Ok(Network {
        network: Box::new(network),
        tables: Vec::new(),
        bytes,
        guidance_distilled,
    })
}
