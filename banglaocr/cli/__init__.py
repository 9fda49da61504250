"""The `banglaocr` console script: one Typer app, one thin module per command.

Heavy libraries (torch, transformers) are imported inside command bodies so that
`banglaocr --help` stays fast.

>>> from typer.testing import CliRunner
>>> CliRunner().invoke(app, ["--version"]).output.startswith("banglaocr ")
True
"""

from __future__ import annotations

from typing import Annotated

import typer

from banglaocr import __version__
from banglaocr.cli import confusion_report, eval, merge_lora, predict, scan_dims, synth, train

app = typer.Typer(
    name="banglaocr",
    help="Fine-tune Qwen3-VL with LoRA to read handwritten Bangla words; evaluate, analyse, merge, serve.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# The one registry of commands: (name, function). Each function's first docstring line is its help summary.
COMMANDS = [
    ("synth", synth.synth),
    ("scan-dims", scan_dims.scan_dims),
    ("train", train.train),
    ("eval", eval.eval_command),
    ("confusion-report", confusion_report.confusion_report),
    ("predict", predict.predict),
    ("merge-lora", merge_lora.merge_lora),
]
for _name, _function in COMMANDS:
    app.command(name=_name)(_function)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"banglaocr {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """Fine-tune Qwen3-VL with LoRA to read handwritten Bangla words."""


def main() -> None:
    """Entry point of the `banglaocr` console script."""
    app()
