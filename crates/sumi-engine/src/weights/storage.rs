//! How a model's weights are kept for its compute dtype: on the CPU, `bf16` keeps the weight
//! matrices of linear layers and convolutions in bf16 (half the memory; the kernels multiply
//! them with f32 activations) and everything else (norms, biases, embedding tables) in f32,
//! which is what the model then computes in.

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::VarBuilder;

/// A `VarBuilder` over `backend` for a model run in `dtype` on `device`.
pub fn builder(
    backend: Box<dyn SimpleBackend>,
    dtype: DType,
    device: &Device,
) -> VarBuilder<'static> {
    if dtype == DType::BF16 && device.is_cpu() {
        let backend: Box<dyn SimpleBackend> = Box::new(Bf16Matrices(backend));
        return VarBuilder::from_backend(backend, DType::F32, device.clone());
    }
    VarBuilder::from_backend(backend, dtype, device.clone())
}

/// The dtype the tensor `name` of `shape` is handed out in for a model loaded in `dtype` on
/// `device` (when its layer asks for the builder's dtype, as all of Sumi's do).
pub(crate) fn stored_dtype(name: &str, shape: &Shape, dtype: DType, device: &Device) -> DType {
    match dtype == DType::BF16 && device.is_cpu() {
        true if kept_in_bf16(name, shape) => DType::BF16,
        true => DType::F32,
        false => dtype,
    }
}

/// Whether a tensor asked for in f32 is kept in bf16: the `weight` of a linear layer (2-D) or a
/// convolution (4-D), not an embedding table, which is indexed rather than multiplied.
fn kept_in_bf16(name: &str, shape: &Shape) -> bool {
    matches!(shape.rank(), 2 | 4)
        && name.ends_with(".weight")
        && !name.ends_with("embedding.weight")
}

/// Hands out the weight matrices in bf16 and all other tensors as asked.
struct Bf16Matrices(Box<dyn SimpleBackend>);

impl SimpleBackend for Bf16Matrices {
    fn get(
        &self,
        s: Shape,
        name: &str,
        h: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let dtype = if dtype == DType::F32 && kept_in_bf16(name, &s) {
            DType::BF16
        } else {
            dtype
        };
        self.0.get(s, name, h, dtype, dev)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        self.0.get_unchecked(name, dtype, dev)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.0.contains_tensor(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_weight_matrices_are_kept_in_bf16() {
        let m = |dims: &[usize]| Shape::from_dims(dims);
        assert!(kept_in_bf16(
            "down_blocks.0.attentions.0.proj_in.weight",
            &m(&[320, 320])
        ));
        assert!(kept_in_bf16("conv_in.weight", &m(&[320, 4, 3, 3])));
        assert!(kept_in_bf16(
            "time_embedding.linear_1.weight",
            &m(&[1280, 320])
        ));
        assert!(!kept_in_bf16("conv_in.bias", &m(&[320])));
        assert!(!kept_in_bf16("norm1.weight", &m(&[320])));
        assert!(!kept_in_bf16(
            "text_model.embeddings.token_embedding.weight",
            &m(&[49408, 768])
        ));
        assert!(!kept_in_bf16("position_embedding.weight", &m(&[77, 768])));
    }
}
