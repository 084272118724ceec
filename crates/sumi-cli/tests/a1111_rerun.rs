//! An image as A1111 saves it (NV noise from its default GPU source, ENSD, Euler a, 8 bits by
//! truncation; `tests/fixtures/noise/make_a1111_png.py`) imports and re-runs with the fixture
//! model to the same pixels, within the 2/255 the engine keeps to the reference.

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
        .env("SUMI_MODEL_DIRS", "")
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .expect("sumi runs")
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
