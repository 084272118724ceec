//! LoRA and embedding lookup on the tiny SD 1.5 fixture.

use super::*;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

/// A home whose loras folder holds the kohya fixture as `ink` and the LoHa one as `wash`.
fn home_with_loras() -> (tempfile::TempDir, NetworkDirs) {
    let t = tempfile::tempdir().unwrap();
    let loras = t.path().join("loras");
    std::fs::create_dir_all(&loras).unwrap();
    let src = fixtures().join("lora");
    std::fs::copy(
        src.join("sd15_kohya.safetensors"),
        loras.join("ink.safetensors"),
    )
    .unwrap();
    std::fs::copy(
        src.join("sd15_loha.safetensors"),
        loras.join("wash.safetensors"),
    )
    .unwrap();
    let dirs = NetworkDirs::with_defaults(t.path(), &[], &[]);
    (t, dirs)
}

fn model() -> Model {
    let device = candle_core::Device::Cpu;
    Model::load(&fixtures().join("sd15"), &device, candle_core::DType::F32).unwrap()
}

#[test]
fn lora_arguments_read_names_paths_and_weights() {
    let arg = |t: &str, te, unet| LoraArg {
        target: t.into(),
        te,
        unet,
    };
    assert_eq!(parse_lora_arg("ink").unwrap(), arg("ink", None, None));
    assert_eq!(
        parse_lora_arg("ink:0.7").unwrap(),
        arg("ink", Some(0.7), None)
    );
    assert_eq!(
        parse_lora_arg("ink:0.7:-1").unwrap(),
        arg("ink", Some(0.7), Some(-1.0))
    );
    let e = parse_lora_arg("ink:heavy").unwrap_err().to_string();
    assert!(e.contains("\"heavy\" is not a number"), "{e}");
    let e = parse_lora_arg("ink:11").unwrap_err().to_string();
    assert!(e.contains("outside -10..10"), "{e}");
    assert!(parse_lora_arg(":1").is_err());
}

#[test]
fn lora_arguments_become_prompt_tags_once() {
    let (_t, dirs) = home_with_loras();
    let mut lib = LoraLibrary::scan(&dirs);
    let names: Vec<&str> = lib.list().iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["ink", "wash"]);
    let args = [parse_lora_arg("ink:0.5").unwrap()];
    assert_eq!(
        lib.add_tags("a cat", &args).unwrap(),
        "a cat, <lora:ink:0.5>"
    );
    let e = lib.add_tags("a cat <lora:ink:1>", &args).unwrap_err();
    assert!(e.to_string().contains("named twice"), "{e}");
    // A file outside the folders is added under its stem.
    let file = fixtures().join("lora/sd15_locon.safetensors");
    let args = [parse_lora_arg(file.to_str().unwrap()).unwrap()];
    assert_eq!(lib.add_tags("", &args).unwrap(), "<lora:sd15_locon:1>");
    assert!(lib.by_name("sd15_locon").is_some());
    let e = lib
        .add_tags("", &[parse_lora_arg("nowhere").unwrap()])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("no LoRA called \"nowhere\"") && e.contains("searched"),
        "{e}"
    );
    // An embedding is no LoRA: the message says what it is.
    let emb = fixtures().join("prompt/embeddings/sumired.safetensors");
    let e = lib
        .add_tags("", &[parse_lora_arg(emb.to_str().unwrap()).unwrap()])
        .unwrap_err()
        .to_string();
    assert!(e.contains("embedding"), "{e}");
}

#[test]
fn tags_apply_record_hashes_switch_and_clear() {
    let (t, dirs) = home_with_loras();
    let mut lib = LoraLibrary::scan(&dirs);
    let mut m = model();
    let done = lib
        .apply(&mut m, "a cat <lora:ink:0.8> <lora:wash:0.5:1>", &[])
        .unwrap();
    let ink = LoraFile::open(&t.path().join("loras/ink.safetensors")).unwrap();
    assert_eq!(
        done.hashes,
        [
            NamedHash::new("ink", &ink.a1111_hash().unwrap()),
            NamedHash::new(
                "wash",
                &LoraFile::open(&t.path().join("loras/wash.safetensors"))
                    .unwrap()
                    .a1111_hash()
                    .unwrap()
            ),
        ]
    );
    assert_eq!(m.loras().len(), 2);
    assert_eq!((m.loras()[1].te, m.loras()[1].unet), (0.5, 1.0));
    // Applying the same set again keeps the same files (nothing re-patched).
    let first = m.loras()[0].file.clone();
    lib.apply(&mut m, "a cat <lora:ink:0.8> <lora:wash:0.5:1>", &[])
        .unwrap();
    assert!(Arc::ptr_eq(&first, &m.loras()[0].file));
    // A re-run finds a renamed file by the recorded hash and says so.
    std::fs::rename(
        t.path().join("loras/ink.safetensors"),
        t.path().join("loras/renamed.safetensors"),
    )
    .unwrap();
    lib.rescan();
    let done = lib.apply(&mut m, "<lora:ink:1>", &done.hashes).unwrap();
    assert!(
        done.notes[0].contains("found by its hash"),
        "{:?}",
        done.notes
    );
    assert_eq!(done.hashes[0].hash, ink.a1111_hash().unwrap());
    assert_eq!(m.loras()[0].file.stem(), "renamed");
    // One that is nowhere is refused, naming it and its hash; the model keeps its set.
    let gone = [NamedHash::new("gone", "0123456789ab")];
    let e = lib.apply(&mut m, "<lora:gone:1>", &gone).unwrap_err();
    assert!(
        e.to_string().contains("\"gone\" (hash 0123456789ab)"),
        "{e}"
    );
    assert_eq!(m.loras().len(), 1);
    // No tags: no LoRAs.
    lib.apply(&mut m, "a cat", &[]).unwrap();
    assert!(m.loras().is_empty());
}

#[test]
fn recorded_embeddings_are_checked_by_name_and_hash() {
    let dirs = NetworkDirs {
        embeddings: vec![fixtures().join("prompt/embeddings")],
        loras: Vec::new(),
    };
    let emb = dirs.embeddings().unwrap();
    let red = emb.short_hash(emb.find("sumired").unwrap()).unwrap();
    let prompts = ["a sumired cat", "badhands"];
    let red = [NamedHash::new("sumired", &red)];
    assert!(check_embeddings(&red, &emb, &prompts).unwrap().is_empty());
    let other = [NamedHash::new("sumired", "000000000000")];
    let notes = check_embeddings(&other, &emb, &prompts).unwrap();
    assert!(
        notes[0].contains("the image used 000000000000"),
        "{notes:?}"
    );
    let bad = [NamedHash::new("badhands", "abcabcabcabc")];
    let e = check_embeddings(&bad, &emb, &prompts)
        .unwrap_err()
        .to_string();
    assert!(e.contains("badhands (abcabcabcabc)"), "{e}");
    // A prompt that no longer names it does not need it.
    assert!(check_embeddings(&bad, &emb, &["a cat"]).unwrap().is_empty());
}
