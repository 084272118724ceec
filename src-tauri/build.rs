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
    "set_favourite",
    "delete_image",
    "rerun",
    "same_pixels",
    "import_images",
    "comparison_group",
];

fn main() {
    tauri_build::try_build(
        tauri_build::Attributes::new()
            .app_manifest(tauri_build::AppManifest::new().commands(COMMANDS)),
    )
    .expect("tauri build script");
}
