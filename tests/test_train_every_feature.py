"""The loop with every optional feature on at once: focal loss, label smoothing, confusion weights (from
the evaluations), bitsandbytes' 8-bit AdamW, DataLoader worker processes, LoRA dropout and augmentation.

The other loop tests switch these off to stay simple; this one checks that they work together, that
the confusion weights really change the training, and that a SIGTERM + `--resume auto` is still exact.
"""

from __future__ import annotations

import os
import signal

import pytest

import train_helpers as helpers
from banglaocr.train.loop import TrainingInterrupted
from test_train_resume import sigterm_after_step

STEPS = 8
EVERY_FEATURE = (
    # The shipped reader as the base: its predictions are partly right, so the confusion table is uneven
    # (a random model's all-wrong predictions would give every character the same weight).
    "model.name_or_path=tiny", "model.init=pretrained", "data.image.stretch=2.0", "data.image.tight_crop=true",
    "lora.r=4", "lora.alpha=8", "lora.dropout=0.1",
    "loss.focal_gamma=2.0", "loss.label_smoothing=0.1", "loss.confusion_weight=0.5", "loss.confusion_start_step=0",
    "train.optimizer=adamw8bit", "data.num_workers=2",
    "augment.enabled=true", "augment.probability=1.0",
    f"train.max_steps={STEPS}", "train.eval_steps=3", "eval.max_samples=40", "eval.max_new_tokens=12",
    "train.scheduler=cosine", "train.warmup_steps=2", "train.lr=2e-3", "train.keep_last=100",
)


# A data set of its own with 40 validation words, so that letters reach the confusion table's minimum
# support (5) and the weights really differ between letters.
def every_feature(*extra: str) -> tuple[str, ...]:
    folder = os.path.join(os.environ["BANGLAOCR_CACHE"], "every-feature-synth")
    return (*EVERY_FEATURE, "data.synth.n=400", f"data.synth.dir={folder}", *extra)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("every-feature") / "run"
    summary = helpers.train(out, *every_feature(), "train.save_steps=4")
    return out, summary


def test_runs_to_the_end_with_finite_losses(reference):
    out, summary = reference
    assert summary["steps"] == STEPS and summary["nonfinite_steps"] == 0
    losses = [row["loss"] for row in helpers.log_rows(out)]
    assert len(losses) == STEPS and all(loss == loss and 0 < loss < 100 for loss in losses)
    assert [row["step"] for row in helpers.eval_rows(out)] == [3, 6, 8]


def test_confusion_weights_change_the_training(reference, tmp_path):
    """From the first evaluation (step 3) on, the weighted loss trains differently than the plain one."""
    out, _ = reference
    plain = tmp_path / "plain"
    helpers.train(plain, *every_feature(), "loss.confusion_weight=0.0", "train.save_steps=4")
    weighted_rows, plain_rows = helpers.log_rows(out), helpers.log_rows(plain)
    # Up to the first evaluation there is no table yet: identical.
    assert [r["loss"] for r in weighted_rows[:3]] == [r["loss"] for r in plain_rows[:3]]
    assert weighted_rows[4]["loss"] != plain_rows[4]["loss"]
    assert helpers.max_abs_diff(helpers.trainable(out / "checkpoints" / f"step-{STEPS}"),
                                helpers.trainable(plain / "checkpoints" / f"step-{STEPS}")) > 0


def test_sigterm_then_resume_auto_is_exact(reference, tmp_path, monkeypatch):
    out_ref, _ = reference
    out = tmp_path / "run"
    sigterm_after_step(monkeypatch, 5, signal.SIGTERM)
    with pytest.raises(TrainingInterrupted):
        helpers.train(out, *every_feature(), "train.save_steps=4")
    monkeypatch.undo()
    helpers.train(out, *every_feature(), "train.save_steps=4", resume="auto")
    assert [r["loss"] for r in helpers.log_rows(out)] == [r["loss"] for r in helpers.log_rows(out_ref)]
    final = helpers.trainable(out / "checkpoints" / f"step-{STEPS}")
    assert helpers.max_abs_diff(final, helpers.trainable(out_ref / "checkpoints" / f"step-{STEPS}")) <= 1e-6
