//! Sumi's desktop shell: Tauri commands over one generation worker and the gallery.

pub mod commands;
pub mod convert;
pub mod protocol;
pub mod worker;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use sumi_gallery::Gallery;
use tauri::ipc::{Channel, InvokeResponseBody};
use tauri::Manager;

use worker::{Sink, Worker, WorkerEvent};

/// The page's two channels, once it has subscribed.
type Channels = Option<(Channel<WorkerEvent>, Channel<InvokeResponseBody>)>;

/// State every command can reach.
pub struct AppState {
    /// The generation worker.
    pub worker: Worker,
    /// The gallery (shared with the worker and the image protocol).
    pub gallery: commands::SharedGallery,
    /// Models added by hand (or named by `SUMI_MODEL`) this session.
    pub known_models: Mutex<Vec<String>>,
    /// The built-in demo model's folder, when it is installed.
    pub demo_model: Mutex<Option<PathBuf>>,
    /// Where events go.
    pub channels: Arc<Mutex<Channels>>,
}

/// Forwards worker reports to whatever channels the page registered.
struct ChannelSink(Arc<Mutex<Channels>>);

impl Sink for ChannelSink {
    fn event(&self, event: WorkerEvent) {
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

/// Starts the app.
pub fn run() -> anyhow::Result<()> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .try_init();
    let home = home()?;
    let gallery = Gallery::open(&home)
        .with_context(|| format!("cannot open the gallery in {}", home.display()))?;
    let gallery = Arc::new(Mutex::new(gallery));
    let channels: Arc<Mutex<Channels>> = Arc::new(Mutex::new(None));
    let worker = Worker::start(gallery.clone(), Arc::new(ChannelSink(channels.clone())));
    let mut known = Vec::new();
    if let Some(spec) = std::env::var("SUMI_MODEL")
        .ok()
        .filter(|s| !s.trim().is_empty())
    {
        match sumi_engine::model::resolve(spec.trim()) {
            Ok(dir) => {
                known.push(dir.display().to_string());
                worker.load(dir);
            }
            Err(e) => tracing::warn!("SUMI_MODEL={spec}: {e}"),
        }
    }
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
            demo_model: Mutex::new(None),
            channels,
        })
        .setup(|app| {
            // A bundled app carries the demo model among its resources; a source build finds it
            // through the engine's own search.
            let bundled = app
                .path()
                .resource_dir()
                .ok()
                .map(|d| d.join("demo-model"))
                .filter(|d| d.join("model_index.json").is_file());
            let demo = bundled.or_else(|| sumi_engine::model::builtin_demo_model().ok());
            *app.state::<AppState>().demo_model.lock().unwrap() = demo;
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
            commands::set_favourite,
            commands::delete_image,
            commands::rerun,
            commands::same_pixels,
            commands::import_images,
            commands::comparison_group,
            commands::export_grid,
            commands::show_in_folder,
        ])
        .run(tauri::generate_context!())
        .context("the app stopped with an error")
}
