"""Confusion report: counts from alignments that add up to the CER's edits, CSV files, heatmap glyphs, CLI."""

from __future__ import annotations

import csv
import json
import random
import unicodedata
import warnings
from pathlib import Path

import pytest
from typer.testing import CliRunner

from banglaocr.cli import app
from banglaocr.metrics import corpus_scores
from banglaocr.report import (
    BENGALI_FONT_FILE,
    DOTTED_CIRCLE,
    bengali_font_family,
    confusion_report,
    csv_names,
    display_unit,
    heatmap_figure,
    heatmap_table,
    load_prediction_pairs,
    text_shaping_available,
    write_csvs,
    write_heatmap,
)
from banglaocr.text import normalize

runner = CliRunner()
WORDS_FILE = Path(__file__).resolve().parent.parent / "banglaocr" / "assets" / "words" / "ben_words.txt"
# Look-alike letters a reader of handwriting confuses, both ways.
SWAPS = {"ি": "ী", "ী": "ি", "ু": "ূ", "ূ": "ু", "ব": "র", "র": "ব", "ড": "\u09dc", "\u09dc": "ড",
         "ন": "ণ", "ণ": "ন", "স": "শ", "শ": "ষ", "ষ": "স"}
BENGALI_SIGNS = [chr(c) for c in range(0x0980, 0x0A00)
                 if unicodedata.name(chr(c), "") and unicodedata.category(chr(c)).startswith("M")]


def _corrupt(word: str, rng: random.Random) -> str:
    out = []
    for char in word:
        roll = rng.random()
        if char in SWAPS and roll < 0.3:
            out.append(SWAPS[char])
        elif char == "্" and roll < 0.3:  # a dropped hasanta splits a conjunct
            continue
        else:
            out.append(char)
    if rng.random() < 0.1:
        out.insert(rng.randrange(len(out) + 1), "া")
    return "".join(out)


@pytest.fixture(scope="module")
def realistic_pairs():
    """300 seeded word-list references, look-alike corruptions, some empty predictions and odd spellings."""
    words = [w.strip() for w in WORDS_FILE.read_text(encoding="utf-8").splitlines() if w.strip()]
    rng = random.Random(3)
    references = [normalize(w) for w in rng.sample(words, 300)]
    predictions = [_corrupt(w, rng) for w in references]
    predictions[5] = ""  # a failed generation: all deletions
    predictions[6] = references[6] + " " + references[7]  # a run-on: insertions, a space included
    # Non-canonical spellings (decomposed য় with ZWNJ) must meet the references in one form, as in the CER.
    references[8], predictions[8] = "বাংলায়", "বাংলায\u09bc\u200c"
    return references, predictions


def _read_csv(path: Path) -> list[dict]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def _write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return path


@pytest.mark.parametrize(("level", "edits_key", "units_key", "rate_key"), [
    ("char", "edits", "ref_chars", "cer"),
    ("grapheme", "grapheme_edits", "ref_graphemes", "ger"),
])
def test_csv_counts_add_up_to_the_edits_behind_the_error_rate(realistic_pairs, tmp_path, level, edits_key,
                                                              units_key, rate_key):
    references, predictions = realistic_pairs
    scores = corpus_scores(references, predictions)
    report = confusion_report(references, predictions, level=level)
    write_csvs(report, tmp_path)
    names = csv_names(level)
    substituted = sum(int(row["count"]) for row in _read_csv(tmp_path / names["substitutions"]))
    deleted = sum(int(row["count"]) for row in _read_csv(tmp_path / names["deletions"]))
    inserted = sum(int(row["count"]) for row in _read_csv(tmp_path / names["insertions"]))
    units = _read_csv(tmp_path / names["units"])

    assert substituted + deleted + inserted == scores[edits_key] > 0
    assert deleted > 0 and inserted > 0 and substituted > 0
    # The per-unit table agrees with the pair tables and covers every reference unit.
    assert sum(int(row["substitutions"]) for row in units) == substituted
    assert sum(int(row["deletions"]) for row in units) == deleted
    assert sum(int(row["support"]) for row in units) == scores[units_key]
    summary = json.loads((tmp_path / "summary.json").read_text(encoding="utf-8"))
    assert (summary["edits"], summary["reference_units"]) == (scores[edits_key], scores[units_key])
    assert summary["error_rate"] == pytest.approx(scores[rate_key])
    assert report.totals["edits"] == report.totals["substitutions"] + report.totals["deletions"] \
        + report.totals["insertions"]


def test_known_confusion_is_the_top_pair_with_its_count():
    # 25 i-kars in the references (কিনি has two), 15 read as long ii-kar; a rarer ব -> র beside it.
    references = ["কিনি", "দিন", "বাড়ি", "আমি"] * 5 + ["বই"] * 4
    predictions = ["কীনি", "দীন", "বাড়ী", "আমি"] * 5 + ["রই", "রই", "বই", "বই"]
    report = confusion_report(references, predictions)
    assert report.substitutions[0] == ("ি", "ী", 15)
    assert report.substitutions == (("ি", "ী", 15), ("ব", "র", 2))
    assert report.deletions == () and report.insertions == ()
    i_kar = next(row for row in report.units if row["unit"] == "ি")
    assert (i_kar["support"], i_kar["errors"], i_kar["error_rate"]) == (25, 15, 0.6)
    assert report.units[0]["unit"] == "ি"


def test_alignment_not_position():
    # One extra letter at the start is ONE insertion; by position it would be a chain of 5 substitutions.
    report = confusion_report(["বাংলা"], ["অবাংলা"])
    assert report.insertions == (("অ", 1),)
    assert report.substitutions == () and report.deletions == ()
    # A letter missing at the start is one deletion, not substitutions of everything after it.
    report = confusion_report(["আমার সোনার"], ["মার সোনার"])
    assert report.deletions == (("আ", 1),) and report.substitutions == ()
    assert report.totals["edits"] == corpus_scores(["আমার সোনার"], ["মার সোনার"])["edits"] == 1


def test_grapheme_level_counts_clusters():
    report = confusion_report(["ক্ষমা", "স্ত্রী"], ["কমা", "স্ত্রি"], level="grapheme")
    assert report.substitutions == (("ক্ষ", "ক", 1), ("স্ত্রী", "স্ত্রি", 1))
    assert report.totals["edits"] == corpus_scores(["ক্ষমা", "স্ত্রী"], ["কমা", "স্ত্রি"])["grapheme_edits"]


def test_empty_prediction_is_all_deletions_and_null_reads_as_empty(tmp_path):
    path = _write_jsonl(tmp_path / "p.jsonl", [{"id": "a", "reference": "গান", "prediction": None, "cer": 1.0}])
    references, predictions = load_prediction_pairs(path)
    assert predictions == [""]
    report = confusion_report(references, predictions)
    assert report.totals["deletions"] == 3 and report.totals["error_rate"] == 1.0


def test_heatmap_table_rows_add_up_to_errors(realistic_pairs):
    references, predictions = realistic_pairs
    report = confusion_report(references, predictions)
    rows, columns, counts = heatmap_table(report, top=6)
    assert len(rows) == 7 and rows[-1] is None  # 6 units + the insertion row
    assert columns[-1] is None and "" in columns  # deletion column, "other" collects the rest
    errors = {row["unit"]: row["errors"] for row in report.units}
    for unit, row in zip(rows[:-1], counts[:-1]):
        assert sum(row) == errors[unit]
    assert sum(counts[-1]) == report.totals["insertions"]


def test_display_unit_puts_every_bengali_sign_on_a_dotted_circle_the_font_has():
    from matplotlib.ft2font import FT2Font

    charmap = FT2Font(str(BENGALI_FONT_FILE)).get_charmap()
    assert ord(DOTTED_CIRCLE) in charmap
    for sign in BENGALI_SIGNS:
        assert display_unit(sign) == DOTTED_CIRCLE + sign
    assert display_unit("ক") == "ক" and display_unit("কি") == "কি"


def _tick_labels(fig) -> list:
    ax = fig.axes[0]
    return [label for label in ax.get_xticklabels() + ax.get_yticklabels() if label.get_text()]


@pytest.mark.parametrize("level", ["char", "grapheme"])
def test_heatmap_png_draws_bengali_glyphs_from_the_bundled_font(realistic_pairs, tmp_path, level):
    from matplotlib import font_manager
    from PIL import Image

    references, predictions = realistic_pairs
    report = confusion_report(references, predictions, level=level)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        path = write_heatmap(report, tmp_path / "confusion_heatmap.png", top=12)
    missing = [str(w.message) for w in caught if "missing from" in str(w.message)]
    assert missing == []
    assert path.stat().st_size > 20_000
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width > 800 and image.height > 600

    family = bengali_font_family()
    labels = _tick_labels(heatmap_figure(report, top=12))
    assert any(DOTTED_CIRCLE in label.get_text() for label in labels) or level == "grapheme"
    bengali = [label for label in labels if any("\u0980" <= c <= "\u09ff" for c in label.get_text())]
    assert len(bengali) >= 12
    for label in bengali:
        properties = label.get_fontproperties()
        assert properties.get_family()[0] == family
        font_path = font_manager.findfont(properties, fallback_to_default=False)
        charmap = font_manager.get_font(font_path).get_charmap()
        assert all(ord(c) in charmap for c in label.get_text() if "\u0980" <= c <= "\u09ff" or c == DOTTED_CIRCLE)


def test_heatmap_text_layout_takes_bengali_glyphs_from_the_bengali_font(realistic_pairs):
    """Through matplotlib's own layout (shaping, font fallback): no Bengali glyph is .notdef or from another font."""
    from matplotlib import font_manager

    text_helpers = pytest.importorskip("matplotlib._text_helpers")
    if not text_shaping_available():
        pytest.skip("matplotlib < 3.11 lays out text without libraqm")
    report = confusion_report(*realistic_pairs, level="grapheme")
    family = bengali_font_family()
    for label in _tick_labels(heatmap_figure(report, top=12)):
        paths = font_manager.fontManager._find_fonts_by_props(label.get_fontproperties())
        font = font_manager.get_font(paths)
        for item in text_helpers.layout(label.get_text(), font):
            assert item.glyph_index != 0, (label.get_text(), item.char)
            if "\u0980" <= item.char <= "\u09ff" or item.char == DOTTED_CIRCLE:
                assert item.ft_object.family_name == family, (label.get_text(), item.char)


def test_heatmap_of_perfect_predictions_says_so(tmp_path):
    report = confusion_report(["আমি"], ["আমি"])
    assert heatmap_table(report)[0] == []
    assert write_heatmap(report, tmp_path / "h.png").stat().st_size > 1000


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------


def test_cli_writes_tables_csvs_and_heatmap_beside_the_predictions(realistic_pairs, tmp_path):
    references, predictions = realistic_pairs
    path = _write_jsonl(tmp_path / "test_predictions.jsonl",
                        [{"id": i, "reference": r, "prediction": p, "cer": 0.0}
                         for i, (r, p) in enumerate(zip(references, predictions))])
    result = runner.invoke(app, ["confusion-report", str(path), "--top", "8"])
    assert result.exit_code == 0, result.output
    out = tmp_path / "confusion-char"
    for name in [*csv_names("char").values(), "summary.json", "confusion_heatmap.png"]:
        assert (out / name).is_file(), name
    assert "top substitutions" in result.output and "worst chars by error rate" in result.output
    edits = corpus_scores(references, predictions)["edits"]
    assert f"{edits} edits" in result.output

    result = runner.invoke(app, ["confusion-report", str(path), "--level", "grapheme", "--out", str(tmp_path / "g")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "g" / "per_grapheme.csv").is_file() and (tmp_path / "g" / "confusion_heatmap.png").is_file()


@pytest.mark.parametrize(("content", "message"), [
    (None, "does not exist"),
    ("", "no predictions"),
    ('{"reference": "ক", "prediction": "খ"}\n{"reference": "ক", "prediction": \n', "line 2: not valid JSON"),
    ('{"reference": "ক", "text": "খ"}\n', "line 1: missing column(s) 'prediction'"),
    ('["ক", "খ"]\n', "line 1: expected a JSON object"),
    ('{"reference": 5, "prediction": "খ"}\n', "line 1: 'reference' must be a string"),
])
def test_cli_bad_predictions_file_is_one_error_line_exit_2(tmp_path, content, message):
    path = tmp_path / "predictions.jsonl"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    result = runner.invoke(app, ["confusion-report", str(path)])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and message in result.output, result.output
    assert "Traceback" not in result.output and not (tmp_path / "confusion-char").exists()


def test_cli_folder_or_bad_level_exit_2(tmp_path):
    assert runner.invoke(app, ["confusion-report", str(tmp_path)]).exit_code == 2
    path = _write_jsonl(tmp_path / "p.jsonl", [{"reference": "ক", "prediction": "খ"}])
    assert runner.invoke(app, ["confusion-report", str(path), "--level", "word"]).exit_code == 2
