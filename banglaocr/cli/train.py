"""`banglaocr train`: fine-tune (or train from scratch) as a recipe says."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from banglaocr.cli.common import console, err_console, user_errors, without_transformers_progress


def train(
    recipe: Annotated[str, typer.Option("--recipe", "-r", metavar="RECIPE",
                                        help="Recipe YAML file or shipped recipe name.")],
    overrides: Annotated[
        list[str] | None, typer.Argument(metavar="KEY=VALUE...",
                                         help="Recipe overrides: section.key=value (e.g. train.lr=1e-4 lora=null).")
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
        bool, typer.Option("--dry-run", help="Print the resolved recipe (the sections that apply) and exit.")
    ] = False,
) -> None:
    """Train a model as a recipe says (LoRA or full fine-tune), evaluating by generation.

    Example: banglaocr train --recipe recipes/cpu_demo.yaml train.max_steps=100
    Multi-GPU: accelerate launch --multi_gpu --num_processes 2 -m banglaocr train --recipe recipes/kaggle_t4x2.yaml
    """
    with user_errors():
        from banglaocr.config import load_recipe, recipe_to_yaml

        loaded = load_recipe(recipe, overrides or [])
        if dry_run:
            typer.echo(recipe_to_yaml(loaded), nl=False)  # plain: rich would wrap long lines (invalid YAML)
            return
        from banglaocr.train.loop import TrainingInterrupted, run_training

        try:
            with without_transformers_progress():
                summary = run_training(loaded, output_dir=output_dir, resume=resume, console=console,
                                       overwrite=overwrite, allow_recipe_change=allow_recipe_change)
        except TrainingInterrupted as stopped:
            err_console.print(f"[yellow]{stopped}[/]", highlight=False)
            raise typer.Exit(stopped.exit_code) from None
    console.print(f"done: {summary['output_dir']} (best/, final/, metrics.jsonl, summary.json)")
