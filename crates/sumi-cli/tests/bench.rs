//! `sumi bench --quick` runs end to end and prints a well-formed report (its numbers are not
//! checked: timings are never asserted in tests).

use std::process::Command;

#[test]
fn quick_bench_prints_json_report() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    let out = Command::new(env!("CARGO_BIN_EXE_sumi"))
        .args(["bench", "--quick", "--json", "--threads", "1", "--keep-dir"])
        .arg(&model)
        .output()
        .expect("sumi runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(report["preset"], "tiny");
    assert_eq!(report["threads"], 1);
    let names: Vec<&str> = report["timings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["component"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["load", "text", "unet", "vae", "preview", "generate"]
    );
    for t in report["timings"].as_array().unwrap() {
        assert!(t["seconds"].as_f64().unwrap() >= 0.0);
    }
    assert!(report["configs"]["unet"]["block_out_channels"].is_array());
    // GPU memory is only watched on a GPU.
    assert!(
        report["peak_gpu_bytes"].is_null(),
        "{}",
        report["peak_gpu_bytes"]
    );
    assert!(model
        .join("unet/diffusion_pytorch_model.safetensors")
        .is_file());
}

#[test]
fn profiled_bench_reports_time_per_kind_of_operation() {
    let out = Command::new(env!("CARGO_BIN_EXE_sumi"))
        .args(["bench", "--quick", "--json", "--threads", "1"])
        .args(["--components", "unet,vae"])
        .env("SUMI_PROFILE", "1")
        .output()
        .expect("sumi runs");
    assert!(out.status.success());
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    for t in report["timings"].as_array().unwrap() {
        let ops: Vec<&str> = t["profile"]
            .as_array()
            .unwrap_or_else(|| panic!("no profile for {}", t["component"]))
            .iter()
            .map(|o| o["op"].as_str().unwrap())
            .collect();
        assert!(ops.contains(&"convolution"), "{ops:?}");
        assert!(ops.contains(&"group norm"), "{ops:?}");
        if t["component"] == "unet" {
            assert!(
                ops.contains(&"attention") && ops.contains(&"linear"),
                "{ops:?}"
            );
        }
    }
}

#[test]
fn prompt_bench_times_plain_weighted_comfy_and_embedding_prompts() {
    let out = Command::new(env!("CARGO_BIN_EXE_sumi"))
        .args(["bench", "--quick", "--json", "--components", "prompt"])
        .output()
        .expect("sumi runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    let timings = report["timings"].as_array().unwrap();
    let names: Vec<&str> = timings
        .iter()
        .map(|t| t["component"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "prompt plain",
            "prompt weighted",
            "prompt comfy",
            "prompt embedding"
        ]
    );
    // Each says how long its prompt was: more than one chunk.
    for t in timings {
        let what = t["what"].as_str().unwrap();
        assert!(
            what.contains("chunks)") && !what.contains("(1 chunks)"),
            "{what}"
        );
    }
}
