"""segment_page on synthetic pages with known boxes: words found, skew undone, rules ignored, any scale."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from banglaocr.config import HandConfig
from banglaocr.data.synth import bundled_fonts, bundled_words, font_name
from banglaocr.data.synth_pages import render_page
from banglaocr.pages.scoring import match_boxes
from banglaocr.pages.segment import segment_page

# Measured on these pages: precision and recall 0.98-1.0 (benchmarks/segmentation.py has the larger run);
# the thresholds leave room for a pixel of rounding here and there, not for a broken step.
MIN_PRECISION = MIN_RECALL = 0.93


def _fonts(*names):
    return [p for p in bundled_fonts() if font_name(p) in names]


@pytest.fixture(scope="module")
def words():
    return bundled_words()


def _scores(page, layout):
    found = [w.box for line in layout.lines for w in line]
    truth = [w.box for line in page.lines for w in line]
    matched = len(match_boxes(found, truth))
    return matched / max(1, len(found)), matched / max(1, len(truth))


@pytest.mark.parametrize("style", ["plain", "ruled tight", "unseen hand"])
def test_words_found_on_synthetic_pages(words, style):
    fonts = {"plain": _fonts("NotoSansBengali-Regular"), "ruled tight": _fonts("HindSiliguri-Light"),
             "unseen hand": _fonts("Galada-Regular")}[style]
    hand = HandConfig(slant=-0.35, pen=1, wobble=2.5) if style == "unseen hand" else None
    ruled, tight = (1.0, 1.0) if style == "ruled tight" else (0.0, 0.0)
    page = render_page(3, 0, words=words, fonts=fonts, hand=hand, ruled=ruled, tight=tight)
    layout = segment_page(page.image)
    precision, recall = _scores(page, layout)
    assert precision >= MIN_PRECISION and recall >= MIN_RECALL, (style, precision, recall)
    assert len(layout.lines) == len(page.lines)
    assert (layout.width, layout.height) == page.image.size
    # reading order: lines top to bottom, words left to right
    tops = [np.median([w.box[1] for w in line]) for line in layout.lines]
    assert tops == sorted(tops)
    assert all([w.box[0] for w in line] == sorted(w.box[0] for w in line) for line in layout.lines)
    if style == "ruled tight":  # no rule became a word
        assert max(w.box[2] - w.box[0] for line in layout.lines for w in line) < 0.5 * page.image.width


@pytest.fixture(scope="module")
def upright_page(words):
    return render_page(5, 1, words=words, fonts=_fonts("NotoSerifBengali-Regular"), ruled=0.0, tight=0.0,
                       max_skew=0.0)


@pytest.mark.parametrize("degrees", [7.0, -12.0, 2.3])
def test_deskew_recovers_a_known_skew_within_half_a_degree(upright_page, degrees):
    skewed = upright_page.image.rotate(degrees, resample=Image.Resampling.BICUBIC, fillcolor=(235, 235, 230))
    layout = segment_page(skewed)
    assert abs(layout.skew_degrees - degrees) < 0.5
    # the crops are upright: a word crop is wider than tall, as the true crops are
    crops = [w.image for line in layout.lines for w in line]
    assert np.median([c.width / c.height for c in crops]) > 1.5


def test_boxes_are_in_the_original_pixels_at_any_page_size(words):
    page = render_page(7, 2, words=words, fonts=_fonts("Lohit-Bengali"), ruled=0.5, tight=0.0)
    for factor in (0.6, 2.2):  # a small phone photo, a 400 dpi scan (analysed on a smaller copy)
        size = (round(page.image.width * factor), round(page.image.height * factor))
        scaled = page.image.resize(size, Image.Resampling.LANCZOS)
        layout = segment_page(scaled)
        found = [w.box for line in layout.lines for w in line]
        truth = [tuple(round(v * factor) for v in w.box) for line in page.lines for w in line]
        matched = len(match_boxes(found, truth))
        assert matched / len(found) >= MIN_PRECISION and matched / len(truth) >= MIN_RECALL, factor
        assert all(0 <= x0 < x1 <= size[0] and 0 <= y0 < y1 <= size[1] for x0, y0, x1, y1 in found)


def test_a_photographed_page_on_a_dark_table(words):
    page = render_page(9, 3, words=words, fonts=_fonts("NotoSansBengali-Regular"), ruled=0.0, tight=0.0)
    table = Image.new("RGB", (page.image.width + 300, page.image.height + 200), (60, 50, 45))
    table.paste(page.image, (150, 100))
    layout = segment_page(table)
    found = [w.box for line in layout.lines for w in line]
    truth = [(x0 + 150, y0 + 100, x1 + 150, y1 + 100) for line in page.lines for x0, y0, x1, y1 in
             (w.box for w in line)]
    matched = len(match_boxes(found, truth))
    assert matched / len(found) >= MIN_PRECISION and matched / len(truth) >= MIN_RECALL


def test_a_page_without_text_has_no_lines():
    rng = np.random.default_rng(0)
    paper = np.clip(rng.normal(230, 6, size=(900, 700, 3)), 0, 255).astype(np.uint8)
    for image in (Image.fromarray(paper), Image.new("RGB", (300, 200), "white"), Image.new("L", (1, 1))):
        layout = segment_page(image)
        assert layout.lines == [] and (layout.width, layout.height) == image.size


def test_headlines_written_on_the_rules_keep_their_words_whole():
    """Bangla is often written hanging from the notebook's rule: the rule runs through every headline."""
    from PIL import ImageDraw, ImageFont

    from banglaocr.data.synth import ASSETS

    font = ImageFont.truetype(str(ASSETS / "fonts" / "NotoSansBengali-Regular.ttf"), 44)
    texts = ["আমার সোনার বাংলা আমি তোমায়", "ভালোবাসি চিরদিন তোমার আকাশ", "তোমার বাতাস আমার প্রাণে বাজায় বাঁশি"]
    page = Image.new("RGB", (1000, 420), (245, 245, 240))
    draw = ImageDraw.Draw(page)
    for k, text in enumerate(texts):
        draw.text((40, 60 + 110 * k), text, font=font, fill=(20, 20, 60))
    gray = np.asarray(page.convert("L"))
    for k in range(len(texts)):  # a rule through the line's densest row: its headline
        band = gray[60 + 110 * k:150 + 110 * k] < 128
        row = 60 + 110 * k + int(np.argmax(band.sum(axis=1)))
        draw.line((0, row, 1000, row), fill=(110, 120, 190), width=2)
    layout = segment_page(page)
    assert [len(line) for line in layout.lines] == [len(text.split()) for text in texts]
