//! The pixel side of image-to-image, each piece exact to what A1111 computes: reading init
//! pictures and masks (bounded), fitting them to the requested size (three resize modes),
//! preparing masks (binary, inverted, blurred with OpenCV's fixed-point Gaussian, the latent
//! mask, masked content "fill"), inpainting only the masked area (crop region, paste back),
//! outpainting, the final composite, and hires fix's upscalers (latent `F.interpolate` modes
//! and Pillow's Lanczos and nearest).
//!
//! Pillow's and OpenCV's 8-bit arithmetic is reproduced bit for bit (`pil`, `composite`,
//! `pil_blur`, `cv_blur`); `tests/fixtures/img/make_img_fixtures.py` writes the references.
//!
//! How the pipeline puts an inpainting run together (A1111's order):
//! 1. `read_image` the init picture and mask, `init_rgb` and `binary_mask` them;
//! 2. `prepare` at the requested size: the picture to encode, the fitted mask, the overlay;
//! 3. encode the picture (`Vae::encode` on `rgb_to_tensor`); `latent_mask` gives `nmask`
//!    (1 = repaint) and `1 - nmask`; masked content `LatentNoise` / `LatentNothing` replace the
//!    init latent under the mask by noise / zeros;
//! 4. sample, blending the denoised estimate with the init latent outside the mask after each
//!    step and once more at the end; decode;
//! 5. `apply_overlay` puts the original pixels back outside the mask.

mod composite;
mod cv_blur;
mod hires;
mod inpaint;
mod interpolate;
mod load;
mod mask;
mod outpaint;
mod pil;
mod pil_blur;
mod region;
mod resize;
mod tensor;
#[cfg(test)]
mod tests;

pub use composite::{alpha_composite, flatten_on_white, luma, paste, premultiply, unpremultiply};
pub use cv_blur::{blur_mask, fixed_kernel, kernel_size};
pub use hires::{hires_size, upscale_image, HiresSize, HiresTarget, ImageUpscaler};
pub use inpaint::{
    apply_overlay, overlay_image, prepare, InpaintArea, MaskOptions, Overlay, Prepared,
};
pub use interpolate::{interpolate, LatentUpscale};
pub use load::{decode_image, init_rgb, read_image};
pub use mask::{binary_mask, conditioning_mask, doubled, fill, invert, latent_mask, MaskedContent};
pub use outpaint::{extend_canvas, Extend};
pub use pil::{resample, Filter, Image8};
pub use pil_blur::gaussian_blur;
pub use region::{crop_region, expand_crop_region, Region};
pub use resize::{resize_image, ResizeMode};
pub use tensor::{inpaint_conditioning, mask_tensor, masked_image_tensor, rgb_to_tensor};
