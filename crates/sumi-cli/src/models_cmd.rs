//! `sumi models`: the models found in configured folders, A1111/ComfyUI trees and the HF cache;
//! `sumi models pull`: downloads from the Hugging Face hub into its cache.

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::{Args, Subcommand};
use indicatif::{HumanBytes, ProgressBar, ProgressStyle};
use sumi_engine::LoadOptions;
use sumi_hub::discover::{self, Format};
use sumi_hub::download::{self, HubClient, PullEvent};
use sumi_hub::hashes::{hash_cache_file, HashCache};
use sumi_hub::tokenizers;

/// Options of `sumi models`.
#[derive(Args)]
pub struct ModelsArgs {
    /// A folder of models, or an A1111 / ComfyUI install (its models/Stable-diffusion or
    /// models/checkpoints is searched); repeatable. $SUMI_MODEL_DIRS adds more.
    #[arg(long = "dir", value_name = "DIR")]
    dirs: Vec<PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Do not compute A1111 short hashes of single files (hashing reads each file once; results are cached).
    #[arg(long)]
    no_hash: bool,
    /// List LoRAs instead of models: those in --lora-dir folders, the loras folder of Sumi's
    /// home, $SUMI_LORA_DIRS and the A1111/ComfyUI trees (name, format, family, rank, size, hash).
    #[arg(long)]
    loras: bool,
    /// A folder of LoRAs to list with --loras; repeatable.
    #[arg(long = "lora-dir", value_name = "DIR", requires = "loras")]
    lora_dirs: Vec<PathBuf>,
    #[command(subcommand)]
    action: Option<ModelsAction>,
}

/// What `sumi models` can do besides listing.
#[derive(Subcommand)]
pub enum ModelsAction {
    /// Download a diffusers model (or a tokenizer) from the Hugging Face hub into its local cache
    /// ($HF_HUB_CACHE; hub from $HF_ENDPOINT, token from $HF_TOKEN). Interrupted downloads resume.
    Pull(PullArgs),
}

/// Options of `sumi models pull`.
#[derive(Args)]
pub struct PullArgs {
    /// The repo id, e.g. stabilityai/sdxl-turbo.
    repo: String,
    /// Branch, tag or commit to download.
    #[arg(long, default_value = "main")]
    revision: String,
    /// Only the tokenizer files (what single-file checkpoints need), not the model.
    #[arg(long)]
    tokenizers_only: bool,
}

fn human(bytes: u64) -> String {
    let gb = bytes as f64 / 1e9;
    if gb >= 1.0 {
        format!("{gb:.2} GB")
    } else {
        format!("{:.1} MB", bytes as f64 / 1e6)
    }
}

fn byte_bar() -> ProgressBar {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta} {msg}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar
}

fn show(bar: &ProgressBar, event: PullEvent<'_>) {
    match event {
        PullEvent::Planned {
            files,
            total,
            cached,
        } => {
            bar.set_length(total);
            if cached > 0 {
                bar.println(format!("{cached} file(s) already in the cache"));
            }
            bar.set_message(format!("{files} file(s) to fetch"));
        }
        PullEvent::Bytes {
            path,
            file_done,
            file_total,
            done,
            ..
        } => {
            bar.set_position(done);
            bar.set_message(format!(
                "{path} {}/{}",
                HumanBytes(file_done),
                HumanBytes(file_total)
            ));
        }
        PullEvent::FileDone { .. } => {}
    }
}

/// Runs `sumi models pull`.
fn pull(args: PullArgs) -> Result<()> {
    let client = HubClient::from_env()?;
    type Select = fn(&[String]) -> std::result::Result<Vec<String>, String>;
    let select: Select = if args.tokenizers_only {
        download::select_tokenizer_files
    } else {
        download::select_model_files
    };
    eprintln!(
        "pulling {} ({}) from {}",
        args.repo,
        args.revision,
        client.endpoint()
    );
    let bar = byte_bar();
    let result = client.pull_with(&args.repo, &args.revision, &select, &mut |e| show(&bar, e));
    bar.finish_and_clear();
    let snapshot = result?;
    println!("{} is in {}", args.repo, snapshot.display());
    if !args.tokenizers_only {
        println!(
            "use it with: sumi generate --model {} --prompt \"...\"",
            args.repo
        );
    }
    Ok(())
}

/// Downloads the tokenizers a single-file checkpoint needs and this computer lacks, with a
/// progress bar, unless HF_HUB_OFFLINE is set. Failures are only reported: loading then says
/// what to do.
pub fn fetch_missing_tokenizers(path: &Path, options: &LoadOptions) {
    let missing = match tokenizers::missing(path, options) {
        Ok(m) => m,
        Err(_) => return,
    };
    let offline = std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| {
        matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "1" | "true" | "yes" | "on"
        )
    });
    if missing.is_empty() || offline {
        return;
    }
    let client = match HubClient::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("warning: {e}");
            return;
        }
    };
    for (family, index) in missing {
        let (repo, folder) = tokenizers::download_source(family, index);
        eprintln!(
            "single-file checkpoints carry no tokenizer: fetching the {} one from {repo} (once) ...",
            family.display_name()
        );
        let bar = byte_bar();
        let result = client.pull_tokenizer(repo, folder, &mut |e| show(&bar, e));
        bar.finish_and_clear();
        if let Err(e) = result {
            eprintln!("warning: {e}");
            return;
        }
    }
}

/// Runs `sumi models` (and `sumi models pull`).
pub fn run(args: ModelsArgs, home: &Path) -> Result<()> {
    if let Some(ModelsAction::Pull(p)) = args.action {
        return pull(p);
    }
    if args.loras {
        return list_loras(&args.lora_dirs, home, args.json, args.no_hash);
    }
    let mut dirs = args.dirs;
    dirs.extend(discover::env_model_dirs());
    let hub = discover::hub_cache();
    let mut found = discover::discover(&dirs, hub.as_deref());
    if !args.no_hash {
        // Diffusers folders have no single file to hash: their hash stays empty.
        let mut cache = HashCache::open(&hash_cache_file(home));
        for m in found.iter_mut().filter(|m| m.format != Format::Diffusers) {
            match cache.short_hash(&m.path) {
                Ok(h) => m.hash = Some(h),
                Err(e) => tracing::warn!("cannot hash {}: {e}", m.path.display()),
            }
        }
        cache.save()?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&found)?);
        return Ok(());
    }
    if found.is_empty() {
        println!(
            "no models found (searched {} folder(s) and the Hugging Face cache{}); add folders with --dir or SUMI_MODEL_DIRS",
            dirs.len(),
            hub.map(|h| format!(" {}", h.display())).unwrap_or_default()
        );
        return Ok(());
    }
    println!(
        "{:<32} {:<7} {:<11} {:>10} {:<10} {:<8} PATH",
        "NAME", "FAMILY", "FORMAT", "SIZE", "HASH", "SOURCE"
    );
    for m in &found {
        let format = match m.format {
            Format::Diffusers => "diffusers",
            Format::SingleFile => "single-file",
            Format::Gguf => "gguf",
            Format::Pickle => "pickle(no)",
        };
        println!(
            "{:<32} {:<7} {:<11} {:>10} {:<10} {:<8} {}",
            m.name,
            m.family.map_or("?", |f| f.display_name()),
            format,
            human(m.size),
            m.hash.as_deref().unwrap_or("-"),
            m.source,
            m.path.display()
        );
    }
    Ok(())
}

/// A LoRA as `sumi models --loras` lists it.
#[derive(serde::Serialize)]
struct LoraRow {
    #[serde(flatten)]
    found: sumi_hub::networks::FoundLora,
    /// A1111's `Lora hashes` value for it.
    hash: Option<String>,
}

/// Runs `sumi models --loras`.
fn list_loras(extra: &[PathBuf], home: &Path, json: bool, no_hash: bool) -> Result<()> {
    let dirs = sumi_runtime::networks::NetworkDirs::with_defaults(home, &[], extra);
    let rows: Vec<LoraRow> = sumi_hub::networks::find_loras(&dirs.loras)
        .into_iter()
        .map(|found| {
            let hash = (!no_hash && found.unusable.is_none())
                .then(|| sumi_engine::weights::lora::LoraFile::open(&found.path))
                .and_then(|f| f.and_then(|f| f.a1111_hash()).ok());
            LoraRow { found, hash }
        })
        .collect();
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    if rows.is_empty() {
        println!(
            "no LoRAs found (searched {} folder(s)); put .safetensors LoRAs in {} or pass --lora-dir DIR",
            dirs.loras.len(),
            home.join(sumi_hub::networks::LORAS_FOLDER).display()
        );
        return Ok(());
    }
    println!(
        "{:<28} {:<22} {:<7} {:>5} {:>10} {:<12} PATH",
        "NAME", "FORMAT", "FAMILY", "RANK", "SIZE", "HASH"
    );
    for r in &rows {
        let f = &r.found;
        let name = match &f.alias {
            Some(a) => format!("{} ({a})", f.name),
            None => f.name.clone(),
        };
        let format = match &f.unusable {
            Some(_) => "unusable".to_string(),
            None => f.format.clone(),
        };
        println!(
            "{:<28} {:<22} {:<7} {:>5} {:>10} {:<12} {}",
            crate::terminal::safe(&name),
            format,
            f.family.map_or("?", |x| x.display_name()),
            f.rank.map_or("-".to_string(), |r| r.to_string()),
            human(f.size),
            r.hash.as_deref().unwrap_or("-"),
            f.path.display()
        );
        if let Some(why) = &f.unusable {
            println!("    {}", crate::terminal::safe(why));
        }
    }
    Ok(())
}
