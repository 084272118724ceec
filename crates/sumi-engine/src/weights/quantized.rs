//! Quantized weight matrices handed to linear layers while a model is built.
//!
//! A `VarBuilder` only hands out dense tensors, so a loader of quantized files (GGUF) installs a
//! [`QuantizedSource`] for the duration of the build ([`with_source`]); each linear layer asks it
//! for its weight by full name first ([`quantized_weight`]) and falls back to the `VarBuilder`
//! when the source has no quantized matrix of that name (norms, biases, small matrices kept in
//! F32/F16 by the file).

use std::cell::RefCell;
use std::sync::Arc;

use candle_core::quantized::QTensor;

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

/// The quantized weight `name` from the source installed by [`with_source`], if any.
pub fn quantized_weight(name: &str) -> candle_core::Result<Option<Arc<QTensor>>> {
    let source = SOURCE.with(|s| s.borrow().clone());
    match source {
        Some(source) => Ok(source.quantized(name)?.map(Arc::new)),
        None => Ok(None),
    }
}
