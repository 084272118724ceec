//! What a network predicts, and the arithmetic that follows from it: how a noisy latent is scaled
//! for the network, how its output becomes the clean estimate x0, and how noise is added to a
//! clean latent at a noise level (for txt2img starts, img2img and hires fix).

use candle_core::{Result, Tensor};
use serde::{Deserialize, Serialize};

/// The prediction target of a denoising network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Parametrization {
    /// The added noise (most SD models); noise levels are variance-exploding sigmas.
    Epsilon,
    /// v = alpha * noise - sigma * x0 (SD 2.x 768 models).
    V,
    /// Flow matching: the velocity `noise - x0` along `x = sigma * noise + (1 - sigma) * x0`
    /// with sigma in [0, 1] (Flux, SD3).
    Flow,
}

impl Parametrization {
    /// The factor the network's input is scaled by at noise level `sigma`.
    pub fn input_scale(self, sigma: f64) -> f64 {
        match self {
            Parametrization::Epsilon | Parametrization::V => 1.0 / (sigma * sigma + 1.0).sqrt(),
            Parametrization::Flow => 1.0,
        }
    }

    /// The clean estimate x0 from the noisy input `x` at `sigma` and the network's output.
    pub fn to_x0(self, x: &Tensor, out: &Tensor, sigma: f64) -> Result<Tensor> {
        match self {
            Parametrization::Epsilon | Parametrization::Flow => x - (out * sigma)?,
            Parametrization::V => {
                let s2 = sigma * sigma + 1.0;
                (x * (1.0 / s2))? + (out * (-sigma / s2.sqrt()))?
            }
        }
    }

    /// A clean latent `x0` noised to level `sigma` with standard normal `noise`:
    /// `x0 + sigma * noise` (eps, v), `sigma * noise + (1 - sigma) * x0` (flow).
    pub fn noised(self, x0: &Tensor, noise: &Tensor, sigma: f64) -> Result<Tensor> {
        match self {
            Parametrization::Epsilon | Parametrization::V => x0 + (noise * sigma)?,
            Parametrization::Flow => (noise * sigma)? + (x0 * (1.0 - sigma))?,
        }
    }

    /// The name diffusers' scheduler configs use (`prediction_type`).
    pub fn config_name(self) -> &'static str {
        match self {
            Parametrization::Epsilon => "epsilon",
            Parametrization::V => "v_prediction",
            Parametrization::Flow => "flow_prediction",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn t(v: &[f32]) -> Tensor {
        Tensor::new(v, &Device::Cpu).unwrap()
    }

    fn vals(x: Tensor) -> Vec<f32> {
        x.to_vec1().unwrap()
    }

    #[test]
    fn each_parametrization_recovers_x0_from_its_own_prediction() {
        let (x0, n, sigma) = (t(&[0.5, -1.0]), t(&[1.5, 0.25]), 0.8f64);
        for p in [
            Parametrization::Epsilon,
            Parametrization::V,
            Parametrization::Flow,
        ] {
            let x = p.noised(&x0, &n, sigma).unwrap();
            let out = match p {
                Parametrization::Epsilon => n.clone(),
                // v = alpha n - s x0 in VP terms; in k-diffusion's VE space x = x0 + s n.
                Parametrization::V => {
                    let a = 1.0 / (sigma * sigma + 1.0).sqrt();
                    ((&n * a).unwrap() - (&x0 * (sigma * a)).unwrap()).unwrap()
                }
                Parametrization::Flow => (&n - &x0).unwrap(),
            };
            let got = vals(p.to_x0(&x, &out, sigma).unwrap());
            for (g, w) in got.iter().zip(vals(x0.clone())) {
                assert!((g - w).abs() < 1e-6, "{p:?}: {got:?}");
            }
        }
        assert_eq!(
            vals(Parametrization::Flow.noised(&x0, &n, 1.0).unwrap()),
            vals(n)
        );
    }
}
