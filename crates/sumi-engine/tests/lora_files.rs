//! LoRA files as files: A1111 hashes and names, facts, and every kind of bad input refused
//! with a clear error that leaves the model as it was.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use sumi_engine::weights::lora::{LoraError, LoraFile};
use sumi_engine::Model;

#[path = "support/lora.rs"]
mod lora_support;
#[path = "support/fixtures.rs"]
mod support;
use lora_support::*;
use support::fixtures;

#[test]
fn a1111_hashes_and_names() {
    let (_, j) = lora_refs();
    for name in ["sd15_kohya", "sdxl_kohya_ldm", "sd15_loha"] {
        let fx = &j["fixtures"][name];
        let file = open(fx["file"].as_str().unwrap());
        let want = fx["a1111_hash"].as_str().unwrap();
        assert_eq!(file.a1111_hash().unwrap(), want, "{name}");
        assert_eq!(
            file.computed_hash().unwrap(),
            fx["sha256_after_header"].as_str().unwrap()
        );
        assert!(file.matches_hash(&want.to_uppercase()).unwrap());
        assert_eq!(file.output_name(), Some(format!("{name}_trained").as_str()));
    }
    // sshs_model_hash metadata wins, and either hash matches.
    let fx = &j["fixtures"]["sd15_peft"];
    let file = open("sd15_peft.safetensors");
    assert_eq!(file.a1111_hash().unwrap(), "abcdef012345");
    assert!(file.matches_hash("ABCDEF012345").unwrap());
    assert!(file
        .matches_hash(fx["a1111_hash"].as_str().unwrap())
        .unwrap());
    assert!(!file.matches_hash("0000000000ff").unwrap());
}

#[test]
fn facts_say_format_family_and_rank() {
    let f = open("sdxl_kohya_ldm.safetensors");
    let facts = f.facts();
    assert_eq!(facts.format(), "kohya LoRA");
    assert_eq!(facts.fits, Some(sumi_engine::Family::Sdxl));
    assert_eq!(facts.rank, Some(4));
    for (file, format) in [
        ("sd15_locon.safetensors", "kohya LoRA + LoCon"),
        ("sd15_tucker.safetensors", "kohya LoCon (Tucker)"),
        ("sd15_dora.safetensors", "kohya LoRA + LoCon + DoRA"),
        ("sd15_loha_tucker.safetensors", "LyCORIS LoHa (Tucker)"),
        ("sd15_lokr.safetensors", "LyCORIS LoKr"),
        ("sd15_peft_dora.safetensors", "PEFT LoRA + DoRA"),
        ("sd15_old.safetensors", "diffusers (old) LoRA"),
    ] {
        assert_eq!(open(file).facts().format(), format, "{file}");
    }
    assert!(open("sd15_kohya.safetensors").facts().size > 1000);
}

#[test]
fn files_that_are_not_loras_are_refused_with_what_they_are() {
    let cases = [
        (fixtures().join("single/sd15.safetensors"), "checkpoint"),
        (
            fixtures().join("sd15/vae/diffusion_pytorch_model.safetensors"),
            "VAE",
        ),
        (
            fixtures().join("sd15/unet/diffusion_pytorch_model.safetensors"),
            "model component",
        ),
    ];
    for (path, what) in cases {
        let e = LoraFile::open(&path).unwrap_err();
        assert!(matches!(e, LoraError::NotALora { .. }), "{e}");
        assert!(e.to_string().contains(what), "{e}");
    }
    let dir = tempfile::tempdir().unwrap();
    let emb = dir.path().join("emb.safetensors");
    let mut map = HashMap::new();
    map.insert(
        "emb_params".to_string(),
        Tensor::zeros((2, 32), DType::F32, &Device::Cpu).unwrap(),
    );
    candle_core::safetensors::save(&map, &emb).unwrap();
    let e = LoraFile::open(&emb).unwrap_err();
    assert!(e.to_string().contains("embedding"), "{e}");
    let e = LoraFile::open(&lora_dir().join("pickled_lora.pt")).unwrap_err();
    assert!(matches!(e, LoraError::Pickle { .. }), "{e}");
    assert!(
        e.to_string().contains("holding a LoRA") && e.to_string().contains(".safetensors"),
        "{e}"
    );
    let junk = dir.path().join("junk.safetensors");
    std::fs::write(&junk, b"not a safetensors file at all").unwrap();
    assert!(matches!(
        LoraFile::open(&junk).unwrap_err(),
        LoraError::File { .. }
    ));
}

#[test]
fn bad_sets_are_refused_and_leave_the_model_as_it_was() {
    let mut model = load("sd15");
    let plain = snapshot(&model);
    let good = open("sd15_kohya.safetensors");
    model.set_loras(&[lora(&good, 1.0, 1.0)]).unwrap();
    let with_good = snapshot(&model);
    let check = |model: &Model, what: &str| assert_same_weights(&with_good, &snapshot(model), what);

    // Another family: an SDXL LoRA on an SD 1.x model.
    let xl = open("sdxl_kohya.safetensors");
    let e = lora_error(
        model
            .set_loras(&[lora(&good, 1.0, 1.0), lora(&xl, 1.0, 1.0)])
            .unwrap_err(),
    );
    assert!(
        matches!(e, LoraError::WrongFamily { .. }) && e.to_string().contains("SDXL"),
        "{e}"
    );
    check(&model, "wrong family");

    let dir = tempfile::tempdir().unwrap();
    // Shapes: the right layer names with the wrong sizes; the error names the layer.
    let shape = dir.path().join("shape.safetensors");
    write_lora(
        &shape,
        &[(
            "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q",
            16,
            24,
        )],
        0.1,
    );
    let e = lora_error(
        model
            .set_loras(&[lora(&open_at(&shape), 1.0, 1.0)])
            .unwrap_err(),
    );
    assert!(matches!(e, LoraError::ShapeMismatch { .. }), "{e}");
    assert!(
        e.to_string()
            .contains("down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q.weight"),
        "{e}"
    );
    check(&model, "shape");

    // No key names a layer.
    let none = dir.path().join("none.safetensors");
    write_lora(
        &none,
        &[
            ("lora_unet_no_such_layer", 8, 8),
            ("lora_te_nor_this", 8, 8),
        ],
        0.1,
    );
    let e = lora_error(
        model
            .set_loras(&[lora(&open_at(&none), 1.0, 1.0)])
            .unwrap_err(),
    );
    assert!(matches!(e, LoraError::NoMatch { count: 2, .. }), "{e}");
    check(&model, "no match");

    // Some keys match, some do not: applied with a warning, the others reported.
    let some = dir.path().join("some.safetensors");
    write_lora(
        &some,
        &[
            (
                "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q",
                16,
                16,
            ),
            ("lora_unet_no_such_layer", 8, 8),
        ],
        0.1,
    );
    let some = open_at(&some);
    let report = model.set_loras(&[lora(&some, 1.0, 1.0)]).unwrap();
    assert_eq!(report.loras[0].matched, 1);
    assert_eq!(
        report.loras[0].unmatched,
        vec!["lora_unet_no_such_layer".to_string()]
    );
    model.set_loras(&[lora(&good, 1.0, 1.0)]).unwrap();
    check(&model, "back to the good set");

    // NaN in a factor.
    let nan = dir.path().join("nan.safetensors");
    write_lora(
        &nan,
        &[(
            "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q",
            16,
            16,
        )],
        f32::NAN,
    );
    let e = lora_error(
        model
            .set_loras(&[lora(&open_at(&nan), 1.0, 1.0)])
            .unwrap_err(),
    );
    assert!(matches!(e, LoraError::NotFinite { .. }), "{e}");
    check(&model, "nan");

    // A weight that overflows the model's dtype once added: found while writing, rolled back.
    let huge = dir.path().join("huge.safetensors");
    write_lora(
        &huge,
        &[(
            "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q",
            16,
            16,
        )],
        3e19,
    );
    let e = lora_error(
        model
            .set_loras(&[lora(&open_at(&huge), 1.0, 1.0)])
            .unwrap_err(),
    );
    assert!(matches!(e, LoraError::NotFinite { .. }), "{e}");
    check(&model, "overflow rolled back");

    // Weights out of range, and the same file twice.
    for w in [10.5, -11.0, f64::NAN] {
        let e = lora_error(model.set_loras(&[lora(&good, w, 1.0)]).unwrap_err());
        assert!(matches!(e, LoraError::Multiplier { .. }), "{e}");
    }
    let e = lora_error(
        model
            .set_loras(&[lora(&good, 1.0, 1.0), lora(&good, 0.5, 0.5)])
            .unwrap_err(),
    );
    assert!(matches!(e, LoraError::Duplicate { .. }), "{e}");
    check(&model, "multipliers");

    model.clear_loras().unwrap();
    assert_same_weights(&plain, &snapshot(&model), "cleared");
}
