//! `sumi generate` with an init image, a mask, outpainting and hires fix on the tiny fixture
//! model, and `gallery rerun` / `gallery show` of what they made.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn sumi(home: &Path, args: &[&str]) -> Output {
    let fixtures = fixtures();
    Command::new(env!("CARGO_BIN_EXE_sumi"))
        .arg("--home")
        .arg(home)
        .args(args)
        .env("SUMI_MODEL_DIRS", fixtures.to_str().unwrap())
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

fn show(home: &Path, id: &str) -> serde_json::Value {
    let o = sumi(home, &["gallery", "show", id, "--json"]);
    ok(&o);
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn img2img_inpaint_outpaint_and_hires_are_recorded_and_rerun_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let model = fixtures().join("sd15");
    let model = model.to_str().unwrap();
    let init = fixtures().join("i2i/init.png");
    let init = init.to_str().unwrap();
    let mask = fixtures().join("i2i/mask.png");
    let mask = mask.to_str().unwrap();
    let base = [
        "generate",
        "--model",
        model,
        "-p",
        "a red circle",
        "--seed",
        "5",
        "--steps",
        "4",
    ];

    // img2img: the size comes from the picture; the source is kept by content.
    let args = [&base[..], &["--init-image", init, "--strength", "0.6"]].concat();
    let err = ok(&sumi(&home, &args));
    assert!(err.contains("saved to gallery as #1"), "{err}");
    let g = show(&home, "1");
    let p = &g["params"];
    assert_eq!(
        (p["width"].as_u64(), p["height"].as_u64()),
        (Some(64), Some(64))
    );
    let name = p["img2img"]["init_image"].as_str().unwrap().to_string();
    assert_eq!(p["img2img"]["strength"], 0.6);
    let kept = std::fs::read(home.join("sources").join(&name)).unwrap();
    assert_eq!(kept, std::fs::read(init).unwrap());
    let png = std::fs::read(g["image_path"].as_str().unwrap()).unwrap();
    let needle = b"Denoising strength: 0.6";
    assert!(png.windows(needle.len()).any(|w| w == needle), "infotext");

    // Re-run from the kept source: identical pixels.
    let err = ok(&sumi(&home, &["gallery", "rerun", "1"]));
    assert!(err.contains("identical pixels to #1"), "{err}");

    // A gallery image as init image: the lineage says so.
    let args = [
        &base[..],
        &["--init-image", "gallery:1", "--strength", "0.3"],
    ]
    .concat();
    let err = ok(&sumi(&home, &args));
    assert!(err.contains("saved to gallery as #3"), "{err}");
    let o = sumi(&home, &["gallery", "show", "3"]);
    assert!(
        text(&o.stdout).contains("img2img made from #1"),
        "{}",
        text(&o.stdout)
    );

    // Inpainting with a mask, re-run exactly.
    let args = [
        &base[..],
        &["--init-image", init, "--mask", mask, "--mask-blur", "2"],
    ]
    .concat();
    let err = ok(&sumi(&home, &args));
    assert!(err.contains("saved to gallery as #4"), "{err}");
    let err = ok(&sumi(&home, &["gallery", "rerun", "4"]));
    assert!(err.contains("identical pixels to #4"), "{err}");
    let shown = text(&sumi(&home, &["gallery", "show", "4"]).stdout);
    assert!(
        shown.contains("inpainted made from") && shown.contains("Mask blur: 2"),
        "{shown}"
    );

    // Outpainting: the canvas grows.
    let args = [&base[..], &["--init-image", init, "--outpaint", "0,32,0,0"]].concat();
    ok(&sumi(&home, &args));
    let g = show(&home, "6");
    assert_eq!(g["params"]["width"].as_u64(), Some(96));
    let img = image::open(g["image_path"].as_str().unwrap()).unwrap();
    assert_eq!((img.width(), img.height()), (96, 64));

    // Hires fix: the image is the upscaled size, the record the first pass's.
    let args = [
        &base[..],
        &[
            "--hires-scale",
            "1.5",
            "--hires-steps",
            "2",
            "--hires-upscaler",
            "lanczos",
        ],
    ]
    .concat();
    ok(&sumi(&home, &args));
    let g = show(&home, "7");
    assert_eq!(g["params"]["width"].as_u64(), Some(64));
    assert_eq!(g["params"]["hires"]["upscaler"], "lanczos");
    let img = image::open(g["image_path"].as_str().unwrap()).unwrap();
    assert_eq!((img.width(), img.height()), (96, 96));
    let err = ok(&sumi(&home, &["gallery", "rerun", "7"]));
    assert!(err.contains("identical pixels to #7"), "{err}");
}

#[test]
fn bad_img2img_options_fail_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let model = fixtures().join("sd15");
    let model = model.to_str().unwrap();
    let init = fixtures().join("i2i/init.png");
    let init = init.to_str().unwrap();
    let cut = dir.path().join("cut.png");
    let bytes = std::fs::read(init).unwrap();
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let base = [
        "generate", "--model", model, "-p", "x", "--seed", "1", "--steps", "2",
    ];
    for (extra, needle) in [
        (
            vec!["--init-image", init, "--strength", "1.5"],
            "between 0 and 1",
        ),
        (vec!["--strength", "0.5"], "need --init-image"),
        (vec!["--init-image", cut.to_str().unwrap()], "init image"),
        (
            vec!["--init-image", "/nonexistent.png"],
            "cannot read the init image",
        ),
        (
            vec!["--init-image", init, "--resize-mode", "zoom"],
            "just, crop or fill",
        ),
        (
            vec!["--init-image", init, "--outpaint", "1,2"],
            "four pixel counts",
        ),
        (
            vec!["--hires-upscaler", "4x-UltraSharp"],
            "no hires upscaler",
        ),
        (
            vec!["--init-image", init, "--hires-scale", "2"],
            "hires fix",
        ),
    ] {
        let args = [&base[..], &extra[..]].concat();
        let o = sumi(&home, &args);
        let err = text(&o.stderr);
        assert!(!o.status.success(), "{extra:?} should fail");
        assert!(err.contains(needle), "{extra:?}: {err}");
    }
    // Nothing was saved, not even a source.
    assert!(
        !home.join("sources").exists()
            || std::fs::read_dir(home.join("sources")).unwrap().count() == 0
    );
}
