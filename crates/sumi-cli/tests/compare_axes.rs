//! `sumi compare` over denoising strengths (img2img) and the weight of one LoRA of the prompt,
//! with the tiny SD1.5 fixture model (the fixture LoRA fits it, not the demo model).

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
        .env("SUMI_MODEL_DIRS", fixtures())
        .env_remove("SUMI_LORA_DIRS")
        .env_remove("SUMI_EMBEDDINGS_DIRS")
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .expect("sumi runs")
}

fn ok(o: &Output) -> String {
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{err}");
    err
}

fn fails(o: &Output) -> String {
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!o.status.success(), "should fail: {err}");
    err
}

/// The gallery's records, oldest first.
fn records(home: &Path) -> Vec<serde_json::Value> {
    let o = sumi(home, &["gallery", "list", "--json"]);
    ok(&o);
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let mut items = json
        .as_array()
        .or_else(|| json["items"].as_array())
        .unwrap()
        .clone();
    items.sort_by_key(|g| g["id"].as_i64());
    items
}

fn pixels(home: &Path, g: &serde_json::Value) -> Vec<u8> {
    let o = sumi(home, &["gallery", "show", &g["id"].to_string(), "--json"]);
    ok(&o);
    let shown: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    image::open(shown["image_path"].as_str().unwrap())
        .unwrap()
        .to_rgb8()
        .into_raw()
}

#[test]
fn compare_varies_the_denoising_strength_and_a_lora_weight() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir_all(home.join("loras")).unwrap();
    std::fs::copy(
        fixtures().join("lora/sd15_kohya.safetensors"),
        home.join("loras/ink.safetensors"),
    )
    .unwrap();
    let model = fixtures().join("sd15");
    let init = fixtures().join("i2i/init.png");
    let grid = dir.path().join("grid.png");
    let base = [
        "compare",
        "--model",
        model.to_str().unwrap(),
        "--seed",
        "5",
        "--steps",
        "4",
        "--output",
        grid.to_str().unwrap(),
        "--force",
    ];
    let run = |extra: &[&str]| sumi(&home, &[&base[..], extra].concat());

    // Two strengths of one init picture: labelled, recorded with their strength and source.
    let err = ok(&run(&[
        "-p",
        "a red circle",
        "--init-image",
        init.to_str().unwrap(),
        "--strengths",
        "0.3,0.8",
    ]));
    assert!(
        err.contains("strength 0.3:") && err.contains("strength 0.8:"),
        "{err}"
    );
    let png = std::fs::read(&grid).unwrap();
    let needle = b"Denoising strength: 0.3";
    assert!(
        png.windows(needle.len()).any(|w| w == needle),
        "grid infotext"
    );
    let got = records(&home);
    assert_eq!(got.len(), 2);
    let strengths: Vec<f64> = got
        .iter()
        .map(|g| g["params"]["img2img"]["strength"].as_f64().unwrap())
        .collect();
    assert_eq!(strengths, [0.3, 0.8]);
    let init_name = got[0]["params"]["img2img"]["init_image"].as_str().unwrap();
    assert!(
        home.join("sources").join(init_name).is_file(),
        "source kept"
    );
    assert_eq!(
        got[0]["meta"]["comparison"]["group"],
        got[1]["meta"]["comparison"]["group"]
    );
    assert_ne!(
        pixels(&home, &got[0]),
        pixels(&home, &got[1]),
        "the strength matters"
    );

    // Two weights of the prompt's LoRA: each cell records its own tag and the LoRA's hash.
    let err = ok(&run(&[
        "-p",
        "a red circle <lora:ink:0.7>",
        "--lora-weights",
        "ink:0,1",
    ]));
    assert!(
        err.contains("LoRA ink:0:") && err.contains("LoRA ink:1:"),
        "{err}"
    );
    let got = records(&home);
    assert_eq!(got.len(), 4);
    let (a, b) = (&got[2], &got[3]);
    assert_eq!(a["params"]["prompt"], "a red circle <lora:ink:0>");
    assert_eq!(b["params"]["prompt"], "a red circle <lora:ink:1>");
    assert_eq!(b["params"]["lora_hashes"][0]["name"], "ink");
    assert_ne!(
        a["meta"]["comparison"]["group"],
        got[0]["meta"]["comparison"]["group"]
    );
    assert_ne!(
        pixels(&home, a),
        pixels(&home, b),
        "the LoRA weight matters"
    );

    // Clear refusals, nothing saved.
    let err = fails(&run(&["-p", "a red circle", "--strengths", "0.3,0.8"]));
    assert!(err.contains("starting picture"), "{err}");
    let err = fails(&run(&[
        "-p",
        "a red circle <lora:ink:1>",
        "--lora-weights",
        "paper:0,1",
    ]));
    assert!(err.contains("no <lora:paper:WEIGHT> tag"), "{err}");
    let err = fails(&run(&[
        "-p",
        "x <lora:ink:1>",
        "--lora-weights",
        "ink:0,lots",
    ]));
    assert!(err.contains("not a number"), "{err}");
    assert_eq!(records(&home).len(), 4);
}
