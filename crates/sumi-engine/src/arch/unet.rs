//! The denoising UNet (diffusers' `UNet2DConditionModel`), built from its `config.json`.
//! Covers SD 1.x, SD 2.x and SDXL (with the `text_time` added embedding).

use candle_core::{Module, Result, Tensor, D};
use candle_nn::VarBuilder;
use serde::Deserialize;

use super::network::{AddedCond, DenoisingNetwork, NetCond};
use crate::nn::{
    conv2d, group_norm, timestep_features, Conv2d, Downsample, GroupNorm, ResnetBlock,
    SpatialTransformer, TimestepEmbedding, TransformerShape, Upsample,
};

/// A config value that is either one number for all blocks or one per block.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum PerBlock {
    /// Same value for every block.
    One(usize),
    /// One value per down block.
    Each(Vec<usize>),
}

impl PerBlock {
    fn get(&self, i: usize) -> usize {
        match self {
            PerBlock::One(v) => *v,
            PerBlock::Each(v) => v[i.min(v.len() - 1)],
        }
    }

    fn len_ok(&self, n: usize) -> bool {
        match self {
            PerBlock::One(_) => true,
            PerBlock::Each(v) => v.len() == n,
        }
    }
}

/// The fields of diffusers' `unet/config.json` that Sumi uses.
#[derive(Debug, Clone, Deserialize)]
pub struct UNetConfig {
    /// Latent channels in.
    #[serde(default = "four")]
    pub in_channels: usize,
    /// Latent channels out.
    #[serde(default = "four")]
    pub out_channels: usize,
    /// Channel width of each resolution level.
    pub block_out_channels: Vec<usize>,
    /// Down block kinds (`CrossAttnDownBlock2D`, `DownBlock2D`).
    pub down_block_types: Vec<String>,
    /// Up block kinds (`CrossAttnUpBlock2D`, `UpBlock2D`).
    pub up_block_types: Vec<String>,
    /// Mid block kind (`UNetMidBlock2DCrossAttn` or none).
    #[serde(default = "default_mid")]
    pub mid_block_type: Option<String>,
    /// Resnets per down block.
    pub layers_per_block: PerBlock,
    /// Attention heads per block (diffusers' historical name for the head count).
    pub attention_head_dim: PerBlock,
    /// Explicit head count, overriding `attention_head_dim` when set.
    #[serde(default)]
    pub num_attention_heads: Option<PerBlock>,
    /// Transformer blocks per attention layer.
    #[serde(default = "one_per_block")]
    pub transformer_layers_per_block: PerBlock,
    /// Width of the text context.
    pub cross_attention_dim: usize,
    /// Linear (SD2, SDXL) or 1x1-conv (SD1) transformer projections.
    #[serde(default)]
    pub use_linear_projection: bool,
    /// Group-norm groups.
    #[serde(default = "default_groups")]
    pub norm_num_groups: usize,
    /// Group-norm epsilon in resnets.
    #[serde(default = "default_eps")]
    pub norm_eps: f64,
    /// Timestep feature order.
    #[serde(default = "yes")]
    pub flip_sin_to_cos: bool,
    /// Timestep frequency shift.
    #[serde(default)]
    pub freq_shift: f64,
    /// Padding of the stride-2 downsampling convs.
    #[serde(default = "one")]
    pub downsample_padding: usize,
    /// `text_time` for SDXL's pooled-text + size/crop conditioning.
    #[serde(default)]
    pub addition_embed_type: Option<String>,
    /// Feature width per SDXL time id.
    #[serde(default)]
    pub addition_time_embed_dim: Option<usize>,
    /// Input width of SDXL's added embedding (6 time ids + pooled text).
    #[serde(default)]
    pub projection_class_embeddings_input_dim: Option<usize>,
    /// Latent size the model was trained at.
    #[serde(default = "default_sample_size")]
    pub sample_size: usize,
    /// Unsupported when set (class-conditional models).
    #[serde(default)]
    pub class_embed_type: Option<String>,
    /// Unsupported when set (guidance-distilled LCM UNets).
    #[serde(default)]
    pub time_cond_proj_dim: Option<usize>,
    /// Unsupported when not "positional".
    #[serde(default)]
    pub time_embedding_type: Option<String>,
}

fn four() -> usize {
    4
}
fn one() -> usize {
    1
}
fn yes() -> bool {
    true
}
fn default_groups() -> usize {
    32
}
fn default_eps() -> f64 {
    1e-5
}
fn default_sample_size() -> usize {
    64
}
fn one_per_block() -> PerBlock {
    PerBlock::One(1)
}
fn default_mid() -> Option<String> {
    Some("UNetMidBlock2DCrossAttn".into())
}

impl UNetConfig {
    /// Checks the config describes a UNet this implementation can build; the error says why not.
    pub fn validate(&self) -> std::result::Result<(), String> {
        let n = self.block_out_channels.len();
        if n == 0 || self.down_block_types.len() != n || self.up_block_types.len() != n {
            return Err("block_out_channels, down_block_types and up_block_types must have the same non-zero length".into());
        }
        self.check_bounds(n)?;
        for (name, v) in [
            ("layers_per_block", &self.layers_per_block),
            ("attention_head_dim", &self.attention_head_dim),
            (
                "transformer_layers_per_block",
                &self.transformer_layers_per_block,
            ),
        ] {
            if !v.len_ok(n) {
                return Err(format!("{name} must be one number or one per block"));
            }
        }
        for t in &self.down_block_types {
            if t != "CrossAttnDownBlock2D" && t != "DownBlock2D" {
                return Err(format!("unsupported down block type {t}"));
            }
        }
        for t in &self.up_block_types {
            if t != "CrossAttnUpBlock2D" && t != "UpBlock2D" {
                return Err(format!("unsupported up block type {t}"));
            }
        }
        match self.mid_block_type.as_deref() {
            None | Some("UNetMidBlock2DCrossAttn") => {}
            Some(t) => return Err(format!("unsupported mid block type {t}")),
        }
        if self.class_embed_type.is_some() {
            return Err("class-conditional UNets (class_embed_type) are not supported".into());
        }
        if self.time_cond_proj_dim.is_some() {
            return Err(
                "guidance-embedded UNets (time_cond_proj_dim) are not supported yet".into(),
            );
        }
        if self
            .time_embedding_type
            .as_deref()
            .is_some_and(|t| t != "positional")
        {
            return Err("only positional time embeddings are supported".into());
        }
        match self.addition_embed_type.as_deref() {
            None => {}
            Some("text_time")
                if self.addition_time_embed_dim.is_none()
                    || self.projection_class_embeddings_input_dim.is_none() =>
            {
                return Err("text_time needs addition_time_embed_dim and projection_class_embeddings_input_dim".into());
            }
            Some("text_time") => {}
            Some(t) => return Err(format!("unsupported addition_embed_type {t}")),
        }
        let groups = self.norm_num_groups;
        if groups == 0 || self.block_out_channels.iter().any(|c| c % groups != 0) {
            return Err("norm_num_groups must divide every block_out_channels entry".into());
        }
        Ok(())
    }

    /// Every value that sizes an allocation or a loop within its bound.
    fn check_bounds(&self, n: usize) -> std::result::Result<(), String> {
        use crate::weights::bounds::{check, check_all};
        check("blocks", n)?;
        check_all(
            "block_out_channels",
            self.block_out_channels.iter().copied(),
        )?;
        for (name, v) in [
            ("layers_per_block", Some(&self.layers_per_block)),
            ("attention_head_dim", Some(&self.attention_head_dim)),
            ("num_attention_heads", self.num_attention_heads.as_ref()),
            (
                "transformer_layers_per_block",
                Some(&self.transformer_layers_per_block),
            ),
        ] {
            if let Some(v) = v {
                check_all(name, (0..n).map(|i| v.get(i)))?;
            }
        }
        for (name, v) in [
            ("cross_attention_dim", Some(self.cross_attention_dim)),
            ("sample_size", Some(self.sample_size)),
            ("in_channels", Some(self.in_channels)),
            ("out_channels", Some(self.out_channels)),
            ("norm_num_groups", Some(self.norm_num_groups)),
            ("addition_time_embed_dim", self.addition_time_embed_dim),
            (
                "projection_class_embeddings_input_dim",
                self.projection_class_embeddings_input_dim,
            ),
        ] {
            if let Some(v) = v {
                check(name, v)?;
            }
        }
        // Heads must split each block's channels (a zero or odd head count fails at sampling).
        for (i, &c) in self.block_out_channels.iter().enumerate() {
            let heads = self.heads(i);
            if !c.is_multiple_of(heads) {
                return Err(format!(
                    "the head count {heads} does not divide the {c} channels of block {i}"
                ));
            }
        }
        Ok(())
    }

    fn heads(&self, i: usize) -> usize {
        self.num_attention_heads
            .as_ref()
            .unwrap_or(&self.attention_head_dim)
            .get(i)
    }

    fn transformer(&self, channels: usize, i: usize, layers: usize) -> TransformerShape {
        TransformerShape {
            channels,
            heads: self.heads(i),
            layers,
            context_dim: self.cross_attention_dim,
            groups: self.norm_num_groups,
            linear_projection: self.use_linear_projection,
        }
    }
}

impl DenoisingNetwork for UNet {
    fn forward(&self, x: &Tensor, t: &Tensor, cond: &NetCond) -> Result<Tensor> {
        let NetCond::CrossAttention { context, added } = cond else {
            candle_core::bail!("a UNet takes cross-attention conditioning, not Flux's");
        };
        UNet::forward(self, x, t, context, added.as_ref())
    }

    fn in_channels(&self) -> usize {
        self.config.in_channels
    }

    fn activation_bytes(&self, height: usize, width: usize, batch: usize, elem: usize) -> u64 {
        self.config.activation_bytes(height, width, batch, elem)
    }
}

#[derive(Debug)]
struct Level {
    resnets: Vec<ResnetBlock>,
    attentions: Vec<SpatialTransformer>,
}

impl Level {
    fn forward(&self, i: usize, xs: &Tensor, temb: &Tensor, ctx: &Tensor) -> Result<Tensor> {
        let xs = self.resnets[i].forward(xs, Some(temb))?;
        match self.attentions.get(i) {
            Some(attn) => attn.forward(&xs, ctx),
            None => Ok(xs),
        }
    }
}

#[derive(Debug)]
struct MidBlock {
    resnet_a: ResnetBlock,
    attention: SpatialTransformer,
    resnet_b: ResnetBlock,
}

/// SDXL's added embedding: pooled text plus sinusoidal features of the six time ids.
#[derive(Debug)]
struct AddEmbedding {
    time_dim: usize,
    embedding: TimestepEmbedding,
}

/// A loaded UNet ready to run.
#[derive(Debug)]
pub struct UNet {
    config: UNetConfig,
    conv_in: Conv2d,
    time_embedding: TimestepEmbedding,
    add_embedding: Option<AddEmbedding>,
    down: Vec<(Level, Option<Downsample>)>,
    mid: Option<MidBlock>,
    up: Vec<(Level, Option<Upsample>)>,
    norm_out: GroupNorm,
    conv_out: Conv2d,
}

impl UNet {
    /// Builds the UNet described by `config` from the weights in `vb`.
    pub fn new(config: UNetConfig, vb: VarBuilder) -> Result<Self> {
        let c = &config;
        let boc = &c.block_out_channels;
        let n = boc.len();
        let temb_dim = boc[0] * 4;
        let (groups, eps) = (c.norm_num_groups, c.norm_eps);
        let resnet = |cin, cout, vb| ResnetBlock::new(cin, cout, Some(temb_dim), groups, eps, vb);

        let add_embedding = match c.addition_embed_type.as_deref() {
            Some("text_time") => Some(AddEmbedding {
                time_dim: c.addition_time_embed_dim.unwrap_or_default(),
                embedding: TimestepEmbedding::new(
                    c.projection_class_embeddings_input_dim.unwrap_or_default(),
                    temb_dim,
                    vb.pp("add_embedding"),
                )?,
            }),
            _ => None,
        };

        let mut down = Vec::with_capacity(n);
        for i in 0..n {
            let vb = vb.pp(format!("down_blocks.{i}"));
            let cin = if i == 0 { boc[0] } else { boc[i - 1] };
            let cout = boc[i];
            let layers = c.layers_per_block.get(i);
            let resnets = (0..layers)
                .map(|j| {
                    resnet(
                        if j == 0 { cin } else { cout },
                        cout,
                        vb.pp(format!("resnets.{j}")),
                    )
                })
                .collect::<Result<Vec<_>>>()?;
            let attentions = if c.down_block_types[i] == "CrossAttnDownBlock2D" {
                let shape = c.transformer(cout, i, c.transformer_layers_per_block.get(i));
                (0..layers)
                    .map(|j| SpatialTransformer::new(&shape, vb.pp(format!("attentions.{j}"))))
                    .collect::<Result<Vec<_>>>()?
            } else {
                Vec::new()
            };
            let downsample = if i + 1 < n {
                Some(Downsample::new(
                    cout,
                    c.downsample_padding,
                    vb.pp("downsamplers.0"),
                )?)
            } else {
                None
            };
            down.push((
                Level {
                    resnets,
                    attentions,
                },
                downsample,
            ));
        }

        let mid = match c.mid_block_type.as_deref() {
            Some(_) => {
                let vb = vb.pp("mid_block");
                let ch = boc[n - 1];
                Some(MidBlock {
                    resnet_a: resnet(ch, ch, vb.pp("resnets.0"))?,
                    attention: SpatialTransformer::new(
                        &c.transformer(ch, n - 1, c.transformer_layers_per_block.get(n - 1)),
                        vb.pp("attentions.0"),
                    )?,
                    resnet_b: resnet(ch, ch, vb.pp("resnets.1"))?,
                })
            }
            None => None,
        };

        let mut up = Vec::with_capacity(n);
        for i in 0..n {
            let vb = vb.pp(format!("up_blocks.{i}"));
            let level = n - 1 - i;
            let cout = boc[level];
            let prev = if i == 0 { boc[n - 1] } else { boc[level + 1] };
            let skip_in = boc[level.saturating_sub(1)];
            let layers = c.layers_per_block.get(level) + 1;
            let resnets = (0..layers)
                .map(|j| {
                    let res_skip = if j == layers - 1 { skip_in } else { cout };
                    let cin = if j == 0 { prev } else { cout };
                    resnet(cin + res_skip, cout, vb.pp(format!("resnets.{j}")))
                })
                .collect::<Result<Vec<_>>>()?;
            let attentions = if c.up_block_types[i] == "CrossAttnUpBlock2D" {
                let shape = c.transformer(cout, level, c.transformer_layers_per_block.get(level));
                (0..layers)
                    .map(|j| SpatialTransformer::new(&shape, vb.pp(format!("attentions.{j}"))))
                    .collect::<Result<Vec<_>>>()?
            } else {
                Vec::new()
            };
            let upsample = if i + 1 < n {
                Some(Upsample::new(cout, vb.pp("upsamplers.0"))?)
            } else {
                None
            };
            up.push((
                Level {
                    resnets,
                    attentions,
                },
                upsample,
            ));
        }

        Ok(Self {
            conv_in: conv2d(c.in_channels, boc[0], 3, 1, 1, vb.pp("conv_in"))?,
            time_embedding: TimestepEmbedding::new(boc[0], temb_dim, vb.pp("time_embedding"))?,
            add_embedding,
            down,
            mid,
            up,
            norm_out: group_norm(groups, boc[0], eps, vb.pp("conv_norm_out"))?,
            conv_out: conv2d(boc[0], c.out_channels, 3, 1, 1, vb.pp("conv_out"))?,
            config,
        })
    }

    /// The config the UNet was built from.
    pub fn config(&self) -> &UNetConfig {
        &self.config
    }

    /// Whether the model needs SDXL's added conditioning.
    pub fn needs_added_cond(&self) -> bool {
        self.add_embedding.is_some()
    }

    /// Predicts noise (or v) for latents `xs` `[B,C,H,W]` at timesteps `t` `[B]` given text
    /// context `[B,L,D]` and, for SDXL, the added conditioning.
    pub fn forward(
        &self,
        xs: &Tensor,
        t: &Tensor,
        context: &Tensor,
        added: Option<&AddedCond>,
    ) -> Result<Tensor> {
        let c = &self.config;
        let dtype = xs.dtype();
        let t_feat =
            timestep_features(t, c.block_out_channels[0], c.flip_sin_to_cos, c.freq_shift)?;
        let mut temb = self.time_embedding.forward(&t_feat.to_dtype(dtype)?)?;
        if let Some(add) = &self.add_embedding {
            let Some(added) = added else {
                candle_core::bail!("this UNet needs SDXL's pooled text embedding and time ids");
            };
            let b = added.time_ids.dim(0)?;
            let ids = added.time_ids.flatten_all()?;
            let id_feat = timestep_features(&ids, add.time_dim, c.flip_sin_to_cos, c.freq_shift)?
                .reshape((b, ()))?;
            let cond = Tensor::cat(
                &[
                    &added.text_embeds.to_dtype(dtype)?,
                    &id_feat.to_dtype(dtype)?,
                ],
                D::Minus1,
            )?;
            temb = (temb + add.embedding.forward(&cond)?)?;
        }

        let mut xs = self.conv_in.forward(xs)?;
        let mut skips = vec![xs.clone()];
        for (level, downsample) in &self.down {
            for i in 0..level.resnets.len() {
                xs = level.forward(i, &xs, &temb, context)?;
                skips.push(xs.clone());
            }
            if let Some(ds) = downsample {
                xs = ds.forward(&xs)?;
                skips.push(xs.clone());
            }
        }
        if let Some(mid) = &self.mid {
            xs = mid.resnet_a.forward(&xs, Some(&temb))?;
            xs = mid.attention.forward(&xs, context)?;
            xs = mid.resnet_b.forward(&xs, Some(&temb))?;
        }
        for (level, upsample) in &self.up {
            for i in 0..level.resnets.len() {
                let skip = skips.pop().expect("one skip per up resnet");
                xs = Tensor::cat(&[&xs, &skip], 1)?;
                xs = level.forward(i, &xs, &temb, context)?;
            }
            if let Some(us) = upsample {
                let size = skips
                    .last()
                    .map(|s| (s.dim(2).unwrap_or(0), s.dim(3).unwrap_or(0)));
                xs = us.forward(&xs, size)?;
            }
        }
        let xs = self.norm_out.forward_silu(&xs)?;
        self.conv_out.forward(&xs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::max_abs_diff;
    use candle_core::{DType, Device};
    use std::path::PathBuf;

    fn fixtures() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
    }

    fn check(model: &str) {
        let dir = fixtures().join(model).join("unet");
        let refs = candle_core::safetensors::load(
            fixtures().join(format!("ref/{model}.safetensors")),
            &Device::Cpu,
        )
        .unwrap();
        let cfg: UNetConfig =
            serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap())
                .unwrap();
        cfg.validate().unwrap();
        let files: Vec<_> = [
            "diffusion_pytorch_model.safetensors",
            "diffusion_pytorch_model.fp16.safetensors",
        ]
        .iter()
        .map(|f| dir.join(f))
        .filter(|p| p.exists())
        .collect();
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&files, DType::F32, &Device::Cpu) }
            .unwrap();
        let unet = UNet::new(cfg, vb).unwrap();
        let added = refs.get("unet.text_embeds").map(|te| AddedCond {
            text_embeds: te.clone(),
            time_ids: refs["unet.time_ids"].clone(),
        });
        let out = unet
            .forward(
                &refs["unet.x"],
                &refs["unet.t"],
                &refs["unet.context"],
                added.as_ref(),
            )
            .unwrap();
        let err = max_abs_diff(&out, &refs["unet.out"]);
        assert!(err < 1e-4, "{model}: unet max abs error {err}");
    }

    #[test]
    fn unet_matches_diffusers_sd15() {
        check("sd15");
    }

    #[test]
    fn unet_matches_diffusers_sd2v() {
        check("sd2v");
    }

    #[test]
    fn unet_matches_diffusers_sdxl() {
        check("sdxl");
    }
}
