"""`banglaocr doctor`: what this machine offers a run, in one table, and whether a recipe can run here.

Exit codes: 0 = everything needed is there (without --recipe: Python, torch, accelerate, a writable
output folder; with --recipe: also what the recipe needs), 1 = something needed is missing (its
row says what to do), 2 = bad input (an unknown recipe or override).

>>> from banglaocr.cli.doctor import status
>>> status(True, None), status(False, "train.precision fp16"), status(False, None)
('ok', 'MISSING (train.precision fp16)', 'no')
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from banglaocr.cli.common import JsonOption, RecipeOption, console, user_errors


def doctor(
    recipe: RecipeOption = None,
    overrides: Annotated[
        list[str] | None,
        typer.Argument(metavar="KEY=VALUE...", help="Recipe overrides, as for train (e.g. train.precision=fp16)."),
    ] = None,
    output_dir: Annotated[
        Path | None,
        typer.Option("--output-dir", "-o", metavar="DIR",
                     help="Folder whose free disk is checked (default: the recipe's train.output_dir, else here)."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Check this machine: Python, torch, GPUs, bitsandbytes, kornia, RAQM, accelerate, threads, disk, hub.

    Each row that fails says what to do. With --recipe: exit code 1 when something the recipe
    needs is missing (a GPU for fp16, bitsandbytes for adamw8bit, RAQM for synthetic data, the hub
    or the local cache for a hub id, the disk its checkpoints take), else 0; 2 for a bad recipe.
    With --recipe it also prints the run's expected disk use (each checkpoint by file, x
    train.keep_last, best/ and final/, the peak) next to the free space of the output folder.

    Example: banglaocr doctor --recipe recipes/kaggle_t4x2.yaml
    """
    with user_errors():
        from banglaocr.errors import UserError
        from banglaocr.machine import needs, run_checks

        loaded = None
        if recipe is not None:
            from banglaocr.config import load_recipe

            loaded = load_recipe(recipe, overrides or [])
        elif overrides:
            raise UserError("recipe overrides need --recipe")
        estimate = None
        if loaded is not None:
            from banglaocr.disk_use import try_estimate
            from banglaocr.machine import output_folder

            estimate = try_estimate(loaded, output_folder(loaded, output_dir))
        checks = run_checks(loaded, output_dir, estimate)
        needed = needs(loaded)
    missing = [check for check in checks if not check.ok and check.key in needed]
    if as_json:
        rows = [{"key": c.key, "check": c.name, "found": c.found, "ok": c.ok, "needed": needed.get(c.key),
                 "fix": "" if c.ok else c.fix} for c in checks]
        typer.echo(json.dumps({"recipe": str(recipe) if recipe else None, "checks": rows,
                               "missing": [c.name for c in missing], "disk_use": disk_use_json(estimate)},
                              ensure_ascii=False, indent=2))
    else:
        _print_table(checks, needed, recipe)
        _print_disk_use(estimate)
        _print_verdict(missing, recipe)
    raise typer.Exit(1 if missing else 0)


def status(ok: bool, needed_for: str | None) -> str:
    """A row's status: ok, MISSING (and what needs it), or no (missing, not needed)."""
    if ok:
        return "ok"
    return f"MISSING ({needed_for})" if needed_for else "no"


def _print_table(checks, needed: dict[str, str], recipe) -> None:
    from rich.table import Table
    from rich.text import Text

    title = f"this machine for {recipe}" if recipe else "this machine"
    table = Table(title=title)
    for column in ("check", "found", "status", "fix"):
        table.add_column(column, overflow="fold")
    colours = {"ok": "green", "no": "yellow"}
    for check in checks:
        label = status(check.ok, None if check.ok else needed.get(check.key))
        colour = colours.get(label, "bold red")
        table.add_row(Text(check.name), Text(check.found), Text(label, style=colour),
                      Text("" if check.ok else check.fix))
    console.print(table)


def disk_use_json(estimate) -> dict | None:
    """The run's expected disk use for --json: bytes per file and in all, the free space; or why not."""
    if estimate is None:
        return None
    use, fit, why = estimate
    if use is None:
        return {"unavailable": why}
    return {**use.as_dict(), "free_bytes": fit.free, "present_bytes": fit.present, "needed_bytes": fit.needed,
            "fits": fit.fits, "folder": str(fit.folder)}


def _print_disk_use(estimate) -> None:
    if estimate is None:
        return
    from banglaocr.disk_use import describe

    use, fit, why = estimate
    lines = describe(use, fit) if use is not None else [f"expected disk use: unavailable ({why})"]
    for line in lines:
        console.print(line, highlight=False, markup=False, soft_wrap=True)


def _print_verdict(missing, recipe) -> None:
    what = f"recipe {recipe}" if recipe else "banglaocr"
    if missing:
        console.print(f"[bold red]{len(missing)} thing(s) {what} needs missing:[/] "
                      f"{', '.join(check.name for check in missing)} (exit code 1)", highlight=False)
    else:
        console.print(f"everything {what} needs is here", highlight=False)
