"""`synth --pages`: pages with their true word boxes, seeded, in segment's layout.json schema."""

from __future__ import annotations

import json

import cv2
import numpy as np
from typer.testing import CliRunner

from banglaocr.cli import app
from banglaocr.data.synth import bundled_fonts, bundled_words, font_name
from banglaocr.data.synth_pages import render_page
from banglaocr.pages.layout_file import read_layout

runner = CliRunner()


def test_same_seed_same_page_and_the_true_boxes_hold_the_ink():
    fonts = [p for p in bundled_fonts() if font_name(p) == "Mina-Regular"]
    a = render_page(2, 4, words=bundled_words(), fonts=fonts, ruled=0.0, max_skew=0.0)
    b = render_page(2, 4, words=bundled_words(), fonts=fonts, ruled=0.0, max_skew=0.0)
    assert a.image.tobytes() == b.image.tobytes() and a.text == b.text
    gray = np.asarray(a.image.convert("L"), np.float32)
    paper = cv2.dilate(gray, np.ones((41, 41), np.uint8))  # the paper's own brightness here (light, shadow)
    ink = np.zeros(gray.shape, bool)
    for line in a.lines:
        for word in line:
            x0, y0, x1, y1 = word.box
            dark = gray[y0:y1, x0:x1] < paper[y0:y1, x0:x1] - 60
            assert dark.any()  # ink in every box, and tight: within 2 pixels of each side
            assert dark[:3].any() and dark[-3:].any() and dark[:, :3].any() and dark[:, -3:].any()
            ink[y0:y1, x0:x1] = True
    # and no ink outside them (the noise stays far lighter than the ink)
    assert not (gray < paper - 80)[~ink].any()
    assert a.text.count("\n") == len(a.lines) - 1


def test_the_command_writes_pages_crops_and_the_truth(tmp_path):
    out = tmp_path / "pages"
    result = runner.invoke(app, ["synth", "--out", str(out), "--pages", "1", "--seed", "3", "--font",
                                 "Galada-Regular", "--slant", "-0.35", "--pen", "1", "--wobble", "2.5",
                                 "--ruled", "1", "--max-skew", "4"])
    assert result.exit_code == 0, result.output
    assert "1 page," in result.output
    layout = read_layout(out / "layout.json")
    assert [p["file"] for p in layout] == ["pages/page-0001.png"]
    for page in layout:
        assert (out / page["file"]).is_file() and page["ruled"] is True and abs(page["skew_degrees"]) <= 4
        assert page["text"] == "\n".join(" ".join(w["text"] for w in line) for line in page["lines"])
        assert all((out / w["crop"]).is_file() for line in page["lines"] for w in line)
    info = json.loads((out / "synth.json").read_text(encoding="utf-8"))
    assert info["kind"] == "pages" and info["fonts"] == ["Galada-Regular"] and info["hand"]["slant"] == -0.35


def test_word_image_options_are_refused_with_pages(tmp_path):
    result = runner.invoke(app, ["synth", "--out", str(tmp_path / "o"), "--pages", "1", "--holdout-font", "Mina-Bold"])
    assert result.exit_code == 2 and "--holdout-font is for word images" in result.output
    assert not (tmp_path / "o").exists()
