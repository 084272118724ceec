//! Finding the built-in demo model (`assets/demo-model`), the default when the user names none.

use std::path::{Path, PathBuf};

use crate::{HubError, Result};

/// Environment variable that points at another demo model folder.
pub const DEMO_MODEL_ENV: &str = "SUMI_DEMO_MODEL";

/// The folder of the built-in demo model: `$SUMI_DEMO_MODEL`, else `assets/demo-model` next to
/// the executable (or one or two folders up, or in `../share/sumi/`), else the source tree's copy.
pub fn builtin_demo_model() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os(DEMO_MODEL_ENV).filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        return if is_model_dir(&p) {
            Ok(p)
        } else {
            Err(HubError::file(
                p,
                format!("{DEMO_MODEL_ENV} does not name a diffusers model folder"),
            ))
        };
    }
    let mut candidates = Vec::new();
    if let Some(exe_dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        candidates.push(exe_dir.join("assets/demo-model"));
        candidates.push(exe_dir.join("../assets/demo-model"));
        candidates.push(exe_dir.join("../../assets/demo-model"));
        candidates.push(exe_dir.join("../share/sumi/demo-model"));
    }
    candidates.push(PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../assets/demo-model"
    )));
    candidates
        .into_iter()
        .find(|p| is_model_dir(p))
        .ok_or_else(|| {
            HubError::file(
                "assets/demo-model",
                format!(
                    "the built-in demo model was not found; pass --model or set {DEMO_MODEL_ENV}"
                ),
            )
        })
}

fn is_model_dir(p: &Path) -> bool {
    p.join("model_index.json").is_file()
}
