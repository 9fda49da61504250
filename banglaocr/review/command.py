"""The `banglaocr train` command that adapts the reviewing model to the reviewed words (LoRA).

The shipped recipe `adapt_reviewed` holds the training settings; the command names the model that read
the words, the data set review wrote and a run folder, and - for a model that reads with another image
geometry, prompt or length than the recipe's (the shipped `tiny` reader's) - the overrides that show it the
words as it was trained to see them. A model banglaocr did not train (a hub base, read with Qwen's own
resize) is trained with banglaocr's default image budget (`ImageConfig()`); `scan-dims` can refine it.

>>> adapt_command("tiny", "/data/reviewed")  # the model's read settings as the recipe's: no overrides
'banglaocr train --recipe adapt_reviewed model.name_or_path=tiny data.source=/data/reviewed train.output_dir=runs/reviewed-adapted'
"""

from __future__ import annotations

import dataclasses
import shlex
from pathlib import Path

ADAPT_RECIPE = "adapt_reviewed"


def _value(value) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def setting_overrides(settings) -> list[str]:
    """`key=value` overrides where `settings` (an `infer.ReadSettings`) differ from the recipe's."""
    from banglaocr.config import ImageConfig, load_recipe

    recipe = load_recipe(ADAPT_RECIPE)
    image = settings.image if isinstance(settings.image, ImageConfig) else ImageConfig()
    overrides = [f"data.image.{field.name}={_value(getattr(image, field.name))}"
                 for field in dataclasses.fields(ImageConfig)
                 if getattr(image, field.name) != getattr(recipe.data.image, field.name)]
    if settings.prompt != recipe.data.prompt:
        overrides.append(f"data.prompt={settings.prompt}")
    if settings.max_new_tokens != recipe.eval.max_new_tokens:
        overrides.append(f"eval.max_new_tokens={settings.max_new_tokens}")
    return overrides


def adapt_command(model: str, dataset: str | Path, settings=None) -> str:
    """The exact `banglaocr train` command line (shell-quoted) for `model` on the data set `dataset`."""
    dataset = Path(dataset)
    run = f"runs/{dataset.name}-adapted"
    words = ["banglaocr", "train", "--recipe", ADAPT_RECIPE, f"model.name_or_path={model}",
             f"data.source={dataset}", f"train.output_dir={run}",
             *(setting_overrides(settings) if settings is not None else [])]
    return " ".join(shlex.quote(word) for word in words)
