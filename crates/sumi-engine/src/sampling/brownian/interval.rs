//! torchsde's Brownian tree (`torchsde.BrownianTree`, a `BrownianInterval` with
//! `halfway_tree=True`), number for number, for float32 samples on the CPU.
//!
//! What torchsde 0.2.6 does, as reproduced here:
//! * Times are quantised to `tol = 1e-6`: every interval end is `round(t, 6)` (Python's
//!   correctly rounded decimal rounding, see [`round_decimal6`]).
//! * The root `[t0, t1]` holds `W = randn(s0) * sqrt(t1 - t0)` (unrounded ends), where
//!   `s0, _, _ = SeedSequence(seed, pool_size=24).generate_state(3)`.
//! * A node splits at its rounded halfway point; splitting draws its noise seed as
//!   `SeedSequence(seed, spawn_key=(key, depth), pool_size=24).generate_state(4)[0]`, where the
//!   root has key 0, depth 0 and a child has key `2 * key + (0 left, 1 right)`, depth + 1.
//!   To reach a point inside a leaf, the leaf is halved again and again towards the point
//!   until the point is a split point.
//! * A child's increment comes from its parent's `W` by a Brownian bridge, all in float32 with
//!   the double-precision coefficients rounded to float32:
//!   `left = (W * l) * (1 / h) + sqrt(l * r / h) * randn(parent's seed)` and
//!   `right = W - left`, with `l`, `r` the parts left and right of the split, `h` the length.
//! * A query `[ta, tb]` is clamped to the root, rounded, located from the last queried node
//!   (splitting leaves so that `ta` and `tb` become node ends) and answered with the sum, left
//!   to right, of the increments of the nodes that tile it.
//!
//! The tiling, and so the last bits of a sum, depend on which splits earlier queries made: the
//! same sequence of queries gives the same numbers, and the split points themselves never
//! depend on the queries. `randn(s)` is `torch.randn(n, generator=torch.Generator("cpu")
//! .manual_seed(s))`, i.e. [`TorchCpuRng`].

use std::collections::VecDeque;

use rayon::prelude::*;

use super::seed_sequence::{int_words, SeedSequence};
use crate::noise::torch_cpu::TorchCpuRng;

/// torchsde's `BrownianTree` default `pool_size`.
const POOL_SIZE: usize = 24;
/// Increments kept for reuse: at least torchsde's 45, more while they fit in this many bytes.
/// Only a speed matter (an evicted increment is recomputed bit for bit); a sampler's walk
/// through the tree needs about 200 to redraw little.
const CACHE_MIN: usize = 45;
const CACHE_MAX: usize = 512;
const CACHE_BYTES: usize = 48 << 20;
/// Far deeper than 1e-6 quantisation allows over any finite interval; only a guard.
const MAX_STEPS: usize = 1 << 16;

/// `round(x, 6)` as Python rounds a float: the exact binary value of `x` rounded half-even to
/// six decimals, then the nearest double to that decimal.
pub fn round_decimal6(x: f64) -> f64 {
    const SCALE: u128 = 1_000_000;
    // From 2^33 up, doubles are more than 1e-6 apart: each is its own rounding.
    if !x.is_finite() || x.abs() >= 8_589_934_592.0 {
        return x;
    }
    let bits = x.to_bits();
    let biased = ((bits >> 52) & 0x7ff) as i32;
    let frac = bits & ((1 << 52) - 1);
    let (mantissa, exp) = if biased == 0 {
        (frac, -1074)
    } else {
        (frac | (1 << 52), biased - 1075)
    };
    if exp >= 0 {
        return x;
    }
    // x * 1e6 = p / 2^shift exactly, with p < 2^73.
    let shift = exp.unsigned_abs();
    let p = u128::from(mantissa) * SCALE;
    let q = if shift >= 74 {
        0
    } else {
        let (q, r, half) = (p >> shift, p & ((1 << shift) - 1), 1u128 << (shift - 1));
        if r > half || (r == half && q & 1 == 1) {
            q + 1
        } else {
            q
        }
    };
    // q < 2^53, so both operands are exact and the division rounds once.
    let magnitude = q as f64 / 1e6;
    if x.is_sign_negative() {
        -magnitude
    } else {
        magnitude
    }
}

#[derive(Debug, Clone)]
struct Node {
    start: f64,
    end: f64,
    parent: Option<usize>,
    is_left: bool,
    /// Spawn key and depth, as torchsde sets them when the node splits.
    key: u128,
    depth: u32,
    split: Option<Split>,
}

#[derive(Debug, Clone, Copy)]
struct Split {
    mid: f64,
    left: usize,
    right: usize,
    /// Seed of the bridge noise both children are drawn with.
    w_seed: u32,
}

/// One level of a walk down the tree: a parent's span and split, and the half wanted.
struct Step {
    start: f64,
    end: f64,
    split: Split,
    is_left: bool,
}

impl Step {
    /// Both halves' increments from the parent's increment `w` and the parent's bridge noise.
    fn bridge(&self, w: &[f32], noise: &[f32]) -> (Vec<f32>, Vec<f32>) {
        let h_reciprocal = 1.0 / (self.end - self.start);
        let left_diff = self.split.mid - self.start;
        let right_diff = self.end - self.split.mid;
        // torch multiplies float32 tensors by Python floats rounded to float32.
        let (l, hr) = (left_diff as f32, h_reciprocal as f32);
        let sd = (left_diff * right_diff * h_reciprocal).sqrt() as f32;
        let left: Vec<f32> = w
            .iter()
            .zip(noise)
            .map(|(w, z)| w * l * hr + sd * z)
            .collect();
        let right = w.iter().zip(&left).map(|(w, left)| w - left).collect();
        (left, right)
    }
}

/// A Brownian motion over `[t0, t1]` with `size` float32 elements, seeded like
/// `torchsde.BrownianTree(t0, w0, t1, entropy=seed)` (tol 1e-6, pool size 24).
#[derive(Debug, Clone)]
pub struct BrownianInterval {
    seed_words: Vec<u32>,
    size: usize,
    nodes: Vec<Node>,
    root_w: Vec<f32>,
    last: usize,
    /// Recently used increments by node, oldest first, at most `cache_len`.
    cache: VecDeque<(usize, Vec<f32>)>,
    cache_len: usize,
}

impl BrownianInterval {
    /// The tree over `[t0, t1]` (`t0 <= t1`, as f64 values of the caller's times) for `size`
    /// elements per sample.
    pub fn new(seed: u64, t0: f64, t1: f64, size: usize) -> Self {
        let seed_words = int_words(seed.into());
        let state = SeedSequence::new(&seed_words, &[], POOL_SIZE).generate_state(3);
        // torchsde scales by the unrounded span; only node ends are rounded.
        let scale = (t1 - t0).sqrt() as f32;
        let root_w = TorchCpuRng::new(state[0].into())
            .randn(size)
            .into_iter()
            .map(|z| z * scale)
            .collect();
        let root = Node {
            start: round_decimal6(t0),
            end: round_decimal6(t1),
            parent: None,
            is_left: false,
            key: 0,
            depth: 0,
            split: None,
        };
        Self {
            seed_words,
            size,
            nodes: vec![root],
            root_w,
            last: 0,
            cache: VecDeque::new(),
            cache_len: (CACHE_BYTES / (4 * size.max(1))).clamp(CACHE_MIN, CACHE_MAX),
        }
    }

    /// Number of elements per sample.
    pub fn size(&self) -> usize {
        self.size
    }

    /// `W(tb) - W(ta)` for `ta <= tb` (swapped otherwise), both clamped to the tree's span:
    /// what `tree(ta, tb)` returns.
    pub fn increment(&mut self, ta: f64, tb: f64) -> Vec<f32> {
        if !(ta.is_finite() && tb.is_finite()) {
            return vec![0.0; self.size];
        }
        let (lo, hi) = (self.nodes[0].start, self.nodes[0].end);
        let (ta, tb) = if ta <= tb { (ta, tb) } else { (tb, ta) };
        let (ta, tb) = (ta.max(lo).min(hi), tb.max(lo).min(hi));
        // Equal after rounding: torchsde's answer is 0 (or it never returns); no splits here.
        if ta >= tb || round_decimal6(ta) == round_decimal6(tb) {
            return vec![0.0; self.size];
        }
        let tiles = self.locate(round_decimal6(ta), round_decimal6(tb));
        let Some(&last) = tiles.last() else {
            return vec![0.0; self.size];
        };
        self.last = last;
        let mut sum = self.node_w(tiles[0]);
        for &tile in &tiles[1..] {
            let w = self.node_w(tile);
            sum.iter_mut().zip(&w).for_each(|(s, x)| *s += x);
        }
        sum
    }

    /// The nodes that tile `[ta, tb]` (rounded, inside the root), left to right, splitting
    /// leaves as torchsde's `_loc` does, searching from the last queried node.
    fn locate(&mut self, ta: f64, tb: f64) -> Vec<usize> {
        let mut out = Vec::new();
        // Depth first, left part before right part.
        let mut todo = vec![(self.last, ta, tb)];
        let mut steps = 0;
        while let Some((id, a, b)) = todo.pop() {
            steps += 1;
            if steps > MAX_STEPS {
                break;
            }
            let node = &self.nodes[id];
            if a < node.start || b > node.end {
                todo.push((node.parent.unwrap_or(0), a, b));
                continue;
            }
            if a == node.start && b == node.end {
                out.push(id);
                continue;
            }
            let split = match node.split {
                Some(split) => split,
                None => {
                    let point = if a == node.start { b } else { a };
                    if !self.split_towards(id, point) {
                        // Cannot happen for finite times; answer with the whole leaf.
                        out.push(id);
                        continue;
                    }
                    let Some(split) = self.nodes[id].split else {
                        continue;
                    };
                    split
                }
            };
            if b <= split.mid {
                todo.push((split.left, a, b));
            } else if a >= split.mid {
                todo.push((split.right, a, b));
            } else {
                todo.push((split.right, split.mid, b));
                todo.push((split.left, a, split.mid));
            }
        }
        out
    }

    /// Halves the leaf `id`, then the half holding `point`, and so on until `point` is a split
    /// point (torchsde's `_split` for the halfway tree). False if a halving made no progress.
    fn split_towards(&mut self, id: usize, point: f64) -> bool {
        let mut cur = id;
        for _ in 0..MAX_STEPS {
            let node = &self.nodes[cur];
            let mid = round_decimal6(0.5 * (node.end + node.start));
            if !(node.start < mid && mid < node.end) {
                return false;
            }
            let split = self.split_at(cur, mid);
            if point > mid {
                cur = split.right;
            } else if point < mid {
                cur = split.left;
            } else {
                return true;
            }
        }
        false
    }

    fn split_at(&mut self, id: usize, mid: f64) -> Split {
        let node = &self.nodes[id];
        let (key, depth) = match node.parent {
            None => (0, 0),
            Some(p) => {
                let parent = &self.nodes[p];
                let bit = if node.is_left { 0 } else { 1 };
                (
                    parent.key.wrapping_mul(2).wrapping_add(bit),
                    parent.depth + 1,
                )
            }
        };
        let mut spawn_key = int_words(key);
        spawn_key.extend(int_words(depth.into()));
        let w_seed =
            SeedSequence::new(&self.seed_words, &spawn_key, POOL_SIZE).generate_state(4)[0];
        let (start, end) = (node.start, node.end);
        let child = |start, end, is_left| Node {
            start,
            end,
            parent: Some(id),
            is_left,
            key: 0,
            depth: 0,
            split: None,
        };
        let left = self.nodes.len();
        self.nodes.push(child(start, mid, true));
        self.nodes.push(child(mid, end, false));
        let split = Split {
            mid,
            left,
            right: left + 1,
            w_seed,
        };
        let node = &mut self.nodes[id];
        (node.key, node.depth, node.split) = (key, depth, Some(split));
        split
    }

    /// The increment over node `id`, from the nearest ancestor whose increment is known.
    fn node_w(&mut self, id: usize) -> Vec<f32> {
        let (mut w, steps) = self.walk_up(id);
        // The bridge noises of the levels do not depend on one another: draw them together.
        let noises: Vec<Vec<f32>> = steps
            .par_iter()
            .map(|step| TorchCpuRng::new(step.split.w_seed.into()).randn(self.size))
            .collect();
        for (step, noise) in steps.iter().zip(&noises) {
            let (left, right) = step.bridge(&w, noise);
            // Both halves come from one draw; keep the sibling too, tiles often need it.
            let (wanted, other) = if step.is_left {
                ((step.split.left, left), (step.split.right, right))
            } else {
                ((step.split.right, right), (step.split.left, left))
            };
            self.remember(other.0, &other.1);
            self.remember(wanted.0, &wanted.1);
            w = wanted.1;
        }
        w
    }

    /// The known increment nearest above `id` (cached, or the root's) and the steps from
    /// there down to `id`, top first.
    fn walk_up(&mut self, id: usize) -> (Vec<f32>, Vec<Step>) {
        let mut steps = Vec::new();
        let mut cur = id;
        loop {
            if let Some(w) = self.recall(cur) {
                steps.reverse();
                return (w, steps);
            }
            let node = &self.nodes[cur];
            let Some(parent) = node.parent.map(|p| &self.nodes[p]) else {
                break;
            };
            let Some(split) = parent.split else {
                break;
            };
            steps.push(Step {
                start: parent.start,
                end: parent.end,
                split,
                is_left: node.is_left,
            });
            cur = node.parent.unwrap_or(0);
        }
        steps.reverse();
        (self.root_w.clone(), steps)
    }

    /// The cached increment of `id`, now the most recently used.
    fn recall(&mut self, id: usize) -> Option<Vec<f32>> {
        let i = self.cache.iter().position(|(n, _)| *n == id)?;
        let entry = self.cache.remove(i)?;
        let w = entry.1.clone();
        self.cache.push_back(entry);
        Some(w)
    }

    fn remember(&mut self, id: usize, w: &[f32]) {
        if let Some(i) = self.cache.iter().position(|(n, _)| *n == id) {
            self.cache.remove(i);
        } else if self.cache.len() >= self.cache_len {
            self.cache.pop_front();
        }
        self.cache.push_back((id, w.to_vec()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_like_python() {
        // Python: round(x, 6).
        let cases = [
            (0.0078125, 0.007812), // an exact tie: half to even
            (0.0234375, 0.023438),
            (-0.0078125, -0.007812),
            (14.614640235900879, 14.61464),
            (0.029167458042502403, 0.029167),
            (1.0000005, 1.000001),
            (2.0000005, 2.000001),
            (1e-7, 0.0),
            (123456789.1234565, 123456789.123456),
            (9e9 + 0.25, 9e9 + 0.25),
        ];
        for (x, want) in cases {
            assert_eq!(round_decimal6(x), want, "{x}");
        }
        assert!(round_decimal6(-1e-9).is_sign_negative());
    }

    #[test]
    fn same_queries_same_numbers_and_halves_add_up() {
        let queries = [(14.6, 9.7), (9.7, 0.03), (5.0, 1.0), (14.6, 0.03)];
        let run = || {
            let mut tree = BrownianInterval::new(3, 0.03, 14.6, 40);
            queries
                .iter()
                .map(|&(a, b)| tree.increment(a, b))
                .collect::<Vec<_>>()
        };
        let first = run();
        assert_eq!(first, run());
        for ((a, b), whole) in first[0].iter().zip(&first[1]).zip(&first[3]) {
            assert!((a + b - whole).abs() < 1e-5, "{a} + {b} vs {whole}");
        }
    }

    #[test]
    fn the_cache_only_saves_work() {
        let sigmas: [f64; 9] = [14.6, 9.7, 6.1, 3.3, 1.9, 0.8, 0.31, 0.11, 0.03];
        let run = |cache_len: usize| {
            let mut tree = BrownianInterval::new(9, 0.03, 14.6, 33);
            tree.cache_len = cache_len;
            let mut out = Vec::new();
            for pair in sigmas.windows(2) {
                let mid = (pair[0] * pair[1]).sqrt();
                out.push(tree.increment(mid, pair[0]));
                out.push(tree.increment(pair[1], pair[0]));
            }
            out.push(tree.increment(0.03, 14.6));
            out
        };
        assert_eq!(run(1), run(1000));
    }

    #[test]
    fn degenerate_queries_are_zero() {
        let mut tree = BrownianInterval::new(1, 0.5, 2.0, 20);
        assert_eq!(tree.increment(1.0, 1.0), vec![0.0; 20]);
        assert_eq!(tree.increment(1.0, 1.0000001), vec![0.0; 20]);
        assert_eq!(tree.increment(3.0, 4.0), vec![0.0; 20]);
        assert_eq!(tree.increment(f64::NAN, 1.0), vec![0.0; 20]);
    }
}
