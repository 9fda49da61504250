"""benchmarks/accuracy.py: its held-out families stay out of training, its words out of the word list."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # benchmarks/ is run from a checkout, not installed

from benchmarks import accuracy  # noqa: E402
from banglaocr.config import RECIPES_DIR  # noqa: E402
from banglaocr.data.synth import bundled_fonts, bundled_words, font_name, missing_glyphs  # noqa: E402


def _family_key(name: str) -> str:
    """A family's name as it appears in file names: 'Alkatra-Bold' and 'alkatra' are one family."""
    return name.split("-")[0].lower().replace(" ", "")


def test_there_are_at_least_three_held_out_families_of_the_asked_styles():
    styles = " ".join(f.style for f in accuracy.FAMILIES)
    assert len({f.name for f in accuracy.FAMILIES}) >= 3
    for style in ("handwriting", "heavy", "print"):
        assert style in styles
    for family in accuracy.FAMILIES:
        assert (accuracy.FONTS_DIR / family.font).is_file(), family.font


def test_held_out_families_are_not_bundled():
    bundled = {_family_key(font_name(p)) for p in bundled_fonts()}
    for family in accuracy.FAMILIES:
        assert _family_key(family.name) not in bundled, family.name
        assert _family_key(Path(family.font).stem) not in bundled, family.font


def _strings(node) -> list[str]:
    if isinstance(node, dict):
        return [s for key, value in node.items() for s in (_strings(key) + _strings(value))]
    if isinstance(node, list):
        return [s for item in node for s in _strings(item)]
    return [node] if isinstance(node, str) else []


def test_no_recipe_names_a_held_out_family():
    recipes = sorted(RECIPES_DIR.glob("*.yaml"))
    assert recipes
    for recipe in recipes:
        text = " ".join(_strings(yaml.safe_load(recipe.read_text(encoding="utf-8")))).lower()
        for family in accuracy.FAMILIES:
            assert family.name.lower() not in text, (recipe.name, family.name)
            assert Path(family.font).stem.lower() not in text, (recipe.name, family.font)


def test_words_are_not_in_the_training_word_list_and_every_family_draws_them():
    words = accuracy.benchmark_words(400)
    assert len(words) == len(set(words)) == 400
    assert not set(words) & set(bundled_words())
    for family in accuracy.FAMILIES:
        assert not missing_glyphs(accuracy.FONTS_DIR / family.font, "".join(words)), family.name


def test_licences_are_beside_the_fonts_and_words():
    for name in ("OFL-1.1.txt", "GPL-3.txt", "SOURCES.md"):
        assert (accuracy.FONTS_DIR / name).is_file(), name
    assert (accuracy.WORDS_FILE.parent / "GPL-2.txt").is_file()
    sources = (accuracy.FONTS_DIR / "SOURCES.md").read_text(encoding="utf-8")
    for family in accuracy.FAMILIES:
        assert family.font in sources


def test_scores_and_table_on_two_words_without_tesseract(tmp_path):
    """The whole path on a tiny budget: render, read with the shipped model, score, write the table."""
    out = tmp_path / "result"
    code = accuracy.main(["--model", "tiny", "--n", "2", "--no-tesseract", "--out", str(out),
                          "--work", str(tmp_path / "images")])
    assert code == 0
    results = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
    scores = results["scores"]["banglaocr tiny"]
    assert set(scores) == {f.name for f in accuracy.FAMILIES} | {"overall"}
    assert scores["overall"]["n"] == 2 * len(accuracy.FAMILIES)
    assert 0.0 <= scores["overall"]["cer"] and 0.0 <= scores["overall"]["word_accuracy"] <= 1.0
    rows = [json.loads(line) for line in out.with_suffix(".jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 2 * len(accuracy.FAMILIES) and all("banglaocr tiny" in row for row in rows)
    assert "| **overall** |" in out.with_suffix(".md").read_text(encoding="utf-8")


def test_too_many_words_is_one_error_line(tmp_path, capsys):
    assert accuracy.main(["--n", "100000", "--no-tesseract", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --n:") and err.count("\n") == 1


@pytest.mark.skipif(accuracy.shutil.which("tesseract") is None, reason="tesseract-ocr is not installed")
def test_tesseract_reads_a_clean_word(tmp_path):
    from banglaocr.data.synth import render_word
    import numpy as np

    font = accuracy.FONTS_DIR / "Mukti.ttf"
    path = tmp_path / "word.png"
    render_word("বাংলা", font, np.random.default_rng(0), clean=True).save(path)
    accuracy.tesseract_version()
    texts, _ = accuracy.read_with_tesseract([path], jobs=1)
    assert texts == ["বাংলা"]
