"""fp16 as a T4 runs it, on the CPU: autocast + GradScaler (train/precision.py), an overflow that halves the scale
and skips the step, what each log row says about it, the warning lines, the stop message that names the T4
fallback, and an exact resume of the scaler state.

An overflow is injected the way an fp16 forward overflow shows up: the loss of a chosen optimizer step is
multiplied by inf, so every gradient of that step is inf/NaN.
"""

from __future__ import annotations

import io
import json
import math

import pytest
import torch
from rich.console import Console

import train_helpers as helpers
from banglaocr.errors import UserError
from banglaocr.train import loop
from banglaocr.train.precision import LOW_LOSS_SCALE
from test_train_resume import sigterm_after_step

FP16 = ("train.precision=fp16", "train.max_grad_norm=1.0")
LORA_FALLBACK = ("lora.r=4", "lora.alpha=8", "lora.dropout=0.0", "model.dtype=float32")


def overflow_on_steps(monkeypatch, steps: set[int] | None) -> None:
    """Multiply the loss by inf on the given optimizer steps (1-based; every step when None)."""
    original = loop.TrainingRun._forward_backward

    def forward_backward(self, micro, step_tokens):
        if steps is None or self.state.step + 1 in steps:
            forward = loop.SupervisedLossModel.forward
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(loop.SupervisedLossModel, "forward",
                              lambda module, *args, **kwargs: forward(module, *args, **kwargs) * math.inf)
                return original(self, micro, step_tokens)
        return original(self, micro, step_tokens)

    monkeypatch.setattr(loop.TrainingRun, "_forward_backward", forward_backward)


def train(out, *extra, resume=None):
    console = io.StringIO()
    with helpers.one_thread():
        summary = loop.run_training(helpers.tiny_recipe(*FP16, *extra), out, resume=resume,
                                    console=Console(file=console, width=300))
    return summary, console.getvalue()


def log_rows(out):
    return helpers.log_rows(out)


def test_an_overflow_skips_the_step_halves_the_scale_and_every_row_says_so(tmp_path, monkeypatch):
    overflow_on_steps(monkeypatch, {3})
    out = tmp_path / "run"
    summary, said = train(out, "train.max_steps=6", "train.save_steps=1", "train.keep_last=10")
    assert "fp16 on the CPU rehearses" in said
    rows = log_rows(out)
    assert [row["step"] for row in rows] == [1, 2, 3, 4, 5, 6]
    assert [row["loss_scale"] for row in rows] == [65536.0, 65536.0, 32768.0, 32768.0, 32768.0, 32768.0]
    assert [row["skipped_steps"] for row in rows] == [0, 0, 1, 0, 0, 0]
    assert [row["nonfinite_steps"] for row in rows] == [0, 0, 1, 1, 1, 1]
    assert rows[2]["grad_norm"] is None and rows[2]["loss"] is None
    assert all(row["grad_norm"] > 0 and math.isfinite(row["grad_norm"]) for i, row in enumerate(rows) if i != 2)
    assert summary["nonfinite_steps"] == 1
    # The skipped step never reached the weights.
    step2, step3 = helpers.trainable(out / "checkpoints" / "step-2"), helpers.trainable(out / "checkpoints" / "step-3")
    assert all(torch.equal(step2[name], step3[name]) for name in step2)
    # The scaler state is in the checkpoint (plain numbers).
    from banglaocr.train import checkpoint as ckpt

    assert ckpt.read_training_state(out / "checkpoints" / "step-4")["scaler"]["scale"] == 32768.0
    # A window with a skipped step (1 of 1 > 5%) gets its warning line.
    assert "warning: step 3: 1 of the last 1 steps were skipped (fp16 overflow); if it goes on, try model.dtype=float32" \
        in " ".join(said.split())


def test_a_falling_scale_warns_and_repeated_overflows_stop_naming_the_t4_fallback(tmp_path, monkeypatch):
    overflow_on_steps(monkeypatch, None)
    with pytest.raises(UserError) as stopped:
        train(tmp_path / "run", "train.max_steps=30", "train.max_nonfinite_steps=12", "train.log_steps=4")
    message = str(stopped.value)
    assert message.startswith("stopped at step 12: 12 optimizer steps in a row had non-finite gradients; fp16 overflow")
    assert "model.dtype=float32" in message and "bf16" in message
    rows = log_rows(tmp_path / "run")
    assert [row["loss_scale"] for row in rows] == [65536 / 2 ** 4, 65536 / 2 ** 8]  # steps 4 and 8
    # The warning comes when the scale first falls below the threshold (step 12's window is not logged: it stopped).
    assert rows[-1]["loss_scale"] >= LOW_LOSS_SCALE


def test_the_low_scale_warning_line(tmp_path, monkeypatch):
    overflow_on_steps(monkeypatch, set(range(1, 11)))  # ten halvings: 65536 -> 64
    _, said = train(tmp_path / "run", "train.max_steps=12", "train.max_nonfinite_steps=20", "train.log_steps=6")
    flat = " ".join(said.split())
    assert "warning: step 12: the fp16 loss scale fell to 64 (from 65536)" in flat
    assert flat.count("loss scale fell") == 1  # said when it fell, not again while it stays


def test_the_scaler_state_resumes_exactly(tmp_path, monkeypatch):
    """Overflow on step 3, SIGTERM after step 5, resume: the weights and the scaler state of the last step are
    those of the run that was never interrupted."""
    common = ("train.max_steps=8", "train.save_steps=4", "train.keep_last=5")
    overflow_on_steps(monkeypatch, {3})
    reference = tmp_path / "reference"
    train(reference, *common)
    out = tmp_path / "run"
    sigterm_after_step(monkeypatch, 5)
    with pytest.raises(loop.TrainingInterrupted):
        train(out, *common)
    monkeypatch.undo()
    overflow_on_steps(monkeypatch, {3})  # the resumed steps (6-8) overflow nowhere, as in the reference
    train(out, *common, resume="auto")
    from banglaocr.train import checkpoint as ckpt

    final, expected = (ckpt.read_training_state(folder / "checkpoints" / "step-8") for folder in (out, reference))
    assert final["scaler"] == expected["scaler"] and final["scaler"]["scale"] == 32768.0
    assert helpers.max_abs_diff(helpers.trainable(out / "checkpoints" / "step-8"),
                                helpers.trainable(reference / "checkpoints" / "step-8")) == 0.0
    assert [row["loss_scale"] for row in log_rows(out)] == [row["loss_scale"] for row in log_rows(reference)]


def test_the_t4_fallback_keeps_weights_and_residual_stream_in_float32_and_matmuls_in_fp16(tmp_path, monkeypatch):
    """model.dtype=float32 under train.precision=fp16 (LoRA): float32 base weights; inside the language model the
    projections compute in fp16 (autocast) while each decoder layer's output - the residual stream - stays float32."""
    seen: dict[str, set] = {"proj": set(), "layer": set()}
    original = loop.TrainingRun._setup_model

    def setup_model(self):
        original(self)
        core = self.loaded.model.get_base_model()
        layer = core.model.language_model.layers[0]
        layer.self_attn.q_proj.register_forward_hook(lambda m, i, o: seen["proj"].add(o.dtype))
        layer.register_forward_hook(lambda m, i, o: seen["layer"].add((o[0] if isinstance(o, tuple) else o).dtype))
        weights = {p.dtype for p in core.parameters() if not p.requires_grad}
        assert weights == {torch.float32}, weights

    monkeypatch.setattr(loop.TrainingRun, "_setup_model", setup_model)
    summary, _ = train(tmp_path / "run", *LORA_FALLBACK, "train.max_steps=3")
    assert summary["nonfinite_steps"] == 0 and math.isfinite(summary["final_loss"])
    assert seen["proj"] == {torch.float16} and seen["layer"] == {torch.float32}
    row = log_rows(tmp_path / "run")[-1]
    assert row["loss_scale"] == 65536.0 and row["grad_norm"] > 0


def test_every_log_row_holds_grad_norm_and_skipped_steps_in_fp32_too(tmp_path):
    out = tmp_path / "run"
    with helpers.one_thread():
        loop.run_training(helpers.tiny_recipe("train.max_steps=4", "train.log_steps=2"), out,
                          console=Console(file=io.StringIO()))
    rows = log_rows(out)
    assert [row["step"] for row in rows] == [2, 4]
    for row in rows:
        assert row["grad_norm"] > 0 and row["grad_norm_max"] >= row["grad_norm"]
        assert row["skipped_steps"] == 0 and row["nonfinite_steps"] == 0 and "loss_scale" not in row
    # TensorBoard gets the same numbers (every numeric field of the row).
    assert json.loads((out / "summary.json").read_text())["nonfinite_steps"] == 0
