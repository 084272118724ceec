//! Declares the app's commands so capabilities can allow exactly these and nothing else.

const COMMANDS: &[&str] = &[
    "subscribe",
    "tables",
    "models",
    "load_model",
    "generate",
    "compare",
    "cancel",
    "queue",
    "clear_queue",
    "gallery_list",
    "gallery_count",
    "gallery_get",
    "gallery_request",
    "set_favourite",
    "delete_image",
    "rerun",
    "same_pixels",
    "import_images",
    "comparison_group",
    "export_grid",
    "show_in_folder",
    "loras",
    "token_count",
    "add_source",
    "source_from_gallery",
];

fn main() {
    // A build that embeds the UI needs it built; say how instead of failing deep inside Tauri.
    // Read at run time: a build script compiled for another checkout sharing the target folder
    // would carry that checkout's path.
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let dist = std::path::Path::new(&manifest).join("../ui/dist/index.html");
    if std::env::var_os("CARGO_FEATURE_CUSTOM_PROTOCOL").is_some() && !dist.exists() {
        panic!("the UI is not built: run `npm ci && npm run build` in ui/ first");
    }
    tauri_build::try_build(
        tauri_build::Attributes::new()
            .app_manifest(tauri_build::AppManifest::new().commands(COMMANDS)),
    )
    .expect("tauri build script");
}
