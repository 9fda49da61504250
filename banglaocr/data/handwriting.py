"""A simulated hand: the ink of one word as a random writer might put it on paper.

`simulated_ink` returns the word's ink as a coverage map (float32, 0 = paper, 1 = full ink) that
`banglaocr.data.synth` composes onto paper and then gives the scanner's flaws. Each effect has a
strength in a `HandConfig` (0 = off) and takes all its randomness from the generator it is given:

- cluster jitter: every grapheme cluster is shaped alone by RAQM (conjuncts, reph and vowel signs
  stay whole), then scaled, rotated and moved off a drifting baseline, with uneven gaps - a hand
  does not repeat a font's exact advance widths;
- a thin-plate-spline warp: smooth random bends of the whole word;
- a pen: strokes thinned (a fine ballpoint) or thickened (a heavy marker), the width swelling and
  fading along the word with the pen's pressure;
- broken strokes: small gaps where the pen skipped, and faded patches;
- ink bleed: a soft, fibrous halo where the ink ran into the paper.

>>> import numpy as np
>>> from banglaocr.config import HandConfig
>>> from banglaocr.data.synth import bundled_fonts, load_font
>>> hand = HandConfig(simulate=1.0, jitter=1.0, pen_range=[0.0, 2.0], breaks=0.5, bleed=0.5, warp=0.1)
>>> ink = simulated_ink("স্ত্রী", load_font(bundled_fonts()[0], 40), hand, np.random.default_rng(0))
>>> ink.dtype, 0.0 <= float(ink.min()) < float(ink.max()) <= 1.0
(dtype('float32'), True)
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from banglaocr.config import HandConfig
from banglaocr.text import graphemes

# Per-cluster jitter at strength 1: scale, rotation (degrees), baseline shift and its drift per
# cluster (fractions of the font size), and the gap after a cluster (fraction of the font size; a
# negative gap lets neighbours touch, as in fast writing).
CLUSTER_SCALE, CLUSTER_ROTATION = 0.15, 8.0
CLUSTER_SHIFT, CLUSTER_DRIFT = 0.06, 0.03
CLUSTER_GAP = (-0.05, 0.22)
# Control points of the warp: 3 rows and about two columns per text height along the word.
WARP_ROWS, WARP_COLUMNS_PER_HEIGHT = 3, 2.0
PRESSURE_SWING = 1.2  # pixels of pen width that full pressure adds or takes away along the word
# Pen widths are pixels at this font size (scaled with the size), never thinner than THINNEST_PEN:
# thinning further erases whole strokes of light fonts rather than drawing a finer pen.
PEN_REFERENCE_SIZE, THINNEST_PEN = 40.0, -0.6
HEAVIEST_STROKE = 0.14  # the broadest stroke a pen draws, as a fraction of the font size
GAPS_PER_INK_PIXEL = 1.0 / 6.0  # broken strokes at strength 1: one gap per 6 x size ink pixels
INK_VISIBLE = 0.03  # coverage below this is paper when the ink is cropped


def simulated_ink(word: str, font: ImageFont.FreeTypeFont, hand: HandConfig, rng: np.random.Generator) -> np.ndarray:
    """The word's ink in a random writer's hand: a coverage map cropped to the ink (float32 in [0, 1])."""
    size = float(font.size)
    ink = _clusters(word, font, hand.jitter, rng) if hand.jitter else _whole_word(word, font)
    if hand.warp:
        ink = _tps_warp(ink, hand.warp * size, rng)
    if hand.pen_range is not None or hand.pressure:
        ink = _pen(ink, hand.pen_range or [0.0, 0.0], hand.pressure, size, rng)
    if hand.breaks:
        ink = _broken_strokes(ink, hand.breaks, size, rng)
    if hand.bleed:
        ink = _bleed(ink, hand.bleed, rng)
    return _crop_to_ink(ink)


def _draw(text: str, font: ImageFont.FreeTypeFont, pad: int) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """`text` shaped by the font's layout engine as coverage, `pad` pixels of paper around its ink box,
    with the box relative to the text's baseline-left point."""
    left, top, right, bottom = font.getbbox(text, anchor="ls")
    canvas = Image.new("L", (max(1, right - left) + 2 * pad, max(1, bottom - top) + 2 * pad), 0)
    ImageDraw.Draw(canvas).text((pad - left, pad - top), text, font=font, fill=255, anchor="ls")
    return np.asarray(canvas, dtype=np.float32) / 255.0, (left, top, right, bottom)


def _whole_word(word: str, font: ImageFont.FreeTypeFont) -> np.ndarray:
    pad = max(2, int(font.size) // 2)  # room for the warp, a heavy pen and the bleed
    return _draw(word, font, pad)[0]


def _clusters(word: str, font: ImageFont.FreeTypeFont, jitter: float, rng: np.random.Generator) -> np.ndarray:
    """Each grapheme cluster drawn alone, scaled, rotated, shifted and spaced at random, on one canvas."""
    size = float(font.size)
    pieces, x, drift = [], 0.0, 0.0
    for cluster in graphemes(word):
        scale = 1.0 + jitter * float(rng.uniform(-CLUSTER_SCALE, CLUSTER_SCALE))
        angle = jitter * float(rng.uniform(-CLUSTER_ROTATION, CLUSTER_ROTATION))
        drift += jitter * float(rng.normal(0.0, CLUSTER_DRIFT)) * size  # the baseline wanders, not just jumps
        shift = drift + jitter * float(rng.uniform(-CLUSTER_SHIFT, CLUSTER_SHIFT)) * size
        gap = jitter * float(rng.uniform(*CLUSTER_GAP)) * size
        coverage, (left, top, right, bottom) = _draw(cluster, font, pad=2)
        piece = Image.fromarray(coverage)  # float32 -> mode "F": no rounding between steps
        if scale != 1.0:
            piece = piece.resize((max(1, round(piece.width * scale)), max(1, round(piece.height * scale))),
                                 Image.Resampling.BILINEAR)
        if angle:
            piece = piece.rotate(angle, resample=Image.Resampling.BILINEAR, expand=True)
        # The piece's centre goes where the scaled cluster's ink centre lies on the shifted baseline.
        centre = (x + scale * (left + right) / 2.0, shift + scale * (top + bottom) / 2.0)
        pieces.append((np.asarray(piece, dtype=np.float32), centre))
        x += scale * font.getlength(cluster) + gap
    return _assemble(pieces, pad=max(2, int(size) // 2))


def _assemble(pieces: list[tuple[np.ndarray, tuple[float, float]]], pad: int) -> np.ndarray:
    """Paste pieces (coverage, centre) onto one canvas; overlapping ink keeps the darker value."""
    corners = [(cx - p.shape[1] / 2.0, cy - p.shape[0] / 2.0) for p, (cx, cy) in pieces]
    left = min(c[0] for c in corners)
    top = min(c[1] for c in corners)
    right = max(c[0] + p.shape[1] for c, (p, _) in zip(corners, pieces))
    bottom = max(c[1] + p.shape[0] for c, (p, _) in zip(corners, pieces))
    canvas = np.zeros((int(math.ceil(bottom - top)) + 2 * pad, int(math.ceil(right - left)) + 2 * pad), np.float32)
    for (piece, _), (cx, cy) in zip(pieces, corners):
        y0, x0 = int(round(cy - top)) + pad, int(round(cx - left)) + pad
        window = canvas[y0:y0 + piece.shape[0], x0:x0 + piece.shape[1]]
        np.maximum(window, piece[:window.shape[0], :window.shape[1]], out=window)
    return np.clip(canvas, 0.0, 1.0)


def _tps_warp(ink: np.ndarray, amplitude: float, rng: np.random.Generator) -> np.ndarray:
    """Bend the ink smoothly: control points on a grid move at random (sd `amplitude` pixels) and a
    thin-plate spline carries every pixel along."""
    pad = int(math.ceil(2.5 * amplitude)) + 1  # a displaced stroke stays on the canvas
    ink = np.pad(ink, pad)
    height, width = ink.shape
    columns = max(3, int(round(width / height * WARP_COLUMNS_PER_HEIGHT)) + 1)
    grid_x, grid_y = np.meshgrid(np.linspace(0, width - 1, columns), np.linspace(0, height - 1, WARP_ROWS))
    source = np.stack([grid_x.ravel(), grid_y.ravel()], axis=1)
    moved = source + np.clip(rng.normal(0.0, amplitude, size=source.shape), -2.5 * amplitude, 2.5 * amplitude)
    # Backward mapping: each output pixel reads the input where the spline through (moved -> source) sends it.
    ys, xs = np.mgrid[0:height, 0:width]
    pixels = np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float64)
    sampled = _tps_map(moved, source, pixels, scale=float(height))
    return _bilinear(ink, sampled[:, 0].reshape(height, width), sampled[:, 1].reshape(height, width))


def _tps_kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    squared = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
    return np.where(squared > 0, squared * np.log(np.maximum(squared, 1e-12)), 0.0)


def _tps_map(controls: np.ndarray, targets: np.ndarray, points: np.ndarray, scale: float) -> np.ndarray:
    """The thin-plate spline that sends `controls` to `targets`, evaluated at `points` (all (n, 2))."""
    c, p = controls / scale, points / scale  # unit-size coordinates keep the system well conditioned
    n = len(c)
    system = np.zeros((n + 3, n + 3))
    system[:n, :n] = _tps_kernel(c, c) + 1e-6 * np.eye(n)
    system[:n, n] = 1.0
    system[:n, n + 1:] = c
    system[n, :n] = 1.0
    system[n + 1:, :n] = c.T
    rhs = np.zeros((n + 3, 2))
    rhs[:n] = targets / scale
    coefficients = np.linalg.solve(system, rhs)
    affine = coefficients[n] + p @ coefficients[n + 1:]
    return (affine + _tps_kernel(p, c) @ coefficients[:n]) * scale


def _bilinear(image: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """`image` sampled at fractional (x, y); outside the image is paper (0)."""
    padded = np.pad(image, 1)
    x, y = np.clip(x + 1, 0, padded.shape[1] - 1.001), np.clip(y + 1, 0, padded.shape[0] - 1.001)
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    fx, fy = (x - x0).astype(np.float32), (y - y0).astype(np.float32)
    top = padded[y0, x0] * (1 - fx) + padded[y0, x0 + 1] * fx
    bottom = padded[y0 + 1, x0] * (1 - fx) + padded[y0 + 1, x0 + 1] * fx
    return (top * (1 - fy) + bottom * fy).astype(np.float32)


def gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of a float map (zero outside), same shape.

    >>> dot = np.zeros((9, 9), np.float32); dot[4, 4] = 1.0
    >>> blurred = gaussian_blur(dot, 1.0)
    >>> round(float(blurred.sum()), 3), bool(blurred[4, 4] == blurred.max())
    (1.0, True)
    """
    radius = max(1, int(math.ceil(3.0 * sigma)))
    offsets = np.arange(-radius, radius + 1)
    kernel = np.exp(-(offsets ** 2) / (2.0 * sigma ** 2))
    kernel = (kernel / kernel.sum()).astype(np.float32)
    height, width = image.shape
    padded = np.pad(image, radius)
    rows = sum(weight * padded[:, i:i + width] for i, weight in enumerate(kernel))
    return sum(weight * rows[i:i + height] for i, weight in enumerate(kernel)).astype(np.float32)


def _smooth_wave(length: int, period: float, rng: np.random.Generator) -> np.ndarray:
    """A smooth random curve in [-1, 1] along `length` pixels, its bends about `period` pixels apart."""
    t = np.arange(length, dtype=np.float32)
    wave = np.zeros(length, np.float32)
    for _ in range(2):
        wavelength = period * float(rng.uniform(0.6, 1.8))
        wave += np.sin(2.0 * np.pi * t / wavelength + float(rng.uniform(0.0, 2.0 * np.pi)))
    return wave / 2.0


def _normal_cdf(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.vectorize(math.erf)(z / math.sqrt(2.0)))


def _pen(ink: np.ndarray, pen_range: list[float], pressure: float, size: float, rng: np.random.Generator) -> np.ndarray:
    """Thin or thicken the strokes by a width drawn from `pen_range` (pixels at size 40), varying with
    pressure along x.

    The ink is blurred, then cut at the level where a straight edge of that blur sits `width`
    pixels out (or in): a smooth, stroke-following change of width, per column.
    """
    scale = size / PEN_REFERENCE_SIZE  # the same pen looks as heavy at every font size
    width = float(rng.uniform(pen_range[0], pen_range[1]))
    along = scale * (width + pressure * PRESSURE_SWING * _smooth_wave(ink.shape[1], 1.5 * size, rng))
    # A marker on a bold font would fill every counter: strokes grow to HEAVIEST_STROKE at most.
    room = max(0.0, (HEAVIEST_STROKE * size - stroke_width(ink)) / 2.0)
    along = np.clip(along, scale * THINNEST_PEN, max(room, scale * THINNEST_PEN))
    sigma = max(0.8, 0.7 * float(np.abs(along).max()))
    z = (-along / sigma).astype(np.float64)
    level = _normal_cdf(z).astype(np.float32)[None, :]
    slope = (np.exp(-0.5 * z ** 2) / (math.sqrt(2.0 * math.pi) * sigma)).astype(np.float32)[None, :]
    blurred = gaussian_blur(ink, sigma)
    cut = np.clip((blurred - level) / np.maximum(slope, 1e-3) + 0.5, 0.0, 1.0)
    cut[blurred < 0.5 * level] = 0.0  # the linear edge ramp must not spill onto paper far from any stroke
    # A thicker pen never loses ink; a thinner one keeps hairlines faintly (a light touch, not a gap).
    keep = np.where(along[None, :] >= 0, 1.0, 0.4).astype(np.float32)
    return np.maximum(cut, keep * ink)


def stroke_width(ink: np.ndarray) -> float:
    """The ink's mean stroke width in pixels: twice its area over its outline's length.

    >>> bar = np.zeros((20, 60), np.float32); bar[8:12, 5:55] = 1.0
    >>> round(stroke_width(bar), 1)  # a 4-pixel bar (its outline counts its own pixels)
    3.8
    """
    solid = ink > 0.5
    inner = solid.copy()
    inner[1:-1, 1:-1] &= solid[:-2, 1:-1] & solid[2:, 1:-1] & solid[1:-1, :-2] & solid[1:-1, 2:]
    outline = int((solid & ~inner).sum())
    return 2.0 * float(ink.sum()) / outline if outline else 0.0


def _broken_strokes(ink: np.ndarray, strength: float, size: float, rng: np.random.Generator) -> np.ndarray:
    """Cut small gaps into the strokes and fade the ink in patches."""
    ys, xs = np.nonzero(ink > 0.5)
    count = int(rng.poisson(strength * len(ys) * GAPS_PER_INK_PIXEL / size)) if len(ys) else 0
    out = ink.copy()
    for index in rng.integers(0, max(1, len(ys)), size=count):
        radius = float(rng.uniform(0.05, 0.1)) * size
        cy, cx, r = int(ys[index]), int(xs[index]), int(math.ceil(radius)) + 1
        y0, x0 = max(0, cy - r), max(0, cx - r)
        gy, gx = np.mgrid[y0:min(ink.shape[0], cy + r + 1), x0:min(ink.shape[1], cx + r + 1)]
        distance = np.sqrt((gy - cy) ** 2 + (gx - cx) ** 2)
        out[gy, gx] *= np.clip(distance - radius + 0.5, 0.0, 1.0)  # soft-edged hole
    rows = _smooth_wave(ink.shape[0], 0.8 * size, rng)[:, None]
    columns = _smooth_wave(ink.shape[1], 0.8 * size, rng)[None, :]
    patches = np.clip(rows * columns, 0.0, 1.0)  # the pen running dry here and there
    return out * (1.0 - 0.6 * strength * patches)


def _bleed(ink: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Ink running into the paper: a blurred halo, uneven like paper fibres, under the strokes."""
    sigma = 0.5 + 1.5 * strength * float(rng.uniform(0.5, 1.0))
    fibres = gaussian_blur(rng.random(ink.shape, dtype=np.float32), 0.7)
    fibres = fibres / max(float(fibres.mean()), 1e-6)
    halo = gaussian_blur(ink, sigma) * (0.5 + 1.5 * strength) * fibres
    return np.clip(np.maximum(ink, halo), 0.0, 1.0)


def _crop_to_ink(ink: np.ndarray) -> np.ndarray:
    rows, columns = np.nonzero((ink > INK_VISIBLE).any(axis=1))[0], np.nonzero((ink > INK_VISIBLE).any(axis=0))[0]
    if len(rows) == 0:  # every stroke broken away: keep the canvas rather than return nothing
        return ink.astype(np.float32)
    return ink[rows[0]:rows[-1] + 1, columns[0]:columns[-1] + 1].astype(np.float32)
