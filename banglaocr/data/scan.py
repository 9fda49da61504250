"""scan-dims: image and label statistics of a data set -> an image budget and `max_new_tokens`.

Word crops are small and wide. Qwen's image processor upscales every image to at least
65,536 pixels (>= 64 visual tokens per word); a budget derived from the data (a target
height, multiple of 32, and a maximum width) keeps a word at a handful of visual tokens,
which is the biggest single speed lever for word OCR.

The sample is a seeded random sample (not the first N rows: data sets are often sorted),
and image sizes come from the image headers, without decoding pixels.

>>> stats = {"height": [40, 50, 60], "width": [120, 200, 260], "aspect": [3.0, 4.0, 4.3],
...          "tokens": [4, 6, 9]}
>>> recommend_budget(stats, max_height=64, padding_buffer=0.1)["height"]
64
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from banglaocr.config import ImageConfig
from banglaocr.data.pixels import budget_width, visual_tokens
from banglaocr.data.sources import Record, SkipReport, UnreadableImage, image_size, unreadable_reason
from banglaocr.text import graphemes

PERCENTILES = (5, 50, 95, 99, 100)
# Qwen3-VL-2B's image processor: size = {"shortest_edge": 65536, "longest_edge": 16777216}; these
# are min / max PIXELS (not edges), and sizes are multiples of patch 16 x merge 2 = 32.
PROCESSOR_MIN_PIXELS = 65536
PROCESSOR_MAX_PIXELS = 16777216
PROCESSOR_FACTOR = 32
PROCESSOR_MAX_ASPECT = 200  # smart_resize raises above it (banglaocr's own budget squeezes such crops instead)


@dataclass
class ScanResult:
    """Per-image measurements of a sample, the budget recommended from them, and what was skipped."""

    columns: dict[str, list[float]]
    budget: dict
    skipped: SkipReport = field(default_factory=SkipReport)
    sampled: int = 0
    population: int = 0

    def table(self) -> dict[str, dict[str, float]]:
        """Percentile table: {column: {"p5": .., "p50": .., "p95": .., "p99": .., "max": ..}}."""
        return {name: percentile_row(values) for name, values in self.columns.items()}

    def as_dict(self) -> dict:
        return {"sampled": self.sampled, "population": self.population, "percentiles": self.table(),
                "budget": self.budget, "skipped": self.skipped.as_dict()}


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default method) of a non-empty list.

    >>> percentile([1, 2, 3, 4], 50)
    2.5
    """
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def percentile_row(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    return {("max" if q == 100 else f"p{q}"): percentile(values, q) for q in PERCENTILES}


def processor_default_tokens(height: int, width: int) -> int | None:
    """Visual tokens Qwen3-VL's default image processor gives an image of this size; None for an image
    it refuses (aspect ratio over 200 either way).

    >>> processor_default_tokens(32, 128), processor_default_tokens(10, 3100)
    (64, None)
    """
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

    if max(height, width) / min(height, width) > PROCESSOR_MAX_ASPECT:
        return None
    resized_h, resized_w = smart_resize(height, width, factor=PROCESSOR_FACTOR,
                                        min_pixels=PROCESSOR_MIN_PIXELS, max_pixels=PROCESSOR_MAX_PIXELS)
    return visual_tokens(resized_h, resized_w)


def sample_records(records: list[Record], n: int, seed: int) -> list[Record]:
    """A seeded random sample of at most n records (all of them when n >= len)."""
    if n >= len(records):
        return list(records)
    return random.Random(seed).sample(records, n)


def _ceil_to(value: float, multiple: int) -> int:
    return max(multiple, int(math.ceil(value / multiple)) * multiple)


def recommend_budget(columns: dict[str, list[float]], max_height: int = 64, padding_buffer: float = 0.1,
                     stretch: float = 1.0, max_width_cap: int = 1024) -> dict:
    """Image budget and generation length from measured columns.

    - height: the median crop height rounded up to a multiple of 32, capped at `max_height`
      (32 pixels = one row of visual tokens; word crops rarely need more than two rows).
    - max_width: the width the p99 aspect ratio needs at that height, plus `padding_buffer`
      (so the widest ordinary words are not squeezed), rounded up to a multiple of 32.
    - max_new_tokens: the longest label in model tokens plus `padding_buffer`, plus one for `<|im_end|>`.
    """
    height = min(_ceil_to(max_height, 32), _ceil_to(percentile(columns["height"], 50), 32))
    p99_aspect = percentile(columns["aspect"], 99)
    max_width = min(max_width_cap, _ceil_to(height * p99_aspect * stretch * (1 + padding_buffer), 32))
    max_tokens = max(columns["tokens"]) if columns.get("tokens") else 16
    return {
        "height": height,
        "max_width": max_width,
        "min_width": 32,
        "max_new_tokens": int(math.ceil(max_tokens * (1 + padding_buffer))) + 1,
    }


def scan_records(records: list[Record], tokenizer, samples: int = 1000, seed: int = 0, max_height: int = 64,
                 padding_buffer: float = 0.1, stretch: float = 1.0) -> ScanResult:
    """Measure a seeded sample of records; recommend a budget; count unreadable images.

    `tokenizer` counts label length in model tokens (the real Qwen tokenizer for the 2B model).
    """
    chosen = sample_records(records, samples, seed)
    skipped = SkipReport()
    heights, widths, aspects, chars, clusters, tokens = [], [], [], [], [], []
    for record in chosen:
        try:
            width, height = image_size(record)
        except UnreadableImage as err:
            skipped.add(unreadable_reason(str(err)), record.id)
            continue
        if width <= 0 or height <= 0:
            skipped.add("zero-size image", record.id)
            continue
        heights.append(height)
        widths.append(width)
        aspects.append(width / height)
        chars.append(len(record.text))
        clusters.append(len(graphemes(record.text)))
        tokens.append(len(tokenizer(record.text, add_special_tokens=False)["input_ids"]))
    if not heights:
        from banglaocr.errors import UserError

        raise UserError(f"no readable image in the sample of {len(chosen)} ({skipped.summary()})")
    columns = {"height": heights, "width": widths, "aspect": aspects, "chars": chars,
               "graphemes": clusters, "tokens": tokens}
    budget = recommend_budget(columns, max_height=max_height, padding_buffer=padding_buffer, stretch=stretch)
    image_cfg = ImageConfig(height=budget["height"], max_width=budget["max_width"],
                            min_width=budget["min_width"], stretch=stretch)
    budget_tokens = [visual_tokens(image_cfg.height, budget_width(h, w, image_cfg)) for w, h in zip(widths, heights)]
    # Images the default processor refuses have no count there (the report says how many).
    default_tokens = [t for t in (processor_default_tokens(h, w) for w, h in zip(widths, heights)) if t is not None]
    columns["visual_tokens_budget"] = budget_tokens
    columns["visual_tokens_default"] = default_tokens
    squeezed = sum(1 for w, h in zip(widths, heights) if w * budget["height"] * stretch / h > budget["max_width"])
    budget["squeezed_fraction"] = squeezed / len(widths)
    budget["processor_refuses"] = len(widths) - len(default_tokens)
    return ScanResult(columns=columns, budget=budget, skipped=skipped, sampled=len(chosen),
                      population=len(records))


def budget_fragment(budget: dict) -> dict:
    """The recipe fragment `--write` emits (sections `data.image` and `eval`), valid in any recipe."""
    return {
        "data": {"image": {"height": budget["height"], "max_width": budget["max_width"],
                           "min_width": budget["min_width"]}},
        "eval": {"max_new_tokens": budget["max_new_tokens"]},
    }
