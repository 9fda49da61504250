"""`banglaocr train`: fine-tune (or train from scratch) as a recipe says."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from banglaocr.cli.common import console, err_console, user_errors, without_transformers_progress


def train(
    recipe: Annotated[
        str | None, typer.Option("--recipe", "-r", metavar="RECIPE",
                                 help="Recipe YAML file or shipped recipe name (with only the "
                                      "original script's flags: kaggle_t4x2).")
    ] = None,
    overrides: Annotated[
        list[str] | None, typer.Argument(metavar="KEY=VALUE...",
                                         help="Recipe overrides: section.key=value (e.g. train.lr=1e-4 lora=null); "
                                              "the original script's flags (--lora_r 256 ...) too, see docs/migrating.md.")
    ] = None,
    output_dir: Annotated[
        Path | None, typer.Option("--output-dir", "-o", metavar="DIR",
                                  help="Output folder (default: train.output_dir).")
    ] = None,
    resume: Annotated[
        str | None, typer.Option("--resume", metavar="CHECKPOINT",
                                 help="'auto' (newest checkpoint in the output folder) or a checkpoint folder.")
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an earlier run in the output folder, or write into a "
                                               "folder that holds other files.")
    ] = False,
    allow_recipe_change: Annotated[
        bool, typer.Option("--allow-recipe-change",
                           help="Resume although data, model, LoRA, batch size, accumulation or seed differ from "
                                "the checkpoint's recipe.")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the resolved recipe (the sections that apply) and the run's expected disk use "
                                "next to the free space, and exit.")
    ] = False,
) -> None:
    """Train a model as a recipe says (LoRA or full fine-tune), evaluating by generation.

    Example: banglaocr train --recipe recipes/cpu_demo.yaml train.max_steps=100

    Multi-GPU: accelerate launch --multi_gpu --num_processes 2 -m banglaocr train --recipe recipes/kaggle_t4x2.yaml
    """
    with user_errors():
        from banglaocr.config import recipe_to_yaml
        from banglaocr.model.folder_check import check_recipe_model

        loaded, output_dir = _resolve_recipe(recipe, overrides or [], output_dir, dry_run)
        if output_dir is not None:
            from banglaocr.files import expand_home

            output_dir = expand_home(output_dir, "--output-dir")
        check_recipe_model(loaded.model)  # a model folder that asks for code or lies: one line, before any work
        if dry_run:
            typer.echo(recipe_to_yaml(loaded), nl=False)  # plain: rich would wrap long lines (invalid YAML)
            _print_disk_use(loaded, output_dir)
            return
        from banglaocr.train.loop import TrainingInterrupted, run_training

        try:
            with without_transformers_progress():
                summary = run_training(loaded, output_dir=output_dir, resume=resume, console=console,
                                       overwrite=overwrite, allow_recipe_change=allow_recipe_change)
        except TrainingInterrupted as stopped:
            if stopped.main:  # one message, however many processes stopped; never folded (a command to copy)
                err_console.print(str(stopped), style="yellow", markup=False, highlight=False, soft_wrap=True)
            raise typer.Exit(stopped.exit_code) from None
    from banglaocr.cli.common import launched_processes

    if launched_processes()[0] == 0:  # the main process only (every process of a launch returns the summary)
        console.print(f"done: {summary['output_dir']} (best/, final/, metrics.jsonl, summary.json)")


def _print_disk_use(recipe, output_dir: Path | None) -> None:
    """The run's expected disk use next to the free space, on stderr (stdout stays the recipe's YAML);
    a warning line with what to do when it does not fit."""
    from banglaocr.disk_use import advice, describe, format_bytes, try_estimate

    output = Path(output_dir or recipe.train.output_dir)
    use, fit, why = try_estimate(recipe, output)
    if use is None:
        err_console.print(f"expected disk use: unavailable ({why})", highlight=False, markup=False, soft_wrap=True)
        return
    for line in describe(use, fit):
        err_console.print(line, highlight=False, markup=False, soft_wrap=True)
    if not fit.fits:
        err_console.print(f"[yellow]warning: the run needs {format_bytes(fit.needed)} at {fit.folder}, "
                          f"{format_bytes(fit.free)} are free: {advice(use, fit)}[/]", highlight=False, soft_wrap=True)


def _resolve_recipe(recipe: str | None, arguments: list[str], output_dir: Path | None, dry_run: bool = False):
    """The recipe with its overrides, and the original script's flags among them translated (printed once).
    A `dry_run` loads nothing - except the data set where an original flag needs it, which it says first."""
    from banglaocr.cli.original_flags import data_needs, describe, resolve_with_data, split_arguments, translate
    from banglaocr.config import load_recipe
    from banglaocr.errors import UserError

    flags, overrides = split_arguments(arguments)
    if not flags:
        if recipe is None:
            raise UserError("give --recipe (e.g. --recipe recipes/cpu_demo.yaml), or the original script's flags")
        return load_recipe(recipe, overrides), output_dir
    import torch

    translation = translate(flags, cuda=torch.cuda.is_available())
    name = recipe or "kaggle_t4x2"
    output_dir = output_dir or (Path(translation.output_dir) if translation.output_dir else None)
    first = load_recipe(name, [*translation.overrides, *overrides])
    needs = data_needs(translation)
    if dry_run and needs:
        err_console.print(f"dry run: loading the data set {first.data.source} ({'; '.join(needs)}); no model "
                          "weights are loaded and nothing is written", highlight=False, markup=False, soft_wrap=True)
    extra = resolve_with_data(translation, first, output_dir, dry_run=dry_run)
    err_console.print(describe(translation, extra), highlight=False, markup=False, soft_wrap=True)
    # Overrides given as section.key=value win over what the flags and the data say.
    return load_recipe(name, [*translation.overrides, *extra, *overrides]), output_dir
