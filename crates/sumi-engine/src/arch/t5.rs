//! The T5 encoder (transformers' `T5EncoderModel`), Flux's prompt encoder: RMS-normed pre-norm
//! blocks of unscaled self-attention with a learned relative position bias (shared by every
//! block, stored in the first) and a gated-GELU feed-forward (T5 v1.1, as T5-XXL) or a ReLU one.
//! Built from `config.json`, so tiny test models and T5-XXL share the code.

use std::path::Path;

use candle_core::{DType, Device, Module, Result, Tensor, D};
use candle_nn::VarBuilder;
use serde::Deserialize;

use crate::kernels;
use crate::nn::{linear_no_bias, Linear};

/// The fields of a transformers `T5Config` the encoder needs.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct T5Config {
    pub vocab_size: usize,
    pub d_model: usize,
    pub d_kv: usize,
    pub d_ff: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    #[serde(default = "buckets")]
    pub relative_attention_num_buckets: usize,
    #[serde(default = "max_distance")]
    pub relative_attention_max_distance: usize,
    #[serde(default = "eps")]
    pub layer_norm_epsilon: f64,
    #[serde(default = "relu")]
    pub feed_forward_proj: String,
}

fn buckets() -> usize {
    32
}
fn max_distance() -> usize {
    128
}
fn eps() -> f64 {
    1e-6
}
fn relu() -> String {
    "relu".into()
}

impl T5Config {
    /// Whether the feed-forward is gated (`gated-gelu`), and its activation is tanh-GELU;
    /// otherwise it is `relu`. Other activations are refused.
    fn gated(&self) -> std::result::Result<bool, String> {
        match self.feed_forward_proj.as_str() {
            "gated-gelu" => Ok(true),
            "relu" => Ok(false),
            other => Err(format!(
                "feed_forward_proj {other:?} is not supported (gated-gelu or relu)"
            )),
        }
    }
}

/// T5's layer norm: RMS over the last dimension, then a learned scale (no mean, no bias).
struct RmsNorm {
    weight: Tensor,
    eps: f64,
}

impl RmsNorm {
    fn new(dim: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            weight: vb.get(dim, "weight")?,
            eps,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let var = x.sqr()?.mean_keepdim(D::Minus1)?;
        x.broadcast_div(&(var + self.eps)?.sqrt()?)?
            .broadcast_mul(&self.weight)
    }
}

/// The bucket of a relative position `key - query` (bidirectional), as T5 computes it in
/// f32: exact below half the buckets of a side, logarithmic up to `max_distance`.
pub fn bucket(relative: i64, num_buckets: usize, max_distance: usize) -> u32 {
    let half = (num_buckets / 2) as i64;
    let side = if relative > 0 { half } else { 0 };
    let distance = relative.abs();
    let max_exact = half / 2;
    if distance < max_exact {
        return (side + distance) as u32;
    }
    let scaled = (distance as f32 / max_exact as f32).ln()
        / (max_distance as f64 / max_exact as f64).ln() as f32
        * (half - max_exact) as f32;
    (side + (max_exact + scaled as i64).min(half - 1)) as u32
}

struct Block {
    norm_attn: RmsNorm,
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    norm_ff: RmsNorm,
    wi_0: Linear,
    wi_1: Option<Linear>,
    wo: Linear,
}

impl Block {
    fn new(cfg: &T5Config, gated: bool, vb: VarBuilder) -> Result<Self> {
        let (d, inner) = (cfg.d_model, cfg.num_heads * cfg.d_kv);
        let attn = vb.pp("layer.0.SelfAttention");
        let ff = vb.pp("layer.1.DenseReluDense");
        let (wi_0, wi_1) = if gated {
            (
                linear_no_bias(d, cfg.d_ff, ff.pp("wi_0"))?,
                Some(linear_no_bias(d, cfg.d_ff, ff.pp("wi_1"))?),
            )
        } else {
            (linear_no_bias(d, cfg.d_ff, ff.pp("wi"))?, None)
        };
        Ok(Self {
            norm_attn: RmsNorm::new(d, cfg.layer_norm_epsilon, vb.pp("layer.0.layer_norm"))?,
            q: linear_no_bias(d, inner, attn.pp("q"))?,
            k: linear_no_bias(d, inner, attn.pp("k"))?,
            v: linear_no_bias(d, inner, attn.pp("v"))?,
            o: linear_no_bias(inner, d, attn.pp("o"))?,
            norm_ff: RmsNorm::new(d, cfg.layer_norm_epsilon, vb.pp("layer.1.layer_norm"))?,
            wi_0,
            wi_1,
            wo: linear_no_bias(cfg.d_ff, d, ff.pp("wo"))?,
        })
    }

    /// `bias` is `[1, H, L, L]`.
    fn forward(&self, x: &Tensor, bias: &Tensor, heads: usize) -> Result<Tensor> {
        let (b, l, _) = x.dims3()?;
        let h = self.norm_attn.forward(x)?;
        let split = |t: Tensor| -> Result<Tensor> {
            let dk = t.dim(2)? / heads;
            t.reshape((b, l, heads, dk))?.transpose(1, 2)?.contiguous()
        };
        let q = split(self.q.forward(&h)?)?;
        let k = split(self.k.forward(&h)?)?;
        let v = split(self.v.forward(&h)?)?;
        // T5 does not scale the scores by 1/sqrt(d).
        let scores = q.matmul(&k.t()?)?.broadcast_add(bias)?;
        let weights = candle_nn::ops::softmax_last_dim(&scores)?;
        let attn = weights.matmul(&v)?.transpose(1, 2)?.reshape((b, l, ()))?;
        let x = (x + self.o.forward(&attn)?)?;
        let h = self.norm_ff.forward(&x)?;
        let inner = match &self.wi_1 {
            Some(wi_1) => (kernels::gelu_tanh(&self.wi_0.forward(&h)?)? * wi_1.forward(&h)?)?,
            None => self.wi_0.forward(&h)?.relu()?,
        };
        x + self.wo.forward(&inner)?
    }
}

/// The config of the encoder whose transformers-named tensors have the shapes `shape` gives
/// (relative attention max distance and epsilon at T5's defaults, which no shape holds).
fn infer_config(
    shape: &dyn Fn(&str) -> Option<Vec<usize>>,
) -> std::result::Result<T5Config, String> {
    let dims2 = |name: &str| -> std::result::Result<(usize, usize), String> {
        match shape(name).as_deref() {
            Some(&[a, b]) => Ok((a, b)),
            Some(s) => Err(format!("{name} has shape {s:?}, expected a matrix")),
            None => Err(format!(
                "tensor for {name} is missing; the file is not a complete T5 encoder"
            )),
        }
    };
    let block = "encoder.block.0.layer.";
    let (vocab_size, d_model) =
        dims2("shared.weight").or_else(|_| dims2("encoder.embed_tokens.weight"))?;
    let (buckets, num_heads) = dims2(&format!(
        "{block}0.SelfAttention.relative_attention_bias.weight"
    ))?;
    let (inner, _) = dims2(&format!("{block}0.SelfAttention.q.weight"))?;
    if num_heads == 0 || inner % num_heads != 0 {
        return Err(format!(
            "{num_heads} heads do not divide the attention width {inner}"
        ));
    }
    let gated = shape(&format!("{block}1.DenseReluDense.wi_0.weight")).is_some();
    let (d_ff, _) = match gated {
        true => dims2(&format!("{block}1.DenseReluDense.wi_0.weight"))?,
        false => dims2(&format!("{block}1.DenseReluDense.wi.weight"))?,
    };
    let num_layers = (0..)
        .take_while(|i| {
            shape(&format!("encoder.block.{i}.layer.0.SelfAttention.q.weight")).is_some()
        })
        .count();
    Ok(T5Config {
        vocab_size,
        d_model,
        d_kv: inner / num_heads,
        d_ff,
        num_layers,
        num_heads,
        relative_attention_num_buckets: buckets,
        relative_attention_max_distance: max_distance(),
        layer_norm_epsilon: eps(),
        feed_forward_proj: if gated { "gated-gelu" } else { "relu" }.into(),
    })
}

/// The T5 encoder stack.
pub struct T5Encoder {
    config: T5Config,
    embed: Tensor,
    relative_bias: Tensor,
    blocks: Vec<Block>,
    final_norm: RmsNorm,
}

impl T5Encoder {
    /// Builds the encoder from `config` with transformers' names under `vb`.
    pub fn new(config: T5Config, vb: VarBuilder) -> crate::Result<Self> {
        let gated = config.gated().map_err(crate::Error::InvalidRequest)?;
        let enc = vb.pp("encoder");
        let embed = if vb.contains_tensor("shared.weight") {
            vb.get((config.vocab_size, config.d_model), "shared.weight")?
        } else {
            enc.get((config.vocab_size, config.d_model), "embed_tokens.weight")?
        };
        let relative_bias = enc.get(
            (config.relative_attention_num_buckets, config.num_heads),
            "block.0.layer.0.SelfAttention.relative_attention_bias.weight",
        )?;
        let blocks = (0..config.num_layers)
            .map(|i| Block::new(&config, gated, enc.pp("block").pp(i)))
            .collect::<Result<_>>()?;
        let final_norm = RmsNorm::new(
            config.d_model,
            config.layer_norm_epsilon,
            enc.pp("final_layer_norm"),
        )?;
        Ok(Self {
            config,
            embed,
            relative_bias,
            blocks,
            final_norm,
        })
    }

    /// Loads a transformers `T5EncoderModel` folder (config.json and safetensors weights).
    pub fn load(dir: &Path, device: &Device, dtype: DType) -> crate::Result<Self> {
        let config: T5Config = crate::weights::read_json(&dir.join("config.json"))?;
        let files = crate::weights::find_weights(dir, "model")?;
        let vb = crate::weights::var_builder(&files, dtype, device)?;
        Self::new(config, vb)
            .map_err(|e| crate::Error::model(dir, format!("not a T5 encoder Sumi can run: {e}")))
    }

    /// Loads an encoder from one file as users have them (`.safetensors` with transformers'
    /// names, f32/f16/bf16 or fp8 `float8_e4m3fn` weights converted to `dtype`, or a `.gguf`
    /// file with llama.cpp's names whose quantized matrices stay quantized) on `device`. The
    /// config is inferred from the tensor shapes: T5 v1.1 (gated GELU) when the feed-forward has
    /// two input matrices, the head count from the relative attention bias.
    pub fn load_file(path: &Path, device: &Device, dtype: DType) -> crate::Result<Self> {
        let file = crate::weights::t5_names::open_t5(path, device)?;
        let config =
            infer_config(&|name| file.shape(name)).map_err(|r| crate::Error::model(path, r))?;
        file.build(dtype, device, |vb| Self::new(config, vb))
            .map_err(|e| crate::Error::model(path, format!("not a T5 encoder Sumi can run: {e}")))
    }

    /// The model's configuration.
    pub fn config(&self) -> &T5Config {
        &self.config
    }

    /// The last hidden states, `[B, L, d_model]`, of `ids` `[B, L]` (no attention mask: Flux
    /// encodes its padding too).
    pub fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        let (_, l) = ids.dims2()?;
        let dtype = self.final_norm.weight.dtype();
        // The table may be kept in bf16 on the CPU; the looked-up rows compute in the norms'
        // dtype.
        let mut x = self
            .embed
            .embedding(&ids.flatten_all()?)?
            .reshape((ids.dim(0)?, l, ()))?
            .to_dtype(dtype)?;
        let bias = self.position_bias(l, ids.device())?.to_dtype(dtype)?;
        for block in &self.blocks {
            x = block.forward(&x, &bias, self.config.num_heads)?;
        }
        self.final_norm.forward(&x)
    }

    /// `[1, H, L, L]`: the learned bias of each query-key distance's bucket, per head.
    fn position_bias(&self, l: usize, device: &Device) -> Result<Tensor> {
        let cfg = &self.config;
        let buckets: Vec<u32> = (0..l as i64)
            .flat_map(|q| (0..l as i64).map(move |k| (q, k)))
            .map(|(q, k)| {
                bucket(
                    k - q,
                    cfg.relative_attention_num_buckets,
                    cfg.relative_attention_max_distance,
                )
            })
            .collect();
        let idx = Tensor::from_vec(buckets, l * l, device)?;
        self.relative_bias
            .to_dtype(DType::F32)?
            .embedding(&idx)?
            .reshape((l, l, cfg.num_heads))?
            .permute((2, 0, 1))?
            .unsqueeze(0)
    }
}

#[cfg(test)]
mod tests {
    use super::bucket;

    #[test]
    fn buckets_follow_t5s_rule() {
        // num_buckets 32, max_distance 128: 16 per side, exact below 8.
        let cases = [
            (0, 0),
            (-1, 1),
            (1, 17),
            (-7, 7),
            (7, 23),
            (-8, 8),
            (-12, 9),
            (-16, 10),
            (-127, 15),
            (-500, 15),
            (500, 31),
        ];
        for (rel, want) in cases {
            assert_eq!(bucket(rel, 32, 128), want, "{rel}");
        }
    }
}
