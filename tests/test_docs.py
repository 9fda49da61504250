"""The documentation describes what is built: generated recipe reference, recipes, commands, links."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from banglaocr.config import RECIPES_DIR
from banglaocr.recipe_reference import REGENERATE, recipe_reference_markdown

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def _registered_commands() -> list[str]:
    from banglaocr.cli import COMMANDS

    return [name for name, _ in COMMANDS]


def _options_of(command_name: str) -> list[str]:
    """Every long option (`--out`) of a registered command, as its --help shows them."""
    import typer

    from banglaocr.cli import app

    group = typer.main.get_command(app)
    command = group.commands[command_name]
    options = []
    for param in command.params:
        options += [opt for opt in (*param.opts, *param.secondary_opts) if opt.startswith("--")]
    return [opt for opt in options if opt != "--help"]


def test_recipe_reference_is_up_to_date():
    page = DOCS / "recipes.md"
    assert page.is_file(), f"docs/recipes.md is missing; generate it with: {REGENERATE}"
    if page.read_text(encoding="utf-8") != recipe_reference_markdown():
        pytest.fail(f"docs/recipes.md is out of date with banglaocr/config.py or banglaocr/recipes/; "
                    f"regenerate it with: {REGENERATE}", pytrace=False)


@pytest.mark.parametrize("recipe", sorted(p.stem for p in RECIPES_DIR.glob("*.yaml")))
def test_every_shipped_recipe_is_documented(recipe):
    texts = [(DOCS / name).read_text(encoding="utf-8") for name in ("recipes.md", "quickstart.md")
             if (DOCS / name).is_file()]
    assert any(re.search(rf"\b{re.escape(recipe)}\b", text) for text in texts), (
        f"shipped recipe {recipe}.yaml is mentioned in neither docs/recipes.md nor docs/quickstart.md")


def test_every_registered_command_has_a_page_that_names_its_options():
    # Checks whatever banglaocr.cli.COMMANDS registers now: a command added later needs its page.
    for name in _registered_commands():
        page = DOCS / "commands" / f"{name}.md"
        assert page.is_file(), f"command '{name}' has no page docs/commands/{name}.md"
        text = page.read_text(encoding="utf-8")
        assert f"banglaocr {name}" in text, f"docs/commands/{name}.md never shows `banglaocr {name}`"
        missing = [opt for opt in _options_of(name) if not re.search(rf"{re.escape(opt)}(?![\w-])", text)]
        assert not missing, f"docs/commands/{name}.md does not describe {', '.join(missing)} (see banglaocr {name} --help)"


def _anchors(page: Path) -> set[str]:
    """GitHub's heading anchors of a Markdown page (lower case, punctuation dropped, spaces -> '-')."""
    anchors = set()
    in_code = False
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and (match := re.match(r"#{1,6} (.+)", line)):
            anchors.add(re.sub(r"[^\w\- ]", "", match.group(1).strip().lower()).replace(" ", "-"))
    return anchors


def test_relative_links_in_the_docs_resolve():
    pages = [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]
    broken = []
    for page in pages:
        for target, anchor in re.findall(r"\]\(([^)#\s]*)(?:#([^)\s]*))?\)", page.read_text(encoding="utf-8")):
            if re.match(r"[a-z]+:", target):  # http(s), mailto
                continue
            linked = (page.parent / target) if target else page
            if not linked.exists():
                broken.append(f"{page.relative_to(ROOT)} -> {target}")
            elif anchor and linked.suffix == ".md" and anchor not in _anchors(linked):
                broken.append(f"{page.relative_to(ROOT)} -> {target}#{anchor} (no such heading)")
    assert not broken, "broken links: " + "; ".join(broken)
