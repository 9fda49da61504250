"""Evaluation by generation (banglaocr.evaluation): one function for the training loop and `banglaocr eval`,
reading a chunk of images at a time, rows in input order, unreadable images reported."""

from __future__ import annotations

import pytest
import torch

import train_helpers as helpers
from banglaocr import evaluation, infer
from banglaocr.config import ModelConfig
from banglaocr.data.sources import Record, load_splits, resolve_source
from banglaocr.infer import default_read_settings
from banglaocr.model.factory import load_model


def strip_confidence(rows: list[dict]) -> list[dict]:
    return [{key: value for key, value in row.items() if key != "confidence"} for row in rows]


@pytest.fixture()
def generate_sizes(monkeypatch):
    """The number of images of every `generate_readings` call (= decoded images held at once)."""
    sizes: list[int] = []
    original = infer.generate_readings

    def recording(model, tokenizer, images, *args, **kwargs):
        sizes.append(len(images))
        return original(model, tokenizer, images, *args, **kwargs)

    monkeypatch.setattr(infer, "generate_readings", recording)
    return sizes


def records(n: int) -> list[Record]:
    recipe = helpers.tiny_recipe()
    splits = load_splits(resolve_source(recipe.data, helpers.synth_dir().parent))
    return (splits.train + splits.val + splits.test)[:n]


def test_chunks_bound_the_images_in_memory_and_give_the_same_rows(generate_sizes):
    torch.manual_seed(0)
    tiny = load_model(ModelConfig(name_or_path="t", init="tiny"), None)
    chosen = records(11)
    chosen.insert(4, Record(id="broken", text="ক", image=b"not an image"))
    whole = evaluation.evaluate_records(tiny.model, tiny.tokenizer, chosen, default_read_settings(), batch_size=4)
    assert generate_sizes == [11]
    generate_sizes.clear()
    chunked = evaluation.evaluate_records(tiny.model, tiny.tokenizer, chosen, default_read_settings(),
                                          batch_size=4, chunk_size=3)
    assert max(generate_sizes) <= 3 and sum(generate_sizes) == 11
    assert [row["id"] for row in chunked.rows] == [r.id for r in chosen if r.id != "broken"]  # input order
    # Confidence is a float of the batch the image was read in (padding changes the last digits).
    assert strip_confidence(chunked.rows) == strip_confidence(whole.rows) and chunked.scores == whole.scores
    assert [r["confidence"] for r in chunked.rows] == pytest.approx([r["confidence"] for r in whole.rows], rel=1e-3)
    assert [sample_id for sample_id, _ in chunked.unreadable] == ["broken"]


def test_the_training_loop_scores_its_test_split_in_chunks(tmp_path, monkeypatch, generate_sizes):
    """Peak memory of the end-of-run test evaluation does not grow with the split: at most CHUNK_IMAGES
    decoded images at a time (here 2, on a test split of more)."""
    monkeypatch.setattr(evaluation, "CHUNK_IMAGES", 2)
    summary = helpers.train(tmp_path / "run", "train.max_steps=1")
    assert summary["test"]["n"] > 2
    assert generate_sizes and max(generate_sizes) <= 2


@pytest.mark.parametrize("num_beams", [1, 2])
def test_non_finite_logits_are_scored_as_empty_predictions_never_as_garbage(num_beams):
    """An injected NaN in one row's logits (an fp16 overflow's stand-in) flags that row: empty prediction,
    marked, counted; the other rows read as without it."""
    torch.manual_seed(0)
    tiny = load_model(ModelConfig(name_or_path="t", init="tiny"), None)
    chosen = records(6)
    settings = default_read_settings()
    clean = evaluation.evaluate_records(tiny.model, tiny.tokenizer, chosen, settings, batch_size=8,
                                        num_beams=num_beams)
    steps = {"n": 0}

    def overflow(_, __, output):
        steps["n"] += 1
        if steps["n"] == 1:  # the first step: batch row 0 (all its beams) turns NaN
            output = output.clone()
            output[:num_beams, -1, :] = float("nan")
        return output

    handle = tiny.model.lm_head.register_forward_hook(overflow)
    try:
        hit = evaluation.evaluate_records(tiny.model, tiny.tokenizer, chosen, settings, batch_size=8,
                                          num_beams=num_beams)
    finally:
        handle.remove()
    flagged = [row for row in hit.rows if row["nonfinite"]]
    assert hit.scores["nonfinite_logits"] == len(flagged) == 1
    assert flagged[0]["prediction"] == "" and flagged[0]["cer"] == 1.0 and flagged[0]["empty"]
    assert [row for row in hit.rows if not row["nonfinite"]] == [row for row in clean.rows
                                                                  if row["id"] != flagged[0]["id"]]
    assert clean.scores["nonfinite_logits"] == 0 and not any(row["nonfinite"] for row in clean.rows)
