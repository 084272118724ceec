//! The ComfyUI reader against hand-written API graphs of real shape (`tests/comfy/*.json`).

use super::*;

const KSAMPLER: &str = include_str!("../../tests/comfy/txt2img-ksampler.json");
const ADVANCED: &str = include_str!("../../tests/comfy/txt2img-advanced.json");
const LORAS: &str = include_str!("../../tests/comfy/loras-clip-skip.json");
const IMG2IMG: &str = include_str!("../../tests/comfy/img2img.json");
const CUSTOM: &str = include_str!("../../tests/comfy/custom-node.json");
const HIRES: &str = include_str!("../../tests/comfy/hires-two-passes.json");
const FLUX: &str = include_str!("../../tests/comfy/flux-dev-ksampler.json");
const FLUX_CUSTOM: &str = include_str!("../../tests/comfy/flux-dev-custom.json");

/// A fixture with one input of one node replaced.
fn edited(graph: &str, node: &str, input: &str, value: serde_json::Value) -> String {
    let mut v: serde_json::Value = serde_json::from_str(graph).unwrap();
    v[node]["inputs"][input] = value;
    v.to_string()
}

fn not_understood(r: &Reading) -> Vec<&str> {
    r.notes
        .iter()
        .filter_map(|n| n.strip_prefix(NOT_UNDERSTOOD))
        .collect()
}

#[test]
fn the_default_txt2img_graph_reads_completely() {
    let r = read(KSAMPLER, Some((512, 512))).unwrap();
    assert!(r.understood, "{:?}", r.notes);
    assert!(r.notes.is_empty(), "{:?}", r.notes);
    let want = GenerationParams {
        prompt: "beautiful scenery nature glass bottle landscape, , purple galaxy bottle,".into(),
        negative_prompt: "text, watermark".into(),
        seed: 156_680_208_700_286,
        steps: 20,
        cfg: 8.0,
        sampler: "Euler".into(),
        schedule: "Normal".into(),
        width: 512,
        height: 512,
        model_name: "v1-5-pruned-emaonly".into(),
        model_hash: None,
        noise_source: "comfy-nv".into(),
        emphasis: "comfy".into(),
        quantize: "truncate".into(),
        ..Default::default()
    };
    assert_eq!(r.params, want);
}

#[test]
fn a_full_ksampler_advanced_run_reads_and_gpu_brownian_noise_is_noted() {
    let r = read(ADVANCED, Some((512, 768))).unwrap();
    assert!(r.understood, "{:?}", r.notes);
    let p = &r.params;
    assert_eq!((p.seed, p.steps, p.cfg), (721_897_303_308_196, 25, 6.5));
    assert_eq!(
        (p.sampler.as_str(), p.schedule.as_str()),
        ("DPM++ 2M SDE", "Karras")
    );
    assert_eq!((p.width, p.height), (512, 768));
    assert_eq!(p.model_name, "sd_xl_base_1.0");
    assert_eq!(r.notes.len(), 1, "{:?}", r.notes);
    assert!(r.notes[0].starts_with("dpmpp_2m_sde_gpu built its Brownian noise on the GPU"));
    assert!(
        r.notes[0].contains("dpmpp_2m_sde builds on the CPU"),
        "{}",
        r.notes[0]
    );
}

#[test]
fn a_partial_ksampler_advanced_run_is_not_understood() {
    let partial = edited(ADVANCED, "10", "end_at_step", 15.into());
    let r = read(&partial, Some((512, 768))).unwrap();
    assert!(!r.understood);
    assert_eq!(
        not_understood(&r),
        [
            "KSamplerAdvanced (node 10) runs steps 0 to 15 of 25 (add_noise enable, \
          return_with_leftover_noise disable), but only a run of every step from fresh noise \
          maps to Sumi's settings"
        ]
    );
    assert_eq!(r.params.steps, 25);
    let quiet = edited(ADVANCED, "10", "add_noise", "disable".into());
    assert!(!read(&quiet, None).unwrap().understood);
}

#[test]
fn loras_become_tags_and_clip_skip_batch_vae_and_step_noise_are_read() {
    let r = read(LORAS, Some((512, 768))).unwrap();
    assert!(r.understood, "{:?}", r.notes);
    let p = &r.params;
    assert_eq!(
        p.prompt,
        "masterpiece, best quality, 1girl, (ink wash painting:1.1), mountains \
         <lora:ink_wash:0.8> <lora:detail_tweaker:1:0.5>"
    );
    assert_eq!(
        p.negative_prompt,
        "(worst quality, low quality:1.4), embedding:easynegative"
    );
    assert_eq!(p.clip_skip, 2);
    assert_eq!(p.model_name, "anything-v5");
    assert_eq!(
        (p.sampler.as_str(), p.schedule.as_str()),
        ("Euler a", "Karras")
    );
    assert_eq!(p.noise_source, "comfy-nv");
    let notes = r.notes.join("\n");
    assert!(
        notes.contains(
            "made in a batch of 2: a re-run with this seed makes the batch's first image"
        ),
        "{notes}"
    );
    assert!(
        notes.contains("euler_ancestral adds noise at every step"),
        "{notes}"
    );
    assert!(
        notes.contains("comfy-cpu fits an image made on a CPU"),
        "{notes}"
    );
    assert!(
        notes.contains("decoded with the separate VAE vae-ft-mse-840000-ema-pruned.safetensors"),
        "{notes}"
    );
}

#[test]
fn a_lora_only_on_the_model_gets_a_zero_text_encoder_strength() {
    // The encoders take the checkpoint's CLIP directly: the LoRAs touch only the model.
    let g = edited(LORAS, "4", "clip", serde_json::json!(["1", 1]));
    let r = read(&g, None).unwrap();
    assert!(r.understood, "{:?}", r.notes);
    assert!(
        r.params
            .prompt
            .ends_with("<lora:ink_wash:0:0.8> <lora:detail_tweaker:0:0.5>"),
        "{}",
        r.params.prompt
    );
    let off = edited(LORAS, "3", "strength_model", 0.into());
    let off = edited(&off, "3", "strength_clip", 0.into());
    assert!(read(&off, None)
        .unwrap()
        .params
        .prompt
        .ends_with("mountains <lora:ink_wash:0.8>"));
}

#[test]
fn img2img_is_read_as_far_as_it_goes() {
    let r = read(IMG2IMG, Some((768, 512))).unwrap();
    assert!(!r.understood);
    assert_eq!(
        not_understood(&r),
        [
            "the sampler starts from VAEEncode (node 3), not from an empty latent (img2img, \
          inpainting or a second pass)"
        ]
    );
    let p = &r.params;
    assert_eq!(
        (p.seed, p.steps, p.sampler.as_str()),
        (280_823_642_470_253, 20, "DPM++ 2M")
    );
    assert_eq!((p.width, p.height), (768, 512), "the image's own size");
    assert!(p.prompt.starts_with("photograph of victorian woman"));
}

#[test]
fn a_custom_node_before_the_save_is_named_and_linked_seeds_are_followed() {
    let r = read(CUSTOM, Some((512, 512))).unwrap();
    assert!(!r.understood);
    assert_eq!(
        not_understood(&r),
        [
            "the saved image comes from FaceDetailer (node 14), not straight from VAEDecode (an \
          upscaler or another image step)"
        ]
    );
    let p = &r.params;
    assert_eq!((p.seed, p.steps, p.cfg), (987_654_321, 30, 5.0));
    assert_eq!(p.model_name, "realisticVisionV60B1_v51VAE");
    let unread = edited(CUSTOM, "12", "seed", serde_json::json!(["99", 0]));
    let r = read(&unread, None).unwrap();
    assert!(not_understood(&r).contains(
        &"the seed of KSampler (node 3) comes from Seed (rgthree) (node 12), which Sumi does not read"
    ), "{:?}", r.notes);
}

#[test]
fn the_image_size_picks_the_pass_among_several_saved_images() {
    let base = read(HIRES, Some((512, 512))).unwrap();
    assert!(base.understood, "{:?}", base.notes);
    assert_eq!(
        (base.params.steps, base.params.sampler.as_str()),
        (12, "DPM++ SDE")
    );
    let hires = read(HIRES, Some((1024, 1024))).unwrap();
    assert_eq!(
        not_understood(&hires),
        [
            "the sampler starts from LatentUpscale (node 8), not from an empty latent (img2img, \
          inpainting or a second pass)"
        ]
    );
    assert_eq!(hires.params.steps, 14);
    let unknown = read(HIRES, None).unwrap();
    assert!(not_understood(&unknown)[0]
        .starts_with("the graph saves images made by 2 different samplers"));
}

#[test]
fn denoise_on_an_empty_latent_is_noted() {
    let g = edited(KSAMPLER, "3", "denoise", 0.6.into());
    let r = read(&g, Some((512, 512))).unwrap();
    assert!(r.understood);
    assert_eq!(
        r.notes,
        [
            "denoise 0.6 on an empty latent: ComfyUI ran only the last 20 steps of a 33-step \
          schedule, starting from pure noise at a lower noise level, while a re-run runs the \
          whole 20-step schedule"
        ]
    );
}

#[test]
fn unknown_ids_are_kept_and_ddim_is_euler() {
    let g = edited(KSAMPLER, "3", "sampler_name", "heunpp2".into());
    let g = edited(&g, "3", "scheduler", "linear_quadratic".into());
    let r = read(&g, None).unwrap();
    assert_eq!(
        (r.params.sampler.as_str(), r.params.schedule.as_str()),
        ("heunpp2", "Linear Quadratic")
    );
    let g = edited(KSAMPLER, "3", "sampler_name", "ddim".into());
    assert_eq!(read(&g, None).unwrap().params.sampler, "Euler");
}

#[test]
fn text_that_is_no_graph_is_none() {
    for text in [
        "",
        "a prompt",
        "[]",
        "{}",
        "{\"a\": 1}",
        "{\"3\": {\"inputs\": {}}}",
        "nul\0l",
    ] {
        assert!(read(text, None).is_none(), "{text:?}");
    }
    let lone = read("{\"1\": {\"class_type\": \"Note\"}}", Some((8, 8))).unwrap();
    assert!(!lone.understood);
    assert_eq!(
        lone.notes,
        [format!(
            "{NOT_UNDERSTOOD}no node saves an image (no SaveImage)"
        )]
    );
    assert_eq!((lone.params.width, lone.params.cfg), (8, 8.0));
}

#[test]
fn cycles_and_broken_links_end() {
    let cycle = r#"{
        "1": {"class_type": "SaveImage", "inputs": {"images": ["2", 0]}},
        "2": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["2", 0]}},
        "3": {"class_type": "KSampler", "inputs": {"model": ["4", 0], "latent_image": ["3", 0],
              "positive": ["5", 0], "negative": [5, 0], "seed": ["3", 0]}},
        "4": {"class_type": "LoraLoader", "inputs": {"model": ["4", 0], "clip": ["4", 1]}},
        "5": {"class_type": "CLIPTextEncode", "inputs": {"text": ["5", 0], "clip": ["4", 1]}}
    }"#;
    let r = read(cycle, None).unwrap();
    assert!(!r.understood);
    assert!(
        r.notes.iter().any(|n| n.contains("too long or loops")),
        "{:?}",
        r.notes
    );
}

#[test]
fn a_flux_graph_with_a_ksampler_reads_completely() {
    let r = read(FLUX, Some((1024, 768))).unwrap();
    assert!(r.understood, "{:?}", r.notes);
    let want = GenerationParams {
        prompt: "a watercolor fox in a snowy birch forest, morning light".into(),
        negative_prompt: String::new(),
        seed: 972_054_013_131_368,
        steps: 20,
        cfg: 1.0,
        guidance: Some(3.5),
        max_sequence_length: Some(256),
        sampler: "Euler".into(),
        schedule: "Simple".into(),
        width: 1024,
        height: 768,
        model_name: "flux1-dev".into(),
        // As Forge's modules: the VAE first, then the text encoders in the loader's order.
        modules: vec!["ae".into(), "t5xxl_fp16".into(), "clip_l".into()],
        ..with_comfy_rules(GenerationParams::default())
    };
    assert_eq!(r.params, want);
    assert_eq!(
        r.notes,
        [
            "encoded with the text encoders t5xxl_fp16.safetensors and clip_l.safetensors, \
             which a re-run looks for beside the model",
            "decoded with the separate VAE ae.safetensors, which a re-run looks for beside the \
             model"
        ]
    );
}

#[test]
fn comfyuis_flux_example_with_custom_sampling_reads_completely() {
    let r = read(FLUX_CUSTOM, Some((1024, 1024))).unwrap();
    assert!(r.understood, "{:?}", r.notes);
    let p = &r.params;
    assert_eq!((p.seed, p.steps, p.cfg), (219_670_278_747_233, 20, 1.0));
    assert_eq!((p.guidance, p.max_sequence_length), (Some(3.5), Some(256)));
    assert_eq!(
        (p.sampler.as_str(), p.schedule.as_str()),
        ("Euler", "Simple")
    );
    assert_eq!((p.width, p.height), (1024, 1024));
    assert_eq!(p.model_name, "flux1-dev");
    assert!(p.prompt.starts_with("cute anime girl"), "{}", p.prompt);
    assert_eq!(p.negative_prompt, "");
    assert!(
        r.notes[0].starts_with("ComfyUI ran the weights of flux1-dev as fp8_e4m3fn"),
        "{:?}",
        r.notes
    );
}

#[test]
fn a_flux_time_shift_other_than_the_default_is_not_understood() {
    for (w, h) in [(1024, 1024), (512, 2048)] {
        let g = edited(FLUX_CUSTOM, "30", "width", w.into());
        let r = read(&edited(&g, "30", "height", h.into()), None).unwrap();
        assert!(r.understood, "{w}x{h}: {:?}", r.notes);
    }
    let small = edited(FLUX_CUSTOM, "30", "width", 512.into());
    let r = read(&edited(&small, "30", "height", 512.into()), None).unwrap();
    assert_eq!(
        not_understood(&r),
        [
            "ModelSamplingFlux (node 30) shifts the sigmas by mu 0.6300 for 512x512, while Sumi's \
          Flux schedules shift by ComfyUI's default 1.15 for Flux dev"
        ]
    );
}

#[test]
fn flux_conditioning_nodes_map_to_prompt_and_guidance_or_are_refused() {
    // CLIPTextEncodeFlux with one text and its own guidance, no FluxGuidance after it.
    let mut g: serde_json::Value = serde_json::from_str(FLUX).unwrap();
    g["6"] = serde_json::json!({"class_type": "CLIPTextEncodeFlux", "inputs": {
        "clip_l": "a fox", "t5xxl": "a fox", "guidance": 2.5, "clip": ["11", 0]}});
    g["31"]["inputs"]["positive"] = serde_json::json!(["6", 0]);
    let r = read(&g.to_string(), None).unwrap();
    assert!(r.understood, "{:?}", r.notes);
    assert_eq!(
        (r.params.prompt.as_str(), r.params.guidance),
        ("a fox", Some(2.5))
    );
    // Two texts cannot be one prompt.
    g["6"]["inputs"]["clip_l"] = "fox, snow".into();
    let r = read(&g.to_string(), None).unwrap();
    assert_eq!(
        not_understood(&r),
        ["CLIPTextEncodeFlux (node 6) gives CLIP-L and T5 different texts, and Sumi encodes one \
          prompt with both (the T5 text is kept)"]
    );
    // A zeroed negative only means "none" at CFG 1.
    let r = read(&edited(FLUX, "31", "cfg", 2.0.into()), None).unwrap();
    assert_eq!(
        not_understood(&r),
        [
            "the negative conditioning is zeroed (ConditioningZeroOut) and CFG is 2, while Sumi's \
          negative is always an encoded prompt"
        ]
    );
    // Text encoders of another model than Flux.
    let r = read(&edited(FLUX, "11", "type", "sdxl".into()), None).unwrap();
    assert_eq!(
        not_understood(&r),
        [
            "DualCLIPLoader (node 11) loads text encoders of type sdxl, and Sumi reads only \
          Flux's pair from it"
        ]
    );
}

#[test]
fn custom_sampling_from_nodes_sumi_does_not_read_is_not_understood() {
    let mut g: serde_json::Value = serde_json::from_str(FLUX_CUSTOM).unwrap();
    g["16"]["class_type"] = "SamplerDPMPP_2M_SDE".into();
    g["17"]["class_type"] = "KarrasScheduler".into();
    g["22"] = serde_json::json!({"class_type": "CFGGuider", "inputs": {
        "model": ["30", 0], "positive": ["26", 0], "negative": ["6", 0], "cfg": 4.5}});
    let r = read(&g.to_string(), None).unwrap();
    assert_eq!(
        not_understood(&r),
        [
            "SamplerCustomAdvanced (node 13) takes its sampler from SamplerDPMPP_2M_SDE (node 16), \
             not from KSamplerSelect",
            "SamplerCustomAdvanced (node 13) takes its sigmas from KarrasScheduler (node 17), not \
             from BasicScheduler"
        ]
    );
    assert_eq!(r.params.cfg, 4.5);
    assert_eq!(r.params.negative_prompt, r.params.prompt);
}
