//! `sumi`: generate images, browse the gallery and inspect samplers from the command line.

mod bench_cmd;
mod compare_cmd;
mod gallery_cmd;
mod generate_cmd;
mod img2img_args;
mod models_cmd;
mod reproduce;
mod save;
mod terminal;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Sumi: text-to-image on your own computer.
#[derive(Parser)]
#[command(name = "sumi", version, about)]
struct Cli {
    /// Folder for all of Sumi's data (gallery, settings); default: $SUMI_HOME or the app data dir.
    #[arg(long, global = true, value_name = "DIR")]
    home: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate an image from a prompt.
    Generate(Box<generate_cmd::GenerateArgs>),
    /// Run one prompt and seed through several samplers, schedules, steps or CFG values and
    /// write a labelled grid.
    Compare(Box<compare_cmd::CompareArgs>),
    /// List the models found on this computer; `models pull REPO` downloads one from the Hugging Face hub.
    Models(models_cmd::ModelsArgs),
    /// List the sampler and schedule names.
    Samplers,
    /// Browse, search and manage the gallery.
    #[command(subcommand)]
    Gallery(gallery_cmd::GalleryCommand),
    /// Time each component on SD1.5/SDXL shapes with random weights.
    Bench(bench_cmd::BenchArgs),
}

fn main() {
    // Warnings (a repaired gallery, a retried download, a GPU kernel giving way) show by default.
    let filter = tracing_subscriber::EnvFilter::try_from_env("SUMI_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(terminal::stderr_is_terminal())
        .init();
    sumi_engine::alloc::keep_freed_memory();
    let cli = Cli::parse();
    let home = match cli.home.map(Ok).unwrap_or_else(sumi_gallery::default_home) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    let result = match cli.command {
        Command::Generate(args) => generate_cmd::run(*args, &home),
        Command::Compare(args) => compare_cmd::run(*args, &home),
        Command::Samplers => {
            generate_cmd::print_samplers();
            Ok(())
        }
        Command::Gallery(cmd) => gallery_cmd::run(cmd, &home),
        Command::Models(args) => models_cmd::run(args, &home),
        Command::Bench(args) => bench_cmd::run(args),
    };
    if let Err(e) = result {
        eprintln!("error: {}", terminal::safe(&format!("{e:#}")));
        std::process::exit(1);
    }
}
