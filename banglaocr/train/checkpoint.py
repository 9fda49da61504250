"""Checkpoints that survive killed sessions: atomic writes, rotation, and everything resume needs.

A checkpoint folder `checkpoints/step-N/` holds:

- `model/`            the model folder (PEFT adapter + base reference, or full weights) and tokenizer
- `training_state.pt` optimizer, scheduler and GradScaler states, step, counters, confusion table
- `rng-rank{R}.pt`    python / numpy / torch / CUDA / augmentation RNG states of each process
- `recipe.yaml`       the resolved recipe
- `state.json`        a human-readable summary (step, best val CER, time)

It is written into `checkpoints/.tmp-step-N/` and renamed into place only when complete, so a kill
mid-write leaves the previous checkpoints intact and never a half-written one that looks valid.
Old checkpoints are removed only after the new one is in place (`keep_last`).

>>> import tempfile, pathlib
>>> root = pathlib.Path(tempfile.mkdtemp())
>>> for step in (1, 2, 3):
...     (root / f"step-{step}").mkdir(); _ = (root / f"step-{step}" / "training_state.pt").write_bytes(b"")
>>> [p.name for p in rotate_checkpoints(root, keep_last=2)], [p.name for p in list_checkpoints(root)]
(['step-1'], ['step-2', 'step-3'])
"""

from __future__ import annotations

import random
import re
import shutil
from pathlib import Path

import numpy as np
import torch

from banglaocr.errors import UserError

STEP_PATTERN = re.compile(r"^step-(\d+)$")


def list_checkpoints(checkpoints_dir: Path) -> list[Path]:
    """Complete checkpoints (`step-N` folders), oldest first."""
    checkpoints_dir = Path(checkpoints_dir)
    if not checkpoints_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in checkpoints_dir.iterdir()
             if p.is_dir() and (m := STEP_PATTERN.match(p.name)) and (p / "training_state.pt").is_file()]
    return [p for _, p in sorted(found)]


def rotate_checkpoints(checkpoints_dir: Path, keep_last: int) -> list[Path]:
    """Delete all but the newest `keep_last` checkpoints; return the deleted folders."""
    existing = list_checkpoints(checkpoints_dir)
    doomed = existing[:-keep_last] if keep_last > 0 else []
    for folder in doomed:
        shutil.rmtree(folder, ignore_errors=True)
    return doomed


def resolve_resume(resume: str | None, output_dir: Path) -> Path | None:
    """`auto` -> the newest checkpoint under output_dir (None when there is none); a path -> that checkpoint."""
    if resume is None:
        return None
    if resume == "auto":
        found = list_checkpoints(Path(output_dir) / "checkpoints")
        return found[-1] if found else None
    path = Path(resume)
    if (path / "training_state.pt").is_file():
        return path
    if (path / "checkpoints").is_dir():  # an output folder: take its newest checkpoint
        found = list_checkpoints(path / "checkpoints")
        if found:
            return found[-1]
    raise UserError(f"--resume {resume}: not a checkpoint folder (expected training_state.pt inside)")


def capture_rng_state(augment_generator: torch.Generator | None = None) -> dict:
    """Every random number source a training step draws from, for exact resume."""
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }
    if augment_generator is not None:
        state["augment"] = augment_generator.get_state()
    return state


def restore_rng_state(state: dict, augment_generator: torch.Generator | None = None) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if augment_generator is not None and state.get("augment") is not None:
        augment_generator.set_state(state["augment"])
