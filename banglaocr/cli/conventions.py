"""How every command's help reads: the usual conventions of command-line tools, in one place.

- `-h` and `--help` both show the help (`CONTEXT_SETTINGS`, given to the app);
- a boolean flag shows no metavar (`--json`, not `--json <bool>`);
- every value shows an upper-case metavar (`FILE`, `DIR`, `PATH`, `NAME`, `MODEL`, `N` for whole
  numbers, `X` for numbers, `TEXT`), and an option with a fixed set of values lists them instead
  (`one_of(...)`: `[text|jsonl|csv]`);
- usage lines name arguments the same way: `PREDICTIONS`, `INPUT...`, `[KEY=VALUE]...`;
- a docstring is read as paragraphs (`reflowed`): the line breaks of the source are not the help's, each
  paragraph is wrapped to the terminal as a whole (no short line in its middle at 80 columns); an example
  is a paragraph of its own. A paragraph that starts with a `\\b` line keeps its lines (click's convention).

Declarations give their metavar (`typer.Option(..., metavar="DIR")`). `HelpCommand` and
`HelpGroup`, handed to Typer as `cls`, draw the rest the same way: Typer would show its own type
names (`<bool>`, `<path>`, `<list[str]>`) and braces around required arguments (`{inputs}...`).

>>> one_of(("text", "jsonl", "csv"))
'[text|jsonl|csv]'
"""

from __future__ import annotations

import inspect
import typing
from pathlib import Path

from typer.core import TyperCommand, TyperGroup

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"]}
_TYPE_METAVARS = {int: "N", float: "X", str: "TEXT", Path: "PATH"}


def one_of(choices) -> str:
    """The metavar of an option with a fixed set of values: a tuple of them, or a `Literal[...]` type.

    >>> one_of(typing.Literal["char", "grapheme"])
    '[char|grapheme]'
    """
    values = typing.get_args(choices) or tuple(choices)
    return "[" + "|".join(str(value) for value in values) + "]"


def reflowed(help_text: str | None) -> str | None:
    """`help_text` with the lines of each paragraph joined, so the terminal wraps a paragraph as one (the
    source's line breaks would otherwise stay and rich would fold each line again: a ragged right edge).

    >>> reflowed("Summary line.\\n\\n    One sentence\\n    across lines.\\n\\n    \\b\\n    kept\\n    as is\\n")
    'Summary line.\\n\\nOne sentence across lines.\\n\\nkept\\nas is'
    """
    if help_text is None:
        return None
    paragraphs = []
    for paragraph in inspect.cleandoc(help_text).split("\n\n"):
        lines = [line.strip() for line in paragraph.strip("\n").splitlines()]
        if lines and lines[0] == "\b":
            paragraphs.append("\n".join(lines[1:]))
        elif lines:
            paragraphs.append(" ".join(line for line in lines if line))
    return "\n\n".join(paragraphs)


def _fallback_metavar(param) -> str | None:
    """A metavar in the same style for a declaration that gives none, from its Python type."""
    annotation = getattr(getattr(param, "type_descriptor", None), "annotation", None)
    if annotation is None:
        return None
    if typing.get_origin(annotation) is typing.Literal:
        return one_of(annotation)
    if typing.get_origin(annotation) is list:
        annotation = typing.get_args(annotation)[0]
    if typing.get_origin(annotation) is tuple:
        return " ".join(_TYPE_METAVARS.get(arg, "VALUE") for arg in typing.get_args(annotation))
    return _TYPE_METAVARS.get(annotation, "VALUE")


def conventional(params: list) -> list:
    """`params` with the conventions applied: flags without metavar, every value with one, arguments
    described by their metavar alone. Idempotent (the help is drawn more than once per run)."""
    for param in params:
        if param.metavar is None:
            is_flag = getattr(param, "is_flag", False) or getattr(param, "count", False)
            param.metavar = "" if is_flag else _fallback_metavar(param)
        if param.param_type_name == "argument" and hasattr(param, "display_type_rich"):
            # The metavar already names an argument; Typer would add its type (`<path>`) beside it.
            param.display_type_rich = _no_type
    return params


def _no_type(ctx=None) -> None:
    return None


def usage_pieces(command, ctx) -> list[str]:
    """`[OPTIONS] INPUT... [KEY=VALUE]...`: required arguments bare, optional ones in brackets."""
    pieces = [command.options_metavar] if command.options_metavar else []
    for param in command.get_params(ctx):
        if param.param_type_name != "argument":
            continue
        name = param.metavar or param.name.upper()
        many = param.nargs != 1 or name.endswith("...")
        name = name.removesuffix("...")
        pieces.append((name if param.required else f"[{name}]") + ("..." if many else ""))
    return pieces


class HelpCommand(TyperCommand):
    """A command whose help follows the conventions above (pass as `app.command(cls=HelpCommand)`)."""

    def __init__(self, *args, help: str | None = None, **kwargs):  # noqa: A002 (click's name)
        super().__init__(*args, help=reflowed(help), **kwargs)

    def get_params(self, ctx):
        return conventional(super().get_params(ctx))

    def collect_usage_pieces(self, ctx) -> list[str]:
        return usage_pieces(self, ctx)


class HelpGroup(TyperGroup):
    """The app itself, with the same conventions (pass as `typer.Typer(cls=HelpGroup)`)."""

    def __init__(self, *args, help: str | None = None, **kwargs):  # noqa: A002 (click's name)
        super().__init__(*args, help=reflowed(help), **kwargs)

    def get_params(self, ctx):
        return conventional(super().get_params(ctx))

    def collect_usage_pieces(self, ctx) -> list[str]:
        return [*usage_pieces(self, ctx), self.subcommand_metavar]
