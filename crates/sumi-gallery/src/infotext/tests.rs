use proptest::prelude::*;

use super::*;

fn sample() -> GenerationParams {
    GenerationParams {
        prompt: "a red fox in snow, (masterpiece:1.2)".into(),
        negative_prompt: "blurry, lowres".into(),
        seed: 1_919_484_475,
        steps: 20,
        cfg: 7.0,
        sampler: "DPM++ 2M".into(),
        schedule: "Karras".into(),
        width: 768,
        height: 512,
        model_name: "v1-5-pruned-emaonly".into(),
        model_hash: Some("6ce0161689".into()),
        noise_source: "cpu".into(),
        // What a parameters text reads back as: A1111's images truncate to 8 bits.
        quantize: "truncate".into(),
        ..Default::default()
    }
}

#[test]
fn formats_exactly_like_a1111() {
    assert_eq!(
        format(&sample()),
        "a red fox in snow, (masterpiece:1.2)\n\
         Negative prompt: blurry, lowres\n\
         Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 1919484475, \
         Size: 768x512, Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, RNG: CPU"
    );
}

#[test]
fn a_separate_vae_is_written_and_read_as_a1111_names_it() {
    let mut p = sample();
    p.vae_name = Some("vae-ft-mse-840000-ema-pruned.safetensors".into());
    p.vae_hash = Some("735e4c3a44".into());
    let text = format(&p);
    assert!(
        text.contains(
            "Model: v1-5-pruned-emaonly, VAE hash: 735e4c3a44, \
             VAE: vae-ft-mse-840000-ema-pruned.safetensors, RNG: CPU"
        ),
        "{text}"
    );
    assert_eq!(parse(&text).to_params().unwrap(), p);
    // As A1111 1.10 writes it, between the model and the variation seed.
    let a1111 = "x\nSteps: 20, Sampler: Euler a, Schedule type: Automatic, CFG scale: 7, \
                 Seed: 1, Size: 512x512, Model hash: 6ce0161689, Model: v1-5, \
                 VAE hash: 735e4c3a44, VAE: vae-ft-mse.safetensors, Version: v1.10.1";
    let read = parse(a1111);
    assert_eq!(read.vae_hash.as_deref(), Some("735e4c3a44"));
    assert_eq!(read.vae_name.as_deref(), Some("vae-ft-mse.safetensors"));
    assert!(read.extras.iter().all(|(k, _)| !k.starts_with("VAE")));
}

#[test]
fn forge_modules_are_written_last_and_read_in_order() {
    // As Forge 2 writes a Flux dev image whose VAE and text encoders were chosen apart.
    let forge = "a fox\nSteps: 20, Sampler: Euler, Schedule type: Simple, CFG scale: 1, \
                 Distilled CFG Scale: 3.5, Seed: 7, Size: 896x1152, Model hash: 0b8e6c2d4f, \
                 Model: flux1-dev-Q8_0, Version: f2.0.1v1.10.1-previous-635-gf5330788, \
                 Module 1: ae, Module 2: clip_l, Module 3: t5xxl_fp8_e4m3fn";
    let read = parse(forge);
    assert_eq!(read.modules, ["ae", "clip_l", "t5xxl_fp8_e4m3fn"]);
    assert!(read.extras.iter().all(|(k, _)| !k.starts_with("Module")));
    let p = read.to_params().unwrap();
    assert_eq!(p.modules, ["ae", "clip_l", "t5xxl_fp8_e4m3fn"]);
    assert_eq!(p.guidance, Some(3.5));

    // Sumi writes them last too, and no A1111 `VAE`, which Forge would take as the only
    // module; the VAE's hash stays.
    let mut p = sample();
    p.modules = vec!["my-ae".into(), "clip_l".into(), "t5xxl_fp16".into()];
    p.vae_name = Some("my-ae.safetensors".into());
    p.vae_hash = Some("735e4c3a44".into());
    let text = format(&p);
    assert!(
        text.ends_with("RNG: CPU, Module 1: my-ae, Module 2: clip_l, Module 3: t5xxl_fp16"),
        "{text}"
    );
    assert!(
        text.contains("VAE hash: 735e4c3a44") && !text.contains("VAE: "),
        "{text}"
    );
    let back = parse(&text).to_params().unwrap();
    assert_eq!(back.modules, p.modules);
    assert_eq!(back.vae_name, None);

    // A number out of order is not a module list Sumi can trust: kept as it came.
    let odd =
        parse("x\nSteps: 1, Sampler: Euler, CFG scale: 1, Seed: 1, Size: 64x64, Module 2: ae");
    assert!(odd.modules.is_empty());
    assert_eq!(odd.extras, [("Module 2".to_string(), "ae".to_string())]);
}

#[test]
fn omits_empty_negative_and_quotes_awkward_values() {
    let mut p = sample();
    p.negative_prompt.clear();
    p.cfg = 7.5;
    p.model_name = "my model, v2: final".into();
    p.model_hash = None;
    let text = format(&p);
    assert_eq!(
        text,
        "a red fox in snow, (masterpiece:1.2)\n\
         Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7.5, Seed: 1919484475, \
         Size: 768x512, Model: \"my model, v2: final\", RNG: CPU"
    );
    assert_eq!(parse(&text).to_params().unwrap(), p);
}

#[test]
fn round_trips_multiline_prompts() {
    let mut p = sample();
    p.prompt = "line one\nline two, Steps: 3\n\n  indented".into();
    p.negative_prompt = "neg one\nneg two".into();
    p.model_name = "a\nb".into();
    assert_eq!(parse(&format(&p)).to_params().unwrap(), p);
}

#[test]
fn round_trips_empty_prompts() {
    let mut p = sample();
    p.prompt.clear();
    p.negative_prompt.clear();
    assert_eq!(parse(&format(&p)).to_params().unwrap(), p);
    p.negative_prompt = "only negative".into();
    assert_eq!(parse(&format(&p)).to_params().unwrap(), p);
}

#[test]
fn reads_a1111_v1_6_with_legacy_sampler_and_extras() {
    let text = "masterpiece, best quality, 1girl, <lora:detail:0.6>\n\
        Negative prompt: (worst quality:1.4), easynegative\n\
        Steps: 28, Sampler: DPM++ 2M Karras, CFG scale: 6.5, Seed: 3263925463, Size: 512x768, \
        Model hash: 7f96a1a9ca, Model: anything-v5, Denoising strength: 0.45, Clip skip: 2, \
        Hires upscale: 2, Hires upscaler: Latent, Lora hashes: \"detail: 62e6ad0d3e7f\", Version: v1.6.0";
    let p = parse(text);
    assert!(p.has_settings);
    assert_eq!(
        p.prompt,
        "masterpiece, best quality, 1girl, <lora:detail:0.6>"
    );
    assert_eq!(p.negative_prompt, "(worst quality:1.4), easynegative");
    assert_eq!(p.sampler.as_deref(), Some("DPM++ 2M"));
    assert_eq!(p.schedule.as_deref(), Some("Karras"));
    assert_eq!(p.cfg, Some(6.5));
    assert_eq!(p.seed, Some(3_263_925_463));
    assert_eq!((p.width, p.height), (Some(512), Some(768)));
    assert_eq!(p.model_hash.as_deref(), Some("7f96a1a9ca"));
    assert_eq!(p.noise_source, None);
    let hires = p.to_params().unwrap().hires.unwrap();
    assert_eq!(
        (hires.scale, hires.strength, hires.upscaler.as_str()),
        (2.0, 0.45, "Latent")
    );
    let keys: Vec<&str> = p.extras.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["Version"]);
    assert_eq!(p.lora_hashes, [NamedHash::new("detail", "62e6ad0d3e7f")]);
    assert_eq!(p.clip_skip, Some(2));
    let params = p.to_params().unwrap();
    assert_eq!(params.noise_source, "gpu");
    assert_eq!(params.clip_skip, 2);
}

#[test]
fn reads_a1111_v1_9_schedule_type_without_negative() {
    let text = "portrait of an old sailor\n\
        Steps: 30, Sampler: Euler a, Schedule type: Automatic, CFG scale: 7, Seed: 42, \
        Size: 1024x1024, Model hash: 31e35c80fc, Model: sd_xl_base_1.0, RNG: CPU, Version: v1.10.1";
    let p = parse(text).to_params().unwrap();
    assert_eq!(p.prompt, "portrait of an old sailor");
    assert_eq!(p.negative_prompt, "");
    assert_eq!(p.sampler, "Euler a");
    assert_eq!(p.schedule, "Automatic");
    assert_eq!(p.noise_source, "cpu");
}

#[test]
fn reads_stable_diffusion_cpp_style() {
    let text = "a lovely cat\n\
        Steps: 20, CFG scale: 7, Guidance: 3.5, Eta: 0, Seed: 42, Size: 512x512, Model: v1-5, \
        RNG: cuda, Sampler: euler_a, Schedule type: karras, Version: stable-diffusion.cpp";
    let p = parse(text).to_params().unwrap();
    assert_eq!(p.sampler, "Euler a");
    assert_eq!(p.schedule, "Karras");
    assert_eq!(p.noise_source, "cuda");
    assert_eq!(p.model_hash, None);
}

#[test]
fn reads_fooocus_and_krita_style() {
    let fooocus = "cinematic still of a lighthouse, stormy sea\n\
        Negative prompt: unrealistic, saturated\n\
        Steps: 30, Sampler: DPM++ 2M SDE Karras, Seed: 8675309, Size: 1152x896, CFG scale: 4, \
        Sharpness: 2, ADM Guidance: \"(1.5, 0.8, 0.3)\", Model: juggernautXL_v8Rundiffusion, \
        Refiner: None, Styles: \"['Fooocus V2', 'Fooocus Enhance']\", Version: Fooocus v2.3.1";
    let p = parse(fooocus);
    assert_eq!(p.sampler.as_deref(), Some("DPM++ 2M SDE"));
    assert_eq!(p.schedule.as_deref(), Some("Karras"));
    assert!(p
        .extras
        .contains(&("ADM Guidance".into(), "(1.5, 0.8, 0.3)".into())));
    assert_eq!(p.to_params().unwrap().width, 1152);

    let krita =
        "a castle on a hill\r\nSteps: 25, Sampler: Euler, Schedule type: Simple, CFG scale: 5.5, \
        Seed: 12, Size: 832x1216, Model: ponyDiffusionV6XL, Denoising strength: 1\r\n";
    let p = parse(krita).to_params().unwrap();
    assert_eq!(p.prompt, "a castle on a hill\r");
    assert_eq!(p.schedule, "Simple");
    assert_eq!(p.cfg, 5.5);
}

#[test]
fn legacy_suffixes_split_only_at_word_boundary() {
    for (name, sampler, schedule) in [
        ("DPM++ 2M SDE Exponential", "DPM++ 2M SDE", "Exponential"),
        ("Euler SGM Uniform", "Euler", "SGM Uniform"),
        ("DPM++ 2M Align Your Steps", "DPM++ 2M", "Align Your Steps"),
        ("DDIM", "DDIM", "Automatic"),
        ("Euler a", "Euler a", "Automatic"),
    ] {
        let text = format!("x\nSteps: 1, Sampler: {name}, CFG scale: 1, Seed: 1, Size: 8x8");
        let p = parse(&text).to_params().unwrap();
        assert_eq!(
            (p.sampler.as_str(), p.schedule.as_str()),
            (sampler, schedule)
        );
    }
}

#[test]
fn text_without_settings_is_all_prompt() {
    let p = parse("just a caption, nothing else");
    assert!(!p.has_settings);
    assert_eq!(p.prompt, "just a caption, nothing else");
    assert_eq!(p.to_params(), Err(InfotextError::NoSettings));
}

#[test]
fn missing_seed_is_reported() {
    let p = parse("x\nSteps: 20, Sampler: Euler, CFG scale: 7, Size: 512x512");
    assert_eq!(p.to_params(), Err(InfotextError::Missing("Seed")));
    let p = parse("x\nSteps: many, Sampler: Euler, CFG scale: 7, Seed: 1, Size: 512x512");
    assert_eq!(p.to_params(), Err(InfotextError::Missing("Steps")));
    assert_eq!(p.extras, [("Steps".to_string(), "many".to_string())]);
}

/// The lenient reading of a text, with the image size 64x32.
fn lenient(text: &str) -> Lenient {
    parse(text).to_params_lenient(Some((64, 32))).unwrap()
}

#[test]
fn missing_settings_take_a1111_defaults_and_are_named() {
    let l = lenient("x\nSampler: Euler, CFG scale: 7, Schedule type: Karras");
    assert_eq!(
        l.problems,
        [
            "the text has no Steps: 20 (A1111's default) recorded",
            "the text has no Seed: 0 recorded, so the image cannot be made again exactly",
            "the text has no Size: the image's own size 64x32 recorded",
        ]
    );
    let p = &l.params;
    assert_eq!((p.steps, p.seed, p.width, p.height), (20, 0, 64, 32));
    assert_eq!(
        (p.sampler.as_str(), p.schedule.as_str()),
        ("Euler", "Karras")
    );
    let l = lenient("x\nSteps: 3, CFG scale: 7, Seed: 1, Size: 8x8");
    assert_eq!(
        l.problems,
        ["the text has no Sampler: DPM++ 2M (A1111's default) recorded"]
    );
    assert_eq!(
        (l.params.sampler.as_str(), l.params.schedule.as_str()),
        ("DPM++ 2M", "Automatic")
    );
}

#[test]
fn unreadable_settings_say_what_they_held() {
    let l = lenient(
        "x\nSteps: 99999999999999999999, Sampler: Euler, CFG scale: NaN, Seed: -1, Size: 8, \
         ENSD: x, Clip skip: two, Variation seed strength: inf",
    );
    let size = parse("x\nSteps: 1, Sampler: E, CFG scale: 1, Seed: 1, Size: 8")
        .to_params_lenient(None)
        .unwrap();
    assert_eq!(
        size.problems,
        ["Size \"8\" is not a size in whole pixels (WIDTHxHEIGHT): 512x512 (A1111's default) recorded"]
    );
    assert_eq!(
        l.problems,
        [
            "Steps \"99999999999999999999\" is not a whole number from 0 to 4294967295: 20 (A1111's default) recorded",
            "CFG scale \"NaN\" is not a number: 7 (A1111's default) recorded",
            "Seed \"-1\" is not a whole number from 0 to 18446744073709551615: 0 recorded, so the image cannot be made again exactly",
            "Size \"8\" is not a size in whole pixels (WIDTHxHEIGHT): the image's own size 64x32 recorded",
            "ENSD \"x\" is not a whole number from 0 to 18446744073709551615: 0 (none) recorded",
            "Variation seed strength \"inf\" is not a finite number: 0 recorded",
            "Clip skip \"two\" is not a whole number from 0 to 4294967295: 1 (none skipped) recorded",
        ]
    );
    let p = &l.params;
    assert_eq!(
        (p.steps, p.cfg, p.seed, p.ensd, p.clip_skip),
        (20, 7.0, 0, 0, 1)
    );
    assert_eq!(p.variation_strength, 0.0);
}

#[test]
fn readable_values_are_kept_even_when_no_generator_takes_them() {
    let l = lenient("x\nSteps: 0, Sampler: Nope, CFG scale: -3, Seed: 1, Size: 7x9, Clip skip: 0");
    assert!(l.problems.is_empty(), "{:?}", l.problems);
    let p = &l.params;
    assert_eq!(
        (p.steps, p.cfg, p.width, p.height, p.clip_skip),
        (0, -3.0, 7, 9, 0)
    );
    assert_eq!(p.sampler, "Nope");
}

#[test]
fn long_unreadable_values_are_cut_short_in_notes() {
    let text = format!(
        "x\nSteps: {}, Sampler: E, CFG scale: 1, Seed: 1, Size: 8x8",
        "9".repeat(5000)
    );
    let l = lenient(&text);
    assert_eq!(l.problems.len(), 1);
    assert!(l.problems[0].len() < 200, "{}", l.problems[0]);
    assert!(l.problems[0].contains("…\""), "{}", l.problems[0]);
    assert_eq!(
        parse("a caption").to_params_lenient(None),
        Err(InfotextError::NoSettings)
    );
}

#[test]
fn comfy_ids_in_a_text_read_as_a1111_names() {
    let p = parse("x\nSteps: 3, Sampler: dpmpp_2m_sde_gpu, Schedule type: linear_quadratic, CFG scale: 1, Seed: 1, Size: 8x8");
    assert_eq!(p.sampler.as_deref(), Some("DPM++ 2M SDE"));
    assert_eq!(p.schedule.as_deref(), Some("Linear Quadratic"));
}

/// Strings Sumi might write: printable text with newlines, commas, colons and quotes.
#[test]
fn lora_and_ti_hashes_are_written_and_read_as_a1111_does() {
    let mut p = sample();
    p.prompt = "a fox <lora:ink wash:0.7>, sumired".into();
    p.lora_hashes = vec![
        NamedHash::new("ink wash", "62e6ad0d3e7f"),
        NamedHash::new("b,a:d", "0123456789ab"),
    ];
    p.ti_hashes = vec![NamedHash::new("sumired", "abcdef012345")];
    let text = format(&p);
    assert!(
        text.ends_with(
            "RNG: CPU, Lora hashes: \"ink wash: 62e6ad0d3e7f, bad: 0123456789ab\", \
             TI hashes: \"sumired: abcdef012345\""
        ),
        "{text}"
    );
    assert_eq!(parse(&text).to_params().unwrap(), p);
    // A value that is not a list of `name: hash` is kept as an unknown pair.
    let odd = parse("p\nSteps: 2, Sampler: Euler, Seed: 1, TI hashes: \"x: not hex\"");
    assert!(odd.ti_hashes.is_empty());
    assert_eq!(
        odd.extras,
        [("TI hashes".to_string(), "x: not hex".to_string())]
    );
}

fn text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 ,:\"\\\\()\\n\\té-]{0,40}"
        .prop_filter("a line starting with the negative key is ambiguous", |s| {
            !s.split('\n').any(|l| l.starts_with(NEGATIVE_PREFIX))
        })
}

/// A name without control characters (sampler, model, ...).
fn name() -> impl Strategy<Value = String> {
    "[A-Z][a-zA-Z0-9 +,:\"._-]{0,20}"
}

fn params() -> impl Strategy<Value = GenerationParams> {
    (
        (text(), text(), any::<u64>(), any::<u32>(), -100.0f64..100.0),
        (name(), name(), any::<u32>(), any::<u32>()),
        (
            name(),
            proptest::option::of("[0-9a-f]{10}"),
            "cpu|gpu|nv|[A-Za-z]{1,6}",
        ),
        (
            any::<u64>(),
            proptest::option::of((any::<u64>(), 0.01f64..1.0)),
            1u32..12,
        ),
        (
            proptest::collection::vec(("[a-zA-Z0-9_-]{1,12}", "[0-9a-f]{12}"), 0..3),
            proptest::collection::vec(("[a-zA-Z0-9_-]{1,12}", "[0-9a-f]{12}"), 0..3),
        ),
    )
        .prop_map(
            |(
                (prompt, negative_prompt, seed, steps, cfg),
                (sampler, schedule, width, height),
                (model_name, model_hash, noise_source),
                (ensd, variation, clip_skip),
                (loras, tis),
            )| GenerationParams {
                prompt,
                negative_prompt,
                seed,
                steps,
                cfg,
                sampler,
                schedule,
                width,
                height,
                model_name,
                model_hash,
                noise_source,
                ensd,
                variation_seed: variation.map(|v| v.0),
                variation_strength: variation.map_or(0.0, |v| v.1),
                clip_skip,
                quantize: "truncate".into(),
                lora_hashes: loras.iter().map(|(n, h)| NamedHash::new(n, h)).collect(),
                ti_hashes: tis.iter().map(|(n, h)| NamedHash::new(n, h)).collect(),
                ..Default::default()
            },
        )
        .prop_filter("A1111 spellings of noise sources map to lower case", |p| {
            !matches!(p.noise_source.as_str(), "CPU" | "GPU" | "NV")
        })
}

proptest! {
    #[test]
    fn format_then_parse_is_exact(p in params()) {
        prop_assert_eq!(parse(&format(&p)).to_params().unwrap(), p);
    }

    #[test]
    fn parse_never_panics(s in "\\PC*") {
        let _ = parse(&s);
    }

    #[test]
    fn parse_never_panics_on_settings_like_text(s in "[a-zA-Z :,\"\\\\\\n]{0,80}") {
        let _ = parse(&format!("p\n{s}")).to_params();
    }
}

#[test]
fn a_forge_flux_infotext_reads_with_forges_t5_length() {
    let forge = "a cabin in the woods\nSteps: 20, Sampler: Euler, Schedule type: Simple, \
                 CFG scale: 1, Distilled CFG Scale: 3.5, Seed: 42, Size: 896x1152, \
                 Model hash: 275ef623d3, Model: flux1-dev-Q8_0, Version: f2.0.1v1.10.1-previous-313";
    let p = parse(forge).to_params().unwrap();
    assert_eq!((p.guidance, p.max_sequence_length), (Some(3.5), Some(256)));
    assert_eq!((p.cfg, p.schedule.as_str()), (1.0, "Simple"));
    // Sumi writes the length it used, which then wins.
    let sumi = format(&GenerationParams {
        guidance: Some(3.5),
        max_sequence_length: Some(512),
        ..sample()
    });
    assert!(sumi.contains("Distilled CFG Scale: 3.5") && sumi.contains("Max sequence length: 512"));
    assert_eq!(
        parse(&sumi).to_params().unwrap().max_sequence_length,
        Some(512)
    );
    // A model without distilled guidance keeps its own default.
    assert_eq!(
        parse(&format(&sample()))
            .to_params()
            .unwrap()
            .max_sequence_length,
        None
    );
}
