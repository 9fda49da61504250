"""The canonical Bangla form and grapheme clusters (banglaocr.text)."""

from __future__ import annotations

import random
import unicodedata
from pathlib import Path

import pytest

import banglaocr
from banglaocr.text import graphemes, normalize

WORDS_FILE = Path(banglaocr.__file__).parent / "assets" / "words" / "ben_words.txt"

NUKTA = "\u09bc"
ZWJ, ZWNJ = "\u200d", "\u200c"


@pytest.mark.parametrize(
    ("base", "precomposed"),
    [("\u09af", "\u09df"), ("\u09a1", "\u09dc"), ("\u09a2", "\u09dd")],  # য়, ড়, ঢ়
)
def test_nukta_letters_become_one_code_point_from_either_input_form(base, precomposed):
    word_decomposed = "বা" + base + NUKTA + "া"
    word_precomposed = "বা" + precomposed + "া"
    assert normalize(word_decomposed) == normalize(word_precomposed) == word_precomposed
    assert len(normalize(precomposed)) == 1


def test_nukta_before_hasanta_in_either_order_composes():
    # NFC sorts nukta (ccc 7) before hasanta (ccc 9), so both typing orders meet the same form.
    assert normalize("\u09af\u09cd" + NUKTA) == normalize("\u09af" + NUKTA + "\u09cd") == "\u09df\u09cd"


@pytest.mark.parametrize(
    ("decomposed", "composed"),
    [("\u0995\u09c7\u09be", "\u0995\u09cb"), ("\u0995\u09c7\u09d7", "\u0995\u09cc")],  # কো, কৌ
)
def test_split_o_kar_and_au_kar_are_composed(decomposed, composed):
    assert normalize(decomposed) == composed


def test_split_o_kar_with_a_joiner_between_still_composes():
    assert normalize("\u0995\u09c7" + ZWJ + "\u09be") == "\u0995\u09cb"


def test_legacy_khanda_ta_becomes_khanda_ta_letter():
    assert normalize("উ\u09a4\u09cd" + ZWJ + "স") == "উ\u09ceস"
    assert normalize("\u09a4\u09cd" + ZWJ) == "\u09ce"


def test_joiners_are_removed():
    assert normalize("র" + ZWJ + "\u09cd" + "য") == "র\u09cdয"
    assert normalize("ক\u09cd" + ZWNJ + "ষ") == "ক\u09cdষ"
    assert ZWJ not in normalize("a" + ZWJ + "b" + ZWNJ)


def test_zero_width_space_and_bom_are_removed():
    assert normalize("\ufeffআমি\u200b") == "আমি"
    assert normalize("আমি \u200b তুমি") == "আমি তুমি"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("আমি|", "আমি\u0964"),
        ("আমি ||", "আমি \u0965"),
        ("আমি \u0964\u0964", "আমি \u0965"),
        ("আমি \u0964", "আমি \u0964"),
    ],
)
def test_danda(raw, expected):
    assert normalize(raw) == expected


def test_whitespace_runs_collapse_and_ends_are_stripped():
    assert normalize("  আমি\t\n  তুমি\u00a0 সে  ") == "আমি তুমি সে"


@pytest.mark.parametrize("value", ["", "   ", "\u200b", ZWJ + ZWNJ])
def test_empty_and_invisible_only_text_gives_empty_string(value):
    assert normalize(value) == ""


def test_none_gives_empty_string():
    assert normalize(None) == ""  # type: ignore[arg-type]


def test_non_bangla_text_passes_through():
    assert normalize("Hello,  World 123") == "Hello, World 123"
    assert normalize("cafe\u0301") == "caf\u00e9"  # only NFC changes it


def test_idempotent_on_the_bundled_word_list():
    words = WORDS_FILE.read_text(encoding="utf-8").splitlines()
    assert len(words) > 40_000
    for word in words:
        once = normalize(word)
        assert normalize(once) == once, word


def test_idempotent_on_random_mixtures_of_the_special_characters():
    # Strings built from exactly the characters the policy touches, in every kind of order.
    alphabet = [
        "\u09af", "\u09a1", "\u09a2", "\u09a4", "\u0995", "\u09cd", NUKTA, "\u09df", "\u09dc", "\u09c7",
        "\u09be", "\u09d7", "\u09ce", ZWJ, ZWNJ, "\u200b", "\ufeff", "|", "\u0964", " ", "\t", "a", "\u0301",
    ]
    rng = random.Random(0)
    for _ in range(5000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        once = normalize(text)
        assert normalize(once) == once, [hex(ord(c)) for c in text]


def test_result_is_nfc_apart_from_the_precomposed_nukta_letters():
    text = normalize("বাংলায\u09bc কো \u09a1\u09bc")
    undone = text.replace("\u09df", "\u09af" + NUKTA).replace("\u09dc", "\u09a1" + NUKTA)
    assert unicodedata.is_normalized("NFC", undone)


@pytest.mark.parametrize("conjunct", ["ক্ষ", "স্ত্রী", "র্ম"])
def test_conjuncts_are_one_grapheme(conjunct):
    assert graphemes(conjunct) == [conjunct]


def test_graphemes_of_a_word():
    assert graphemes("ক্ষমা") == ["ক্ষ", "মা"]
    assert graphemes("স্ত্রীর") == ["স্ত্রী", "র"]
    assert "".join(graphemes("বাংলাদেশ")) == "বাংলাদেশ"
    assert graphemes("") == []
