"""Learning-rate schedule: the pure multiplier's shape, the LambdaLR built on it, and - in a real run with
gradient accumulation - the rate the optimizer actually used at each OPTIMIZER step."""

from __future__ import annotations

import math

import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook

import train_helpers as helpers
from banglaocr.train.schedule import build_scheduler, lr_multiplier

KINDS = ("cosine", "linear", "constant")


@pytest.mark.parametrize("kind", KINDS)
def test_warmup_rises_linearly_from_zero_to_the_peak(kind):
    """During warm-up the multiplier is step / warmup (0 at the first update), then 1 at its end."""
    assert [lr_multiplier(s, 4, 20, kind) for s in range(5)] == [0.0, 0.25, 0.5, 0.75, 1.0]


@pytest.mark.parametrize("kind", ["cosine", "linear"])
def test_decay_falls_monotonically_to_zero_at_max_steps_and_stays_there(kind):
    """After warm-up the multiplier never rises, is 0.5 half-way through the decay, 0 at max_steps and after."""
    values = [lr_multiplier(s, 4, 20, kind) for s in range(4, 30)]
    assert all(a >= b for a, b in zip(values, values[1:]))
    assert lr_multiplier(12, 4, 20, kind) == pytest.approx(0.5)
    assert lr_multiplier(20, 4, 20, kind) == pytest.approx(0.0, abs=1e-12)
    assert all(lr_multiplier(s, 4, 20, kind) == pytest.approx(0.0, abs=1e-12) for s in range(20, 30))


def test_cosine_and_linear_have_their_shapes():
    """Linear falls by equal amounts; cosine stays above linear in the first half of the decay, below in the second."""
    linear = [lr_multiplier(s, 0, 10, "linear") for s in range(11)]
    assert linear == pytest.approx([1 - s / 10 for s in range(11)])
    for s in range(1, 5):
        assert lr_multiplier(s, 0, 10, "cosine") > linear[s]
    for s in range(6, 10):
        assert lr_multiplier(s, 0, 10, "cosine") < linear[s]
    assert lr_multiplier(3, 0, 10, "cosine") == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.3)))


def test_constant_after_warmup_and_without_warmup():
    """`constant` holds the peak after warm-up; without warm-up every schedule starts at the peak."""
    assert all(lr_multiplier(s, 3, 10, "constant") == 1.0 for s in range(3, 15))
    assert all(lr_multiplier(0, 0, 10, kind) == 1.0 for kind in KINDS)


def test_unknown_schedule_is_an_error():
    with pytest.raises(ValueError, match="unknown schedule"):
        lr_multiplier(5, 0, 10, "exponential")


def test_scheduler_scales_each_group_and_resumes_from_its_state():
    """The LambdaLR gives each param group multiplier x its own peak; a scheduler rebuilt and loaded from a
    state_dict at step N continues with exactly the rates of the uninterrupted one."""
    a, b = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))

    def optimizer():
        return torch.optim.SGD([{"params": [a], "lr": 1e-2}, {"params": [b], "lr": 4e-3}], lr=1e-2)

    opt = optimizer()
    scheduler = build_scheduler(opt, warmup_steps=2, max_steps=8, kind="cosine")
    seen, saved = [], None
    for step in range(8):
        seen.append([group["lr"] for group in opt.param_groups])
        assert seen[-1] == pytest.approx([lr_multiplier(step, 2, 8, "cosine") * peak for peak in (1e-2, 4e-3)])
        opt.step()
        scheduler.step()
        if step == 3:
            saved = (opt.state_dict(), scheduler.state_dict())
    opt2 = optimizer()
    scheduler2 = build_scheduler(opt2, warmup_steps=2, max_steps=8, kind="cosine")
    opt2.load_state_dict(saved[0])
    scheduler2.load_state_dict(saved[1])
    for step in range(4, 8):
        assert [group["lr"] for group in opt2.param_groups] == seen[step]
        opt2.step()
        scheduler2.step()


@pytest.mark.parametrize("kind", ["cosine", "linear"])
def test_training_uses_the_schedule_per_optimizer_step_with_grad_accumulation(kind, tmp_path):
    """With grad_accum_steps=4 the optimizer steps max_steps times, and at optimizer step k it uses
    lr_multiplier(k, warmup, max_steps) x peak - in every param group (vision_lr has its own peak);
    metrics.jsonl logs the same rate. (A schedule counted in micro-batches would decay 4x too fast.)"""
    steps, warmup, peak, vision_peak, accum = 8, 3, 1e-3, 5e-4, 4
    used = []

    def record(optimizer, args, kwargs):
        used.append([(group["lr"], len(group["params"])) for group in optimizer.param_groups])

    handle = register_optimizer_step_pre_hook(record)
    try:
        helpers.train(tmp_path / "run", f"train.max_steps={steps}", f"train.warmup_steps={warmup}",
                      f"train.scheduler={kind}", f"train.lr={peak}", f"train.vision_lr={vision_peak}",
                      f"train.grad_accum_steps={accum}", "train.batch_size=2", "train.log_steps=1")
    finally:
        handle.remove()

    assert len(used) == steps
    expected = [lr_multiplier(step, warmup, steps, kind) for step in range(steps)]
    for step, groups in enumerate(used):
        rates = {rate for rate, _ in groups}
        assert len(groups) == 4  # (language, vision) x (decay, no decay)
        assert sorted(rates) == pytest.approx(sorted({expected[step] * vision_peak, expected[step] * peak}))
    logged = [row["lr"] for row in helpers.log_rows(tmp_path / "run")]
    assert logged == pytest.approx([m * peak for m in expected])

    from banglaocr.train.checkpoint import read_training_state

    state = read_training_state(tmp_path / "run" / "checkpoints" / f"step-{steps}")
    assert state["run_state"]["batches_consumed"] == steps * accum
