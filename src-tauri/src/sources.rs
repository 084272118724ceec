//! Tauri commands that keep the pictures an img2img request starts from in the gallery's
//! content-addressed `sources/` folder, so the request can name them by hash.

use serde::Serialize;
use sumi_engine::imaging::decode_image;
use sumi_engine::pipeline::MAX_SIZE;
use tauri::State;
use ts_rs::TS;

use crate::commands::{CommandError, Res};
use crate::AppState;

/// A kept picture: the name a request uses for it, its size, and the gallery image it is.
#[derive(Debug, Serialize, TS)]
pub struct SourceInfo {
    /// SHA-256 of the picture's bytes (`Img2Img::init_image` / `mask`).
    pub name: String,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// The gallery image it is, if it is one.
    #[ts(type = "number | null")]
    pub made_from: Option<i64>,
}

/// Keeps `bytes` (a PNG, JPEG or WebP picture, checked) and says how a request names it.
fn keep(state: &AppState, bytes: &[u8], made_from: Option<i64>) -> Res<SourceInfo> {
    let img = decode_image(bytes, "picture", MAX_SIZE)?;
    let name = state.gallery.lock().unwrap().store_source(bytes)?;
    Ok(SourceInfo {
        name,
        width: img.width(),
        height: img.height(),
        made_from,
    })
}

/// Keeps a picture the page read from a file, a drop or the clipboard (an init image or a
/// painted mask).
#[tauri::command]
pub fn add_source(state: State<'_, AppState>, data: Vec<u8>) -> Res<SourceInfo> {
    if data.is_empty() {
        return Err(CommandError::Invalid("The picture is empty.".into()));
    }
    keep(&state, &data, None)
}

/// Keeps gallery image `id` as an init image ("Use as init image").
#[tauri::command]
pub fn source_from_gallery(state: State<'_, AppState>, id: i64) -> Res<SourceInfo> {
    let bytes = {
        let g = state.gallery.lock().unwrap();
        let path = g.image_path(&g.get(id)?);
        sumi_gallery::read_regular_file(&path)?
    };
    keep(&state, &bytes, Some(id))
}
