//! The Flux.1 transformer (diffusers' `FluxTransformer2DModel`): the packed latent (2x2 patches
//! of the 16-channel latent, one token each) and the T5 tokens run through double-stream blocks
//! (each stream its own weights, one joint attention), then single-stream blocks over the joined
//! sequence; rotary position embeddings over (text, row, column) ids; every block modulated by
//! the embedding of the time, the pooled CLIP vector and, for dev, the guidance.
//!
//! Built from its config, so the tiny test models and the 12B ones share the code. Names follow
//! diffusers; BFL's single-file names are mapped onto them by the loader.

use std::path::Path;

use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::VarBuilder;
use serde::Deserialize;

use crate::kernels;
use crate::nn::{linear, timestep_features, Linear, TimestepEmbedding};

/// `config.json` of a diffusers `FluxTransformer2DModel`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct FluxConfig {
    #[serde(default = "one")]
    pub patch_size: usize,
    #[serde(default = "sixty_four")]
    pub in_channels: usize,
    #[serde(default)]
    pub out_channels: Option<usize>,
    #[serde(default = "nineteen")]
    pub num_layers: usize,
    #[serde(default = "thirty_eight")]
    pub num_single_layers: usize,
    #[serde(default = "one_twenty_eight")]
    pub attention_head_dim: usize,
    #[serde(default = "twenty_four")]
    pub num_attention_heads: usize,
    #[serde(default = "four_k")]
    pub joint_attention_dim: usize,
    #[serde(default = "seven_six_eight")]
    pub pooled_projection_dim: usize,
    #[serde(default)]
    pub guidance_embeds: bool,
    #[serde(default = "rope_axes")]
    pub axes_dims_rope: Vec<usize>,
}

fn one() -> usize {
    1
}
fn sixty_four() -> usize {
    64
}
fn nineteen() -> usize {
    19
}
fn thirty_eight() -> usize {
    38
}
fn one_twenty_eight() -> usize {
    128
}
fn twenty_four() -> usize {
    24
}
fn four_k() -> usize {
    4096
}
fn seven_six_eight() -> usize {
    768
}
fn rope_axes() -> Vec<usize> {
    vec![16, 56, 56]
}

impl FluxConfig {
    /// Reads and checks `config.json` in `dir`.
    pub fn load(dir: &Path) -> crate::Result<Self> {
        let cfg: Self = crate::weights::read_json(&dir.join("config.json"))?;
        cfg.check()
            .map_err(|reason| crate::Error::model(dir.join("config.json"), reason))?;
        Ok(cfg)
    }

    /// Width of the token vectors.
    pub fn inner_dim(&self) -> usize {
        self.num_attention_heads * self.attention_head_dim
    }

    /// The config of the transformer whose diffusers-named tensors have the shapes `shape`
    /// gives: widths, depths and guidance from the shapes; the rotary axes, which no shape
    /// holds, are BFL's `[16, 56, 56]` for 128-wide heads and the same split for others (a
    /// text axis of `min(16, head / 4)`, the rest halved between rows and columns).
    pub fn infer(shape: &dyn Fn(&str) -> Option<Vec<usize>>) -> std::result::Result<Self, String> {
        let need = |name: &str| -> std::result::Result<Vec<usize>, String> {
            shape(name).ok_or_else(|| {
                format!("tensor for {name} is missing; the file is not a complete Flux transformer")
            })
        };
        let dims2 = |name: &str| -> std::result::Result<(usize, usize), String> {
            match need(name)?.as_slice() {
                &[o, i] => Ok((o, i)),
                s => Err(format!("{name} has shape {s:?}, expected a matrix")),
            }
        };
        let (dim, in_channels) = dims2("x_embedder.weight")?;
        let (_, joint_attention_dim) = dims2("context_embedder.weight")?;
        let (_, pooled_projection_dim) = dims2("time_text_embed.text_embedder.linear_1.weight")?;
        let (out, _) = dims2("proj_out.weight")?;
        let count = |pattern: &str| {
            (0..)
                .take_while(|i| shape(&pattern.replace("{}", &i.to_string())).is_some())
                .count()
        };
        let num_layers = count("transformer_blocks.{}.attn.to_q.weight");
        let num_single_layers = count("single_transformer_blocks.{}.attn.to_q.weight");
        let head = match (num_layers, num_single_layers) {
            (0, 0) => return Err("the file has no transformer blocks".into()),
            (0, _) => need("single_transformer_blocks.0.attn.norm_q.weight")?,
            _ => need("transformer_blocks.0.attn.norm_q.weight")?,
        };
        let head = head.first().copied().unwrap_or(0);
        if head == 0 || dim % head != 0 {
            return Err(format!(
                "the heads' norm is {head} wide, which does not divide the width {dim}"
            ));
        }
        let mlp = match num_layers {
            0 => dims2("single_transformer_blocks.0.proj_mlp.weight")?.0,
            _ => dims2("transformer_blocks.0.ff.net.0.proj.weight")?.0,
        };
        if mlp != 4 * dim {
            return Err(format!(
                "the MLP is {mlp} wide for a width of {dim}; Sumi runs Flux models with an MLP \
                 ratio of 4"
            ));
        }
        let text_axis = (head / 4).min(16);
        let axes_dims_rope = vec![text_axis, (head - text_axis) / 2, (head - text_axis) / 2];
        let config = Self {
            patch_size: 1,
            in_channels,
            out_channels: (out != in_channels).then_some(out),
            num_layers,
            num_single_layers,
            attention_head_dim: head,
            num_attention_heads: dim / head,
            joint_attention_dim,
            pooled_projection_dim,
            guidance_embeds: shape("time_text_embed.guidance_embedder.linear_1.weight").is_some(),
            axes_dims_rope,
        };
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> std::result::Result<(), String> {
        let rope: usize = self.axes_dims_rope.iter().sum();
        if self.num_attention_heads == 0 || self.attention_head_dim == 0 || self.in_channels == 0 {
            return Err(
                "num_attention_heads, attention_head_dim and in_channels must be > 0".into(),
            );
        }
        if rope != self.attention_head_dim || self.axes_dims_rope.iter().any(|d| d % 2 == 1) {
            return Err(format!(
                "axes_dims_rope {:?} must be even and add up to attention_head_dim {}",
                self.axes_dims_rope, self.attention_head_dim
            ));
        }
        Ok(())
    }
}

/// `layer_norm(x) * (1 + scale) + shift`, the norm without weight and bias, eps 1e-6, with
/// per-sample `[B, C]` modulation of a `[B, L, C]` input.
fn norm_modulate(x: &Tensor, shift: &Tensor, scale: &Tensor) -> Result<Tensor> {
    kernels::layer_norm_modulate(x, shift, scale, 1e-6)
}

/// `linear(silu(temb))` cut into `n` `[B, C]` chunks (diffusers' `AdaLayerNormZero*`).
fn modulation(lin: &Linear, temb: &Tensor, n: usize) -> Result<Vec<Tensor>> {
    lin.forward(&candle_nn::ops::silu(temb)?)?.chunk(n, 1)
}

/// The rotary embedding's cosines and sines, `[L, head_dim / 2]` each (one per pair).
pub struct Rope {
    cos: Tensor,
    sin: Tensor,
}

impl Rope {
    /// From `ids` `[L, axes]` (text ids, then image ids), as diffusers' `FluxPosEmbed`: each
    /// axis `i` takes `axes[i] / 2` frequencies `theta^(-2j / axes[i])`, angles in f64.
    pub fn new(ids: &[[f32; 3]], axes: &[usize], device: &Device) -> Result<Self> {
        let half: usize = axes.iter().sum::<usize>() / 2;
        let mut cos = Vec::with_capacity(ids.len() * half);
        let mut sin = Vec::with_capacity(ids.len() * half);
        for id in ids {
            for (&pos, &dim) in id.iter().zip(axes) {
                for j in 0..dim / 2 {
                    let freq = 1.0 / 10000f64.powf((2 * j) as f64 / dim as f64);
                    let angle = pos as f64 * freq;
                    cos.push(angle.cos() as f32);
                    sin.push(angle.sin() as f32);
                }
            }
        }
        Ok(Self {
            cos: Tensor::from_vec(cos, (ids.len(), half), device)?,
            sin: Tensor::from_vec(sin, (ids.len(), half), device)?,
        })
    }

    /// The tables for a sequence whose first token is the table's row `first_row`.
    fn tables(&self, first_row: usize) -> kernels::RopeTables<'_> {
        kernels::RopeTables {
            cos: &self.cos,
            sin: &self.sin,
            first_row,
        }
    }
}

/// Query, key and value projections with their per-head RMS norms (eps 1e-6) and, for the
/// queries and keys, the rotary embedding.
struct Qkv {
    q: Linear,
    k: Linear,
    v: Linear,
    norm_q: Tensor,
    norm_k: Tensor,
}

impl Qkv {
    fn new(dim: usize, head: usize, names: [&str; 5], vb: &VarBuilder) -> Result<Self> {
        Ok(Self {
            q: linear(dim, dim, vb.pp(names[0]))?,
            k: linear(dim, dim, vb.pp(names[1]))?,
            v: linear(dim, dim, vb.pp(names[2]))?,
            norm_q: vb.pp(names[3]).get(head, "weight")?,
            norm_k: vb.pp(names[4]).get(head, "weight")?,
        })
    }

    /// `[B, L, C]` normed and rotated queries and keys, and values, for tokens whose rotary
    /// angles start at the table's row `first_row`.
    fn forward(
        &self,
        x: &Tensor,
        heads: usize,
        rope: &Rope,
        first_row: usize,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let tables = rope.tables(first_row);
        let q = kernels::rms_norm_rope(&self.q.forward(x)?, &self.norm_q, &tables, heads, 1e-6)?;
        let k = kernels::rms_norm_rope(&self.k.forward(x)?, &self.norm_k, &tables, heads, 1e-6)?;
        Ok((q, k, self.v.forward(x)?))
    }
}

/// diffusers' `FeedForward` with tanh-approximated GELU.
struct FeedForward {
    proj: Linear,
    out: Linear,
}

impl FeedForward {
    fn new(dim: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            proj: linear(dim, 4 * dim, vb.pp("net.0.proj"))?,
            out: linear(4 * dim, dim, vb.pp("net.2"))?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.out
            .forward(&kernels::gelu_tanh(&self.proj.forward(x)?)?)
    }
}

/// A double-stream block: image and text tokens with their own weights, one joint attention.
struct DoubleBlock {
    norm1: Linear,
    norm1_context: Linear,
    img: Qkv,
    txt: Qkv,
    to_out: Linear,
    to_add_out: Linear,
    ff: FeedForward,
    ff_context: FeedForward,
}

impl DoubleBlock {
    fn new(dim: usize, head: usize, vb: VarBuilder) -> Result<Self> {
        let attn = vb.pp("attn");
        Ok(Self {
            norm1: linear(dim, 6 * dim, vb.pp("norm1.linear"))?,
            norm1_context: linear(dim, 6 * dim, vb.pp("norm1_context.linear"))?,
            img: Qkv::new(
                dim,
                head,
                ["to_q", "to_k", "to_v", "norm_q", "norm_k"],
                &attn,
            )?,
            txt: Qkv::new(
                dim,
                head,
                [
                    "add_q_proj",
                    "add_k_proj",
                    "add_v_proj",
                    "norm_added_q",
                    "norm_added_k",
                ],
                &attn,
            )?,
            to_out: linear(dim, dim, attn.pp("to_out.0"))?,
            to_add_out: linear(dim, dim, attn.pp("to_add_out"))?,
            ff: FeedForward::new(dim, vb.pp("ff"))?,
            ff_context: FeedForward::new(dim, vb.pp("ff_context"))?,
        })
    }

    /// `(img, txt)` after the block.
    fn forward(
        &self,
        img: &Tensor,
        txt: &Tensor,
        temb: &Tensor,
        rope: &Rope,
        heads: usize,
    ) -> Result<(Tensor, Tensor)> {
        let m = modulation(&self.norm1, temb, 6)?;
        let c = modulation(&self.norm1_context, temb, 6)?;
        let img_in = norm_modulate(img, &m[0], &m[1])?;
        let txt_in = norm_modulate(txt, &c[0], &c[1])?;
        // Text first, as diffusers joins them (and numbers the rotary positions).
        let lt = txt.dim(1)?;
        let (qi, ki, vi) = self.img.forward(&img_in, heads, rope, lt)?;
        let (qt, kt, vt) = self.txt.forward(&txt_in, heads, rope, 0)?;
        let q = Tensor::cat(&[qt, qi], 1)?;
        let k = Tensor::cat(&[kt, ki], 1)?;
        let v = Tensor::cat(&[vt, vi], 1)?;
        let joint = kernels::attention(&q, &k, &v, heads, self.to_out.is_bf16())?;
        let txt_attn = self.to_add_out.forward(&joint.narrow(1, 0, lt)?)?;
        let img_attn = self.to_out.forward(&joint.narrow(1, lt, img.dim(1)?)?)?;
        let stream = |x: &Tensor, attn: Tensor, m: &[Tensor], ff: &FeedForward| -> Result<Tensor> {
            let x = (x + attn.broadcast_mul(&m[2].unsqueeze(1)?)?)?;
            let h = ff.forward(&norm_modulate(&x, &m[3], &m[4])?)?;
            x + h.broadcast_mul(&m[5].unsqueeze(1)?)?
        };
        Ok((
            stream(img, img_attn, &m, &self.ff)?,
            stream(txt, txt_attn, &c, &self.ff_context)?,
        ))
    }
}

/// A single-stream block over the joined `[text, image]` sequence: attention and MLP side by
/// side, one output projection.
struct SingleBlock {
    norm: Linear,
    qkv: Qkv,
    proj_mlp: Linear,
    proj_out: Linear,
}

impl SingleBlock {
    fn new(dim: usize, head: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            norm: linear(dim, 3 * dim, vb.pp("norm.linear"))?,
            qkv: Qkv::new(
                dim,
                head,
                ["to_q", "to_k", "to_v", "norm_q", "norm_k"],
                &vb.pp("attn"),
            )?,
            proj_mlp: linear(dim, 4 * dim, vb.pp("proj_mlp"))?,
            proj_out: linear(5 * dim, dim, vb.pp("proj_out"))?,
        })
    }

    fn forward(&self, x: &Tensor, temb: &Tensor, rope: &Rope, heads: usize) -> Result<Tensor> {
        let m = modulation(&self.norm, temb, 3)?;
        let h = norm_modulate(x, &m[0], &m[1])?;
        let (q, k, v) = self.qkv.forward(&h, heads, rope, 0)?;
        let attn = kernels::attention(&q, &k, &v, heads, self.proj_out.is_bf16())?;
        let mlp = kernels::gelu_tanh(&self.proj_mlp.forward(&h)?)?;
        let out = self.proj_out.forward(&Tensor::cat(&[attn, mlp], 2)?)?;
        x + out.broadcast_mul(&m[2].unsqueeze(1)?)?
    }
}

/// What one call of the transformer takes besides the weights.
pub struct FluxInputs<'a> {
    /// `[B, L_img, in_channels]` packed latent tokens.
    pub img: &'a Tensor,
    /// `[B, L_txt, joint_attention_dim]` T5 hidden states.
    pub txt: &'a Tensor,
    /// `[B, pooled_projection_dim]` pooled CLIP vector.
    pub pooled: &'a Tensor,
    /// `[B]` timesteps in [0, 1] (the sigma).
    pub timestep: &'a Tensor,
    /// `[B]` distilled guidance scales (dev only).
    pub guidance: Option<&'a Tensor>,
    /// Rotary embedding of the text ids then the image ids.
    pub rope: &'a Rope,
}

/// The Flux transformer.
pub struct FluxTransformer {
    config: FluxConfig,
    x_embedder: Linear,
    context_embedder: Linear,
    time: TimestepEmbedding,
    guidance: Option<TimestepEmbedding>,
    text: TimestepEmbedding,
    double: Vec<DoubleBlock>,
    single: Vec<SingleBlock>,
    norm_out: Linear,
    proj_out: Linear,
}

impl FluxTransformer {
    /// Builds the transformer from `config` with diffusers' names under `vb`.
    pub fn new(config: FluxConfig, vb: VarBuilder) -> Result<Self> {
        let dim = config.inner_dim();
        let head = config.attention_head_dim;
        let tt = vb.pp("time_text_embed");
        let out = config.patch_size.pow(2) * config.out_channels.unwrap_or(config.in_channels);
        Ok(Self {
            x_embedder: linear(config.in_channels, dim, vb.pp("x_embedder"))?,
            context_embedder: linear(config.joint_attention_dim, dim, vb.pp("context_embedder"))?,
            time: TimestepEmbedding::new(256, dim, tt.pp("timestep_embedder"))?,
            guidance: match config.guidance_embeds {
                true => Some(TimestepEmbedding::new(
                    256,
                    dim,
                    tt.pp("guidance_embedder"),
                )?),
                false => None,
            },
            text: TimestepEmbedding::new(
                config.pooled_projection_dim,
                dim,
                tt.pp("text_embedder"),
            )?,
            double: (0..config.num_layers)
                .map(|i| DoubleBlock::new(dim, head, vb.pp("transformer_blocks").pp(i)))
                .collect::<Result<_>>()?,
            single: (0..config.num_single_layers)
                .map(|i| SingleBlock::new(dim, head, vb.pp("single_transformer_blocks").pp(i)))
                .collect::<Result<_>>()?,
            norm_out: linear(dim, 2 * dim, vb.pp("norm_out.linear"))?,
            proj_out: linear(dim, out, vb.pp("proj_out"))?,
            config,
        })
    }

    /// Loads a diffusers `transformer` folder (config.json and safetensors weights, sharded or
    /// not) on `device` in `dtype`.
    pub fn load(dir: &Path, device: &Device, dtype: DType) -> crate::Result<Self> {
        let config = FluxConfig::load(dir)?;
        let files = crate::weights::find_weights(dir, "diffusion_pytorch_model")?;
        let vb = crate::weights::var_builder(&files, dtype, device)?;
        Self::new(config, vb)
            .map_err(|e| crate::Error::model(dir, format!("bad Flux transformer weights: {e}")))
    }

    /// Loads a transformer from one file as users have them (`.safetensors` with BFL names,
    /// with or without `model.diffusion_model.`, or diffusers names; f32/f16/bf16 or fp8
    /// `float8_e4m3fn` weights converted to `dtype`; or a `.gguf` file whose quantized
    /// matrices stay quantized) on `device`. The config is inferred from the tensor shapes.
    pub fn load_file(path: &Path, device: &Device, dtype: DType) -> crate::Result<Self> {
        let file = crate::weights::flux_names::open_flux(path, device)?;
        let config = FluxConfig::infer(&|name| file.shape(name))
            .map_err(|reason| crate::Error::model(path, reason))?;
        file.build(dtype, device, |vb| Self::new(config, vb))
            .map_err(|e| crate::Error::model(path, format!("bad Flux transformer weights: {e}")))
    }

    /// The model's configuration.
    pub fn config(&self) -> &FluxConfig {
        &self.config
    }

    /// Whether the model takes a distilled guidance scale (Flux dev).
    pub fn has_guidance(&self) -> bool {
        self.guidance.is_some()
    }

    /// The predicted velocity, `[B, L_img, out_channels]`.
    pub fn forward(&self, inputs: &FluxInputs) -> Result<Tensor> {
        let dtype = inputs.img.dtype();
        let heads = self.config.num_attention_heads;
        let features =
            |t: &Tensor| timestep_features(&(t.to_dtype(DType::F32)? * 1000.0)?, 256, true, 0.0);
        let mut temb = self
            .time
            .forward(&features(inputs.timestep)?.to_dtype(dtype)?)?;
        match (&self.guidance, inputs.guidance) {
            (Some(g), Some(scale)) => {
                temb = (temb + g.forward(&features(scale)?.to_dtype(dtype)?)?)?;
            }
            (Some(_), None) => candle_core::bail!(
                "this Flux model (dev) is guidance-distilled and needs a guidance scale"
            ),
            (None, _) => {}
        }
        let temb = (temb + self.text.forward(inputs.pooled)?)?;
        let mut img = self.x_embedder.forward(inputs.img)?;
        let mut txt = self.context_embedder.forward(inputs.txt)?;
        for block in &self.double {
            (img, txt) = block.forward(&img, &txt, &temb, inputs.rope, heads)?;
        }
        let lt = txt.dim(1)?;
        let mut x = Tensor::cat(&[txt, img], 1)?;
        for block in &self.single {
            x = block.forward(&x, &temb, inputs.rope, heads)?;
        }
        let img = x.narrow(1, lt, x.dim(1)? - lt)?;
        let m = modulation(&self.norm_out, &temb, 2)?;
        // AdaLayerNormContinuous: scale first, then shift.
        self.proj_out.forward(&norm_modulate(&img, &m[1], &m[0])?)
    }
}
