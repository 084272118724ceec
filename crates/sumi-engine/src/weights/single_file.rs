//! One model component in a single file with its own tensor names (BFL's Flux names, llama.cpp's
//! T5 names, or the diffusers / transformers names under some prefix), read through a map from
//! the names Sumi's networks ask for. The file is safetensors or GGUF; naming is kept apart
//! from storage, as candle's `VarBuilder` backends do.
//!
//! A diffusers tensor may be a row range of a fused file tensor (Flux's q/k/v) or a fused
//! tensor with its halves swapped (Flux's final modulation). From a GGUF file, quantized
//! matrices are handed to linear layers still quantized ([`QuantizedSource`]); all else is
//! dequantized to the dtype asked for.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::quantized::QTensor;
use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::VarBuilder;

use super::gguf::GgufFile;
use super::params::{self, Rereadable};
use super::quantized::{with_source, QuantizedSource};
use super::safetensors::SafetensorsFiles;
use crate::{Error, Result};

/// Where one tensor of the network comes from in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The file's tensor as stored.
    Plain(String),
    /// Rows `start..start + len` (dim 0) of the file's tensor.
    Rows(String, usize, usize),
    /// The file's tensor with the two halves of dim 0 swapped.
    SwapHalves(String),
}

impl Source {
    /// The file's tensor name.
    pub fn key(&self) -> &str {
        match self {
            Self::Plain(k) | Self::Rows(k, _, _) | Self::SwapHalves(k) => k,
        }
    }
}

/// The file behind a [`SingleFile`].
#[derive(Debug)]
pub enum Store {
    /// A `.safetensors` file.
    Safetensors(SafetensorsFiles),
    /// A `.gguf` file.
    Gguf(GgufFile),
}

impl Store {
    /// Opens `path` by its extension (`.safetensors` / `.sft` or `.gguf`).
    pub fn open(path: &Path) -> Result<Self> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("gguf") => Ok(Self::Gguf(GgufFile::open(path)?)),
            Some("safetensors" | "sft") => Ok(Self::Safetensors(SafetensorsFiles::open(&[
                path.to_path_buf()
            ])?)),
            _ if super::ldm::is_pickle_extension(path) => Err(super::ldm::refuse_pickle(path)),
            _ => Err(Error::model(
                path,
                "unknown weight file type: Sumi reads single files as .safetensors or .gguf",
            )),
        }
    }

    /// The stored (torch-order) shape of `key`.
    pub fn shape(&self, key: &str) -> Option<&[usize]> {
        match self {
            Self::Safetensors(st) => st.shape(key),
            Self::Gguf(g) => g.shape(key),
        }
    }

    /// All tensor names.
    pub fn keys(&self) -> Vec<&str> {
        match self {
            Self::Safetensors(st) => st.shapes().map(|(k, _)| k).collect(),
            Self::Gguf(g) => g.shapes().map(|(k, _)| k).collect(),
        }
    }

    fn load(&self, key: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        match self {
            Self::Safetensors(st) => st.load(key, dtype, dev),
            Self::Gguf(g) => g.load(key, dtype, dev),
        }
    }

    fn load_rows(
        &self,
        key: &str,
        rows: std::ops::Range<usize>,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        match self {
            Self::Safetensors(st) => st.load_rows(key, rows, dtype, dev),
            Self::Gguf(g) => match g.shape(key) {
                Some([_, _]) => g
                    .qtensor(key, &[rows], &Device::Cpu)?
                    .dequantize(&Device::Cpu)?
                    .to_dtype(dtype)?
                    .to_device(dev),
                _ => g
                    .load(key, dtype, dev)?
                    .narrow(0, rows.start, rows.len())?
                    .force_contiguous(),
            },
        }
    }

    fn check_unchanged(&self) -> Result<()> {
        match self {
            Self::Safetensors(st) => st.check_unchanged(),
            Self::Gguf(g) => g.check_unchanged(),
        }
    }
}

/// The map from network names to file tensors.
pub type NameMap = dyn Fn(&str) -> Option<Source> + Send + Sync;

/// A component's single file read through its name map.
#[derive(Clone)]
pub struct SingleFile {
    path: PathBuf,
    store: Arc<Store>,
    map: Arc<NameMap>,
    device: Device,
}

impl std::fmt::Debug for SingleFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SingleFile")
            .field("path", &self.path)
            .finish()
    }
}

impl SingleFile {
    /// `store` (opened from `path`) read through `map`, quantized matrices placed on `device`.
    pub fn new(path: &Path, store: Arc<Store>, map: Arc<NameMap>, device: &Device) -> Self {
        Self {
            path: path.to_path_buf(),
            store,
            map,
            device: device.clone(),
        }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The shape the network name `name` has (rows cut or halves swapped as mapped).
    pub fn shape(&self, name: &str) -> Option<Vec<usize>> {
        let source = (self.map)(name)?;
        let stored = self.store.shape(source.key())?;
        match source {
            Source::Plain(_) | Source::SwapHalves(_) => Some(stored.to_vec()),
            Source::Rows(_, start, len) => {
                let mut s = stored.to_vec();
                (start + len <= *s.first()?).then(|| {
                    s[0] = len;
                    s
                })
            }
        }
    }

    /// Whether the network name `name` maps to a tensor of the file.
    pub fn contains(&self, name: &str) -> bool {
        self.shape(name).is_some()
    }

    /// A `VarBuilder` over the file for a model run in `dtype` on `device`; loads are recorded
    /// by [`params::record`] like those of a diffusers folder.
    pub fn var_builder(&self, dtype: DType, device: &Device) -> VarBuilder<'static> {
        let backend = params::backend(self.clone(), vec![self.path.clone()]);
        super::storage::builder(backend, dtype, device)
    }

    /// Runs `build` over [`Self::var_builder`] with the file's quantized matrices offered to
    /// the linear layers ([`with_source`]).
    pub fn build<R>(
        &self,
        dtype: DType,
        device: &Device,
        build: impl FnOnce(VarBuilder<'static>) -> R,
    ) -> R {
        let vb = self.var_builder(dtype, device);
        with_source(self.quantized_source(), || build(vb))
    }

    /// The source of quantized linear weights, for a GGUF file.
    pub fn quantized_source(&self) -> Option<Arc<dyn QuantizedSource>> {
        match *self.store {
            Store::Gguf(_) => Some(Arc::new(self.clone())),
            Store::Safetensors(_) => None,
        }
    }

    fn source(&self, name: &str) -> candle_core::Result<Source> {
        let source = (self.map)(name).ok_or_else(|| {
            candle_core::Error::Msg(format!(
                "no tensor of {} maps to {name}",
                self.path.display()
            ))
        })?;
        if self.store.shape(source.key()).is_none() {
            candle_core::bail!(
                "tensor {} (for {name}) is missing from {}; the file is incomplete",
                source.key(),
                self.path.display()
            );
        }
        Ok(source)
    }

    fn load(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        let source = self.source(name)?;
        match self.scale_of(source.key())? {
            Some(scale) => self
                .load_source(&source, DType::F32, dev)?
                .affine(scale, 0.0)?
                .to_dtype(dtype),
            None => self.load_source(&source, dtype, dev),
        }
    }

    /// The scale of ComfyUI's "scaled fp8" weights (`<layer>.scale_weight`, one f32 per
    /// tensor: the stored values times it are the weight), when `key` has one.
    fn scale_of(&self, key: &str) -> candle_core::Result<Option<f64>> {
        let Some(stem) = key.strip_suffix(".weight") else {
            return Ok(None);
        };
        let Some(scale) = ["scale_weight", "weight_scale"]
            .iter()
            .map(|s| format!("{stem}.{s}"))
            .find(|k| self.store.shape(k).is_some())
        else {
            return Ok(None);
        };
        let t = self.store.load(&scale, DType::F32, &Device::Cpu)?;
        if t.elem_count() != 1 {
            candle_core::bail!(
                "{scale} holds {} scales; Sumi reads fp8 files with one scale per tensor \
                 (block-wise scaled files are not supported: use an fp16/bf16 or GGUF file)",
                t.elem_count()
            );
        }
        Ok(Some(f64::from(t.flatten_all()?.to_vec1::<f32>()?[0])))
    }

    fn load_source(
        &self,
        source: &Source,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        match source {
            Source::Plain(k) => self.store.load(k, dtype, dev),
            Source::Rows(k, start, len) => {
                let rows = std::ops::Range {
                    start: *start,
                    end: start + len,
                };
                self.store.load_rows(k, rows, dtype, dev)
            }
            Source::SwapHalves(k) => {
                let t = self.store.load(k, dtype, dev)?;
                let n = t.dim(0)?;
                if n % 2 != 0 {
                    candle_core::bail!("{k}: dim 0 of {n} does not split into halves");
                }
                Tensor::cat(&[t.narrow(0, n / 2, n / 2)?, t.narrow(0, 0, n / 2)?], 0)
            }
        }
    }
}

impl SimpleBackend for SingleFile {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let source = self.source(name)?;
        let Some(got) = self.shape(name) else {
            let stored = self.store.shape(source.key()).unwrap_or_default();
            candle_core::bail!(
                "{name} is a part of {} that needs rows the file's tensor of shape {stored:?} \
                 does not have: the file's layout is not the one of this model",
                source.key()
            );
        };
        if got != s.dims() {
            return Err(candle_core::Error::UnexpectedShape {
                msg: format!("shape mismatch for {name} (file tensor {})", source.key()),
                expected: s,
                got: got.into(),
            }
            .bt());
        }
        self.load(name, dtype, dev)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        self.load(name, dtype, dev)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.contains(name)
    }
}

impl Rereadable for SingleFile {
    fn check_unchanged(&self) -> Result<()> {
        self.store.check_unchanged()
    }
}

impl QuantizedSource for SingleFile {
    fn quantized(&self, name: &str) -> candle_core::Result<Option<QTensor>> {
        let Store::Gguf(g) = &*self.store else {
            return Ok(None);
        };
        let Some(source) = (self.map)(name) else {
            return Ok(None);
        };
        if !g.runs_quantized(source.key()) {
            return Ok(None);
        }
        let ranges = match &source {
            Source::Plain(_) => vec![],
            Source::Rows(_, start, len) => vec![std::ops::Range {
                start: *start,
                end: start + len,
            }],
            Source::SwapHalves(k) => {
                let n = g.shape(k).and_then(|s| s.first().copied()).unwrap_or(0);
                vec![n / 2..n, 0..n / 2]
            }
        };
        g.qtensor(source.key(), &ranges, &self.device).map(Some)
    }
}
