//! Choosing the compute device from a user-facing name.

use candle_core::Device;

use crate::{Error, Result};

/// `cpu`, `cuda`, `cuda:N`, `metal`, or `auto` (the first GPU this build supports, else CPU).
pub fn pick(name: &str) -> Result<Device> {
    let bad = |m: String| Error::InvalidRequest(m);
    match name.trim().to_ascii_lowercase().as_str() {
        "cpu" => Ok(Device::Cpu),
        "auto" => {
            // A GPU build on a machine without that GPU falls back to the CPU.
            if candle_core::utils::cuda_is_available() {
                if let Ok(d) = Device::new_cuda(0) {
                    return Ok(d);
                }
            }
            if candle_core::utils::metal_is_available() {
                if let Ok(d) = Device::new_metal(0) {
                    return Ok(d);
                }
            }
            Ok(Device::Cpu)
        }
        "metal" => {
            if !candle_core::utils::metal_is_available() {
                return Err(bad(
                    "this build of Sumi has no Metal support (build with --features metal)".into(),
                ));
            }
            Ok(Device::new_metal(0)?)
        }
        other => {
            let Some(rest) = other.strip_prefix("cuda") else {
                return Err(bad(format!(
                    "unknown device {other:?}: use cpu, cuda, cuda:N, metal or auto"
                )));
            };
            if !candle_core::utils::cuda_is_available() {
                return Err(bad(
                    "this build of Sumi has no CUDA support (build with --features cuda)".into(),
                ));
            }
            let ordinal = match rest.strip_prefix(':') {
                None if rest.is_empty() => 0,
                Some(n) => n
                    .parse()
                    .map_err(|_| bad(format!("bad CUDA device number in {other:?}")))?,
                None => return Err(bad(format!("unknown device {other:?}"))),
            };
            Device::new_cuda(ordinal).map_err(|e| {
                bad(format!(
                    "cannot open CUDA device {ordinal} ({}): check the NVIDIA driver with \
                     nvidia-smi, or use --device cpu",
                    first_line(&e.to_string())
                ))
            })
        }
    }
}

/// candle's errors carry a backtrace after the first line when `RUST_BACKTRACE` is set.
fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or(text)
}

/// Which compute dtype to use on `device`: f32 on CPU, f16 on GPUs.
pub fn default_dtype(device: &Device) -> candle_core::DType {
    if device.is_cpu() {
        candle_core::DType::F32
    } else {
        candle_core::DType::F16
    }
}

/// The dtype a model loaded for `dtype` on `device` computes in: f32 for `bf16` on the CPU,
/// whose bf16 weight matrices the kernels multiply with f32 activations
/// ([`crate::weights::storage`]).
pub fn compute_dtype(dtype: candle_core::DType, device: &Device) -> candle_core::DType {
    if dtype == candle_core::DType::BF16 && device.is_cpu() {
        candle_core::DType::F32
    } else {
        dtype
    }
}

/// `auto` (f32 on the CPU, f16 on a GPU), `f32`, `f16` or `bf16`.
pub fn pick_dtype(name: &str, device: &Device) -> Result<candle_core::DType> {
    use candle_core::DType;
    match name.trim().to_ascii_lowercase().as_str() {
        "auto" => Ok(default_dtype(device)),
        "f32" | "fp32" | "float32" => Ok(DType::F32),
        "f16" | "fp16" | "float16" => Ok(DType::F16),
        "bf16" | "bfloat16" => Ok(DType::BF16),
        other => Err(Error::InvalidRequest(format!(
            "unknown dtype {other:?}: use auto, f32, f16 or bf16"
        ))),
    }
}

/// Bytes `device` can still allocate: a CUDA device's free memory, or the memory Linux could
/// still give this process (`MemAvailable`) for the CPU; `None` where that is unknown.
pub fn free_memory(device: &Device) -> Option<usize> {
    match device {
        Device::Cpu => available_system_memory(),
        #[cfg(feature = "cuda")]
        Device::Cuda(d) => d
            .cuda_stream()
            .context()
            .mem_get_info()
            .ok()
            .map(|(free, _)| free),
        _ => None,
    }
}

fn available_system_memory() -> Option<usize> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: usize = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// A short name for a device as recorded with images: `cpu`, `cuda:N` or `metal`.
pub fn name(device: &Device) -> String {
    match device.location() {
        candle_core::DeviceLocation::Cpu => "cpu".into(),
        candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        candle_core::DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::DType;

    #[test]
    fn dtype_names() {
        let cpu = Device::Cpu;
        assert_eq!(pick_dtype("auto", &cpu).unwrap(), DType::F32);
        assert_eq!(pick_dtype("F16", &cpu).unwrap(), DType::F16);
        assert_eq!(pick_dtype(" fp32 ", &cpu).unwrap(), DType::F32);
        assert_eq!(pick_dtype("bf16", &cpu).unwrap(), DType::BF16);
        assert_eq!(compute_dtype(DType::BF16, &cpu), DType::F32);
        assert_eq!(compute_dtype(DType::F16, &cpu), DType::F16);
        let bad = pick_dtype("f8", &cpu).unwrap_err().to_string();
        assert!(bad.contains("auto, f32, f16 or bf16"), "{bad}");
    }
}
