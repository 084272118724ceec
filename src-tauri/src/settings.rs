//! What the app remembers between runs, in `app-settings.json` in the data folder: the last
//! model that loaded (opened again at the next start) and the models added by hand (listed in
//! the picker).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// File name inside the data folder.
pub const FILE_NAME: &str = "app-settings.json";

/// The remembered values.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Settings {
    /// Folder of the last model that finished loading.
    pub last_model: Option<String>,
    /// Models added through the picker, oldest first.
    pub added_models: Vec<String>,
}

/// The settings and the file they live in.
#[derive(Debug)]
pub struct SettingsFile {
    path: PathBuf,
    settings: Settings,
}

impl SettingsFile {
    /// Reads the settings in `home`. A missing file gives the defaults; an unreadable or
    /// corrupt one too, with a warning, and is replaced at the next change.
    pub fn open(home: &Path) -> SettingsFile {
        let path = home.join(FILE_NAME);
        let settings = match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!("ignoring {}: {e}", path.display());
                Settings::default()
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Settings::default(),
            Err(e) => {
                tracing::warn!("cannot read {}: {e}", path.display());
                Settings::default()
            }
        };
        SettingsFile { path, settings }
    }

    /// The remembered values.
    pub fn get(&self) -> &Settings {
        &self.settings
    }

    /// Remembers `model` as the one to open at the next start.
    pub fn model_loaded(&mut self, model: &str) {
        if self.settings.last_model.as_deref() != Some(model) {
            self.settings.last_model = Some(model.to_string());
            self.save();
        }
    }

    /// Remembers a model added by hand.
    pub fn model_added(&mut self, model: &str) {
        if !self.settings.added_models.iter().any(|m| m == model) {
            self.settings.added_models.push(model.to_string());
            self.save();
        }
    }

    /// Writes the file whole (temp file, fsync, rename), so a crash leaves the old or the new
    /// one. Failing to remember is not worth an error on the page: it is logged.
    fn save(&self) {
        if let Err(e) = self.write() {
            tracing::warn!("cannot save {}: {e}", self.path.display());
        }
    }

    fn write(&self) -> std::io::Result<()> {
        let json = serde_json::to_vec_pretty(&self.settings).map_err(std::io::Error::other)?;
        let tmp = self.path.with_extension("json.tmp");
        let mut file = fs::File::create(&tmp)?;
        file.write_all(&json)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, &self.path)
    }
}

/// The model to load at start: the one `SUMI_MODEL` names, else the last one that loaded if
/// it still exists, else the built-in demo model.
pub fn startup_model(
    named: Option<&str>,
    remembered: Option<&str>,
    demo: Option<&Path>,
) -> Option<StartupModel> {
    if let Some(spec) = named.map(str::trim).filter(|s| !s.is_empty()) {
        return Some(StartupModel::Named(spec.to_string()));
    }
    if let Some(last) = remembered.filter(|p| Path::new(p).exists()) {
        return Some(StartupModel::Remembered(PathBuf::from(last)));
    }
    demo.map(|d| StartupModel::Demo(d.to_path_buf()))
}

/// Where the model loaded at start comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum StartupModel {
    /// `SUMI_MODEL` (a folder, file or repo id still to resolve).
    Named(String),
    /// The last model that loaded.
    Remembered(PathBuf),
    /// The built-in demo model.
    Demo(PathBuf),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_across_opens() {
        let home = tempfile::tempdir().unwrap();
        let mut file = SettingsFile::open(home.path());
        assert_eq!(file.get(), &Settings::default());
        file.model_added("/models/a");
        file.model_added("/models/b");
        file.model_added("/models/a");
        file.model_loaded("/models/b");
        let again = SettingsFile::open(home.path());
        assert_eq!(again.get().added_models, ["/models/a", "/models/b"]);
        assert_eq!(again.get().last_model.as_deref(), Some("/models/b"));
        assert!(!home.path().join("app-settings.json.tmp").exists());
    }

    #[test]
    fn a_corrupt_file_gives_defaults_and_is_replaced() {
        let home = tempfile::tempdir().unwrap();
        let path = home.path().join(FILE_NAME);
        fs::write(&path, b"{\"lastModel\": \"/x\", trunc").unwrap();
        let mut file = SettingsFile::open(home.path());
        assert_eq!(file.get(), &Settings::default());
        file.model_loaded("/models/c");
        let text = fs::read_to_string(&path).unwrap();
        let back: Settings = serde_json::from_str(&text).unwrap();
        assert_eq!(back.last_model.as_deref(), Some("/models/c"));
    }

    #[test]
    fn startup_prefers_named_then_remembered_then_demo() {
        let dir = tempfile::tempdir().unwrap();
        let here = dir.path().to_str().unwrap();
        let demo = Path::new("/demo");
        assert_eq!(
            startup_model(Some(" repo/id "), Some(here), Some(demo)),
            Some(StartupModel::Named("repo/id".into()))
        );
        assert_eq!(
            startup_model(Some("  "), Some(here), Some(demo)),
            Some(StartupModel::Remembered(dir.path().to_path_buf()))
        );
        assert_eq!(
            startup_model(None, Some("/no/such/model"), Some(demo)),
            Some(StartupModel::Demo(demo.to_path_buf()))
        );
        assert_eq!(startup_model(None, None, None), None);
    }
}
