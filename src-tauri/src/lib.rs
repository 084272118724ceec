//! Sumi's desktop shell: Tauri commands over one generation worker and the gallery.

#[cfg(test)]
mod bindings;
pub mod commands;
pub mod prompting;
pub mod protocol;
pub mod settings;
pub mod sources;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use sumi_gallery::Gallery;
use tauri::ipc::{Channel, InvokeResponseBody};
use tauri::Manager;

use settings::{SettingsFile, StartupModel};
use sumi_runtime::worker::{Sink, Worker, WorkerEvent};

/// The page's two channels, once it has subscribed.
type Channels = Option<(Channel<WorkerEvent>, Channel<InvokeResponseBody>)>;

/// State every command can reach.
pub struct AppState {
    /// The generation worker.
    pub worker: Worker,
    /// The gallery (shared with the worker and the image protocol).
    pub gallery: commands::SharedGallery,
    /// Models added by hand (in this or earlier sessions) or named by `SUMI_MODEL`.
    pub known_models: Mutex<Vec<String>>,
    /// What the app remembers between runs.
    pub settings: Arc<Mutex<SettingsFile>>,
    /// The built-in demo model's folder, when it is installed.
    pub demo_model: Mutex<Option<PathBuf>>,
    /// Where events go.
    pub channels: Arc<Mutex<Channels>>,
}

/// Forwards worker reports to whatever channels the page registered, and remembers each model
/// that loads.
struct ChannelSink(Arc<Mutex<Channels>>, Arc<Mutex<SettingsFile>>);

impl Sink for ChannelSink {
    fn event(&self, event: WorkerEvent) {
        if let WorkerEvent::ModelLoaded { model } = &event {
            self.1.lock().unwrap().model_loaded(&model.path);
        }
        if let Some((events, _)) = &*self.0.lock().unwrap() {
            let _ = events.send(event);
        }
    }

    fn preview(&self, job: u64, step: usize, png: Vec<u8>) {
        if let Some((_, previews)) = &*self.0.lock().unwrap() {
            // 8-byte header (job, step as little-endian u32) then the PNG.
            let mut bytes = Vec::with_capacity(png.len() + 8);
            bytes.extend_from_slice(&(job as u32).to_le_bytes());
            bytes.extend_from_slice(&(step as u32).to_le_bytes());
            bytes.extend_from_slice(&png);
            let _ = previews.send(InvokeResponseBody::Raw(bytes));
        }
    }
}

/// The data folder: `SUMI_HOME` if set, else the platform's data folder for Sumi.
fn home() -> anyhow::Result<PathBuf> {
    sumi_gallery::default_home().context("cannot find a folder for Sumi's data")
}

/// The built-in demo model's folder: the one `SUMI_DEMO_MODEL` names when it is set, else the
/// copy among the bundle's resources, else the hub's search (next to the binary, the source
/// tree), which is what a build from source finds.
fn demo_model<R: tauri::Runtime>(app: &tauri::App<R>) -> Option<PathBuf> {
    use sumi_hub::{builtin_demo_model, DEMO_MODEL_ENV};
    let overridden = std::env::var_os(DEMO_MODEL_ENV).is_some_and(|v| !v.is_empty());
    let bundled = if overridden {
        None
    } else {
        app.path()
            .resource_dir()
            .ok()
            .map(|d| d.join("demo-model"))
            .filter(|d| d.join("model_index.json").is_file())
    };
    bundled.or_else(|| {
        builtin_demo_model()
            .inspect_err(|e| tracing::warn!("{e}"))
            .ok()
    })
}

/// Starts the app.
pub fn run() -> anyhow::Result<()> {
    // As the CLI: warnings by default, SUMI_LOG (or RUST_LOG) for more.
    let filter = tracing_subscriber::EnvFilter::try_from_env("SUMI_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .try_init();
    sumi_engine::alloc::keep_freed_memory();
    let home = home()?;
    let gallery = Gallery::open(&home)
        .with_context(|| format!("cannot open the gallery in {}", home.display()))?;
    let gallery = Arc::new(Mutex::new(gallery));
    let settings = Arc::new(Mutex::new(SettingsFile::open(&home)));
    let channels: Arc<Mutex<Channels>> = Arc::new(Mutex::new(None));
    let sink = ChannelSink(channels.clone(), settings.clone());
    let worker = Worker::start(gallery.clone(), Arc::new(sink));
    // Models added in earlier sessions, less the ones that have since been moved or deleted.
    let known: Vec<String> = (settings.lock().unwrap().get().added_models.iter())
        .filter(|p| std::path::Path::new(p).exists())
        .cloned()
        .collect();
    let named = std::env::var("SUMI_MODEL").ok();
    let protocol_gallery = gallery.clone();
    tauri::Builder::default()
        .register_asynchronous_uri_scheme_protocol("sumi", move |_ctx, request, responder| {
            let gallery = protocol_gallery.clone();
            let path = request.uri().path().to_string();
            std::thread::spawn(move || {
                let (status, mime, body) = protocol::respond(&gallery.lock().unwrap(), &path);
                let response = tauri::http::Response::builder()
                    .status(status)
                    .header("Content-Type", mime)
                    .header("Cache-Control", "no-store")
                    .body(body)
                    .expect("static headers are valid");
                responder.respond(response);
            });
        })
        .manage(AppState {
            worker,
            gallery,
            known_models: Mutex::new(known),
            settings: settings.clone(),
            demo_model: Mutex::new(None),
            channels,
        })
        .setup(move |app| {
            let demo = demo_model(app);
            let state = app.state::<AppState>();
            *state.demo_model.lock().unwrap() = demo.clone();
            let remembered = settings.lock().unwrap().get().last_model.clone();
            match settings::startup_model(named.as_deref(), remembered.as_deref(), demo.as_deref())
            {
                Some(StartupModel::Named(spec)) => match sumi_hub::resolve(&spec) {
                    Ok(dir) => {
                        let shown = dir.display().to_string();
                        let mut known = state.known_models.lock().unwrap();
                        if !known.contains(&shown) {
                            known.push(shown);
                        }
                        state.worker.load(dir);
                    }
                    Err(e) => {
                        tracing::warn!("SUMI_MODEL={spec}: {e}");
                        state.worker.fail_load(format!("SUMI_MODEL={spec}: {e}"));
                    }
                },
                Some(StartupModel::Remembered(dir)) => {
                    tracing::info!("loading the last model used, {}", dir.display());
                    let shown = dir.display().to_string();
                    let mut known = state.known_models.lock().unwrap();
                    if !known.contains(&shown) && demo.as_ref() != Some(&dir) {
                        known.push(shown);
                    }
                    state.worker.load(dir);
                }
                Some(StartupModel::Demo(dir)) => {
                    tracing::info!("loading the built-in demo model from {}", dir.display());
                    state.worker.load(dir);
                }
                None => tracing::warn!("no model named and the demo model is missing"),
            }
            if let Some(w) = app.get_webview_window("main") {
                let _ = w.set_title(&format!("Sumi {}", sumi_engine::VERSION));
            }
            Ok(())
        })
        .invoke_handler(tauri::generate_handler![
            commands::subscribe,
            commands::tables,
            commands::models,
            commands::load_model,
            commands::generate,
            commands::compare,
            commands::cancel,
            commands::queue,
            commands::clear_queue,
            commands::gallery_list,
            commands::gallery_count,
            commands::gallery_get,
            commands::gallery_request,
            commands::set_favourite,
            commands::delete_image,
            commands::rerun,
            commands::same_pixels,
            commands::import_images,
            commands::comparison_group,
            commands::export_grid,
            commands::show_in_folder,
            prompting::loras,
            prompting::token_count,
            sources::add_source,
            sources::source_from_gallery,
        ])
        .run(tauri::generate_context!())
        .context("the app stopped with an error")
}
