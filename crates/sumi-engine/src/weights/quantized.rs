//! Quantized weight matrices handed to linear layers while a model is built.
//!
//! A `VarBuilder` only hands out dense tensors, so a loader of quantized files (GGUF) installs a
//! [`QuantizedSource`] for the duration of the build ([`with_source`]); each linear layer asks it
//! for its weight by full name first ([`quantized_weight`]) and falls back to the `VarBuilder`
//! when the source has no quantized matrix of that name (norms, biases, small matrices kept in
//! F32/F16 by the file).
//!
//! A quantized weight is never rewritten: LoRAs on it are kept factored ([`LoraTerm`]) and the
//! layer adds their products to its own, so the model stays quantized with LoRAs applied.

use std::cell::RefCell;
use std::sync::{Arc, PoisonError, RwLock};

use candle_core::quantized::QTensor;
use candle_core::Tensor;

/// One LoRA module's update of a quantized `[out, in]` weight, kept factored (f32, on the
/// compute device, multiplier and scale folded in).
#[derive(Debug, Clone)]
pub enum LoraTerm {
    /// `up @ down`: `up` `[out, rank]`, `down` `[rank, in]` (LoRA; LoHa as its rank r1*r2
    /// product).
    LowRank {
        /// `[out, rank]`.
        up: Tensor,
        /// `[rank, in]`.
        down: Tensor,
    },
    /// `kron(a, b)` (LoKr): `a` `[p, q]`, `b` `[r, s]`, out = p*r, in = q*s.
    Kron {
        /// The outer factor.
        a: Tensor,
        /// The inner factor.
        b: Tensor,
    },
}

/// The LoRA terms applied to one quantized weight now: shared by its layer, which adds them
/// to its product, and the LoRA patcher, which replaces them when the set changes.
#[derive(Debug, Default)]
pub struct LoraTerms(RwLock<Arc<AppliedTerms>>);

/// The terms of one weight as its layer uses them.
#[derive(Debug, Default)]
pub struct AppliedTerms {
    /// Every low-rank term as one: the ups side by side (`[out, R]`), the downs stacked
    /// (`[R, in]`).
    pub low_rank: Option<(Tensor, Tensor)>,
    /// The Kronecker terms' `(a, b)`.
    pub kron: Vec<(Tensor, Tensor)>,
}

impl LoraTerms {
    /// The terms now (a snapshot; a change while a product runs applies to the next one).
    pub fn get(&self) -> Arc<AppliedTerms> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Makes `terms` the applied ones (none: the weight as loaded).
    pub fn set(&self, terms: Vec<LoraTerm>) -> candle_core::Result<()> {
        let (mut ups, mut downs, mut kron) = (Vec::new(), Vec::new(), Vec::new());
        for term in terms {
            match term {
                LoraTerm::LowRank { up, down } => {
                    ups.push(up);
                    downs.push(down);
                }
                LoraTerm::Kron { a, b } => kron.push((a, b)),
            }
        }
        let low_rank = match ups.is_empty() {
            true => None,
            false => Some((
                Tensor::cat(&ups, 1)?.contiguous()?,
                Tensor::cat(&downs, 0)?.contiguous()?,
            )),
        };
        let applied = Arc::new(AppliedTerms { low_rank, kron });
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = applied;
        Ok(())
    }
}

/// A quantized weight as its layer holds it.
#[derive(Debug, Clone)]
pub struct QuantizedParam {
    /// The `[out, in]` blocks as stored.
    pub weight: Arc<QTensor>,
    /// The LoRA terms its layer adds.
    pub lora: Arc<LoraTerms>,
}

impl QuantizedParam {
    /// The weight's `[out, in]` shape.
    pub fn dims(&self) -> &[usize] {
        self.weight.shape().dims()
    }
}

/// Something that can hand out a linear layer's weight still quantized.
pub trait QuantizedSource {
    /// The `[out, in]` weight `name` (diffusers / transformers name) as a quantized tensor, or
    /// `None` when it is not stored quantized.
    fn quantized(&self, name: &str) -> candle_core::Result<Option<QTensor>>;
}

thread_local! {
    static SOURCE: RefCell<Option<Arc<dyn QuantizedSource>>> = const { RefCell::new(None) };
}

/// Puts back the source that was active before [`with_source`], also on unwinding.
struct Restore(Option<Arc<dyn QuantizedSource>>);

impl Drop for Restore {
    fn drop(&mut self) {
        let previous = self.0.take();
        SOURCE.with(|s| *s.borrow_mut() = previous);
    }
}

/// Runs `build` with `source` (when there is one) answering [`quantized_weight`] on this thread.
pub fn with_source<R>(source: Option<Arc<dyn QuantizedSource>>, build: impl FnOnce() -> R) -> R {
    let Some(source) = source else {
        return build();
    };
    let previous = SOURCE.with(|s| s.borrow_mut().replace(source));
    let _restore = Restore(previous);
    build()
}

/// The quantized weight `name` from the source installed by [`with_source`], if any, with no
/// LoRA terms.
pub fn quantized_weight(name: &str) -> candle_core::Result<Option<QuantizedParam>> {
    let source = SOURCE.with(|s| s.borrow().clone());
    let Some(source) = source else {
        return Ok(None);
    };
    Ok(source.quantized(name)?.map(|q| QuantizedParam {
        weight: Arc::new(q),
        lora: Arc::default(),
    }))
}
