//! Comparison grids: the images of a comparison group side by side in one PNG, each with a
//! label strip saying what differs ("DPM++ 2M · Karras · 20 steps · CFG 7") and a header with
//! the prompt, seed and the settings they share. Text is drawn with the `font8x8` bitmap font.

use std::path::Path;

use font8x8::{UnicodeFonts, BASIC_FONTS, LATIN_FONTS};
use image::{imageops, Rgb, RgbImage};

use crate::error::{GalleryError, Result};
use crate::{files, infotext, png_meta, GenerationParams};

/// Background of the whole grid.
pub const BACKGROUND: Rgb<u8> = Rgb([255, 255, 255]);
/// Background of the label strips and the header.
pub const STRIP: Rgb<u8> = Rgb([236, 236, 240]);
/// Colour of text.
pub const INK: Rgb<u8> = Rgb([20, 20, 28]);
/// Cells smaller than this (longest side, pixels) are enlarged by a whole factor.
const MIN_CELL: u32 = 128;
/// Space around the grid and between cells.
const MARGIN: u32 = 8;
const GAP: u32 = 4;

/// One image of the grid and its label.
pub struct Cell {
    /// The picture.
    pub image: RgbImage,
    /// What makes it different from the others.
    pub label: String,
}

/// A rectangle in the grid image: x, y, width, height.
pub type Rect = (u32, u32, u32, u32);

/// Where everything goes in a grid.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    /// Whole image size.
    pub width: u32,
    /// Whole image height.
    pub height: u32,
    /// Columns of cells.
    pub columns: u32,
    /// Size of each (enlarged) picture.
    pub cell: (u32, u32),
    /// Height of each label strip.
    pub strip: u32,
    /// Header area.
    pub header: Rect,
    /// Text size factor (glyphs are 8 × `scale` pixels).
    pub scale: u32,
    /// Header lines after wrapping.
    pub header_lines: Vec<String>,
    /// Each cell's label lines after wrapping.
    pub labels: Vec<Vec<String>>,
    /// How much each picture is enlarged.
    pub zoom: u32,
}

impl Layout {
    /// Where cell `i`'s picture goes.
    pub fn picture(&self, i: usize) -> Rect {
        let (col, row) = (i as u32 % self.columns, i as u32 / self.columns);
        let x = MARGIN + col * (self.cell.0 + GAP);
        let y = self.header.1 + self.header.3 + GAP + row * (self.cell.1 + self.strip + GAP);
        (x, y, self.cell.0, self.cell.1)
    }

    /// Where cell `i`'s label strip goes (right under its picture).
    pub fn label(&self, i: usize) -> Rect {
        let (x, y, w, h) = self.picture(i);
        (x, y + h, w, self.strip)
    }
}

fn line_height(scale: u32) -> u32 {
    10 * scale
}

/// Splits `text` into lines of at most `max` characters, breaking at spaces where it can.
pub fn wrap(text: &str, max: usize) -> Vec<String> {
    let max = max.max(1);
    let mut lines = Vec::new();
    for para in text.lines() {
        let mut line = String::new();
        for word in para.split_whitespace() {
            let mut word: Vec<char> = word.chars().collect();
            loop {
                let used = line.chars().count();
                let room = if used == 0 {
                    max
                } else {
                    max.saturating_sub(used + 1)
                };
                if word.len() <= room {
                    if used > 0 {
                        line.push(' ');
                    }
                    line.extend(word.iter());
                    break;
                }
                if used > 0 {
                    lines.push(std::mem::take(&mut line));
                    continue;
                }
                let rest = word.split_off(max);
                lines.push(word.into_iter().collect());
                word = rest;
            }
        }
        if !line.is_empty() {
            lines.push(line);
        }
    }
    lines
}

/// Wraps a label made of " · "-separated parts, breaking between parts where they fit.
pub fn wrap_label(label: &str, max: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    for part in label.split(" · ").filter(|p| !p.is_empty()) {
        let joined = if line.is_empty() {
            part.to_string()
        } else {
            format!("{line} · {part}")
        };
        if joined.chars().count() <= max {
            line = joined;
            continue;
        }
        if !line.is_empty() {
            lines.push(std::mem::take(&mut line));
        }
        if part.chars().count() <= max {
            line = part.to_string();
        } else {
            lines.extend(wrap(part, max));
        }
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// Computes the layout of `cells` in `columns` columns under `header`.
pub fn layout(cells: &[Cell], columns: u32, header: &str) -> Layout {
    let n = cells.len().max(1) as u32;
    let columns = columns.clamp(1, n);
    let rows = n.div_ceil(columns);
    let w = cells
        .iter()
        .map(|c| c.image.width())
        .max()
        .unwrap_or(1)
        .max(1);
    let h = cells
        .iter()
        .map(|c| c.image.height())
        .max()
        .unwrap_or(1)
        .max(1);
    let zoom = (MIN_CELL / w.max(h)).max(1);
    let cell = (w * zoom, h * zoom);
    let scale = (cell.0 / 256).clamp(1, 3);
    let pad = 3 * scale;
    let chars = ((cell.0 - 2 * pad) / (8 * scale)) as usize;
    let labels: Vec<Vec<String>> = cells.iter().map(|c| wrap_label(&c.label, chars)).collect();
    let most = labels.iter().map(Vec::len).max().unwrap_or(0) as u32;
    let strip = most.max(1) * line_height(scale) + 2 * pad;
    let width = 2 * MARGIN + columns * cell.0 + (columns - 1) * GAP;
    let header_chars = ((width - 2 * MARGIN - 2 * pad) / (8 * scale)) as usize;
    let header_lines = wrap(header, header_chars);
    let header_h = header_lines.len() as u32 * line_height(scale) + 2 * pad;
    let header_rect = (MARGIN, MARGIN, width - 2 * MARGIN, header_h);
    let height = 2 * MARGIN + header_h + rows * (cell.1 + strip + GAP);
    Layout {
        width,
        height,
        columns,
        cell,
        strip,
        header: header_rect,
        scale,
        header_lines,
        labels,
        zoom,
    }
}

fn glyph(c: char) -> [u8; 8] {
    BASIC_FONTS
        .get(c)
        .or_else(|| LATIN_FONTS.get(c))
        .or_else(|| BASIC_FONTS.get('?'))
        .unwrap_or([0; 8])
}

/// Draws one line of text with its top-left corner at (x, y), clipped to the image.
fn draw_text(img: &mut RgbImage, text: &str, x: u32, y: u32, scale: u32) {
    for (i, c) in text.chars().enumerate() {
        let rows = glyph(c);
        let gx = x + i as u32 * 8 * scale;
        for (row, bits) in rows.iter().enumerate() {
            for col in 0..8u32 {
                if bits & (1 << col) == 0 {
                    continue;
                }
                for dy in 0..scale {
                    for dx in 0..scale {
                        let (px, py) = (gx + col * scale + dx, y + row as u32 * scale + dy);
                        if px < img.width() && py < img.height() {
                            img.put_pixel(px, py, INK);
                        }
                    }
                }
            }
        }
    }
}

fn fill(img: &mut RgbImage, (x, y, w, h): Rect, colour: Rgb<u8>) {
    for py in y..(y + h).min(img.height()) {
        for px in x..(x + w).min(img.width()) {
            img.put_pixel(px, py, colour);
        }
    }
}

fn draw_lines(img: &mut RgbImage, lines: &[String], (x, y, _, _): Rect, scale: u32) {
    let pad = 3 * scale;
    for (i, line) in lines.iter().enumerate() {
        draw_text(
            img,
            line,
            x + pad,
            y + pad + i as u32 * line_height(scale),
            scale,
        );
    }
}

/// Draws the grid: `header` on top, then the cells row by row with their labels.
pub fn compose(cells: &[Cell], columns: u32, header: &str) -> RgbImage {
    let l = layout(cells, columns, header);
    let mut img = RgbImage::from_pixel(l.width, l.height, BACKGROUND);
    fill(&mut img, l.header, STRIP);
    draw_lines(&mut img, &l.header_lines, l.header, l.scale);
    for (i, c) in cells.iter().enumerate() {
        let (x, y, w, h) = l.picture(i);
        let pic = if l.zoom > 1 {
            imageops::resize(
                &c.image,
                c.image.width() * l.zoom,
                c.image.height() * l.zoom,
                imageops::FilterType::Nearest,
            )
        } else {
            c.image.clone()
        };
        let ox = x + (w - pic.width()) / 2;
        let oy = y + (h - pic.height()) / 2;
        imageops::replace(&mut img, &pic, ox.into(), oy.into());
        let strip = l.label(i);
        fill(&mut img, strip, STRIP);
        draw_lines(&mut img, &l.labels[i], strip, l.scale);
    }
    img
}

/// How many settings a cell can differ in (see [`varying`]).
pub const SETTINGS: usize = 6;

/// The settings a cell can differ in, as a label part.
fn parts(p: &GenerationParams) -> [String; SETTINGS] {
    [
        p.sampler.clone(),
        p.schedule.clone(),
        format!("{} steps", p.steps),
        format!("CFG {}", p.cfg),
        p.img2img
            .as_ref()
            .map(|i| format!("strength {}", i.strength))
            .unwrap_or_default(),
        lora_tags(&p.prompt).join(" "),
    ]
}

/// The `<lora:...>` (and `<lyco:...>`) tags of a prompt, each as "LoRA NAME:WEIGHT".
fn lora_tags(prompt: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = prompt;
    while let Some(i) = rest.find('<') {
        rest = &rest[i + 1..];
        let Some(end) = rest.find('>') else { break };
        let inner = &rest[..end];
        if let Some(args) = inner
            .strip_prefix("lora:")
            .or_else(|| inner.strip_prefix("lyco:"))
        {
            out.push(format!("LoRA {args}"));
            rest = &rest[end + 1..];
        }
    }
    out
}

/// Which of the settings (sampler, schedule, steps, CFG, denoising strength, LoRA weights)
/// differ within `params`.
pub fn varying(params: &[&GenerationParams]) -> [bool; SETTINGS] {
    let mut out = [false; SETTINGS];
    if let Some(first) = params.first() {
        let a = parts(first);
        for p in &params[1..] {
            for (k, part) in parts(p).iter().enumerate() {
                out[k] |= *part != a[k];
            }
        }
    }
    out
}

/// Each cell's label: the settings that differ, joined with " · " (the first four when none
/// differ).
pub fn labels(params: &[&GenerationParams]) -> Vec<String> {
    let vary = varying(params);
    let any = vary.iter().any(|v| *v);
    // LoRA tags every cell has the same are not what a cell changes.
    let tags: Vec<Vec<String>> = params.iter().map(|p| lora_tags(&p.prompt)).collect();
    params
        .iter()
        .zip(&tags)
        .map(|(p, own)| {
            let mut parts = parts(p);
            parts[SETTINGS - 1] = own
                .iter()
                .filter(|t| !tags.iter().all(|other| other.contains(t)))
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(" ");
            let shown: Vec<&str> = parts
                .iter()
                .zip(vary)
                .enumerate()
                .filter(|(k, (_, v))| *v || (!any && *k < 4))
                .map(|(_, p)| p)
                .map(|(s, _)| s.as_str())
                .collect();
            shown.join(" · ")
        })
        .collect()
}

/// The header: the prompt, then seed, size, model and the settings all cells share.
pub fn header(params: &[&GenerationParams]) -> String {
    let Some(first) = params.first() else {
        return String::new();
    };
    let vary = varying(params);
    let mut facts = vec![
        format!("Seed {}", first.seed),
        format!("{}x{}", first.width, first.height),
    ];
    if !first.model_name.is_empty() {
        facts.push(first.model_name.clone());
    }
    facts.extend(
        // The prompt shows the LoRA tags already.
        parts(first)
            .into_iter()
            .zip(vary)
            .take(SETTINGS - 1)
            .filter(|(s, v)| !*v && !s.is_empty())
            .map(|(s, _)| s),
    );
    format!("{}\n{}", first.prompt, facts.join(" · "))
}

/// Columns for a group in product order: the length of the innermost varying setting's run
/// (so each row holds one value of the outer settings), or about a square when one setting varies.
pub fn columns(params: &[&GenerationParams]) -> u32 {
    let n = params.len() as u32;
    let vary = varying(params);
    let Some(inner) = (0..SETTINGS).rev().find(|k| vary[*k]) else {
        return n.max(1);
    };
    if vary.iter().filter(|v| **v).count() == 1 {
        return if n <= 5 {
            n
        } else {
            (n as f64).sqrt().ceil() as u32
        };
    }
    let first = parts(params[0]);
    let run = params
        .iter()
        .take_while(|p| {
            let q = parts(p);
            (0..SETTINGS).all(|k| k == inner || !vary[k] || q[k] == first[k])
        })
        .count();
    run.max(1) as u32
}

/// Writes a grid to `path` atomically, as PNG with A1111 `parameters` text (the first
/// cell's settings, as A1111 does for its grids). Refuses a path among any gallery's own
/// files ([`GalleryError::ManagedPath`], see [`crate::is_inside_a_gallery`]).
pub fn write_png(img: &RgbImage, first: &GenerationParams, path: &Path) -> Result<()> {
    if crate::is_inside_a_gallery(path) {
        return Err(GalleryError::ManagedPath(path.to_path_buf()));
    }
    let text = infotext::format(first);
    let png =
        png_meta::encode_png(img, &[(png_meta::PARAMETERS_KEY, &text)]).map_err(|source| {
            GalleryError::Png {
                path: path.to_path_buf(),
                source,
            }
        })?;
    files::write_output(path, &png)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn solid(w: u32, h: u32, c: [u8; 3]) -> RgbImage {
        RgbImage::from_pixel(w, h, Rgb(c))
    }

    fn params(sampler: &str, steps: u32, cfg: f64) -> GenerationParams {
        GenerationParams {
            prompt: "a red fox".into(),
            negative_prompt: String::new(),
            seed: 7,
            steps,
            cfg,
            sampler: sampler.into(),
            schedule: "Karras".into(),
            width: 200,
            height: 100,
            model_name: "demo".into(),
            model_hash: None,
            noise_source: "cpu".into(),
            ..Default::default()
        }
    }

    fn inked(img: &RgbImage, (x, y, w, h): Rect) -> usize {
        let mut n = 0;
        for py in y..y + h {
            for px in x..x + w {
                if *img.get_pixel(px, py) == INK {
                    n += 1;
                }
            }
        }
        n
    }

    #[test]
    fn dimensions_and_cell_placement() {
        let colours = [[200, 0, 0], [0, 200, 0], [0, 0, 200]];
        let cells: Vec<Cell> = colours
            .iter()
            .map(|c| Cell {
                image: solid(200, 130, *c),
                label: "Euler".into(),
            })
            .collect();
        let img = compose(&cells, 2, "a prompt");
        let l = layout(&cells, 2, "a prompt");
        // 2 columns of 200 px, margins of 8, a gap of 4; one header line and one label line.
        assert_eq!(img.width(), 8 + 200 + 4 + 200 + 8);
        assert_eq!(l.strip, 10 + 6);
        assert_eq!(l.header.3, 10 + 6);
        let row = 130 + 16 + 4;
        assert_eq!(img.height(), 8 + 16 + 2 * row + 8);
        // Cell 0 top-left, cell 1 to its right, cell 2 on the second row.
        assert_eq!(l.picture(1).0, 8 + 200 + 4);
        assert_eq!(l.picture(2), (8, 8 + 16 + 4 + row, 200, 130));
        for (i, c) in colours.iter().enumerate() {
            let (x, y, w, h) = l.picture(i);
            for (px, py) in [(x, y), (x + w - 1, y + h - 1), (x + w / 2, y + h / 2)] {
                assert_eq!(img.get_pixel(px, py).0, *c, "cell {i} at {px},{py}");
            }
        }
        // The fourth slot stays empty.
        let (x, y, _, _) = l.picture(3);
        assert_eq!(*img.get_pixel(x + 5, y + 5), BACKGROUND);
    }

    #[test]
    fn labels_are_drawn_in_their_strips() {
        let cells = vec![
            Cell {
                image: solid(64, 64, [10, 10, 10]),
                label: "DPM++ 2M · Karras".into(),
            },
            Cell {
                image: solid(64, 64, [10, 10, 10]),
                label: String::new(),
            },
        ];
        let img = compose(&cells, 2, "");
        let l = layout(&cells, 2, "");
        assert_eq!(l.zoom, 2, "small pictures are enlarged");
        assert_eq!(l.cell, (128, 128));
        assert!(inked(&img, l.label(0)) > 40, "label 0 has text");
        assert_eq!(inked(&img, l.label(1)), 0, "an empty label draws nothing");
        assert_eq!(inked(&img, l.header), 0);
        // Enlarged pictures are placed whole.
        let (x, y, w, h) = l.picture(1);
        assert_eq!(img.get_pixel(x + w - 1, y + h - 1).0, [10, 10, 10]);
    }

    #[test]
    fn long_labels_wrap_and_grow_the_strip() {
        let cell = |label: &str| Cell {
            image: solid(128, 128, [0, 0, 0]),
            label: label.into(),
        };
        let short = layout(&[cell("Euler")], 1, "");
        let long = layout(
            &[cell("DPM++ 2M SDE · Exponential · 20 steps · CFG 7.5")],
            1,
            "",
        );
        assert_eq!(short.labels[0].len(), 1);
        assert!(long.labels[0].len() >= 3, "{:?}", long.labels[0]);
        assert!(long.strip > short.strip);
        assert!(long.labels[0].iter().all(|l| l.chars().count() <= 15));
    }

    #[test]
    fn wrap_breaks_at_spaces_and_splits_long_words() {
        assert_eq!(wrap("ab cd ef", 5), ["ab cd", "ef"]);
        assert_eq!(wrap("abcdefgh", 3), ["abc", "def", "gh"]);
        assert_eq!(wrap("one\ntwo", 10), ["one", "two"]);
        assert_eq!(
            wrap_label("Euler · 12 steps · CFG 3", 15),
            ["Euler", "12 steps", "CFG 3"]
        );
        assert_eq!(
            wrap_label("DPM++ 2M SDE Heun · CFG 7", 10),
            ["DPM++ 2M", "SDE Heun", "CFG 7"]
        );
    }

    #[test]
    fn labels_header_and_columns_follow_what_varies() {
        let ps = [
            params("Euler", 10, 7.0),
            params("Euler", 20, 7.0),
            params("DPM++ 2M", 10, 7.0),
            params("DPM++ 2M", 20, 7.0),
            params("Heun", 10, 7.0),
            params("Heun", 20, 7.0),
        ];
        let refs: Vec<&GenerationParams> = ps.iter().collect();
        assert_eq!(varying(&refs), [true, false, true, false, false, false]);
        assert_eq!(labels(&refs)[2], "DPM++ 2M · 10 steps");
        assert_eq!(columns(&refs), 2);
        assert_eq!(
            header(&refs),
            "a red fox\nSeed 7 · 200x100 · demo · Karras · CFG 7"
        );
        let one_axis: Vec<&GenerationParams> = refs.iter().step_by(2).copied().collect();
        assert_eq!(labels(&one_axis), ["Euler", "DPM++ 2M", "Heun"]);
        assert_eq!(columns(&one_axis), 3);
        let cfg = [params("Euler", 10, 5.0), params("Euler", 10, 7.5)];
        let refs: Vec<&GenerationParams> = cfg.iter().collect();
        assert_eq!(labels(&refs), ["CFG 5", "CFG 7.5"]);
    }

    #[test]
    fn strength_and_lora_weight_axes_are_labelled_with_their_values() {
        let cell = |strength: f64, w: &str| {
            let mut p = params("Euler", 10, 7.0);
            p.prompt = format!("a red fox <lora:paper:1> <lora:ink:{w}> <hypernet:x:1>");
            p.img2img = Some(crate::SourceParams {
                strength,
                ..Default::default()
            });
            p
        };
        let ps = [
            cell(0.3, "0"),
            cell(0.3, "0.5"),
            cell(0.6, "0"),
            cell(0.6, "0.5"),
        ];
        let refs: Vec<&GenerationParams> = ps.iter().collect();
        assert_eq!(
            labels(&refs),
            [
                "strength 0.3 · LoRA ink:0",
                "strength 0.3 · LoRA ink:0.5",
                "strength 0.6 · LoRA ink:0",
                "strength 0.6 · LoRA ink:0.5"
            ]
        );
        assert_eq!(columns(&refs), 2);
        let fixed: Vec<&GenerationParams> = refs.iter().step_by(2).copied().collect();
        assert_eq!(labels(&fixed), ["strength 0.3", "strength 0.6"]);
        assert_eq!(
            header(&fixed),
            "a red fox <lora:paper:1> <lora:ink:0> <hypernet:x:1>\nSeed 7 · 200x100 · demo · Euler · Karras · 10 steps · CFG 7"
        );
    }

    #[test]
    fn writes_a_png_with_parameters() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("grid.png");
        let p = params("Euler", 10, 7.0);
        let img = compose(
            &[Cell {
                image: solid(32, 32, [1, 2, 3]),
                label: "Euler".into(),
            }],
            1,
            &header(&[&p]),
        );
        write_png(&img, &p, &path).unwrap();
        let back = image::open(&path).unwrap().to_rgb8();
        assert_eq!(back.dimensions(), img.dimensions());
        let text = png_meta::find_text(std::fs::File::open(&path).unwrap(), "parameters")
            .unwrap()
            .unwrap();
        assert!(
            text.starts_with("a red fox\nSteps: 10, Sampler: Euler"),
            "{text}"
        );
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "no temp file left behind");
    }
}
