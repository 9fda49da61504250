"""The `banglaocr` console script: one Typer app, one thin module per command.

Heavy libraries (torch, transformers) are imported inside command bodies so that
`banglaocr --help` stays fast.

>>> from typer.testing import CliRunner
>>> CliRunner().invoke(app, ["--version"]).output.startswith("banglaocr ")
True
>>> CliRunner().invoke(app, []).exit_code   # bare `banglaocr` prints the help
0
"""

from __future__ import annotations

from typing import Annotated

import typer

from banglaocr import __version__
from banglaocr.cli import confusion_report, doctor, eval, merge_lora, predict, review, scan_dims, segment, synth, train
from banglaocr.cli.conventions import CONTEXT_SETTINGS, HelpCommand, HelpGroup

app = typer.Typer(
    name="banglaocr",
    help="Fine-tune Qwen3-VL with LoRA to read handwritten Bangla words; evaluate, analyse, merge, serve.",
    cls=HelpGroup,
    context_settings=CONTEXT_SETTINGS,
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
    ("segment", segment.segment),
    ("merge-lora", merge_lora.merge_lora),
    ("doctor", doctor.doctor),
    ("review", review.review),
]
# Commands whose free arguments may look like options: train takes the original script's flags
# (`--lora_r 256`) among its recipe overrides.
TAKES_FOREIGN_FLAGS = {"train"}
for _name, _function in COMMANDS:
    _settings = {"ignore_unknown_options": True} if _name in TAKES_FOREIGN_FLAGS else None
    app.command(name=_name, cls=HelpCommand, context_settings=_settings)(_function)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"banglaocr {__version__}")
        raise typer.Exit()


@app.callback(invoke_without_command=True)
def _root(
    ctx: typer.Context,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """Fine-tune Qwen3-VL with LoRA to read handwritten Bangla words."""
    if ctx.invoked_subcommand is None:  # bare `banglaocr`: the help, and success
        typer.echo(ctx.get_help())
        raise typer.Exit(0)


def main() -> None:
    """Entry point of the `banglaocr` console script."""
    app()
