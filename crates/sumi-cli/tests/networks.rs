//! Prompts that name files: embeddings, LoRAs by tag and by `--lora`, clip skip and emphasis,
//! recorded as A1111 records them and found again on re-run.

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

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn ok(o: &Output) -> String {
    let err = text(&o.stderr);
    assert!(o.status.success(), "{err}");
    err
}

fn sha12_after_header(path: &Path) -> String {
    use sha2::Digest;
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let digest = sha2::Sha256::digest(&bytes[8 + n..]);
    digest
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>()[..12]
        .to_string()
}

fn sha12(path: &Path) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(std::fs::read(path).unwrap());
    digest
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>()[..12]
        .to_string()
}

/// A home with the kohya fixture as LoRA `ink` and the prompt fixtures' embeddings.
fn home() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir_all(home.join("loras")).unwrap();
    std::fs::create_dir_all(home.join("embeddings")).unwrap();
    std::fs::copy(
        fixtures().join("lora/sd15_kohya.safetensors"),
        home.join("loras/ink.safetensors"),
    )
    .unwrap();
    std::fs::copy(
        fixtures().join("prompt/embeddings/sumired.safetensors"),
        home.join("embeddings/sumired.safetensors"),
    )
    .unwrap();
    (dir, home)
}

fn show(home: &Path, id: &str) -> serde_json::Value {
    let o = sumi(home, &["gallery", "show", id, "--json"]);
    ok(&o);
    serde_json::from_slice(&o.stdout).unwrap()
}

fn generate<'a>(home: &Path, out: &'a Path, extra: &[&'a str]) -> Output {
    let model = fixtures().join("sd15");
    let mut args = vec![
        "generate",
        "--model",
        model.to_str().unwrap(),
        "--seed",
        "7",
        "--steps",
        "3",
        "--output",
        out.to_str().unwrap(),
        "--force",
    ];
    args.extend_from_slice(extra);
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    sumi(home, &args)
}

#[test]
fn loras_embeddings_clip_skip_and_emphasis_are_recorded_and_rerun() {
    let (dir, home) = home();
    let out = dir.path().join("a.png");
    let err = ok(&generate(
        &home,
        &out,
        &[
            "-p",
            "a (red:1.3) circle, sumired",
            "--lora",
            "ink:0.7",
            "--clip-skip",
            "2",
            "--emphasis",
            "no-norm",
        ],
    ));
    assert!(err.contains("saved to gallery as #1"), "{err}");
    let lora_hash = sha12_after_header(&home.join("loras/ink.safetensors"));
    let ti_hash = sha12(&home.join("embeddings/sumired.safetensors"));
    let png = std::fs::read(&out).unwrap();
    let needle = format!(
        "Clip skip: 2, RNG: CPU, Lora hashes: \"ink: {lora_hash}\", TI hashes: \"sumired: {ti_hash}\", Emphasis: No norm"
    );
    assert!(
        png.windows(needle.len()).any(|w| w == needle.as_bytes()),
        "{needle} in {}",
        text(&png)
    );
    let p = &show(&home, "1")["params"];
    assert_eq!(p["prompt"], "a (red:1.3) circle, sumired, <lora:ink:0.7>");
    assert_eq!(p["lora_hashes"][0]["hash"], lora_hash.as_str());
    assert_eq!(p["ti_hashes"][0]["name"], "sumired");
    assert_eq!(
        (p["clip_skip"].as_u64(), p["emphasis"].as_str()),
        (Some(2), Some("no-norm"))
    );

    // The LoRA and the clip skip each change the picture.
    let pixels = |path: &Path| image::open(path).unwrap().to_rgb8().into_raw();
    let prompt = "a (red:1.3) circle, sumired";
    for (name, args) in [
        (
            "no-lora",
            vec!["-p", prompt, "--clip-skip", "2", "--emphasis", "no-norm"],
        ),
        (
            "no-skip",
            vec!["-p", prompt, "--lora", "ink:0.7", "--emphasis", "no-norm"],
        ),
    ] {
        let other = dir.path().join(format!("{name}.png"));
        ok(&generate(
            &home,
            &other,
            &[&args[..], &["--no-save"]].concat(),
        ));
        assert_ne!(pixels(&out), pixels(&other), "{name}");
    }
    // An embeddings folder that does not exist is refused before loading.
    let o = generate(
        &home,
        &out,
        &["-p", prompt, "--embeddings", "/nonexistent/emb"],
    );
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("no such file or folder"),
        "{}",
        text(&o.stderr)
    );

    // Re-run: the LoRA and embedding are found again; identical pixels.
    let err = ok(&sumi(&home, &["gallery", "rerun", "1"]));
    assert!(err.contains("identical pixels to #1"), "{err}");

    // A renamed LoRA is found by its hash, and the run says so.
    std::fs::rename(
        home.join("loras/ink.safetensors"),
        home.join("loras/inkwash-v2.safetensors"),
    )
    .unwrap();
    let err = ok(&sumi(&home, &["gallery", "rerun", "1"]));
    assert!(err.contains("found by its hash"), "{err}");
    assert!(err.contains("identical pixels to #1"), "{err}");

    // Missing files are named, with what to do.
    std::fs::remove_file(home.join("loras/inkwash-v2.safetensors")).unwrap();
    let o = sumi(&home, &["gallery", "rerun", "1"]);
    assert!(!o.status.success());
    let err = text(&o.stderr);
    assert!(
        err.contains(&format!("no LoRA called \"ink\" (hash {lora_hash})"))
            && err.contains("--lora-dir"),
        "{err}"
    );
    std::fs::remove_file(home.join("embeddings/sumired.safetensors")).unwrap();
    let o = sumi(&home, &["gallery", "rerun", "1"]);
    let err = text(&o.stderr);
    assert!(
        !o.status.success() && err.contains(&format!("sumired ({ti_hash})")),
        "{err}"
    );
    // Starting from the image with a prompt that names neither needs neither.
    let o = sumi(
        &home,
        &[
            "generate",
            "--from",
            "1",
            "-p",
            "a blue square",
            "--output",
            dir.path().join("new.png").to_str().unwrap(),
        ],
    );
    ok(&o);
}

#[test]
fn lora_mistakes_are_refused_with_a_reason() {
    let (dir, home) = home();
    let out = dir.path().join("a.png");
    let cases: [(&[&str], &str); 4] = [
        (
            &["-p", "x", "--lora", "nothere"],
            "no LoRA called \"nothere\"",
        ),
        (&["-p", "x <lora:ink:1>", "--lora", "ink"], "named twice"),
        (
            &["-p", "x", "--lora", "ink:lots"],
            "\"lots\" is not a number",
        ),
        (&["-p", "x <hypernet:foo:1>"], "not a LoRA tag"),
    ];
    for (args, want) in cases {
        let o = generate(&home, &out, args);
        let err = text(&o.stderr);
        assert!(!o.status.success() && err.contains(want), "{args:?}: {err}");
    }
    let o = generate(&home, &out, &["-p", "x", "--clip-skip", "0"]);
    assert!(!o.status.success() && text(&o.stderr).contains("clip skip 0"));
    let o = generate(&home, &out, &["-p", "x", "--emphasis", "loud"]);
    assert!(!o.status.success() && text(&o.stderr).contains("original, no-norm"));
}

#[test]
fn models_lists_loras() {
    let (dir, home) = home();
    let extra = dir.path().join("more");
    std::fs::create_dir_all(&extra).unwrap();
    std::fs::copy(
        fixtures().join("lora/sd15_loha.safetensors"),
        extra.join("wash.safetensors"),
    )
    .unwrap();
    let o = sumi(
        &home,
        &[
            "models",
            "--loras",
            "--lora-dir",
            extra.to_str().unwrap(),
            "--json",
        ],
    );
    ok(&o);
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let names: Vec<&str> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["ink", "wash"]);
    assert_eq!(
        json[0]["hash"],
        sha12_after_header(&home.join("loras/ink.safetensors")).as_str()
    );
    assert!(
        json[1]["format"].as_str().unwrap().contains("LoHa"),
        "{json}"
    );
    let o = sumi(&home, &["models", "--loras"]);
    let table = text(&o.stdout);
    assert!(table.contains("NAME") && table.contains("ink"), "{table}");
}

#[test]
fn compare_applies_the_prompts_loras_and_records_them() {
    let (dir, home) = home();
    let grid = dir.path().join("grid.png");
    let model = fixtures().join("sd15");
    let o = sumi(
        &home,
        &[
            "compare",
            "--model",
            model.to_str().unwrap(),
            "-p",
            "a sumired circle <lora:ink:0.5>",
            "--seed",
            "3",
            "--steps",
            "2,3",
            "--output",
            grid.to_str().unwrap(),
        ],
    );
    ok(&o);
    for id in ["1", "2"] {
        let p = &show(&home, id)["params"];
        assert_eq!(p["lora_hashes"][0]["name"], "ink", "{p}");
        assert_eq!(p["ti_hashes"][0]["name"], "sumired", "{p}");
    }
}

/// A Flux LoRA on a GGUF transformer (kept quantized, its parts found beside it as ComfyUI
/// keeps them) changes the image, is recorded with its hash, and the image re-runs exactly.
#[test]
fn a_flux_lora_applies_to_a_gguf_transformer_and_re_runs() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir_all(home.join("loras")).unwrap();
    let lora = home.join("loras/fluxink.safetensors");
    std::fs::copy(fixtures().join("lora/flux_kohya.safetensors"), &lora).unwrap();
    let models = dir.path().join("models");
    let comfy = fixtures().join("flux/comfy/models");
    for (from, to) in [
        (
            "text_encoders/clip_l.safetensors",
            "text_encoders/clip_l.safetensors",
        ),
        (
            "text_encoders/t5xxl_tiny.safetensors",
            "text_encoders/t5xxl_tiny.safetensors",
        ),
        ("vae/ae.safetensors", "vae/ae.safetensors"),
    ] {
        std::fs::create_dir_all(models.join(to).parent().unwrap()).unwrap();
        std::fs::copy(comfy.join(from), models.join(to)).unwrap();
    }
    let gguf = models.join("diffusion_models/flux1-dev-pipe-Q8_0.gguf");
    std::fs::create_dir_all(gguf.parent().unwrap()).unwrap();
    std::fs::copy(
        fixtures().join("flux/files/flux1-dev-pipe-Q8_0.gguf"),
        &gguf,
    )
    .unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_sumi"))
            .arg("--home")
            .arg(&home)
            .args(args)
            .env("SUMI_MODEL_DIRS", dir.path())
            .env("SUMI_TOKENIZERS", fixtures().join("flux/pipe-dev"))
            .env_remove("SUMI_LORA_DIRS")
            .env("HF_HUB_OFFLINE", "1")
            .output()
            .expect("sumi runs")
    };
    let image = |name: &str, prompt: &str| {
        let out = dir.path().join(name);
        let model = gguf.to_str().unwrap();
        let o = run(&[
            "generate",
            "--model",
            model,
            "-p",
            prompt,
            "--seed",
            "7",
            "--steps",
            "3",
            "--width",
            "64",
            "--height",
            "48",
            "--output",
            out.to_str().unwrap(),
        ]);
        let err = ok(&o);
        (image::open(&out).unwrap().to_rgb8(), err)
    };
    let (plain, _) = image("plain.png", "a photo of a red cat");
    let (with, err) = image("lora.png", "a photo of a red cat <lora:fluxink:0.9>");
    assert!(!err.contains("match no layer"), "{err}");
    let moved = plain
        .as_raw()
        .iter()
        .zip(with.as_raw())
        .map(|(a, b)| a.abs_diff(*b))
        .max()
        .unwrap();
    assert!(
        moved > 20,
        "the LoRA moved no pixel by more than {moved}/255"
    );
    let p = &show(&home, "2")["params"];
    assert_eq!(p["lora_hashes"][0]["name"], "fluxink", "{p}");
    assert_eq!(
        p["lora_hashes"][0]["hash"],
        sha12_after_header(&lora).as_str()
    );
    let err = ok(&run(&["gallery", "rerun", "2"]));
    assert!(err.contains("identical pixels to #2"), "{err}");
}
