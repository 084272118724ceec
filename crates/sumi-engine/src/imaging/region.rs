//! The rectangle "inpaint only masked" works on: the mask's bounding box plus padding, grown to
//! the requested aspect ratio (A1111's `get_crop_region_v2` and `expand_crop_region`).

use image::GrayImage;

/// A rectangle of a picture: columns `x1..x2`, rows `y1..y2`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    /// Left edge (inclusive).
    pub x1: i64,
    /// Top edge (inclusive).
    pub y1: i64,
    /// Right edge (exclusive).
    pub x2: i64,
    /// Bottom edge (exclusive).
    pub y2: i64,
}

impl Region {
    /// Width in pixels.
    pub fn width(&self) -> i64 {
        self.x2 - self.x1
    }

    /// Height in pixels.
    pub fn height(&self) -> i64 {
        self.y2 - self.y1
    }
}

/// The bounding box of the mask's non-zero pixels widened by `padding` on every side and
/// clipped to the mask; `None` when the mask is empty.
pub fn crop_region(mask: &GrayImage, padding: u32) -> Option<Region> {
    let (w, h) = mask.dimensions();
    let (mut x1, mut y1, mut x2, mut y2) = (w, h, 0, 0);
    for (x, y, p) in mask.enumerate_pixels() {
        if p[0] != 0 {
            x1 = x1.min(x);
            y1 = y1.min(y);
            x2 = x2.max(x + 1);
            y2 = y2.max(y + 1);
        }
    }
    if x2 == 0 {
        return None;
    }
    let pad = i64::from(padding);
    Some(Region {
        x1: (i64::from(x1) - pad).max(0),
        y1: (i64::from(y1) - pad).max(0),
        x2: (i64::from(x2) + pad).min(i64::from(w)),
        y2: (i64::from(y2) + pad).min(i64::from(h)),
    })
}

/// Grows `lo..hi` by `extra` (half on each side, the odd pixel after), then shifts it back
/// inside `0..size` and clips it.
fn grow(lo: i64, hi: i64, extra: i64, size: i64) -> (i64, i64) {
    let (mut lo, mut hi) = (lo - extra / 2, hi + extra - extra / 2);
    if hi >= size {
        lo -= hi - size;
        hi = size;
    }
    if lo < 0 {
        hi -= lo;
        lo = 0;
    }
    (lo, hi.min(size))
}

/// The region grown along its short side to the aspect ratio of `width x height` (the size the
/// region is processed at), kept inside the `image_w x image_h` picture.
pub fn expand_crop_region(
    r: Region,
    width: u32,
    height: u32,
    image_w: u32,
    image_h: u32,
) -> Region {
    let ratio = f64::from(width) / f64::from(height);
    let (rw, rh) = (r.width() as f64, r.height() as f64);
    if rw / rh > ratio {
        let extra = (rw / ratio - rh) as i64;
        let (y1, y2) = grow(r.y1, r.y2, extra, i64::from(image_h));
        Region { y1, y2, ..r }
    } else {
        let extra = (rh * ratio - rw) as i64;
        let (x1, x2) = grow(r.x1, r.x2, extra, i64::from(image_w));
        Region { x1, x2, ..r }
    }
}
