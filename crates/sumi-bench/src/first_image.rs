//! Time to first image: from the moment a model is chosen (its folder written and in the page
//! cache, nothing loaded) to the first finished, decoded image, with a fresh load for each step
//! count.

use std::path::Path;
use std::sync::atomic::AtomicBool;

use sumi_engine::{Model, Request, Result};

use crate::measure::{time_runs, Runs};
use crate::BenchOptions;

/// The step counts timed: one step, and the whole run's steps.
pub(crate) fn step_counts(opts: &BenchOptions) -> Vec<u32> {
    let mut counts = vec![1];
    if opts.steps != 1 {
        counts.push(opts.steps);
    }
    counts
}

/// The component name of the run with `steps` steps ("first-image 1 step", "first-image 20 steps").
pub(crate) fn component(steps: u32) -> String {
    let unit = if steps == 1 { "step" } else { "steps" };
    format!("first-image {steps} {unit}")
}

/// Loads the model in `dir` and makes one Euler image with CFG 7 at `opts.size`, timed together;
/// the model is dropped before returning.
pub(crate) fn time_first_image(
    opts: &BenchOptions,
    dir: &Path,
    prompt: &str,
    steps: u32,
) -> Result<Runs> {
    let cancel = AtomicBool::new(false);
    time_runs(&opts.device, 1, || {
        let model = Model::load(dir, &opts.device, opts.dtype)?;
        let mut req = Request::with_defaults(&model.info, prompt, 1);
        req.steps = steps;
        req.cfg = 7.0;
        req.sampler = "Euler".into();
        req.schedule = "Normal".into();
        req.width = opts.size as u32;
        req.height = opts.size as u32;
        sumi_engine::pipeline::generate(&model, &req, &cancel, &mut |_| {})?;
        Ok(())
    })
}
