"""Recognition metrics from generated text: CER, WER, grapheme error rate, exact match.

Every number here compares a reference label with text the model actually GENERATED (never a
teacher-forced argmax). Both sides go through `banglaocr.text.normalize` first
(`normalize_text=True`, the default), so two spellings of the same visible word are never an
error and labels and predictions meet in one canonical form. Pass `normalize_text=False` only
when both sides are already canonical.

Three granularities, all counted with Levenshtein edit operations (rapidfuzz; the same
alignment jiwer uses):

- characters (Unicode code points, spaces included) -> CER,
- words (whitespace-separated) -> WER,
- grapheme clusters (`banglaocr.text.graphemes`: a conjunct such as ক্ষ is one unit) -> GER.
  A reader sees ক্ষ misread as ক as one wrong letter; CER counts it as two deleted code points.

Conventions (each decided once, here):

- An empty prediction is scored like any other: every reference unit is a deletion. It is
  never dropped, and `corpus_scores` also counts empty predictions separately.
- An empty reference has 0 units; its edits are the prediction's length (all insertions), which
  still add to the corpus numerator. Its per-sample rate is 1.0 if the prediction is non-empty,
  else 0.0. The same rule applies to a corpus whose references are all empty.
- Corpus rates are total edits / total reference units (what jiwer reports); `mean_cer` is the
  plain mean of per-sample CERs, which weights short words as much as long ones.
- Per-sample rates are not capped: insertions can push them above 1.0.

>>> s = sample_scores("ক্ষমা", "কমা")
>>> (s["edits"], s["ref_chars"], s["grapheme_edits"], s["ref_graphemes"])
(2, 5, 1, 2)
>>> c = corpus_scores(["আমি", "গান"], ["আমি", ""])
>>> (c["cer"], c["exact_match"], c["empty_predictions"])
(0.5, 0.5, 1)
"""

from __future__ import annotations

from collections.abc import Sequence

from rapidfuzz.distance import Levenshtein

from banglaocr.text import graphemes, normalize

# rapidfuzz names a substitution "replace"; these are the names used everywhere in the package.
_OP_NAMES = {"replace": "substitute", "delete": "delete", "insert": "insert", "equal": "equal"}


def edit_ops(
    reference: str | Sequence[str],
    prediction: str | Sequence[str],
    *,
    include_equal: bool = False,
) -> list[tuple[str, str | None, str | None]]:
    """Align `prediction` to `reference` with a minimal Levenshtein alignment.

    Strings align by code point; lists of strings (e.g. `graphemes(text)`) align item by item.
    Returns `(op, ref_item, hyp_item)` in reference order, op one of 'substitute', 'delete'
    (hyp_item None), 'insert' (ref_item None) and, with `include_equal=True`, 'equal'.
    The alignment depends only on the pair, so statistics built from it do not depend on
    the order pairs arrive in.

    >>> edit_ops("abc", "axcd")
    [('substitute', 'b', 'x'), ('insert', None, 'd')]
    >>> edit_ops(["ক্ষ", "মা"], ["ক", "মা"], include_equal=True)
    [('substitute', 'ক্ষ', 'ক'), ('equal', 'মা', 'মা')]
    >>> edit_ops("ab", "")
    [('delete', 'a', None), ('delete', 'b', None)]
    """
    ref = list(reference)
    hyp = list(prediction)
    ops: list[tuple[str, str | None, str | None]] = []
    if include_equal:
        for tag, i1, i2, j1, j2 in Levenshtein.opcodes(ref, hyp):
            name = _OP_NAMES[tag]
            if name in ("equal", "substitute"):
                ops.extend((name, r, h) for r, h in zip(ref[i1:i2], hyp[j1:j2]))
            elif name == "delete":
                ops.extend((name, r, None) for r in ref[i1:i2])
            else:
                ops.extend((name, None, h) for h in hyp[j1:j2])
        return ops
    for tag, i, j in Levenshtein.editops(ref, hyp):
        name = _OP_NAMES[tag]
        ops.append((name, ref[i] if name != "insert" else None, hyp[j] if name != "delete" else None))
    return ops


def error_rate(edits: int, ref_units: int) -> float:
    """Edits per reference unit; a reference with no units scores 1.0 if anything was edited.

    >>> error_rate(1, 4), error_rate(0, 0), error_rate(3, 0)
    (0.25, 0.0, 1.0)
    """
    if ref_units == 0:
        return 1.0 if edits else 0.0
    return edits / ref_units


def sample_scores(reference: str, prediction: str, *, normalize_text: bool = True) -> dict:
    """Scores of one generated `prediction` against its `reference` label.

    Keys: `cer`, `edits`, `ref_chars`; `wer`, `word_edits`, `ref_words`; `ger` (grapheme error
    rate), `grapheme_edits`, `ref_graphemes`; `exact` (bool, canonical forms equal); `empty`
    (bool, the prediction is empty after normalisation). Counts are ints so that corpus totals
    are exact sums (and can be summed across processes).

    >>> s = sample_scores("আমি গান", "আমি")
    >>> (s["edits"], s["ref_chars"], s["word_edits"], s["ref_words"], s["exact"])
    (4, 7, 1, 2, False)
    >>> sample_scores("", "ক")["cer"], sample_scores("ক", "")["cer"]
    (1.0, 1.0)
    """
    if normalize_text:
        reference, prediction = normalize(reference), normalize(prediction)
    # Levenshtein.distance on sequences == number of editops; no alignment needed for counts.
    edits = Levenshtein.distance(reference, prediction)
    ref_words, hyp_words = reference.split(), prediction.split()
    word_edits = Levenshtein.distance(ref_words, hyp_words)
    ref_graphemes, hyp_graphemes = graphemes(reference), graphemes(prediction)
    grapheme_edits = Levenshtein.distance(ref_graphemes, hyp_graphemes)
    return {
        "cer": error_rate(edits, len(reference)),
        "edits": edits,
        "ref_chars": len(reference),
        "wer": error_rate(word_edits, len(ref_words)),
        "word_edits": word_edits,
        "ref_words": len(ref_words),
        "ger": error_rate(grapheme_edits, len(ref_graphemes)),
        "grapheme_edits": grapheme_edits,
        "ref_graphemes": len(ref_graphemes),
        "exact": reference == prediction,
        "empty": prediction == "",
    }


def aggregate_scores(samples: Sequence[dict]) -> dict:
    """Corpus scores from per-sample scores (`sample_scores` dicts), e.g. gathered from all ranks.

    Keys: `n`; `cer` (total edits / total reference chars), `mean_cer` (mean per-sample CER),
    `wer`, `ger` (same corpus rule at word and grapheme level), `exact_match` (fraction of exact
    predictions), `empty_predictions` (count); and the totals `edits`, `ref_chars`,
    `word_edits`, `ref_words`, `grapheme_edits`, `ref_graphemes`.

    Raises ValueError on no samples: an evaluation that saw nothing has no error rate, and a
    made-up 0.0 would read as perfect.
    """
    if not samples:
        raise ValueError("no samples to score: the evaluation set is empty")
    totals = {
        key: sum(s[key] for s in samples)
        for key in ("edits", "ref_chars", "word_edits", "ref_words", "grapheme_edits", "ref_graphemes")
    }
    n = len(samples)
    return {
        "n": n,
        "cer": error_rate(totals["edits"], totals["ref_chars"]),
        "mean_cer": sum(s["cer"] for s in samples) / n,
        "wer": error_rate(totals["word_edits"], totals["ref_words"]),
        "ger": error_rate(totals["grapheme_edits"], totals["ref_graphemes"]),
        "exact_match": sum(bool(s["exact"]) for s in samples) / n,
        "empty_predictions": sum(bool(s["empty"]) for s in samples),
        **totals,
    }


def corpus_scores(
    references: Sequence[str], predictions: Sequence[str], *, normalize_text: bool = True
) -> dict:
    """Corpus scores of generated `predictions` against `references` (see `aggregate_scores`).

    Every pair counts: empty predictions are all deletions, never dropped.

    >>> c = corpus_scores(["ক্ষমা", "আমি"], ["কমা", "আমি"])
    >>> (c["n"], c["cer"], c["ger"], c["wer"], c["exact_match"])
    (2, 0.25, 0.25, 0.5, 0.5)
    """
    if len(references) != len(predictions):
        raise ValueError(
            f"got {len(references)} references but {len(predictions)} predictions; they must pair up"
        )
    return aggregate_scores(
        [sample_scores(r, p, normalize_text=normalize_text) for r, p in zip(references, predictions)]
    )
