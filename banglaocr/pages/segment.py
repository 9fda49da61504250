"""A page image -> text lines -> words in reading order, with boxes in the page's own pixel coordinates.

The steps, all with OpenCV on a copy of the page at most `ANALYSIS_SIDE` pixels on its longer side
(thresholds come from the measured text height, never fixed pixels, so a phone photo and a 200 dpi scan
are treated alike):

1. binarise: divide by the paper's own brightness (a large dilate + median: uneven light and shadows
   flattened), then Otsu; large dense ink touching the image's edge (the table around a photographed
   page) out;
2. deskew: the angle in +-`MAX_SKEW` degrees whose horizontal projection is sharpest (coarse, then fine);
3. ruled lines and margins out on the upright ink: long horizontal and vertical runs (morphological
   opening), except their pixels in the columns of a stroke that touches them (a headline written on the
   rule); specks far smaller than the text out;
4. lines: peaks of the horizontal projection (the headline makes them sharp) with a valley between; a
   component that lies in two lines (touching ascenders and descenders) is cut at the emptiest row;
5. words: in each line, runs of ink columns separated by gaps wider than where the line's own gaps jump
   (Bangla letters of one word are joined by the headline, so gaps inside a word are narrow).

Boxes are mapped back through the deskew rotation to the original page (the bounding box of the rotated
corners, clipped to the page); crops are cut from the deskewed page at full resolution, upright.

>>> from PIL import Image, ImageDraw, ImageFont
>>> from banglaocr.data.synth import ASSETS
>>> font = ImageFont.truetype(str(ASSETS / "fonts" / "NotoSansBengali-Regular.ttf"), 40)
>>> page = Image.new("RGB", (600, 200), "white")
>>> draw = ImageDraw.Draw(page)
>>> draw.text((30, 40), "আমার সোনার বাংলা", font=font, fill="black")
>>> draw.text((30, 110), "আমি তোমায় ভালোবাসি।", font=font, fill="black")
>>> layout = segment_page(page)
>>> [len(line) for line in layout.lines], abs(layout.skew_degrees) < 0.5
([3, 3], True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

ANALYSIS_SIDE = 1600
"""Longest side (pixels) of the copy the page is analysed on; boxes are scaled back."""
MAX_SKEW = 15.0
"""Largest page skew searched for, in degrees either way."""
TALLEST_INK = 5.0
"""Ink taller than this many typical component heights is no text (a page's dark surround, a drawing)."""
DENSE_INK = 0.25
"""... and covering more than this share of its bounding box (text, even joined to a rule, covers less)."""
MIN_WORD_GAP, MAX_WORD_GAP = 0.2, 0.9
"""Bounds of the word gap a line's own gaps may choose, as shares of the text height."""
JUMP = 1.8
"""How much wider than the gap below it a gap must be to mark where the gaps between words begin."""
WORD_MARGIN = 0.12
"""Margin around each crop, as a share of the line's text height (readers were trained on loose crops)."""


@dataclass(frozen=True)
class Word:
    """One word: `box` (x0, y0, x1, y1) in the original page's pixels (x1, y1 exclusive); `image` its crop."""

    box: tuple[int, int, int, int]
    image: Image.Image


@dataclass(frozen=True)
class PageLayout:
    """The words of a page: `lines` top to bottom, each line's words left to right."""

    width: int
    height: int
    skew_degrees: float
    lines: list[list[Word]]


def segment_page(image: Image.Image) -> PageLayout:
    """Find the text lines and words of `image` (see the module docstring for how)."""
    import cv2

    rgb = np.asarray(image.convert("RGB"))
    height, width = rgb.shape[:2]
    scale = min(1.0, ANALYSIS_SIDE / max(height, width))
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    small = cv2.resize(gray, (max(1, round(width * scale)), max(1, round(height * scale))),
                       interpolation=cv2.INTER_AREA) if scale < 1 else gray
    ink = _without_surround(_binarise(small))
    if _text_height(ink) is None:
        return PageLayout(width, height, 0.0, [])
    # Deskew before the rules come out: ruled lines are only long straight runs once they are level
    # (and they make the projection sharper for the skew search).
    angle = _skew(ink)
    rotation = cv2.getRotationMatrix2D((small.shape[1] / 2, small.shape[0] / 2), angle, 1.0)
    upright = _clean(cv2.warpAffine(ink, rotation, (small.shape[1], small.shape[0]), flags=cv2.INTER_NEAREST))
    text_height = _text_height(upright)
    if text_height is None:
        return PageLayout(width, height, 0.0, [])
    full_rotation = cv2.getRotationMatrix2D((width / 2, height / 2), angle, 1.0)
    full_upright = cv2.warpAffine(rgb, full_rotation, (width, height), flags=cv2.INTER_LINEAR,
                                  borderMode=cv2.BORDER_REPLICATE)
    back = cv2.invertAffineTransform(full_rotation)
    lines = []
    cuts = _line_cuts(upright, text_height)
    for mask in _line_masks(upright, cuts) if len(cuts) > 1 else []:
        words = []
        for x0, y0, x1, y1 in _word_boxes(mask, text_height):
            box = tuple(v / scale for v in (x0, y0, x1, y1))
            words.append(_word(box, full_upright, back, (width, height), text_height / scale))
        if words:
            lines.append(words)
    return PageLayout(width, height, round(-angle, 2), lines)


def _binarise(gray: np.ndarray) -> np.ndarray:
    """Ink 255, paper 0; the paper's brightness (a large max filter: text gone) divided out first."""
    import cv2

    side = max(31, (min(gray.shape) // 20) | 1)
    paper = cv2.medianBlur(cv2.dilate(gray, np.ones((side, side), np.uint8)), 21)
    flat = cv2.divide(gray, np.maximum(paper, 1), scale=255)
    _, ink = cv2.threshold(flat, 0, 255, cv2.THRESH_BINARY_INV | cv2.THRESH_OTSU)
    if cv2.countNonZero(ink) > 0.5 * ink.size:  # a page of no ink: Otsu split the paper's noise
        return np.zeros_like(ink)
    return ink


def _without_surround(ink: np.ndarray) -> np.ndarray:
    """The ink without what surrounds a photographed page: large dense components touching the image's
    edge (the table, a dark border), taller and wider than `TALLEST_INK` typical components."""
    import cv2

    count, labels, stats, _ = cv2.connectedComponentsWithStats(ink, connectivity=8)
    if count <= 1:
        return ink
    heights, widths = stats[1:, cv2.CC_STAT_HEIGHT], stats[1:, cv2.CC_STAT_WIDTH]
    typical = max(1.0, float(np.median(heights[heights >= 3]))) if (heights >= 3).any() else 1.0
    x0, y0 = stats[1:, cv2.CC_STAT_LEFT], stats[1:, cv2.CC_STAT_TOP]
    edge = (x0 == 0) | (y0 == 0) | (x0 + widths >= ink.shape[1]) | (y0 + heights >= ink.shape[0])
    drop = np.zeros(count, bool)
    # Dense, too: a ruled line runs from edge to edge as well, with the words written on it attached.
    fill = stats[1:, cv2.CC_STAT_AREA] / np.maximum(1, heights * widths)
    drop[1:] = edge & (heights > TALLEST_INK * typical) & (widths > TALLEST_INK * typical) & (fill > DENSE_INK)
    return np.where(drop[labels], 0, ink).astype(np.uint8)


def _clean(ink: np.ndarray) -> np.ndarray:
    """Remove ruled lines, margin lines and specks from an upright ink mask; keep the strokes that cross
    a rule (and a headline written on a rule)."""
    import cv2

    height, width = ink.shape
    # Longer than any word's headline (a word is rarely a third of the page wide), shorter than a rule.
    rules = cv2.morphologyEx(ink, cv2.MORPH_OPEN, np.ones((1, max(25, width // 3)), np.uint8))
    margins = cv2.morphologyEx(ink, cv2.MORPH_OPEN, np.ones((max(25, height // 3), 1), np.uint8))
    lines = cv2.bitwise_or(rules, margins)
    text = cv2.subtract(ink, lines)
    # A rule's pixels right next to a stroke (a stroke crossing it, a headline on it) stay with the text.
    thickness = max(1, int(np.percentile(_run_lengths(rules), 90))) if rules.any() else 1
    near = cv2.dilate(text, np.ones((2 * thickness + 3, 1), np.uint8))  # in the stroke's own columns only
    ink = cv2.bitwise_or(text, cv2.bitwise_and(lines, near))
    count, labels, stats, _ = cv2.connectedComponentsWithStats(ink, connectivity=8)
    if count <= 1:
        return ink
    sizes = stats[1:, cv2.CC_STAT_HEIGHT]
    typical = float(np.median(sizes[sizes >= 3])) if (sizes >= 3).any() else 0.0
    keep = np.zeros(count, np.uint8)
    keep[1:] = (stats[1:, cv2.CC_STAT_AREA] >= max(4.0, (0.15 * typical) ** 2)) & (sizes >= 0.2 * typical)
    # What is far taller than the text and dense is no text: a drawing, a stamp, a fold's shadow.
    fill = stats[1:, cv2.CC_STAT_AREA] / np.maximum(1, stats[1:, cv2.CC_STAT_WIDTH] * sizes)
    keep[1:] &= ~((sizes > TALLEST_INK * max(typical, 1.0)) & (fill > DENSE_INK))
    return np.where(keep[labels] > 0, 255, 0).astype(np.uint8)


def _run_lengths(mask: np.ndarray) -> np.ndarray:
    """Lengths of the vertical runs of a mask (a rule's thickness), over its columns."""
    column = mask.T.reshape(-1) > 0
    padded = np.concatenate([[False], column, [False]])
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    return edges[1::2] - edges[::2]


def _text_height(ink: np.ndarray) -> float | None:
    """A typical height of the text's connected components (the scale every threshold follows)."""
    import cv2

    count, _, stats, _ = cv2.connectedComponentsWithStats(ink, connectivity=8)
    heights = stats[1:, cv2.CC_STAT_HEIGHT]
    heights = heights[heights >= 4]
    if len(heights) == 0:
        return None
    return float(np.percentile(heights, 75))


def _sharpness(ink: np.ndarray, angle: float) -> float:
    import cv2

    rotation = cv2.getRotationMatrix2D((ink.shape[1] / 2, ink.shape[0] / 2), angle, 1.0)
    rotated = cv2.warpAffine(ink, rotation, (ink.shape[1], ink.shape[0]), flags=cv2.INTER_NEAREST)
    profile = rotated.sum(axis=1, dtype=np.float64)
    return float(np.square(np.diff(profile)).sum())


def _skew(ink: np.ndarray) -> float:
    """The rotation (degrees, OpenCV's sense) that makes the text rows horizontal: coarse then fine search."""
    import cv2

    scale = min(1.0, 800 / max(ink.shape))
    small = cv2.resize(ink, (max(1, round(ink.shape[1] * scale)), max(1, round(ink.shape[0] * scale))),
                       interpolation=cv2.INTER_AREA) if scale < 1 else ink
    coarse = max(np.arange(-MAX_SKEW, MAX_SKEW + 0.01, 1.0), key=lambda a: _sharpness(small, a))
    return float(max(np.arange(coarse - 1.0, coarse + 1.01, 0.1), key=lambda a: _sharpness(ink, a)))


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) of each run of True in a 1-D mask (end exclusive)."""
    padded = np.concatenate([[False], mask, [False]])
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


def _line_cuts(ink: np.ndarray, text_height: float) -> list[int]:
    """Row boundaries between text lines of an upright ink mask: [top, cut, ..., bottom].

    Lines are the peaks of the smoothed horizontal projection (the headline makes a Bangla line's peak
    sharp); two peaks closer than half a text height are one line. Between two lines the boundary is the
    emptiest row - where ascenders and descenders of touching lines cross, it is still the emptiest."""
    import cv2

    profile = ink.sum(axis=1, dtype=np.float64) / 255
    window = max(3, int(text_height / 3)) | 1
    smooth = cv2.GaussianBlur(profile.reshape(-1, 1), (1, window), 0).ravel()
    if not (smooth > 0).any():
        return []
    strong = 0.05 * float(np.percentile(smooth[smooth > 0], 95))
    peaks = [y for y in range(1, len(smooth) - 1)
             if smooth[y] >= strong and smooth[y] >= smooth[y - 1] and smooth[y] > smooth[y + 1]]
    lines: list[int] = []
    for y in peaks:  # merge peaks of one line, keeping the higher
        if lines and y - lines[-1] < 0.5 * text_height:
            if smooth[y] > smooth[lines[-1]]:
                lines[-1] = y
            continue
        lines.append(y)
    kept = [lines[0]] if lines else []
    for y in lines[1:]:
        valley = float(smooth[kept[-1]:y].min())
        if valley > 0.7 * min(smooth[kept[-1]], smooth[y]):  # no real valley between: one line
            if smooth[y] > smooth[kept[-1]]:
                kept[-1] = y
            continue
        kept.append(y)
    rows = np.flatnonzero(profile > 0)
    cuts = [int(rows[0])]
    for a, b in zip(kept[:-1], kept[1:]):
        cuts.append(a + int(np.argmin(smooth[a:b])))
    cuts.append(int(rows[-1]) + 1)
    return cuts


def _line_masks(ink: np.ndarray, cuts: list[int]) -> list[np.ndarray]:
    """The ink of each line: a connected component goes whole to the line holding most of it, unless a
    good share of it lies in another line too (strokes of two lines touching), then it is cut at the
    boundary row."""
    import cv2

    count, labels = cv2.connectedComponents(ink, connectivity=8)
    bands = len(cuts) - 1
    row_band = np.clip(np.searchsorted(np.asarray(cuts[1:-1]), np.arange(ink.shape[0]), side="right"), 0,
                       bands - 1)
    ys, xs = np.nonzero(labels)
    label_of = labels[ys, xs]
    band_of = row_band[ys]
    counts = np.bincount(label_of * bands + band_of, minlength=count * bands).reshape(count, bands)
    main = counts.argmax(axis=1)
    share = counts.max(axis=1) / np.maximum(counts.sum(axis=1), 1)
    split = share < 0.8  # a component this evenly in two lines is two lines' strokes touching
    owner = np.where(split[label_of], band_of, main[label_of])
    masks = []
    for band in range(bands):
        mask = np.zeros(ink.shape, np.uint8)
        pick = owner == band
        mask[ys[pick], xs[pick]] = 255
        masks.append(mask)
    return masks


def _word_boxes(band: np.ndarray, text_height: float) -> list[tuple[int, int, int, int]]:
    """Tight (x0, y0, x1, y1) of each word in one line band (y relative to the band), left to right."""
    columns = band.any(axis=0)
    runs = _runs(columns)
    if not runs:
        return []
    gap = _word_gap([b[0] - a[1] for a, b in zip(runs[:-1], runs[1:])], text_height)
    words = [list(runs[0])]
    for start, end in runs[1:]:
        # A narrow mark after a wider gap (the danda, a comma, ?) still belongs to the word before it.
        mark = end - start < 0.3 * text_height and start - words[-1][1] < 3 * gap
        if start - words[-1][1] > gap and not mark:
            words.append([start, end])
        else:
            words[-1][1] = end
    boxes = []
    for x0, x1 in words:
        rows = np.flatnonzero(band[:, x0:x1].any(axis=1))
        # A word narrower and lower than a speck of the text's size is noise that survived cleaning.
        if len(rows) and (x1 - x0) * (rows[-1] + 1 - rows[0]) >= (0.2 * text_height) ** 2:
            boxes.append((x0, int(rows[0]), x1, int(rows[-1]) + 1))
    return boxes


def _word_gap(gaps: list[int], text_height: float) -> float:
    """The gap width that separates words in one line: where the line's own gaps jump (the narrow gaps
    inside words, the wide ones between), kept within a share of the text height; the least of those when
    the gaps show no clear jump.

    >>> round(_word_gap([2, 3, 2, 25, 30, 4, 28], 40.0), 1), round(_word_gap([11, 12, 13], 40.0), 1)
    (10.0, 8.0)
    """
    low, high = MIN_WORD_GAP * text_height, MAX_WORD_GAP * text_height
    ordered = sorted(g for g in gaps if g > 0)
    # No clear jump: the gaps are all of one kind - between words when they are wide enough (printed
    # text, where each word is one piece), inside words when narrower.
    best, threshold = JUMP, low
    for a, b in zip(ordered[:-1], ordered[1:]):
        # The widest jump from the narrow gaps to the wide ones (within the bounds) is where words part.
        if b >= low and a <= high and b / max(a, 1) > best:
            best, threshold = b / max(a, 1), math.sqrt(max(a, 1) * b)
    return float(min(max(threshold, low), high))


def _word(box: tuple, upright: np.ndarray, back: np.ndarray, size: tuple[int, int], text_height: float) -> Word:
    """The word at `box` (deskewed full-resolution coordinates): its crop, and its box on the original page."""
    x0, y0, x1, y1 = box
    corners = np.array([[x0, y0, 1], [x1, y0, 1], [x0, y1, 1], [x1, y1, 1]], dtype=np.float64) @ back.T
    width, height = size
    original = (max(0, math.floor(corners[:, 0].min())), max(0, math.floor(corners[:, 1].min())),
                min(width, math.ceil(corners[:, 0].max())), min(height, math.ceil(corners[:, 1].max())))
    margin = WORD_MARGIN * text_height
    crop = upright[max(0, math.floor(y0 - margin)):min(height, math.ceil(y1 + margin)),
                   max(0, math.floor(x0 - margin)):min(width, math.ceil(x1 + margin))]
    return Word(box=original, image=Image.fromarray(np.ascontiguousarray(crop)))
