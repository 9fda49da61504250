"""Evaluation by generation: read labelled records with a model and score what it wrote.

ONE function, `evaluate_records`, serves the training loop (validation at every eval step, the test
split at the end) and `banglaocr eval`. Metrics come from real generation (DESIGN decision 5),
never from teacher forcing. Images are decoded and read a chunk at a time (`infer.read_images`),
so memory holds one chunk of images, not the split; under several processes the width-ordered
batches of a chunk are dealt out and the texts gathered (`read_images`): every process gets every row,
in input order, and the scores are exactly those of one process.

A sample whose logits turned non-finite while it was read (an fp16 overflow, `infer.NONFINITE_ERROR`)
is scored as an EMPTY prediction - every reference character a deletion, never the garbage the model
wrote - marked `nonfinite` in its row and counted in the scores' `nonfinite_logits`, so an overflow
can only make the scores worse, and says so.

>>> import torch
>>> from banglaocr.config import ModelConfig
>>> from banglaocr.data.sources import Record
>>> from banglaocr.infer import default_read_settings
>>> from banglaocr.model.factory import load_model
>>> _ = torch.manual_seed(0)
>>> tiny = load_model(ModelConfig(name_or_path="demo", init="tiny"), None)
>>> result = evaluate_records(tiny.model, tiny.tokenizer, [Record(id="a", text="কলম", image="missing.png")],
...                           default_read_settings())
>>> result.rows, result.unreadable, result.scores
([], [('a', 'no such file: missing.png')], None)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

from banglaocr.infer import ReadSettings, read_images
from banglaocr.metrics import aggregate_scores, sample_scores

CHUNK_IMAGES = 1024
"""Images decoded at once (per process): bounds memory whatever the size of the split."""


@dataclass
class Evaluation:
    """What `evaluate_records` found, the same on every process."""

    scores: dict | None
    """`metrics.aggregate_scores` of the rows (CER, WER, ...); None when no image could be read."""
    rows: list[dict]
    """One per readable record, in input order: `id`, `reference`, `prediction`, its `sample_scores`, and
    `nonfinite` (True: the logits turned non-finite; `prediction` is then ""), and `confidence` (the
    probability of the whole reading, `banglaocr.confidence`; None for blank images and non-finite rows)."""
    unreadable: list[tuple[str, str]]
    """(record id, error) of each image that could not be decoded, in input order."""


def evaluate_records(model: Any, tokenizer: Any, records: Sequence[Any], settings: ReadSettings, *,
                     batch_size: int = 16, num_beams: int = 1, process_index: int = 0, num_processes: int = 1,
                     on_batch: Callable[[int], None] | None = None,
                     chunk_size: int | None = None) -> Evaluation:
    """Generate for `records` and score (with several processes, each generates its share of the batches).

    `model` is a Qwen3-VL or a PeftModel around one (not a DDP wrapper); `records` have `id`, `text`
    and whatever `open_image` reads. With several processes every process must call this with the
    same records (a collective gathers the texts). `on_batch(n)` reports progress of this process.
    `chunk_size`: images decoded at once (default `CHUNK_IMAGES`).
    """
    rows, unreadable = [], []
    readings = read_images(model, tokenizer, records, settings, batch_size=batch_size, num_beams=num_beams,
                           chunk_size=chunk_size or CHUNK_IMAGES, on_batch=on_batch, process_index=process_index,
                           num_processes=num_processes)
    for record, reading in zip(records, readings):
        if reading.error is not None and not reading.nonfinite:
            unreadable.append((record.id, reading.error))
            continue
        prediction = "" if reading.nonfinite else reading.text
        confidence = reading.confidence.sequence if reading.confidence is not None else None
        rows.append({"id": record.id, "reference": record.text, "prediction": prediction,
                     **sample_scores(record.text, prediction), "nonfinite": reading.nonfinite,
                     "confidence": confidence})
    scores = None
    if rows:
        scores = {**aggregate_scores(rows), "nonfinite_logits": sum(row["nonfinite"] for row in rows)}
    return Evaluation(scores=scores, rows=rows, unreadable=unreadable)
