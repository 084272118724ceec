//! Flux transformer single files as users have them: BFL's names (`flux1-dev.safetensors`,
//! ComfyUI's files, city96's GGUF files), with or without the `model.diffusion_model.` prefix,
//! or diffusers' names in one file. The map takes the diffusers names Sumi's
//! [`FluxTransformer`](crate::arch::flux::FluxTransformer) asks for to BFL's: fused q/k/v
//! (and, in single blocks, q/k/v/MLP) are cut by rows, and the final modulation's shift/scale
//! halves are swapped (diffusers keeps scale first).

use std::path::Path;
use std::sync::Arc;

use candle_core::Device;

use super::single_file::{SingleFile, Source, Store};
use crate::{Error, Result};

/// Prefixes BFL-named tensors are found under.
const BFL_PREFIXES: [&str; 3] = ["model.diffusion_model.", "diffusion_model.", ""];
/// Prefixes diffusers-named tensors are found under.
const DIFFUSERS_PREFIXES: [&str; 3] = ["", "transformer.", "model.diffusion_model."];

/// Opens a Flux transformer file (`.safetensors` or `.gguf`) and recognises its naming.
pub fn open_flux(path: &Path, device: &Device) -> Result<SingleFile> {
    let store = Store::open(path)?;
    let has = |k: &str| store.shape(k).is_some();
    let map: Arc<super::single_file::NameMap> = if let Some(p) = BFL_PREFIXES
        .iter()
        .find(|p| has(&format!("{p}img_in.weight")))
    {
        let p = p.to_string();
        let dim = store
            .shape(&format!("{p}img_in.weight"))
            .and_then(|s| s.first().copied())
            .unwrap_or(0);
        Arc::new(move |name: &str| bfl_source(name, dim).map(|s| prefixed(&p, s)))
    } else if let Some(p) = DIFFUSERS_PREFIXES
        .iter()
        .find(|p| has(&format!("{p}x_embedder.weight")))
    {
        let p = p.to_string();
        Arc::new(move |name: &str| Some(Source::Plain(format!("{p}{name}"))))
    } else {
        return Err(not_flux(path, &store));
    };
    Ok(SingleFile::new(path, Arc::new(store), map, device))
}

/// The error for a file that holds no Flux transformer, saying what it seems to be instead.
fn not_flux(path: &Path, store: &Store) -> Error {
    let keys = store.keys();
    let any = |p: &str| keys.iter().any(|k| k.contains(p));
    let reason = if any("input_blocks.") || any("down_blocks.") {
        "this is a Stable Diffusion (UNet) checkpoint, not a Flux transformer; load it as a \
         Stable Diffusion model"
            .to_string()
    } else if any("lora_") || any(".alpha") {
        "this looks like a LoRA file, not a Flux transformer; load a Flux model and apply the \
         LoRA to it"
            .to_string()
    } else if any("enc.blk.") || any("encoder.block.") {
        "this is a T5 text encoder, not a Flux transformer".to_string()
    } else {
        let mut some: Vec<&str> = keys.into_iter().take(3).collect();
        some.sort_unstable();
        format!(
            "not a Flux transformer: expected BFL names (img_in.weight, \
             double_blocks.N.img_attn.qkv.weight, single_blocks.N.linear1.weight, ..., \
             optionally under model.diffusion_model.) or diffusers names (x_embedder.weight, \
             transformer_blocks.N.attn.to_q.weight, ...); the file has e.g. {some:?}"
        )
    };
    Error::model(path, reason)
}

fn prefixed(p: &str, s: Source) -> Source {
    match s {
        Source::Plain(k) => Source::Plain(format!("{p}{k}")),
        Source::Rows(k, a, b) => Source::Rows(format!("{p}{k}"), a, b),
        Source::SwapHalves(k) => Source::SwapHalves(format!("{p}{k}")),
    }
}

/// Splits `"<head>.<index>.<rest>"` after `head`.
fn index_rest<'a>(s: &'a str, head: &str) -> Option<(usize, &'a str)> {
    let r = s.strip_prefix(head)?.strip_prefix('.')?;
    let (i, rest) = r.split_once('.')?;
    Some((i.parse().ok()?, rest))
}

/// The first `(diffusers, bfl)` prefix pair of `table` that `name` starts with, renamed.
fn renamed(name: &str, table: &[(&str, &str)]) -> Option<String> {
    table
        .iter()
        .find_map(|(d, b)| name.strip_prefix(d).map(|rest| format!("{b}{rest}")))
}

/// Rows `part * dim .. (part + len) * dim` of fused `key` (+ `.weight` / `.bias` of `param`).
fn rows(key: &str, param: &str, part: usize, len: usize, dim: usize) -> Source {
    Source::Rows(format!("{key}.{param}"), part * dim, len * dim)
}

/// The BFL tensor (without prefix) behind diffusers' `name`, for a model `dim` wide.
pub fn bfl_source(name: &str, dim: usize) -> Option<Source> {
    const TOP: [(&str, &str); 8] = [
        ("x_embedder.", "img_in."),
        ("context_embedder.", "txt_in."),
        (
            "time_text_embed.timestep_embedder.linear_1.",
            "time_in.in_layer.",
        ),
        (
            "time_text_embed.timestep_embedder.linear_2.",
            "time_in.out_layer.",
        ),
        (
            "time_text_embed.guidance_embedder.linear_1.",
            "guidance_in.in_layer.",
        ),
        (
            "time_text_embed.guidance_embedder.linear_2.",
            "guidance_in.out_layer.",
        ),
        (
            "time_text_embed.text_embedder.linear_1.",
            "vector_in.in_layer.",
        ),
        (
            "time_text_embed.text_embedder.linear_2.",
            "vector_in.out_layer.",
        ),
    ];
    if let Some(k) = renamed(name, &TOP) {
        return Some(Source::Plain(k));
    }
    if let Some(p) = name.strip_prefix("norm_out.linear.") {
        return Some(Source::SwapHalves(format!(
            "final_layer.adaLN_modulation.1.{p}"
        )));
    }
    if let Some(p) = name.strip_prefix("proj_out.") {
        return Some(Source::Plain(format!("final_layer.linear.{p}")));
    }
    if let Some((i, rest)) = index_rest(name, "transformer_blocks") {
        return double_source(&format!("double_blocks.{i}"), rest, dim);
    }
    if let Some((i, rest)) = index_rest(name, "single_transformer_blocks") {
        return single_source(&format!("single_blocks.{i}"), rest, dim);
    }
    None
}

fn double_source(b: &str, rest: &str, dim: usize) -> Option<Source> {
    const PLAIN: [(&str, &str); 12] = [
        ("norm1.linear.", "img_mod.lin."),
        ("norm1_context.linear.", "txt_mod.lin."),
        ("attn.norm_q.weight", "img_attn.norm.query_norm.scale"),
        ("attn.norm_k.weight", "img_attn.norm.key_norm.scale"),
        ("attn.norm_added_q.weight", "txt_attn.norm.query_norm.scale"),
        ("attn.norm_added_k.weight", "txt_attn.norm.key_norm.scale"),
        ("attn.to_out.0.", "img_attn.proj."),
        ("attn.to_add_out.", "txt_attn.proj."),
        ("ff.net.0.proj.", "img_mlp.0."),
        ("ff.net.2.", "img_mlp.2."),
        ("ff_context.net.0.proj.", "txt_mlp.0."),
        ("ff_context.net.2.", "txt_mlp.2."),
    ];
    if let Some(k) = renamed(rest, &PLAIN) {
        return Some(Source::Plain(format!("{b}.{k}")));
    }
    let (proj, param) = rest.strip_prefix("attn.")?.split_once('.')?;
    let (side, part) = match proj {
        "to_q" => ("img", 0),
        "to_k" => ("img", 1),
        "to_v" => ("img", 2),
        "add_q_proj" => ("txt", 0),
        "add_k_proj" => ("txt", 1),
        "add_v_proj" => ("txt", 2),
        _ => return None,
    };
    Some(rows(&format!("{b}.{side}_attn.qkv"), param, part, 1, dim))
}

fn single_source(b: &str, rest: &str, dim: usize) -> Option<Source> {
    const PLAIN: [(&str, &str); 4] = [
        ("norm.linear.", "modulation.lin."),
        ("attn.norm_q.weight", "norm.query_norm.scale"),
        ("attn.norm_k.weight", "norm.key_norm.scale"),
        ("proj_out.", "linear2."),
    ];
    if let Some(k) = renamed(rest, &PLAIN) {
        return Some(Source::Plain(format!("{b}.{k}")));
    }
    let linear1 = format!("{b}.linear1");
    if let Some(param) = rest.strip_prefix("proj_mlp.") {
        return Some(rows(&linear1, param, 3, 4, dim));
    }
    let (proj, param) = rest.strip_prefix("attn.")?.split_once('.')?;
    let part = match proj {
        "to_q" => 0,
        "to_k" => 1,
        "to_v" => 2,
        _ => return None,
    };
    Some(rows(&linear1, param, part, 1, dim))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diffusers_names_map_onto_bfl_names() {
        let d = 3072;
        let plain = |k: &str| Some(Source::Plain(k.to_string()));
        assert_eq!(bfl_source("x_embedder.weight", d), plain("img_in.weight"));
        assert_eq!(
            bfl_source("transformer_blocks.7.attn.add_k_proj.bias", d),
            Some(Source::Rows(
                "double_blocks.7.txt_attn.qkv.bias".into(),
                d,
                d
            ))
        );
        assert_eq!(
            bfl_source("single_transformer_blocks.3.proj_mlp.weight", d),
            Some(Source::Rows(
                "single_blocks.3.linear1.weight".into(),
                3 * d,
                4 * d
            ))
        );
        assert_eq!(
            bfl_source("norm_out.linear.bias", d),
            Some(Source::SwapHalves(
                "final_layer.adaLN_modulation.1.bias".into()
            ))
        );
        assert_eq!(
            bfl_source("transformer_blocks.0.attn.norm_added_q.weight", d),
            plain("double_blocks.0.txt_attn.norm.query_norm.scale")
        );
        assert_eq!(
            bfl_source("single_transformer_blocks.0.proj_out.weight", d),
            plain("single_blocks.0.linear2.weight")
        );
        assert_eq!(
            bfl_source("proj_out.bias", d),
            plain("final_layer.linear.bias")
        );
        assert_eq!(bfl_source("transformer_blocks.0.attn.to_x.weight", d), None);
    }
}
