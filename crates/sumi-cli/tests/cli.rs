//! The `sumi` binary end to end on the tiny fixture model.

mod common;

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

#[test]
fn generate_writes_png_previews_and_gallery_entry() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let out = dir.path().join("out.png");
    let previews = dir.path().join("previews");
    let model = fixtures().join("sd15");
    let o = sumi(
        &home,
        &[
            "generate",
            "--model",
            model.to_str().unwrap(),
            "--prompt",
            "a red circle",
            "--seed",
            "42",
            "--steps",
            "5",
            "--sampler",
            "Euler a",
            "--output",
            out.to_str().unwrap(),
            "--previews",
            previews.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    let img = image::open(&out).unwrap();
    assert_eq!((img.width(), img.height()), (64, 64));
    let frames = std::fs::read_dir(&previews).unwrap().count();
    assert_eq!(frames, 5);
    let png = std::fs::read(&out).unwrap();
    let needle =
        b"Steps: 5, Sampler: Euler a, Schedule type: Karras, CFG scale: 7, Seed: 42, Size: 64x64";
    assert!(
        png.windows(needle.len()).any(|w| w == needle),
        "A1111 parameters chunk present"
    );

    let listed = sumi(&home, &["gallery", "list", "--json"]);
    assert!(listed.status.success(), "{}", text(&listed.stderr));
    let json: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    let s = json.to_string();
    assert!(
        s.contains("a red circle") && s.contains("\"seed\":42"),
        "{s}"
    );

    // Same seed again, without saving: byte-identical pixels.
    let out2 = dir.path().join("out2.png");
    let o = sumi(
        &home,
        &[
            "generate",
            "--model",
            model.to_str().unwrap(),
            "--prompt",
            "a red circle",
            "--seed",
            "42",
            "--steps",
            "5",
            "--sampler",
            "Euler a",
            "--no-save",
            "--output",
            out2.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(image::open(&out2).unwrap().to_rgb8(), img.to_rgb8());
}

#[test]
fn random_seed_is_printed() {
    let dir = tempfile::tempdir().unwrap();
    let model = fixtures().join("sd15");
    let out = dir.path().join("o.png");
    let o = sumi(
        dir.path(),
        &[
            "generate",
            "--model",
            model.to_str().unwrap(),
            "-p",
            "x",
            "--steps",
            "1",
            "--no-save",
            "-o",
            out.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("seed: "), "{}", text(&o.stderr));
}

#[test]
fn bad_input_fails_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let model = fixtures().join("sd15");
    let m = model.to_str().unwrap();
    let cases: [(&[&str], &str); 6] = [
        (&["--steps", "0"], "steps 0 must be between 1 and 500"),
        (
            &["--width", "100"],
            "width 100 must be a positive multiple of 8",
        ),
        (
            &["--cfg", "-2"],
            "CFG scale -2 must be a number from 0 to 100",
        ),
        (&["--sampler", "nope"], "unknown sampler 'nope'"),
        (&["--seed", "18446744073709551616"], "is too large"),
        (&["--schedule", "zigzag"], "unknown schedule 'zigzag'"),
    ];
    for (extra, expected) in cases {
        let mut args = vec!["generate", "--model", m, "--prompt", "x", "--no-save"];
        args.extend_from_slice(extra);
        let o = sumi(dir.path(), &args);
        assert!(!o.status.success(), "{extra:?} should fail");
        let err = text(&o.stderr);
        assert!(err.contains(expected), "{extra:?}: {err}");
    }
    let o = sumi(
        dir.path(),
        &["generate", "--model", "/no/such/model", "--prompt", "x"],
    );
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("/no/such/model"),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn an_output_file_that_cannot_be_written_loses_no_image() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let model = fixtures().join("sd15");
    let gen = |out: &Path, extra: &[&str]| {
        let mut args = vec!["generate", "--model", model.to_str().unwrap()];
        args.extend_from_slice(&["--prompt", "x", "--steps", "2", "--seed", "9"]);
        args.extend_from_slice(&["--output", out.to_str().unwrap()]);
        args.extend_from_slice(extra);
        sumi(&home, &args)
    };
    // A missing folder, a folder for a file name, a file for the previews folder, a previews
    // folder that cannot be made: refused before the model loads.
    let file = dir.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    let out = dir.path().join("out.png");
    let mut cases = vec![
        (dir.path().join("missing/x.png"), "", "does not exist"),
        (dir.path().to_path_buf(), "", "is a folder"),
        (out.clone(), file.to_str().unwrap(), "that is a file"),
    ];
    if cfg!(target_os = "linux") {
        cases.push((out, "/proc/sumi-previews", "cannot create preview folder"));
    }
    for (out, extra, expected) in cases {
        let previews = ["--previews", extra];
        let o = gen(&out, if extra.is_empty() { &[] } else { &previews });
        assert!(!o.status.success());
        let err = text(&o.stderr);
        assert!(err.contains(expected) && !err.contains("loaded"), "{err}");
    }
    // A gallery that cannot be opened (its folder is a file): the image is in the --output file.
    let kept = dir.path().join("kept.png");
    let o = sumi(
        &file,
        &[
            "generate",
            "--model",
            model.to_str().unwrap(),
            "--prompt",
            "x",
            "--steps",
            "2",
            "--output",
            kept.to_str().unwrap(),
        ],
    );
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("the image is in"),
        "{}",
        text(&o.stderr)
    );
    assert!(image::open(&kept).is_ok());
    // A write that fails after the image is made: it is in the gallery all the same.
    if cfg!(target_os = "linux") {
        let o = gen(Path::new("/proc/sumi-test.png"), &[]);
        assert!(!o.status.success());
        assert!(text(&o.stderr).contains("in the gallery all the same"));
        let list = sumi(&home, &["gallery", "list"]);
        assert!(
            text(&list.stdout).contains("seed 9"),
            "{}",
            text(&list.stdout)
        );
    }
}

#[test]
fn samplers_lists_names_and_costs() {
    let dir = tempfile::tempdir().unwrap();
    let o = sumi(dir.path(), &["samplers"]);
    assert!(o.status.success());
    let out = text(&o.stdout);
    for name in ["Euler a", "DPM++ 2M", "DDIM", "Karras", "Normal"] {
        assert!(out.contains(name), "{out}");
    }
}

#[test]
fn compare_saves_one_group_and_writes_a_labelled_grid() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let out = dir.path().join("grid.png");
    // The built-in demo model (32x32) with two samplers and two step counts: four images.
    let o = sumi(
        &home,
        &[
            "compare",
            "--prompt",
            "a yellow star on a purple background",
            "--seed",
            "3",
            "--samplers",
            "Euler,DPM++ 2M",
            "--steps",
            "2,3",
            "--output",
            out.to_str().unwrap(),
        ],
    );
    let err = text(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("Euler · 2 steps") && err.contains("DPM++ 2M · 3 steps"),
        "{err}"
    );
    let grid = image::open(&out).unwrap().to_rgb8();
    // 2x2 cells of 128 px (32 px enlarged 4x) with margins, gaps, header and label strips.
    assert_eq!(grid.width(), 8 + 128 + 4 + 128 + 8);
    assert!(grid.height() > 2 * 128 + 8 + 8, "{}", grid.height());
    let png = std::fs::read(&out).unwrap();
    let needle = b"Steps: 2, Sampler: Euler";
    assert!(png.windows(needle.len()).any(|w| w == needle));

    let listed = sumi(&home, &["gallery", "list", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    let items = json
        .as_array()
        .or_else(|| json["items"].as_array())
        .unwrap();
    assert_eq!(items.len(), 4);
    let group = &items[0]["meta"]["comparison"]["group"];
    assert!(items
        .iter()
        .all(|g| &g["meta"]["comparison"]["group"] == group));

    // The saved group exports to the same grid.
    let again = dir.path().join("again.png");
    let g = group.as_i64().unwrap().to_string();
    let o = sumi(
        &home,
        &[
            "gallery",
            "export-grid",
            &g,
            "--output",
            again.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    let again = image::open(&again).unwrap().to_rgb8();
    assert_eq!(again.dimensions(), grid.dimensions());
    assert_eq!(again.as_raw(), grid.as_raw());

    // Too many cells is refused before anything runs.
    let fresh = dir.path().join("too-many.png");
    let o = sumi(
        &home,
        &[
            "compare",
            "--prompt",
            "x",
            "--seed",
            "1",
            "--steps",
            "1,2,3,4,5",
            "--cfg",
            "1,2,3,4",
            "--output",
            fresh.to_str().unwrap(),
            "--no-save",
        ],
    );
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("at most 16"),
        "{}",
        text(&o.stderr)
    );
}

/// Runs `sumi` with models found only in `model_dirs` (and the built-in demo model), tokenizers
/// for single files from the sd15 fixture, and an empty Hugging Face cache.
fn sumi_finding(home: &Path, model_dirs: &str, args: &[&str]) -> Output {
    let hub = home.join("empty-hub");
    Command::new(env!("CARGO_BIN_EXE_sumi"))
        .arg("--home")
        .arg(home)
        .args(args)
        .env("SUMI_MODEL_DIRS", model_dirs)
        .env("SUMI_TOKENIZERS", fixtures().join("sd15"))
        .env("HF_HUB_CACHE", &hub)
        .env("HF_HUB_OFFLINE", "1")
        .env_remove("HF_HOME")
        .output()
        .expect("sumi runs")
}

#[test]
fn gallery_rerun_makes_the_image_again_with_the_model_that_made_it() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    // A copy, so that it can move away later.
    let sd15 = dir.path().join("models/sd15");
    common::copy_dir(&fixtures().join("sd15"), &sd15);
    let o = sumi_finding(
        &home,
        "",
        &[
            "generate",
            "--model",
            sd15.to_str().unwrap(),
            "-p",
            "a red circle",
            "--seed",
            "9",
            "--steps",
            "3",
        ],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));

    // Where it was loaded from is recorded: found there, though in none of the model folders.
    let out = dir.path().join("again.png");
    let out = out.to_str().unwrap();
    let o = sumi_finding(
        &home,
        "",
        &["generate", "--from", "1", "--no-save", "-o", out],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("identical pixels to #1"));

    // Moved away and not where Sumi looks: the error names it and the way out.
    std::fs::rename(&sd15, dir.path().join("models/moved")).unwrap();
    let o = sumi_finding(&home, "", &["gallery", "rerun", "1"]);
    assert!(!o.status.success());
    let err = text(&o.stderr);
    assert!(
        err.contains("cannot make #1 again") && err.contains("sd15") && err.contains("--model"),
        "{err}"
    );

    // Found among the model folders by name: the same pixels, saved as a new image.
    let fixtures = fixtures();
    let dirs = fixtures.to_str().unwrap();
    let o = sumi_finding(&home, dirs, &["gallery", "rerun", "1"]);
    let err = text(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("identical pixels to #1"), "{err}");
    assert!(err.contains("saved to gallery as #2"), "{err}");

    // Another model: other pixels, and the reason.
    let o = sumi_finding(
        &home,
        dirs,
        &[
            "gallery",
            "rerun",
            "1",
            "--model",
            &fixtures.join("sd2v").display().to_string(),
        ],
    );
    let err = text(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("pixels differ from #1") && err.contains("made with sd15, this run used sd2v"),
        "{err}"
    );

    // From an image with changes: the rest of its settings are kept.
    let o = sumi_finding(&home, dirs, &["generate", "--from", "1", "--steps", "4"]);
    let err = text(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("made from #1 with other settings"), "{err}");
    let shown = sumi_finding(&home, dirs, &["gallery", "show", "4", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    let p = &json["params"];
    assert_eq!(
        (
            p["prompt"].as_str(),
            p["seed"].as_u64(),
            p["steps"].as_u64()
        ),
        (Some("a red circle"), Some(9), Some(4)),
        "{json}"
    );
    assert_eq!(p["model_name"], "sd15");

    // --json only prints the request.
    let o = sumi_finding(&home, dirs, &["gallery", "rerun", "1", "--json"]);
    let request: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (request["seed"].as_u64(), request["steps"].as_u64()),
        (Some(9), Some(3))
    );
}

#[test]
fn a_renamed_single_file_is_found_by_its_hash() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let models = dir.path().join("models");
    std::fs::create_dir(&models).unwrap();
    let original = models.join("dreamy.safetensors");
    std::fs::copy(fixtures().join("single/sd15.safetensors"), &original).unwrap();
    let dirs = models.to_str().unwrap();
    // The fixture's tiny shapes cannot be inferred from the file: its configs come from --config.
    let config = fixtures().join("sd15");
    let o = sumi_finding(
        &home,
        dirs,
        &[
            "generate",
            "--model",
            original.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
            "-p",
            "a cat",
            "--seed",
            "2",
            "--steps",
            "2",
        ],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    let shown = sumi_finding(&home, dirs, &["gallery", "show", "1", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    let hash = json["params"]["model_hash"].as_str().unwrap().to_string();
    assert_eq!(hash.len(), 10, "{json}");

    std::fs::rename(&original, models.join("renamed.safetensors")).unwrap();
    let o = sumi_finding(
        &home,
        dirs,
        &[
            "generate",
            "--from",
            "1",
            "--config",
            config.to_str().unwrap(),
        ],
    );
    let err = text(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("renamed.safetensors") && err.contains("identical pixels to #1"),
        "{err}"
    );
    assert!(
        err.contains(&format!("looking for the model with hash {hash}")),
        "{err}"
    );
}

#[test]
fn gallery_import_keeps_images_with_unusable_settings_and_shows_their_note() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let png = dir.path().join("00001-1.png");
    let infotext = "a lighthouse\nSteps: 0, Sampler: Euler, CFG scale: NaN, Seed: 1, Size: 16x8";
    let img = image::RgbImage::new(16, 8);
    let bytes = sumi_gallery::png_meta::encode_png(&img, &[("parameters", infotext)]).unwrap();
    std::fs::write(&png, bytes).unwrap();
    let note = "CFG scale \"NaN\" is not a number: 7 (A1111's default) recorded; \
                Steps 0 is out of range (1 to 500)";

    let o = sumi(&home, &["gallery", "import", png.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert!(out.starts_with("imported #1 "), "{out}");
    assert!(out.contains(&format!("\n  note: {note}\n")), "{out}");

    let o = sumi(&home, &["gallery", "show", "1"]);
    assert!(
        text(&o.stdout).contains(&format!("\nnote: {note}\n")),
        "{}",
        text(&o.stdout)
    );
    let o = sumi(&home, &["gallery", "show", "1", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(json["meta"]["note"], note);
    assert_eq!(
        (
            json["params"]["steps"].as_u64(),
            json["params"]["cfg"].as_f64()
        ),
        (Some(0), Some(7.0))
    );

    let photo = dir.path().join("photo.png");
    let bytes = sumi_gallery::png_meta::encode_png(&img, &[("Software", "a camera")]).unwrap();
    std::fs::write(&photo, bytes).unwrap();
    let o = sumi(&home, &["gallery", "import", photo.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stderr).contains("not made by an image generator Sumi knows"),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn bf16_on_the_cpu_is_recorded_and_re_run_in_bf16() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let fixtures = fixtures();
    let dirs = fixtures.to_str().unwrap();
    let sd15 = fixtures.join("sd15");
    let generate = |dtype: &str| {
        let o = sumi_finding(
            &home,
            "",
            &[
                "generate",
                "--model",
                sd15.to_str().unwrap(),
                "-p",
                "a red circle",
                "--seed",
                "5",
                "--steps",
                "3",
                "--device",
                "cpu",
                "--dtype",
                dtype,
            ],
        );
        assert!(o.status.success(), "{}", text(&o.stderr));
    };
    generate("bf16");
    generate("f32");
    let shown = sumi_finding(&home, dirs, &["gallery", "show", "1", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(json["meta"]["dtype"], "bf16", "{json}");
    let image = |id: u32| {
        let o = sumi_finding(&home, dirs, &["gallery", "show", &id.to_string(), "--json"]);
        let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let path = json["image_path"].as_str().unwrap().to_string();
        image::open(path).unwrap().to_rgb8()
    };
    assert_ne!(
        image(1),
        image(2),
        "bf16 and f32 give (slightly) other pixels"
    );

    // Re-run with the default precision: bf16 again, the same pixels.
    let o = sumi_finding(&home, dirs, &["gallery", "rerun", "1", "--device", "cpu"]);
    let err = text(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("identical pixels to #1"), "{err}");
}
