//! The transforms of Winograd F(4x4, 3x3) (interpolation points 0, 1, -1, 2, -2): 36
//! multiplications per 4x4 output tile and channel pair, against 144 for the direct
//! convolution and 64 for F(2x2, 3x3). The band loop and the 36 gemms are shared with F(2x2) in
//! `conv.rs`; these fill `V[xi][c][tile]` from the input and turn `M[xi][co][tile]` into output.

use rayon::prelude::*;

use super::tiles::{Band, SharedMut};

/// Input tile side.
const A: usize = 6;
/// Output tile side.
pub(super) const M: usize = 4;
/// Transformed elements per tile.
pub(super) const XI: usize = A * A;

/// The transforms `bt_apply` and `at_apply` spell out (checked against these in the tests).
#[cfg(test)]
const BT: [[f32; A]; A] = [
    [4.0, 0.0, -5.0, 0.0, 1.0, 0.0],
    [0.0, -4.0, -4.0, 1.0, 1.0, 0.0],
    [0.0, 4.0, -4.0, -1.0, 1.0, 0.0],
    [0.0, -2.0, -1.0, 2.0, 1.0, 0.0],
    [0.0, 2.0, -1.0, -2.0, 1.0, 0.0],
    [0.0, 4.0, 0.0, -5.0, 0.0, 1.0],
];
const G: [[f32; 3]; A] = [
    [1.0 / 4.0, 0.0, 0.0],
    [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
    [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
    [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0],
    [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0],
    [0.0, 0.0, 1.0],
];
#[cfg(test)]
const AT: [[f32; A]; M] = [
    [1.0, 1.0, 1.0, 1.0, 1.0, 0.0],
    [0.0, 1.0, -1.0, 2.0, -2.0, 0.0],
    [0.0, 1.0, 1.0, 4.0, 4.0, 0.0],
    [0.0, 1.0, -1.0, 8.0, -8.0, 1.0],
];

/// `U[xi][co][ci] = (G g G^T)[xi]` for `ws` `[Cout, Cin, 3, 3]`; `xi = 6 * row + col`.
pub(super) fn weights(ws: &[f32], cout: usize, cin: usize, u: &mut [f32]) {
    assert_eq!(u.len(), XI * cout * cin);
    let plane = cout * cin;
    let ptr = SharedMut(u.as_mut_ptr());
    (0..cout).into_par_iter().for_each(|co| {
        for ci in 0..cin {
            let g = &ws[(co * cin + ci) * 9..(co * cin + ci + 1) * 9];
            let mut gg = [[0f32; 3]; A];
            for (r, row) in gg.iter_mut().enumerate() {
                for (c, v) in row.iter_mut().enumerate() {
                    *v = (0..3).map(|k| G[r][k] * g[k * 3 + c]).sum();
                }
            }
            for (r, ggr) in gg.iter().enumerate() {
                for (c, gc) in G.iter().enumerate() {
                    let v: f32 = (0..3).map(|k| ggr[k] * gc[k]).sum();
                    // SAFETY: element (xi, co, ci) is inside `u` (asserted) and only task `co`
                    // writes it.
                    unsafe { *ptr.get().add((r * A + c) * plane + co * cin + ci) = v };
                }
            }
        }
    });
}

/// `o[i] = (B^T d)[i]` elementwise over six equal-length slices `d[0..6]`.
#[inline(always)]
fn bt_apply(d: [&[f32]; A], o: [&mut [f32]; A]) {
    let n = o[0].len();
    let [d0, d1, d2, d3, d4, d5] = d.map(|s| &s[..n]);
    let [o0, o1, o2, o3, o4, o5] = o;
    let (o0, o1, o2, o3, o4, o5) = (
        &mut o0[..n],
        &mut o1[..n],
        &mut o2[..n],
        &mut o3[..n],
        &mut o4[..n],
        &mut o5[..n],
    );
    for t in 0..n {
        let (a0, a1, a2, a3, a4, a5) = (d0[t], d1[t], d2[t], d3[t], d4[t], d5[t]);
        o0[t] = 4.0 * a0 - 5.0 * a2 + a4;
        o1[t] = -4.0 * (a1 + a2) + a3 + a4;
        o2[t] = 4.0 * (a1 - a2) - a3 + a4;
        o3[t] = 2.0 * (a3 - a1) - a2 + a4;
        o4[t] = 2.0 * (a1 - a3) - a2 + a4;
        o5[t] = 4.0 * a1 - 5.0 * a3 + a5;
    }
}

/// `o[i] = (A^T m)[i]` elementwise over six equal-length slices `m[0..6]`.
#[inline(always)]
fn at_apply(m: [&[f32]; A], o: [&mut [f32]; M]) {
    let n = o[0].len();
    let [m0, m1, m2, m3, m4, m5] = m.map(|s| &s[..n]);
    let [o0, o1, o2, o3] = o;
    let (o0, o1, o2, o3) = (&mut o0[..n], &mut o1[..n], &mut o2[..n], &mut o3[..n]);
    for t in 0..n {
        let (p1, q1) = (m1[t] + m2[t], m1[t] - m2[t]);
        let (p2, q2) = (m3[t] + m4[t], m3[t] - m4[t]);
        o0[t] = m0[t] + p1 + p2;
        o1[t] = q1 + 2.0 * q2;
        o2[t] = p1 + 4.0 * p2;
        o3[t] = q1 + 8.0 * q2 + m5[t];
    }
}

/// Splits `buf` into `K` consecutive slices of `len`.
fn split<const K: usize>(buf: &mut [f32], len: usize) -> [&mut [f32]; K] {
    let mut rest = buf;
    std::array::from_fn(|_| {
        let (head, tail) = std::mem::take(&mut rest).split_at_mut(len);
        rest = tail;
        head
    })
}

/// Writes `V[xi][c][t] = (B^T d B)[xi]` for the tiles of global tile rows `g0..g0+rows`, `d`
/// being the 6x6 input patch of tile `t` from row `4ty - 1`, column `4tx - 1` (zero outside).
pub(super) fn input_transform(xs: &[f32], cin: usize, band: &Band, v: &mut [f32]) {
    let Band {
        h,
        w,
        th,
        tw,
        g0,
        rows,
    } = *band;
    let n = rows * tw;
    assert!(v.len() >= XI * cin * n);
    let ptr = SharedMut(v.as_mut_ptr());
    let plane = cin * n;
    (0..cin).into_par_iter().for_each(|c| {
        // Padded input rows: column x of the image at index x + 1.
        let pw = M * tw + 2;
        let mut rows_in = vec![0f32; A * pw];
        // (B^T d) down the columns: 6 rows of pw.
        let mut cols = vec![0f32; A * pw];
        // One row of the column result, split by the six positions in a tile: d[k][tx].
        let mut strided = vec![0f32; A * tw];
        let mut outs = vec![0f32; A * tw];
        for lr in 0..rows {
            let gr = g0 + lr;
            let (img, ty) = (gr / th, gr % th);
            let chan = &xs[(img * cin + c) * h * w..(img * cin + c + 1) * h * w];
            for (r, prow) in rows_in.chunks_mut(pw).enumerate() {
                let iy = (M * ty + r) as isize - 1;
                prow.fill(0.0);
                if iy >= 0 && iy < h as isize {
                    prow[1..=w].copy_from_slice(&chan[iy as usize * w..(iy as usize + 1) * w]);
                }
            }
            let d: [&[f32]; A] = std::array::from_fn(|r| &rows_in[r * pw..(r + 1) * pw]);
            bt_apply(d, split::<A>(&mut cols, pw));
            let col0 = lr * tw;
            for i in 0..A {
                let row = &cols[i * pw..(i + 1) * pw];
                for (k, dk) in strided.chunks_mut(tw).enumerate() {
                    for (tx, o) in dk.iter_mut().enumerate() {
                        *o = row[M * tx + k];
                    }
                }
                let d: [&[f32]; A] = std::array::from_fn(|k| &strided[k * tw..(k + 1) * tw]);
                bt_apply(d, split::<A>(&mut outs, tw));
                for (j, o) in outs.chunks(tw).enumerate() {
                    // SAFETY: row c of each V[xi] is written only by task c; columns
                    // col0..col0+tw lie inside the band's n columns (asserted above).
                    let dst = unsafe {
                        std::slice::from_raw_parts_mut(
                            ptr.get().add((i * A + j) * plane + c * n + col0),
                            tw,
                        )
                    };
                    dst.copy_from_slice(o);
                }
            }
        }
    });
}

/// Writes the output tiles `A^T M A + bias` of global tile rows `g0..g0+rows`, clipping tiles
/// that run past the image's edge.
pub(super) fn output_transform(
    m: &[f32],
    bias: Option<&[f32]>,
    cout: usize,
    band: &Band,
    out: &mut [f32],
) {
    let Band {
        h,
        w,
        th,
        tw,
        g0,
        rows,
    } = *band;
    let n = rows * tw;
    let plane = cout * n;
    assert!(m.len() >= XI * plane);
    assert!(out.len() >= (g0 + rows).div_ceil(th) * cout * h * w);
    let ptr = SharedMut(out.as_mut_ptr());
    (0..cout).into_par_iter().for_each(|co| {
        let b = bias.map_or(0.0, |b| b[co]);
        // s[i][j][tx] = (A^T M)[i][j], then y[i][k][tx] = (A^T M A)[i][k].
        let mut s = vec![0f32; M * A * tw];
        let mut y = vec![0f32; M * tw];
        let mut col = vec![0f32; M * tw];
        for lr in 0..rows {
            let gr = g0 + lr;
            let (img, ty) = (gr / th, gr % th);
            let base = co * n + lr * tw;
            let at = |xi: usize| &m[xi * plane + base..xi * plane + base + tw];
            for j in 0..A {
                let mj: [&[f32]; A] = std::array::from_fn(|r| at(r * A + j));
                at_apply(mj, split::<M>(&mut col, tw));
                for i in 0..M {
                    s[(i * A + j) * tw..(i * A + j + 1) * tw]
                        .copy_from_slice(&col[i * tw..(i + 1) * tw]);
                }
            }
            for i in 0..M {
                let oy = M * ty + i;
                if oy >= h {
                    break;
                }
                let si: [&[f32]; A] =
                    std::array::from_fn(|j| &s[(i * A + j) * tw..(i * A + j + 1) * tw]);
                at_apply(si, split::<M>(&mut y, tw));
                // SAFETY: plane (img, co) of `out` is written only by task co, and each band
                // writes its own output rows; the row lies inside `out` (asserted above).
                let line = unsafe {
                    std::slice::from_raw_parts_mut(
                        ptr.get().add(((img * cout + co) * h + oy) * w),
                        w,
                    )
                };
                for (tx, quad) in line.chunks_mut(M).enumerate() {
                    for (k, o) in quad.iter_mut().enumerate() {
                        *o = y[k * tw + tx] + b;
                    }
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spelled_out_transforms_match_the_matrices() {
        let d: Vec<Vec<f32>> = (0..A)
            .map(|r| {
                (0..3)
                    .map(|t| ((r * 7 + t * 3) % 11) as f32 - 5.0)
                    .collect()
            })
            .collect();
        let mut o = vec![0f32; A * 3];
        bt_apply(std::array::from_fn(|r| &d[r][..]), split::<A>(&mut o, 3));
        let mut o2 = vec![0f32; M * 3];
        at_apply(std::array::from_fn(|r| &d[r][..]), split::<M>(&mut o2, 3));
        for t in 0..3 {
            for i in 0..A {
                let want: f32 = (0..A).map(|r| BT[i][r] * d[r][t]).sum();
                assert_eq!(o[i * 3 + t], want, "B^T row {i}");
            }
            for i in 0..M {
                let want: f32 = (0..A).map(|r| AT[i][r] * d[r][t]).sum();
                assert_eq!(o2[i * 3 + t], want, "A^T row {i}");
            }
        }
    }
}
