//! Commands that help write prompts: the LoRAs the page can insert, and a prompt's token count.

use serde::Serialize;
use sumi_engine::text::Emphasis;
use sumi_runtime::networks::NetworkDirs;
use tauri::State;
use ts_rs::TS;

use crate::commands::CommandError;
use crate::AppState;

/// A LoRA the page lists.
#[derive(Debug, Clone, Serialize, PartialEq, TS)]
#[serde(rename_all = "camelCase")]
pub struct LoraEntry {
    /// The name its tag uses (the file stem).
    pub name: String,
    /// The name it was trained as, when that differs.
    pub alias: Option<String>,
    /// Its format, e.g. "kohya LoRA".
    pub format: String,
    /// The family it fits, when its shapes tell.
    pub family: Option<String>,
    /// Its largest rank.
    pub rank: Option<u32>,
    /// Bytes on disk.
    #[ts(type = "number")]
    pub size: u64,
    /// Where it is.
    pub path: String,
    /// Why Sumi cannot use it, if it cannot.
    pub unusable: Option<String>,
}

/// The LoRAs in the loras folder of Sumi's home, `SUMI_LORA_DIRS` and the A1111/ComfyUI trees.
#[tauri::command]
pub fn loras(state: State<'_, AppState>) -> Vec<LoraEntry> {
    let home = state.gallery.lock().unwrap().home().to_path_buf();
    let dirs = NetworkDirs::with_defaults(&home, &[], &[]);
    sumi_hub::networks::find_loras(&dirs.loras)
        .into_iter()
        .map(|f| LoraEntry {
            name: f.name,
            alias: f.alias,
            format: f.format,
            family: f.family.map(|x| x.display_name().to_string()),
            rank: f.rank.map(|r| r as u32),
            size: f.size,
            path: f.path.display().to_string(),
            unusable: f.unusable,
        })
        .collect()
}

/// A prompt's length as A1111's counter shows it: `tokens/capacity` (75 per chunk).
#[derive(Debug, Clone, Copy, Serialize, PartialEq, TS)]
#[serde(rename_all = "camelCase")]
pub struct TokenCountView {
    /// Tokens the longest text of the prompt takes.
    pub tokens: u32,
    /// What its chunks hold (75 per chunk).
    pub capacity: u32,
}

/// `text`'s token count for the loaded model; `null` while no model is loaded or one loads.
#[tauri::command]
pub fn token_count(
    state: State<'_, AppState>,
    text: String,
    positive: bool,
    emphasis: Emphasis,
    clip_skip: Option<u32>,
    steps: u32,
) -> Result<Option<TokenCountView>, CommandError> {
    let count = state
        .worker
        .token_count(&text, positive, emphasis, clip_skip, steps)?;
    Ok(count.map(|c| TokenCountView {
        tokens: c.tokens as u32,
        capacity: c.capacity as u32,
    }))
}
