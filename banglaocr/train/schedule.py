"""Learning-rate schedules, counted in OPTIMIZER steps (never micro-batches).

The multiplier is a pure function of the optimizer step, so resuming at step N gives exactly the
learning rate an uninterrupted run has at step N, whatever the gradient accumulation.

>>> [round(lr_multiplier(s, warmup_steps=2, max_steps=6, kind="linear"), 3) for s in range(7)]
[0.0, 0.5, 1.0, 0.75, 0.5, 0.25, 0.0]
"""

from __future__ import annotations

import math

import torch


def lr_multiplier(step: int, warmup_steps: int, max_steps: int, kind: str) -> float:
    """Factor on the peak learning rate for the update made at optimizer step `step` (0-based).

    Linear warm-up from 0 over `warmup_steps`, then `cosine` / `linear` decay to 0 at `max_steps`,
    or `constant`.
    """
    if warmup_steps > 0 and step < warmup_steps:
        return step / warmup_steps
    if kind == "constant":
        return 1.0
    decay_steps = max(1, max_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    if kind == "linear":
        return 1.0 - progress
    if kind == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    raise ValueError(f"unknown schedule {kind!r}")


def build_scheduler(optimizer: torch.optim.Optimizer, warmup_steps: int, max_steps: int,
                    kind: str) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR stepped once per optimizer step (each param group keeps its own peak lr)."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_multiplier(step, warmup_steps, max_steps, kind))
