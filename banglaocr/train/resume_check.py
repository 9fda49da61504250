"""Resuming with another recipe: which changes make it a different run (refused) and which only
change the schedule or the reporting (allowed, with a note).

A checkpoint continues the run that wrote it. Other data, another model or LoRA, another batch
size, accumulation or seed would silently train something else on top of it, so those are refused
unless the user says so (`--allow-recipe-change`). Everything else (max_steps, eval/save/log steps,
learning rate, augmentation, loss, evaluation settings) is allowed and listed.

>>> from banglaocr.config import load_recipe
>>> old = load_recipe("cpu_demo")
>>> new = load_recipe("cpu_demo", ["train.max_steps=900", "train.batch_size=8", "lora.r=4"])
>>> recipe_changes(old, new)
(['lora.r', 'train.batch_size'], ['train.max_steps'])

A checkpoint that names the columns by their former defaults continues a recipe that lets them be found:

>>> saved = load_recipe("cpu_demo", ["data.image_column=image", "data.text_column=text"])
>>> recipe_changes(saved, old), recipe_changes(old, saved)
(([], []), (['data.image_column', 'data.text_column'], []))
"""

from __future__ import annotations

from typing import Any

from banglaocr.config import Recipe, recipe_to_dict

DIFFERENT_RUN = ("data.", "model.", "lora.", "train.batch_size", "train.grad_accum_steps", "train.seed",
                 "train.optimizer", "train.precision")
"""Keys (prefixes) whose change makes the continuation a different run."""
IGNORED = ("train.output_dir", "data.num_workers")
"""Where the run writes and how many loader processes it uses change nothing it computes."""
AUTO_DETECTED = {"data.image_column": "image", "data.text_column": "text"}
"""Keys whose default became null (the column found by its common names); a checkpoint saved before holds the
former default, which names the same column wherever that column exists (the training split's hash, checked
at resume, catches a table where it would not)."""


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        flat: dict[str, Any] = {}
        for key, item in value.items():
            flat.update(_flatten(item, f"{prefix}{key}."))
        return flat or {prefix.rstrip("."): {}}
    return {prefix.rstrip("."): value}


def recipe_changes(saved: Recipe, current: Recipe) -> tuple[list[str], list[str]]:
    """(keys that make a different run, other changed keys) between the checkpoint's recipe and this one."""
    before, after = _flatten(recipe_to_dict(saved)), _flatten(recipe_to_dict(current))
    changed = sorted(key for key in before.keys() | after.keys()
                     if before.get(key) != after.get(key) and not key.startswith(IGNORED)
                     and not (after.get(key) is None and before.get(key) == AUTO_DETECTED.get(key, ...)))
    refused = [key for key in changed if key.startswith(DIFFERENT_RUN) or key in ("lora", "data", "model")]
    return refused, [key for key in changed if key not in refused]
