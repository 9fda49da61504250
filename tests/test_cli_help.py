"""Every command's help follows the usual command-line conventions (banglaocr.cli.conventions)."""

from __future__ import annotations

import re
import typing

import pytest
import typer
from typer.testing import CliRunner

from banglaocr.cli import COMMANDS, app
from banglaocr.cli.conventions import one_of

runner = CliRunner()
WIDE = {"COLUMNS": "250"}  # one line per option
# An upper-case metavar (FILE, DIR, N, X, THIN HEAVY, KEY=VALUE..., INPUT...) or a list of choices ([a|b]).
METAVAR = re.compile(r"^(?:[A-Z][A-Z0-9_=]*(?: [A-Z][A-Z0-9_=]*)*(?:\.\.\.)?|\[[a-z0-9_.-]+(?:\|[a-z0-9_.-]+)+\])$")
TYPE_NAMES = re.compile(r"<(?:bool|str|text|path|int|float|list|tuple|file|dir|choice)\b[^>]*>", re.IGNORECASE)


def _choices() -> dict[tuple[str, str], tuple[str, ...]]:
    """Options with a fixed set of values, and the values the code accepts."""
    from banglaocr.cli.eval import SPLIT_CHOICES
    from banglaocr.cli.predict import FORMATS
    from banglaocr.confusion import Level
    from banglaocr.infer import PRECISIONS

    return {("predict", "--format"): FORMATS, ("predict", "--precision"): PRECISIONS,
            ("eval", "--precision"): PRECISIONS, ("eval", "--split"): SPLIT_CHOICES,
            ("scan-dims", "--split"): ("train", "val", "test"),
            ("confusion-report", "--level"): typing.get_args(Level),
            ("merge-lora", "--dtype"): ("float32", "float16", "bfloat16")}


def _help(*args: str) -> str:
    result = runner.invoke(app, [*args], env=WIDE)
    assert result.exit_code == 0, result.output
    return result.output


def _command(name: str):
    return typer.main.get_command(app).commands[name]


def _option_line(output: str, option: str) -> str:
    lines = [line for line in output.splitlines() if re.search(rf"│\s*\*?\s*{re.escape(option)}(?![\w-])", line)]
    assert len(lines) == 1, f"{option}: {lines}"
    return lines[0]


@pytest.mark.parametrize("name", [name for name, _ in COMMANDS])
def test_help_and_h_show_the_same_conventional_help(name):
    long, short = _help(name, "--help"), _help(name, "-h")
    assert long == short
    assert not TYPE_NAMES.findall(long), TYPE_NAMES.findall(long)
    usage = next(line for line in long.splitlines() if "Usage:" in line)
    assert "{" not in usage and "}" not in usage and "<" not in usage, usage
    command = _command(name)
    context = typer.Context(command)
    for param in command.get_params(context):
        shown = param.opts[0] if param.param_type_name == "option" else param.metavar
        line = _option_line(long, shown) if param.param_type_name == "option" else long
        if getattr(param, "is_flag", False):
            assert param.metavar == "", f"{name} {shown}: a flag shows no metavar"
            assert re.search(rf"{re.escape(shown)}(?:\s+-\w)?\s{{2,}}[A-Z]", line), line
            continue
        assert METAVAR.match(param.metavar or ""), f"{name} {shown}: metavar {param.metavar!r}"
        assert param.metavar in line
        if param.param_type_name == "argument":
            assert param.metavar.removesuffix("...") in usage


def test_options_with_a_fixed_set_of_values_list_them():
    for (name, option), values in _choices().items():
        line = _option_line(_help(name, "--help"), option)
        assert one_of(values) in line, (name, option, line)
    # and every Literal-typed option lists exactly its values
    for name, _ in COMMANDS:
        command = _command(name)
        for param in command.get_params(typer.Context(command)):
            annotation = getattr(getattr(param, "type_descriptor", None), "annotation", None)
            if typing.get_origin(annotation) is typing.Literal:
                assert param.metavar == one_of(annotation), (name, param.opts)


def test_the_precision_choices_are_what_loading_accepts():
    from banglaocr.cli.common import Precision
    from banglaocr.infer import PRECISIONS

    assert typing.get_args(Precision) == PRECISIONS


def test_bare_banglaocr_prints_the_help_and_succeeds():
    result = runner.invoke(app, [], env=WIDE)
    assert result.exit_code == 0
    assert "Usage: banglaocr [OPTIONS] COMMAND" in result.output
    assert all(name in result.output for name, _ in COMMANDS)
    assert _help("-h") == _help("--help") == result.output


def test_examples_name_the_readme_run_folder():
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    assert "runs/cpu_demo" in readme
    for name, _ in COMMANDS:
        for folder in re.findall(r"runs/([\w.-]+)", _help(name, "--help")):
            assert folder in ("cpu_demo", "kaggle_t4x2"), f"{name} --help names runs/{folder}"
    assert "runs/cpu_demo/test_predictions.jsonl" in _help("confusion-report", "--help")


NARROW = {"COLUMNS": "80"}


def _description_paragraphs(output: str) -> list[list[str]]:
    """The paragraphs of a help's description (between the usage line and the first panel), as their lines."""
    lines = output.splitlines()
    start = next(index for index, line in enumerate(lines) if "Usage:" in line) + 1
    end = next((index for index, line in enumerate(lines) if line.startswith("╭")), len(lines))
    paragraphs, current = [], []
    for line in lines[start:end] + [""]:
        if line.strip():
            current.append(line.strip())
        elif current:
            paragraphs.append(current)
            current = []
    return paragraphs


@pytest.mark.parametrize("name", ["", *(name for name, _ in COMMANDS)])
def test_help_at_80_columns_fits_and_wraps_whole_paragraphs(name):
    """No line wider than 80 terminal cells; inside a paragraph of the description no line is short (under half
    the width) - a sentence broken by the source's own line breaks would leave one ("contrast, JPEG)," alone)."""
    from wcwidth import wcswidth

    result = runner.invoke(app, [*([name] if name else []), "--help"], env=NARROW)
    assert result.exit_code == 0, result.output
    for line in result.output.splitlines():
        assert wcswidth(line) <= 80, f"{name}: {wcswidth(line)} cells: {line!r}"
    for paragraph in _description_paragraphs(result.output):
        for line in paragraph[:-1]:  # the last line of a paragraph may be short
            assert len(line) >= 40, f"{name}: a short line inside a paragraph: {line!r} in {paragraph}"
        # An example is a paragraph of its own (joined to the next one it would read as one command line).
        examples = re.findall(r"(?<!-m )\bbanglaocr (?=[a-z])", " ".join(paragraph))
        assert len(examples) <= 1, f"{name}: two examples in one paragraph: {paragraph}"


def test_multi_process_examples_say_multi_gpu():
    """accelerate launch starts several processes as DDP only with --multi_gpu (or a config file)."""
    for name in ["", *(name for name, _ in COMMANDS)]:
        text = " ".join(_help(*([name] if name else []), "--help").split())
        for launch in re.findall(r"accelerate launch .*?-m banglaocr", text):
            processes = re.search(r"--num_processes (\d+)", launch)
            if processes and int(processes.group(1)) > 1:
                assert "--multi_gpu" in launch or "--config_file" in launch, f"{name}: {launch}"
