"""The recipe reference (`docs/recipes.md`), generated from the schema in `banglaocr.config`.

The dataclasses are the one schema of every setting; this module turns them into one table per
section (key, type, default, description - the description is the docstring under each field),
plus a summary of every shipped recipe (what it is for, and the keys it sets differently from
the defaults). `tests/test_docs.py` fails when `docs/recipes.md` is out of date.

Regenerate after changing `config.py` or a shipped recipe::

    python -m banglaocr.recipe_reference            # writes docs/recipes.md
    python -m banglaocr.recipe_reference --check    # exit code 1 if docs/recipes.md is stale

>>> text = recipe_reference_markdown()
>>> "| `train.lr` | float | `0.0002` |" in text
True
>>> format_type(str | None), format_type(int | typing.Literal["all"])
('str \\\\| null', "int \\\\| 'all'")
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

from banglaocr import config
from banglaocr.config import RECIPES_DIR, Recipe, field_docs

DOCS_FILE = Path(__file__).resolve().parent.parent / "docs" / "recipes.md"
"""Where `main()` writes by default: `docs/recipes.md` of the source checkout."""

REGENERATE = "python -m banglaocr.recipe_reference"

SECTION_ORDER = ("model", "lora", "data", "augment", "loss", "train", "eval")
"""Top-level sections in the order the shipped recipe files write them (any new one goes last)."""

_MISSING = object()


# --------------------------------------------------------------------------- formatting


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell: one line, pipes escaped (also inside code spans)."""
    return " ".join(text.split()).replace("|", "\\|")


def _section_type(tp: Any) -> type | None:
    """The dataclass behind an annotation (`LoraConfig | None` -> LoraConfig), else None."""
    if dataclasses.is_dataclass(tp):
        return tp
    if typing.get_origin(tp) in (Union, types.UnionType):
        for arg in typing.get_args(tp):
            if dataclasses.is_dataclass(arg):
                return arg
    return None


def format_type(tp: Any) -> str:
    """A field's type as a reader of YAML sees it (`null`, `'a' | 'b'`, `list of str`), table-escaped."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        text = " | ".join(repr(arg) for arg in typing.get_args(tp))
    elif origin in (Union, types.UnionType):
        text = " | ".join(format_type(arg).replace("\\|", "|") for arg in typing.get_args(tp))
    elif origin is list:
        text = f"list of {format_type(typing.get_args(tp)[0])}"
    elif tp is type(None):
        text = "null"
    elif dataclasses.is_dataclass(tp):
        text = "section"
    else:
        text = getattr(tp, "__name__", str(tp))
    return _cell(text)


def format_value(value: Any) -> str:
    """A value as it would be written in a recipe (YAML spelling: null, true, [a, b])."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(format_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key}: {format_value(item)}" for key, item in value.items()) + "}"
    return str(value)


def _code(value: Any) -> str:
    return _cell(f"`{format_value(value)}`")


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return _MISSING


# --------------------------------------------------------------------------- sections


def sections() -> list[tuple[str, type]]:
    """(dotted name, dataclass) of every recipe section, nested ones right after their parent.

    >>> [name for name, _ in sections()][:3]
    ['model', 'model.tiny', 'lora']
    """
    found: list[tuple[str, type]] = []

    def walk(prefix: str, cls: type) -> None:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            section = _section_type(hints[f.name])
            if section is not None:
                name = f"{prefix}{f.name}"
                found.append((name, section))
                walk(f"{name}.", section)

    walk("", Recipe)
    # The order recipe files use (model, lora, data, ...); nested sections stay after their parent.
    rank = {name: index for index, name in enumerate(SECTION_ORDER)}
    top = [name for name, _ in found if "." not in name]
    position = {name: rank.get(name, len(rank) + top.index(name)) for name in top}
    return sorted(found, key=lambda item: position[item[0].split(".")[0]])


def _section_table(name: str, cls: type) -> list[str]:
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    nullable = _nullable_sections()
    lines = [f"## `{name}`", ""]
    summary = (cls.__doc__ or "").strip()
    if summary:
        lines += [" ".join(summary.split("\n\n")[0].split()), ""]
    if name in nullable:
        lines += [f"`{name}: null` in a recipe, or `{name}=null` on the command line, switches the section off; "
                  f"an override such as `{name}.{dataclasses.fields(cls)[0].name}=...` over a null section "
                  "brings it back with its defaults.", ""]
    lines += ["| key | type | default | description |", "| --- | --- | --- | --- |"]
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        key = f"`{name}.{f.name}`"
        description = docs.get(f.name, "")
        if _section_type(tp) is not None:
            lines.append(f"| {key} | section | see [`{name}.{f.name}`](#{_anchor(name + '.' + f.name)}) "
                         f"| {_cell(description)} |")
            continue
        default = _default(f)
        default_text = "required" if default is _MISSING else _code(default)
        lines.append(f"| {key} | {format_type(tp)} | {default_text} | {_cell(description)} |")
    return lines + [""]


def _anchor(dotted: str) -> str:
    """GitHub's heading anchor of "## `a.b`" (backticks and dots dropped)."""
    return dotted.replace(".", "").lower()


def _nullable_sections() -> set[str]:
    """Top-level sections whose annotation allows null (`lora`)."""
    hints = typing.get_type_hints(Recipe)
    return {f.name for f in dataclasses.fields(Recipe)
            if typing.get_origin(hints[f.name]) in (Union, types.UnionType)
            and type(None) in typing.get_args(hints[f.name])}


# --------------------------------------------------------------------------- shipped recipes


def _flatten(raw: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(raw, dict):
        flat: dict[str, Any] = {}
        for key, value in raw.items():
            flat.update(_flatten(value, f"{prefix}{key}."))
        return flat
    return {prefix.rstrip("."): raw}


def recipe_differences(recipe: Recipe) -> list[tuple[str, Any]]:
    """(dotted key, value) of every setting of `recipe` that differs from the schema's default.

    >>> recipe_differences(config.load_recipe("cpu_demo"))[:2]
    [('model.name_or_path', 'tiny'), ('model.dtype', 'float32')]
    """
    mine = config.recipe_to_dict(recipe)
    # The two required keys have no default: build the defaults around this recipe's values.
    defaults = config.recipe_to_dict(config.recipe_from_dict(
        {"model": {"name_or_path": "\0"}, "data": {"source": "\0"}}))
    result = []
    rank = {name: index for index, name in enumerate(SECTION_ORDER)}
    for section, value in sorted(mine.items(), key=lambda item: rank.get(item[0], len(rank))):
        default = defaults[section]
        if value is None or default is None:  # a section switched off (lora: null) or on
            if value != default:
                result.append((section, value if value is None else "section"))
            continue
        flat, flat_default = _flatten(value, f"{section}."), _flatten(default, f"{section}.")
        result += [(key, item) for key, item in flat.items() if flat_default.get(key) != item]
    return result


def _recipe_summary(path: Path) -> str:
    """The first sentence of the comment block at the top of a recipe file."""
    words = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        words += line.lstrip("#").split()
    text = " ".join(words)
    end = text.find(". ")
    return text[:end + 1] if end >= 0 else text


def _shipped_recipes() -> list[str]:
    lines = ["## Shipped recipes", "",
             "In `banglaocr/recipes/` (the repository's `recipes/` folder links there). Give a path "
             "(`--recipe recipes/cpu_demo.yaml`) or just the name (`--recipe cpu_demo`); copy one to start "
             "your own. The tables list the settings each recipe changes from the defaults below.", ""]
    for path in sorted(RECIPES_DIR.glob("*.yaml")):
        recipe = config.load_recipe(path)
        lines += [f"### `{path.stem}`", "", _recipe_summary(path), "",
                  "| key | value |", "| --- | --- |"]
        lines += [f"| `{key}` | {_code(value)} |" for key, value in recipe_differences(recipe)]
        lines.append("")
    return lines


# --------------------------------------------------------------------------- the page


def recipe_reference_markdown() -> str:
    """The whole recipe reference page, as Markdown."""
    section_names = [name for name, _ in sections()]
    lines = [
        f"<!-- Generated from banglaocr/config.py and banglaocr/recipes/ by `{REGENERATE}`. Do not edit. -->",
        "",
        "# Recipe reference",
        "",
        "A recipe is one YAML file with the sections " + ", ".join(
            f"`{name}`" for name in section_names if "." not in name) + ". "
        "Every key below is optional except `model.name_or_path` and `data.source`; a missing key takes "
        "its default. The schema is `banglaocr/config.py` (frozen dataclasses); this page is generated "
        "from it.",
        "",
        "- Override any key on the command line as `section.key=value` (the value is read as YAML): "
        "`banglaocr train --recipe cpu_demo train.lr=1e-4 data.image.height=64 lora=null`.",
        "- A misspelled key, a value of the wrong type, a missing required key or an invalid value is one "
        "line naming the key and exit code 2, e.g. `error: unknown recipe key 'train.lrr' (did you mean "
        "'lr'?)`.",
        "- `banglaocr train --recipe R --dry-run` prints the resolved recipe (every default filled in); the "
        "resolved recipe is also saved as `recipe.yaml` in every run, checkpoint and model folder.",
        "- `banglaocr scan-dims --write budget.yaml` writes a recommended `data.image` budget and "
        "`eval.max_new_tokens` as a recipe fragment.",
        "",
        "Sections: " + ", ".join(f"[`{name}`](#{_anchor(name)})" for name in section_names) + ".",
        "",
    ]
    lines += _shipped_recipes()
    for name, cls in sections():
        lines += _section_table(name, cls)
    return "\n".join(lines).rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write (or with `--check`, compare) the recipe reference; return the exit code."""
    parser = argparse.ArgumentParser(prog="python -m banglaocr.recipe_reference", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=DOCS_FILE, help=f"file to write (default: {DOCS_FILE})")
    parser.add_argument("--check", action="store_true", help="do not write; exit 1 if the file is out of date")
    args = parser.parse_args(argv)
    text = recipe_reference_markdown()
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.is_file() else None
        if current != text:
            print(f"{args.out} is out of date; regenerate it with: {REGENERATE}", file=sys.stderr)
            return 1
        print(f"{args.out} is up to date")
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
