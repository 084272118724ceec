//! The imaging functions against `tests/fixtures/img/reference.*` (Pillow 12, OpenCV 4, torch):
//! pixel operations must match exactly, latent interpolation to float rounding.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::OnceLock;

use candle_core::{Device, Tensor};
use image::{GrayImage, ImageBuffer, Pixel, RgbImage, RgbaImage};
use serde_json::Value;

use super::composite::{alpha_composite, flatten_on_white, premultiply, unpremultiply};
use super::cv_blur::blur_mask;
use super::hires::{hires_size, upscale_image, HiresSize, HiresTarget, ImageUpscaler};
use super::inpaint::{apply_overlay, prepare, InpaintArea, MaskOptions};
use super::interpolate::{interpolate, LatentUpscale};
use super::load::{decode_image, init_rgb};
use super::mask::{binary_mask, fill, latent_mask, MaskedContent};
use super::outpaint::{extend_canvas, Extend};
use super::pil::{resample, Filter, Image8};
use super::pil_blur::gaussian_blur;
use super::region::{expand_crop_region, Region};
use super::resize::{resize_image, ResizeMode};
use crate::sampling::img2img::img2img_steps;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/img")
}

fn refs() -> &'static HashMap<String, Tensor> {
    static R: OnceLock<HashMap<String, Tensor>> = OnceLock::new();
    R.get_or_init(|| {
        candle_core::safetensors::load(dir().join("reference.safetensors"), &Device::Cpu).unwrap()
    })
}

fn meta() -> &'static Value {
    static M: OnceLock<Value> = OnceLock::new();
    M.get_or_init(|| {
        serde_json::from_str(&std::fs::read_to_string(dir().join("reference.json")).unwrap())
            .unwrap()
    })
}

/// A stored `[H, W]` or `[H, W, C]` u8 tensor as an image buffer.
fn img<P: Pixel<Subpixel = u8>>(name: &str) -> Image8<P> {
    let t = &refs()[name];
    let d = t.dims();
    let data = t.flatten_all().unwrap().to_vec1::<u8>().unwrap();
    let channels = if d.len() == 3 { d[2] } else { 1 };
    assert_eq!(channels, usize::from(P::CHANNEL_COUNT), "{name}: {d:?}");
    ImageBuffer::from_raw(d[1] as u32, d[0] as u32, data).unwrap()
}

fn same<P: Pixel<Subpixel = u8>>(got: &Image8<P>, name: &str) {
    let want: Image8<P> = img(name);
    assert_eq!(got.dimensions(), want.dimensions(), "{name}: size");
    let diff = got
        .as_raw()
        .iter()
        .zip(want.as_raw())
        .filter(|(a, b)| a != b)
        .count();
    let worst = got
        .as_raw()
        .iter()
        .zip(want.as_raw())
        .map(|(&a, &b)| (i16::from(a) - i16::from(b)).abs())
        .max();
    assert_eq!(diff, 0, "{name}: {diff} values differ, worst by {worst:?}");
}

fn sizes(key: &str) -> Vec<(u32, u32)> {
    meta()[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s[0].as_u64().unwrap() as u32, s[1].as_u64().unwrap() as u32))
        .collect()
}

#[test]
fn pillow_resampling_and_a1111_resize_modes_are_exact() {
    let pic: RgbImage = img("pic");
    let mask: GrayImage = img("mask");
    for (i, (w, h)) in sizes("resize_sizes").into_iter().enumerate() {
        same(
            &resample(&pic, w, h, Filter::Lanczos, None),
            &format!("resample.lanczos.{i}"),
        );
        same(
            &resample(&pic, w, h, Filter::Bicubic, None),
            &format!("resample.bicubic.{i}"),
        );
        same(
            &resample(&pic, w, h, Filter::Nearest, None),
            &format!("resample.nearest.{i}"),
        );
        same(
            &resample(&mask, w, h, Filter::Lanczos, None),
            &format!("resample.gray.{i}"),
        );
        for (m, mode) in [
            ResizeMode::Just,
            ResizeMode::CropAndResize,
            ResizeMode::ResizeAndFill,
        ]
        .into_iter()
        .enumerate()
        {
            same(
                &resize_image(mode, &pic, w, h),
                &format!("resize_mode{m}.{i}"),
            );
        }
    }
    same(
        &resample(&pic, 37, 5, Filter::Lanczos, Some([0.0, 0.0, 37.0, 0.0])),
        "resample.box_top",
    );
    same(
        &resample(&pic, 37, 5, Filter::Lanczos, Some([0.0, 29.0, 37.0, 29.0])),
        "resample.box_bottom",
    );
    same(
        &resample(&pic, 6, 29, Filter::Lanczos, Some([37.0, 0.0, 37.0, 29.0])),
        "resample.box_right",
    );
}

#[test]
fn pillow_compositing_and_blur_are_exact() {
    let rgba: RgbaImage = img("pic_alpha");
    same(&flatten_on_white(&rgba), "flatten");
    same(&premultiply(&rgba), "premultiplied");
    same(&unpremultiply(&rgba), "unpremultiplied");
    for r in [0u32, 1, 2, 4, 16, 64, 256] {
        same(&gaussian_blur(&rgba, r as f32), &format!("pil_blur.{r}"));
    }
    let mut back = RgbaImage::from_fn(23, 17, |x, y| *rgba.get_pixel((x + 23 - 5) % 23, y));
    alpha_composite(&mut back, &rgba);
    same(&back, "alpha_composite");
    let dynamic = image::DynamicImage::ImageRgba8(rgba);
    same(&init_rgb(&dynamic), "flatten");
}

#[test]
fn opencv_mask_blur_is_exact() {
    let mask: GrayImage = img("mask");
    for b in meta()["cv_blur_radii"].as_array().unwrap() {
        let b = b.as_u64().unwrap() as u32;
        same(&blur_mask(&mask, b, b), &format!("cv_blur.{b}"));
    }
    same(&blur_mask(&mask, 3, 0), "cv_blur.x3y0");
    same(&blur_mask(&mask, 0, 6), "cv_blur.x0y6");
    let tiny: GrayImage = img("cv_blur.tiny");
    same(&blur_mask(&tiny, 9, 9), "cv_blur.tiny.9");
}

#[test]
fn masks_fill_and_latent_masks_are_exact() {
    let rgba: RgbaImage = img("mask_rgba");
    same(
        &binary_mask(&image::DynamicImage::ImageRgba8(rgba)),
        "binary.rgba",
    );
    let pic: RgbImage = img("pic");
    same(
        &binary_mask(&image::DynamicImage::ImageRgb8(pic.clone())),
        "binary.rgb",
    );
    let mask: GrayImage = img("mask");
    same(&fill(&pic, &blur_mask(&mask, 4, 4)), "fill");
    same(&fill(&pic, &mask), "fill.hard");
    for (w, h) in sizes("latent_mask_sizes") {
        let got: Vec<u8> = latent_mask(&blur_mask(&mask, 4, 4), w, h)
            .iter()
            .map(|&v| v as u8)
            .collect();
        let want: GrayImage = img(&format!("latent_mask.{w}x{h}"));
        assert_eq!(got, *want.as_raw(), "latent mask {w}x{h}");
    }
}

#[test]
fn inpainting_whole_picture_and_only_masked_match_a1111() {
    let pic: RgbImage = img("pic");
    let mask: GrayImage = img("mask");
    for (i, case) in meta()["inpaint"].as_array().unwrap().iter().enumerate() {
        let (w, h) = (
            case["width"].as_u64().unwrap() as u32,
            case["height"].as_u64().unwrap() as u32,
        );
        let pad = case["padding"].as_u64().unwrap() as u32;
        let mut opts = MaskOptions {
            blur_x: 2,
            blur_y: 2,
            content: MaskedContent::Original,
            ..Default::default()
        };
        let whole = prepare(&pic, Some(&mask), w, h, ResizeMode::Just, &opts).unwrap();
        same(whole.mask.as_ref().unwrap(), &format!("whole.{i}.mask"));
        let generated: RgbImage = img(&format!("whole.{i}.generated"));
        same(
            &apply_overlay(&generated, whole.overlay.as_ref().unwrap()),
            &format!("whole.{i}.composite"),
        );

        opts.area = InpaintArea::OnlyMasked { padding: pad };
        let only = prepare(&pic, Some(&mask), w, h, ResizeMode::Just, &opts).unwrap();
        same(only.mask.as_ref().unwrap(), &format!("masked.{i}.mask"));
        same(&only.image, &format!("masked.{i}.image"));
        let r: Vec<i64> = case["region"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect();
        let overlay = only.overlay.as_ref().unwrap();
        assert_eq!(
            overlay.paste_to,
            Some((r[0], r[1], (r[2] - r[0]) as u32, (r[3] - r[1]) as u32))
        );
        let generated: RgbImage = img(&format!("masked.{i}.generated"));
        same(
            &apply_overlay(&generated, overlay),
            &format!("masked.{i}.composite"),
        );
    }
    for case in meta()["expand"].as_array().unwrap() {
        let v = |k: &str| -> Vec<i64> {
            case[k]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_i64().unwrap())
                .collect()
        };
        let (r, s, im, e) = (v("region"), v("size"), v("image"), v("expanded"));
        let got = expand_crop_region(
            Region {
                x1: r[0],
                y1: r[1],
                x2: r[2],
                y2: r[3],
            },
            s[0] as u32,
            s[1] as u32,
            im[0] as u32,
            im[1] as u32,
        );
        assert_eq!(
            [got.x1, got.y1, got.x2, got.y2],
            [e[0], e[1], e[2], e[3]],
            "{case}"
        );
    }
}

#[test]
fn empty_masks_are_refused_and_full_masks_repaint_everything() {
    let pic: RgbImage = img("pic");
    let empty = GrayImage::new(37, 29);
    for area in [
        InpaintArea::WholePicture,
        InpaintArea::OnlyMasked { padding: 8 },
    ] {
        let opts = MaskOptions {
            blur_x: 4,
            blur_y: 4,
            area,
            ..Default::default()
        };
        let e = prepare(&pic, Some(&empty), 32, 32, ResizeMode::Just, &opts)
            .unwrap_err()
            .to_string();
        assert!(e.contains("mask is empty"), "{e}");
    }
    let full = GrayImage::from_pixel(37, 29, image::Luma([255]));
    let opts = MaskOptions {
        content: MaskedContent::LatentNoise,
        ..Default::default()
    };
    let p = prepare(&pic, Some(&full), 32, 24, ResizeMode::Just, &opts).unwrap();
    assert!(latent_mask(p.mask.as_ref().unwrap(), 4, 3)
        .iter()
        .all(|&v| v == 1.0));
    let inverted = MaskOptions {
        invert: true,
        ..Default::default()
    };
    assert!(prepare(&pic, Some(&full), 32, 24, ResizeMode::Just, &inverted).is_err());
}

#[test]
fn hires_upscalers_and_sizes_match_a1111() {
    let src: RgbImage = img("hires.src");
    for (i, (w, h)) in sizes("hires_sizes").into_iter().enumerate() {
        same(
            &upscale_image(&src, w, h, ImageUpscaler::Lanczos),
            &format!("hires.lanczos.{i}"),
        );
        same(
            &upscale_image(&src, w, h, ImageUpscaler::Nearest),
            &format!("hires.nearest.{i}"),
        );
    }
    let s = |w, h, t| hires_size(w, h, t, 8).unwrap();
    assert_eq!(
        s(512, 512, HiresTarget::Scale(1.5)),
        HiresSize {
            upscale_w: 768,
            upscale_h: 768,
            truncate_x: 0,
            truncate_y: 0
        }
    );
    assert_eq!(s(512, 768, HiresTarget::Scale(1.3)).upscale_w, 665);
    assert_eq!(
        s(
            512,
            768,
            HiresTarget::Size {
                width: 1024,
                height: 0
            }
        )
        .upscale_h,
        1536
    );
    // A target of another aspect ratio is covered, then cut in latent cells.
    assert_eq!(
        s(
            512,
            768,
            HiresTarget::Size {
                width: 1024,
                height: 1024
            }
        ),
        HiresSize {
            upscale_w: 1024,
            upscale_h: 1536,
            truncate_x: 0,
            truncate_y: 64
        }
    );
    assert!(hires_size(512, 512, HiresTarget::Scale(f64::NAN), 8).is_err());
}

#[test]
fn latent_interpolation_matches_torch() {
    let lat = &refs()["latent"];
    let modes = [
        ("bilinear", LatentUpscale::Bilinear),
        ("bilinear_aa", LatentUpscale::BilinearAntialias),
        ("bicubic", LatentUpscale::Bicubic),
        ("bicubic_aa", LatentUpscale::BicubicAntialias),
        ("nearest", LatentUpscale::Nearest),
        ("nearest_exact", LatentUpscale::NearestExact),
    ];
    let mut worst = 0f32;
    for (name, mode) in modes {
        for (i, (h, w)) in sizes("interp_sizes").into_iter().enumerate() {
            let got = interpolate(lat, h as usize, w as usize, mode).unwrap();
            let err = crate::test_util::max_abs_diff(&got, &refs()[&format!("interp.{name}.{i}")]);
            worst = worst.max(err);
            assert!(err < 1e-5, "{name} to {h}x{w}: max abs error {err}");
        }
    }
    eprintln!("latent interpolation: worst max abs difference to torch {worst}");
    assert_eq!(
        LatentUpscale::from_a1111_name("Latent (bicubic antialiased)"),
        Some(LatentUpscale::BicubicAntialias)
    );
    assert_eq!(LatentUpscale::from_a1111_name("R-ESRGAN 4x+"), None);
}

#[test]
fn step_rules_match_python() {
    for row in meta()["steps"].as_array().unwrap() {
        let n = row["steps"].as_u64().unwrap() as usize;
        let s = row["strength"].as_f64().unwrap();
        assert_eq!(
            img2img_steps(n, s, false).unwrap().t_enc as u64,
            row["t_enc"].as_u64().unwrap(),
            "{row}"
        );
        if s > 0.0 {
            assert_eq!(
                img2img_steps(n, s, true).unwrap().schedule_steps as u64,
                row["fixed_schedule"].as_u64().unwrap(),
                "{row}"
            );
        }
    }
}

#[test]
fn outpainting_extends_fills_from_the_edge_and_masks_the_new_area() {
    let pic = RgbImage::from_fn(4, 3, |x, y| image::Rgb([x as u8 * 10, y as u8 * 10, 7]));
    let ext = Extend {
        left: 2,
        right: 1,
        top: 0,
        bottom: 3,
    };
    let (canvas, mask) = extend_canvas(&pic, ext, 64).unwrap();
    assert_eq!(canvas.dimensions(), (7, 6));
    assert_eq!(canvas.get_pixel(0, 0), pic.get_pixel(0, 0));
    assert_eq!(canvas.get_pixel(6, 5), pic.get_pixel(3, 2));
    assert_eq!(canvas.get_pixel(3, 1), pic.get_pixel(1, 1));
    assert_eq!(mask.get_pixel(3, 1)[0], 0);
    assert_eq!(mask.get_pixel(1, 1)[0], 255);
    assert_eq!(mask.get_pixel(3, 4)[0], 255);
    assert!(extend_canvas(&pic, Extend::default(), 64).is_err());
    let e = extend_canvas(&pic, Extend { right: 100, ..ext }, 64)
        .unwrap_err()
        .to_string();
    assert!(e.contains("over the limit of 64"), "{e}");
}

fn png(w: u32, h: u32) -> Vec<u8> {
    let mut out = Vec::new();
    RgbImage::new(w, h)
        .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

#[test]
fn bad_pictures_get_clear_errors() {
    let e = decode_image(b"plain text, not a picture at all", "init image", 8192)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("init image") && e.contains("not a picture"),
        "{e}"
    );
    let e = decode_image(b"GIF87a\x10\x00\x10\x00", "mask", 8192)
        .unwrap_err()
        .to_string();
    assert!(e.contains("Gif picture; Sumi reads PNG"), "{e}");
    let good = png(16, 8);
    assert_eq!(decode_image(&good, "mask", 8192).unwrap().width(), 16);
    let cut = &good[..good.len() - 20];
    let e = decode_image(cut, "mask", 8192).unwrap_err().to_string();
    assert!(e.contains("truncated or damaged"), "{e}");
    // A header that claims a huge picture is refused before any pixel is read.
    let mut huge = png(16, 8);
    huge[16..20].copy_from_slice(&100_000u32.to_be_bytes());
    let crc = crc32(&huge[12..29]);
    huge[29..33].copy_from_slice(&crc.to_be_bytes());
    let e = decode_image(&huge, "init image", 8192)
        .unwrap_err()
        .to_string();
    assert!(e.contains("100000x8") && e.contains("limit of 8192"), "{e}");
    let e = decode_image(&png(16, 8), "init image", 8)
        .unwrap_err()
        .to_string();
    assert!(e.contains("16x8"), "{e}");
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn nine_channel_conditioning_matches_diffusers() {
    use crate::arch::vae::{Vae, VaeConfig};
    let vae_dir = dir().join("../sd15/vae");
    let cfg: VaeConfig =
        serde_json::from_str(&std::fs::read_to_string(vae_dir.join("config.json")).unwrap())
            .unwrap();
    let files = [vae_dir.join("diffusion_pytorch_model.safetensors")];
    let vb = unsafe {
        candle_nn::VarBuilder::from_mmaped_safetensors(
            &files,
            candle_core::DType::F32,
            &Device::Cpu,
        )
    }
    .unwrap();
    let vae = Vae::new(cfg, vb).unwrap();
    let pic: RgbImage = img("cond.pic");
    let mask: GrayImage = img("cond.mask");
    let got = super::tensor::inpaint_conditioning(
        &vae,
        &pic,
        Some(&mask),
        &Device::Cpu,
        candle_core::DType::F32,
    )
    .unwrap();
    assert_eq!(got.dims(), &[1, 5, 4, 6]);
    let err = crate::test_util::max_abs_diff(&got, &refs()["cond.sd15"]);
    assert!(err < 1e-4, "9-channel conditioning: max abs error {err}");
    let none = super::tensor::inpaint_conditioning(
        &vae,
        &pic,
        None,
        &Device::Cpu,
        candle_core::DType::F32,
    )
    .unwrap();
    let ones: f32 = none
        .narrow(1, 0, 1)
        .unwrap()
        .mean_all()
        .unwrap()
        .to_scalar()
        .unwrap();
    assert_eq!(ones, 1.0);
    // Without a mask: the picture is grey, as any picture under a full mask.
    let full = GrayImage::from_pixel(pic.width(), pic.height(), image::Luma([255]));
    let masked_all = super::tensor::inpaint_conditioning(
        &vae,
        &pic,
        Some(&full),
        &Device::Cpu,
        candle_core::DType::F32,
    )
    .unwrap();
    assert!(crate::test_util::max_abs_diff(&none, &masked_all) < 1e-6);
}
