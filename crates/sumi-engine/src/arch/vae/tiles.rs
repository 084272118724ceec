//! How a large VAE pass is cut into overlapping tiles and how the tiles are blended back.

/// Tile size and overlap of a tiled VAE decode, in latent cells.
#[derive(Debug, Clone, Copy)]
pub struct Tiling {
    /// Tile side (64 latent cells: 512 pixels for SD).
    pub tile: usize,
    /// Cells shared by neighbouring tiles, blended linearly.
    pub overlap: usize,
}

impl Default for Tiling {
    fn default() -> Self {
        Self {
            tile: 64,
            overlap: 16,
        }
    }
}

/// Start offsets of tiles covering `n` cells: `tile - overlap` apart, the last flush with the end.
pub(crate) fn tile_starts(n: usize, t: Tiling) -> Vec<usize> {
    if n <= t.tile {
        return vec![0];
    }
    let stride = t.tile.saturating_sub(t.overlap).max(1);
    let mut starts: Vec<usize> = (0..n - t.tile).step_by(stride).collect();
    starts.push(n - t.tile);
    starts
}

/// Blend weight of position `i` of `n` along one side of a tile: rises linearly over the first
/// `ramp` positions and falls over the last `ramp`, except at a side that is the image's border.
fn edge_weight(i: usize, n: usize, ramp: f32, first: bool, last: bool) -> f32 {
    let lo = if first {
        1.0
    } else {
        ((i as f32 + 0.5) / ramp).min(1.0)
    };
    let hi = if last {
        1.0
    } else {
        ((n - i) as f32 - 0.5) / ramp
    };
    lo.min(hi.min(1.0))
}

/// Accumulates overlapping tiles of `planes` planes of an `h x w` grid, each weighted by its
/// edge ramps, and normalises by the summed weights.
pub(crate) struct Blend {
    planes: usize,
    h: usize,
    w: usize,
    acc: Vec<f32>,
    weight: Vec<f32>,
}

impl Blend {
    /// An empty `planes x h x w` accumulator.
    pub(crate) fn new(planes: usize, h: usize, w: usize) -> Self {
        Self {
            planes,
            h,
            w,
            acc: vec![0.0; planes * h * w],
            weight: vec![0.0; h * w],
        }
    }

    /// Adds a tile (`planes x th x tw` values) whose top-left corner is at `(y0, x0)`; its
    /// inner sides ramp over `ramp` positions.
    pub(crate) fn add(
        &mut self,
        tile: &[f32],
        (y0, x0): (usize, usize),
        (th, tw): (usize, usize),
        ramp: f32,
    ) {
        let (h, w) = (self.h, self.w);
        for py in 0..th {
            let wy = edge_weight(py, th, ramp, y0 == 0, y0 + th == h);
            for px in 0..tw {
                let wgt = wy * edge_weight(px, tw, ramp, x0 == 0, x0 + tw == w);
                let o = (y0 + py) * w + x0 + px;
                self.weight[o] += wgt;
                for plane in 0..self.planes {
                    self.acc[plane * h * w + o] += wgt * tile[plane * th * tw + py * tw + px];
                }
            }
        }
    }

    /// The blended planes.
    pub(crate) fn finish(mut self) -> Vec<f32> {
        for plane in self.acc.chunks_mut(self.h * self.w) {
            for (v, &wgt) in plane.iter_mut().zip(&self.weight) {
                *v /= wgt;
            }
        }
        self.acc
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tile_starts_cover_and_overlap() {
        let t = Tiling {
            tile: 8,
            overlap: 2,
        };
        assert_eq!(tile_starts(5, t), vec![0]);
        assert_eq!(tile_starts(8, t), vec![0]);
        assert_eq!(tile_starts(20, t), vec![0, 6, 12]);
        assert_eq!(tile_starts(15, t), vec![0, 6, 7]);
    }
}
