//! T5 encoder single files as users have them: transformers' names in one safetensors file
//! (ComfyUI's `t5xxl_fp16.safetensors`, `t5xxl_fp8_e4m3fn.safetensors`), possibly under a full
//! checkpoint's `text_encoders.t5xxl.transformer.` prefix, and GGUF files with llama.cpp's T5
//! encoder names (`token_embd`, `enc.blk.N.attn_q`, ..., `enc.output_norm`; gguf-py's
//! `MODEL_TENSOR.ENC_*` table).

use std::path::Path;
use std::sync::Arc;

use candle_core::Device;

use super::single_file::{SingleFile, Source, Store};
use crate::{Error, Result};

/// Prefixes transformers-named T5 tensors are found under.
const PREFIXES: [&str; 2] = ["", "text_encoders.t5xxl.transformer."];

/// Opens a T5 encoder file (`.safetensors` or `.gguf`) and recognises its naming.
pub fn open_t5(path: &Path, device: &Device) -> Result<SingleFile> {
    let store = Store::open(path)?;
    let has = |k: &str| store.shape(k).is_some();
    let map: Arc<super::single_file::NameMap> = if has("enc.blk.0.attn_q.weight") {
        Arc::new(|name: &str| llama_cpp_source(name).map(Source::Plain))
    } else if let Some(p) = PREFIXES.iter().find(|p| {
        has(&format!(
            "{p}encoder.block.0.layer.0.SelfAttention.q.weight"
        ))
    }) {
        let p = p.to_string();
        Arc::new(move |name: &str| Some(Source::Plain(format!("{p}{name}"))))
    } else {
        let mut some: Vec<&str> = store.keys().into_iter().take(3).collect();
        some.sort_unstable();
        return Err(Error::model(
            path,
            format!(
                "not a T5 encoder: expected transformers names \
                 (encoder.block.N.layer.0.SelfAttention.q.weight, shared.weight, ...) or \
                 llama.cpp names (enc.blk.N.attn_q.weight, token_embd.weight, ...); the file \
                 has e.g. {some:?}"
            ),
        ));
    };
    Ok(SingleFile::new(path, Arc::new(store), map, device))
}

/// llama.cpp's name for transformers' T5 encoder tensor `name`.
pub fn llama_cpp_source(name: &str) -> Option<String> {
    match name {
        "shared.weight" | "encoder.embed_tokens.weight" => return Some("token_embd.weight".into()),
        "encoder.final_layer_norm.weight" => return Some("enc.output_norm.weight".into()),
        _ => {}
    }
    let rest = name.strip_prefix("encoder.block.")?;
    let (i, rest) = rest.split_once('.')?;
    let i: usize = i.parse().ok()?;
    let short = match rest {
        "layer.0.SelfAttention.q.weight" => "attn_q",
        "layer.0.SelfAttention.k.weight" => "attn_k",
        "layer.0.SelfAttention.v.weight" => "attn_v",
        "layer.0.SelfAttention.o.weight" => "attn_o",
        "layer.0.SelfAttention.relative_attention_bias.weight" => "attn_rel_b",
        "layer.0.layer_norm.weight" => "attn_norm",
        "layer.1.DenseReluDense.wi_0.weight" => "ffn_gate",
        "layer.1.DenseReluDense.wi_1.weight" | "layer.1.DenseReluDense.wi.weight" => "ffn_up",
        "layer.1.DenseReluDense.wo.weight" => "ffn_down",
        "layer.1.layer_norm.weight" => "ffn_norm",
        _ => return None,
    };
    Some(format!("enc.blk.{i}.{short}.weight"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transformers_names_map_onto_llama_cpp_names() {
        let m = |n: &str| llama_cpp_source(n);
        assert_eq!(m("shared.weight").as_deref(), Some("token_embd.weight"));
        assert_eq!(
            m("encoder.block.23.layer.1.DenseReluDense.wi_0.weight").as_deref(),
            Some("enc.blk.23.ffn_gate.weight")
        );
        assert_eq!(
            m("encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight").as_deref(),
            Some("enc.blk.0.attn_rel_b.weight")
        );
        assert_eq!(
            m("encoder.final_layer_norm.weight").as_deref(),
            Some("enc.output_norm.weight")
        );
        assert_eq!(m("encoder.block.0.layer.2.foo.weight"), None);
    }
}
