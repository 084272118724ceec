//! Every limit a request is checked against, and the sampler and schedule names, in one place
//! for both faces: the CLI prints them, the app hands them to its page.

use serde::Serialize;
use sumi_engine::pipeline::{MAX_CFG, MAX_SIZE, MAX_STEPS};
use sumi_engine::sampling::{SAMPLERS, SCHEDULES};
use ts_rs::TS;

/// Most images one comparison may have.
pub const MAX_COMPARE_CELLS: usize = 16;

/// Most images one press of Generate may queue.
pub const MAX_BATCH: u32 = 100;

/// The limits a request must keep.
#[derive(Debug, Clone, Serialize, PartialEq, TS)]
#[serde(rename_all = "camelCase")]
pub struct Limits {
    /// Largest step count.
    pub max_steps: u32,
    /// Largest width or height in pixels.
    pub max_size: u32,
    /// Largest CFG scale.
    pub max_cfg: f64,
    /// Most images in one comparison.
    #[ts(type = "number")]
    pub max_compare_cells: usize,
    /// Most images one press of Generate queues.
    pub max_batch: u32,
}

/// A sampler as a list shows it.
#[derive(Debug, Clone, Serialize, PartialEq, TS)]
pub struct SamplerView {
    /// A1111's display name.
    pub name: String,
    /// ComfyUI's id.
    pub id: String,
    /// Model calls per step.
    #[ts(type = "number")]
    pub evals: usize,
    /// Whether it draws fresh noise at each step.
    pub stochastic: bool,
}

/// The sampler and schedule names and the limits.
#[derive(Debug, Clone, Serialize, PartialEq, TS)]
pub struct Tables {
    /// Samplers in the engine's order.
    pub samplers: Vec<SamplerView>,
    /// Schedule names in the engine's order.
    pub schedules: Vec<String>,
    /// The limits every request keeps.
    pub limits: Limits,
}

/// The engine's tables and the limits.
pub fn tables() -> Tables {
    Tables {
        samplers: SAMPLERS
            .iter()
            .map(|s| SamplerView {
                name: s.name.into(),
                id: s.id.into(),
                evals: s.evals_per_step,
                stochastic: s.stochastic,
            })
            .collect(),
        schedules: SCHEDULES.iter().map(|s| s.name.to_string()).collect(),
        limits: Limits {
            max_steps: MAX_STEPS,
            max_size: MAX_SIZE,
            max_cfg: MAX_CFG,
            max_compare_cells: MAX_COMPARE_CELLS,
            max_batch: MAX_BATCH,
        },
    }
}
