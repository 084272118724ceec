//! The generation form as the app's page sends it, turned into the requests it asks for.

use serde::Deserialize;
use sumi_engine::Request;
use ts_rs::TS;

use crate::compare::set_sampler;
use crate::limits::MAX_BATCH;
use crate::seed::random_seed;
use crate::{Result, RuntimeError};

/// What the Generate view sends: one request, whether to draw its seed, and how many images.
#[derive(Debug, Clone, Deserialize, PartialEq, TS)]
#[serde(rename_all = "camelCase")]
pub struct GenerateForm {
    /// The request; its seed counts only when `random_seed` is false.
    pub request: Request,
    /// Draw a random seed instead of the request's.
    pub random_seed: bool,
    /// How many images; their seeds count up from the first.
    #[serde(default = "one")]
    pub batch: u32,
    /// The gallery image an img2img request's init picture is (for the record's lineage).
    #[serde(default)]
    #[ts(type = "number | null")]
    pub made_from: Option<i64>,
}

fn one() -> u32 {
    1
}

impl GenerateForm {
    /// The checked request (names normalised to their display names) with its seed drawn when
    /// asked; `downscale` is the loaded model's size multiple.
    pub fn request(&self, downscale: u32) -> Result<Request> {
        let mut r = self.request.clone();
        if r.prompt.trim().is_empty() {
            return Err(RuntimeError::Invalid("Write a prompt first.".into()));
        }
        let (sampler, schedule) = (r.sampler.clone(), r.schedule.clone());
        set_sampler(&mut r, &sampler, Some(&schedule))?;
        if self.random_seed {
            r.seed = random_seed();
        }
        r.validate(downscale)?;
        Ok(r)
    }

    /// Every request of the batch: the first as [`GenerateForm::request`] makes it, then seeds
    /// counting up.
    pub fn batch(&self, downscale: u32) -> Result<Vec<Request>> {
        if self.batch == 0 || self.batch > MAX_BATCH {
            return Err(RuntimeError::Invalid(format!(
                "Batch count must be between 1 and {MAX_BATCH}."
            )));
        }
        let first = self.request(downscale)?;
        Ok((0..self.batch)
            .map(|i| Request {
                seed: first.seed.wrapping_add(i as u64),
                ..first.clone()
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(batch: u32, random_seed: bool) -> GenerateForm {
        GenerateForm {
            request: Request {
                prompt: "a fox".into(),
                negative_prompt: String::new(),
                seed: 40,
                steps: 4,
                cfg: 7.0,
                sampler: "dpmpp_2m".into(),
                schedule: "karras".into(),
                width: 64,
                height: 64,
                noise: Default::default(),
                ..Default::default()
            },
            random_seed,
            batch,
            made_from: None,
        }
    }

    #[test]
    fn a_batch_counts_seeds_up_with_names_normalised() {
        let rs = form(3, false).batch(8).unwrap();
        assert_eq!(rs.iter().map(|r| r.seed).collect::<Vec<_>>(), [40, 41, 42]);
        assert_eq!(
            (rs[0].sampler.as_str(), rs[0].schedule.as_str()),
            ("DPM++ 2M", "Karras")
        );
        let random = form(2, true).batch(8).unwrap();
        assert_eq!(random[1].seed, random[0].seed + 1);
        assert!(form(0, false).batch(8).is_err());
        assert!(form(MAX_BATCH + 1, false).batch(8).is_err());
        let mut f = form(1, false);
        f.request.prompt = "  ".into();
        assert!(f
            .batch(8)
            .unwrap_err()
            .to_string()
            .contains("Write a prompt"));
        let mut f = form(1, false);
        f.request.width = 60;
        assert!(f
            .batch(8)
            .unwrap_err()
            .to_string()
            .contains("multiple of 8"));
    }
}
