//! Tauri commands: validate, enqueue, read the gallery. Nothing here blocks on the engine.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use sumi_engine::{model, sampling, Request};
use sumi_gallery::{ComparisonSlot, Cursor, Filter, Gallery, Generation, GenerationParams, Page};
use tauri::ipc::{Channel, InvokeResponseBody};
use tauri::State;

use crate::worker::{Job, LoadingView, ModelView, QueueItem, WorkerEvent};
use crate::{convert, AppState};

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
}

impl Serialize for CommandError {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

type Res<T> = Result<T, CommandError>;

/// The two channels the page listens on: JSON events and raw preview bytes.
#[tauri::command]
pub fn subscribe(
    state: State<'_, AppState>,
    events: Channel<WorkerEvent>,
    previews: Channel<InvokeResponseBody>,
) {
    *state.channels.lock().unwrap() = Some((events, previews));
}

/// A sampler as the page lists it.
#[derive(Serialize)]
pub struct SamplerView {
    name: &'static str,
    id: &'static str,
    evals: usize,
    stochastic: bool,
}

/// Sampler and schedule names, in the engine's order.
#[derive(Serialize)]
pub struct Tables {
    samplers: Vec<SamplerView>,
    schedules: Vec<&'static str>,
}

/// The engine's sampler and schedule tables.
#[tauri::command]
pub fn tables() -> Tables {
    Tables {
        samplers: sampling::SAMPLERS
            .iter()
            .map(|s| SamplerView {
                name: s.name,
                id: s.id,
                evals: s.evals_per_step,
                stochastic: s.stochastic,
            })
            .collect(),
        schedules: sampling::SCHEDULES.iter().map(|s| s.name).collect(),
    }
}

/// A model the picker offers.
#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ModelEntry {
    /// Display name.
    pub name: String,
    /// File or folder to load.
    pub path: String,
    /// Family in words, when known.
    pub family: Option<String>,
    /// Bytes on disk.
    pub size: u64,
    /// Where it came from: built-in, folder, a1111, comfyui, hf-cache or added.
    pub source: String,
    /// Why it cannot be loaded, if it cannot.
    pub unusable: Option<String>,
}

/// What the model picker shows.
#[derive(Serialize)]
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
    use model::discover::{self, Format};
    let family_of =
        |p: &std::path::Path| model::folder_family(p).map(|f| f.display_name().to_string());
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
    let dir = model::resolve(spec)?;
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

/// The generation form as the page sends it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Form {
    prompt: String,
    #[serde(default)]
    negative_prompt: String,
    /// None: a random seed.
    seed: Option<u64>,
    steps: u32,
    cfg: f64,
    sampler: String,
    schedule: String,
    width: u32,
    height: u32,
    #[serde(default = "one")]
    batch: u32,
}

fn one() -> u32 {
    1
}

/// A queued job and the seed it will use.
#[derive(Serialize)]
pub struct Queued {
    job: u64,
    seed: u64,
    /// Why a re-run will not give the same pixels, when that is known beforehand.
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<String>,
}

/// A random seed in the range every tool accepts.
fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish() & 0xFFFF_FFFF
}

fn request(state: &AppState, form: &Form, seed: u64) -> Res<Request> {
    let model = state.worker.model().ok_or_else(|| {
        CommandError::Invalid("No model is loaded: choose or add a model first.".into())
    })?;
    if form.prompt.trim().is_empty() {
        return Err(CommandError::Invalid("Write a prompt first.".into()));
    }
    let (sampler, legacy_schedule) = sampling::parse_sampler(&form.sampler)?;
    let schedule = match legacy_schedule {
        Some(s) => s.name.to_string(),
        None => sampling::schedule(&form.schedule)?.name.to_string(),
    };
    let r = Request {
        prompt: form.prompt.clone(),
        negative_prompt: form.negative_prompt.clone(),
        seed,
        steps: form.steps,
        cfg: form.cfg,
        sampler: sampler.name.to_string(),
        schedule,
        width: form.width,
        height: form.height,
        noise: Default::default(),
    };
    r.validate(model.downscale)?;
    Ok(r)
}

/// Queues `batch` images (seeds counting up from the form's, or a random one).
#[tauri::command]
pub fn generate(state: State<'_, AppState>, form: Form) -> Res<Vec<Queued>> {
    if form.batch == 0 || form.batch > 100 {
        return Err(CommandError::Invalid(
            "Batch count must be between 1 and 100.".into(),
        ));
    }
    let seed = form.seed.unwrap_or_else(random_seed);
    let requests = (0..form.batch)
        .map(|i| request(&state, &form, seed.wrapping_add(i as u64)))
        .collect::<Res<Vec<_>>>()?;
    Ok(requests
        .into_iter()
        .map(|r| {
            let seed = r.seed;
            let job = state.worker.enqueue(Job {
                request: r,
                comparison: None,
            });
            Queued {
                job,
                seed,
                note: None,
            }
        })
        .collect())
}

/// Most cells one comparison may have.
pub const MAX_CELLS: usize = 16;

/// One cell of a comparison: a sampler and schedule, and optionally other steps or CFG.
#[derive(Debug, Clone, Deserialize)]
pub struct Variant {
    sampler: String,
    schedule: String,
    #[serde(default)]
    steps: Option<u32>,
    #[serde(default)]
    cfg: Option<f64>,
}

/// A started comparison: its gallery group and jobs in grid order.
#[derive(Serialize)]
pub struct Comparison {
    group: i64,
    jobs: Vec<Queued>,
}

/// Runs one prompt and seed with several settings (the cells), saved as one group.
#[tauri::command]
pub fn compare(state: State<'_, AppState>, form: Form, variants: Vec<Variant>) -> Res<Comparison> {
    if variants.len() < 2 {
        return Err(CommandError::Invalid(
            "Pick at least two values to compare (two samplers, schedules, step counts or CFG values).".into(),
        ));
    }
    if variants.len() > MAX_CELLS {
        return Err(CommandError::Invalid(format!(
            "That makes {} images; a comparison holds at most {MAX_CELLS}. Pick fewer values.",
            variants.len()
        )));
    }
    let seed = form.seed.unwrap_or_else(random_seed);
    let requests = variants
        .iter()
        .map(|v| {
            let f = Form {
                sampler: v.sampler.clone(),
                schedule: v.schedule.clone(),
                steps: v.steps.unwrap_or(form.steps),
                cfg: v.cfg.unwrap_or(form.cfg),
                ..form.clone()
            };
            request(&state, &f, seed)
        })
        .collect::<Res<Vec<_>>>()?;
    let group = state.gallery.lock().unwrap().new_comparison_group()?;
    let jobs = requests
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            let job = state.worker.enqueue(Job {
                request: r,
                comparison: Some(ComparisonSlot {
                    group,
                    position: i as i64,
                }),
            });
            Queued {
                job,
                seed,
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

/// Queues the exact settings of a gallery image again.
#[tauri::command]
pub fn rerun(state: State<'_, AppState>, id: i64) -> Res<Queued> {
    if state.worker.model().is_none() {
        return Err(CommandError::Invalid(
            "No model is loaded: choose or add a model first.".into(),
        ));
    }
    let params = gallery(&state).rerun(id)?;
    let note = state
        .worker
        .model()
        .and_then(|m| other_model_note(&params, &m.name, m.hash.as_deref()));
    let r = convert::request(&params);
    let seed = r.seed;
    let job = state.worker.enqueue(Job {
        request: r,
        comparison: None,
    });
    Ok(Queued { job, seed, note })
}

/// Says so when the loaded model is not the one that made an image, since a re-run then gives
/// other pixels.
fn other_model_note(params: &GenerationParams, name: &str, hash: Option<&str>) -> Option<String> {
    (!params.made_with(name, hash)).then(|| {
        format!(
            "Made with {}; this re-run uses {name}, the loaded model, so its pixels will differ. \
             Load {} to make the image exactly.",
            params.model_label(),
            params.model_name
        )
    })
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

/// Imports PNG files or folders of them; returns how many were added and the failures.
#[tauri::command]
pub fn import_images(state: State<'_, AppState>, paths: Vec<PathBuf>) -> (usize, Vec<String>) {
    let report = gallery(&state).import_paths(&paths);
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
        let demo = model::builtin_demo_model().unwrap();
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

    #[test]
    fn a_rerun_with_another_model_says_so() {
        let mut params = GenerationParams {
            prompt: "a fox".into(),
            negative_prompt: String::new(),
            seed: 1,
            steps: 4,
            cfg: 7.0,
            sampler: "Euler".into(),
            schedule: "Normal".into(),
            width: 64,
            height: 64,
            model_name: "sd15".into(),
            model_hash: None,
            noise_source: "cpu".into(),
        };
        assert_eq!(other_model_note(&params, "sd15", None), None);
        let note = other_model_note(&params, "demo-model", None).unwrap();
        assert!(
            note.starts_with("Made with sd15; this re-run uses demo-model"),
            "{note}"
        );
        assert!(
            note.ends_with("Load sd15 to make the image exactly."),
            "{note}"
        );
        params.model_hash = Some("ab12cd34ef".into());
        assert_eq!(
            other_model_note(&params, "renamed", Some("ab12cd34ef")),
            None
        );
        let note = other_model_note(&params, "sd15", Some("0000000000")).unwrap();
        assert!(note.starts_with("Made with sd15 [ab12cd34ef]"), "{note}");
    }
}
