"""Non-finite steps (DESIGN decision 8): skipped and counted, weights untouched; repeated ones stop the run.

The loss is made non-finite on chosen optimizer steps by wrapping `SupervisedLossModel.forward`, the
way an fp16 overflow would show up: the gradient becomes NaN, the step must not reach the weights.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from banglaocr.errors import UserError
from banglaocr.train import loop
from train_helpers import train, trainable


def poison_steps(monkeypatch, bad_calls: set[int] | None) -> list[int]:
    """Multiply the loss by NaN on the given forward calls (all calls when None); returns the call log."""
    original = loop.SupervisedLossModel.forward
    calls: list[int] = []

    def forward(self, *args, **kwargs):
        loss = original(self, *args, **kwargs)
        calls.append(len(calls))
        if bad_calls is None or calls[-1] in bad_calls:
            return loss * math.nan
        return loss

    monkeypatch.setattr(loop.SupervisedLossModel, "forward", forward)
    return calls


def test_nonfinite_steps_are_skipped_and_counted(tmp_path, monkeypatch):
    # Steps 3 and 4 (forward calls 2 and 3 with one micro-batch per step) are poisoned.
    poison_steps(monkeypatch, {2, 3})
    summary = train(tmp_path / "run", "train.max_steps=6", "train.save_steps=2", "train.max_nonfinite_steps=3")
    assert summary["nonfinite_steps"] == 2 and summary["steps"] == 6
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all(math.isfinite(row["loss"]) for row in rows if row["step"] not in (3, 4))
    # A window of skipped steps only has no loss: never NaN in metrics.jsonl (invalid JSON for many readers).
    assert all(row["loss"] is None for row in rows if row["step"] in (3, 4) and "samples_per_s" in row)
    # Training went on after the skipped steps with finite weights (NaN gradients never reached them).
    weights = trainable(tmp_path / "run" / "checkpoints" / "step-6")
    assert all(torch.isfinite(tensor).all() for tensor in weights.values())


def test_skipped_step_leaves_weights_unchanged(tmp_path, monkeypatch):
    poison_steps(monkeypatch, {2})  # the third step is poisoned
    train(tmp_path / "run", "train.max_steps=3", "train.save_steps=1", "train.keep_last=3")
    before = trainable(tmp_path / "run" / "checkpoints" / "step-2")
    after = trainable(tmp_path / "run" / "checkpoints" / "step-3")
    assert all(torch.equal(before[name], after[name]) for name in before)


def test_repeated_nonfinite_steps_stop_with_a_clear_message(tmp_path, monkeypatch):
    poison_steps(monkeypatch, None)
    with pytest.raises(UserError, match=r"stopped at step 3: 3 optimizer steps in a row had non-finite gradients"):
        train(tmp_path / "run", "train.max_steps=10", "train.max_nonfinite_steps=3")


def test_a_skipped_step_does_not_poison_the_logged_window(tmp_path, monkeypatch):
    """Log every 3 steps, step 2 non-finite: the row of step 3 is the mean loss of steps 1 and 3, and the
    summary's final loss is finite."""
    poison_steps(monkeypatch, {1})
    summary = train(tmp_path / "run", "train.max_steps=6", "train.log_steps=3")
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    logged = [row for row in rows if "samples_per_s" in row]
    assert [row["step"] for row in logged] == [3, 6]
    assert all(math.isfinite(row["loss"]) for row in logged)
    assert summary["nonfinite_steps"] == 1 and math.isfinite(summary["final_loss"])
