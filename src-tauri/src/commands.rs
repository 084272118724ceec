//! Tauri commands: validate, enqueue, read the gallery. Nothing here blocks on the engine.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use sumi_gallery::{ComparisonSlot, Cursor, Filter, Gallery, Generation, Page};
use sumi_runtime::compare::{cells, Variant};
use sumi_runtime::form::GenerateForm;
use sumi_runtime::limits::Tables;
use sumi_runtime::model_files;
use sumi_runtime::rerun::{find_model, other_model_note};
use sumi_runtime::worker::{Job, LoadingView, ModelView, QueueItem, WorkerEvent};
use tauri::ipc::{Channel, InvokeResponseBody};
use tauri::State;
use ts_rs::TS;

use crate::AppState;

/// An error as the page shows it: one readable sentence.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The request is not acceptable.
    #[error("{0}")]
    Invalid(String),
    /// The engine refused something.
    #[error(transparent)]
    Engine(#[from] sumi_engine::Error),
    /// The gallery failed.
    #[error(transparent)]
    Gallery(#[from] sumi_gallery::GalleryError),
    /// The layer the app and the CLI share refused something.
    #[error(transparent)]
    Runtime(#[from] sumi_runtime::RuntimeError),
    /// Finding a model failed.
    #[error(transparent)]
    Hub(#[from] sumi_hub::HubError),
}

impl Serialize for CommandError {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

pub type Res<T> = Result<T, CommandError>;

/// The two channels the page listens on: JSON events and raw preview bytes.
#[tauri::command]
pub fn subscribe(
    state: State<'_, AppState>,
    events: Channel<WorkerEvent>,
    previews: Channel<InvokeResponseBody>,
) {
    *state.channels.lock().unwrap() = Some((events, previews));
}

/// The engine's sampler and schedule tables and the limits every request keeps.
#[tauri::command]
pub fn tables() -> Tables {
    sumi_runtime::limits::tables()
}

/// A model the picker offers.
#[derive(Debug, Serialize, PartialEq, TS)]
#[serde(rename_all = "camelCase")]
pub struct ModelEntry {
    /// Display name.
    pub name: String,
    /// File or folder to load.
    pub path: String,
    /// Family in words, when known.
    pub family: Option<String>,
    /// Bytes on disk.
    #[ts(type = "number")]
    pub size: u64,
    /// Where it came from: built-in, folder, a1111, comfyui, hf-cache or added.
    pub source: String,
    /// Why it cannot be loaded, if it cannot.
    pub unusable: Option<String>,
}

/// What the model picker shows.
#[derive(Serialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct ModelsView {
    current: Option<ModelView>,
    loading: Option<LoadingView>,
    /// Why the last load failed, if it did.
    error: Option<String>,
    known: Vec<String>,
    available: Vec<ModelEntry>,
}

/// Bytes of the files under `path` (a file or a folder, two levels deep at most).
fn size_on_disk(path: &std::path::Path, depth: u32) -> u64 {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => m.len(),
        Ok(m) if m.is_dir() && depth > 0 => std::fs::read_dir(path)
            .map(|rd| {
                rd.flatten()
                    .map(|e| size_on_disk(&e.path(), depth - 1))
                    .sum()
            })
            .unwrap_or(0),
        _ => 0,
    }
}

/// The models the picker lists: the built-in demo model, the ones found in `SUMI_MODEL_DIRS`
/// and the Hugging Face cache, then the ones added by hand.
pub fn available_models(demo: Option<&std::path::Path>, added: &[String]) -> Vec<ModelEntry> {
    use sumi_hub::discover::{self, Format};
    let family_of = |p: &std::path::Path| {
        sumi_engine::model::folder_family(p).map(|f| f.display_name().to_string())
    };
    let mut out: Vec<ModelEntry> = Vec::new();
    if let Some(dir) = demo {
        out.push(ModelEntry {
            name: "Demo model (built in)".into(),
            path: dir.display().to_string(),
            family: family_of(dir),
            size: size_on_disk(dir, 2),
            source: "built-in".into(),
            unusable: None,
        });
    }
    let found = discover::discover(
        &discover::env_model_dirs(),
        discover::hub_cache().as_deref(),
    );
    out.extend(found.into_iter().map(|f| ModelEntry {
        name: f.name,
        path: f.path.display().to_string(),
        family: f.family.map(|x| x.display_name().to_string()),
        size: f.size,
        source: f.source.to_string(),
        unusable: (f.format == Format::Pickle).then(|| {
            "a pickle checkpoint: Sumi never opens these; convert it to .safetensors first".into()
        }),
    }));
    for p in added {
        if out.iter().any(|e| &e.path == p) {
            continue;
        }
        let path = std::path::Path::new(p);
        out.push(ModelEntry {
            name: path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| p.clone()),
            path: p.clone(),
            family: if path.is_dir() { family_of(path) } else { None },
            size: size_on_disk(path, 2),
            source: "added".into(),
            unusable: None,
        });
    }
    out
}

/// The loaded model and the models the picker offers.
#[tauri::command]
pub fn models(state: State<'_, AppState>) -> ModelsView {
    let known = state.known_models.lock().unwrap().clone();
    let demo = state.demo_model.lock().unwrap().clone();
    ModelsView {
        current: state.worker.model(),
        loading: state.worker.loading(),
        error: state.worker.load_error(),
        available: available_models(demo.as_deref(), &known),
        known,
    }
}

/// Starts loading a model folder (or a cached repo id); progress arrives as events.
#[tauri::command]
pub fn load_model(state: State<'_, AppState>, path: String) -> Res<()> {
    let spec = path.trim();
    if spec.is_empty() {
        return Err(CommandError::Invalid(
            "Type the path of a model folder or .safetensors file first.".into(),
        ));
    }
    let dir = sumi_hub::resolve(spec)?;
    {
        let mut known = state.known_models.lock().unwrap();
        let shown = dir.display().to_string();
        state.settings.lock().unwrap().model_added(&shown);
        if !known.contains(&shown) {
            known.push(shown);
        }
    }
    state.worker.load(dir);
    Ok(())
}

/// A queued job and the seed it will use.
#[derive(Serialize, TS)]
pub struct Queued {
    #[ts(type = "number")]
    job: u64,
    #[ts(type = "number")]
    seed: u64,
    /// What the page should know about the job before it runs: the model a re-run loads, or
    /// why its pixels will differ.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    note: Option<String>,
}

/// The loaded model's size multiple, or the reason nothing can be generated yet.
fn downscale(state: &AppState) -> Res<u32> {
    state.worker.model().map(|m| m.downscale).ok_or_else(|| {
        CommandError::Invalid("No model is loaded: choose or add a model first.".into())
    })
}

/// Queues `form.batch` images (seeds counting up from the form's, or a random one).
#[tauri::command]
pub fn generate(state: State<'_, AppState>, form: GenerateForm) -> Res<Vec<Queued>> {
    let requests = form.batch(downscale(&state)?)?;
    Ok(requests
        .into_iter()
        .map(|r| {
            let seed = r.seed;
            let job = state.worker.enqueue(Job {
                model_files: None,
                made_from: form.made_from,
                request: r,
                comparison: None,
                model: None,
                lora_hashes: Vec::new(),
                ti_hashes: Vec::new(),
            });
            Queued {
                job,
                seed,
                note: None,
            }
        })
        .collect())
}

/// A started comparison: its gallery group and jobs in grid order.
#[derive(Serialize, TS)]
pub struct Comparison {
    #[ts(type = "number")]
    group: i64,
    jobs: Vec<Queued>,
}

/// Runs one prompt and seed with several settings (the cells), saved as one group.
#[tauri::command]
pub fn compare(
    state: State<'_, AppState>,
    form: GenerateForm,
    variants: Vec<Variant>,
) -> Res<Comparison> {
    let down = downscale(&state)?;
    let base = form.request(down)?;
    let requests = cells(&base, &variants)?;
    for r in &requests {
        r.validate(down)?;
    }
    let group = state.gallery.lock().unwrap().new_comparison_group()?;
    let jobs = requests
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            let job = state.worker.enqueue(Job {
                model_files: None,
                made_from: form.made_from,
                request: r,
                comparison: Some(ComparisonSlot {
                    group,
                    position: i as i64,
                }),
                model: None,
                lora_hashes: Vec::new(),
                ti_hashes: Vec::new(),
            });
            Queued {
                job,
                seed: base.seed,
                note: None,
            }
        })
        .collect();
    Ok(Comparison { group, jobs })
}

/// Writes a comparison group as one labelled PNG into the gallery's exports folder;
/// returns the file's path.
#[tauri::command]
pub fn export_grid(state: State<'_, AppState>, group: i64) -> Res<String> {
    let g = gallery(&state);
    let name = format!(
        "comparison-{group}-{}.png",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    );
    let path = g.exports_dir()?.join(name);
    g.export_grid(group, &path)?;
    Ok(path.display().to_string())
}

/// Opens the folder holding a gallery image, or (without `id`) the exports folder, in the
/// system's file manager. The page never names a path, so only the gallery's folders open.
#[tauri::command]
pub fn show_in_folder(state: State<'_, AppState>, id: Option<i64>) -> Res<()> {
    let (dir, file) = {
        let g = gallery(&state);
        match id {
            Some(id) => {
                let path = g.image_path(&g.get(id)?);
                (
                    path.parent().map(PathBuf::from).unwrap_or_default(),
                    Some(path),
                )
            }
            None => (g.exports_dir()?, None),
        }
    };
    reveal(&dir, file.as_deref())
        .map_err(|e| CommandError::Invalid(format!("Could not open {}: {e}", dir.display())))
}

/// Asks the platform's file manager to show `dir` (selecting `file` where it can).
fn reveal(dir: &std::path::Path, file: Option<&std::path::Path>) -> std::io::Result<()> {
    use std::process::Command;
    let mut cmd = if cfg!(target_os = "macos") {
        let mut c = Command::new("open");
        match file {
            Some(f) => c.arg("-R").arg(f),
            None => c.arg(dir),
        };
        c
    } else if cfg!(windows) {
        let mut c = Command::new("explorer");
        match file {
            Some(f) => c.arg(format!("/select,{}", f.display())),
            None => c.arg(dir),
        };
        c
    } else {
        let mut c = Command::new("xdg-open");
        c.arg(dir);
        c
    };
    // Reap the launcher in the background; the file manager keeps running on its own.
    let mut child = cmd.spawn()?;
    std::thread::spawn(move || child.wait());
    Ok(())
}

/// Stops the running job.
#[tauri::command]
pub fn cancel(state: State<'_, AppState>) {
    state.worker.cancel();
}

/// The running and pending jobs.
#[tauri::command]
pub fn queue(state: State<'_, AppState>) -> Vec<QueueItem> {
    state.worker.queue()
}

/// Drops the pending jobs; returns how many.
#[tauri::command]
pub fn clear_queue(state: State<'_, AppState>) -> usize {
    state.worker.clear()
}

fn gallery(state: &AppState) -> std::sync::MutexGuard<'_, Gallery> {
    state.gallery.lock().unwrap()
}

/// One page of the gallery, newest first; `query` searches prompts.
#[tauri::command]
pub fn gallery_list(
    state: State<'_, AppState>,
    query: Option<String>,
    favourites_only: bool,
    cursor: Option<Cursor>,
    limit: Option<usize>,
) -> Res<Page> {
    let filter = Filter {
        favourites_only,
        ..Filter::default()
    };
    let limit = limit.unwrap_or(200).clamp(1, 1000);
    let g = gallery(&state);
    Ok(match query.as_deref().map(str::trim) {
        Some(q) if !q.is_empty() => g.search(q, &filter, cursor, limit)?,
        _ => g.list(&filter, cursor, limit)?,
    })
}

/// How many images match (for the grid's scroll height).
#[tauri::command]
pub fn gallery_count(state: State<'_, AppState>, favourites_only: bool) -> Res<u64> {
    let filter = Filter {
        favourites_only,
        ..Filter::default()
    };
    Ok(gallery(&state).count(&filter)?)
}

/// One gallery entry.
#[tauri::command]
pub fn gallery_get(state: State<'_, AppState>, id: i64) -> Res<Generation> {
    Ok(gallery(&state).get(id)?)
}

/// The request that makes a gallery image again (what "use these settings" fills the form with).
#[tauri::command]
pub fn gallery_request(state: State<'_, AppState>, id: i64) -> Res<sumi_engine::Request> {
    Ok(sumi_runtime::record::request(
        &gallery(&state).get(id)?.params,
    ))
}

/// Marks or unmarks a favourite.
#[tauri::command]
pub fn set_favourite(state: State<'_, AppState>, id: i64, favourite: bool) -> Res<()> {
    Ok(gallery(&state).set_favourite(id, favourite)?)
}

/// Deletes an image and its files.
#[tauri::command]
pub fn delete_image(state: State<'_, AppState>, id: i64) -> Res<()> {
    Ok(gallery(&state).delete(id)?)
}

/// Queues the exact settings of a gallery image again, on the model that made it when Sumi
/// finds it (loading it first, and saying so), else on the loaded model with a note that the
/// pixels will differ.
#[tauri::command]
pub async fn rerun(state: State<'_, AppState>, id: i64) -> Res<Queued> {
    let g = gallery(&state).get(id)?;
    let known: Vec<PathBuf> = state
        .known_models
        .lock()
        .unwrap()
        .iter()
        .map(PathBuf::from)
        .collect();
    let home = gallery(&state).home().to_path_buf();
    let params = g.params.clone();
    let recorded = g.model_files.clone();
    let known = [model_files::recorded_model(recorded.as_ref()), known].concat();
    // Looking by hash may read whole checkpoints the first time: not on the page's thread.
    let found = tauri::async_runtime::spawn_blocking(move || {
        let path = find_model(&params, &known, &home, &mut |line| tracing::info!("{line}"))?;
        // Sumi's own images record their files; another tool's name their parts.
        let mut notes = Vec::new();
        let files = recorded.or_else(|| {
            let note = &mut |line: &str| notes.push(line.to_string());
            sumi_runtime::named_parts::from_names(&params, &path, note)
        });
        Ok::<_, sumi_runtime::RuntimeError>((path, files, notes))
    })
    .await
    .map_err(|e| CommandError::Invalid(format!("The search for the model failed: {e}")))?;
    let loaded = state.worker.model();
    let mut files = g.model_files.clone();
    let (model, note) = match found {
        Ok((path, found_files, notes)) => {
            files = found_files;
            let is_loaded = loaded
                .as_ref()
                .is_some_and(|m| g.params.made_with(&m.name, m.hash.as_deref()));
            let loading = match (is_loaded, state.worker.needs_load(&path, files.as_ref())) {
                (false, _) => Some(format!(
                    "Loading {}, the model that made #{id}, for this re-run.",
                    g.params.model_label()
                )),
                (true, true) => Some(format!(
                    "Loading {} again with the VAE or text encoders #{id} was made with, for \
                     this re-run.",
                    g.params.model_label()
                )),
                (true, false) => None,
            };
            let note = loading.into_iter().chain(notes).collect::<Vec<_>>();
            (Some(path), (!note.is_empty()).then(|| note.join(" ")))
        }
        Err(_) => {
            let Some(m) = loaded else {
                return Err(CommandError::Invalid(format!(
                    "No model is loaded, and {}, the model that made #{id}, is not among the \
                     models Sumi finds: add it in the model menu.",
                    g.params.model_label()
                )));
            };
            (
                None,
                other_model_note(&g.params, &m.name, m.hash.as_deref()),
            )
        }
    };
    let r = sumi_runtime::record::request(&g.params);
    let seed = r.seed;
    let job = state.worker.enqueue(Job {
        model_files: files,
        made_from: g.params.img2img.as_ref().and_then(|i| i.made_from),
        request: r,
        comparison: None,
        model,
        lora_hashes: g.params.lora_hashes.clone(),
        ti_hashes: g.params.ti_hashes.clone(),
    });
    Ok(Queued { job, seed, note })
}

/// Whether two gallery images have exactly the same pixels.
#[tauri::command]
pub fn same_pixels(state: State<'_, AppState>, a: i64, b: i64) -> Res<bool> {
    let g = gallery(&state);
    let read = |id: i64| -> Res<Vec<u8>> {
        let path = g.image_path(&g.get(id)?);
        let img = image::open(&path)
            .map_err(|e| CommandError::Invalid(format!("Cannot read {}: {e}", path.display())))?;
        Ok(img.to_rgb8().into_raw())
    };
    Ok(read(a)? == read(b)?)
}

/// Imports PNG files or folders of them, each image's note naming the settings the engine
/// cannot use as they are; returns how many were added and the failures.
#[tauri::command]
pub fn import_images(state: State<'_, AppState>, paths: Vec<PathBuf>) -> (usize, Vec<String>) {
    let report = sumi_runtime::import::import_paths(&gallery(&state), &paths);
    (
        report.imported.len(),
        report
            .failed
            .iter()
            .map(|(p, e)| format!("{}: {e}", p.display()))
            .collect(),
    )
}

/// The images of a comparison group in grid order.
#[tauri::command]
pub fn comparison_group(state: State<'_, AppState>, group: i64) -> Res<Vec<Generation>> {
    Ok(gallery(&state).comparison_group(group)?)
}

/// Shared handle type the worker and the protocol use.
pub type SharedGallery = Arc<Mutex<Gallery>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn available_models_lists_the_demo_and_added_models() {
        let demo = sumi_hub::builtin_demo_model().unwrap();
        let fixture = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/sd15");
        let added = vec![fixture.display().to_string(), demo.display().to_string()];
        let list = available_models(Some(&demo), &added);
        let first = &list[0];
        assert_eq!(first.source, "built-in");
        assert_eq!(first.family.as_deref(), Some("SD 1.x"));
        assert!(first.size > 10_000, "{}", first.size);
        let mine: Vec<&ModelEntry> = list.iter().filter(|e| e.source == "added").collect();
        assert_eq!(mine.len(), 1, "the demo is not listed twice");
        assert_eq!(mine[0].name, "sd15");
        assert!(mine[0].unusable.is_none());
    }
}
