"""`banglaocr predict --layout page` through the real command registry, with the shipped tiny reader: a PDF
of two pages and a page image in, one row per page out (jsonl, text, csv), the boxes drawn, and the rows
taken by `banglaocr review` as they are (PDF pages rendered again, words cut by their boxes)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from banglaocr.cli import app
from banglaocr.data.synth import bundled_fonts, bundled_words, font_name
from banglaocr.data.synth_pages import render_page
from banglaocr.pages.segment import segment_page
from banglaocr.pages.sources import open_pages
from banglaocr.review.inputs import load_input, open_item_image

runner = CliRunner()
PAGE_KEYS = {"file", "source", "page", "width", "height", "skew_degrees", "text", "confidence", "words", "lines"}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pages")
    fonts = [p for p in bundled_fonts() if font_name(p) == "NotoSansBengali-Regular"]
    pages = [render_page(11, k, words=bundled_words(), fonts=fonts, ruled=0.0, tight=0.0) for k in range(2)]
    # Half size and three lines: a quick page that still has lines of several words.
    images = [p.image.resize((p.image.width // 2, p.image.height // 2)).crop((0, 0, 728, 300)) for p in pages]
    images[0].save(folder / "two.pdf", "PDF", save_all=True, append_images=images[1:], resolution=100)
    images[1].save(folder / "one.png")
    (folder / "text.pdf").write_text("not a PDF at all\n")
    return folder


@pytest.fixture(scope="module")
def jsonl_run(inputs, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    args = ["predict", "--model", "tiny", "--layout", "page", str(inputs / "two.pdf"), str(inputs / "one.png"),
            str(inputs / "text.pdf"), "--out", str(out / "pages.jsonl"), "--draw-boxes", str(out / "boxes"),
            "--flag-below", "0.9"]
    result = runner.invoke(app, args)
    rows = [json.loads(line) for line in (out / "pages.jsonl").read_text(encoding="utf-8").splitlines()]
    return result, rows, out


def test_one_row_per_page_with_text_boxes_and_confidences(inputs, jsonl_run):
    result, rows, out = jsonl_run
    assert result.exit_code == 1, result.output  # text.pdf is no PDF: an error row, the others read
    assert "3 page(s) of 3 input(s)" in result.output and "1 input(s) or page(s) could not be read" in result.output
    pdf = str(inputs / "two.pdf")
    assert [(r["file"], r.get("page")) for r in rows] == [
        (f"{pdf}#page=1", 1), (f"{pdf}#page=2", 2), (str(inputs / "one.png"), None), (str(inputs / "text.pdf"), None)]
    assert rows[3] == {"file": str(inputs / "text.pdf"), "error": "not a PDF (no %PDF- header)"}
    for row in rows[:3]:
        assert set(row) == PAGE_KEYS and row["source"] in (pdf, str(inputs / "one.png"))
        words = [word for line in row["lines"] for word in line]
        assert row["words"] == len(words) >= 10 and len(row["lines"]) >= 2
        assert row["text"] == "\n".join(" ".join(w["prediction"] for w in line if w.get("prediction"))
                                        for line in row["lines"])
        for word in words:
            x0, y0, x1, y1 = word["box"]
            assert 0 <= x0 < x1 <= row["width"] and 0 <= y0 < y1 <= row["height"]
            if word.get("blank"):  # no ink in the box: never shown to the model, no confidence
                assert word["prediction"] == "" and "confidence" not in word
                continue
            assert 0 < word["confidence"] <= 1 and word["clusters"]
            assert word.get("flagged", False) == (word["confidence"] < 0.9)
        read = [w["confidence"] for w in words if not w.get("blank")]
        mean = sum(read) / len(read)
        assert row["confidence"] == pytest.approx(mean, abs=1e-3)
    marker = json.loads((out / "pages.jsonl.banglaocr.json").read_text())
    assert marker["layout"] == "page" and marker["format"] == "jsonl" and marker["reading"]["dpi"] == 200


def test_the_boxes_are_segments_and_the_words_read_as_their_crops(inputs, jsonl_run):
    """A page row's boxes are exactly those `segment` finds, and each word reads as its crop read alone does."""
    _, rows, _ = jsonl_run
    page = next(open_pages(inputs / "one.png"))
    layout = segment_page(page.image)
    assert [[w["box"] for w in line] for line in rows[2]["lines"]] == [[list(w.box) for w in line]
                                                                        for line in layout.lines]
    crops = Path(rows[2]["file"]).parent / "crops-one"
    crops.mkdir(exist_ok=True)
    for k, word in enumerate(w for line in layout.lines for w in line):
        word.image.save(crops / f"w{k:03d}.png")
    result = runner.invoke(app, ["predict", "--model", "tiny", str(crops), "--format", "jsonl"])
    assert result.exit_code == 0, result.output
    alone = [json.loads(line)["prediction"] for line in result.stdout.splitlines() if line.startswith("{")]
    assert [w["prediction"] for line in rows[2]["lines"] for w in line] == alone


def test_the_boxes_drawn_on_every_page(jsonl_run):
    _, rows, out = jsonl_run
    drawn = sorted(p.name for p in (out / "boxes").glob("*.png"))
    assert drawn == ["one.png", "two-p001.png", "two-p002.png"]
    picture = Image.open(out / "boxes" / "two-p001.png")
    assert picture.size == (rows[0]["width"], rows[0]["height"])
    x0, y0, _, _ = rows[0]["lines"][0][0]["box"]
    flagged = rows[0]["lines"][0][0].get("flagged", False)
    assert picture.convert("RGB").getpixel((x0, y0 + 2)) == ((230, 0, 0) if flagged else (0, 150, 60))


def test_text_and_csv_rows_say_the_same(inputs, jsonl_run):
    _, rows, _ = jsonl_run
    args = ["predict", "--model", "tiny", "--layout", "page", str(inputs / "two.pdf"), str(inputs / "text.pdf")]
    text = runner.invoke(app, args)
    assert text.exit_code == 1
    expected = "".join(f"==> {r['file']} <==\n{r['text']}\n\n" for r in rows[:2])
    assert text.stdout.startswith(expected)
    assert f"==> {inputs / 'text.pdf'} <==\nERROR: not a PDF (no %PDF- header)\n" in text.stdout
    table = runner.invoke(app, [*args, "--format", "csv"])
    found = list(csv.DictReader(io.StringIO(table.stdout[table.stdout.index("file,line,"):])))
    words = [(r["file"], n, k, w["prediction"]) for r in rows[:2] for n, line in enumerate(r["lines"], 1)
             for k, w in enumerate(line, 1)]
    assert [(f["file"], int(f["line"]), int(f["word"]), f["prediction"]) for f in found[:-1]] == words
    assert found[-1]["error"] == "not a PDF (no %PDF- header)"


def test_refusals_are_one_line_before_the_model_loads(inputs, tmp_path):
    page = str(inputs / "one.png")
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "mine.txt").write_text("keep me")
    cases = [(["--draw-boxes", str(tmp_path / "b"), page], "--draw-boxes draws the word boxes of pages"),
             (["--layout", "page", "--resume", "--out", str(tmp_path / "r.jsonl"), page], "--resume keeps word rows"),
             (["--layout", "pages", page], "--layout must be one of word, page"),
             (["--layout", "page", "--draw-boxes", str(tmp_path / "foreign"), page],
              "is not empty and is not a banglaocr predict folder")]
    for extra, said in cases:
        result = runner.invoke(app, ["predict", "--model", "tiny", *extra])
        assert result.exit_code == 2 and said in result.output, (extra, result.output)
        assert "Traceback" not in result.output
    assert (tmp_path / "foreign" / "mine.txt").read_text() == "keep me"


def test_review_takes_the_page_rows_and_cuts_pdf_words_from_the_rendered_page(inputs, jsonl_run):
    _, rows, out = jsonl_run
    review = load_input(out / "pages.jsonl")
    words = [w for r in rows[:3] for line in r["lines"] for w in line]
    assert len(review.items) == len(words) + 1 and review.model == "tiny"
    first = review.items[0]
    assert (first.source, first.page, first.pdf_page) == (str(inputs / "two.pdf"), rows[0]["file"], 1)
    rendered = next(open_pages(inputs / "two.pdf", dpi=200)).image
    box = tuple(rows[0]["lines"][0][0]["box"])
    assert list(open_item_image(first).get_flattened_data()) == list(rendered.crop(box).get_flattened_data())
    pages = {item.page for item in review.items}
    assert {r["file"] for r in rows} == pages  # the words of one page stay one page (one split)


def test_a_fifo_and_a_missing_page_are_error_rows_never_a_hang(inputs, tmp_path):
    """A FIFO named like an image or a PDF would block the first read: it is refused before any read (predict
    and segment share `open_pages`); an alarm fails the test instead of hanging the suite."""
    import os
    import signal

    os.mkfifo(tmp_path / "pipe.png")
    os.mkfifo(tmp_path / "pipe.pdf")
    signal.signal(signal.SIGALRM, lambda *_: pytest.fail("a FIFO blocked the read"))
    signal.alarm(120)
    try:
        result = runner.invoke(app, ["predict", "--model", "tiny", "--layout", "page", "--format", "jsonl",
                                     str(tmp_path / "pipe.png"), str(tmp_path / "pipe.pdf"),
                                     str(tmp_path / "missing.png"), str(inputs / "one.png")])
        segmented = runner.invoke(app, ["segment", str(tmp_path / "pipe.pdf"), "--out", str(tmp_path / "seg")])
    finally:
        signal.alarm(0)
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [row.get("error") for row in rows] == [f"not a regular file: {tmp_path / 'pipe.png'}",
                                                 f"not a regular file: {tmp_path / 'pipe.pdf'}",
                                                 f"no such file: {tmp_path / 'missing.png'}", None]
    assert result.exit_code == 1 and segmented.exit_code == 1
    assert "not a regular file" in segmented.output and "Traceback" not in segmented.output
