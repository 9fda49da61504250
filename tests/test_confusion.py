"""Confusion statistics from alignments, weights from them, and token weights from real offsets."""

from __future__ import annotations

import json
import random

import pytest

from banglaocr.confusion import ConfusionStats, char_weights, error_rates, token_weights

# ষ is read as স in half of its occurrences; every other letter is always right.
_REFS = ["ক্ষমা", "বিষয়", "ভাষা", "মানুষ", "কলম", "আমি", "বাংলা", "গান"] * 4
_PREDS = [ref.replace("ষ", "স") if i % 2 else ref for i, ref in enumerate(_REFS)]


def _offsets(tokenizer, answer: str) -> list[tuple[int, int]]:
    encoded = tokenizer(answer, add_special_tokens=False, return_offsets_mapping=True)
    return [tuple(span) for span in encoded["offset_mapping"]]


def test_counts_come_from_the_alignment_not_from_positions():
    # A dropped first letter: position by position every letter would look wrong.
    stats = ConfusionStats().update(["কলম", "কম"], ["লম", "কখম"])
    assert stats.deletions == {"ক": 1}
    assert stats.substitutions == {}
    assert stats.insertions == {"খ": 1}
    assert stats.support == {"ক": 2, "ল": 1, "ম": 2}
    assert error_rates(stats) == {"ক": 0.5, "ল": 0.0, "ম": 0.0}
    assert stats.samples == 2


def test_empty_prediction_deletes_every_reference_character():
    stats = ConfusionStats().update(["আমি"], [""])
    assert stats.deletions == {"আ": 1, "ম": 1, "ি": 1}


def test_both_sides_are_normalised():
    # A decomposed nukta letter (য + nukta) is the same letter as the precomposed য়.
    stats = ConfusionStats().update(["বিষয\u09bc"], ["বিষ\u09df"])
    assert error_rates(stats) == {c: 0.0 for c in "বিষ\u09df"}


def test_grapheme_level_counts_a_conjunct_as_one_unit():
    stats = ConfusionStats(level="grapheme").update(["ক্ষমা"], ["কমা"])
    assert stats.support == {"ক্ষ": 1, "মা": 1}
    assert stats.substitutions == {"ক্ষ": {"ক": 1}}
    chars = ConfusionStats(level="char").update(["ক্ষমা"], ["কমা"])
    assert sum(chars.deletions.values()) == 2


def test_confused_character_weighs_more_and_so_do_its_tokens(qwen_tokenizer):
    stats = ConfusionStats().update(_REFS, _PREDS)
    weights = char_weights(stats, cap=10.0)
    assert weights["ষ"] > 1.0
    assert all(w == 1.0 for char, w in weights.items() if char != "ষ")

    answer = "মানুষ"
    offsets = _offsets(qwen_tokenizer, answer) + [(0, 0)]  # + <|im_end|>, which covers no text
    # Byte-level BPE: this word is more tokens than characters, some covering two characters.
    assert len(offsets) - 1 > len(answer)
    got = token_weights(answer, offsets, weights)
    assert len(got) == len(offsets)
    ssa = answer.index("ষ")
    for (start, end), w in zip(offsets, got):
        expected = weights["ষ"] if start <= ssa < end else 1.0
        assert w == expected
    assert got[-1] == 1.0
    covering = [w for (s, e), w in zip(offsets, got) if s <= ssa < e]
    others = [w for (s, e), w in zip(offsets, got) if not s <= ssa < e]
    assert covering and min(covering) > max(others)


def test_token_covering_two_characters_takes_the_larger_weight(qwen_tokenizer):
    answer = "ক্ষমা"
    offsets = _offsets(qwen_tokenizer, answer)
    shared = [span for span in offsets if span[1] - span[0] > 1]
    assert shared, "the real tokenizer splits this conjunct across character boundaries"
    got = dict(zip(offsets, token_weights(answer, offsets, {"ষ": 3.0, "্": 2.0})))
    for start, end in shared:
        assert got[(start, end)] == max({"ষ": 3.0, "্": 2.0}.get(c, 1.0) for c in answer[start:end])


def test_grapheme_weights_reach_every_token_of_the_cluster(qwen_tokenizer):
    refs = ["ক্ষমা"] * 6 + ["মানুষ"] * 6
    preds = ["কমা"] * 6 + ["মানুষ"] * 6
    stats = ConfusionStats(level="grapheme").update(refs, preds)
    weights = char_weights(stats, cap=4.0)
    assert weights["ক্ষ"] == 4.0
    answer = "ক্ষমা"
    offsets = _offsets(qwen_tokenizer, answer)
    got = token_weights(answer, offsets, weights, level="grapheme")
    assert got == [4.0 if start < 3 else 1.0 for start, _ in offsets]


def test_cap_and_floor():
    stats = ConfusionStats().update(["কখগঘ"] * 20, ["খখগঘ"] * 20)
    assert char_weights(stats, cap=10.0)["ক"] == pytest.approx(4.0)  # rate 1.0, mean 0.25
    capped = char_weights(stats, cap=2.5)
    assert capped["ক"] == 2.5
    assert all(1.0 <= w <= 2.5 for w in capped.values())
    with pytest.raises(ValueError):
        char_weights(stats, cap=0.5)


def test_min_support_and_no_errors():
    stats = ConfusionStats().update(["কম"] * 4 + ["লম"] * 6, ["খম"] * 4 + ["সম"] * 6)
    assert char_weights(stats, cap=5.0, min_support=5)["ক"] == 1.0  # support 4: not trusted
    assert char_weights(stats, cap=5.0, min_support=5)["ল"] > 1.0
    assert char_weights(stats, cap=5.0, min_support=4)["ক"] > 1.0
    clean = ConfusionStats().update(["কম", "লম"], ["কম", "লম"])
    assert char_weights(clean, cap=5.0) == {"ক": 1.0, "ল": 1.0, "ম": 1.0}
    assert char_weights(ConfusionStats(), cap=5.0) == {}


def test_json_round_trip():
    stats = ConfusionStats().update(_REFS, _PREDS).update(["কম"], ["কখম"])
    text = json.dumps(stats.to_dict(), ensure_ascii=False)
    again = ConfusionStats.from_dict(json.loads(text))
    assert again == stats
    assert json.dumps(again.to_dict(), ensure_ascii=False) == text
    grapheme = ConfusionStats(level="grapheme").update(["ক্ষমা"], ["কমা"])
    assert ConfusionStats.from_dict(json.loads(json.dumps(grapheme.to_dict()))) == grapheme


def test_same_pairs_in_any_order_give_the_same_table():
    rng = random.Random(0)
    pairs = list(zip(_REFS, _PREDS)) + [("কলম", "লম"), ("আমি", ""), ("গান", "গানে")]
    reference = ConfusionStats().update(*zip(*pairs))
    for _ in range(5):
        rng.shuffle(pairs)
        shuffled = ConfusionStats().update(*zip(*pairs))
        assert json.dumps(shuffled.to_dict()) == json.dumps(reference.to_dict())
        assert char_weights(shuffled, cap=3.0) == char_weights(reference, cap=3.0)


def test_bad_inputs():
    with pytest.raises(ValueError):
        ConfusionStats(level="word")
    with pytest.raises(ValueError, match="pair up"):
        ConfusionStats().update(["ক"], [])


def test_docstring_examples_run():
    import doctest

    import banglaocr.confusion as module

    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0
