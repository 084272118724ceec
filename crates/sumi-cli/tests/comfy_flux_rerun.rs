//! A Flux image as ComfyUI makes it (UNETLoader + DualCLIPLoader + FluxGuidance, Euler on the
//! simple schedule of ComfyUI's Flux sigma table, T5 padded to 256 tokens;
//! `tests/fixtures/flux/make_comfy_png.py`) imports with its settings and re-runs, from the
//! ComfyUI folders Sumi discovers, to the same pixels within the 2/255 the engine keeps to the
//! reference.

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
        .env("SUMI_MODEL_DIRS", fixtures().join("flux/comfy"))
        .env("SUMI_TOKENIZERS", fixtures().join("flux/pipe-dev"))
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .expect("sumi runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The number after `key` in `s` ("... by at most 1/255" -> 1).
fn number_after(s: &str, key: &str) -> Option<u32> {
    let rest = &s[s.find(key)? + key.len()..];
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

#[test]
fn a_comfyui_flux_image_imports_and_re_runs_from_the_discovered_files() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let png = fixtures().join("flux/comfy_flux_dev.png");
    let o = sumi(&home, &["gallery", "import", png.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o.stderr));

    let o = sumi(&home, &["gallery", "show", "1", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let p = &json["params"];
    assert_eq!(p["model_name"], "flux1-dev-tiny");
    assert_eq!(
        (p["guidance"].as_f64(), p["cfg"].as_f64()),
        (Some(3.5), Some(1.0))
    );
    assert_eq!(p["max_sequence_length"].as_u64(), Some(256));
    assert_eq!(
        (p["sampler"].as_str(), p["schedule"].as_str()),
        (Some("Euler"), Some("Simple"))
    );
    assert_eq!(p["seed"].as_u64(), Some(1234));

    let o = sumi(&home, &["gallery", "rerun", "1"]);
    let err = text(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("flux1-dev-tiny"), "{err}");
    if !err.contains("identical pixels to #1") {
        let max = number_after(&err, "by at most ").unwrap_or(u32::MAX);
        assert!(max <= 2, "{err}");
    }
    eprintln!("{err}");
}
