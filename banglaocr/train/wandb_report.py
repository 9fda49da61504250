"""Weights & Biases: the same rows as metrics.jsonl, the recipe as the run's config, and the curves and
the confusion heatmap as images at the end (`train.report_to: [tensorboard, wandb]`).

The main process reports; a resumed run continues the same W&B run (its id is kept in the checkpoint's
`RunState`). `WANDB_MODE=offline` writes the run under `<output_dir>/wandb/` without an account
(`wandb sync` uploads it later). Rows of steps a resumed run repeats are dropped by W&B (it keeps the
first value of a step).
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from banglaocr.config import Recipe, recipe_to_dict
from banglaocr.errors import UserError


def start_wandb(recipe: Recipe, output_dir: Path, run_id: str | None) -> tuple[Any, str]:
    """A W&B run for this training run (resumed when `run_id` is given): (run, its id)."""
    try:
        import wandb
    except ImportError:
        raise UserError("train.report_to names wandb, but the wandb package is not installed: pip install wandb "
                        "(or drop wandb from train.report_to)") from None
    run_id = run_id or uuid.uuid4().hex[:12]
    run = wandb.init(project="banglaocr", name=output_dir.name, id=run_id, resume="allow", dir=str(output_dir),
                     config=recipe_to_dict(recipe))
    return run, run_id


def log_row(run: Any, row: dict) -> None:
    """One metrics.jsonl row (its numbers) at its step."""
    values = {key: value for key, value in row.items() if key != "step" and isinstance(value, (int, float))}
    run.log(values, step=int(row["step"]))


def finish_wandb(run: Any, images: dict[str, Path]) -> None:
    """Log the images that exist (curves, confusion heatmap) and close the run."""
    import wandb

    present = {name: wandb.Image(str(path)) for name, path in images.items() if path is not None and path.is_file()}
    if present:
        run.log(present)
    run.finish()
