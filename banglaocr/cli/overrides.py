"""Recipe overrides (`section.key=value`, as `train` takes them) for the commands that read with a model.

`eval` takes the keys of the `data` and `eval` sections (a data set's columns, its split settings, the
image budget, batch size, beams); `predict` those that change how images are read (`data.image.*`,
`data.prompt`, `eval.max_new_tokens`, `eval.batch_size`, `eval.num_beams`). Every override goes through
the recipe loader (`config.recipe_from_dict`, the same parser as `train`'s), so an unknown key gets a
suggestion and a wrong value names its key.

>>> split_inputs(["scans/a.png", "data.prompt=লেখো", "eval.num_beams=2"])
(['scans/a.png'], ['data.prompt=লেখো', 'eval.num_beams=2'])
"""

from __future__ import annotations

import dataclasses
import os
import re

from banglaocr.errors import UserError

OVERRIDE = re.compile(r"^[A-Za-z_]\w*(\.\w+)+=")
"""What an override looks like: a dotted recipe key, then `=`."""
EVAL_SECTIONS = ("data.", "eval.")
READING_KEYS = ("data.image.", "data.prompt=", "eval.max_new_tokens=", "eval.batch_size=", "eval.num_beams=")
"""The overrides `predict` takes (and `eval` applies on top of a model's own reading settings)."""


def split_inputs(items: list[str]) -> tuple[list[str], list[str]]:
    """`predict`'s arguments -> (inputs, overrides): an argument that looks like `section.key=value` and
    names no file that exists is an override."""
    inputs, overrides = [], []
    for item in items:
        (overrides if OVERRIDE.match(item) and not os.path.lexists(item) else inputs).append(item)
    return inputs, overrides


def check_overrides(overrides: list[str], allowed: tuple[str, ...], command: str) -> None:
    """One line for an override `command` does not take (a `train.*` key given to eval, ...)."""
    for item in overrides:
        if "=" not in item:
            raise UserError(f"override '{item}' must look like section.key=value")
        if not item.strip().startswith(allowed):
            if item.strip().startswith(EVAL_SECTIONS):
                reading_recipe({"source": "-"}, [item])  # a misspelled key: the loader's "did you mean"
            taken = ", ".join(key.rstrip("=") + ("*" if key.endswith(".") else "") for key in allowed)
            raise UserError(f"{command} takes the recipe overrides {taken}; not '{item.split('=', 1)[0]}'")


def reading_recipe(data: dict, overrides: list[str]):
    """A recipe of `data` (a data section as a mapping) with `overrides`, checked as `train` checks its own:
    its `data` and `eval` sections are what a reading command uses."""
    from banglaocr.config import recipe_from_dict

    return recipe_from_dict({"model": {"name_or_path": "-"}, "data": data}, overrides)


def with_reading_overrides(settings, overrides: list[str]):
    """`settings` (`infer.ReadSettings`) with the overrides among `overrides` that change how a model reads:
    `data.image.*` (on top of the model's own budget), `data.prompt`, `eval.max_new_tokens`.

    >>> from banglaocr.infer import default_read_settings
    >>> read = with_reading_overrides(default_read_settings(), ["data.image.height=32", "eval.max_new_tokens=8"])
    >>> read.image.height, read.max_new_tokens, read.origin
    (32, 8, 'default budget with data.image.height=32')
    """
    from banglaocr.config import ImageConfig

    image_items = [item for item in overrides if item.startswith("data.image.")]
    prompt = [item for item in overrides if item.startswith("data.prompt=")]
    tokens = [item for item in overrides if item.startswith("eval.max_new_tokens=")]
    if not (image_items or prompt or tokens):
        return settings
    base = settings.image if isinstance(settings.image, ImageConfig) else ImageConfig()
    recipe = reading_recipe({"source": "-", "image": dataclasses.asdict(base), "prompt": settings.prompt},
                            [f"eval.max_new_tokens={settings.max_new_tokens}", *image_items, *prompt, *tokens])
    origin = f"{settings.origin} with {' '.join(image_items)}" if image_items else settings.origin
    return dataclasses.replace(settings, image=recipe.data.image if image_items else settings.image,
                               prompt=recipe.data.prompt, max_new_tokens=recipe.eval.max_new_tokens, origin=origin)
