"""The embedded synthetic defect dataset: brushed-metal images with drawn defects, no download.

Design:
- One `np.random.default_rng(cfg.seed)` drives everything in a fixed order, so the same config and
  size give byte-identical images, labels and boxes.
- Every image, good or not, is a textured surface (gray level, brushed streaks, lighting, dust,
  faint stains, sensor noise) plus the odd faint polishing mark, so "good" is never "flat" and a
  model cannot just detect "anything there". Surfaces are built for a chunk of images at once.
- Defects come from `DEFECT_STYLES`, a registry from style name to drawer. A drawer renders its
  shape's coverage into a patch just around the shape, shades the image there and returns the tight
  box of that coverage. Unknown defect names get a tinted generic style picked by class index.
- `difficulty` maps to one `_Look` (contrast, size, stroke width, clutter) read by all drawers;
  `along_x` adds the preferred direction of elongated defects (detection wants flat, h/w < 1 boxes);
  `variety` lets each defect stray from its class's look (size, strength, stroke): more looks per class.
- A defect image's label is the class of its first defect; with `mixed_defects` > 0 the extra defects
  may be of other defect classes (detection), drawn by the class frequencies.
- Knobs at their defaults draw nothing extra from the generator, so classification data stays
  byte-identical to what it was before they existed.
- Results are cached per (config, size): callers share read-only arrays.
"""

from __future__ import annotations

import colorsys
import functools
import math
from dataclasses import dataclass, replace
from statistics import NormalDist
from typing import Callable, NamedTuple

import cv2
import numpy as np

from training.config import GOOD_CLASS, SyntheticData
from training.data.samples import ImageSet

# cv2 drawing takes integer points; 4 fractional bits keep thin anti-aliased strokes smooth.
_SHIFT = 4
# a pixel belongs to a defect's footprint (and its box) once the defect's coverage reaches this.
_FOOTPRINT = 0.25
# a defect image carries 1, 2 or 3 defects with these weights; further counts (max_defects > 3)
# halve the weight each step.
_DEFECTS_PER_IMAGE = (0.55, 0.3, 0.15)
_RUST = np.array([165.0, 84.0, 38.0], np.float32)
# surfaces are built about this many pixels at a time: vectorised, yet cache- and memory-friendly.
_CHUNK_PIXELS = 1 << 19
# positions along a bowed line, end to end.
_LINE_T = np.linspace(-0.5, 0.5, 9)[:, None]


@dataclass(frozen=True)
class _Look:
    """How defects and clutter show at one difficulty; every drawer reads the same knobs."""

    strength: float  # 1 = bold; scales intensity changes and colour shifts
    scale: float  # defect size relative to the bold size
    thickness: int  # stroke width in pixels
    clutter: float  # 0..1: how many and how strong the benign look-alikes are
    along_x: float = 0.5  # share of elongated defects that run along x (flat boxes)
    variety: float = 0.0  # 0..1: how far each defect's size, strength and stroke stray from the above

    @property
    def contrast(self) -> float:
        return 100.0 * self.strength


# draws one defect into a float32 HxWx3 image in place and returns its xyxy box
Drawer = Callable[[np.ndarray, np.random.Generator, _Look], list[int]]


def generate(cfg: SyntheticData, image_size: int) -> ImageSet:
    """Images, labels (indices into `cfg.classes`) and xyxy boxes of the synthetic defect set.

    Cached per (cfg, image_size): the arrays are shared between calls and read-only, so copy one
    (`np.array(img)`) before editing it in place. The lists themselves are fresh on every call.
    """
    cached = _generate_cached(cfg.model_dump_json(), image_size)
    return ImageSet(list(cached.images), cached.labels, list(cached.boxes), list(cached.box_labels))


def class_counts(cfg: SyntheticData) -> np.ndarray:
    """Exact images per class: `good_fraction` good, defects decaying geometrically to `imbalance`.

    Defect classes are ranked in `cfg.classes` order (the first is the commonest); each gets >= 1.
    """
    good = good_index(cfg.classes)
    n_defect_classes = len(cfg.classes) - (good is not None)
    if cfg.count < len(cfg.classes):
        raise ValueError(f"synthetic count {cfg.count} is below the {len(cfg.classes)} classes")
    n_good = 0 if good is None else int(np.clip(round(cfg.good_fraction * cfg.count), 1, cfg.count - n_defect_classes))
    ratio = cfg.imbalance ** (1.0 / max(n_defect_classes - 1, 1))
    defect_counts = _split(cfg.count - n_good, ratio ** np.arange(n_defect_classes))
    return defect_counts if good is None else np.insert(defect_counts, good, n_good)


def good_index(classes: list[str]) -> int | None:
    """Index of the class named `good` (any case), or None when every class is a defect kind."""
    return next((i for i, name in enumerate(classes) if name.lower() == GOOD_CLASS), None)


def _split(total: int, shares: np.ndarray) -> np.ndarray:
    """Largest-remainder split of `total` by `shares`, each part at least 1, summing to `total`."""
    exact = total * shares / shares.sum()
    counts = np.maximum(1, np.floor(exact)).astype(np.int64)
    while counts.sum() > total:  # the minimum of 1 overshot: take back from the commonest
        counts[np.argmax(counts)] -= 1
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[: total - counts.sum()]] += 1
    return counts


@functools.lru_cache(maxsize=4)
def _generate_cached(cfg_json: str, image_size: int) -> ImageSet:
    cfg = SyntheticData.model_validate_json(cfg_json)
    rng = np.random.default_rng(cfg.seed % 2**64)  # negative seeds are valid config values
    counts = class_counts(cfg)
    labels = rng.permutation(np.repeat(np.arange(len(cfg.classes)), counts)).astype(np.int64)
    weights = _defect_count_weights(cfg.max_defects)
    n_defects = rng.choice(len(weights), size=len(labels), p=weights) + 1
    box_labels = _defect_classes(rng, cfg, labels, n_defects, counts)
    class_drawers = [_drawer(cfg.classes, i) for i in range(len(cfg.classes))]
    look = _look(cfg.difficulty, image_size, cfg.along_x, cfg.variety)
    pixels, boxes = _render(rng, class_drawers, box_labels, image_size, look)
    _read_only([pixels, labels, *boxes, *box_labels])
    return ImageSet(list(pixels), labels, boxes, box_labels)


def _defect_count_weights(max_defects: int) -> np.ndarray:
    """Probabilities of 1..max_defects defects on a defect image (the default 3 keeps the old table)."""
    tail = [_DEFECTS_PER_IMAGE[-1] * 0.5**k for k in range(1, max_defects - len(_DEFECTS_PER_IMAGE) + 1)]
    weights = np.array([*_DEFECTS_PER_IMAGE, *tail][:max_defects])
    return weights / weights.sum()


def _defect_classes(
    rng: np.random.Generator, cfg: SyntheticData, labels: np.ndarray, n_defects: np.ndarray, counts: np.ndarray
) -> list[np.ndarray]:
    """Each image's int64 defect classes: none for a good image, its own class first, then (with
    `mixed_defects`) some extra defects of another defect class, drawn by the class frequencies."""
    good = good_index(cfg.classes)
    n = np.where(labels == good, 0, n_defects) if good is not None else n_defects
    classes = [np.full(k, label, np.int64) for k, label in zip(n, labels)]
    defects = np.array([i for i in range(len(cfg.classes)) if i != good])
    if cfg.mixed_defects == 0 or len(defects) < 2:  # no draws: the default stays byte-identical
        return classes
    others = rng.choice(defects, size=int(n.sum()), p=counts[defects] / counts[defects].sum())
    switch = rng.random(int(n.sum())) < cfg.mixed_defects
    start = 0
    for image_classes in classes:
        extra = slice(start + 1, start + len(image_classes))
        image_classes[1:] = np.where(switch[extra], others[extra], image_classes[1:])
        start += len(image_classes)
    return classes


def _render(
    rng: np.random.Generator, class_drawers: list[Drawer | None], box_labels: list[np.ndarray], size: int, look: _Look
) -> tuple[np.ndarray, list[np.ndarray]]:
    """All images as one uint8 (n, H, W, 3) array, and each image's float32 (k, 4) boxes."""
    pixels = np.empty((len(box_labels), size, size, 3), np.uint8)
    boxes = []
    step = max(1, _CHUNK_PIXELS // size**2)
    for start in range(0, len(box_labels), step):
        chunk = _surfaces(rng, min(step, len(box_labels) - start), size, look)
        for image, classes in zip(chunk, box_labels[start:]):
            boxes.append(_draw_on(image, rng, look, [class_drawers[c] for c in classes]))
        np.clip(chunk + 0.5, 0, 255, out=pixels[start : start + len(chunk)], casting="unsafe")
    return pixels, boxes


def _draw_on(image: np.ndarray, rng: np.random.Generator, look: _Look, drawers: list[Drawer]) -> np.ndarray:
    """The per-image strokes on a surface: faint marks, then one defect per drawer (none if good)."""
    _add_faint_marks(image, rng, look)
    boxes = [drawer(image, rng, _varied(look, rng)) for drawer in drawers]
    return np.array(boxes, np.float32).reshape(-1, 4)


def _read_only(arrays: list[np.ndarray]) -> None:
    # cached and shared between callers: an in-place edit would silently leak into every other one
    for array in arrays:
        array.setflags(write=False)


def _look(difficulty: float, image_size: int, along_x: float = 0.5, variety: float = 0.0) -> _Look:
    return _Look(
        # faster fade at the bold end: the middle of the range is already a hard, non-trivial task
        strength=0.2 + 0.8 * (1.0 - difficulty) ** 2,
        scale=1.0 - 0.5 * difficulty,
        thickness=max(1, round(image_size / 40 * (1.0 - 0.5 * difficulty))),
        clutter=difficulty,
        along_x=along_x,
        variety=variety,
    )


def _varied(look: _Look, rng: np.random.Generator) -> _Look:
    """One defect's own look: at `variety` v its size x2^(v*[-1, 0.7]), strength x[1-0.6v, 1+0.3v] and
    stroke up to 2v px wider. Variety 0 draws nothing: the images stay byte-identical."""
    if look.variety == 0:
        return look
    v = look.variety
    return replace(
        look,
        scale=look.scale * 2 ** (v * _uniform(rng, -1.0, 0.7)),
        strength=look.strength * _uniform(rng, 1 - 0.6 * v, 1 + 0.3 * v),
        thickness=look.thickness + int(rng.integers(0, round(2 * v) + 1)),
    )


def _uniform(rng: np.random.Generator, low: float, high: float) -> float:
    # a scalar rng.uniform costs several times rng.random(), and drawers call this a lot
    return low + (high - low) * rng.random()


def _sign(rng: np.random.Generator) -> float:
    return 1.0 if rng.random() < 0.5 else -1.0


# --- surfaces: vectorised over a chunk of images ------------------------------------------------


@functools.cache
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates in [-0.5, 0.5] as a row and a column, for broadcasting."""
    axis = (np.arange(size, dtype=np.float32) + 0.5) / size - 0.5
    return axis[None, :], axis[:, None]


@functools.cache
def _noise_table() -> np.ndarray:
    """Standard-normal quantiles of the 256 byte values: Gaussian-shaped noise from random bytes,
    several times cheaper than drawing a normal per pixel."""
    normal = NormalDist()
    return np.array([normal.inv_cdf((k + 0.5) / 256) for k in range(256)], np.float32)


def _column(rng: np.random.Generator, n: int, low: float, high: float) -> np.ndarray:
    """One float32 value per image, shaped (n, 1, 1) to broadcast over (n, H, W)."""
    return rng.uniform(low, high, (n, 1, 1)).astype(np.float32)


def _surfaces(rng: np.random.Generator, n: int, size: int, look: _Look) -> np.ndarray:
    """Float32 (n, H, W, 3) metal surfaces: gray relief, tint and stains, then sensor noise."""
    gray = _column(rng, n, 90, 175) + _brushed(rng, n, size) * _column(rng, n, 4, 11) + _lighting(rng, n, size)
    _add_dust(gray, rng, look)
    channels = _colour(rng, gray, look)
    # cv2.merge interleaves channels far faster than numpy broadcasting into a trailing axis of 3
    image = cv2.merge([c.reshape(n * size, size) for c in channels]).reshape(n, size, size, 3)
    noise = _noise_table()[rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)]
    noise *= rng.uniform(1.5, 4.0, (n, 1, 1, 1)).astype(np.float32)
    image += noise
    return image


def _brushed(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """Unit-scale streaks along one random direction per image: the grain of brushed metal.

    A 1-D noise profile across the grain, looked up by each pixel's distance across it, draws
    straight streaks without a per-image 2-D filter.
    """
    x, y = _grid(size)
    angle = _column(rng, n, 0, np.pi)
    across = ((np.cos(angle) * x + np.sin(angle) * y + 0.75) * size).reshape(n, -1)  # in [0, 1.5 size)
    profile = rng.standard_normal((n, 2 * size)).astype(np.float32)
    fine = cv2.GaussianBlur(profile, (5, 1), 0.8)  # (5, 1): blur along each profile, never across images
    broad = cv2.GaussianBlur(profile, (15, 1), 3.0)
    profile = fine / fine.std(axis=1, keepdims=True) + 0.7 * broad / broad.std(axis=1, keepdims=True)
    # interpolate between profile samples: a nearest lookup leaves staircase edges on tilted streaks
    index = across.astype(np.intp)
    flat = index + np.arange(n)[:, None] * profile.shape[1]  # one flat take beats take_along_axis
    below, above = profile.take(flat), profile.take(flat + 1)
    return (below + (across - index) * (above - below)).reshape(n, size, size)


def _lighting(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """A linear gradient plus a soft highlight per image: uneven illumination across the part."""
    x, y = _grid(size)
    gx, gy, hx, hy, peak = (_column(rng, n, low, high) for low, high in _LIGHT_RANGES)
    return gx * x + gy * y + peak * np.exp(((x - hx) ** 2 + (y - hy) ** 2) * (-1 / 0.18))


_LIGHT_RANGES = ((-30, 30), (-30, 30), (-0.5, 0.5), (-0.5, 0.5), (0, 20))


def _add_dust(gray: np.ndarray, rng: np.random.Generator, look: _Look) -> None:
    """Specks a pixel or a few wide, mostly dark: the commonest thing a camera sees on a part."""
    n, size = gray.shape[:2]
    counts = 1 + rng.poisson(1.0 + 4.0 * look.clutter, n)
    which = np.repeat(np.arange(n), counts)
    widest = max(1, size // 32)
    ys, xs = rng.integers(0, size - widest + 1, (2, len(which)))
    widths = rng.integers(1, widest + 1, len(which))
    values = np.where(rng.random(len(which)) < 0.7, -1.0, 0.6) * rng.uniform(8, 22, len(which))
    for dy in range(widest):
        for dx in range(widest):
            hit = widths > max(dy, dx)
            np.add.at(gray, (which[hit], ys[hit] + dy, xs[hit] + dx), values[hit])


def _colour(rng: np.random.Generator, gray: np.ndarray, look: _Look) -> list[np.ndarray]:
    """R, G, B planes: gray tinted like steel (slightly blue or warm), then faint stains that drift
    towards rust's hue as clutter rises, so colour alone does not give rust away."""
    n = len(gray)
    tint = 1.0 + rng.uniform(-0.04, 0.04, (3, n, 1, 1)).astype(np.float32)
    alpha = _stains(rng, n, gray.shape[1], look)
    warmth = _column(rng, n, 0, 0.5 * look.clutter)
    darkening = _column(rng, n, 0.85, 1.1)
    stained = gray * (1.0 + alpha * ((1.0 - warmth) * darkening - 1.0))
    warm = alpha * warmth
    return [stained * tint[c] + warm * _RUST[c] for c in range(3)]


def _stains(rng: np.random.Generator, n: int, size: int, look: _Look) -> np.ndarray:
    """Stain opacity per pixel: one soft, elongated, tilted blotch on some images, none on others."""
    x, y = _grid(size)
    cx, cy, tilt = _column(rng, n, -0.35, 0.35), _column(rng, n, -0.35, 0.35), _column(rng, n, 0, np.pi)
    length = _column(rng, n, 0.08, 0.22)
    width = length * _column(rng, n, 0.3, 0.8)
    present = (rng.random((n, 1, 1)) < 0.5 + 0.4 * look.clutter).astype(np.float32)
    opacity = present * _column(rng, n, 0.12, 0.3)
    along = (x - cx) * np.cos(tilt) + (y - cy) * np.sin(tilt)
    across = (y - cy) * np.cos(tilt) - (x - cx) * np.sin(tilt)
    return opacity * np.exp(-0.5 * ((along / length) ** 2 + (across / width) ** 2))


# --- coverage patches: a shape's alpha in [0, 1] over the small region it touches --------------


class _Alpha(NamedTuple):
    values: np.ndarray  # float32 (h, w)
    x0: int
    y0: int

    def region(self, image: np.ndarray) -> np.ndarray:
        h, w = self.values.shape
        return image[self.y0 : self.y0 + h, self.x0 : self.x0 + w]

    def box(self) -> list[int]:
        """Tight xyxy box of the footprint; the far edges are exclusive pixel coordinates."""
        footprint = self.values >= _FOOTPRINT
        if not footprint.any():  # a shape too faint for the threshold still needs a non-empty box
            footprint = self.values > 0
        x, y, w, h = cv2.boundingRect(footprint.view(np.uint8))
        return [self.x0 + x, self.y0 + y, self.x0 + x + w, self.y0 + y + h]


def _fixed(points: np.ndarray) -> np.ndarray:
    return np.round(points * (1 << _SHIFT)).astype(np.int32)


def _bounds(points: np.ndarray) -> tuple[int, int, int, int]:
    """Integer x0, y0, x1, y1 (exclusive) around float points; cv2 does it in one cheap call."""
    x, y, w, h = cv2.boundingRect(points.astype(np.float32))
    return x, y, x + w, y + h


def _canvas(points: np.ndarray, size: int, pad: float) -> tuple[np.ndarray, np.ndarray]:
    """A blank uint8 canvas over the points' bounds plus `pad`, clipped to the image, and its origin."""
    x0, y0, x1, y1 = _bounds(points)
    pad = math.ceil(pad)
    x0, y0, x1, y1 = max(0, x0 - pad), max(0, y0 - pad), min(size, x1 + pad), min(size, y1 + pad)
    return np.zeros((y1 - y0, x1 - x0), np.uint8), np.array([x0, y0])


def _alpha(canvas: np.ndarray, origin: np.ndarray) -> _Alpha:
    return _Alpha(canvas.astype(np.float32) * (1 / 255), int(origin[0]), int(origin[1]))


def _stroke(points: np.ndarray, size: int, thickness: int, closed: bool = False) -> _Alpha:
    canvas, origin = _canvas(points, size, pad=thickness + 1)
    cv2.polylines(canvas, [_fixed(points - origin)], closed, 255, thickness, cv2.LINE_AA, _SHIFT)
    return _alpha(canvas, origin)


def _filled(points: np.ndarray, size: int, pad: float) -> _Alpha:
    canvas, origin = _canvas(points, size, pad)
    cv2.fillPoly(canvas, [_fixed(points - origin)], 255, cv2.LINE_AA, _SHIFT)
    return _alpha(canvas, origin)


def _blob(rng: np.random.Generator, size: int, length: float, n_parts: int, along_x: float = 0.5) -> _Alpha:
    """Soft union of a few overlapping ellipses strung along a line: irregular, elongated, blurred."""
    # parts sized to their spacing so that neighbours overlap into one patch, not a row of spots
    semi_major = length / (n_parts + 1) * rng.uniform(0.9, 1.3, n_parts)
    axes = np.maximum(1.0, np.stack([semi_major, semi_major * rng.uniform(0.3, 0.5, n_parts)], axis=1))
    centres, angle = _blob_parts(rng, max(0.0, length - 2 * semi_major.mean()), n_parts, along_x)
    centres = _place(rng, centres, size, margin=axes.max())
    blur = max(0.6, 0.3 * axes[:, 1].mean())
    canvas, origin = _canvas(centres, size, pad=axes.max() + 3 * blur)
    tilts = angle + rng.uniform(-20, 20, n_parts)
    for centre, axis_pair, tilt in zip(_fixed(centres - origin), _fixed(axes), tilts):
        cv2.ellipse(canvas, tuple(centre), tuple(axis_pair), tilt, 0, 360, 255, -1, cv2.LINE_AA, _SHIFT)
    return _alpha(cv2.GaussianBlur(canvas, (0, 0), blur), origin)


def _dots(rng: np.random.Generator, size: int, spread: float) -> _Alpha:
    radius = max(1, size // 40)
    centres = _place(rng, rng.normal(0, spread, (int(rng.integers(3, 7)), 2)), size, margin=radius + 0.5)
    canvas, origin = _canvas(centres, size, pad=radius + 1)
    for centre in _fixed(centres - origin):
        cv2.circle(canvas, tuple(centre), radius << _SHIFT, 255, -1, cv2.LINE_AA, _SHIFT)
    return _alpha(canvas, origin)


# --- geometry ----------------------------------------------------------------------------------


def _axis_angle(rng: np.random.Generator, spread: float = 0.6, along_x: float = 0.5) -> float:
    """A random angle within `spread` radians of an image axis (x with probability `along_x`):
    elongated defects follow the part's edges and machining direction more often than not, which
    also keeps their boxes narrow."""
    return (rng.random() < 1.0 - along_x) * math.pi / 2 + _uniform(rng, -spread, spread)


def _place(rng: np.random.Generator, points: np.ndarray, size: int, margin: float = 1.0) -> np.ndarray:
    """Shift a shape (given around the origin) to a random spot where it lies inside the image."""
    x0, y0, x1, y1 = _bounds(points)
    free = np.maximum(size - 1 - 2 * margin - np.array([x1 - x0, y1 - y0]), 0.0)
    return points - (x0, y0) + margin + rng.random(2) * free


def _bowed_line(length: float, angle: float, bow: float) -> np.ndarray:
    """Points of a straight (bow 0) or gently curved line of `length`, centred on the origin."""
    cos, sin = math.cos(angle), math.sin(angle)
    return _LINE_T * length * np.array([cos, sin]) + (1 - 4 * _LINE_T**2) * bow * length * np.array([-sin, cos])


def _walk(rng: np.random.Generator, length: float, step: float, along_x: float = 0.5) -> np.ndarray:
    """A jagged random walk that keeps a main heading: the path of a crack."""
    turns = _axis_angle(rng, along_x=along_x) + rng.uniform(-0.75, 0.75, max(2, round(length / step)))
    steps = step * np.stack([np.cos(turns), np.sin(turns)], axis=1)
    return np.cumsum(np.vstack([np.zeros((1, 2)), steps]), axis=0)


def _blob_parts(
    rng: np.random.Generator, length: float, n_parts: int, along_x: float = 0.5
) -> tuple[np.ndarray, float]:
    """Centres strung along a line of `length` (around the origin), and the line's angle in degrees."""
    angle = _axis_angle(rng, spread=0.3, along_x=along_x)
    # evenly strung, then jittered: clustered parts would make a round blob, not a streak
    along = (np.linspace(-0.5, 0.5, n_parts) + rng.uniform(-0.1, 0.1, n_parts))[:, None] * length
    centres = along * np.array([math.cos(angle), math.sin(angle)]) + rng.normal(0, 0.03 * length, (n_parts, 2))
    return centres, math.degrees(angle)


def _polygon(rng: np.random.Generator, radius: float) -> np.ndarray:
    """An irregular star-convex polygon around the origin."""
    n = int(rng.integers(5, 9))
    angles = np.sort(rng.uniform(0, 2 * np.pi, n))
    radii = radius * rng.uniform(0.55, 1.2, n)
    return np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)


def _against_border(rng: np.random.Generator, points: np.ndarray, size: int) -> np.ndarray:
    """Slide a shape along one axis until it sits just inside a random image border."""
    axis, far = int(rng.random() < 0.5), rng.random() < 0.5
    gap = 1.0 + _uniform(rng, 0, 0.08 * size)
    low, high = points[:, axis].min(), points[:, axis].max()
    moved = points.copy()
    moved[:, axis] += (size - 1 - gap - high) if far else (gap - low)
    return moved


# --- shading -----------------------------------------------------------------------------------


def _shade(image: np.ndarray, alpha: _Alpha, delta: float) -> None:
    alpha.region(image)[...] += (alpha.values * np.float32(delta))[..., None]


def _tint_toward(image: np.ndarray, alpha: _Alpha, colour: np.ndarray, strength: float = 1.0) -> None:
    region = alpha.region(image)
    region += (alpha.values * np.float32(strength))[..., None] * (colour.astype(np.float32) - region)


def _contrast(rng: np.random.Generator, look: _Look) -> float:
    return look.contrast * _uniform(rng, 0.75, 1.25)


def _add_faint_marks(image: np.ndarray, rng: np.random.Generator, look: _Look) -> None:
    """Short, weak lines: polishing marks that a model must not call scratches."""
    size = image.shape[0]
    for _ in range(rng.poisson(2.0 * look.clutter)):
        points = _bowed_line(size * _uniform(rng, 0.1, 0.25), _axis_angle(rng), bow=0.0)
        _shade(image, _stroke(_place(rng, points, size), size, 1), _sign(rng) * _uniform(rng, 6, 14))


# --- defect drawers: shade the image in place, return the defect's box -------------------------


def _draw_scratch(image: np.ndarray, rng: np.random.Generator, look: _Look) -> list[int]:
    """Thin, long, straight or slightly curved; bright (fresh metal) or dark (debris)."""
    size = image.shape[0]
    length = size * look.scale * _uniform(rng, 0.4, 0.7)
    points = _bowed_line(length, _axis_angle(rng, along_x=look.along_x), bow=_uniform(rng, -0.08, 0.08))
    alpha = _stroke(_place(rng, points, size), size, look.thickness)
    _shade(image, alpha, _sign(rng) * _contrast(rng, look))
    return alpha.box()


def _draw_crack(image: np.ndarray, rng: np.random.Generator, look: _Look) -> list[int]:
    """A thin, dark, jagged polyline."""
    size = image.shape[0]
    points = _walk(rng, size * look.scale * _uniform(rng, 0.35, 0.6), max(1.5, size * 0.06), look.along_x)
    alpha = _stroke(_place(rng, points, size), size, look.thickness)
    _shade(image, alpha, -1.1 * _contrast(rng, look))
    return alpha.box()


def _draw_rust(image: np.ndarray, rng: np.random.Generator, look: _Look) -> list[int]:
    """An orange-brown, mottled, elongated blotch: a colour shift more than a brightness one."""
    size = image.shape[0]
    alpha = _blob(rng, size, size * look.scale * _uniform(rng, 0.35, 0.6), int(rng.integers(2, 5)), look.along_x)
    mottled = alpha._replace(values=alpha.values * (0.7 + 0.3 * rng.random(alpha.values.shape, np.float32)))
    strength = min(0.95, 0.9 * look.strength * _uniform(rng, 0.8, 1.2))
    _tint_toward(image, mottled, _RUST * _uniform(rng, 0.75, 1.15), strength)
    return alpha.box()


def _draw_chip(image: np.ndarray, rng: np.random.Generator, look: _Look) -> list[int]:
    """A small dark pit with a lighter rim of raised metal, usually close to an edge."""
    size = image.shape[0]
    outline = _polygon(rng, max(1.5, size * look.scale * _uniform(rng, 0.05, 0.09)))
    # a knock along the machining direction flattens the pit: half height when every defect follows x
    outline[:, 1] *= 1.0 - max(0.0, look.along_x - 0.5)
    outline = _place(rng, outline, size)
    if rng.random() < 0.65:  # edges take the knocks
        outline = _against_border(rng, outline, size)
    rim = _stroke(outline, size, 1, closed=True)
    pit = _filled(outline, size, pad=2)  # the rim's pad (thickness + 1): both cover one region
    contrast = _contrast(rng, look)
    _shade(image, rim, 0.6 * contrast)
    _shade(image, pit, -1.3 * contrast)
    return rim._replace(values=np.maximum(rim.values, pit.values)).box()


DEFECT_STYLES: dict[str, Drawer] = {
    "scratch": _draw_scratch,
    "crack": _draw_crack,
    "rust": _draw_rust,
    "chip": _draw_chip,
}


# --- fallback for defect names the registry does not know --------------------------------------


def _line_shape(rng: np.random.Generator, size: int, look: _Look) -> _Alpha:
    points = _bowed_line(size * look.scale * _uniform(rng, 0.3, 0.6), _axis_angle(rng), _uniform(rng, -0.2, 0.2))
    return _stroke(_place(rng, points, size), size, look.thickness + 1)


def _blob_shape(rng: np.random.Generator, size: int, look: _Look) -> _Alpha:
    return _blob(rng, size, size * look.scale * _uniform(rng, 0.2, 0.4), n_parts=int(rng.integers(1, 4)))


def _ring_shape(rng: np.random.Generator, size: int, look: _Look) -> _Alpha:
    outline = _place(rng, _polygon(rng, max(2.0, size * look.scale * _uniform(rng, 0.07, 0.12))), size)
    return _stroke(outline, size, look.thickness, closed=True)


def _dots_shape(rng: np.random.Generator, size: int, look: _Look) -> _Alpha:
    return _dots(rng, size, spread=size * look.scale * 0.06)


_FALLBACK_SHAPES = (_line_shape, _blob_shape, _ring_shape, _dots_shape)


def _fallback_drawer(index: int) -> Drawer:
    """A shape and a saturated tint picked by class index: unlike the named styles (gray or
    rust-orange) and unlike each other, and the same for the same class list."""
    hue = (0.55 + 0.618034 * index) % 1.0  # golden-ratio steps keep neighbouring hues apart
    tint = np.array(colorsys.hsv_to_rgb(hue, 0.75, 0.8), np.float32) * 255
    return functools.partial(_draw_tinted, shape=_FALLBACK_SHAPES[index % len(_FALLBACK_SHAPES)], tint=tint)


def _draw_tinted(image: np.ndarray, rng: np.random.Generator, look: _Look, *, shape, tint: np.ndarray) -> list[int]:
    alpha = shape(rng, image.shape[0], look)
    _tint_toward(image, alpha, tint, strength=min(0.9, 0.8 * look.strength * _uniform(rng, 0.8, 1.2)))
    return alpha.box()


def _drawer(classes: list[str], index: int) -> Drawer | None:
    """None for the good class; else the registry style named by (part of) the name, else a fallback."""
    if index == good_index(classes):
        return None
    name = classes[index].lower()
    if name in DEFECT_STYLES:
        return DEFECT_STYLES[name]
    # "Scratches" or "surface_rust" still mean the named style
    partial = next((style for key, style in DEFECT_STYLES.items() if key in name), None)
    return partial or _fallback_drawer(index)
