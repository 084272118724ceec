//! The generation worker: one thread that owns the loaded model and runs a queue of tasks.
//!
//! Commands only validate and enqueue; everything slow (loading a model, sampling, saving)
//! happens here, and progress goes out through a [`Sink`].

use std::collections::VecDeque;
use std::io::Cursor as IoCursor;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::Instant;

use image::RgbImage;
use serde::Serialize;
use sumi_engine::{Event, Model, Request};
use sumi_gallery::{ComparisonSlot, Gallery, ModelFiles, NamedHash};
use ts_rs::TS;

use crate::model_files;
use crate::networks::{self, LoraLibrary, NetworkDirs};
use crate::record;

/// What the worker reports; sent to the page as JSON.
#[derive(Debug, Clone, Serialize, PartialEq, TS)]
#[serde(
    tag = "kind",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum WorkerEvent {
    /// The pending list or the running task changed.
    Queue {
        /// Running task first (if any), then the pending ones in order.
        items: Vec<QueueItem>,
    },
    /// A model started loading.
    ModelLoading {
        /// Its folder.
        path: String,
    },
    /// Loading reached a new stage.
    ModelProgress {
        /// "config", "text encoder", "UNet" or "VAE".
        stage: String,
        /// Share of the weights read so far, 0 to 100.
        percent: u32,
    },
    /// A model is ready.
    ModelLoaded {
        /// What it is and its defaults.
        model: ModelView,
    },
    /// Loading failed; the previous model (if any) is gone.
    ModelFailed {
        /// Why, in words.
        message: String,
    },
    /// A job started sampling.
    Started {
        /// The job.
        #[ts(type = "number")]
        job: u64,
        /// Seed in use.
        #[ts(type = "number")]
        seed: u64,
        /// Steps it will take.
        #[ts(type = "number")]
        total: usize,
    },
    /// A step finished; its preview follows as raw bytes.
    Step {
        /// The job.
        #[ts(type = "number")]
        job: u64,
        /// Zero-based step.
        #[ts(type = "number")]
        index: usize,
        /// Steps in the run.
        #[ts(type = "number")]
        total: usize,
        /// Steps per second so far.
        it_per_sec: f64,
        /// Estimated seconds left.
        eta_secs: f64,
    },
    /// The image is saved in the gallery.
    Finished {
        /// The job.
        #[ts(type = "number")]
        job: u64,
        /// Gallery id of the new image.
        #[ts(type = "number")]
        id: i64,
        /// Seed used.
        #[ts(type = "number")]
        seed: u64,
        /// Wall time in milliseconds.
        #[ts(type = "number")]
        elapsed_ms: u64,
        /// Comparison group, when the job was part of one.
        #[ts(type = "number | null")]
        group: Option<i64>,
    },
    /// The job was cancelled.
    Cancelled {
        /// The job.
        #[ts(type = "number")]
        job: u64,
    },
    /// The job failed.
    Failed {
        /// The job.
        #[ts(type = "number")]
        job: u64,
        /// Why, in words.
        message: String,
    },
}

/// A model load that is waiting or running, as the page sees it.
#[derive(Debug, Clone, Serialize, PartialEq, TS)]
#[serde(rename_all = "camelCase")]
pub struct LoadingView {
    /// The folder or file being loaded.
    pub path: String,
    /// The stage it reached ("config", "text encoder", "UNet", "VAE"); none before it starts.
    pub stage: Option<String>,
    /// Share of the weights read so far, 0 to 100.
    pub percent: u32,
}

/// A model as the page sees it.
#[derive(Debug, Clone, Serialize, PartialEq, TS)]
#[serde(rename_all = "camelCase")]
pub struct ModelView {
    /// Display name.
    pub name: String,
    /// A1111's short hash, for a single-file checkpoint.
    pub hash: Option<String>,
    /// Folder.
    pub path: String,
    /// `sd1`, `sd2`, `sdxl` or `flux`.
    pub family: String,
    /// Human-readable family.
    pub family_name: String,
    /// Few-step distilled model.
    pub turbo: bool,
    /// Sizes must be multiples of this.
    pub downscale: u32,
    /// Default steps.
    pub steps: u32,
    /// Default CFG.
    pub cfg: f64,
    /// Default sampler.
    pub sampler: String,
    /// Default schedule.
    pub schedule: String,
    /// Default width and height.
    pub size: u32,
    /// Clip skip the model recommends in its `sumi.json` (null: the prompt rules' default).
    pub clip_skip: Option<u32>,
    /// Default distilled guidance scale, for models that take one (Flux dev); null otherwise.
    pub guidance: Option<f64>,
}

impl ModelView {
    fn of(m: &Model) -> Self {
        let d = m.info.defaults();
        let family = serde_json::to_value(m.info.family)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        Self {
            name: m.info.name.clone(),
            hash: m.info.hash.clone(),
            path: m.info.path.display().to_string(),
            family,
            family_name: m.info.family.display_name().to_string(),
            turbo: m.info.turbo,
            downscale: m.info.size_multiple(),
            steps: d.steps,
            cfg: d.cfg,
            sampler: d.sampler.to_string(),
            schedule: d.schedule.to_string(),
            size: d.size,
            clip_skip: d.clip_skip,
            guidance: d.guidance,
        }
    }
}

/// One entry of the visible queue.
#[derive(Debug, Clone, Serialize, PartialEq, TS)]
#[serde(rename_all = "camelCase")]
pub struct QueueItem {
    /// Job id.
    #[ts(type = "number")]
    pub job: u64,
    /// Prompt (or the model path for a load).
    pub prompt: String,
    /// Seed.
    #[ts(type = "number")]
    pub seed: u64,
    /// Sampler.
    pub sampler: String,
    /// Schedule.
    pub schedule: String,
    /// Steps.
    pub steps: u32,
    /// Comparison group, if any.
    #[ts(type = "number | null")]
    pub group: Option<i64>,
    /// Whether it is running now.
    pub running: bool,
}

/// Where the worker's reports go (the Tauri channels in the app, a recorder in tests).
pub trait Sink: Send + Sync + 'static {
    /// A progress event.
    fn event(&self, event: WorkerEvent);
    /// A step's preview as PNG bytes.
    fn preview(&self, job: u64, step: usize, png: Vec<u8>);
}

/// A generation to run.
#[derive(Debug, Clone)]
pub struct Job {
    /// What to generate.
    pub request: Request,
    /// Slot in a comparison group.
    pub comparison: Option<ComparisonSlot>,
    /// The model to run it on, loaded first when another one is loaded (a re-run on the model
    /// that made an image); `None` runs on the loaded model.
    pub model: Option<PathBuf>,
    /// For a re-run: the LoRAs the image recorded, found by hash before name.
    pub lora_hashes: Vec<NamedHash>,
    /// For a re-run: the embeddings the image recorded, checked by name and hash.
    pub ti_hashes: Vec<NamedHash>,
    /// The gallery image an img2img request's init picture is, for the record's lineage.
    pub made_from: Option<i64>,
    /// For a re-run: where the image's model and its separate parts were loaded from, used
    /// when `model` has to be loaded.
    pub model_files: Option<ModelFiles>,
}

enum Task {
    Load(PathBuf),
    Generate(u64, Box<Job>),
}

#[derive(Default)]
struct State {
    pending: VecDeque<Task>,
    running: Option<QueueItem>,
    model: Option<ModelView>,
    /// The load the worker is running now.
    load: Option<LoadingView>,
    /// Why the last load failed, until another one starts.
    load_error: Option<String>,
    stop: bool,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    cancel: AtomicBool,
    gallery: Arc<Mutex<Gallery>>,
    sink: Arc<dyn Sink>,
    /// The loaded model: written by the worker thread only (loads, LoRA changes); read while
    /// generating and by token counts.
    model: RwLock<Option<Model>>,
    /// Where the loaded model's files are, recorded with each image it makes.
    files: Mutex<Option<ModelFiles>>,
}

/// Handle to the worker thread.
pub struct Worker {
    shared: Arc<Shared>,
    next_job: AtomicU64,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn item(job: u64, j: &Job, running: bool) -> QueueItem {
    QueueItem {
        job,
        prompt: j.request.prompt.clone(),
        seed: j.request.seed,
        sampler: j.request.sampler.clone(),
        schedule: j.request.schedule.clone(),
        steps: j.request.steps,
        group: j.comparison.map(|c| c.group),
        running,
    }
}

impl Worker {
    /// Starts the worker thread; it saves finished images into `gallery`.
    pub fn start(gallery: Arc<Mutex<Gallery>>, sink: Arc<dyn Sink>) -> Self {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
            cancel: AtomicBool::new(false),
            gallery,
            sink,
            model: RwLock::new(None),
            files: Mutex::new(None),
        });
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("sumi-worker".into())
            .spawn(move || run(&s))
            .expect("spawning the worker thread");
        Self {
            shared,
            next_job: AtomicU64::new(1),
            thread: Some(thread),
        }
    }

    /// Queues a model load ahead of pending generations.
    pub fn load(&self, path: PathBuf) {
        let mut st = self.shared.state.lock().unwrap();
        st.pending.push_front(Task::Load(path));
        self.shared.wake.notify_all();
    }

    /// Queues a generation; returns its job id.
    pub fn enqueue(&self, job: Job) -> u64 {
        let id = self.next_job.fetch_add(1, Ordering::Relaxed);
        {
            let mut st = self.shared.state.lock().unwrap();
            st.pending.push_back(Task::Generate(id, Box::new(job)));
            self.shared.wake.notify_all();
        }
        self.publish_queue();
        id
    }

    /// Asks the running job to stop at its next step.
    pub fn cancel(&self) {
        self.shared.cancel.store(true, Ordering::SeqCst);
    }

    /// Drops every pending generation (not the running one); returns how many.
    pub fn clear(&self) -> usize {
        let removed = {
            let mut st = self.shared.state.lock().unwrap();
            let before = st.pending.len();
            st.pending.retain(|t| matches!(t, Task::Load(_)));
            before - st.pending.len()
        };
        self.publish_queue();
        removed
    }

    /// The running job and the pending ones.
    pub fn queue(&self) -> Vec<QueueItem> {
        queue_items(&self.shared.state.lock().unwrap())
    }

    /// `text`'s length in tokens as the loaded model's first text encoder reads it under
    /// `opts`' rules (embeddings from Sumi's folders count their vectors); `None` while no model
    /// is loaded or one is loading.
    pub fn token_count(
        &self,
        text: &str,
        positive: bool,
        emphasis: sumi_engine::text::Emphasis,
        clip_skip: Option<u32>,
        steps: u32,
    ) -> crate::Result<Option<sumi_engine::text::TokenCount>> {
        let Ok(guard) = self.shared.model.try_read() else {
            return Ok(None);
        };
        let Some(model) = guard.as_ref() else {
            return Ok(None);
        };
        let home = self.shared.gallery.lock().unwrap().home().to_path_buf();
        let embeddings = NetworkDirs::with_defaults(&home, &[], &[]).embeddings()?;
        let opts = sumi_engine::text::EncodeOptions {
            emphasis,
            clip_skip,
            embeddings: &embeddings,
            steps: steps.max(1),
            max_sequence_length: None,
        };
        Ok(Some(model.text.token_count(text, positive, &opts)?))
    }

    /// The loaded model, if any.
    pub fn model(&self) -> Option<ModelView> {
        self.shared.state.lock().unwrap().model.clone()
    }

    /// Whether a re-run on the model at `path` with the parts `recorded` names will load it
    /// (as things stand now; the queue may change them before it runs).
    pub fn needs_load(&self, path: &std::path::Path, recorded: Option<&ModelFiles>) -> bool {
        needs_load(&self.shared, path, recorded)
    }

    /// The model load that is running (with its stage) or waiting next, if any.
    pub fn loading(&self) -> Option<LoadingView> {
        let st = self.shared.state.lock().unwrap();
        st.load.clone().or_else(|| {
            st.pending.iter().find_map(|t| match t {
                Task::Load(p) => Some(LoadingView {
                    path: p.display().to_string(),
                    stage: None,
                    percent: 0,
                }),
                Task::Generate(..) => None,
            })
        })
    }

    /// Why the last model load failed, if it did and no other load started since.
    pub fn load_error(&self) -> Option<String> {
        self.shared.state.lock().unwrap().load_error.clone()
    }

    /// Records a load that failed before it reached the worker (a name that is no model), so
    /// the page shows why nothing is loaded.
    pub fn fail_load(&self, message: String) {
        self.shared.state.lock().unwrap().load_error = Some(message.clone());
        self.shared.sink.event(WorkerEvent::ModelFailed { message });
    }

    fn publish_queue(&self) {
        let items = self.queue();
        self.shared.sink.event(WorkerEvent::Queue { items });
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.shared.state.lock().unwrap().stop = true;
        self.shared.cancel.store(true, Ordering::SeqCst);
        self.shared.wake.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn queue_items(st: &State) -> Vec<QueueItem> {
    st.running
        .iter()
        .cloned()
        .chain(st.pending.iter().filter_map(|t| match t {
            Task::Generate(id, j) => Some(item(*id, j, false)),
            Task::Load(_) => None,
        }))
        .collect()
}

fn run(shared: &Shared) {
    // Kept between jobs, so that the LoRA files stay open and an unchanged set is not re-applied.
    let mut library = LoraLibrary::default();
    loop {
        let task = {
            let mut st = shared.state.lock().unwrap();
            loop {
                if st.stop {
                    return;
                }
                if let Some(t) = st.pending.pop_front() {
                    if let Task::Generate(id, j) = &t {
                        st.running = Some(item(*id, j, true));
                    }
                    break t;
                }
                st = shared.wake.wait(st).unwrap();
            }
        };
        match task {
            Task::Load(path) => load_task(shared, &path, None),
            Task::Generate(id, job) => {
                let items = queue_items(&shared.state.lock().unwrap());
                shared.sink.event(WorkerEvent::Queue { items });
                if let Some(path) = &job.model {
                    if needs_load(shared, path, job.model_files.as_ref()) {
                        load_task(shared, path, job.model_files.as_ref());
                    }
                }
                let event = generate(shared, &mut library, id, &job);
                shared.sink.event(event);
                let items = {
                    let mut st = shared.state.lock().unwrap();
                    st.running = None;
                    queue_items(&st)
                };
                shared.sink.event(WorkerEvent::Queue { items });
            }
        }
    }
}

/// Whether a job for the model at `path` with the parts `recorded` names has to load it first:
/// another model is loaded, or this one with other parts.
fn needs_load(shared: &Shared, path: &std::path::Path, recorded: Option<&ModelFiles>) -> bool {
    let loaded = shared
        .model
        .read()
        .unwrap()
        .as_ref()
        .is_some_and(|m| same_path(&m.info.path, path));
    let same_parts = recorded.is_none_or(|recorded| {
        let files = shared.files.lock().unwrap();
        model_files::has_parts(files.as_ref(), recorded, path)
    });
    !loaded || !same_parts
}

/// Whether two paths name the same file or folder.
fn same_path(a: &std::path::Path, b: &std::path::Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// Replaces the loaded model with the one at `path` (and the parts `recorded` names, for a
/// re-run), reporting the load as it goes.
fn load_task(shared: &Shared, path: &std::path::Path, recorded: Option<&ModelFiles>) {
    let shown = path.display().to_string();
    {
        let mut st = shared.state.lock().unwrap();
        st.load = Some(LoadingView {
            path: shown.clone(),
            stage: None,
            percent: 0,
        });
        st.load_error = None;
    }
    shared.sink.event(WorkerEvent::ModelLoading { path: shown });
    *shared.model.write().unwrap() = None; // free the old weights before reading new ones
    *shared.files.lock().unwrap() = None;
    sumi_engine::alloc::release_free();
    let loaded = load(path, shared, recorded);
    let mut st = shared.state.lock().unwrap();
    st.load = None;
    match loaded {
        Ok((m, files)) => {
            *shared.files.lock().unwrap() = Some(files);
            let view = ModelView::of(&m);
            st.model = Some(view.clone());
            *shared.model.write().unwrap() = Some(m);
            drop(st);
            shared.sink.event(WorkerEvent::ModelLoaded { model: view });
        }
        Err(message) => {
            st.model = None;
            st.load_error = Some(message.clone());
            drop(st);
            shared.sink.event(WorkerEvent::ModelFailed { message });
        }
    }
}

/// The precision the app loads models in (`auto`, `f32`, `f16`, `bf16`), as `--dtype` for the
/// CLI; unset means `auto`.
pub const DTYPE_ENV: &str = "SUMI_DTYPE";

/// The environment variable that chooses which model parts the app loads only while used
/// (`none`, `encoders` or `sequential`, as `sumi generate --offload`).
pub const OFFLOAD_ENV: &str = "SUMI_OFFLOAD";

fn load(
    path: &std::path::Path,
    shared: &Shared,
    recorded: Option<&ModelFiles>,
) -> Result<(Model, ModelFiles), String> {
    let device = sumi_engine::device::pick("auto").map_err(|e| e.to_string())?;
    let dtype = match std::env::var(DTYPE_ENV) {
        Ok(name) => sumi_engine::device::pick_dtype(&name, &device)
            .map_err(|e| format!("{DTYPE_ENV}={name}: {e}"))?,
        Err(_) => sumi_engine::device::default_dtype(&device),
    };
    let mut progress = |stage: sumi_engine::model::LoadStage| {
        let percent = (stage.fraction * 100.0).round().clamp(0.0, 100.0) as u32;
        if let Some(l) = shared.state.lock().unwrap().load.as_mut() {
            l.stage = Some(stage.name.to_string());
            l.percent = percent;
        }
        shared.sink.event(WorkerEvent::ModelProgress {
            stage: stage.name.to_string(),
            percent,
        })
    };
    let offload = match std::env::var(OFFLOAD_ENV) {
        Ok(name) => name
            .parse()
            .map_err(|e| format!("{OFFLOAD_ENV}={name}: {e}"))?,
        Err(_) => Default::default(),
    };
    let home = shared.gallery.lock().unwrap().home().to_path_buf();
    let mut options = sumi_engine::model::LoadOptions {
        offload,
        ..Default::default()
    };
    if let Some(recorded) = recorded {
        model_files::fill_options(recorded, path, &mut options).map_err(|e| e.to_string())?;
    }
    let files = model_files::record(path, &options);
    crate::load::load_model(path, options, &device, dtype, &home, &mut progress)
        .map(|m| (m, files))
        .map_err(|e| format!("Could not load the model in {}: {e}", path.display()))
}

/// Encodes an RGB image as PNG bytes.
pub fn png_bytes(img: &RgbImage) -> Vec<u8> {
    let mut out = IoCursor::new(Vec::new());
    // Writing PNG into memory cannot fail for a valid RGB buffer.
    img.write_to(&mut out, image::ImageFormat::Png)
        .expect("PNG encoding into memory");
    out.into_inner()
}

/// The embeddings and LoRAs of Sumi's folders, applied to `model` for `spec`: the embeddings
/// and the LoRAs' record.
fn prepare(
    shared: &Shared,
    model: &mut Model,
    library: &mut LoraLibrary,
    spec: &Job,
) -> crate::Result<(sumi_engine::text::Embeddings, networks::AppliedLoras)> {
    spec.request.validate(model.info.size_multiple())?;
    let home = shared.gallery.lock().unwrap().home().to_path_buf();
    let dirs = NetworkDirs::with_defaults(&home, &[], &[]);
    let embeddings = dirs.embeddings()?;
    for note in networks::check_embeddings(
        &spec.ti_hashes,
        &embeddings,
        &[&spec.request.prompt, &spec.request.negative_prompt],
    )? {
        tracing::warn!("{note}");
    }
    match library.list().is_empty() {
        true => *library = LoraLibrary::scan(&dirs),
        false => library.rescan(),
    }
    let loras = library.apply(model, &spec.request.prompt, &spec.lora_hashes)?;
    for note in &loras.notes {
        tracing::warn!("{note}");
    }
    Ok((embeddings, loras))
}

fn generate(shared: &Shared, library: &mut LoraLibrary, job: u64, spec: &Job) -> WorkerEvent {
    shared.cancel.store(false, Ordering::SeqCst);
    let req = &spec.request;
    let failed = |message: String| WorkerEvent::Failed { job, message };
    // The pictures an img2img request names are in the gallery's sources/ folder.
    let sources = match crate::sources::from_gallery(&shared.gallery.lock().unwrap(), req) {
        Ok(s) => s,
        Err(e) => return failed(e.to_string()),
    };
    let prepared = match shared.model.write().unwrap().as_mut() {
        Some(m) => prepare(shared, m, library, spec),
        None => return failed("No model is loaded: choose a model first.".into()),
    };
    let (embeddings, loras) = match prepared {
        Ok(p) => p,
        Err(e) => return failed(e.to_string()),
    };
    // Only this thread writes the model: it is still there, as prepared.
    let guard = shared.model.read().unwrap();
    let Some(model) = guard.as_ref() else {
        return failed("No model is loaded: choose a model first.".into());
    };
    let inputs = sumi_engine::pipeline::GenerateInputs {
        embeddings: &embeddings,
        ..sources.inputs()
    };
    let started = Instant::now();
    let sink = &shared.sink;
    let result =
        sumi_engine::pipeline::generate_with(model, req, &inputs, &shared.cancel, &mut |event| {
            match event {
                Event::Started { total, seed } => {
                    sink.event(WorkerEvent::Started { job, seed, total })
                }
                Event::Step {
                    index,
                    total,
                    elapsed,
                    preview,
                    ..
                } => {
                    let secs = elapsed.as_secs_f64().max(1e-6);
                    let it_per_sec = (index + 1) as f64 / secs;
                    let eta_secs = (total - index - 1) as f64 / it_per_sec;
                    sink.event(WorkerEvent::Step {
                        job,
                        index,
                        total,
                        it_per_sec,
                        eta_secs,
                    });
                    if let Some(p) = preview {
                        sink.preview(job, index, png_bytes(&p));
                    }
                }
                _ => {}
            }
        });
    match result {
        Ok(generated) => {
            let image = generated.image;
            let elapsed = started.elapsed();
            let mut params = record::params(req, model);
            networks::record_hashes(&mut params, &generated.prompt, &loras);
            if let Some(i) = params.img2img.as_mut() {
                i.made_from = spec.made_from;
            }
            let meta = record::meta(model, elapsed, spec.comparison);
            let gallery = shared.gallery.lock().unwrap();
            let saved = gallery.add(&params, &meta, &image);
            if let (Ok(g), Some(files)) = (&saved, shared.files.lock().unwrap().as_ref()) {
                // Saved already; without this record a re-run only has to search for the model.
                if let Err(e) = gallery.set_model_files(g.id, files) {
                    tracing::warn!("could not record the model's files with #{}: {e}", g.id);
                }
            }
            drop(gallery);
            match saved {
                Ok(g) => WorkerEvent::Finished {
                    job,
                    id: g.id,
                    seed: req.seed,
                    elapsed_ms: elapsed.as_millis() as u64,
                    group: spec.comparison.map(|c| c.group),
                },
                Err(e) => WorkerEvent::Failed {
                    job,
                    message: format!("The image was made but could not be saved: {e}"),
                },
            }
        }
        Err(sumi_engine::Error::Cancelled) => WorkerEvent::Cancelled { job },
        Err(e) => WorkerEvent::Failed {
            job,
            message: e.to_string(),
        },
    }
}

#[cfg(test)]
mod tests;
