//! Comparisons: one prompt and seed through several settings (the cells), saved as one group.

use serde::Deserialize;
use sumi_engine::sampling::table::{parse_sampler, schedule};
use sumi_engine::Request;
use ts_rs::TS;

use crate::limits::MAX_COMPARE_CELLS;
use crate::{Result, RuntimeError};

/// What one cell of a comparison changes: a sampler and schedule, and optionally the steps or
/// the CFG scale.
#[derive(Debug, Clone, Deserialize, PartialEq, TS)]
pub struct Variant {
    /// Sampler name.
    pub sampler: String,
    /// Schedule name.
    pub schedule: String,
    /// Steps, when this cell changes them.
    #[serde(default)]
    pub steps: Option<u32>,
    /// CFG scale, when this cell changes it.
    #[serde(default)]
    pub cfg: Option<f64>,
}

/// The request of every cell: `base` with each variant's changes, in order. Refuses fewer than
/// two cells or more than [`MAX_COMPARE_CELLS`].
pub fn cells(base: &Request, variants: &[Variant]) -> Result<Vec<Request>> {
    if variants.len() < 2 {
        return Err(RuntimeError::Invalid(
            "Pick at least two values to compare (two samplers, schedules, step counts or CFG values).".into(),
        ));
    }
    if variants.len() > MAX_COMPARE_CELLS {
        return Err(RuntimeError::Invalid(format!(
            "That makes {} images; a comparison holds at most {MAX_COMPARE_CELLS}. Pick fewer values.",
            variants.len()
        )));
    }
    variants
        .iter()
        .map(|v| {
            let mut r = base.clone();
            set_sampler(&mut r, &v.sampler, Some(&v.schedule))?;
            r.steps = v.steps.unwrap_or(base.steps);
            r.cfg = v.cfg.unwrap_or(base.cfg);
            Ok(r)
        })
        .collect()
}

/// Sets the request's sampler by any name users know (A1111, ComfyUI, or a legacy name such as
/// "DPM++ 2M Karras" that also names a schedule) and its schedule, both by their display names.
/// A schedule named here wins over a legacy name's; empty or "Automatic" names none.
pub fn set_sampler(r: &mut Request, sampler: &str, schedule_name: Option<&str>) -> Result<()> {
    let (entry, legacy) = parse_sampler(sampler)?;
    r.sampler = entry.name.to_string();
    let named = schedule_name
        .map(str::trim)
        .filter(|s| !s.is_empty() && !s.eq_ignore_ascii_case("automatic"));
    match (named, legacy) {
        (Some(name), _) => r.schedule = schedule(name)?.name.to_string(),
        (None, Some(s)) => r.schedule = s.name.to_string(),
        (None, None) => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Request {
        Request {
            prompt: "p".into(),
            negative_prompt: String::new(),
            seed: 1,
            steps: 10,
            cfg: 7.0,
            sampler: "Euler".into(),
            schedule: "Normal".into(),
            width: 64,
            height: 64,
            noise: Default::default(),
            ..Default::default()
        }
    }

    fn v(sampler: &str, schedule: &str, steps: Option<u32>) -> Variant {
        Variant {
            sampler: sampler.into(),
            schedule: schedule.into(),
            steps,
            cfg: None,
        }
    }

    #[test]
    fn cells_change_what_their_variant_says_within_the_cap() {
        let got = cells(
            &base(),
            &[
                v("euler_ancestral", "karras", Some(4)),
                v("DPM++ 2M Karras", "", None),
                v("DPM++ 2M Karras", "Exponential", None),
            ],
        )
        .unwrap();
        assert_eq!(
            (
                got[0].sampler.as_str(),
                got[0].schedule.as_str(),
                got[0].steps
            ),
            ("Euler a", "Karras", 4)
        );
        assert_eq!(
            (
                got[1].sampler.as_str(),
                got[1].schedule.as_str(),
                got[1].steps
            ),
            ("DPM++ 2M", "Karras", 10)
        );
        assert_eq!(got[2].schedule, "Exponential", "a named schedule wins");
        let e = cells(&base(), &[v("Euler", "Normal", None)]).unwrap_err();
        assert!(e.to_string().contains("at least two"), "{e}");
        let many = vec![v("Euler", "Normal", None); MAX_COMPARE_CELLS + 1];
        let e = cells(&base(), &many).unwrap_err();
        assert!(e.to_string().contains("at most 16"), "{e}");
        assert!(cells(
            &base(),
            &[v("Nope", "Normal", None), v("Euler", "Normal", None)]
        )
        .is_err());
    }
}
