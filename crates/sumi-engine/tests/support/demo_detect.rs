//! A simple detector for the demo model's pictures (one shape on a plain background): names the
//! background and object colours by the nearest palette colour and places the object by its
//! centroid. Shared by `tests/demo_model.rs` and `examples/eval_demo.rs`.

use image::RgbImage;

/// The dataset's palette (tools/demo_model/dataset.py, `COLORS`).
pub const PALETTE: &[(&str, [f32; 3])] = &[
    ("red", [220.0, 30.0, 30.0]),
    ("orange", [245.0, 140.0, 20.0]),
    ("yellow", [245.0, 225.0, 30.0]),
    ("green", [30.0, 170.0, 50.0]),
    ("cyan", [40.0, 210.0, 220.0]),
    ("blue", [30.0, 60.0, 220.0]),
    ("purple", [135.0, 40.0, 175.0]),
    ("white", [245.0, 245.0, 245.0]),
    ("black", [20.0, 20.0, 20.0]),
];

/// What the detector sees in one picture.
#[derive(Debug, Clone, PartialEq)]
pub struct Detection {
    /// Nearest palette name of the background.
    pub background: &'static str,
    /// Nearest palette name of the object ("none" when nothing stands out).
    pub object: &'static str,
    /// Position name from the object's centroid ("center", "top left", ...; "none" without object).
    pub position: String,
    /// Centroid in [0, 1] (x right, y down).
    pub centroid: (f32, f32),
}

fn dist2(a: [f32; 3], b: [f32; 3]) -> f32 {
    (0..3).map(|i| (a[i] - b[i]).powi(2)).sum()
}

/// Palette index nearest to `c`.
pub fn nearest(c: [f32; 3]) -> usize {
    (0..PALETTE.len())
        .min_by(|&i, &j| dist2(c, PALETTE[i].1).total_cmp(&dist2(c, PALETTE[j].1)))
        .unwrap()
}

fn median(mut v: Vec<f32>) -> f32 {
    v.sort_by(f32::total_cmp);
    v[v.len() / 2]
}

/// Position name of a centroid: thirds-free split at 0.4 / 0.6 on each axis.
pub fn position_name(x: f32, y: f32) -> String {
    let h = if x < 0.4 {
        "left"
    } else if x > 0.6 {
        "right"
    } else {
        ""
    };
    let v = if y < 0.4 {
        "top"
    } else if y > 0.6 {
        "bottom"
    } else {
        ""
    };
    match (v, h) {
        ("", "") => "center".into(),
        ("", h) => h.into(),
        (v, "") => v.into(),
        (v, h) => format!("{v} {h}"),
    }
}

/// Detects background colour, object colour and object position.
pub fn detect(img: &RgbImage) -> Detection {
    let (w, h) = img.dimensions();
    let px: Vec<[f32; 3]> = img
        .pixels()
        .map(|p| [p[0] as f32, p[1] as f32, p[2] as f32])
        .collect();
    // Background: the palette colour most pixels are nearest to.
    let mut counts = vec![0usize; PALETTE.len()];
    for &p in &px {
        counts[nearest(p)] += 1;
    }
    let bg = (0..PALETTE.len()).max_by_key(|&i| counts[i]).unwrap();
    let bg_px: Vec<[f32; 3]> = px.iter().copied().filter(|&p| nearest(p) == bg).collect();
    let bg_mean = [0, 1, 2].map(|c| bg_px.iter().map(|p| p[c]).sum::<f32>() / bg_px.len() as f32);
    // Object: pixels far from the background colour (at least half the largest distance).
    let d: Vec<f32> = px.iter().map(|&p| dist2(p, bg_mean).sqrt()).collect();
    let dmax = d.iter().copied().fold(0.0, f32::max);
    if dmax < 60.0 {
        return Detection {
            background: PALETTE[bg].0,
            object: "none",
            position: "none".into(),
            centroid: (0.5, 0.5),
        };
    }
    let sel: Vec<usize> = (0..px.len()).filter(|&i| d[i] >= 0.5 * dmax).collect();
    let obj = [0, 1, 2].map(|c| median(sel.iter().map(|&i| px[i][c]).collect()));
    let (mut sx, mut sy) = (0.0, 0.0);
    for &i in &sel {
        sx += (i as u32 % w) as f32 + 0.5;
        sy += (i as u32 / w) as f32 + 0.5;
    }
    let cx = sx / sel.len() as f32 / w as f32;
    let cy = sy / sel.len() as f32 / h as f32;
    Detection {
        background: PALETTE[bg].0,
        object: PALETTE[nearest(obj)].0,
        position: position_name(cx, cy),
        centroid: (cx, cy),
    }
}
