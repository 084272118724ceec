//! A1111's img2img step rules (`sd_samplers_common.setup_img2img_steps`): how a denoising
//! strength turns into a schedule and the part of it that runs.

use crate::{Error, Result};

/// The schedule an img2img pass builds and how much of it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Img2ImgSteps {
    /// Steps of the schedule to build (its sigma list has one more entry).
    pub schedule_steps: usize,
    /// A1111's `t_enc`: the pass runs `t_enc + 1` steps, from `sigmas[schedule_steps - t_enc - 1]`.
    pub t_enc: usize,
}

/// Checks a denoising strength: a number in 0..=1.
pub fn check_strength(strength: f64) -> Result<()> {
    if strength.is_finite() && (0.0..=1.0).contains(&strength) {
        Ok(())
    } else {
        Err(Error::InvalidRequest(format!(
            "denoising strength {strength} must be between 0 and 1 (0 keeps the picture, 1 \
             repaints it fully)"
        )))
    }
}

/// A1111's rule for `steps` and `strength`. Normally the `steps`-step schedule runs from
/// `t_enc = int(min(strength, 0.999) * steps)`; with `fixed` (A1111's "img2img fix steps", and
/// always for the hires pass, which passes its step count) the schedule has
/// `int(steps / min(strength, 0.999))` steps and `t_enc = steps - 1`, so exactly `steps` run.
pub fn img2img_steps(steps: usize, strength: f64, fixed: bool) -> Result<Img2ImgSteps> {
    check_strength(strength)?;
    if steps == 0 {
        return Err(Error::InvalidRequest(
            "img2img needs at least one step".into(),
        ));
    }
    let s = strength.min(0.999);
    if fixed {
        if strength == 0.0 {
            return Err(Error::InvalidRequest(
                "a denoising strength of 0 leaves the picture as it is; give a value above 0"
                    .into(),
            ));
        }
        return Ok(Img2ImgSteps {
            schedule_steps: (steps as f64 / s) as usize,
            t_enc: steps - 1,
        });
    }
    Ok(Img2ImgSteps {
        schedule_steps: steps,
        t_enc: (s * steps as f64) as usize,
    })
}

/// The part of a schedule's sigma list (`schedule_steps + 1` values, ending at 0) an img2img
/// pass runs: `sigmas[schedule_steps - t_enc - 1..]`, `t_enc + 2` values. The start latent is
/// the init latent noised to its first value (`Parametrization::noised`).
pub fn img2img_sigmas(sigmas: &[f64], plan: Img2ImgSteps) -> Result<&[f64]> {
    let n = plan.schedule_steps;
    if sigmas.len() != n + 1 || plan.t_enc >= n {
        return Err(Error::InvalidRequest(format!(
            "an img2img slice of {} steps from a schedule of {n} steps needs {} sigmas, got {}",
            plan.t_enc + 1,
            n + 1,
            sigmas.len()
        )));
    }
    Ok(&sigmas[n - plan.t_enc - 1..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_follow_a1111() {
        assert_eq!(
            img2img_steps(20, 0.75, false).unwrap(),
            Img2ImgSteps {
                schedule_steps: 20,
                t_enc: 15
            }
        );
        assert_eq!(img2img_steps(20, 1.0, false).unwrap().t_enc, 19);
        assert_eq!(img2img_steps(10, 0.3, false).unwrap().t_enc, 3);
        assert_eq!(img2img_steps(10, 0.0, false).unwrap().t_enc, 0);
        assert_eq!(
            img2img_steps(20, 0.7, true).unwrap(),
            Img2ImgSteps {
                schedule_steps: 28,
                t_enc: 19
            }
        );
        assert_eq!(
            img2img_steps(20, 1.0, true).unwrap(),
            Img2ImgSteps {
                schedule_steps: 20,
                t_enc: 19
            }
        );
        let sigmas: Vec<f64> = (0..=20).rev().map(f64::from).collect();
        let plan = img2img_steps(20, 0.5, false).unwrap();
        let run = img2img_sigmas(&sigmas, plan).unwrap();
        assert_eq!(run.len(), plan.t_enc + 2);
        assert_eq!(run[0], 11.0);
        for bad in [-0.1, 1.5, f64::NAN] {
            assert!(img2img_steps(20, bad, false)
                .unwrap_err()
                .to_string()
                .contains("between 0 and 1"));
        }
        assert!(img2img_steps(20, 0.0, true).is_err());
        assert!(img2img_sigmas(&sigmas[..5], plan).is_err());
    }
}
