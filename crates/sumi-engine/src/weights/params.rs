//! The table of a loaded model's parameters by name: every tensor a weight store handed to the
//! layers while a load was being recorded, with the store to read it again from.
//!
//! candle tensors share their storage, so a recorded tensor IS the layer's weight: writing into
//! it (`Tensor::slice_set`) changes what the layer computes, without a second copy of the
//! network. The store keeps its files open, so the loaded values can be read again, bit for bit,
//! to take a patch out.
//!
//! Weights a GGUF file hands out still quantized are noted too ([`note_quantized`]), in the
//! table of the store opened last; LoRAs reach them through their factored terms.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;

use super::quantized::QuantizedParam;
use crate::Result;

/// A weight store that can read any tensor again exactly as it first handed it out.
pub trait Rereadable: SimpleBackend {
    /// Errs when a file behind the store changed since it was opened, so that reading again
    /// would not give the loaded values.
    fn check_unchanged(&self) -> Result<()>;
}

/// One parameter as its layer holds it.
#[derive(Clone)]
pub struct Param {
    /// The layer's own tensor (same storage).
    pub tensor: Tensor,
    name: String,
    source: Arc<dyn Rereadable>,
}

impl std::fmt::Debug for Param {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Param")
            .field("name", &self.name)
            .field("shape", &self.tensor.dims())
            .field("dtype", &self.tensor.dtype())
            .finish()
    }
}

impl Param {
    /// Reads the loaded values again from the store (same dtype and device as the tensor).
    pub fn reread(&self) -> Result<Tensor> {
        self.source.check_unchanged()?;
        let t = self
            .source
            .get_unchecked(&self.name, self.tensor.dtype(), self.tensor.device())?;
        Ok(t.contiguous()?)
    }

    /// Errs when the store's files changed since they were opened.
    pub fn check_source(&self) -> Result<()> {
        self.source.check_unchanged()
    }
}

/// The parameters one component (a UNet, a text encoder) was built from, by the names its
/// layers asked for (diffusers / transformers names).
#[derive(Clone, Debug, Default)]
pub struct ParamTable {
    params: BTreeMap<String, Param>,
    quantized: BTreeMap<String, QuantizedParam>,
    files: Vec<PathBuf>,
}

impl ParamTable {
    /// The parameter named `name`.
    pub fn get(&self, name: &str) -> Option<&Param> {
        self.params.get(name)
    }

    /// The weight named `name` when its layer holds it quantized.
    pub fn quantized(&self, name: &str) -> Option<&QuantizedParam> {
        self.quantized.get(name)
    }

    /// The names of all parameters, dense and quantized.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.params
            .keys()
            .chain(self.quantized.keys())
            .map(String::as_str)
    }

    /// The shape of the parameter named `name`, dense or quantized.
    pub fn dims(&self, name: &str) -> Option<&[usize]> {
        match self.params.get(name) {
            Some(p) => Some(p.tensor.dims()),
            None => self.quantized.get(name).map(QuantizedParam::dims),
        }
    }

    /// All dense parameters, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Param)> {
        self.params.iter().map(|(n, p)| (n.as_str(), p))
    }

    /// Number of parameters, dense and quantized.
    pub fn len(&self) -> usize {
        self.params.len() + self.quantized.len()
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The files the parameters were read from.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }
}

/// What one store handed out while recording.
struct Recording {
    source: Arc<dyn Rereadable>,
    files: Vec<PathBuf>,
    handed: Arc<Mutex<BTreeMap<String, Tensor>>>,
    quantized: BTreeMap<String, QuantizedParam>,
}

thread_local! {
    static ACTIVE: RefCell<Option<Vec<Recording>>> = const { RefCell::new(None) };
}

/// Runs `load` and returns what it built with one [`ParamTable`] per weight store it opened
/// through [`backend`] on this thread, in the order they were opened.
pub fn record<T>(load: impl FnOnce() -> T) -> (T, Vec<ParamTable>) {
    let outer = ACTIVE.with(|a| a.borrow_mut().replace(Vec::new()));
    let value = load();
    let recordings = ACTIVE.with(|a| std::mem::replace(&mut *a.borrow_mut(), outer));
    let tables = recordings
        .unwrap_or_default()
        .into_iter()
        .map(|r| {
            let handed =
                std::mem::take(&mut *r.handed.lock().unwrap_or_else(PoisonError::into_inner));
            let params = handed
                .into_iter()
                .map(|(name, tensor)| {
                    let p = Param {
                        tensor,
                        name: name.clone(),
                        source: r.source.clone(),
                    };
                    (name, p)
                })
                .collect();
            ParamTable {
                params,
                quantized: r.quantized,
                files: r.files,
            }
        })
        .collect();
    (value, tables)
}

/// `store` as a `VarBuilder` backend; while [`record`] runs on this thread, every tensor it
/// hands out is noted in the recording.
pub fn backend<B: Rereadable + 'static>(store: B, files: Vec<PathBuf>) -> Box<dyn SimpleBackend> {
    let store = Arc::new(store);
    let handed = Arc::new(Mutex::new(BTreeMap::new()));
    let recording = ACTIVE.with(|a| {
        let mut a = a.borrow_mut();
        let list = a.as_mut()?;
        list.push(Recording {
            source: store.clone(),
            files,
            handed: handed.clone(),
            quantized: BTreeMap::new(),
        });
        Some(())
    });
    match recording {
        Some(()) => Box::new(Recorder { store, handed }),
        None => Box::new(Shared(store)),
    }
}

/// Notes quantized weight `name` in the recording of the store opened last on this thread
/// (the file it came from), when [`record`] runs.
pub fn note_quantized(name: &str, param: &QuantizedParam) {
    ACTIVE.with(|a| {
        if let Some(last) = a.borrow_mut().as_mut().and_then(|list| list.last_mut()) {
            last.quantized.insert(name.to_string(), param.clone());
        }
    });
}

/// A store shared with the recording, noting what it hands out.
struct Recorder<B> {
    store: Arc<B>,
    handed: Arc<Mutex<BTreeMap<String, Tensor>>>,
}

impl<B: Rereadable> SimpleBackend for Recorder<B> {
    fn get(
        &self,
        s: Shape,
        name: &str,
        h: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let t = self.store.get(s, name, h, dtype, dev)?;
        self.handed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name.to_string(), t.clone());
        Ok(t)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        self.store.get_unchecked(name, dtype, dev)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.store.contains_tensor(name)
    }
}

/// A store behind an `Arc` (the same type whether or not a recording runs).
struct Shared<B>(Arc<B>);

impl<B: Rereadable> SimpleBackend for Shared<B> {
    fn get(
        &self,
        s: Shape,
        name: &str,
        h: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        self.0.get(s, name, h, dtype, dev)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        self.0.get_unchecked(name, dtype, dev)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.0.contains_tensor(name)
    }
}
