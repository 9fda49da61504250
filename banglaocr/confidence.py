"""The model's own confidence in a reading, and how well confidence ranks errors.

A reading's confidence comes from the probabilities the model gave the tokens it chose (greedy: the
softmax probability of each chosen token, the end-of-text token included):

- `sequence`: their product - the probability of the whole reading;
- `lowest`: the smallest of them - the one place the model hesitated most;
- `clusters`: per grapheme cluster of the text, the product of the probabilities of the tokens that
  make up its bytes (a token may carry half a letter, a letter may take two tokens).

`TokenProbabilities` collects the chosen tokens' log-probabilities inside `generate` (one reduction
over the vocabulary per step; nothing the size of the vocabulary is kept beyond one step).
`auroc`, `coverage_table` and `reliability_bins` measure confidence against exact match (eval).

>>> c = Confidence.from_token_logprobs([-0.1, -0.7, -0.05], [("ক", [0]), ("লম", [1])])
>>> round(c.sequence, 3), round(c.lowest, 3), [(t, round(p, 3)) for t, p in c.clusters]
(0.427, 0.497, [('ক', 0.905), ('লম', 0.497)])
"""

from __future__ import annotations

import difflib
import math
import os
from dataclasses import dataclass
from typing import Any, Sequence

from banglaocr.text import graphemes, normalize


@dataclass(frozen=True)
class Confidence:
    """How sure the model was of one reading (probabilities in [0, 1])."""

    sequence: float
    """The product of the chosen tokens' probabilities, the end-of-text token included."""
    lowest: float
    """The lowest chosen-token probability."""
    clusters: tuple[tuple[str, float], ...] = ()
    """(grapheme cluster of the text, the product of the probabilities of its tokens)."""

    @classmethod
    def from_token_logprobs(cls, logprobs: Sequence[float], clusters: Sequence[tuple[str, Sequence[int]]]):
        """From the chosen tokens' log-probabilities and each cluster's token indices."""
        if not logprobs:
            return cls(sequence=1.0, lowest=1.0)
        per_cluster = tuple((text, math.exp(sum(logprobs[i] for i in tokens))) for text, tokens in clusters)
        return cls(sequence=math.exp(sum(logprobs)), lowest=math.exp(min(logprobs)), clusters=per_cluster)

    def to_row(self) -> dict:
        """The keys a predict/eval row carries (4 decimal places; clusters as [text, p] pairs)."""
        return {"confidence": round(self.sequence, 4), "lowest_token_confidence": round(self.lowest, 4),
                "clusters": [[text, round(p, 4)] for text, p in self.clusters]}


class TokenProbabilities:
    """A logits processor for `generate` (num_beams=1) that notes each row's chosen-token log-probability.

    At step t it sees the processed scores; the token chosen from them arrives as the last input id of step
    t+1 (the last step's token is read from the finished sequences: `finish`). Put it last in the list, so the
    scores it sees are those the choice was made from. Memory: the previous step's scores, one [B, V] tensor.

    >>> import torch
    >>> probe = TokenProbabilities()
    >>> _ = probe(torch.tensor([[9]]), torch.tensor([[0.0, 2.0]]))
    >>> _ = probe(torch.tensor([[9, 1]]), torch.tensor([[1.0, 1.0]]))
    >>> [round(v, 4) for v in probe.finish(torch.tensor([[9, 1, 0]]))[0]]
    [-0.1269, -0.6931]
    """

    def __init__(self) -> None:
        self.steps: list = []  # per step, a [B] tensor of chosen-token log-probabilities
        self._previous: tuple | None = None  # the last step's (scores, logsumexp)

    def __call__(self, input_ids, scores):
        import torch

        self._note(input_ids[:, -1])
        values = scores.detach().float()
        # Held, not copied: generate makes a new scores tensor each step and never writes into an old one.
        self._previous = (values, torch.logsumexp(values, dim=-1))
        return scores

    def _note(self, chosen) -> None:
        if self._previous is not None:
            values, lse = self._previous
            self.steps.append(values.gather(1, chosen.to(values.device).view(-1, 1)).squeeze(1) - lse)
            self._previous = None

    def finish(self, sequences) -> list[list[float]]:
        """Per row, the log-probabilities of every generated token (read once, after generation)."""
        import torch

        self._note(sequences[:, -1])
        if not self.steps:
            return [[] for _ in range(sequences.shape[0])]
        return torch.stack(self.steps, dim=1).cpu().tolist()


def token_spans(tokenizer: Any, tokens: Sequence[int]) -> tuple[str, list[list[int]]]:
    """The decoded text of `tokens` and, per character of it, the indices of the tokens that make it up.

    Tokenizer-agnostic: prefixes are decoded one token longer each time; a character belongs to the
    tokens since the last one that completed a character, up to the one that completed it (a byte-level
    token may end inside a letter: the decoder then shows U+FFFD, which is not counted as written).

    >>> from banglaocr.model.tokenizers import build_char_tokenizer
    >>> tok = build_char_tokenizer()
    >>> token_spans(tok, tok("কলম", add_special_tokens=False)["input_ids"])
    ('কলম', [[0], [1], [2]])
    """
    text = tokenizer.decode(list(tokens), skip_special_tokens=True)
    spans: list[list[int]] = []
    done, pending = 0, []
    for k in range(1, len(tokens) + 1):
        pending.append(k - 1)
        prefix = tokenizer.decode(list(tokens[:k]), skip_special_tokens=True).rstrip("\ufffd")
        complete = len(os.path.commonprefix([prefix, text]))
        if complete > done:
            spans.extend(list(pending) for _ in range(complete - done))
            done, pending = complete, []
    spans.extend(list(pending) for _ in range(len(text) - done))
    return text, spans


def cluster_tokens(raw: str, spans: list[list[int]]) -> list[tuple[str, list[int]]]:
    """The grapheme clusters of `normalize(raw)`, each with the token indices of the raw characters it came
    from (aligned character by character: normalisation composes, drops joiners and spaces).

    >>> cluster_tokens("কলম", [[0], [1], [1, 2]])
    [('ক', [0]), ('ল', [1]), ('ম', [1, 2])]
    >>> cluster_tokens("ক\u200cল", [[0], [1], [2]])
    [('ক', [0]), ('ল', [2])]
    """
    text = normalize(raw)
    sources: list[set[int]] = [set() for _ in text]
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, raw, text, autojunk=False).get_opcodes():
        if op == "equal":
            for offset in range(i2 - i1):
                sources[j1 + offset].update(spans[i1 + offset])
        elif op in ("replace", "insert"):
            # A composed letter comes from the whole raw block; an inserted one from its neighbour.
            block = range(i1, i2) if i2 > i1 else range(max(i1 - 1, 0), min(i1 + 1, len(raw)))
            for j in range(j1, j2):
                for i in block:
                    sources[j].update(spans[i])
    result, at, carried = [], 0, set()
    for cluster in graphemes(text):
        tokens = carried.union(*sources[at:at + len(cluster)])
        at += len(cluster)
        if cluster == " ":  # a space is no letter: its tokens count with the next word's first cluster
            carried = tokens
            continue
        carried = set()
        result.append((cluster, sorted(tokens)))
    return result


def reading_confidence(tokenizer: Any, tokens: Sequence[int], logprobs: Sequence[float]) -> Confidence:
    """`Confidence` of one reading: `tokens` the generated ids without the end token, `logprobs` those of
    every generated token kept (the end token's last, when the reading ended with one)."""
    raw, spans = token_spans(tokenizer, tokens)
    return Confidence.from_token_logprobs(list(logprobs), cluster_tokens(raw, spans))


# --------------------------------------------------------------------------- confidence against errors


def auroc(confidences: Sequence[float], correct: Sequence[bool]) -> float | None:
    """Area under the ROC curve of confidence as a detector of correct readings: the probability that a
    correct reading is more confident than a wrong one (ties count half). None when either kind is missing.

    >>> auroc([0.9, 0.8, 0.3, 0.2], [True, True, False, False])
    1.0
    >>> auroc([0.5, 0.5], [True, False])
    0.5
    >>> auroc([0.9], [True]) is None
    True
    """
    pairs = sorted(zip(confidences, correct))
    n_right = sum(1 for _, ok in pairs if ok)
    n_wrong = len(pairs) - n_right
    if n_right == 0 or n_wrong == 0:
        return None
    # Rank-sum (Mann-Whitney U) with mid-ranks for ties.
    rank_sum, i = 0.0, 0
    while i < len(pairs):
        j = i
        while j < len(pairs) and pairs[j][0] == pairs[i][0]:
            j += 1
        mid_rank = (i + 1 + j) / 2
        rank_sum += mid_rank * sum(1 for _, ok in pairs[i:j] if ok)
        i = j
    return (rank_sum - n_right * (n_right + 1) / 2) / (n_right * n_wrong)


COVERAGES = (1.0, 0.9, 0.8, 0.5)
"""The shares of most confident readings `coverage_table` reports."""


def coverage_table(confidences: Sequence[float], predictions: Sequence[str], references: Sequence[str],
                   coverages: Sequence[float] = COVERAGES) -> list[dict]:
    """For each coverage c: the CER and exact-match accuracy of the c most confident readings.

    >>> rows = coverage_table([0.9, 0.2], ["কলম", "খা"], ["কলম", "খাতা"], coverages=(1.0, 0.5))
    >>> [(r["coverage"], r["n"], r["exact_match"]) for r in rows]
    [(1.0, 2, 0.5), (0.5, 1, 1.0)]
    """
    from banglaocr.metrics import corpus_scores

    order = sorted(range(len(confidences)), key=lambda i: -confidences[i])
    rows = []
    for coverage in coverages:
        kept = order[:max(1, round(coverage * len(order)))] if order else []
        preds = [predictions[i] for i in kept]
        refs = [references[i] for i in kept]
        scores = corpus_scores(refs, preds) if kept else {}
        rows.append({"coverage": coverage, "n": len(kept),
                     "min_confidence": round(min((confidences[i] for i in kept), default=0.0), 4),
                     "cer": scores.get("cer"), "exact_match": scores.get("exact_match")})
    return rows


def reliability_bins(confidences: Sequence[float], correct: Sequence[bool], bins: int = 10) -> list[dict]:
    """Readings grouped by confidence into `bins` equal-width bins: mean confidence, accuracy, count.

    >>> [(b["count"], b["accuracy"]) for b in reliability_bins([0.05, 0.95, 0.99], [False, True, False], 2)]
    [(1, 0.0), (2, 0.5)]
    """
    groups: list[list[tuple[float, bool]]] = [[] for _ in range(bins)]
    for confidence, ok in zip(confidences, correct):
        groups[min(int(confidence * bins), bins - 1)].append((confidence, ok))
    return [{"low": k / bins, "high": (k + 1) / bins, "count": len(group),
             "confidence": sum(c for c, _ in group) / len(group) if group else None,
             "accuracy": sum(ok for _, ok in group) / len(group) if group else None}
            for k, group in enumerate(groups)]


def confidence_report(rows: Sequence[dict]) -> dict:
    """How well confidence ranks errors over eval's rows (`reference`, `prediction`, `confidence`; rows
    without a confidence - blank images, non-finite logits - are counted, not ranked).

    >>> report = confidence_report([{"reference": "ক", "prediction": "ক", "confidence": 0.9},
    ...                             {"reference": "খ", "prediction": "গ", "confidence": 0.3}])
    >>> report["auroc"], report["ranked"], report["coverage"][0]["exact_match"]
    (1.0, 2, 0.5)
    """
    ranked = [row for row in rows if row.get("confidence") is not None]
    confidences = [row["confidence"] for row in ranked]
    correct = [normalize(row["prediction"]) == normalize(row["reference"]) for row in ranked]
    return {"auroc": auroc(confidences, correct), "ranked": len(ranked), "without_confidence": len(rows) - len(ranked),
            "coverage": coverage_table(confidences, [r["prediction"] for r in ranked],
                                       [r["reference"] for r in ranked]) if ranked else [],
            "bins": reliability_bins(confidences, correct)}
