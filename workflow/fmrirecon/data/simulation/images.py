"""Procedural stimulus images: a coloured, patterned object on a textured background.

A category is a (shape, hue, pattern) triple, so there are 12 × 8 × 3 = 288 distinct categories.
Within a category, position, size, rotation, colour, pattern phase and background vary.
Every image is drawn from its own seed, so any image can be regenerated alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

SHAPES = (
    "circle", "ellipse", "triangle", "square", "hexagon", "star",
    "flower", "cross", "ring", "crescent", "bar", "trefoil",
)  # fmt: skip
HUES = tuple(np.arange(8) / 8.0)
PATTERNS = ("solid", "stripes", "dots")
N_CATEGORY_KINDS = len(SHAPES) * len(HUES) * len(PATTERNS)


@dataclass(frozen=True)
class Category:
    shape: str
    hue: float
    pattern: str


def category_table(n: int, seed: int) -> list[Category]:
    """``n`` distinct categories in a seeded random order."""
    if n > N_CATEGORY_KINDS:
        raise ValueError(f"at most {N_CATEGORY_KINDS} simulated categories, asked for {n}")
    combos = [Category(s, h, p) for s in SHAPES for h in HUES for p in PATTERNS]
    order = np.random.default_rng(seed).permutation(len(combos))[:n]
    return [combos[i] for i in order]


def _shape_score(shape: str, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Signed inside-score in object-radius units: > 0 inside, 0 on the edge."""
    rho = np.hypot(x, y)
    th = np.arctan2(y, x)
    if shape == "circle":
        return 1.0 - rho
    if shape == "ellipse":
        return 1.0 - np.hypot(x, y / 0.55)
    if shape in ("triangle", "square", "hexagon"):
        n = {"triangle": 3, "square": 4, "hexagon": 6}[shape]
        sector = np.mod(th, 2 * np.pi / n) - np.pi / n
        return np.cos(np.pi / n) / np.cos(sector) - rho
    if shape == "star":
        return 0.62 + 0.38 * np.cos(5 * th) - rho
    if shape == "flower":
        return 0.78 + 0.22 * np.cos(8 * th) - rho
    if shape == "trefoil":
        return 0.7 + 0.3 * np.cos(3 * th) - rho
    if shape == "cross":
        arm1 = np.minimum(0.32 - np.abs(x), 1.0 - np.abs(y))
        arm2 = np.minimum(1.0 - np.abs(x), 0.32 - np.abs(y))
        return np.maximum(arm1, arm2)
    if shape == "ring":
        return np.minimum(1.0 - rho, rho - 0.55)
    if shape == "crescent":
        return np.minimum(1.0 - rho, np.hypot(x - 0.45, y) - 0.8)
    if shape == "bar":
        return np.minimum(1.0 - np.abs(x), 0.42 - np.abs(y))
    raise ValueError(shape)


def _hsv_to_rgb(h: float, s: float, v: np.ndarray) -> np.ndarray:
    """Vectorised HSV→RGB for one hue/saturation and a value map (H, W) → (H, W, 3)."""
    i = int(h * 6.0) % 6
    f = h * 6.0 - int(h * 6.0)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    table = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]
    return np.stack(table[i], axis=-1)


def _object_layer(category: Category, xx, yy, size: int, rng, radius: float, cx: float, cy: float):
    """One object of ``category`` at centre (cx, cy) and ``radius`` (fractions of the width):
    (rgb (S, S, 3) in [0, 1], alpha (S, S))."""
    rot = rng.uniform(0, 2 * np.pi)
    u, v = (xx - cx) / radius, (yy - cy) / radius
    ur, vr = u * np.cos(rot) + v * np.sin(rot), -u * np.sin(rot) + v * np.cos(rot)
    score = _shape_score(category.shape, ur, vr)
    alpha = np.clip(score * radius * size + 0.5, 0.0, 1.0)  # one-pixel anti-aliased edge

    hue = (category.hue + rng.normal(0, 0.015)) % 1.0
    sat, val = rng.uniform(0.65, 1.0), rng.uniform(0.65, 1.0)
    value = np.full((size, size), val)
    if category.pattern == "stripes":
        value = value * (0.72 + 0.28 * (np.sin(2 * np.pi * 3.5 * ur + rng.uniform(0, 6.3)) > 0))
    elif category.pattern == "dots":
        dots = np.cos(2 * np.pi * 2.5 * ur) * np.cos(2 * np.pi * 2.5 * vr) > 0.55
        value = value * np.where(dots, 0.45, 1.0)
    return _hsv_to_rgb(hue, sat, value), alpha


def _background(size: int, rng):
    """The textured background and the pixel-centre grid (xx, yy) in [-0.5, 0.5]."""
    coords = (np.arange(size) + 0.5) / size - 0.5
    yy, xx = np.meshgrid(coords, coords, indexing="ij")
    # a desaturated base colour with a low-contrast grating and smooth noise
    bg_hue, bg_sat = rng.random(), rng.uniform(0.0, 0.35)
    theta, freq, phase = rng.uniform(0, np.pi), rng.uniform(2, 7), rng.uniform(0, 2 * np.pi)
    grating = np.sin(2 * np.pi * freq * (xx * np.cos(theta) + yy * np.sin(theta)) + phase)
    noise = ndimage.zoom(rng.normal(size=(5, 5)), size / 5, order=1, mode="nearest")[:size, :size]
    bg_val = np.clip(rng.uniform(0.3, 0.7) + 0.08 * grating + 0.06 * noise, 0, 1)
    return _hsv_to_rgb(bg_hue, bg_sat, bg_val), xx, yy


def draw_image(category: Category, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """One image of ``category``.

    Returns:
        image: (size, size, 3) uint8.
        foreground: (size, size) bool, the true object mask.
    """
    rng = np.random.default_rng(seed)
    background, xx, yy = _background(size, rng)
    # object: shape at a jittered position, scale and rotation
    radius = rng.uniform(0.22, 0.34)
    cx, cy = rng.uniform(-0.14, 0.14, size=2)
    obj, alpha = _object_layer(category, xx, yy, size, rng, radius, cx, cy)
    rgb = alpha[..., None] * obj + (1 - alpha[..., None]) * background
    image = np.round(np.clip(rgb, 0, 1) * 255).astype(np.uint8)
    return image, alpha > 0.5


#: colour names of the 8 hues (``Category.hue`` = i / 8), for captions
HUE_NAMES = ("red", "orange", "yellow", "green", "cyan", "blue", "purple", "pink")
PATTERN_WORDS = {"solid": "", "stripes": "striped", "dots": "dotted"}


def describe(category: Category) -> str:
    """``red striped star``: the words a caption uses for a category."""
    words = (HUE_NAMES[int(category.hue * 8 + 0.5) % 8], PATTERN_WORDS[category.pattern], category.shape)
    return " ".join(w for w in words if w)


@dataclass(frozen=True)
class Scene:
    """A multi-object image: the main object first, then the smaller distractors behind it.

    ``labels``: category index per object; ``boxes``: (n, 4) int pixel boxes ``x, y, w, h`` (COCO
    order) of each object's visible pixels; ``captions``: template sentences."""

    image: np.ndarray
    foreground: np.ndarray
    labels: tuple[int, ...]
    boxes: np.ndarray
    captions: tuple[str, ...]


def _box(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    if not len(xs):
        return (0, 0, 0, 0)
    return (int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1))


def _relation(dx: float, dy: float) -> str:
    """Where the main object is relative to a distractor at offset (dx, dy) from it (image y grows
    down): a distractor below the main object makes the main object "above" it."""
    if abs(dy) >= abs(dx):
        return "above" if dy > 0 else "below"
    return "to the left of" if dx > 0 else "to the right of"


def draw_scene(categories: list[Category], labels: list[int], size: int, seed: int) -> Scene:
    """A main object of ``categories[labels[0]]`` (as :func:`draw_image` draws it) with smaller
    distractors ``labels[1:]`` placed around it, partly hidden behind it. Foreground = the main
    object; boxes and captions ("a red striped star above a small blue disc") for every object."""
    rng = np.random.default_rng(seed)
    background, xx, yy = _background(size, rng)
    radius = rng.uniform(0.22, 0.34)
    cx, cy = rng.uniform(-0.14, 0.14, size=2)
    main, main_alpha = _object_layer(categories[labels[0]], xx, yy, size, rng, radius, cx, cy)
    rgb = background
    placed = []
    for label in labels[1:]:
        r = rng.uniform(0.07, 0.12)
        angle = rng.uniform(0, 2 * np.pi)
        dist = radius + r * rng.uniform(0.3, 1.0)
        dx = np.clip(cx + dist * np.cos(angle), -0.5 + r, 0.5 - r) - cx
        dy = np.clip(cy + dist * np.sin(angle), -0.5 + r, 0.5 - r) - cy
        obj, alpha = _object_layer(categories[label], xx, yy, size, rng, r, cx + dx, cy + dy)
        rgb = alpha[..., None] * obj + (1 - alpha[..., None]) * rgb
        placed.append((label, alpha, dx, dy))
    rgb = main_alpha[..., None] * main + (1 - main_alpha[..., None]) * rgb
    image = np.round(np.clip(rgb, 0, 1) * 255).astype(np.uint8)
    fg = main_alpha > 0.5
    boxes = [_box(fg)]
    hidden = fg.copy()
    for _, alpha, _, _ in reversed(placed):  # later distractors cover earlier ones
        visible = (alpha > 0.5) & ~hidden
        boxes.insert(1, _box(visible))
        hidden |= alpha > 0.5
    name = describe(categories[labels[0]])
    parts = [f"{_relation(dx, dy)} a small {describe(categories[label])}" for label, _, dx, dy in placed]
    captions = [f"a {name}"]
    if parts:
        captions = [f"a {name} " + " and ".join(parts), f"a {name} with {len(parts)} smaller shape{'s' * (len(parts) > 1)}"]
    boxes = np.asarray(boxes, np.int64).reshape(-1, 4)
    return Scene(image, fg, tuple(int(x) for x in labels), boxes, tuple(captions))


def draw_images(categories: list[Category], labels: np.ndarray, size: int, seeds: np.ndarray):
    """Images for a list of category indices; returns uint8 (N, S, S, 3) and bool (N, S, S)."""
    images = np.empty((len(labels), size, size, 3), np.uint8)
    masks = np.empty((len(labels), size, size), bool)
    for k, (label, seed) in enumerate(zip(labels, seeds)):
        images[k], masks[k] = draw_image(categories[label], size, int(seed))
    return images, masks
