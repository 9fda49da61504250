"""`banglaocr segment` through the real command registry: PDFs and images in, crops and layout.json out."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from banglaocr.cli import app
from banglaocr.data.synth import bundled_fonts, bundled_words, font_name
from banglaocr.data.synth_pages import render_page
from banglaocr.pages.layout_file import PAGE_KEYS, read_layout

runner = CliRunner()


@pytest.fixture(scope="module")
def pages():
    fonts = [p for p in bundled_fonts() if font_name(p) == "NotoSansBengali-Regular"]
    return [render_page(11, k, words=bundled_words(), fonts=fonts, ruled=0.0, tight=0.0) for k in range(2)]


@pytest.fixture(scope="module")
def inputs(pages, tmp_path_factory):
    folder = tmp_path_factory.mktemp("inputs")
    images = [page.image.resize((page.image.width // 2, page.image.height // 2)) for page in pages]
    images[0].save(folder / "two.pdf", "PDF", save_all=True, append_images=images[1:], resolution=100)
    images[0].save(folder / "one.png")
    (folder / "text.pdf").write_text("not a PDF at all\n")
    (folder / "truncated.pdf").write_bytes((folder / "two.pdf").read_bytes()[:2000])
    (folder / "empty.png").write_bytes(b"")
    return folder


def test_a_two_page_pdf_and_an_image(inputs, tmp_path):
    out = tmp_path / "out"
    result = runner.invoke(app, ["segment", str(inputs / "two.pdf"), str(inputs / "one.png"), "--out", str(out),
                                 "--dpi", "100", "--draw-boxes"])
    assert result.exit_code == 0, result.output
    layout = json.loads((out / "layout.json").read_text(encoding="utf-8"))
    assert [(p["source"], p["page"]) for p in layout] == [(str(inputs / "two.pdf"), 1), (str(inputs / "two.pdf"), 2),
                                                          (str(inputs / "one.png"), None)]
    assert [p["file"] for p in layout] == ["pages/two-p001.png", "pages/two-p002.png", str(inputs / "one.png")]
    for page in layout:
        assert list(page)[:len(PAGE_KEYS)] == list(PAGE_KEYS)
        image_path = out / page["file"] if page["page"] else Path(page["file"])
        with Image.open(image_path) as image:
            assert image.size == (page["width"], page["height"])
        assert len(page["lines"]) > 5
        for line in page["lines"]:
            for word in line:
                assert set(word) == {"box", "crop"}
                x0, y0, x1, y1 = word["box"]
                assert 0 <= x0 < x1 <= page["width"] and 0 <= y0 < y1 <= page["height"]
                assert (out / word["crop"]).is_file()
    assert read_layout(out / "layout.json") == layout
    assert sorted(p.name for p in (out / "boxes").iterdir()) == ["one.png", "two-p001.png", "two-p002.png"]
    words = sum(len(line) for page in layout for line in page["lines"])
    assert f"3 pages, {sum(len(p['lines']) for p in layout)} lines, {words} words" in result.output


def test_bad_inputs_are_one_line_each_and_the_rest_is_done(inputs, tmp_path):
    out = tmp_path / "out"
    result = runner.invoke(app, ["segment", str(inputs), "--out", str(out), "--dpi", "100"])
    assert result.exit_code == 1
    skipped = [line for line in result.output.splitlines() if line.startswith("skipped")]
    assert len(skipped) == 3, result.output
    assert any("text.pdf: not a PDF" in line for line in skipped)
    assert any("truncated.pdf: not a readable PDF" in line for line in skipped)
    assert any("empty.png: empty file" in line for line in skipped)  # as predict says it
    assert "Traceback" not in result.output
    layout = read_layout(out / "layout.json")
    assert [p["source"] for p in layout] == [str(inputs / "one.png"), str(inputs / "two.pdf"), str(inputs / "two.pdf")]
    summary = json.loads((out / "segment.json").read_text(encoding="utf-8"))
    assert summary["failed"] == 3 and summary["pages"] == 3


def test_an_empty_page_has_no_lines_and_a_missing_file_is_reported(tmp_path):
    Image.new("RGB", (400, 300), "white").save(tmp_path / "blank.png")
    result = runner.invoke(app, ["segment", str(tmp_path / "blank.png"), str(tmp_path / "missing.png"),
                                 "--out", str(tmp_path / "out")])
    assert result.exit_code == 1
    assert "missing.png" in result.output
    assert read_layout(tmp_path / "out" / "layout.json")[0]["lines"] == []


def test_the_output_policy(inputs, tmp_path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    args = ["segment", str(inputs / "one.png"), "--dpi", "100"]
    result = runner.invoke(app, [*args, "--out", str(foreign)])
    assert result.exit_code == 2 and "--overwrite" in result.output
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]
    assert runner.invoke(app, [*args, "--out", str(foreign), "--overwrite"]).exit_code == 0
    assert (foreign / "notes.txt").read_text() == "keep me" and (foreign / "layout.json").is_file()
    # an earlier segment output is replaced, its old crops gone
    ours = tmp_path / "ours"
    assert runner.invoke(app, [*args, "--out", str(ours)]).exit_code == 0
    (ours / "crops" / "stale").mkdir()
    assert runner.invoke(app, ["segment", str(inputs / "two.pdf"), "--dpi", "100", "--out", str(ours)]).exit_code == 0
    assert sorted(p.name for p in (ours / "crops").iterdir()) == ["two-p001", "two-p002"]
    file_out = tmp_path / "file.txt"
    file_out.write_text("x")
    result = runner.invoke(app, [*args, "--out", str(file_out)])
    assert result.exit_code == 2 and "not a folder" in result.output
