//! `sumi gallery ...`: list, search, show, re-run, delete, import, export and favourite saved images.

use std::{
    fmt::Write as _,
    io::Write as _,
    path::{Path, PathBuf},
};

use anyhow::{bail, Context, Result};
use sumi_gallery::{infotext, Cursor, Filter, Gallery, Generation, Page};

/// The `sumi gallery` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum GalleryCommand {
    /// List saved generations, newest first.
    List {
        #[command(flatten)]
        filter: FilterArgs,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Search prompts and negative prompts (every word must match, as a prefix).
    Search {
        /// Words to look for, e.g. "light cast" finds "lighthouse castle".
        query: String,
        #[command(flatten)]
        filter: FilterArgs,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Show everything stored about one generation.
    Show {
        /// The generation's id.
        id: i64,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Make a generation again with its exact settings and model, save it, and say whether the
    /// pixels are the same.
    Rerun {
        /// The generation's id.
        id: i64,
        /// Only print the request as JSON (to edit, or to read).
        #[arg(long)]
        json: bool,
        /// Use this model instead of the one that made the image (a folder, .safetensors file or
        /// cached repo id).
        #[arg(long)]
        model: Option<String>,
        /// Use this VAE (a .safetensors file or a diffusers vae folder) instead of the one the
        /// gallery recorded, e.g. the `VAE` an imported image names.
        #[arg(long, value_name = "PATH")]
        vae: Option<PathBuf>,
        /// Compute device: cpu, cuda[:N] or metal (default: a GPU when built with one, else cpu).
        #[arg(long, default_value = "auto")]
        device: String,
        /// Precision: auto (f32 on the CPU, f16 on a GPU), f32, f16 or bf16 (on the CPU:
        /// bf16 weight matrices, f32 activations).
        #[arg(long, default_value = "auto")]
        dtype: String,
        /// The init picture of an img2img image whose source Sumi does not have (imported).
        #[arg(long, value_name = "FILE")]
        init_image: Option<String>,
        /// The mask of such an inpainted image.
        #[arg(long, value_name = "FILE")]
        mask: Option<PathBuf>,
    },
    /// Delete generations: their rows, images and thumbnails.
    Delete {
        /// Ids to delete.
        #[arg(required = true)]
        ids: Vec<i64>,
    },
    /// Import PNGs written by Sumi, ComfyUI or A1111-compatible tools (files, or folders searched
    /// recursively); settings Sumi cannot use as they are are kept and named in the image's note.
    Import {
        /// Files or folders to import.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Copy a generation's PNG (with its embedded settings) to a file.
    Export {
        /// The generation's id.
        id: i64,
        /// Where to write the PNG.
        #[arg(long, short)]
        output: PathBuf,
        /// Overwrite the output file if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Draw a comparison group as one labelled grid PNG.
    ExportGrid {
        /// The comparison group's id (printed by `sumi compare`, shown by `gallery show`).
        group: i64,
        /// Where to write the PNG.
        #[arg(long, short)]
        output: PathBuf,
        /// Overwrite the output file if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Mark a generation as a favourite (or clear the mark with --off).
    Favourite {
        /// The generation's id.
        id: i64,
        /// Clear the favourite mark instead of setting it.
        #[arg(long)]
        off: bool,
    },
}

/// Filters shared by `list` and `search`.
#[derive(clap::Args, Debug)]
pub struct FilterArgs {
    /// Only favourites.
    #[arg(long)]
    favourites: bool,
    /// Only this model name.
    #[arg(long)]
    model: Option<String>,
    /// Only this sampler (e.g. "DPM++ 2M").
    #[arg(long)]
    sampler: Option<String>,
    /// Only this comparison group.
    #[arg(long)]
    group: Option<i64>,
    /// Only generations made on or after this day (YYYY-MM-DD, UTC) or Unix time in ms.
    #[arg(long)]
    since: Option<String>,
    /// Only generations made before this day (YYYY-MM-DD, UTC) or Unix time in ms.
    #[arg(long)]
    until: Option<String>,
}

/// Paging and output options shared by `list` and `search`.
#[derive(clap::Args, Debug)]
pub struct PageArgs {
    /// How many generations to print (0: all of them).
    #[arg(long, default_value_t = 20)]
    limit: usize,
    /// Continue after this cursor (printed after a full page).
    #[arg(long)]
    after: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// Runs one `sumi gallery` subcommand on the gallery in `home`.
pub fn run(cmd: GalleryCommand, home: &Path) -> Result<()> {
    let gallery = Gallery::open(home)
        .with_context(|| format!("cannot open the gallery in {}", home.display()))?;
    report_repairs(&gallery);
    match cmd {
        GalleryCommand::List { filter, page } => {
            let result = gallery.list(&filter.to_filter()?, parse_cursor(&page)?, page.limit)?;
            print_page(&result, page.json)
        }
        GalleryCommand::Search {
            query,
            filter,
            page,
        } => {
            let result = gallery.search(
                &query,
                &filter.to_filter()?,
                parse_cursor(&page)?,
                page.limit,
            )?;
            print_page(&result, page.json)
        }
        GalleryCommand::Show { id, json } => show(&gallery, id, json),
        GalleryCommand::Rerun { id, json: true, .. } => {
            emit(&serde_json::to_string_pretty(&gallery.rerun(id)?)?)
        }
        GalleryCommand::Rerun {
            id,
            model,
            vae,
            device,
            dtype,
            init_image,
            mask,
            ..
        } => {
            drop(gallery);
            let args = crate::generate_cmd::GenerateArgs::rerun(
                id, model, vae, device, dtype, init_image, mask,
            );
            crate::generate_cmd::run(args, home)
        }
        GalleryCommand::Delete { ids } => {
            for id in ids {
                gallery.delete(id)?;
                emit(&format!("deleted #{id}"))?;
            }
            Ok(())
        }
        GalleryCommand::Import { paths, json } => import(&gallery, &paths, json),
        GalleryCommand::Export { id, output, force } => {
            let g = gallery.get(id)?;
            crate::save::check_output(&output, home, force)?;
            gallery.export_image(g.id, &output)?;
            emit(&format!("exported #{id} to {}", output.display()))
        }
        GalleryCommand::ExportGrid {
            group,
            output,
            force,
        } => {
            crate::save::check_output(&output, home, force)?;
            gallery.export_grid(group, &output)?;
            emit(&format!(
                "exported comparison group {group} to {}",
                output.display()
            ))
        }
        GalleryCommand::Favourite { id, off } => {
            gallery.set_favourite(id, !off)?;
            let state = if off {
                "is no longer a favourite"
            } else {
                "is a favourite"
            };
            emit(&format!("#{id} {state}"))
        }
    }
}

/// Prints text and a newline to stdout; a closed pipe (e.g. `| head`) is not an error.
fn emit(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    let text = crate::terminal::safe(text);
    match writeln!(out, "{text}").and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// Tells the user on stderr what opening the gallery had to repair.
fn report_repairs(gallery: &Gallery) {
    let r = gallery.open_report();
    if !r.removed_rows.is_empty() {
        eprintln!(
            "gallery: removed {} entries whose image file was missing",
            r.removed_rows.len()
        );
    }
    if !r.reimported.is_empty() {
        eprintln!(
            "gallery: re-added {} image files that had no entry",
            r.reimported.len()
        );
    }
    for path in &r.moved_aside {
        eprintln!("gallery: moved unreadable file aside to {}", path.display());
    }
}

impl FilterArgs {
    /// Converts the options into the gallery's filter.
    fn to_filter(&self) -> Result<Filter> {
        Ok(Filter {
            favourites_only: self.favourites,
            model: self.model.clone(),
            sampler: self.sampler.clone(),
            group: self.group,
            created_from: self.since.as_deref().map(parse_time).transpose()?,
            created_before: self.until.as_deref().map(parse_time).transpose()?,
        })
    }
}

/// Reads `--after CREATED:ID`.
fn parse_cursor(page: &PageArgs) -> Result<Option<Cursor>> {
    let Some(text) = &page.after else {
        return Ok(None);
    };
    let parsed = text
        .split_once(':')
        .and_then(|(c, i)| Some((c.parse().ok()?, i.parse().ok()?)));
    match parsed {
        Some((created_at, id)) => Ok(Some(Cursor { created_at, id })),
        None => bail!("--after {text:?} is not a cursor; copy the `--after CREATED:ID` value printed after a page"),
    }
}

/// Reads a day `YYYY-MM-DD` (UTC midnight) or Unix milliseconds.
fn parse_time(text: &str) -> Result<i64> {
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(ms);
    }
    let parts: Vec<&str> = text.split('-').collect();
    if let [y, m, d] = parts[..] {
        if let (Ok(y), Ok(m), Ok(d)) = (y.parse::<i64>(), m.parse::<i64>(), d.parse::<i64>()) {
            if (1..=12).contains(&m) && (1..=31).contains(&d) {
                return Ok(days_from_civil(y, m, d) * 86_400_000);
            }
        }
    }
    bail!("{text:?} is not a date; use YYYY-MM-DD or Unix time in milliseconds")
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Formats Unix milliseconds as `YYYY-MM-DD HH:MM` (UTC).
fn format_time(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let mins = ms.rem_euclid(86_400_000) / 60_000;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}", mins / 60, mins % 60)
}

/// Prints a page as text lines or JSON.
fn print_page(page: &Page, json: bool) -> Result<()> {
    if json {
        return emit(&serde_json::to_string_pretty(page)?);
    }
    let mut text = String::new();
    if page.items.is_empty() {
        text.push_str("no generations\n");
    }
    for g in &page.items {
        writeln!(text, "{}", summary_line(g))?;
    }
    if let Some(next) = page.next {
        writeln!(text, "more: --after {}:{}", next.created_at, next.id)?;
    }
    emit(text.trim_end())
}

/// One line describing a generation.
fn summary_line(g: &Generation) -> String {
    let p = &g.params;
    let mut prompt: String = p.prompt.replace('\n', " ");
    if prompt.chars().count() > 60 {
        prompt = prompt.chars().take(59).collect::<String>() + "…";
    }
    format!(
        "#{:<6} {} {} {}x{} {} / {} steps {} cfg {} seed {} [{}] {}",
        g.id,
        format_time(g.created_at),
        if g.favourite { "★" } else { " " },
        p.width,
        p.height,
        p.sampler,
        p.schedule,
        p.steps,
        p.cfg,
        p.seed,
        p.model_name,
        prompt
    )
}

/// Prints everything about one generation.
fn show(gallery: &Gallery, id: i64, json: bool) -> Result<()> {
    let g = gallery.get(id)?;
    if json {
        let mut value = serde_json::to_value(&g)?;
        if let Some(obj) = value.as_object_mut() {
            obj.insert(
                "image_path".into(),
                gallery.image_path(&g).display().to_string().into(),
            );
            obj.insert(
                "thumb_path".into(),
                gallery.thumb_path(&g).display().to_string().into(),
            );
        }
        return emit(&serde_json::to_string_pretty(&value)?);
    }
    let m = &g.meta;
    let mut text = String::new();
    let star = if g.favourite { "  ★ favourite" } else { "" };
    writeln!(text, "#{}  {}{star}", g.id, format_time(g.created_at))?;
    writeln!(text, "{}", infotext::format(&g.params))?;
    if m.device.is_empty() {
        writeln!(text, "imported (made by {})", or_unknown(&m.engine_version))?;
    } else {
        writeln!(
            text,
            "engine {}  device {}  dtype {}  took {} ms",
            m.engine_version, m.device, m.dtype, m.duration_ms
        )?;
    }
    if let Some(note) = &m.note {
        writeln!(text, "note: {note}")?;
    }
    if let Some(c) = m.comparison {
        writeln!(text, "comparison group {} position {}", c.group, c.position)?;
    }
    if let Some(i) = &g.params.img2img {
        writeln!(text, "{}", made_from(gallery, i))?;
    }
    writeln!(text, "image {}", gallery.image_path(&g).display())?;
    write!(text, "thumbnail {}", gallery.thumb_path(&g).display())?;
    emit(&text)
}

/// What an img2img image was made from, in words.
fn made_from(gallery: &Gallery, i: &sumi_gallery::SourceParams) -> String {
    let kind = match (&i.mask, i.outpaint) {
        (_, Some(_)) => "outpainted",
        (Some(_), None) => "inpainted",
        (None, None) => "img2img",
    };
    let source = match (i.made_from, i.init_image.as_str()) {
        (Some(id), _) => format!("made from #{id}"),
        (None, "") => {
            "made from a picture Sumi does not have (re-run with --init-image FILE)".into()
        }
        (None, name) => format!(
            "made from {}",
            gallery
                .home()
                .join(sumi_gallery::SOURCES_DIR)
                .join(name)
                .display()
        ),
    };
    let mask = match i.mask.as_deref() {
        Some("") => ", mask not kept".to_string(),
        Some(name) => format!(
            ", mask {}",
            gallery
                .home()
                .join(sumi_gallery::SOURCES_DIR)
                .join(name)
                .display()
        ),
        None => String::new(),
    };
    format!("{kind} {source}{mask} (strength {})", i.strength)
}

/// The text, or "an unknown tool" when empty.
fn or_unknown(text: &str) -> &str {
    if text.is_empty() {
        "an unknown tool"
    } else {
        text
    }
}

/// Imports files and folders with the engine's rules, printing what happened (and each image's
/// note on the line after it); fails when any file failed.
fn import(gallery: &Gallery, paths: &[PathBuf], json: bool) -> Result<()> {
    let report = sumi_runtime::import::import_paths(gallery, paths);
    if json {
        emit(&serde_json::to_string_pretty(&report)?)?;
    } else {
        for g in &report.imported {
            emit(&format!("imported {}", summary_line(g)))?;
            if let Some(note) = &g.meta.note {
                emit(&format!("  note: {note}"))?;
            }
        }
        for (path, id) in &report.already_in_gallery {
            emit(&format!(
                "skipped {}: already in the gallery as #{id}",
                path.display()
            ))?;
        }
        for (path, why) in &report.failed {
            eprintln!(
                "not imported: {}",
                crate::terminal::safe(&format!("{}: {why}", path.display()))
            );
        }
    }
    if !report.failed.is_empty() {
        bail!(
            "{} of {} files could not be imported (see above)",
            report.failed.len(),
            report.failed.len() + report.imported.len()
        );
    }
    if report.imported.is_empty() && report.already_in_gallery.is_empty() {
        bail!("no PNG files found in the given paths");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_convert_both_ways() {
        assert_eq!(parse_time("1970-01-01").unwrap(), 0);
        assert_eq!(parse_time("2024-03-01").unwrap(), 1_709_251_200_000);
        assert_eq!(
            format_time(1_709_251_200_000 + 61 * 60_000),
            "2024-03-01 01:01"
        );
        assert_eq!(parse_time("1234").unwrap(), 1234);
        assert!(parse_time("yesterday").is_err());
    }

    #[test]
    fn commands_run_against_a_real_gallery() {
        let home = tempfile::tempdir().unwrap();
        let g = Gallery::open(home.path()).unwrap();
        let params = sumi_gallery::GenerationParams {
            prompt: "a lighthouse".into(),
            negative_prompt: String::new(),
            seed: 5,
            steps: 4,
            cfg: 7.0,
            sampler: "Euler".into(),
            schedule: "Karras".into(),
            width: 8,
            height: 8,
            model_name: "m".into(),
            model_hash: None,
            noise_source: "cpu".into(),
            ..Default::default()
        };
        let id = g
            .add(&params, &Default::default(), &image::RgbImage::new(8, 8))
            .unwrap()
            .id;
        drop(g);
        let out = home.path().join("out.png");
        run(GalleryCommand::Favourite { id, off: false }, home.path()).unwrap();
        run(
            GalleryCommand::Export {
                id,
                output: out.clone(),
                force: false,
            },
            home.path(),
        )
        .unwrap();
        assert!(out.exists());
        assert!(run(
            GalleryCommand::Export {
                id,
                output: out.clone(),
                force: false
            },
            home.path()
        )
        .is_err());
        run(
            GalleryCommand::Import {
                paths: vec![out],
                json: false,
            },
            home.path(),
        )
        .unwrap();
        run(GalleryCommand::Delete { ids: vec![id] }, home.path()).unwrap();
        assert!(run(GalleryCommand::Show { id, json: true }, home.path()).is_err());
    }
}
