//! `sumi generate` and `sumi samplers`.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use sumi_engine::model::LoadOptions;
use sumi_engine::sampling::table::{parse_sampler, schedule};
use sumi_engine::{sampling, Event, Parametrization, Request};
use sumi_runtime::compare::set_sampler;
use sumi_runtime::model_files;
use sumi_runtime::networks::{self, parse_lora_arg, LoraLibrary, NetworkDirs};
use sumi_runtime::seed::{parse_seed, random_seed};

use crate::reproduce;

/// Options of `sumi generate`.
#[derive(Args)]
pub struct GenerateArgs {
    /// Start from gallery image ID: its prompt, seed, steps, CFG, sampler, schedule, size and
    /// model; the options given here change them.
    #[arg(long, value_name = "ID")]
    from: Option<i64>,
    /// Diffusers model folder, single-file .safetensors checkpoint, or a Hugging Face repo id
    /// already in the local cache (default: the model of --from, else the built-in demo model or
    /// $SUMI_DEMO_MODEL).
    #[arg(long)]
    model: Option<String>,
    /// A separate VAE: a .safetensors file or a diffusers (vae) folder.
    #[arg(long, value_name = "PATH")]
    vae: Option<PathBuf>,
    /// Flux's T5 text encoder for a transformer file: .safetensors or .gguf, or a diffusers
    /// folder (default: found beside the file or in ComfyUI's models/text_encoders, models/clip).
    #[arg(long, value_name = "PATH")]
    t5: Option<PathBuf>,
    /// Flux's CLIP-L text encoder for a transformer file: ComfyUI's clip_l.safetensors or a
    /// diffusers folder (default: found as --t5 is).
    #[arg(long = "clip-l", value_name = "PATH")]
    clip_l: Option<PathBuf>,
    /// Flux parts loaded only while used, to lower the peak memory: none, encoders (T5 while
    /// prompts are encoded) or sequential (also the transformer while sampling).
    #[arg(long, default_value = "none", value_name = "MODE")]
    offload: String,
    /// Folder holding tokenizer/ (and tokenizer_2/) for single-file checkpoints; repeatable.
    #[arg(long = "tokenizers", value_name = "DIR")]
    tokenizers: Vec<PathBuf>,
    /// A diffusers folder whose unet/vae/text_encoder configs (and tokenizers) to use for a single file.
    #[arg(long = "config", value_name = "DIR")]
    config_dir: Option<PathBuf>,
    /// Override what the model predicts: eps or v (single files do not always say).
    #[arg(long, value_name = "eps|v")]
    prediction: Option<String>,
    /// What to draw.
    #[arg(long, short, required_unless_present = "from")]
    prompt: Option<String>,
    /// What to avoid (default: nothing).
    #[arg(long, short = 'n')]
    negative_prompt: Option<String>,
    /// Seed (0 to 18446744073709551615); random when omitted or -1.
    #[arg(long, allow_hyphen_values = true)]
    seed: Option<String>,
    /// Sampler steps (default: the model's).
    #[arg(long)]
    steps: Option<u32>,
    /// Classifier-free guidance scale (default: the model's; 1 disables guidance).
    #[arg(long, allow_negative_numbers = true)]
    cfg: Option<f64>,
    /// Distilled guidance scale of guidance-distilled models (Flux dev, default 3.5; Forge's
    /// "Distilled CFG Scale"); ignored with a warning by other models.
    #[arg(long, value_name = "X")]
    guidance: Option<f64>,
    /// T5 tokens per prompt for Flux (default: 512 for dev, 256 for schnell).
    #[arg(long, value_name = "N")]
    max_sequence_length: Option<u32>,
    /// Sampler name, e.g. "Euler a", "DPM++ 2M" or a ComfyUI id; legacy names like "DPM++ 2M Karras" work.
    #[arg(long)]
    sampler: Option<String>,
    /// Schedule name, e.g. "Normal" or "Karras".
    #[arg(long)]
    schedule: Option<String>,
    /// Image width: a multiple of 8 (of 4 for the demo model); default: the model's
    #[arg(long)]
    width: Option<u32>,
    /// Image height: a multiple of 8 (of 4 for the demo model); default: the model's
    #[arg(long)]
    height: Option<u32>,
    /// Noise source: cpu (PyTorch's CPU generator, as diffusers and A1111's "CPU"), nv (A1111's
    /// NVIDIA GPU noise, its default on NVIDIA cards), comfy-cpu or comfy-nv (ComfyUI's rules).
    #[arg(long, value_name = "SOURCE")]
    rng: Option<String>,
    /// A1111's eta noise seed delta (ENSD): the step noise of ancestral and SDE samplers comes
    /// from seed + N.
    #[arg(long, value_name = "N")]
    ensd: Option<u64>,
    /// A1111's variation seed, mixed into the starting noise by --variation-strength.
    #[arg(long, value_name = "SEED")]
    variation_seed: Option<u64>,
    /// How far the starting noise moves towards the variation seed's, 0 to 1.
    #[arg(long, value_name = "S")]
    variation_strength: Option<f64>,
    /// CLIP layers to skip from the end (A1111's "Clip skip": 2 = the penultimate layer); A1111
    /// applies it to SD 1.x only, ComfyUI's rules (--emphasis comfy) to every model.
    #[arg(long, value_name = "N")]
    clip_skip: Option<u32>,
    /// How prompt weights apply: original (A1111's default), no-norm, ignore, none (brackets are
    /// text) or comfy (ComfyUI's prompt rules).
    #[arg(long, value_name = "MODE")]
    emphasis: Option<String>,
    /// A folder (or file) of textual-inversion embeddings, searched before the embeddings folder
    /// of Sumi's home, $SUMI_EMBEDDINGS_DIRS and the A1111/ComfyUI trees; repeatable.
    #[arg(long = "embeddings", alias = "embeddings-dir", value_name = "DIR")]
    embeddings: Vec<PathBuf>,
    /// Apply a LoRA: a name from the LoRA folders or a .safetensors file, with optional weights
    /// NAME[:WEIGHT[:UNET_WEIGHT]]; added to the prompt as <lora:NAME:WEIGHT>; repeatable.
    #[arg(long = "lora", value_name = "NAME[:W[:UNET_W]]")]
    loras: Vec<String>,
    /// A folder of LoRAs, searched before the loras folder of Sumi's home, $SUMI_LORA_DIRS and
    /// the A1111/ComfyUI trees; repeatable.
    #[arg(long = "lora-dir", value_name = "DIR")]
    lora_dirs: Vec<PathBuf>,
    /// Also write the image to this PNG file (an existing file only with --force).
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// Overwrite the --output file if it exists.
    #[arg(long)]
    force: bool,
    /// Write each step's preview as a PNG into this folder.
    #[arg(long, value_name = "DIR")]
    previews: Option<PathBuf>,
    /// Do not save the image into the gallery.
    #[arg(long)]
    no_save: bool,
    /// Compute device: cpu, cuda[:N] or metal (default: a GPU when built with one, else cpu).
    #[arg(long, default_value = "auto")]
    device: String,
    /// Precision: auto (f32 on the CPU, f16 on a GPU), f32, f16 or bf16 (on the CPU: bf16
    /// weight matrices, f32 activations).
    #[arg(long, default_value = "auto")]
    dtype: String,
    /// Image-to-image and hires fix.
    #[command(flatten)]
    img2img: crate::img2img_args::Img2ImgArgs,
}

impl GenerateArgs {
    /// `sumi gallery rerun`: generation `id` again, as it was, with these choices of how to run it.
    pub fn rerun(
        id: i64,
        model: Option<String>,
        vae: Option<PathBuf>,
        device: String,
        dtype: String,
        init_image: Option<String>,
        mask: Option<PathBuf>,
    ) -> Self {
        Self {
            from: Some(id),
            model,
            vae,
            t5: None,
            clip_l: None,
            offload: "none".into(),
            tokenizers: Vec::new(),
            config_dir: None,
            prediction: None,
            prompt: None,
            negative_prompt: None,
            seed: None,
            steps: None,
            cfg: None,
            guidance: None,
            max_sequence_length: None,
            sampler: None,
            schedule: None,
            width: None,
            height: None,
            rng: None,
            ensd: None,
            variation_seed: None,
            variation_strength: None,
            clip_skip: None,
            emphasis: None,
            embeddings: Vec::new(),
            loras: Vec::new(),
            lora_dirs: Vec::new(),
            output: None,
            force: false,
            previews: None,
            no_save: false,
            device,
            dtype,
            img2img: crate::img2img_args::Img2ImgArgs {
                init_image,
                mask,
                ..Default::default()
            },
        }
    }
}

/// Refuses what no model accepts before the model loads, which can take a while; what depends on
/// the model (sizes it can make, a sampler's schedules) is checked after.
fn check_before_load(args: &GenerateArgs) -> Result<()> {
    use sumi_engine::pipeline::{check_cfg, check_size, check_steps};
    for (name, v) in [("width", args.width), ("height", args.height)] {
        v.map(|v| check_size(name, v, 1)).transpose()?;
    }
    args.steps.map(check_steps).transpose()?;
    args.cfg.map(check_cfg).transpose()?;
    args.offload
        .parse::<sumi_engine::model::offload::Offload>()?;
    if let Some(name) = &args.rng {
        name.parse::<sumi_engine::noise::NoiseSource>()?;
    }
    if let Some(name) = &args.sampler {
        parse_sampler(name)?;
    }
    sumi_engine::text::check_clip_skip(args.clip_skip)?;
    if let Some(name) = &args.emphasis {
        name.parse::<sumi_engine::text::Emphasis>()?;
    }
    for spec in &args.loras {
        parse_lora_arg(spec)?;
    }
    for dir in args.embeddings.iter().chain(&args.lora_dirs) {
        if !dir.exists() {
            bail!("{}: no such file or folder", dir.display());
        }
    }
    if let Some(name) = &args.schedule {
        schedule(name)?;
    }
    args.img2img.check()
}

/// Runs `sumi generate`.
pub fn run(args: GenerateArgs, home: &Path) -> Result<()> {
    let seed_arg = parse_seed(args.seed.as_deref().unwrap_or(""))?;
    check_before_load(&args)?;
    if let Some(out) = &args.output {
        crate::save::check_output(out, home, args.force)?;
    }
    if let Some(dir) = &args.previews {
        if dir.exists() && !dir.is_dir() {
            bail!(
                "--previews {}: that is a file; give a folder",
                dir.display()
            );
        }
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create preview folder {}", dir.display()))?;
    }
    let recorded = args.from.map(|id| reproduce::read(home, id)).transpose()?;
    let device = sumi_engine::device::pick(&args.device)?;
    let path = match (&args.model, &recorded) {
        (Some(spec), _) => sumi_hub::resolve(spec)?,
        (None, Some(r)) => {
            let note = &mut |line: &str| eprintln!("{line}");
            let recorded = model_files::recorded_model(r.generation.model_files.as_ref());
            sumi_runtime::rerun::find_model(&r.generation.params, &recorded, home, note)
                .with_context(|| format!("cannot make #{} again", r.generation.id))?
        }
        (None, None) => sumi_hub::builtin_demo_model()?,
    };
    // `auto` re-runs a bf16 image from the CPU in bf16 on the CPU, so its pixels can match.
    let dtype_name = match &recorded {
        Some(r) if args.dtype == "auto" && device.is_cpu() && r.generation.meta.dtype == "bf16" => {
            "bf16"
        }
        _ => args.dtype.as_str(),
    };
    let dtype = sumi_engine::device::pick_dtype(dtype_name, &device)?;
    let t0 = Instant::now();
    eprintln!("loading {} ...", path.display());
    let prediction = match args.prediction.as_deref() {
        None => None,
        Some("eps" | "epsilon") => Some(Parametrization::Epsilon),
        Some("v" | "v_prediction") => Some(Parametrization::V),
        Some(other) => bail!("--prediction {other:?}: use eps or v"),
    };
    let mut options = LoadOptions {
        prediction,
        config_dir: args.config_dir.clone(),
        tokenizer_dirs: args.tokenizers.clone(),
        vae: args.vae.clone(),
        t5: args.t5.clone(),
        clip_l: args.clip_l.clone(),
        offload: args.offload.parse()?,
        ..Default::default()
    };
    // Sumi's own images record their files; another tool's name their parts in the infotext.
    let recorded_files = recorded.as_ref().and_then(|r| {
        let g = &r.generation;
        g.model_files.clone().or_else(|| {
            let note = &mut |line: &str| eprintln!("note: {line}");
            sumi_runtime::named_parts::from_names(&g.params, &path, note)
        })
    });
    if let Some(files) = &recorded_files {
        model_files::fill_options(files, &path, &mut options)?;
    }
    let files = model_files::record(&path, &options);
    crate::models_cmd::fetch_missing_tokenizers(&path, &options);
    let mut model =
        sumi_runtime::load::load_model(&path, options, &device, dtype, home, &mut |_| {})?;
    eprintln!(
        "loaded {} ({}{}) in {:.1}s",
        crate::terminal::safe(&model.info.name),
        model.info.family.display_name(),
        if model.info.turbo { ", turbo" } else { "" },
        t0.elapsed().as_secs_f64()
    );

    let mut request = match &recorded {
        Some(r) => sumi_runtime::record::request(&r.generation.params),
        None => Request::with_defaults(&model.info, "", 0),
    };
    // An image made again keeps its seed unless one is given; -1 asks for a random one.
    if recorded.is_none() || args.seed.is_some() {
        request.seed = match seed_arg {
            Some(s) => s,
            None => {
                let s = random_seed();
                eprintln!("seed: {s}");
                s
            }
        };
    }
    if let Some(v) = &args.prompt {
        request.prompt = v.clone();
    }
    if let Some(v) = &args.negative_prompt {
        request.negative_prompt = v.clone();
    }
    if let Some(v) = args.steps {
        request.steps = v;
    }
    if let Some(v) = args.cfg {
        request.cfg = v;
    }
    match (args.guidance, model.info.guidance_distilled) {
        (Some(v), true) => request.guidance = Some(v),
        (Some(_), false) => eprintln!(
            "warning: --guidance is ignored: {} takes no distilled guidance scale (use --cfg)",
            model.info.name
        ),
        _ => {}
    }
    if let Some(v) = args.max_sequence_length {
        if model.text.t5().is_none() {
            eprintln!("warning: --max-sequence-length is ignored: the model has no T5 encoder");
        } else {
            request.max_sequence_length = Some(v);
        }
    }
    if let Some(name) = &args.sampler {
        set_sampler(&mut request, name, args.schedule.as_deref())?;
    } else if let Some(v) = &args.schedule {
        request.schedule = schedule(v)?.name.to_string();
    }
    if let Some(v) = args.width {
        request.width = v;
    }
    if let Some(v) = args.height {
        request.height = v;
    }
    if let Some(v) = &args.rng {
        request.noise = v.parse()?;
    }
    if let Some(v) = args.ensd {
        request.ensd = v;
    }
    if let Some(v) = args.variation_seed {
        request.variation_seed = Some(v);
    }
    if let Some(v) = args.variation_strength {
        request.variation_strength = v;
    }
    if let Some(v) = args.clip_skip {
        request.clip_skip = Some(v);
    }
    if let Some(v) = &args.emphasis {
        request.emphasis = v.parse()?;
    }
    let dirs = NetworkDirs::with_defaults(home, &args.embeddings, &args.lora_dirs);
    let embeddings = dirs.embeddings()?;
    let mut library = LoraLibrary::scan(&dirs);
    let lora_args = args
        .loras
        .iter()
        .map(|s| parse_lora_arg(s))
        .collect::<sumi_runtime::Result<Vec<_>>>()?;
    request.prompt = library.add_tags(&request.prompt, &lora_args)?;
    let sized = args.width.is_some() || args.height.is_some();
    let sources = crate::img2img_args::apply(
        &args.img2img,
        &mut request,
        home,
        model.info.size_multiple(),
        sized,
    )?;
    request.validate(model.info.size_multiple())?;
    if model.memory.network > 0 {
        let plan = sumi_engine::pipeline::memory_plan(&model, &request);
        eprintln!("memory: {}", plan.describe());
    }
    let recorded_hashes = |f: fn(&sumi_gallery::GenerationParams) -> &[sumi_gallery::NamedHash]| {
        recorded
            .as_ref()
            .map(|r| f(&r.generation.params).to_vec())
            .unwrap_or_default()
    };
    for note in networks::check_embeddings(
        &recorded_hashes(|p| &p.ti_hashes),
        &embeddings,
        &[&request.prompt, &request.negative_prompt],
    )? {
        eprintln!("note: {note}");
    }
    let loras = library.apply(
        &mut model,
        &request.prompt,
        &recorded_hashes(|p| &p.lora_hashes),
    )?;
    for note in &loras.notes {
        eprintln!("note: {note}");
    }

    let bar = ProgressBar::new(request.steps as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{bar:30}] step {pos}/{len} {per_sec} ETA {eta} {msg}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    let cancel = AtomicBool::new(false);
    let mut preview_error = None;
    let started = Instant::now();
    let inputs = sumi_engine::pipeline::GenerateInputs {
        embeddings: &embeddings,
        ..sources.inputs()
    };
    let generated =
        sumi_engine::pipeline::generate_with(&model, &request, &inputs, &cancel, &mut |event| {
            match event {
                Event::Started { total, .. } => bar.set_length(total as u64),
                Event::Step { index, preview, .. } => {
                    bar.set_position(index as u64 + 1);
                    if let (Some(dir), Some(p)) = (&args.previews, preview) {
                        let scale = model.info.downscale;
                        let big = image::imageops::resize(
                            &p,
                            p.width() * scale,
                            p.height() * scale,
                            image::imageops::FilterType::Nearest,
                        );
                        if let Err(e) = big.save(dir.join(format!("step-{:03}.png", index + 1))) {
                            preview_error.get_or_insert(e);
                        }
                    }
                }
                Event::Finished { .. } => bar.finish_and_clear(),
                Event::Cancelled | Event::Failed { .. } => bar.abandon(),
            }
        })?;
    let image = generated.image;
    let elapsed = started.elapsed();
    for note in networks::prompt_notes(&generated.prompt) {
        eprintln!("note: {note}");
    }
    let mut params = sumi_runtime::record::params(&request, &model);
    networks::record_hashes(&mut params, &generated.prompt, &loras);
    if let Some(e) = preview_error {
        eprintln!("warning: could not write previews: {e}");
    }
    if let Some(r) = &recorded {
        reproduce::report_against(r, &request, &model, &image);
    }

    // Every way out keeps the image somewhere: the gallery, the --output file, or sumi-SEED.png.
    let gallery = (!args.no_save)
        .then(|| crate::save::to_gallery(home, &image, &params, &model, elapsed, &sources, &files));
    if let Some(Ok((id, file))) = &gallery {
        eprintln!("saved to gallery as #{id} ({})", file.display());
    }
    let write = |path: &Path| crate::save::to_file(path, &image, &params, &model, elapsed);
    let output = args.output.as_ref().map(|out| (out, write(out)));
    let kept = match &output {
        Some((out, Ok(()))) => {
            eprintln!("wrote {}", out.display());
            format!("the image is in {}", out.display())
        }
        _ if matches!(gallery, Some(Ok(_))) => "the image is in the gallery all the same".into(),
        _ => {
            let fallback = crate::save::fallback_path(request.seed);
            write(&fallback)?;
            eprintln!("wrote {}", fallback.display());
            format!("the image went to {} instead", fallback.display())
        }
    };
    match (gallery, output) {
        (Some(Err(e)), _) | (_, Some((_, Err(e)))) => return Err(e.context(kept)),
        _ => {}
    }
    eprintln!("done in {:.1}s", elapsed.as_secs_f64());
    Ok(())
}

/// Prints the sampler and schedule tables.
pub fn print_samplers() {
    println!(
        "{:<18} {:<22} {:>11} {:>11}",
        "sampler", "id", "calls/step", "stochastic"
    );
    for s in sampling::SAMPLERS {
        println!(
            "{:<18} {:<22} {:>11} {:>11}",
            s.name,
            s.id,
            s.evals_per_step,
            if s.stochastic { "yes" } else { "no" }
        );
    }
    println!();
    println!("{:<18} {:<22}", "schedule", "id");
    for s in sampling::SCHEDULES {
        println!("{:<18} {:<22}", s.name, s.id);
    }
}
