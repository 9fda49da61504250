"""Synthetic handwritten pages with their true word boxes: what `segment` is measured on.

A page is lines of words from the word list, every word drawn by `synth.render_word` (one font and one
size per page, the hand if one is given), placed on plain or ruled paper with varied margins, word gaps and
line spacing - on some pages so tight that ascenders and descenders of neighbouring lines touch - then
lit unevenly, skewed (up to `max_skew` degrees), blurred and noised like a phone photo or a scan.

A true box is the ink bounding box of the word as placed, carried through the page skew (the rotated
corners' bounding box), in the page's pixels (x1, y1 exclusive). A true crop is the word cut upright from
the degraded page before the skew (what a perfect segmenter would give a reader).

`write_synthetic_pages` writes::

    out_dir/pages/page-NNNN.png            the page images
    out_dir/crops/page-NNNN/lLL-wWW.png    the true crops
    out_dir/layout.json                    the truth, in `pages.layout_file`'s schema plus "text" per word
                                           and per page (lines joined by a newline, words by a space)
    out_dir/synth.json                     the settings (marks the folder as a synth --pages output)

Seeded: page i comes from (seed, i) alone.

>>> page = render_page(0, 0, words=["আমার", "সোনার", "বাংলা"], fonts=bundled_fonts()[:1])
>>> page.image.mode, len(page.lines) > 3, all(w.text for line in page.lines for w in line)
('RGB', True, True)
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from banglaocr.config import HandConfig
from banglaocr.data.synth import (bundled_fonts, bundled_words, find_fonts, font_name, read_words, render_word,
                                  require_raqm, sample_rng)
from banglaocr.errors import UserError

TEXT_SIZE = (30, 52)
"""Font size of a page's words in pixels, drawn per page (a 200 dpi scan of handwriting: ~30-60 px)."""
PAGE_WIDTH = (1100, 1500)
"""Page width in pixels, drawn per page; the height follows the A4 ratio."""
LINE_PITCH = (1.7, 2.5)
"""Distance between two lines' headlines, in text sizes, on an ordinary page."""
TIGHT_PITCH = (1.05, 1.3)
"""... and on a tight page, where descenders of one line touch the ascenders of the next."""
WORD_SPACE = (0.35, 0.9)
"""Space between two words in text sizes, drawn per line (handwriting spaces vary from writer to writer)."""
PARAGRAPH_END = 0.12
"""Share of lines that end a paragraph after one to three words."""
PAGE_SKEW = 5.0
"""Largest page skew in degrees either way (`max_skew`)."""
TRUE_CROP_MARGIN = 0.12
"""Margin around a true crop, in text sizes."""
INFO_NAME = "synth.json"


@dataclass(frozen=True)
class TrueWord:
    """A word as placed: its text, its true box on the page, its crop (upright)."""

    text: str
    box: tuple[int, int, int, int]
    crop: Image.Image


@dataclass(frozen=True)
class SyntheticPage:
    """A rendered page and its truth."""

    image: Image.Image
    skew_degrees: float
    font: str
    ruled: bool
    tight: bool
    lines: list[list[TrueWord]]

    @property
    def text(self) -> str:
        """Lines joined by a newline, words by a space."""
        return "\n".join(" ".join(word.text for word in line) for line in self.lines)


def render_page(seed: int, index: int, *, words: list[str], fonts: list[Path], hand: HandConfig | None = None,
                ruled: float = 0.5, tight: float = 0.3, max_skew: float = PAGE_SKEW) -> SyntheticPage:
    """Page `index` of `seed`: ruled with probability `ruled`, tight lines with probability `tight`."""
    require_raqm()
    rng = sample_rng(seed, index)
    font = fonts[index % len(fonts)]
    size = int(rng.integers(TEXT_SIZE[0], TEXT_SIZE[1] + 1))
    width = int(rng.integers(PAGE_WIDTH[0], PAGE_WIDTH[1] + 1))
    height = round(width * math.sqrt(2))
    is_ruled, is_tight = bool(rng.random() < ruled), bool(rng.random() < tight)
    pitch = size * float(rng.uniform(*(TIGHT_PITCH if is_tight else LINE_PITCH)))
    left, right = (int(width * rng.uniform(0.04, 0.14)) for _ in range(2))
    top, bottom = int(height * rng.uniform(0.04, 0.12)), int(height * rng.uniform(0.04, 0.10))
    ink = np.zeros((height, width), np.float32)
    placed = _write_lines(ink, rng, words, font, hand, size, pitch, (left, top, width - right, height - bottom))
    paper = _paper(rng, (height, width), pitch, top + size * 0.6 + size * 0.8, is_ruled)
    colour = np.array([rng.integers(0, 60), rng.integers(0, 60), rng.integers(20, 140)], np.float32)
    pixels = paper * (1 - ink[..., None]) + colour * ink[..., None]
    pixels = _degrade(pixels, rng)
    skew = float(rng.uniform(-max_skew, max_skew))
    upright = Image.fromarray(pixels)
    page, rotate = _skewed(pixels, skew)
    margin = TRUE_CROP_MARGIN * size
    lines = [[TrueWord(text, _rotated_box(box, rotate, (width, height)), _cut(upright, box, margin))
              for text, box in line] for line in placed]
    return SyntheticPage(Image.fromarray(page), round(skew, 3), font_name(font), is_ruled, is_tight, lines)


def _write_lines(ink: np.ndarray, rng, words, font, hand, size: int, pitch: float, area) -> list[list]:
    """Fill `area` (x0, y0, x1, y1) of the ink layer with lines of words; (text, ink box) per word per line."""
    x0, y0, x1, y1 = area
    lines = []
    headline = y0 + size * 0.6
    while headline + size * 0.9 < y1:
        space = size * float(rng.uniform(*WORD_SPACE))
        x = x0 + float(rng.uniform(0, size))  # lines do not all start at the margin
        # The last line of a paragraph: a word or three, then the rest of the line empty.
        last = int(rng.integers(1, 4)) if rng.random() < PARAGRAPH_END else None
        line = []
        while last is None or len(line) < last:
            text = words[int(rng.integers(len(words)))]
            coverage = _word_ink(text, font, rng, hand, size)
            h, w = coverage.shape
            if x + w > x1:
                break
            rows = coverage.sum(axis=1)
            # The headline (matra) is the densest row in the word's upper half: words are hung from it.
            matra = int(np.argmax(rows[: max(1, int(h * 0.6))]))
            top = int(round(headline + float(rng.normal(0, size * 0.04)))) - matra
            left = int(round(x))
            if top < 0 or top + h > ink.shape[0]:
                break
            target = ink[top:top + h, left:left + w]
            np.maximum(target, coverage, out=target)
            ys, xs = np.nonzero(coverage > 0.25)
            line.append((text, (left + int(xs.min()), top + int(ys.min()), left + int(xs.max()) + 1,
                                top + int(ys.max()) + 1)))
            x += w + space * float(rng.uniform(0.7, 1.3))
        if line:
            lines.append(line)
        headline += pitch
    return lines


def _word_ink(text: str, font, rng, hand, size: int) -> np.ndarray:
    """The word's ink coverage (0..1), black-on-white render turned into coverage; never empty."""
    image = render_word(text, font, rng, clean=True, hand=hand, size=size)
    coverage = 1.0 - np.asarray(image.convert("L"), np.float32) / 255.0
    if not (coverage > 0.25).any():  # a font that draws nothing for the word: a dot keeps the box defined
        coverage[coverage.shape[0] // 2, coverage.shape[1] // 2] = 1.0
    return coverage


def _paper(rng, shape: tuple[int, int], pitch: float, first_rule: float, ruled: bool) -> np.ndarray:
    """Paper with uneven light (a gradient and a soft shadow), ruled lines on some pages."""
    import cv2

    height, width = shape
    level = float(rng.uniform(200, 250))
    tint = np.array([level, level - rng.uniform(0, 10), level - rng.uniform(0, 25)], np.float32)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    angle = float(rng.uniform(0, 2 * math.pi))
    gradient = (np.cos(angle) * xs / width + np.sin(angle) * ys / height) * float(rng.uniform(0, 45))
    cx, cy = float(rng.uniform(0, width)), float(rng.uniform(0, height))
    shadow = float(rng.uniform(0, 50)) * np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * (0.35 * width) ** 2))
    light = -(gradient - gradient.mean()) - shadow
    paper = np.clip(tint[None, None, :] + light[..., None], 60, 255)
    if ruled:
        rule = np.array([rng.uniform(120, 190), rng.uniform(140, 200), rng.uniform(170, 230)], np.float32)
        thickness = int(rng.integers(1, 4))
        # The words sit on the rules: `first_rule` is the first line's baseline (its headline + 0.8 sizes).
        y = first_rule % pitch
        canvas = paper.copy()
        while y < height:
            cv2.line(canvas, (0, int(y)), (width, int(y)), rule.tolist(), thickness)
            y += pitch
        if rng.random() < 0.5:  # a margin line
            x = int(width * rng.uniform(0.03, 0.1))
            cv2.line(canvas, (x, 0), (x, height), [200.0, 110.0, 110.0], thickness)
        paper = 0.4 * paper + 0.6 * canvas
    return paper


def _degrade(pixels: np.ndarray, rng) -> np.ndarray:
    """Blur and sensor noise: a phone photo or a scan, not a rendering."""
    import cv2

    sigma = float(rng.uniform(0.0, 1.2))
    if sigma > 0.3:
        pixels = cv2.GaussianBlur(pixels, (0, 0), sigma)
    pixels = pixels + rng.normal(0, float(rng.uniform(2, 10)), size=pixels.shape).astype(np.float32)
    return np.clip(pixels + 0.5, 0, 255).astype(np.uint8)


def _skewed(pixels: np.ndarray, degrees: float) -> tuple[np.ndarray, np.ndarray]:
    """The page rotated by `degrees` (counter-clockwise as seen) about its centre, and the 2x3 matrix used."""
    import cv2

    height, width = pixels.shape[:2]
    rotate = cv2.getRotationMatrix2D((width / 2, height / 2), degrees, 1.0)
    # The corners the rotation uncovers: the table under the page, darker than the paper.
    under = (np.median(pixels.reshape(-1, 3), axis=0) * 0.55).tolist()
    return cv2.warpAffine(pixels, rotate, (width, height), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=under), rotate


def _rotated_box(box, rotate: np.ndarray, size: tuple[int, int]) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = box
    corners = np.array([[x0, y0, 1], [x1, y0, 1], [x0, y1, 1], [x1, y1, 1]], np.float64) @ rotate.T
    width, height = size
    return (max(0, math.floor(corners[:, 0].min())), max(0, math.floor(corners[:, 1].min())),
            min(width, math.ceil(corners[:, 0].max())), min(height, math.ceil(corners[:, 1].max())))


def _cut(image: Image.Image, box, margin: float) -> Image.Image:
    x0, y0, x1, y1 = box
    return image.crop((max(0, math.floor(x0 - margin)), max(0, math.floor(y0 - margin)),
                       min(image.width, math.ceil(x1 + margin)), min(image.height, math.ceil(y1 + margin))))


def page_fonts(fonts_dir: Path | None = None, only_fonts: list[str] | None = None) -> list[Path]:
    """The fonts pages are written in: `only_fonts` (file stems) of the folder's (default: bundled), else all."""
    fonts = find_fonts(fonts_dir) if fonts_dir is not None else bundled_fonts()
    if only_fonts:
        names = [font_name(p) for p in fonts]
        unknown = [name for name in only_fonts if name not in names]
        if unknown:
            raise UserError(f"--font '{unknown[0]}' is not among the fonts: {', '.join(names)}")
        fonts = [p for p in fonts if font_name(p) in only_fonts]
    return fonts


def write_synthetic_pages(out_dir: Path, n: int, seed: int, *, fonts_dir: Path | None = None,
                          only_fonts: list[str] | None = None, words_file: Path | None = None,
                          hand: HandConfig | None = None, ruled: float = 0.5, tight: float = 0.3,
                          max_skew: float = PAGE_SKEW, overwrite: bool = False, on_page=None) -> dict:
    """Write `n` synthetic pages and their truth under `out_dir` (see the module docstring); the counts.

    `on_page()` is called after each page (progress)."""
    from banglaocr.files import write_json
    from banglaocr.pages.layout_file import crop_name, write_layout

    started = time.perf_counter()
    if n < 1:
        raise UserError(f"--pages: need at least 1 page, got {n}")
    if not 0 <= max_skew <= 15:
        raise UserError(f"--max-skew: need degrees in [0, 15], got {max_skew}")
    fonts = page_fonts(fonts_dir, only_fonts)
    words = read_words(words_file) if words_file is not None else bundled_words()
    out_dir = Path(out_dir)
    _prepare(out_dir, overwrite)
    entries, word_count = [], 0
    for index in range(n):
        page = render_page(seed, index, words=words, fonts=fonts, hand=hand, ruled=ruled, tight=tight,
                           max_skew=max_skew)
        name = f"page-{index + 1:04d}"
        file = f"pages/{name}.png"
        page.image.save(out_dir / file, compress_level=1)  # fast: a page is megapixels, written once
        lines = []
        for line_number, line in enumerate(page.lines, start=1):
            row = []
            for word_number, word in enumerate(line, start=1):
                crop = crop_name(name, line_number, word_number)
                (out_dir / crop).parent.mkdir(parents=True, exist_ok=True)
                word.crop.save(out_dir / crop)
                row.append({"box": list(word.box), "crop": crop, "text": word.text})
            lines.append(row)
            word_count += len(row)
        entries.append({"file": file, "source": file, "page": None, "width": page.image.width,
                        "height": page.image.height, "skew_degrees": page.skew_degrees, "lines": lines,
                        "text": page.text, "font": page.font, "ruled": page.ruled, "tight": page.tight})
        if on_page is not None:
            on_page()
    write_layout(out_dir, entries)
    settings = {"kind": "pages", "n": n, "seed": seed, "fonts": [font_name(p) for p in fonts],
                "hand": None if hand is None else dataclasses.asdict(hand), "ruled": ruled, "tight": tight,
                "max_skew": max_skew}
    write_json(out_dir / INFO_NAME, settings)
    return {**settings, "out_dir": str(out_dir), "words": word_count,
            "lines": sum(len(e["lines"]) for e in entries), "seconds": time.perf_counter() - started}


def _prepare(out_dir: Path, overwrite: bool) -> None:
    """An empty or missing folder, or an earlier synth --pages output (its pages and crops removed); any
    other folder only with `overwrite` (then only pages/, crops/, layout.json and synth.json are written)."""
    import json

    from banglaocr.output_policy import claim_folder

    def is_ours(folder: Path) -> bool:
        try:
            return json.loads((folder / INFO_NAME).read_text(encoding="utf-8")).get("kind") == "pages"
        except (OSError, ValueError, AttributeError):
            return False

    state = claim_folder(out_dir, "synth --pages", ("layout.json", INFO_NAME), overwrite=overwrite,
                         is_ours=is_ours)
    if state == "ours":
        for folder in ("pages", "crops"):
            shutil.rmtree(out_dir / folder, ignore_errors=True)
    try:
        (out_dir / "pages").mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"--out: cannot create '{out_dir}' ({err.strerror or err}); "
                        "choose a folder you can write to") from None
