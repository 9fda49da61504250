"""Metrics against jiwer (the reference implementation) on random Bangla pairs."""

from __future__ import annotations

import random
from importlib import resources

import jiwer
import pytest

from banglaocr.metrics import corpus_scores, edit_ops, error_rate, sample_scores
from banglaocr.text import graphemes, normalize

# Letters, vowel signs, hasanta, anusvara: enough to make substitutions that change conjuncts.
_BANGLA = [chr(c) for c in range(0x0985, 0x09B9 + 1)]
_BANGLA += ["\u09be", "\u09bf", "\u09c0", "\u09c1", "\u09cd", "\u0982"]


@pytest.fixture(scope="module")
def words() -> list[str]:
    text = resources.files("banglaocr").joinpath("assets/words/ben_words.txt").read_text(encoding="utf-8")
    return [w for w in text.split() if w]


def _corrupt(word: str, rng: random.Random) -> str:
    chars = list(word)
    for _ in range(rng.randint(0, 3)):
        op = rng.choice(("substitute", "delete", "insert"))
        if op == "insert" or not chars:
            chars.insert(rng.randint(0, len(chars)), rng.choice(_BANGLA))
        elif op == "delete":
            del chars[rng.randrange(len(chars))]
        else:
            chars[rng.randrange(len(chars))] = rng.choice(_BANGLA)
    return "".join(chars)


def _pairs(words: list[str], seed: int, n: int = 200) -> tuple[list[str], list[str]]:
    """Random (reference, prediction) pairs of 1-3 word phrases, about 10% empty predictions.

    Both sides are canonical already, so jiwer (which does not normalise) sees the same text.
    """
    rng = random.Random(seed)
    refs, hyps = [], []
    for _ in range(n):
        ref_words = rng.sample(words, rng.randint(1, 3))
        ref = normalize(" ".join(ref_words))
        if rng.random() < 0.1:
            hyp = ""
        else:
            hyp_words = [_corrupt(w, rng) for w in ref_words]
            if rng.random() < 0.2:  # a dropped or an extra word
                if rng.random() < 0.5 and len(hyp_words) > 1:
                    del hyp_words[rng.randrange(len(hyp_words))]
                else:
                    hyp_words.insert(rng.randint(0, len(hyp_words)), rng.choice(words))
            hyp = normalize(" ".join(hyp_words))
        assert ref, "jiwer rejects empty references; keep them out of this comparison"
        refs.append(ref)
        hyps.append(hyp)
    return refs, hyps


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_corpus_cer_and_wer_equal_jiwer(words, seed):
    refs, hyps = _pairs(words, seed)
    assert any(h == "" for h in hyps)
    scores = corpus_scores(refs, hyps)
    assert scores["n"] == len(refs)
    assert scores["cer"] == pytest.approx(jiwer.cer(refs, hyps), abs=1e-12)
    assert scores["wer"] == pytest.approx(jiwer.wer(refs, hyps), abs=1e-12)
    assert scores["empty_predictions"] == sum(h == "" for h in hyps)
    assert scores["exact_match"] == pytest.approx(sum(r == h for r, h in zip(refs, hyps)) / len(refs))
    per_sample = [jiwer.cer(r, h) for r, h in zip(refs, hyps)]
    assert scores["mean_cer"] == pytest.approx(sum(per_sample) / len(per_sample), abs=1e-12)


def _jiwer_pair_counts(out) -> dict:
    """Per-item (substitute (ref, hyp) / insert hyp / delete ref) counts from jiwer's alignment.

    `jiwer.collect_error_counts` keys a run of neighbouring edits as one joined string; the
    chunks are expanded item by item here so they compare with `edit_ops`.
    """
    counts = {"substitute": {}, "insert": {}, "delete": {}}
    for ref, hyp, chunks in zip(out.references, out.hypotheses, out.alignments):
        for c in chunks:
            if c.type == "substitute":
                keys = zip(ref[c.ref_start_idx : c.ref_end_idx], hyp[c.hyp_start_idx : c.hyp_end_idx])
            elif c.type == "insert":
                keys = hyp[c.hyp_start_idx : c.hyp_end_idx]
            elif c.type == "delete":
                keys = ref[c.ref_start_idx : c.ref_end_idx]
            else:
                continue
            for key in keys:
                counts[c.type][key] = counts[c.type].get(key, 0) + 1
    return counts


@pytest.mark.parametrize("seed", [3, 4])
def test_edit_op_counts_equal_jiwer_process_characters(words, seed):
    refs, hyps = _pairs(words, seed, n=100)
    out = jiwer.process_characters(refs, hyps)
    counts = {"substitute": {}, "insert": {}, "delete": {}}
    for ref, hyp in zip(refs, hyps):
        for op, r, h in edit_ops(ref, hyp):
            key = {"substitute": (r, h), "insert": h, "delete": r}[op]
            counts[op][key] = counts[op].get(key, 0) + 1
    assert sum(counts["substitute"].values()) == out.substitutions > 0
    assert sum(counts["insert"].values()) == out.insertions > 0
    assert sum(counts["delete"].values()) == out.deletions > 0
    assert counts == _jiwer_pair_counts(out)


def test_edit_ops_with_equal_rebuild_both_sides():
    ref, hyp = "বাংলা ভাষা", "বাঙলা ভাস"
    ops = edit_ops(ref, hyp, include_equal=True)
    assert "".join(r for _, r, _ in ops if r is not None) == ref
    assert "".join(h for _, _, h in ops if h is not None) == hyp
    assert len([op for op in ops if op[0] != "equal"]) == len(edit_ops(ref, hyp))


def test_grapheme_error_rate_counts_a_conjunct_once():
    # ক্ষ is ক + hasanta + ষ: three code points, one letter on the page.
    assert graphemes("ক্ষমা") == ["ক্ষ", "মা"]
    s = sample_scores("ক্ষমা", "কমা")
    assert s["edits"] == 2 and s["ref_chars"] == 5
    assert s["grapheme_edits"] == 1 and s["ref_graphemes"] == 2
    assert s["ger"] == pytest.approx(0.5)
    assert s["cer"] == pytest.approx(0.4)
    assert edit_ops(graphemes("ক্ষমা"), graphemes("কমা")) == [("substitute", "ক্ষ", "ক")]


def test_empty_prediction_counts_as_deletions_and_is_counted():
    s = sample_scores("আমি", "")
    assert s["edits"] == s["ref_chars"] == 3
    assert s["cer"] == s["wer"] == s["ger"] == 1.0
    assert s["empty"] and not s["exact"]
    c = corpus_scores(["আমি", "গান"], ["   ", "গান"])
    assert c["empty_predictions"] == 1
    assert c["cer"] == pytest.approx(0.5)
    assert c["n"] == 2


def test_empty_reference_contributes_insertions():
    assert sample_scores("", "")["cer"] == 0.0
    s = sample_scores("", "কম")
    assert (s["edits"], s["ref_chars"], s["cer"]) == (2, 0, 1.0)
    c = corpus_scores(["", "আমি"], ["কম", "আমি"])
    assert c["edits"] == 2 and c["ref_chars"] == 3
    assert c["cer"] == pytest.approx(2 / 3)
    assert c["mean_cer"] == pytest.approx(0.5)
    assert corpus_scores([""], [""])["cer"] == 0.0
    assert error_rate(5, 0) == 1.0


def test_both_sides_are_normalised():
    # Decomposed nukta letter, ZWNJ and extra spaces in the prediction: the same visible text.
    ref = "বাংলা\u09df আমি"
    hyp = " বাংলা\u09af\u09bc \u200cআমি  "
    s = sample_scores(ref, hyp)
    assert s["exact"] and s["edits"] == 0
    raw = sample_scores(ref, hyp, normalize_text=False)
    assert raw["edits"] > 0
    # A label written the non-canonical way is normalised too, not only the prediction.
    assert sample_scores(hyp, ref)["exact"]


def test_mismatched_lengths_and_empty_corpus_are_errors():
    with pytest.raises(ValueError, match="pair up"):
        corpus_scores(["ক"], [])
    with pytest.raises(ValueError, match="empty"):
        corpus_scores([], [])


def test_docstring_examples_run():
    import doctest

    import banglaocr.metrics as module

    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0
