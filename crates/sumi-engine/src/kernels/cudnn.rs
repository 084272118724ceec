//! Convolution on CUDA through cuDNN (the `cudnn` feature). cuDNN's implicit GEMM reads the input
//! in place, where candle's own CUDA convolution first unfolds it (`k*k*Cin` values per output
//! pixel) and then permutes the output to NCHW.
//!
//! Two things differ from candle's optional cuDNN path, which ran the SD1.5 UNet step 4.5x slower
//! than the unfolding one on an H100 (351 against 78 ms): half floats are convolved with
//! `CUDNN_TENSOR_OP_MATH` set, without which cuDNN's legacy API never uses tensor cores, and
//! summed in f32 (cuDNN's "pseudo half"); and the algorithm is chosen once per shape and kept,
//! where candle asks cuDNN's heuristics on every call.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::{CudaDType, CudaDevice, DeviceId};
use candle_core::{
    CpuStorage, CudaStorage, CustomOp2, DType, Error, Layout, Result, Shape, Tensor, WithDType,
};
use cudarc::cudnn::{
    sys::cudnnTensorFormat_t::CUDNN_TENSOR_NCHW,
    sys::{cudnnConvolutionFwdAlgo_t as Algo, cudnnConvolutionMode_t, cudnnMathType_t},
    ConvForward, Cudnn, CudnnDataType,
};
use cudarc::driver::{CudaSlice, DeviceRepr};
use half::{bf16, f16};

/// Names an algorithm for every shape instead of cuDNN's choice (for A/B timing):
/// `implicit-precomp`, `implicit`, `gemm`, `winograd` or `fft`.
pub const ALGO_ENV: &str = "SUMI_CUDNN_ALGO";

fn parse_algo(name: &str) -> Option<Option<Algo>> {
    Some(match name {
        "" => None,
        "implicit-precomp" => Some(Algo::CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM),
        "implicit" => Some(Algo::CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM),
        "gemm" => Some(Algo::CUDNN_CONVOLUTION_FWD_ALGO_GEMM),
        "winograd" => Some(Algo::CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD),
        "fft" => Some(Algo::CUDNN_CONVOLUTION_FWD_ALGO_FFT_TILING),
        _ => return None,
    })
}

/// The algorithm named by [`ALGO_ENV`], if any.
fn named_algo() -> Option<Algo> {
    static NAMED: OnceLock<Option<Algo>> = OnceLock::new();
    *NAMED.get_or_init(|| {
        let name = std::env::var(ALGO_ENV).unwrap_or_default();
        parse_algo(&name).unwrap_or_else(|| {
            tracing::warn!("{ALGO_ENV}={name} is not an algorithm; letting cuDNN choose");
            None
        })
    })
}

/// The most scratch memory one convolution of cuDNN's choosing may take (as `bounded`'s cap).
const MAX_WORKSPACE: usize = 1 << 30;

/// Everything cuDNN's choice of algorithm depends on.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct ShapeKey {
    device: DeviceId,
    dtype: DType,
    x: [usize; 4],
    w: [usize; 4],
    stride: usize,
    pad: usize,
}

// cuDNN handles are neither Send nor Sync, so each thread keeps its own.
thread_local! {
    static HANDLES: RefCell<HashMap<DeviceId, Arc<Cudnn>>> = RefCell::new(HashMap::new());
    static CHOSEN: RefCell<HashMap<ShapeKey, Algo>> = RefCell::new(HashMap::new());
}

fn handle(device: &CudaDevice) -> Result<Arc<Cudnn>> {
    HANDLES.with(|handles| {
        if let Some(h) = handles.borrow().get(&device.id()) {
            return Ok(h.clone());
        }
        let h = Cudnn::new(device.cuda_stream()).map_err(Error::wrap)?;
        handles.borrow_mut().insert(device.id(), h.clone());
        Ok(h)
    })
}

struct Conv2d {
    stride: usize,
    pad: usize,
}

impl Conv2d {
    fn run<T: WithDType + CudnnDataType + CudaDType + DeviceRepr>(
        &self,
        x: &CudaStorage,
        x_layout: &Layout,
        w: &CudaStorage,
        w_layout: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        let (b, cin, h, wd) = x_layout.shape().dims4()?;
        let (cout, cin_w, kh, kw) = w_layout.shape().dims4()?;
        let (Some((x0, x1)), Some((w0, w1))) =
            (x_layout.contiguous_offsets(), w_layout.contiguous_offsets())
        else {
            candle_core::bail!("cudnn conv2d: inputs must be contiguous");
        };
        let (s, p) = (self.stride, self.pad);
        if cin != cin_w || s == 0 || h + 2 * p < kh || wd + 2 * p < kw {
            candle_core::bail!(
                "cudnn conv2d: input {:?}, weight {:?}",
                x_layout.dims(),
                w_layout.dims()
            );
        }
        let (oh, ow) = ((h + 2 * p - kh) / s + 1, (wd + 2 * p - kw) / s + 1);
        let device = x.device().clone();
        let cudnn = handle(&device)?;
        let int = |v: usize| v as i32;
        // f32 sums for every dtype; tensor cores for half floats, exact f32 for f32 (no TF32).
        let mut conv = cudnn
            .create_conv2d::<f32>(
                [int(p), int(p)],
                [int(s), int(s)],
                [1, 1],
                cudnnConvolutionMode_t::CUDNN_CROSS_CORRELATION,
            )
            .map_err(Error::wrap)?;
        let math = if T::DTYPE == DType::F32 {
            cudnnMathType_t::CUDNN_FMA_MATH
        } else {
            cudnnMathType_t::CUDNN_TENSOR_OP_MATH
        };
        conv.set_math_type(math).map_err(Error::wrap)?;
        let dims = |a: usize, b: usize, c: usize, d: usize| [int(a), int(b), int(c), int(d)];
        let x_desc = cudnn
            .create_4d_tensor::<T>(CUDNN_TENSOR_NCHW, dims(b, cin, h, wd))
            .map_err(Error::wrap)?;
        let w_desc = cudnn
            .create_4d_filter::<T>(CUDNN_TENSOR_NCHW, dims(cout, cin, kh, kw))
            .map_err(Error::wrap)?;
        let y_desc = cudnn
            .create_4d_tensor::<T>(CUDNN_TENSOR_NCHW, dims(b, cout, oh, ow))
            .map_err(Error::wrap)?;
        let op = ConvForward {
            conv: &conv,
            x: &x_desc,
            w: &w_desc,
            y: &y_desc,
        };
        let key = ShapeKey {
            device: device.id(),
            dtype: T::DTYPE,
            x: [b, cin, h, wd],
            w: [cout, cin, kh, kw],
            stride: s,
            pad: p,
        };
        let algo = match named_algo() {
            Some(algo) => algo,
            None => match CHOSEN.with(|c| c.borrow().get(&key).copied()) {
                Some(algo) => algo,
                None => {
                    // cuDNN ranks by speed alone; an algorithm whose workspace would pass the
                    // cap (FFT at large sizes) gives way to implicit GEMM, which needs none.
                    let mut algo = op.pick_algorithm().map_err(Error::wrap)?;
                    if op.get_workspace_size(algo).map_err(Error::wrap)? > MAX_WORKSPACE {
                        algo = Algo::CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM;
                    }
                    CHOSEN.with(|c| c.borrow_mut().insert(key, algo));
                    algo
                }
            },
        };
        let workspace_bytes = op.get_workspace_size(algo).map_err(Error::wrap)?;
        let stream = device.cuda_stream();
        let mut workspace: Option<CudaSlice<u8>> = match workspace_bytes {
            0 => None,
            n => Some(unsafe { stream.alloc::<u8>(n) }.map_err(Error::wrap)?),
        };
        let mut y = unsafe { device.alloc::<T>(b * cout * oh * ow) }?;
        let xs = x.as_cuda_slice::<T>()?.slice(x0..x1);
        let ws = w.as_cuda_slice::<T>()?.slice(w0..w1);
        // SAFETY: the descriptors above give the slices' dtype, NCHW layout and sizes.
        unsafe {
            op.launch(
                algo,
                workspace.as_mut(),
                (T::from_f64(1.0), T::from_f64(0.0)),
                &xs,
                &ws,
                &mut y,
            )
        }
        .map_err(Error::wrap)?;
        Ok((
            CudaStorage::wrap_cuda_slice(y, device),
            Shape::from((b, cout, oh, ow)),
        ))
    }
}

impl CustomOp2 for Conv2d {
    fn name(&self) -> &'static str {
        "cudnn-conv2d"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        candle_core::bail!("cudnn conv2d runs on CUDA only")
    }

    fn cuda_fwd(
        &self,
        x: &CudaStorage,
        x_layout: &Layout,
        w: &CudaStorage,
        w_layout: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        match x.dtype() {
            DType::F16 => self.run::<f16>(x, x_layout, w, w_layout),
            DType::BF16 => self.run::<bf16>(x, x_layout, w, w_layout),
            DType::F32 => self.run::<f32>(x, x_layout, w, w_layout),
            dtype => candle_core::bail!("cudnn conv2d: no {dtype:?} convolution"),
        }
    }
}

/// `conv2d(x, w) + bias` with zero padding, by cuDNN.
pub fn conv2d(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    stride: usize,
    pad: usize,
) -> Result<Tensor> {
    let y = x
        .contiguous()?
        .apply_op2_no_bwd(&w.contiguous()?, &Conv2d { stride, pad })?;
    super::common::add_channel_bias(y, bias)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn algorithm_names() {
        assert_eq!(parse_algo(""), Some(None));
        assert_eq!(
            parse_algo("implicit"),
            Some(Some(Algo::CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM))
        );
        assert_eq!(parse_algo("fastest"), None);
    }
}
