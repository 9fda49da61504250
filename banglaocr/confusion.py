"""Which reference characters the model gets wrong, and per-token loss weights from that.

Statistics come from edit-operation ALIGNMENTS between generated predictions and their
references (`banglaocr.metrics.edit_ops`), never from comparing position i with position i:
one missed letter would otherwise make every following letter look wrong. Both sides are
normalised first (`banglaocr.text.normalize`), as for the metrics.

Per reference unit (a code point at `level='char'`, a grapheme cluster at
`level='grapheme'`): `support` (occurrences in references), `substitutions` (by predicted
unit) and `deletions`. Predicted units with no reference counterpart are `insertions`; they
belong to no reference unit and give no weight.

Weights (`char_weights`): with error rate r_u = (substitutions_u + deletions_u) / support_u
and mean rate m = total errors / total support over all units,

    weight_u = clamp(r_u / m, 1.0, cap)   if support_u >= min_support, else 1.0

so a unit missed twice as often as the average letter weighs 2 (up to `cap`), rarely seen
units are not trusted, and no unit is ever down-weighted. A supervised token's weight
(`token_weights`) is the largest weight among the reference characters its offsets cover -
offsets of the tokenised reference, because a Bangla character can be 1-3 byte-level tokens
and one token can cover parts of two characters.

Everything is a count, so the same pairs in any order give the same table; training gathers the
validation rows of all processes before counting, so every process holds the same weights.

>>> stats = ConfusionStats().update(["কলম"] * 6, ["খলম"] * 3 + ["কলম"] * 3)
>>> stats.substitutions["ক"], stats.support["ক"]
({'খ': 3}, 6)
>>> weights = char_weights(stats, cap=5.0)
>>> weights["ক"], weights["ল"]
(3.0, 1.0)
>>> token_weights("কলম", [(0, 1), (1, 2), (2, 3), (0, 0)], weights)
[3.0, 1.0, 1.0, 1.0]
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from banglaocr.metrics import edit_ops
from banglaocr.text import graphemes, normalize

Level = Literal["char", "grapheme"]
_LEVELS = ("char", "grapheme")


def _units(text: str, level: Level) -> list[str]:
    return list(text) if level == "char" else graphemes(text)


def _add(counts: dict[str, int], key: str, n: int = 1) -> None:
    counts[key] = counts.get(key, 0) + n


def _sorted(counts: dict[str, int]) -> dict[str, int]:
    return {key: counts[key] for key in sorted(counts)}


def error_rates(stats: ConfusionStats) -> dict[str, float]:
    """(substitutions + deletions) / support for every reference unit seen.

    >>> error_rates(ConfusionStats().update(["কক"], ["খ"]))
    {'ক': 1.0}
    """
    return {unit: stats.errors(unit) / n for unit, n in sorted(stats.support.items())}


def char_weights(stats: ConfusionStats, cap: float, min_support: int = 5) -> dict[str, float]:
    """Loss weight per reference unit: clamp(rate / mean_rate, 1.0, cap) (module docstring).

    Units with support below `min_support` get 1.0; all weights are 1.0 when nothing was
    wrong. Keys are the units of `stats.level`.

    >>> stats = ConfusionStats().update(["কখ"] * 10, ["খখ"] * 10)
    >>> char_weights(stats, cap=1.5)
    {'ক': 1.5, 'খ': 1.0}
    """
    if cap < 1.0:
        raise ValueError(f"cap must be >= 1.0 (weights never go below 1), got {cap}")
    total_support = sum(stats.support.values())
    total_errors = sum(stats.errors(unit) for unit in stats.support)
    if total_errors == 0:
        return {unit: 1.0 for unit in sorted(stats.support)}
    mean_rate = total_errors / total_support
    weights = {}
    for unit, rate in error_rates(stats).items():
        trusted = stats.support[unit] >= min_support
        weights[unit] = min(max(rate / mean_rate, 1.0), cap) if trusted else 1.0
    return weights


def token_weights(
    answer: str,
    token_offsets: Sequence[tuple[int, int]],
    weights: dict[str, float],
    level: Level = "char",
) -> list[float]:
    """Weight of each token of the tokenised `answer`: the max weight of the characters it covers.

    `token_offsets` are (start, end) character offsets into exactly this `answer` string, e.g.
    `tokenizer(answer, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]`.
    An empty span (a special token such as `<|im_end|>` appended after the answer) gets 1.0.
    At `level='grapheme'` a character takes the weight of the grapheme cluster it belongs to.

    >>> token_weights("কখ", [(0, 1), (0, 2), (1, 2), (2, 2)], {"খ": 2.0})
    [1.0, 2.0, 2.0, 1.0]
    >>> token_weights("ক্ষমা", [(0, 3), (3, 5)], {"ক্ষ": 4.0}, level="grapheme")
    [4.0, 1.0]
    """
    if level not in _LEVELS:
        raise ValueError(f"level must be one of {_LEVELS}, got {level!r}")
    per_char = []
    for unit in _units(answer, level):
        per_char.extend([weights.get(unit, 1.0)] * len(unit))
    out = []
    for start, end in token_offsets:
        covered = per_char[max(start, 0) : min(end, len(per_char))]
        out.append(max(covered, default=1.0))
    return out


@dataclass
class ConfusionStats:
    """Counts of how reference units (characters or grapheme clusters) were recognised.

    `support[u]`: occurrences of u in the references; `substitutions[u][v]`: u read as v;
    `deletions[u]`: u missing from the prediction; `insertions[v]`: v predicted with no
    reference counterpart; `samples`: pairs seen. `update` and `merge` add counts in place
    and return `self`; `to_dict` / `from_dict` give a JSON-able copy (saved in checkpoints).
    """

    level: Level = "char"
    support: dict[str, int] = field(default_factory=dict)
    substitutions: dict[str, dict[str, int]] = field(default_factory=dict)
    deletions: dict[str, int] = field(default_factory=dict)
    insertions: dict[str, int] = field(default_factory=dict)
    samples: int = 0

    def __post_init__(self) -> None:
        if self.level not in _LEVELS:
            raise ValueError(f"level must be one of {_LEVELS}, got {self.level!r}")

    def errors(self, unit: str) -> int:
        """Substitutions + deletions of reference `unit`."""
        return sum(self.substitutions.get(unit, {}).values()) + self.deletions.get(unit, 0)

    def update(self, references: Iterable[str], predictions: Iterable[str]) -> ConfusionStats:
        """Add the aligned (reference, prediction) pairs; both sides are normalised first."""
        references, predictions = list(references), list(predictions)
        if len(references) != len(predictions):
            raise ValueError(
                f"got {len(references)} references but {len(predictions)} predictions; they must pair up"
            )
        for reference, prediction in zip(references, predictions):
            ref_units = _units(normalize(reference), self.level)
            for unit in ref_units:
                _add(self.support, unit)
            for op, ref_unit, hyp_unit in edit_ops(ref_units, _units(normalize(prediction), self.level)):
                if op == "substitute":
                    _add(self.substitutions.setdefault(ref_unit, {}), hyp_unit)
                elif op == "delete":
                    _add(self.deletions, ref_unit)
                else:
                    _add(self.insertions, hyp_unit)
            self.samples += 1
        return self

    def to_dict(self) -> dict:
        """A JSON-able copy with sorted keys: equal statistics serialise to identical text."""
        return {
            "level": self.level,
            "samples": self.samples,
            "support": _sorted(self.support),
            "substitutions": {unit: _sorted(self.substitutions[unit]) for unit in sorted(self.substitutions)},
            "deletions": _sorted(self.deletions),
            "insertions": _sorted(self.insertions),
        }

    @classmethod
    def from_dict(cls, data: dict) -> ConfusionStats:
        """Inverse of `to_dict`."""
        return cls(
            level=data["level"],
            support={k: int(v) for k, v in data["support"].items()},
            substitutions={k: {p: int(n) for p, n in row.items()} for k, row in data["substitutions"].items()},
            deletions={k: int(v) for k, v in data["deletions"].items()},
            insertions={k: int(v) for k, v in data["insertions"].items()},
            samples=int(data["samples"]),
        )
