//! No silent overwrites and no lost images: `--output` refuses an existing file without
//! `--force` and the gallery's own files always; several `sumi` processes share one gallery.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn sumi(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sumi"))
        .arg("--home")
        .arg(home)
        .args(args)
        .output()
        .expect("sumi runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `sumi generate` on the tiny SD 1.5 fixture, one step, with extra arguments.
fn generate(home: &Path, seed: u32, extra: &[&str]) -> Output {
    let model = fixtures().join("sd15");
    let seed = seed.to_string();
    let mut args = vec![
        "generate",
        "--model",
        model.to_str().unwrap(),
        "--prompt",
        "a red circle",
        "--seed",
        &seed,
        "--steps",
        "1",
    ];
    args.extend(extra);
    sumi(home, &args)
}

#[test]
fn an_existing_output_is_refused_before_any_work_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let out = dir.path().join("mine.png");
    std::fs::write(&out, b"my own file").unwrap();
    let o = generate(&home, 1, &["--output", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    let err = text(&o.stderr);
    assert!(err.contains("already exists; pass --force"), "{err}");
    assert!(
        !err.contains("loading"),
        "refused before the model loads: {err}"
    );
    assert_eq!(std::fs::read(&out).unwrap(), b"my own file");
    assert!(!home.join("gallery.db").exists(), "nothing was saved");

    let o = generate(&home, 1, &["--output", out.to_str().unwrap(), "--force"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        image::open(&out).is_ok(),
        "--force replaced it with the image"
    );
}

#[test]
fn the_gallerys_own_files_are_never_written_even_with_force() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let o = generate(&home, 2, &[]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let listed = sumi(&home, &["gallery", "list", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    let file = home
        .join("images")
        .join(json["items"][0]["image_file"].as_str().unwrap());
    let before = std::fs::read(&file).unwrap();
    let db = home.join("gallery.db");
    let link = dir.path().join("link.png");
    #[cfg(unix)]
    std::os::unix::fs::symlink(&file, &link).unwrap();

    let mut targets = vec![db.clone(), file.clone(), home.join("thumbs/new.jpg")];
    if cfg!(unix) {
        targets.push(link.clone());
    }
    for target in &targets {
        let t = target.to_str().unwrap();
        let o = generate(&home, 3, &["--output", t, "--force"]);
        assert_eq!(o.status.code(), Some(1), "generate --output {t}");
        assert!(
            text(&o.stderr).contains("one of the gallery's own files"),
            "{t}: {}",
            text(&o.stderr)
        );
        for cmd in [
            vec!["gallery", "export", "1", "--output", t, "--force"],
            vec!["gallery", "export-grid", "1", "--output", t, "--force"],
        ] {
            let o = sumi(&home, &cmd);
            assert_eq!(o.status.code(), Some(1), "{cmd:?}");
            assert!(
                text(&o.stderr).contains("one of the gallery's own files"),
                "{cmd:?}: {}",
                text(&o.stderr)
            );
        }
    }
    assert_eq!(
        std::fs::read(&file).unwrap(),
        before,
        "the image is untouched"
    );
    let list = sumi(&home, &["gallery", "list"]);
    assert!(list.status.success(), "the database still works");
}

#[test]
fn parallel_generations_on_one_gallery_all_land() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let runs: Vec<_> = (0..4u32)
        .map(|p| {
            let home = home.clone();
            std::thread::spawn(move || {
                (0..3u32)
                    .map(|i| generate(&home, 100 + 10 * p + i, &[]))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let outputs: Vec<Output> = runs.into_iter().flat_map(|r| r.join().unwrap()).collect();
    for o in &outputs {
        assert!(o.status.success(), "{}", text(&o.stderr));
    }
    let listed = sumi(&home, &["gallery", "list", "--json", "--limit", "100"]);
    let json: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    let items = json["items"].as_array().unwrap();
    assert_eq!(items.len(), 12, "every successful run is listed");
    for item in items {
        let file = home
            .join("images")
            .join(item["image_file"].as_str().unwrap());
        assert!(image::open(&file).is_ok(), "{} decodes", file.display());
    }
    assert!(!home.join("unreadable").exists(), "nothing was moved aside");
}
