//! `sumi compare`: one prompt and seed through several samplers, schedules, step counts, CFG
//! values, denoising strengths or weights of one LoRA (every combination), saved as one
//! comparison group and drawn as a labelled grid.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use sumi_engine::{Event, Model, Request};
use sumi_gallery::{grid, ComparisonSlot, Gallery, GenerationParams};
use sumi_runtime::compare::{cell, cells, LoraWeight, Variant};
use sumi_runtime::load::load_model;
use sumi_runtime::networks::{self, LoraLibrary, NetworkDirs};
use sumi_runtime::record::{meta, params};
use sumi_runtime::sources::SourceBytes;

use crate::img2img_args::Img2ImgArgs;

/// Options of `sumi compare`.
#[derive(Args)]
pub struct CompareArgs {
    /// Diffusers model folder, single-file .safetensors checkpoint, or a cached repo id
    /// (default: the built-in demo model).
    #[arg(long)]
    model: Option<String>,
    /// What to draw.
    #[arg(long, short)]
    prompt: String,
    /// What to avoid.
    #[arg(long, short = 'n', default_value = "")]
    negative_prompt: String,
    /// Seed shared by every image.
    #[arg(long)]
    seed: u64,
    /// Samplers, comma-separated, e.g. "Euler,DPM++ 2M" (default: the model's).
    #[arg(long, value_delimiter = ',')]
    samplers: Vec<String>,
    /// Schedules, comma-separated, e.g. "Normal,Karras" (default: the model's).
    #[arg(long, value_delimiter = ',')]
    schedules: Vec<String>,
    /// Step counts, comma-separated, e.g. 10,20 (default: the model's).
    #[arg(long, value_delimiter = ',')]
    steps: Vec<u32>,
    /// CFG scales, comma-separated, e.g. 5,7.5 (default: the model's).
    #[arg(long, value_delimiter = ',')]
    cfg: Vec<f64>,
    /// Denoising strengths, comma-separated, e.g. 0.3,0.5,0.7 (needs --init-image).
    #[arg(long, value_delimiter = ',')]
    strengths: Vec<f64>,
    /// Weights of one LoRA of the prompt's `<lora:NAME:w>` tags, e.g. NAME:0,0.5,1.
    #[arg(long, value_name = "NAME:W1,W2,...")]
    lora_weights: Option<String>,
    /// Image width: a multiple of 8 (of 4 for the demo model); default: the model's
    #[arg(long)]
    width: Option<u32>,
    /// Image height: a multiple of 8 (of 4 for the demo model); default: the model's
    #[arg(long)]
    height: Option<u32>,
    /// Where to write the labelled grid PNG.
    #[arg(long, short)]
    output: PathBuf,
    /// Overwrite the output file if it exists.
    #[arg(long)]
    force: bool,
    /// Do not save the images into the gallery.
    #[arg(long)]
    no_save: bool,
    /// Compute device: cpu, cuda[:N] or metal.
    #[arg(long, default_value = "auto")]
    device: String,
    /// Image-to-image and hires fix, as `sumi generate` takes them.
    #[command(flatten)]
    img2img: Img2ImgArgs,
}

/// Reads `NAME:W1,W2,...` of --lora-weights.
fn parse_lora_weights(spec: &str) -> Result<(String, Vec<f64>)> {
    let usage = "write NAME:W1,W2,..., e.g. inkwash:0,0.5,1";
    let Some((name, weights)) = spec.rsplit_once(':') else {
        bail!("--lora-weights {spec:?}: {usage}");
    };
    if name.trim().is_empty() {
        bail!("--lora-weights {spec:?}: no LoRA named; {usage}");
    }
    let weights = weights
        .split(',')
        .map(|w| {
            w.trim()
                .parse::<f64>()
                .with_context(|| format!("--lora-weights {spec:?}: {w:?} is not a number; {usage}"))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((name.trim().to_string(), weights))
}

fn trimmed(list: &[String]) -> Vec<&str> {
    list.iter()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .collect()
}

/// Each value of an axis, or one `None` (the base's) when the axis is not compared.
fn axis<T: Clone>(values: &[T]) -> Vec<Option<T>> {
    match values {
        [] => vec![None],
        v => v.iter().cloned().map(Some).collect(),
    }
}

/// The requests of every combination (samplers outermost, LoRA weights innermost) and the
/// pictures img2img needs.
fn requests(args: &CompareArgs, model: &Model, home: &Path) -> Result<(Vec<Request>, SourceBytes)> {
    let mut base = Request::with_defaults(&model.info, &args.prompt, args.seed);
    base.negative_prompt = args.negative_prompt.clone();
    if let Some(w) = args.width {
        base.width = w;
    }
    if let Some(h) = args.height {
        base.height = h;
    }
    let sized = args.width.is_some() || args.height.is_some();
    let sources = crate::img2img_args::apply(
        &args.img2img,
        &mut base,
        home,
        model.info.size_multiple(),
        sized,
    )?;
    let samplers = trimmed(&args.samplers);
    let samplers = if samplers.is_empty() {
        vec![base.sampler.as_str()]
    } else {
        samplers
    };
    // No --schedules: each sampler keeps the schedule of its legacy name, else the default's.
    let schedules = trimmed(&args.schedules);
    let schedules = if schedules.is_empty() {
        vec![""]
    } else {
        schedules
    };
    let loras: Vec<Option<LoraWeight>> = match &args.lora_weights {
        None => vec![None],
        Some(spec) => {
            let (name, weights) = parse_lora_weights(spec)?;
            weights
                .into_iter()
                .map(|weight| {
                    Some(LoraWeight {
                        name: name.clone(),
                        weight,
                    })
                })
                .collect()
        }
    };
    let mut variants = Vec::new();
    for sampler in &samplers {
        for schedule in &schedules {
            for steps in axis(&args.steps) {
                for cfg in axis(&args.cfg) {
                    for strength in axis(&args.strengths) {
                        for lora in &loras {
                            variants.push(Variant {
                                sampler: sampler.to_string(),
                                schedule: schedule.to_string(),
                                steps,
                                cfg,
                                strength,
                                lora: lora.clone(),
                            });
                        }
                    }
                }
            }
        }
    }
    // One combination is a comparison of one image: allowed from the CLI.
    let out = if variants.len() == 1 {
        vec![cell(&base, &variants[0])?]
    } else {
        cells(&base, &variants)?
    };
    for r in &out {
        r.validate(model.info.size_multiple())?;
    }
    Ok((out, sources))
}

/// Runs `sumi compare`.
pub fn run(args: CompareArgs, home: &Path) -> Result<()> {
    crate::save::check_output(&args.output, home, args.force)?;
    args.img2img.check()?;
    if let Some(spec) = &args.lora_weights {
        parse_lora_weights(spec)?;
    }
    let device = sumi_engine::device::pick(&args.device)?;
    let path = match &args.model {
        Some(spec) => sumi_hub::resolve(spec)?,
        None => sumi_hub::builtin_demo_model()?,
    };
    eprintln!("loading {} ...", path.display());
    let dtype = sumi_engine::device::default_dtype(&device);
    let files = sumi_runtime::model_files::record(&path, &Default::default());
    let mut model = load_model(&path, Default::default(), &device, dtype, home, &mut |_| {})?;
    let (requests, sources) = requests(&args, &model, home)?;
    // Embeddings and LoRAs come from Sumi's folders; each cell applies its prompt's LoRAs (the
    // same set again is not patched twice).
    let dirs = NetworkDirs::with_defaults(home, &[], &[]);
    let embeddings = dirs.embeddings()?;
    let mut library = LoraLibrary::scan(&dirs);
    let loras = library.apply(&mut model, &requests[0].prompt, &[])?;
    for note in &loras.notes {
        eprintln!("note: {note}");
    }
    let params: Vec<GenerationParams> = requests.iter().map(|r| params(r, &model)).collect();
    let refs: Vec<&GenerationParams> = params.iter().collect();
    let labels = grid::labels(&refs);

    let gallery = if args.no_save {
        None
    } else {
        Some(
            Gallery::open(home)
                .with_context(|| format!("cannot open the gallery in {}", home.display()))?,
        )
    };
    let group = match &gallery {
        Some(g) => {
            // The init picture and mask first: a record never names a source that is not kept.
            sources.store(g)?;
            Some(g.new_comparison_group()?)
        }
        None => None,
    };

    let total: u64 = requests.iter().map(|r| r.steps as u64).sum();
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len} steps ETA {eta} {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let cancel = AtomicBool::new(false);
    let mut cells = Vec::new();
    let mut done = 0u64;
    for (i, (request, label)) in requests.iter().zip(&labels).enumerate() {
        bar.set_message(format!("{}/{}: {label}", i + 1, requests.len()));
        let loras = library.apply(&mut model, &request.prompt, &[])?;
        let inputs = sumi_engine::pipeline::GenerateInputs {
            embeddings: &embeddings,
            ..sources.inputs()
        };
        let started = Instant::now();
        let generated =
            sumi_engine::pipeline::generate_with(&model, request, &inputs, &cancel, &mut |event| {
                if let Event::Step { index, .. } = event {
                    bar.set_position(done + index as u64 + 1);
                }
            })
            .with_context(|| format!("generating {label}"))?;
        let image = generated.image;
        let mut recorded = params[i].clone();
        networks::record_hashes(&mut recorded, &generated.prompt, &loras);
        if let Some(i) = recorded.img2img.as_mut() {
            i.made_from = sources.made_from;
        }
        let elapsed = started.elapsed();
        done += request.steps as u64;
        bar.set_position(done);
        bar.suspend(|| eprintln!("{label}: {:.2}s", elapsed.as_secs_f64()));
        if let (Some(g), Some(group)) = (&gallery, group) {
            let slot = ComparisonSlot {
                group,
                position: i as i64,
            };
            let meta = meta(&model, elapsed, Some(slot));
            let saved = g.add(&recorded, &meta, &image)?;
            if let Err(e) = g.set_model_files(saved.id, &files) {
                bar.suspend(|| eprintln!("warning: could not record the model's files: {e}"));
            }
        }
        cells.push(grid::Cell {
            image,
            label: label.clone(),
        });
    }
    bar.finish_and_clear();
    let img = grid::compose(&cells, grid::columns(&refs), &grid::header(&refs));
    let written = grid::write_png(&img, &params[0], &args.output);
    if let (Err(e), Some(group)) = (&written, group) {
        bail!(
            "{e:#}; the images are in the gallery as comparison group {group}: \
             `sumi gallery export-grid {group} --output FILE` writes the grid"
        );
    }
    written?;
    if let Some(group) = group {
        eprintln!(
            "saved {} images to the gallery as comparison group {group}",
            cells.len()
        );
    }
    eprintln!(
        "wrote {} ({}x{})",
        args.output.display(),
        img.width(),
        img.height()
    );
    Ok(())
}
