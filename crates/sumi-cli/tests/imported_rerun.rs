//! Images made by other tools import and re-run to the same pixels, within the 2/255 the engine
//! keeps to the reference:
//! - as A1111 saves one (NV noise from its default GPU source, ENSD, Euler a, 8 bits by
//!   truncation; `tests/fixtures/noise/make_a1111_png.py`), with the fixture model;
//! - a Flux image as ComfyUI makes it (UNETLoader + DualCLIPLoader + FluxGuidance, Euler on the
//!   simple schedule of ComfyUI's Flux sigma table, T5 padded to 256 tokens;
//!   `tests/fixtures/flux/make_comfy_png.py`), from the ComfyUI folders Sumi discovers.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn sumi(home: &Path, args: &[&str]) -> Output {
    sumi_with(home, args, &[("SUMI_MODEL_DIRS", PathBuf::new())])
}

fn sumi_with(home: &Path, args: &[&str], env: &[(&str, PathBuf)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sumi"));
    cmd.arg("--home").arg(home).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.env("HF_HUB_OFFLINE", "1").output().expect("sumi runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The numbers after `key` in `s` ("... by at most 1/255" -> 1).
fn number_after(s: &str, key: &str) -> Option<u32> {
    let rest = &s[s.find(key)? + key.len()..];
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

#[test]
fn an_a1111_image_re_runs_with_its_noise_source_ensd_and_truncation() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let png = fixtures().join("noise/a1111_nv_ensd.png");
    let o = sumi(&home, &["gallery", "import", png.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o.stderr));

    let o = sumi(&home, &["gallery", "show", "1", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let p = &json["params"];
    assert_eq!(p["noise_source"], "gpu", "no RNG key: A1111's GPU source");
    assert_eq!(
        (p["ensd"].as_u64(), p["seed"].as_u64()),
        (Some(31337), Some(123))
    );
    assert_eq!(p["quantize"], "truncate");

    let model = fixtures().join("sd15");
    let o = sumi(
        &home,
        &["gallery", "rerun", "1", "--model", model.to_str().unwrap()],
    );
    let err = text(&o.stderr);
    assert!(o.status.success(), "{err}");
    if !err.contains("identical pixels to #1") {
        // Float differences between torch and Sumi may move a value across a truncation step.
        let max = number_after(&err, "by at most ").unwrap_or(u32::MAX);
        let pixels = number_after(&err, "pixels differ from #1: ").unwrap_or(u32::MAX);
        assert!(max <= 2 && pixels <= 64 * 64 / 20, "{err}");
    }
    eprintln!("{err}");
}

#[test]
fn a_comfyui_flux_image_imports_and_re_runs_from_the_discovered_files() {
    let comfy = [
        ("SUMI_MODEL_DIRS", fixtures().join("flux/comfy")),
        ("SUMI_TOKENIZERS", fixtures().join("flux/pipe-dev")),
    ];
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let png = fixtures().join("flux/comfy_flux_dev.png");
    let o = sumi_with(&home, &["gallery", "import", png.to_str().unwrap()], &comfy);
    assert!(o.status.success(), "{}", text(&o.stderr));

    let o = sumi_with(&home, &["gallery", "show", "1", "--json"], &comfy);
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

    let o = sumi_with(&home, &["gallery", "rerun", "1"], &comfy);
    let err = text(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("flux1-dev-tiny"), "{err}");
    if !err.contains("identical pixels to #1") {
        let max = number_after(&err, "by at most ").unwrap_or(u32::MAX);
        assert!(max <= 2, "{err}");
    }
    eprintln!("{err}");
}
