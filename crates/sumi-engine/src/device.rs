//! Choosing the compute device from a user-facing name.

use candle_core::Device;

use crate::{Error, Result};

/// `cpu`, `cuda`, `cuda:N`, `metal`, or `auto` (the first GPU this build supports, else CPU).
pub fn pick(name: &str) -> Result<Device> {
    let bad = |m: String| Error::InvalidRequest(m);
    match name.trim().to_ascii_lowercase().as_str() {
        "cpu" => Ok(Device::Cpu),
        "auto" => {
            if candle_core::utils::cuda_is_available() {
                Ok(Device::new_cuda(0)?)
            } else if candle_core::utils::metal_is_available() {
                Ok(Device::new_metal(0)?)
            } else {
                Ok(Device::Cpu)
            }
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
            Ok(Device::new_cuda(ordinal)?)
        }
    }
}

/// A short name for a device as recorded with images: `cpu`, `cuda:N` or `metal`.
pub fn name(device: &Device) -> String {
    match device.location() {
        candle_core::DeviceLocation::Cpu => "cpu".into(),
        candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        candle_core::DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
    }
}
