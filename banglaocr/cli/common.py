"""What every command shares: the console, option aliases, and turning `UserError` into an exit code.

Commands are thin: parse options, call the library inside `user_errors()`, print.

>>> from banglaocr.cli.common import user_errors
>>> with user_errors():
...     pass
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated, Iterator, Literal

import typer
from rich.console import Console
from rich.markup import escape

from banglaocr.cli.conventions import one_of
from banglaocr.errors import UserError

console = Console()
err_console = Console(stderr=True)

# Option aliases shared by several commands (one definition, one help text).
RecipeOption = Annotated[
    Path | None,
    typer.Option("--recipe", "-r", metavar="RECIPE",
                 help="Recipe YAML file, or the name of a shipped recipe (e.g. cpu_demo)."),
]
SeedOption = Annotated[int, typer.Option("--seed", metavar="N", help="Random seed (same seed, same result).")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of tables.")]


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Print a `UserError` as one red line and exit with its code; let real bugs raise."""
    try:
        yield
    except UserError as err:
        # escape: a message quoting the user's input ([x, y], data.curriculum[0]) is text, not rich markup
        err_console.print(f"[bold red]error:[/] {escape(str(err))}", highlight=False, soft_wrap=True)
        raise typer.Exit(err.exit_code) from None


# Options of the commands that run a trained model (eval, predict).
ModelOption = Annotated[
    str,
    typer.Option("--model", "-m", metavar="MODEL",
                 help="'tiny' (the shipped tiny Bangla reader), hub id, model folder, adapter "
                      "folder, or training output folder (its best/, else final/)."),
]
AdapterOption = Annotated[
    str | None, typer.Option("--adapter", metavar="DIR",
                             help="Adapter folder applied on top of --model (then the base model).")
]
BatchSizeOption = Annotated[int, typer.Option("--batch-size", "-b", min=1, metavar="N",
                                              help="Images per generation batch.")]
NumBeamsOption = Annotated[int, typer.Option("--num-beams", min=1, metavar="N", help="Beam width (1 = greedy).")]
Precision = Literal["auto", "fp32", "fp16", "bf16"]
"""The values of --precision (checked where the model is loaded: `banglaocr.infer.PRECISIONS`)."""
PrecisionOption = Annotated[
    str, typer.Option("--precision", metavar=one_of(Precision),
                      help="Compute precision; auto = bf16 on GPUs that have it, else fp16; fp32 on the CPU.")
]
DeviceOption = Annotated[str | None, typer.Option("--device", metavar="DEVICE",
                                                  help="cpu, cuda, cuda:1 ... (default: cuda if present).")]
OverwriteOption = Annotated[
    bool, typer.Option("--overwrite", help="Replace --out even when banglaocr did not write it (a user's file, a "
                                           "folder holding other files); without it that is refused, untouched.")
]


def check_writable(path: Path, kind: str, option: str = "--out") -> None:
    """Refuse an output `path` (`kind` "file" or "folder") that cannot be written, before any work is done.

    Nothing is created: the nearest existing folder on the way is probed with a temporary file
    (removed at once), which catches what permission bits alone miss - a read-only file system,
    /proc, a file where a folder should be. `UserError` (exit 2), one line naming what to do.
    """
    path = Path(path).expanduser()
    if kind == "file" and path.is_dir():
        raise UserError(f"{option} {path} is a folder; give a file name")
    if kind == "folder" and path.exists() and not path.is_dir():
        raise UserError(f"{option} {path} is a file, not a folder; choose another {option}")
    existing = path if kind == "folder" else path.parent
    existing = existing.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"{option} {path}: {existing} is a file, not a folder; choose another {option}")
    import tempfile

    try:
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".banglaocr-write-check-"):
            pass
    except OSError as err:
        raise UserError(f"cannot write {option} {path}: no new files can be made in {existing} "
                        f"({err.strerror or err}); choose a writable {option}") from None
    if kind == "file" and path.is_file():
        try:
            with path.open("a"):  # may we replace the existing file? (append mode changes nothing)
                pass
        except OSError as err:
            raise UserError(f"cannot write {option} {path}: {err.strerror or err}; "
                            f"choose a writable {option}") from None


@contextlib.contextmanager
def without_transformers_progress() -> Iterator[None]:
    """Hide transformers' per-shard "Loading weights" bars while loading (they would mix with ours)."""
    from transformers.utils import logging as transformers_logging

    was_enabled = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            transformers_logging.enable_progress_bar()


def launched_processes() -> tuple[int, int, str | None]:
    """(rank, number of processes, this process's device) of an `accelerate launch` / torchrun start;
    (0, 1, None) for a plain start. Several processes split the inputs of `predict` and `eval`."""
    import os

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0, 1, None
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    # Joins the process group the launcher set up; CPU processes (gloo) only when asked for, as Accelerator does.
    state = PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))
    return state.process_index, state.num_processes, str(state.device)


def leave_launched_processes(world: int) -> None:
    """After the last exchange of a launched `predict`/`eval`: wait for every process, then leave the process
    group. A gloo group still alive at interpreter exit can abort a process ("terminate called without an
    active exception", SIGABRT), which the launcher then reports with a traceback. A no-op for one process."""
    if world <= 1:
        return
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def load_quietly(model: str, adapter: str | None, precision: str, device: str | None):
    """`load_for_inference` without transformers' progress bars."""
    from banglaocr.infer import load_for_inference

    with without_transformers_progress():
        return load_for_inference(model, adapter=adapter, precision=precision, device=device)


@contextlib.contextmanager
def progress_bar(total: int, description: str, show: bool) -> Iterator:
    """A rich progress bar on stderr (stdout stays clean) where it can redraw in place; yields `advance(n)`."""
    from banglaocr.live_display import wants_live_display

    if not show or not wants_live_display(err_console):  # a pipe or a notebook's ! cell would keep every frame
        yield lambda n: None
        return
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[speed]} img/s"), TimeElapsedColumn(), TimeRemainingColumn(),
                        console=err_console, transient=True)
    task = progress.add_task(description, total=total, speed="-")
    with progress:
        def advance(n: int) -> None:
            progress.advance(task, n)
            elapsed = progress.tasks[0].elapsed or 0.0
            if elapsed > 0:
                progress.update(task, speed=f"{progress.tasks[0].completed / elapsed:.1f}")
        yield advance
