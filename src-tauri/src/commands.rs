//! Tauri commands: validate, enqueue, read the gallery. Nothing here blocks on the engine.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use sumi_engine::{model, sampling, Request};
use sumi_gallery::{ComparisonSlot, Cursor, Filter, Gallery, Generation, Page};
use tauri::ipc::{Channel, InvokeResponseBody};
use tauri::State;

use crate::worker::{Job, ModelView, QueueItem, WorkerEvent};
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

/// What the model picker shows.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelsView {
    current: Option<ModelView>,
    loading: bool,
    known: Vec<String>,
}

/// The loaded model and the folders the picker offers.
#[tauri::command]
pub fn models(state: State<'_, AppState>) -> ModelsView {
    ModelsView {
        current: state.worker.model(),
        loading: state.worker.loading(),
        known: state.known_models.lock().unwrap().clone(),
    }
}

/// Starts loading a model folder (or a cached repo id); progress arrives as events.
#[tauri::command]
pub fn load_model(state: State<'_, AppState>, path: String) -> Res<()> {
    let spec = path.trim();
    if spec.is_empty() {
        return Err(CommandError::Invalid(
            "Type the path of a model folder first.".into(),
        ));
    }
    let dir = model::resolve(spec)?;
    {
        let mut known = state.known_models.lock().unwrap();
        let shown = dir.display().to_string();
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
            Queued { job, seed }
        })
        .collect())
}

/// One cell of a comparison.
#[derive(Debug, Clone, Deserialize)]
pub struct Variant {
    sampler: String,
    schedule: String,
}

/// A started comparison: its gallery group and jobs in grid order.
#[derive(Serialize)]
pub struct Comparison {
    group: i64,
    jobs: Vec<Queued>,
}

/// Runs one prompt and seed with several sampler/schedule pairs, saved as one group.
#[tauri::command]
pub fn compare(state: State<'_, AppState>, form: Form, variants: Vec<Variant>) -> Res<Comparison> {
    if variants.len() < 2 {
        return Err(CommandError::Invalid(
            "Pick at least two samplers to compare.".into(),
        ));
    }
    let seed = form.seed.unwrap_or_else(random_seed);
    let requests = variants
        .iter()
        .map(|v| {
            let f = Form {
                sampler: v.sampler.clone(),
                schedule: v.schedule.clone(),
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
            Queued { job, seed }
        })
        .collect();
    Ok(Comparison { group, jobs })
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
    let r = convert::request(&params);
    let seed = r.seed;
    let job = state.worker.enqueue(Job {
        request: r,
        comparison: None,
    });
    Ok(Queued { job, seed })
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
