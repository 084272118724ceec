//! The `sumi` binary end to end on the tiny fixture model.

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
            "CFG scale -2 must be a finite number >= 0",
        ),
        (&["--sampler", "nope"], "unknown sampler 'nope'"),
        (&["--seed", "18446744073709551616"], "out of range"),
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
fn samplers_lists_names_and_costs() {
    let dir = tempfile::tempdir().unwrap();
    let o = sumi(dir.path(), &["samplers"]);
    assert!(o.status.success());
    let out = text(&o.stdout);
    for name in ["Euler a", "DPM++ 2M", "DDIM", "Karras", "Normal"] {
        assert!(out.contains(name), "{out}");
    }
}
