"""Weights & Biases: the same rows as metrics.jsonl, the recipe as the run's config, and the curves and
the confusion heatmap as images at the end (`train.report_to: [tensorboard, wandb]`).

The main process reports; a resumed run continues the same W&B run (its id is kept in the checkpoint's
`RunState`). `WANDB_MODE=offline` writes the run under `<output_dir>/wandb/` without an account
(`wandb sync` uploads it later). Rows of steps a resumed run repeats are dropped by W&B (it keeps the
first value of a step).

W&B is a copy of metrics.jsonl: a W&B that cannot start refuses the run in one line (before training);
one that fails later (its service gone, its folder full) is one warning line and the run goes on without
it - metrics.jsonl still holds every row. Never a traceback.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from banglaocr.config import Recipe, recipe_to_dict
from banglaocr.errors import UserError, first_line, os_error_code, writing


def start_wandb(recipe: Recipe, output_dir: Path, run_id: str | None) -> tuple[Any, str]:
    """A W&B run for this training run (resumed when `run_id` is given): (run, its id)."""
    try:
        import wandb
    except ImportError:
        raise UserError("train.report_to names wandb, but the wandb package is not installed: pip install wandb "
                        "(or drop wandb from train.report_to)") from None
    run_id = run_id or uuid.uuid4().hex[:12]
    try:
        with writing(output_dir / "wandb"):
            run = wandb.init(project="banglaocr", name=output_dir.name, id=run_id, resume="allow",
                             dir=str(output_dir), config=recipe_to_dict(recipe))
    except UserError:
        raise
    except Exception as err:  # wandb's own errors (no login, a service that did not start, a timeout)
        raise UserError(f"W&B could not start ({' '.join(first_line(err).split())[:200]}); fix that, set "
                        "WANDB_MODE=offline, or drop wandb from train.report_to") from None
    return run, run_id


def log_row(run: Any, row: dict) -> str | None:
    """One metrics.jsonl row (its numbers) at its step; a warning line when W&B failed (the caller stops
    reporting to it), else None."""
    values = {key: value for key, value in row.items() if key != "step" and isinstance(value, (int, float))}
    try:
        run.log(values, step=int(row["step"]))
    except Exception as err:
        return failed_line(err)
    return None


def finish_wandb(run: Any, images: dict[str, Path]) -> str | None:
    """Log the images that exist (curves, confusion heatmap) and close the run; a warning line when W&B
    failed, else None. Returns once the run's files are written (an offline run can be synced at once)."""
    import wandb

    problem = None
    try:
        present = {name: wandb.Image(str(path)) for name, path in images.items() if path is not None and path.is_file()}
        if present:
            run.log(present)
    except Exception as err:
        problem = failed_line(err)
    problem = close_wandb(run) or problem
    return problem


def close_wandb(run: Any) -> str | None:
    """Finish `run` and - when no other W&B run is open in this process - shut W&B's service down: it writes
    the run's file in the background, and only its shutdown waits for the last records to be on disk
    (`run.finish()` alone returns before that). A warning line when that failed, else None."""
    import wandb

    try:
        run.finish()
        if wandb.run is None and hasattr(wandb, "teardown"):
            wandb.teardown()
    except Exception as err:
        return failed_line(err)
    return None


def failed_line(err: BaseException) -> str:
    """The warning line for a W&B failure during the run."""
    what = "its folder could not be written" if os_error_code(err) is not None else "it failed"
    return (f"W&B reporting stopped: {what} ({' '.join(first_line(err).split())[:160]}); the run goes on, "
            "metrics.jsonl holds every row")
