"""What every command shares: the console, option aliases, and turning `UserError` into an exit code.

Commands are thin: parse options, call the library inside `user_errors()`, print.

>>> from banglaocr.cli.common import user_errors
>>> with user_errors():
...     pass
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated, Iterator

import typer
from rich.console import Console

from banglaocr.errors import UserError

console = Console()
err_console = Console(stderr=True)

# Option aliases shared by several commands (one definition, one help text).
RecipeOption = Annotated[
    Path | None,
    typer.Option("--recipe", "-r", help="Recipe YAML file, or the name of a shipped recipe (e.g. cpu_demo)."),
]
SeedOption = Annotated[int, typer.Option("--seed", help="Random seed (same seed, same result).")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of tables.")]


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Print a `UserError` as one red line and exit with its code; let real bugs raise."""
    try:
        yield
    except UserError as err:
        err_console.print(f"[bold red]error:[/] {err}", highlight=False, soft_wrap=True)
        raise typer.Exit(err.exit_code) from None
