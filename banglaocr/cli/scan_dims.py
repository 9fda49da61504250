"""`banglaocr scan-dims`: image / label statistics of a data set and the image budget they call for."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from banglaocr.cli.common import JsonOption, RecipeOption, SeedOption, console, err_console, user_errors
from banglaocr.cli.conventions import one_of
from banglaocr.files import expand_home


def scan_dims(
    dataset: Annotated[
        str | None, typer.Option("--dataset", "-d", metavar="DATA", help="Data set: local folder, manifest or hub id.")
    ] = None,
    recipe: RecipeOption = None,
    split: Annotated[str, typer.Option("--split", metavar=one_of(("train", "val", "test")),
                                       help="Split to scan.")] = "train",
    samples: Annotated[int, typer.Option("--samples", "-n", min=1, metavar="N", help="Random sample size.")] = 1000,
    seed: SeedOption = 0,
    tokenizer: Annotated[
        str | None,
        typer.Option("--tokenizer", metavar="NAME",
                     help="Counts label tokens: 'qwen' (real Qwen vocabulary, offline), 'char', "
                          "a hub id or a folder. Default: the recipe's model, else 'qwen'. A Qwen-VL "
                          "hub id the hub cannot give counts with 'qwen' (a note says so)."),
    ] = None,
    max_height: Annotated[
        int, typer.Option("--max-height", min=32, metavar="N", help="Largest target height (pixels).")
    ] = 64,
    padding_buffer: Annotated[float, typer.Option("--padding-buffer", min=0.0, metavar="X",
                                                  help="Head-room over p99 width and max label tokens.")] = 0.1,
    as_json: JsonOption = False,
    write: Annotated[
        Path | None, typer.Option("--write", metavar="FILE", help="Write the budget as a recipe YAML fragment.")
    ] = None,
) -> None:
    """Scan image sizes and label lengths; recommend an image budget and max_new_tokens.

    Example: banglaocr scan-dims --dataset synth-check --samples 500 --write budget.yaml
    """
    with user_errors():
        from banglaocr.data.scan import budget_fragment, scan_records
        from banglaocr.data.sources import load_splits
        from banglaocr.errors import UserError
        from banglaocr.model.shipped import model_source
        from banglaocr.model.tokenizers import load_counting_tokenizer

        if (dataset is None) == (recipe is None):
            raise UserError("give exactly one of --dataset or --recipe")
        tokenizer, write = tokenizer and expand_home(tokenizer, "--tokenizer"), write and expand_home(write, "--write")
        if recipe is not None:
            from banglaocr.config import load_recipe
            from banglaocr.data.sources import resolve_source

            loaded = load_recipe(recipe)
            data_cfg = resolve_source(loaded.data, Path(loaded.train.output_dir))
            stretch = loaded.data.image.stretch
            tokenizer_name = tokenizer or _recipe_tokenizer(loaded)
        else:
            from banglaocr.config import DataConfig

            data_cfg = DataConfig(source=dataset, val_fraction=0.0, test_fraction=0.0)
            stretch = 1.0
            tokenizer_name = tokenizer or "qwen"
        splits = load_splits(data_cfg)
        records = splits.split(split)
        if not records:
            raise UserError(f"split '{split}' of {data_cfg.source} is empty")
        # model_source: a shipped model's name (`tiny`) means its folder, which holds its tokenizer.
        counting, note = load_counting_tokenizer(model_source(tokenizer_name))
        if note is not None:  # on stderr: --json output stays one JSON document
            err_console.print(f"note: {note}", highlight=False, markup=False, soft_wrap=True)
        result = scan_records(records, counting, samples=samples, seed=seed,
                              max_height=max_height, padding_buffer=padding_buffer, stretch=stretch)
        result.skipped.merge(splits.skipped)

    if as_json:
        typer.echo(json.dumps({**result.as_dict(), "tokenizer": tokenizer_name, "tokenizer_fallback": note is not None},
                              ensure_ascii=False, indent=2))
    else:
        _print_report(result, data_cfg.source, split, f"{tokenizer_name}, bundled qwen" if note else tokenizer_name)
    if write is not None:
        import yaml

        fragment = budget_fragment(result.budget)
        write.parent.mkdir(parents=True, exist_ok=True)
        write.write_text("# image budget recommended by banglaocr scan-dims\n"
                         + yaml.safe_dump(fragment, sort_keys=False), encoding="utf-8")
        if not as_json:
            console.print(f"wrote recipe fragment to [bold]{write}[/]")


def _recipe_tokenizer(recipe) -> str:
    if recipe.model.init == "tiny":
        return recipe.model.tiny.tokenizer
    return recipe.model.name_or_path


def _print_report(result, source: str, split: str, tokenizer_name: str) -> None:
    from rich.table import Table

    table = Table(title=f"{source} [{split}]: {result.sampled} of {result.population} samples "
                        f"(tokens: {tokenizer_name})")
    table.add_column("measure")
    for name in ("p5", "p50", "p95", "p99", "max"):
        table.add_column(name, justify="right")
    labels = {"height": "height (px)", "width": "width (px)", "aspect": "aspect (w/h)", "chars": "label chars",
              "graphemes": "label graphemes", "tokens": "label tokens",
              "visual_tokens_budget": "visual tokens (budget)",
              "visual_tokens_default": "visual tokens (processor default)"}
    for name, row in result.table().items():
        if not row:  # e.g. no image the default processor accepts
            continue
        fmt = "{:.2f}" if name == "aspect" else "{:.0f}"
        table.add_row(labels.get(name, name), *(fmt.format(row[key]) for key in ("p5", "p50", "p95", "p99", "max")))
    console.print(table)
    budget = result.budget
    median_budget = result.table()["visual_tokens_budget"]["p50"]
    median_default = result.table()["visual_tokens_default"].get("p50")
    default = f"{median_default:.0f}" if median_default is not None else "-"
    console.print(
        f"[bold]budget[/]: data.image.height={budget['height']} data.image.max_width={budget['max_width']} "
        f"eval.max_new_tokens={budget['max_new_tokens']}\n"
        f"median word crop: {median_budget:.0f} visual tokens under the budget vs {default} "
        f"with the processor default; {budget['squeezed_fraction']:.1%} of crops are squeezed to max_width"
    )
    if budget["processor_refuses"]:
        console.print(f"{budget['processor_refuses']} image(s) have an aspect ratio over "
                      "200, which Qwen's default image processor refuses (the budget squeezes them)")
    if result.skipped.total:
        console.print(f"[yellow]{result.skipped.summary()}[/]")
