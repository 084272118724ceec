//! `sumi models`: the models found in configured folders, A1111/ComfyUI trees and the HF cache.

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::Args;
use sumi_engine::model::discover::{self, Format, HashCache};

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
}

/// Where the hash cache lives under the Sumi home.
pub fn hash_cache_path(home: &Path) -> PathBuf {
    home.join("model-hashes.json")
}

fn human(bytes: u64) -> String {
    let gb = bytes as f64 / 1e9;
    if gb >= 1.0 {
        format!("{gb:.2} GB")
    } else {
        format!("{:.1} MB", bytes as f64 / 1e6)
    }
}

/// Runs `sumi models`.
pub fn run(args: ModelsArgs, home: &Path) -> Result<()> {
    let mut dirs = args.dirs;
    dirs.extend(discover::env_model_dirs());
    let hub = discover::hub_cache();
    let mut found = discover::discover(&dirs, hub.as_deref());
    if !args.no_hash {
        // Diffusers folders have no single file to hash: their hash stays empty.
        let mut cache = HashCache::open(&hash_cache_path(home));
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
