//! `sumi generate`'s image-to-image, inpainting, outpainting and hires fix options, and how
//! they become the request and the pictures handed to the engine.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use sumi_engine::imaging::{Extend, MaskedContent, ResizeMode};
use sumi_engine::pipeline::{parse_upscaler, source_hash, MAX_SIZE};
use sumi_engine::Request;
use sumi_gallery::Gallery;
use sumi_runtime::sources::{read_init, read_picture, SourceBytes};

/// Image-to-image and hires fix options.
#[derive(Args, Default, Clone)]
pub struct Img2ImgArgs {
    /// Start from this picture (PNG, JPEG, WebP; or gallery:ID for a gallery image): img2img.
    /// The size defaults to the picture's, rounded down to the model's multiple.
    #[arg(long, value_name = "FILE|gallery:ID")]
    pub init_image: Option<String>,
    /// Denoising strength for --init-image: 0 keeps the picture, 1 repaints it (default 0.75).
    #[arg(long, value_name = "S")]
    pub strength: Option<f64>,
    /// How a picture of another size is fitted: just (stretch), crop or fill.
    #[arg(long, value_name = "just|crop|fill")]
    pub resize_mode: Option<String>,
    /// A1111's "img2img fix steps": run exactly --steps steps at any strength.
    #[arg(long)]
    pub fixed_steps: bool,
    /// Inpaint: white in this picture is repainted, black kept.
    #[arg(long, value_name = "FILE")]
    pub mask: Option<PathBuf>,
    /// Mask blur in pixels (default 4).
    #[arg(long, value_name = "PX")]
    pub mask_blur: Option<u32>,
    /// Repaint the black part of the mask instead.
    #[arg(long)]
    pub invert_mask: bool,
    /// Repaint the whole picture (whole) or only the masked area at full size (masked).
    #[arg(long, value_name = "whole|masked")]
    pub inpaint_area: Option<String>,
    /// Pixels around the mask for --inpaint-area masked (default 32).
    #[arg(long, value_name = "PX")]
    pub masked_padding: Option<u32>,
    /// What the masked area starts from: original, fill, latent-noise or latent-nothing
    /// (default original; fill with --outpaint).
    #[arg(long, value_name = "NAME")]
    pub masked_content: Option<String>,
    /// Outpaint: extend the canvas by LEFT,RIGHT,TOP,BOTTOM pixels and paint the new area.
    #[arg(long, value_name = "L,R,T,B")]
    pub outpaint: Option<String>,
    /// Hires fix: enlarge the first pass by this factor and run a second pass.
    #[arg(long, value_name = "X")]
    pub hires_scale: Option<f64>,
    /// Hires fix to this size (WxH; 0 on one side keeps the aspect ratio).
    #[arg(long, value_name = "WxH")]
    pub hires_size: Option<String>,
    /// Hires upscaler: Latent (default), "Latent (antialiased)", "Latent (bicubic)",
    /// "Latent (bicubic antialiased)", "Latent (nearest)", "Latent (nearest-exact)", Lanczos,
    /// Nearest (also latent-bicubic, ... and lower case).
    #[arg(long, value_name = "NAME")]
    pub hires_upscaler: Option<String>,
    /// Steps of the second pass (default 0: the first pass's).
    #[arg(long, value_name = "N")]
    pub hires_steps: Option<u32>,
    /// Denoising strength of the second pass (default 0.7).
    #[arg(long, alias = "hires-denoise", value_name = "S")]
    pub hires_strength: Option<f64>,
    /// Sampler of the second pass (default: the first pass's).
    #[arg(long, value_name = "NAME")]
    pub hires_sampler: Option<String>,
    /// Schedule of the second pass (default: the first pass's).
    #[arg(long, value_name = "NAME")]
    pub hires_schedule: Option<String>,
    /// Prompt of the second pass (default: the first pass's).
    #[arg(long, value_name = "TEXT")]
    pub hires_prompt: Option<String>,
}

impl Img2ImgArgs {
    fn any_hires(&self) -> bool {
        self.hires_scale.is_some()
            || self.hires_size.is_some()
            || self.hires_upscaler.is_some()
            || self.hires_steps.is_some()
            || self.hires_strength.is_some()
            || self.hires_sampler.is_some()
            || self.hires_schedule.is_some()
            || self.hires_prompt.is_some()
    }

    fn any_img2img_option(&self) -> bool {
        self.strength.is_some()
            || self.resize_mode.is_some()
            || self.fixed_steps
            || self.mask.is_some()
            || self.mask_blur.is_some()
            || self.invert_mask
            || self.inpaint_area.is_some()
            || self.masked_padding.is_some()
            || self.masked_content.is_some()
            || self.outpaint.is_some()
    }

    /// Checks what needs no model, before it loads.
    pub fn check(&self) -> Result<()> {
        if let Some(s) = self.strength {
            sumi_engine::sampling::img2img::check_strength(s)?;
        }
        if let Some(m) = &self.resize_mode {
            parse_resize(m)?;
        }
        if let Some(m) = &self.masked_content {
            parse_content(m)?;
        }
        if let Some(a) = &self.inpaint_area {
            parse_area(a)?;
        }
        if let Some(o) = &self.outpaint {
            parse_outpaint(o)?;
        }
        if let Some(s) = &self.hires_size {
            parse_size(s)?;
        }
        if let Some(u) = &self.hires_upscaler {
            parse_upscaler(u)?;
        }
        if self.hires_scale.is_some() && self.hires_size.is_some() {
            bail!("give --hires-scale or --hires-size, not both");
        }
        Ok(())
    }
}

fn parse_resize(s: &str) -> Result<ResizeMode> {
    ResizeMode::parse(s).with_context(|| format!("--resize-mode {s:?}: use just, crop or fill"))
}

fn parse_content(s: &str) -> Result<MaskedContent> {
    MaskedContent::parse(s).with_context(|| {
        format!("--masked-content {s:?}: use original, fill, latent-noise or latent-nothing")
    })
}

fn parse_area(s: &str) -> Result<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "whole" | "whole picture" => Ok(false),
        "masked" | "only masked" => Ok(true),
        _ => bail!("--inpaint-area {s:?}: use whole or masked"),
    }
}

fn parse_outpaint(s: &str) -> Result<Extend> {
    let parts: Vec<&str> = s.split(',').map(str::trim).collect();
    let nums: Option<Vec<u32>> = parts.iter().map(|p| p.parse().ok()).collect();
    match nums.as_deref() {
        Some(&[left, right, top, bottom]) => Ok(Extend {
            left,
            right,
            top,
            bottom,
        }),
        _ => {
            bail!("--outpaint {s:?}: give four pixel counts LEFT,RIGHT,TOP,BOTTOM, e.g. 0,128,0,0")
        }
    }
}

fn parse_size(s: &str) -> Result<(u32, u32)> {
    let (w, h) = s
        .split_once(['x', 'X'])
        .with_context(|| format!("--hires-size {s:?}: write WIDTHxHEIGHT, e.g. 1024x1024"))?;
    match (w.trim().parse(), h.trim().parse()) {
        (Ok(w), Ok(h)) if (w, h) != (0, 0) => Ok((w, h)),
        _ => bail!("--hires-size {s:?}: write WIDTHxHEIGHT with numbers, e.g. 1024x1024"),
    }
}

/// The size of a picture from its header, without decoding it.
fn picture_size(bytes: &[u8]) -> Result<(u32, u32)> {
    let img = sumi_engine::imaging::decode_image(bytes, "init image", MAX_SIZE)?;
    Ok((img.width(), img.height()))
}

/// Puts the options into `request` (which may already carry a recorded img2img or hires fix)
/// and returns the pictures it needs. `sized` says whether --width/--height were given.
pub fn apply(
    args: &Img2ImgArgs,
    request: &mut Request,
    home: &Path,
    downscale: u32,
    sized: bool,
) -> Result<SourceBytes> {
    let mut sources = SourceBytes::default();
    if args.init_image.is_none() && request.img2img.is_none() {
        if args.any_img2img_option() {
            bail!("--strength, --mask, --outpaint and the other img2img options need --init-image");
        }
    } else {
        let gallery = Gallery::open(home).ok();
        let mut img = request.img2img.take().unwrap_or_default();
        match &args.init_image {
            Some(spec) => {
                let (bytes, made_from) = read_init(spec, gallery.as_ref())?;
                img.init_image = source_hash(&bytes);
                sources.init_image = Some(bytes);
                sources.made_from = made_from;
            }
            None => {
                if img.init_image.is_empty() {
                    bail!(
                        "this image was made from a picture Sumi does not have (imported from \
                         another tool); give it with --init-image FILE"
                    );
                }
                let g = gallery.as_ref().context("cannot open the gallery")?;
                sources.init_image = Some(g.read_source(&img.init_image)?);
            }
        }
        match &args.mask {
            Some(path) => {
                let bytes = read_picture(path, "mask")?;
                img.mask = Some(source_hash(&bytes));
                sources.mask = Some(bytes);
            }
            None => match img.mask.as_deref() {
                Some("") => bail!(
                    "this image was inpainted with a mask Sumi does not have; give it with --mask FILE"
                ),
                Some(name) => {
                    let g = gallery.as_ref().context("cannot open the gallery")?;
                    sources.mask = Some(g.read_source(name)?);
                }
                None => {}
            },
        }
        if let Some(s) = args.strength {
            img.strength = s;
        }
        if let Some(m) = &args.resize_mode {
            img.resize_mode = parse_resize(m)?;
        }
        img.fixed_steps |= args.fixed_steps;
        if let Some(b) = args.mask_blur {
            img.mask_blur = b;
        }
        img.invert_mask |= args.invert_mask;
        if let Some(a) = &args.inpaint_area {
            img.only_masked = parse_area(a)?;
        }
        if let Some(p) = args.masked_padding {
            img.masked_padding = p;
        }
        if let Some(o) = &args.outpaint {
            img.outpaint = Some(parse_outpaint(o)?);
            if args.masked_content.is_none() {
                img.masked_content = MaskedContent::Fill;
            }
        }
        if let Some(c) = &args.masked_content {
            img.masked_content = parse_content(c)?;
        }
        if args.init_image.is_some() && !sized {
            let (mut w, mut h) = picture_size(sources.init_image.as_deref().unwrap_or_default())?;
            if let Some(e) = img.outpaint {
                w = w.saturating_add(e.left).saturating_add(e.right);
                h = h.saturating_add(e.top).saturating_add(e.bottom);
            }
            let snap = |v: u32| (v.min(MAX_SIZE) / downscale * downscale).max(downscale);
            (request.width, request.height) = (snap(w), snap(h));
        }
        request.img2img = Some(img);
    }
    if args.any_hires() {
        let mut h = request.hires.take().unwrap_or_default();
        if let Some(s) = args.hires_scale {
            (h.scale, h.width, h.height) = (s, 0, 0);
        }
        if let Some(s) = &args.hires_size {
            (h.width, h.height) = parse_size(s)?;
        }
        if let Some(u) = &args.hires_upscaler {
            h.upscaler = u.clone();
        }
        if let Some(s) = args.hires_steps {
            h.steps = s;
        }
        if let Some(s) = args.hires_strength {
            h.strength = s;
        }
        if let Some(s) = &args.hires_sampler {
            h.sampler = s.clone();
        }
        if let Some(s) = &args.hires_schedule {
            h.schedule = s.clone();
        }
        if let Some(p) = &args.hires_prompt {
            h.prompt = p.clone();
        }
        request.hires = Some(h);
    }
    Ok(sources)
}
