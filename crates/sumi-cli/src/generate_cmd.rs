//! `sumi generate` and `sumi samplers`.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use image::RgbImage;
use indicatif::{ProgressBar, ProgressStyle};
use sumi_engine::model::discover;
use sumi_engine::model::{self, Model};
use sumi_engine::{sampling, Event, Request};
use sumi_engine::{LoadOptions, Prediction};

use crate::reproduce::{self, PixelCheck};

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
    /// Also write the image to this PNG file.
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// Write each step's preview as a PNG into this folder.
    #[arg(long, value_name = "DIR")]
    previews: Option<PathBuf>,
    /// Do not save the image into the gallery.
    #[arg(long)]
    no_save: bool,
    /// Compute device: cpu, cuda[:N] or metal (default: a GPU when built with one, else cpu).
    #[arg(long, default_value = "auto")]
    device: String,
    /// Compute precision: auto (f32 on the CPU, f16 on a GPU), f32, f16 or bf16.
    #[arg(long, default_value = "auto")]
    dtype: String,
}

impl GenerateArgs {
    /// `sumi gallery rerun`: generation `id` again, as it was, with these choices of how to run it.
    pub fn rerun(id: i64, model: Option<String>, device: String, dtype: String) -> Self {
        Self {
            from: Some(id),
            model,
            vae: None,
            tokenizers: Vec::new(),
            config_dir: None,
            prediction: None,
            prompt: None,
            negative_prompt: None,
            seed: None,
            steps: None,
            cfg: None,
            sampler: None,
            schedule: None,
            width: None,
            height: None,
            output: None,
            previews: None,
            no_save: false,
            device,
            dtype,
        }
    }
}

fn parse_seed(text: Option<&str>) -> Result<Option<u64>> {
    match text.map(str::trim) {
        None | Some("-1") | Some("") => Ok(None),
        Some(t) => match t.parse::<u64>() {
            Ok(s) => Ok(Some(s)),
            Err(_) => bail!(
                "seed {t:?} is out of range: use a whole number from 0 to {} (or -1 for random)",
                u64::MAX
            ),
        },
    }
}

fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    // Keep random seeds in the range every other tool accepts.
    h.finish() & 0xFFFF_FFFF
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
    if let Some(name) = &args.sampler {
        sampling::parse_sampler(name)?;
    }
    if let Some(name) = &args.schedule {
        sampling::schedule(name)?;
    }
    Ok(())
}

/// Runs `sumi generate`.
pub fn run(args: GenerateArgs, home: &Path) -> Result<()> {
    let seed_arg = parse_seed(args.seed.as_deref())?;
    check_before_load(&args)?;
    if let Some(out) = &args.output {
        crate::save::check_output(out)?;
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
        (Some(spec), _) => model::resolve(spec)?,
        (None, Some(r)) => reproduce::find_model(&r.generation.params, home)
            .with_context(|| format!("cannot make #{} again", r.generation.id))?,
        (None, None) => model::builtin_demo_model()?,
    };
    let dtype = sumi_engine::device::pick_dtype(&args.dtype, &device)?;
    let t0 = Instant::now();
    eprintln!("loading {} ...", path.display());
    let prediction = match args.prediction.as_deref() {
        None => None,
        Some("eps" | "epsilon") => Some(Prediction::Epsilon),
        Some("v" | "v_prediction") => Some(Prediction::V),
        Some(other) => bail!("--prediction {other:?}: use eps or v"),
    };
    let options = LoadOptions {
        prediction,
        config_dir: args.config_dir.clone(),
        tokenizer_dirs: args.tokenizers.clone(),
        vae: args.vae.clone(),
    };
    crate::models_cmd::fetch_missing_tokenizers(&path, &options);
    let mut model = Model::load_with(&path, &options, &device, dtype)?;
    model.info.hash = discover::model_hash(&path, home)?;
    eprintln!(
        "loaded {} ({}{}) in {:.1}s",
        model.info.name,
        model.info.family.display_name(),
        if model.info.turbo { ", turbo" } else { "" },
        t0.elapsed().as_secs_f64()
    );

    let mut request = match &recorded {
        Some(r) => reproduce::request(&r.generation.params),
        None => Request::with_defaults(&model, "", 0),
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
    if let Some(name) = &args.sampler {
        let (sampler, schedule) = sampling::parse_sampler(name)?;
        request.sampler = sampler.name.to_string();
        if let Some(s) = schedule {
            request.schedule = s.name.to_string();
        }
    }
    if let Some(v) = &args.schedule {
        request.schedule = sampling::schedule(v)?.name.to_string();
    }
    if let Some(v) = args.width {
        request.width = v;
    }
    if let Some(v) = args.height {
        request.height = v;
    }
    request.validate(model.info.downscale)?;

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
    let image = sumi_engine::generate(&model, &request, &cancel, &mut |event| match event {
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
    })?;
    let elapsed = started.elapsed();
    if let Some(e) = preview_error {
        eprintln!("warning: could not write previews: {e}");
    }
    if let Some(r) = &recorded {
        report_against(r, &request, &model, &image);
    }

    // Every way out keeps the image somewhere: the gallery, the --output file, or sumi-SEED.png.
    let gallery =
        (!args.no_save).then(|| crate::save::to_gallery(home, &image, &request, &model, elapsed));
    if let Some(Ok((id, file))) = &gallery {
        eprintln!("saved to gallery as #{id} ({})", file.display());
    }
    let write = |path: &Path| crate::save::to_file(path, &image, &request, &model, elapsed);
    let output = args.output.as_ref().map(|out| (out, write(out)));
    let kept = match &output {
        Some((out, Ok(()))) => {
            eprintln!("wrote {}", out.display());
            format!("the image is in {}", out.display())
        }
        _ if matches!(gallery, Some(Ok(_))) => "the image is in the gallery all the same".into(),
        _ => {
            let fallback = PathBuf::from(format!("sumi-{}.png", request.seed));
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

/// Says whether a run from a gallery image gave that image's pixels, and if not, what differed.
fn report_against(r: &reproduce::Recorded, request: &Request, model: &Model, image: &RgbImage) {
    let g = &r.generation;
    if *request != reproduce::request(&g.params) {
        eprintln!("made from #{} with other settings", g.id);
        return;
    }
    let check = match reproduce::compare_pixels(&r.image, image) {
        Ok(check) => check,
        Err(e) => {
            eprintln!("warning: cannot compare with #{}: {e:#}", g.id);
            return;
        }
    };
    let (pixels, total, max) = match check {
        PixelCheck::Identical => {
            eprintln!("identical pixels to #{}", g.id);
            return;
        }
        PixelCheck::Differ { pixels, total, max } => (pixels, total, max),
        PixelCheck::OtherSize { recorded: (w, h) } => {
            eprintln!("#{} is {w}x{h}, not the size it records", g.id);
            return;
        }
    };
    let mut why = Vec::new();
    if !g
        .params
        .made_with(&model.info.name, model.info.hash.as_deref())
    {
        why.push(format!(
            "#{} was made with {}, this run used {}",
            g.id,
            g.params.model_label(),
            model.info.name
        ));
    }
    let now = crate::save::meta(model, Default::default());
    if (&g.meta.device, &g.meta.dtype) != (&now.device, &now.dtype) {
        why.push(format!(
            "#{} ran on {} in {}, this run on {} in {}",
            g.id, g.meta.device, g.meta.dtype, now.device, now.dtype
        ));
    }
    if g.meta.engine_version != now.engine_version {
        why.push(format!(
            "#{} was made by Sumi {}, this is {}",
            g.id, g.meta.engine_version, now.engine_version
        ));
    }
    eprintln!(
        "pixels differ from #{}: {pixels} of {total}, by at most {max}/255{}",
        g.id,
        if why.is_empty() {
            String::new()
        } else {
            format!(" ({})", why.join("; "))
        }
    );
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
