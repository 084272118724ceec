"""Procedural shapes dataset for Sumi's built-in demo model.

Every sample is one coloured shape on a plain background, drawn at 32x32 (4x supersampled, then
box-filtered), with a caption such as "a red circle on a blue background" or
"a small green star at the top left on a white background". Everything is derived from a seed.

Some (object colour, background colour) pairs and some (shape, object colour) pairs never appear
in training; `heldout_captions` builds evaluation prompts from exactly those combinations.
"""

import functools
import math
import multiprocessing
import os

import numpy as np

SIZE = 32
SUPERSAMPLE = 4

# Well separated colours, so a nearest-colour detector can name them.
COLORS = {
    "red": (220, 30, 30),
    "orange": (245, 140, 20),
    "yellow": (245, 225, 30),
    "green": (30, 170, 50),
    "cyan": (40, 210, 220),
    "blue": (30, 60, 220),
    "purple": (135, 40, 175),
    "white": (245, 245, 245),
    "black": (20, 20, 20),
}
SHAPES = ["circle", "square", "triangle", "star", "ring", "cross", "diamond"]
# Position name -> centre in [0, 1] image coordinates (x right, y down).
POSITIONS = {
    "center": (0.5, 0.5),
    "left": (0.25, 0.5),
    "right": (0.75, 0.5),
    "top": (0.5, 0.25),
    "bottom": (0.5, 0.75),
    "top left": (0.25, 0.25),
    "top right": (0.75, 0.25),
    "bottom left": (0.25, 0.75),
    "bottom right": (0.75, 0.75),
}
# Size name -> shape radius as a fraction of the image side ("" = medium, not said).
SIZES = {"small": 0.13, "": 0.2, "large": 0.3}

# Combinations never shown in training (evaluation only).
HELDOUT_PAIRS = {  # (object colour, background colour)
    ("red", "blue"), ("green", "white"), ("yellow", "black"), ("blue", "orange"),
    ("purple", "cyan"), ("white", "red"), ("orange", "green"), ("cyan", "purple"),
    ("black", "yellow"),
}
HELDOUT_SHAPE_COLORS = {  # (shape, object colour)
    ("star", "red"), ("circle", "purple"), ("square", "cyan"), ("triangle", "white"),
    ("ring", "orange"), ("cross", "blue"), ("diamond", "green"),
}


def is_heldout(shape, color, bg):
    return (color, bg) in HELDOUT_PAIRS or (shape, color) in HELDOUT_SHAPE_COLORS


def caption(shape, color, bg, pos, size):
    words = ["a"]
    if size:
        words.append(size)
    words += [color, shape]
    if pos != "center":
        words += ["at", "the", pos]
    words += ["on", "a", bg, "background"]
    text = " ".join(words)
    return text


@functools.lru_cache(maxsize=4)
def pixel_centres(n):
    """(ys, xs): the pixel-centre coordinates of an n x n grid (read only, shared between calls)."""
    ys, xs = np.mgrid[0:n, 0:n].astype(np.float32) + 0.5
    ys.flags.writeable = xs.flags.writeable = False
    return ys, xs


def shape_mask(shape, cx, cy, r, angle, n=SIZE * SUPERSAMPLE):
    """Boolean mask of `shape` centred at (cx, cy) with radius r (pixels of the n x n grid)."""
    ys, xs = pixel_centres(n)
    dx, dy = xs - cx, ys - cy
    ca, sa = math.cos(angle), math.sin(angle)
    u, v = ca * dx + sa * dy, -sa * dx + ca * dy  # rotated coordinates
    d = np.sqrt(dx * dx + dy * dy)
    if shape == "circle":
        return d <= r
    if shape == "ring":
        return (d <= r) & (d >= 0.55 * r)
    if shape == "square":
        s = r * 0.85
        return (np.abs(u) <= s) & (np.abs(v) <= s)
    if shape == "diamond":
        return np.abs(u) + np.abs(v) <= r
    if shape == "cross":
        w = r * 0.33
        return ((np.abs(u) <= w) & (np.abs(v) <= r)) | ((np.abs(v) <= w) & (np.abs(u) <= r))
    if shape in ("triangle", "star"):
        k = 3 if shape == "triangle" else 5
        th = np.arctan2(u, -v)  # 0 = pointing up
        if shape == "triangle":
            # distance to the edges of an upward equilateral triangle of circumradius r
            sector = (2 * math.pi) / k  # edge normals sit half a sector from the vertices
            a = np.mod(th, sector) - sector / 2
            apothem = r * math.cos(math.pi / k)
            return d * np.cos(a) <= apothem
        # star: radius alternates between outer r and inner 0.45 r (linear in angle)
        sector = 2 * math.pi / k
        a = np.abs(np.mod(th + sector / 2, sector) - sector / 2) / (sector / 2)  # 0 at tip, 1 between
        rad = r * (1 - a) + 0.45 * r * a
        return d <= rad
    raise ValueError(shape)


def draw_jitter(rng):
    """The random jitter of one image: size factor, centre offsets, angle, fg and bg colour noise."""
    return (rng.uniform(0.9, 1.1), rng.uniform(-0.04, 0.04), rng.uniform(-0.04, 0.04),
            rng.uniform(-0.15, 0.15), rng.uniform(-8, 8, 3), rng.uniform(-8, 8, 3))


def paint(shape, color, bg, pos, size, jitter):
    """One 32x32x3 uint8 image of the given attributes and jitter (see `draw_jitter`)."""
    n = SIZE * SUPERSAMPLE
    k, dx, dy, angle, fg_noise, bg_noise = jitter
    px, py = POSITIONS[pos]
    r = SIZES[size] * n * k
    cx = (px + dx) * n
    cy = (py + dy) * n
    m = shape_mask(shape, cx, cy, r, angle).astype(np.float32)
    m = m.reshape(SIZE, SUPERSAMPLE, SIZE, SUPERSAMPLE).mean(axis=(1, 3))[..., None]
    fg = np.array(COLORS[color], np.float32) + fg_noise
    bgc = np.array(COLORS[bg], np.float32) + bg_noise
    img = m * fg + (1 - m) * bgc
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def render(shape, color, bg, pos, size, rng):
    """One 32x32x3 uint8 image; small random jitter in position, size, rotation and colour."""
    return paint(shape, color, bg, pos, size, draw_jitter(rng))


def sample_attrs(rng):
    """Random training attributes (never a held-out combination)."""
    names = list(COLORS)
    while True:
        shape = SHAPES[rng.integers(len(SHAPES))]
        color = names[rng.integers(len(names))]
        bg = names[rng.integers(len(names))]
        if bg == color or is_heldout(shape, color, bg):
            continue
        # a third of the samples centred without a position phrase: the plain prompt form
        pos = "center" if rng.random() < 0.3 else list(POSITIONS)[rng.integers(len(POSITIONS))]
        size = list(SIZES)[rng.integers(len(SIZES))]
        return shape, color, bg, pos, size


def _paint_all(specs):
    return np.stack([paint(*attrs, jitter) for attrs, jitter in specs])


def make_dataset(n, seed, workers=1):
    """n training images (uint8 [n, 32, 32, 3]) and their captions.

    The random draws are made in one sequence, so the images are the same for any `workers`;
    workers > 1 paints them in that many forked processes.
    """
    rng = np.random.default_rng(seed)
    specs, caps = [], []
    for _ in range(n):
        attrs = sample_attrs(rng)
        specs.append((attrs, draw_jitter(rng)))
        caps.append(caption(*attrs))
    workers = max(1, min(workers, n // 500))
    if workers == 1:
        return _paint_all(specs).reshape(n, SIZE, SIZE, 3), caps
    chunk = -(-n // (workers * 4))
    parts = [specs[i:i + chunk] for i in range(0, n, chunk)]
    # fork: the workers need nothing but this module, and the caller has not started CUDA yet
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        imgs = np.concatenate(pool.map(_paint_all, parts))
    return imgs, caps


def default_workers():
    """The CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def heldout_captions(n, seed):
    """n evaluation cases from held-out combinations: dicts with caption and attributes."""
    rng = np.random.default_rng(seed)
    names = list(COLORS)
    out = []
    while len(out) < n:
        shape = SHAPES[rng.integers(len(SHAPES))]
        color = names[rng.integers(len(names))]
        bg = names[rng.integers(len(names))]
        if bg == color or not is_heldout(shape, color, bg):
            continue
        pos = list(POSITIONS)[rng.integers(len(POSITIONS))]
        size = ["", "large"][rng.integers(2)]
        out.append(dict(caption=caption(shape, color, bg, pos, size), shape=shape, color=color,
                        background=bg, position=pos, size=size))
    return out


def vocabulary():
    """Every word a caption can use."""
    words = {"a", "at", "the", "on", "background"}
    words |= set(COLORS) | set(SHAPES) | {"small", "large"}
    for p in POSITIONS:
        words |= set(p.split())
    return sorted(words)


if __name__ == "__main__":
    import sys
    from PIL import Image

    imgs, caps = make_dataset(64, 0)
    grid = imgs.reshape(8, 8, SIZE, SIZE, 3).transpose(0, 2, 1, 3, 4).reshape(8 * SIZE, 8 * SIZE, 3)
    out = sys.argv[1] if len(sys.argv) > 1 else "dataset_grid.png"
    Image.fromarray(grid).resize((8 * SIZE * 3,) * 2, Image.NEAREST).save(out)
    print("\n".join(caps[:8]))
