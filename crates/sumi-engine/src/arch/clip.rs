//! The CLIP text transformer (transformers' `CLIPTextModel` / `CLIPTextModelWithProjection`), built
//! from a diffusers `text_encoder/` folder: `config.json` plus safetensors weights.

use std::path::Path;

use candle_core::{DType, Device, IndexOp, Module, Tensor};
use candle_nn::{embedding, layer_norm, Embedding, LayerNorm, VarBuilder};
use serde::Deserialize;

use crate::nn::{linear, linear_no_bias, Linear};
use crate::weights::find::find_weights;
use crate::weights::safetensors::build_with_weights;
use crate::{Error, Result};

/// The activation inside each encoder layer's MLP, as named by `hidden_act`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `x * sigmoid(1.702 x)` (OpenAI CLIP, SD 1.x).
    QuickGelu,
    /// The exact, erf-based GELU (OpenCLIP, SD 2.x and SDXL's second encoder).
    Gelu,
    /// GELU with the tanh approximation.
    GeluTanh,
}

impl Activation {
    fn parse(name: &str) -> Option<Self> {
        match name {
            "quick_gelu" => Some(Self::QuickGelu),
            "gelu" => Some(Self::Gelu),
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Some(Self::GeluTanh),
            _ => None,
        }
    }

    fn apply(self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Self::QuickGelu => x * candle_nn::ops::sigmoid(&(x * 1.702)?)?,
            Self::Gelu => x.gelu_erf(),
            Self::GeluTanh => x.gelu(),
        }
    }
}

fn default_vocab_size() -> usize {
    49408
}
fn default_hidden_size() -> usize {
    512
}
fn default_intermediate_size() -> usize {
    2048
}
fn default_layers() -> usize {
    12
}
fn default_heads() -> usize {
    8
}
fn default_positions() -> usize {
    77
}
fn default_act() -> String {
    "quick_gelu".to_owned()
}
fn default_eps() -> f64 {
    1e-5
}
fn default_eos() -> u32 {
    49407
}

/// The fields of a CLIP text `config.json` that shape the model (transformers' defaults where absent).
#[derive(Debug, Clone, Deserialize)]
pub struct ClipTextConfig {
    /// Number of token embeddings.
    #[serde(default = "default_vocab_size")]
    pub vocab_size: usize,
    /// Width of the residual stream.
    #[serde(default = "default_hidden_size")]
    pub hidden_size: usize,
    /// Width of each layer's MLP.
    #[serde(default = "default_intermediate_size")]
    pub intermediate_size: usize,
    /// Number of encoder layers.
    #[serde(default = "default_layers")]
    pub num_hidden_layers: usize,
    /// Number of attention heads per layer.
    #[serde(default = "default_heads")]
    pub num_attention_heads: usize,
    /// Number of position embeddings (the longest sequence).
    #[serde(default = "default_positions")]
    pub max_position_embeddings: usize,
    /// Name of the MLP activation.
    #[serde(default = "default_act")]
    pub hidden_act: String,
    /// Epsilon of every layer norm.
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    /// Id of the end-of-text token; 2 means "the highest id in the sequence" (old configs).
    #[serde(default = "default_eos")]
    pub eos_token_id: u32,
    /// Output width of `text_projection`, when the model has one.
    #[serde(default)]
    pub projection_dim: Option<usize>,
}

impl ClipTextConfig {
    /// Reads and checks `config.json`.
    pub fn load(path: &Path) -> Result<Self> {
        let text = match crate::fileio::read_to_string(path, crate::fileio::MAX_CONFIG_BYTES) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::model(
                    path,
                    "missing; the text encoder needs its config.json",
                ))
            }
            Err(e) => return Err(Error::model(path, format!("cannot read: {e}"))),
        };
        let cfg: Self = serde_json::from_str(&text)
            .map_err(|e| Error::model(path, format!("not a valid CLIP text config: {e}")))?;
        cfg.validate().map_err(|e| Error::model(path, e))?;
        Ok(cfg)
    }

    /// Checks the config describes a text encoder this implementation can build, with every
    /// value that sizes an allocation or a loop within its bound.
    pub fn validate(&self) -> std::result::Result<(), String> {
        use crate::weights::bounds::check;
        check("vocab_size", self.vocab_size)?;
        check("hidden_size", self.hidden_size)?;
        check("intermediate_size", self.intermediate_size)?;
        check("num_hidden_layers", self.num_hidden_layers)?;
        check("num_attention_heads", self.num_attention_heads)?;
        check("max_position_embeddings", self.max_position_embeddings)?;
        if let Some(p) = self.projection_dim {
            check("projection_dim", p)?;
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Err(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if Activation::parse(&self.hidden_act).is_none() {
            return Err(format!(
                "unsupported hidden_act '{}' (known: quick_gelu, gelu, gelu_new)",
                self.hidden_act
            ));
        }
        if !(self.layer_norm_eps.is_finite() && self.layer_norm_eps >= 0.0) {
            return Err("layer_norm_eps must be a non-negative number".into());
        }
        Ok(())
    }
}

struct Attention {
    q: Linear,
    k: Linear,
    v: Linear,
    out: Linear,
    heads: usize,
    scale: f64,
}

impl Attention {
    fn new(cfg: &ClipTextConfig, vb: VarBuilder) -> candle_core::Result<Self> {
        let d = cfg.hidden_size;
        Ok(Self {
            q: linear(d, d, vb.pp("q_proj"))?,
            k: linear(d, d, vb.pp("k_proj"))?,
            v: linear(d, d, vb.pp("v_proj"))?,
            out: linear(d, d, vb.pp("out_proj"))?,
            heads: cfg.num_attention_heads,
            scale: ((d / cfg.num_attention_heads) as f64).powf(-0.5),
        })
    }

    /// Self-attention over `x` `[B, T, D]` with an additive `mask` `[T, T]` shared by the whole batch.
    fn forward(&self, x: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
        let (b, t, d) = x.dims3()?;
        let hd = d / self.heads;
        let split = |y: Tensor| {
            y.reshape((b, t, self.heads, hd))?
                .transpose(1, 2)?
                .contiguous()
        };
        let q = split((self.q.forward(x)? * self.scale)?)?;
        let k = split(self.k.forward(x)?)?;
        let v = split(self.v.forward(x)?)?;
        let scores = q.matmul(&k.t()?)?.broadcast_add(mask)?;
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let y = probs.matmul(&v)?.transpose(1, 2)?.reshape((b, t, d))?;
        self.out.forward(&y)
    }
}

struct EncoderLayer {
    ln1: LayerNorm,
    attn: Attention,
    ln2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
    act: Activation,
}

impl EncoderLayer {
    fn new(cfg: &ClipTextConfig, act: Activation, vb: VarBuilder) -> candle_core::Result<Self> {
        let d = cfg.hidden_size;
        Ok(Self {
            ln1: layer_norm(d, cfg.layer_norm_eps, vb.pp("layer_norm1"))?,
            attn: Attention::new(cfg, vb.pp("self_attn"))?,
            ln2: layer_norm(d, cfg.layer_norm_eps, vb.pp("layer_norm2"))?,
            fc1: linear(d, cfg.intermediate_size, vb.pp("mlp").pp("fc1"))?,
            fc2: linear(cfg.intermediate_size, d, vb.pp("mlp").pp("fc2"))?,
            act,
        })
    }

    fn forward(&self, x: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
        let x = (x + self.attn.forward(&self.ln1.forward(x)?, mask)?)?;
        let h = self.act.apply(&self.fc1.forward(&self.ln2.forward(&x)?)?)?;
        x + self.fc2.forward(&h)?
    }
}

/// What one forward pass yields for a batch of token sequences.
#[derive(Debug, Clone)]
pub struct ClipOutput {
    /// Output of the last layer after the final layer norm, `[B, T, D]` (SD 1.x/2.x context).
    pub last_hidden_state: Tensor,
    /// Output of the second-to-last layer, without final layer norm, `[B, T, D]` (SDXL context).
    pub penultimate: Tensor,
    /// The final-normed state at each sequence's end-of-text token, `[B, D]`, projected to
    /// `[B, projection_dim]` when the model has a `text_projection`.
    pub pooled: Tensor,
}

/// A CLIP text transformer with its weights loaded.
pub struct ClipTextModel {
    token_embedding: Embedding,
    position_embedding: Embedding,
    layers: Vec<EncoderLayer>,
    final_layer_norm: LayerNorm,
    projection: Option<Linear>,
    config: ClipTextConfig,
    device: Device,
    dtype: DType,
}

impl std::fmt::Debug for ClipTextModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClipTextModel")
            .field("config", &self.config)
            .field("projection", &self.projection.is_some())
            .field("dtype", &self.dtype)
            .finish()
    }
}

impl ClipTextModel {
    /// Loads the text encoder in `dir` (with `config.json` and safetensors weights) in `dtype` on `device`.
    pub fn load(dir: &Path, device: &Device, dtype: DType) -> Result<Self> {
        let config = ClipTextConfig::load(&dir.join("config.json"))?;
        let files = find_weights(dir, "model")?;
        let file_label = if files.len() == 1 {
            files[0].clone()
        } else {
            dir.to_owned()
        };
        build_with_weights(&files, dtype, device, |vb| {
            Self::from_var_builder(config, vb, device, dtype)
        })?
        .map_err(|e| Error::model(&file_label, format!("bad CLIP text weights: {e}")))
    }

    /// Builds the model from weights named as transformers names them, with or without the
    /// `text_model.` prefix (transformers 5 drops it).
    pub fn from_var_builder(
        config: ClipTextConfig,
        vb: VarBuilder,
        device: &Device,
        dtype: DType,
    ) -> candle_core::Result<Self> {
        let act = Activation::parse(&config.hidden_act).ok_or_else(|| {
            candle_core::Error::Msg(format!("unsupported hidden_act '{}'", config.hidden_act))
        })?;
        let tm = if vb.contains_tensor("text_model.embeddings.token_embedding.weight") {
            vb.pp("text_model")
        } else {
            vb.clone()
        };
        let emb = tm.pp("embeddings");
        let d = config.hidden_size;
        let token_embedding = embedding(config.vocab_size, d, emb.pp("token_embedding"))?;
        let position_embedding = embedding(
            config.max_position_embeddings,
            d,
            emb.pp("position_embedding"),
        )?;
        let layers_vb = tm.pp("encoder").pp("layers");
        let layers = (0..config.num_hidden_layers)
            .map(|i| EncoderLayer::new(&config, act, layers_vb.pp(i)))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let final_layer_norm = layer_norm(d, config.layer_norm_eps, tm.pp("final_layer_norm"))?;
        let projection = if vb.contains_tensor("text_projection.weight") {
            let p = vb.get_unchecked("text_projection.weight")?.dim(0)?;
            Some(linear_no_bias(d, p, vb.pp("text_projection"))?)
        } else {
            None
        };
        Ok(Self {
            token_embedding,
            position_embedding,
            layers,
            final_layer_norm,
            projection,
            config,
            device: device.clone(),
            dtype: crate::device::compute_dtype(dtype, device),
        })
    }

    /// The model's configuration.
    pub fn config(&self) -> &ClipTextConfig {
        &self.config
    }

    /// Whether the model ends in a `text_projection` (SDXL's second encoder).
    pub fn has_projection(&self) -> bool {
        self.projection.is_some()
    }

    /// Width of the pooled output: the projection's width, or the hidden size.
    pub fn pooled_dim(&self) -> usize {
        match &self.projection {
            Some(p) => p.out_features(),
            None => self.config.hidden_size,
        }
    }

    /// Position of the token whose state becomes the pooled output (see [`pooled_position`]).
    pub fn pooled_position(&self, ids: &[u32]) -> usize {
        pooled_position(ids, self.config.eos_token_id)
    }

    /// Runs the encoder over a batch of equally long token sequences.
    pub fn forward(&self, batch: &[Vec<u32>]) -> Result<ClipOutput> {
        let t = self.check_batch(batch)?;
        let mut x = self.embed(batch, &[], t)?;
        let mask = causal_mask(t, self.dtype, &self.device)?;
        let n = self.layers.len();
        let mut penultimate = None;
        for (i, layer) in self.layers.iter().enumerate() {
            if i + 1 == n {
                penultimate = Some(x.clone());
            }
            x = layer.forward(&x, &mask)?;
        }
        let last = self.final_layer_norm.forward(&x)?;
        let pooled = self.pool(&last, batch)?;
        Ok(ClipOutput {
            last_hidden_state: last,
            penultimate: penultimate.unwrap_or(x),
            pooled,
        })
    }

    /// Encodes a batch of equally long token sequences with some token embeddings replaced
    /// (`inserts`, textual-inversion vectors) and returns the hidden state `layer` names, plus
    /// the pooled output when `pooled` is set. Without the pooled output the layers after the
    /// requested one are not run.
    pub fn encode(
        &self,
        batch: &[Vec<u32>],
        inserts: &[Insert],
        layer: HiddenLayer,
        pooled: bool,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let t = self.check_batch(batch)?;
        let n = self.layers.len();
        // `hidden_states[-k]` is the state after `n + 1 - k` layers.
        let keep = match layer {
            HiddenLayer::Last => None,
            HiddenLayer::FromEnd { n: k, .. } if k == 0 || k > n + 1 => {
                return Err(Error::InvalidRequest(format!(
                    "hidden state {k} from the end does not exist in a text encoder of {n} layers"
                )))
            }
            HiddenLayer::FromEnd { n: k, .. } => Some(n + 1 - k),
        };
        let run = match keep {
            Some(k) if !pooled => k,
            _ => n,
        };
        let mut x = self.embed(batch, inserts, t)?;
        let mut kept = (keep == Some(0)).then(|| x.clone());
        let mask = causal_mask(t, self.dtype, &self.device)?;
        for (i, l) in self.layers[..run].iter().enumerate() {
            x = l.forward(&x, &mask)?;
            if keep == Some(i + 1) {
                kept = Some(x.clone());
            }
        }
        let last = match (layer, pooled) {
            (HiddenLayer::Last, _) | (_, true) => Some(self.final_layer_norm.forward(&x)?),
            _ => None,
        };
        let hidden = match (layer, kept) {
            (
                HiddenLayer::FromEnd {
                    final_norm: true, ..
                },
                Some(h),
            ) => self.final_layer_norm.forward(&h)?,
            (HiddenLayer::FromEnd { .. }, Some(h)) => h,
            _ => match &last {
                Some(last) => last.clone(),
                None => self.final_layer_norm.forward(&x)?,
            },
        };
        let pooled = match (pooled, &last) {
            (true, Some(last)) => Some(self.pool(last, batch)?),
            _ => None,
        };
        Ok((hidden, pooled))
    }

    /// Checks a batch of token sequences; gives their common length.
    fn check_batch(&self, batch: &[Vec<u32>]) -> Result<usize> {
        let t = batch.first().map_or(0, Vec::len);
        if t == 0 || batch.iter().any(|s| s.len() != t) {
            return Err(Error::InvalidRequest(
                "text encoder input must be a non-empty batch of equally long sequences".into(),
            ));
        }
        if t > self.config.max_position_embeddings {
            return Err(Error::InvalidRequest(format!(
                "sequence of {t} tokens is longer than the text encoder's {} positions",
                self.config.max_position_embeddings
            )));
        }
        if let Some(&bad) = batch
            .iter()
            .flatten()
            .find(|&&id| id as usize >= self.config.vocab_size)
        {
            return Err(Error::InvalidRequest(format!(
                "token id {bad} is outside the text encoder's vocabulary of {}",
                self.config.vocab_size
            )));
        }
        Ok(t)
    }

    /// Token embeddings (with `inserts` put in place) plus position embeddings, `[B, T, D]`.
    fn embed(&self, batch: &[Vec<u32>], inserts: &[Insert], t: usize) -> Result<Tensor> {
        let flat: Vec<u32> = batch.iter().flatten().copied().collect();
        let ids = Tensor::from_vec(flat, (batch.len(), t), &self.device)?;
        let mut tokens = self.token_embedding.forward(&ids)?;
        let d = self.config.hidden_size;
        for ins in inserts {
            let (k, width) = ins.vectors.dims2()?;
            if width != d || ins.row >= batch.len() || ins.pos >= t {
                return Err(Error::InvalidRequest(format!(
                    "cannot put {k} vectors of width {width} at row {}, position {} of a {}x{t} \
                     batch of width {d}",
                    ins.row,
                    ins.pos,
                    batch.len()
                )));
            }
            // As A1111: vectors that would run past the sequence's end are cut.
            let k = k.min(t - ins.pos);
            let src = ins
                .vectors
                .narrow(0, 0, k)?
                .to_dtype(self.dtype)?
                .to_device(&self.device)?
                .unsqueeze(0)?;
            let ranges = [ins.row..ins.row + 1, ins.pos..ins.pos + k, 0..d];
            tokens = tokens.slice_assign(&ranges, &src)?;
        }
        let positions = Tensor::arange(0u32, t as u32, &self.device)?;
        Ok(tokens.broadcast_add(&self.position_embedding.forward(&positions)?)?)
    }

    /// The final-normed state at each sequence's end-of-text token, projected when the model
    /// has a projection: `[B, P]`.
    fn pool(&self, last: &Tensor, batch: &[Vec<u32>]) -> Result<Tensor> {
        let rows = batch
            .iter()
            .enumerate()
            .map(|(i, s)| last.i((i, self.pooled_position(s))))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let mut pooled = Tensor::stack(&rows, 0)?;
        if let Some(p) = &self.projection {
            pooled = p.forward(&pooled)?;
        }
        Ok(pooled)
    }

    /// Number of encoder layers.
    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }
}

/// Which hidden state of the text transformer an encoding returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HiddenLayer {
    /// The last layer's output after the final layer norm (`last_hidden_state`).
    Last,
    /// transformers' `hidden_states[-n]`: `n = 1` is the last layer's output, `n = layers + 1`
    /// the embeddings; with or without the final layer norm.
    FromEnd {
        /// Position from the end, at least 1.
        n: usize,
        /// Whether the final layer norm is applied to it.
        final_norm: bool,
    },
}

/// Vectors that replace the token embeddings of one sequence from a position on
/// (textual-inversion embeddings).
#[derive(Debug, Clone)]
pub struct Insert {
    /// Which sequence of the batch.
    pub row: usize,
    /// First position replaced.
    pub pos: usize,
    /// `[k, D]` vectors; those that would run past the sequence's end are left out.
    pub vectors: Tensor,
}

/// Position of the token whose state becomes the pooled output, as transformers picks it: the
/// first highest id for legacy configs (`eos_token_id == 2`), else the first end-of-text token.
pub fn pooled_position(ids: &[u32], eos_token_id: u32) -> usize {
    if eos_token_id == 2 {
        let mut best = 0;
        for (i, &id) in ids.iter().enumerate() {
            if id > ids[best] {
                best = i;
            }
        }
        best
    } else {
        ids.iter().position(|&id| id == eos_token_id).unwrap_or(0)
    }
}

/// `[T, T]` additive mask: 0 where a token may look (itself and earlier), -inf after it.
fn causal_mask(t: usize, dtype: DType, device: &Device) -> candle_core::Result<Tensor> {
    let data: Vec<f32> = (0..t)
        .flat_map(|i| (0..t).map(move |j| if j > i { f32::NEG_INFINITY } else { 0.0 }))
        .collect();
    Tensor::from_vec(data, (t, t), device)?.to_dtype(dtype)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causal_mask_hides_later_tokens() {
        let m = causal_mask(3, DType::F32, &Device::Cpu)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        assert_eq!(m[0][0], 0.0);
        assert!(m[0][1].is_infinite() && m[0][1] < 0.0);
        assert_eq!(m[2], vec![0.0, 0.0, 0.0]);
    }

    #[test]
    fn pooled_position_follows_transformers() {
        // Legacy configs: the first occurrence of the highest id (CLIP's EOS has the highest id).
        assert_eq!(pooled_position(&[49406, 320, 49407, 49407], 2), 2);
        // Otherwise the first EOS, even when padding has higher ids.
        assert_eq!(pooled_position(&[846, 5, 847, 900, 900], 847), 2);
        assert_eq!(pooled_position(&[846, 5, 0, 0], 847), 0);
    }

    #[test]
    fn quick_gelu_matches_its_formula() {
        let x = Tensor::new(&[-2.0f32, 0.0, 1.5], &Device::Cpu).unwrap();
        let y = Activation::QuickGelu
            .apply(&x)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        for (xi, yi) in [-2.0f32, 0.0, 1.5].iter().zip(y) {
            let want = xi / (1.0 + (-1.702 * xi).exp());
            assert!((want - yi).abs() < 1e-6);
        }
    }
}
