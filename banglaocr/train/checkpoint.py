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
>>> with atomic_folder(root / "step-1") as tmp:
...     _ = (tmp / "state.json").write_text("{}")
>>> sorted(p.name for p in root.iterdir())
['step-1']
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import shutil
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from banglaocr.errors import UserError

STEP_PATTERN = re.compile(r"^step-(\d+)$")


def commit_folder(tmp: Path, final: Path) -> None:
    """Rename a finished temporary folder into place, replacing `final` if it exists."""
    if final.exists():
        # Move the old folder aside first so that at every instant one complete folder exists
        # under a known name (a kill between the two renames leaves `.old-NAME`, still whole).
        old = final.parent / f".old-{final.name}"
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)


def fresh_tmp_folder(final: Path) -> Path:
    """An empty `.tmp-NAME` sibling of `final` (left-overs of a killed write are removed)."""
    tmp = final.parent / f".tmp-{final.name}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    return tmp


@contextlib.contextmanager
def atomic_folder(final: Path) -> Iterator[Path]:
    """Yield a temporary sibling folder; rename it to `final` when the block finishes cleanly."""
    final = Path(final)
    tmp = fresh_tmp_folder(final)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    commit_folder(tmp, final)


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


def write_json(path: Path, payload: dict) -> None:
    path.write_text(json.dumps(payload, ensure_ascii=False, indent=2), encoding="utf-8")
