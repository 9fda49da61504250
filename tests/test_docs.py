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


INSTALL_COMMAND = "bash scripts/install.sh"


def _code_blocks(text: str) -> list[list[str]]:
    """The lines of each fenced code block of a Markdown text, in order."""
    blocks, current = [], None
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            if current is None:
                current = []
            else:
                blocks.append(current)
                current = None
        elif current is not None:
            current.append(line.strip())
    return blocks


def _quickstart(readme: str) -> str:
    start = readme.index("\n## Quickstart\n")
    return readme[start:readme.index("\n## ", start + 1)]


def test_the_readme_quickstart_is_install_main_job_tests_as_the_install_script_prints_them():
    quickstart = _quickstart((ROOT / "README.md").read_text(encoding="utf-8"))
    install, main_job, tests = _code_blocks(quickstart)[0]
    assert install == INSTALL_COMMAND
    script = (ROOT / "scripts" / "install.sh").read_text(encoding="utf-8")
    # What the script prints as the next two commands, with the default venv (.venv) in place of $SHOWN.
    printed = [line.split("#")[0].strip() for line in
               re.findall(r'^\s*echo "  \$SHOWN(/bin/[^"]*)"', script, flags=re.MULTILINE)]
    assert [".venv" + line for line in printed] == [main_job, tests]
    assert "source .venv/bin/activate" in quickstart
    usage = re.search(r'USAGE="(.*?)"', script, flags=re.DOTALL).group(1)
    options = re.findall(r"^\s+(--[\w-]+(?: [A-Z]+)?)", usage, flags=re.MULTILINE)
    assert options == ["--gpu", "--no-dev", "--python PY", "--venv DIR"]
    assert all(f"`{option}`" in quickstart for option in options), "the quickstart names every install option"
    # CI installs the same way, and the quickstart page shows the same command.
    assert re.search(rf"^{re.escape(INSTALL_COMMAND)}$", (ROOT / ".ci" / "run").read_text(encoding="utf-8"),
                     flags=re.MULTILINE)
    assert [INSTALL_COMMAND] in _code_blocks((DOCS / "quickstart.md").read_text(encoding="utf-8"))


BARE_COMMAND = re.compile(r"^!?(?:[A-Z_]+=\S+\s+)*(?:banglaocr|accelerate)\s")


@pytest.mark.parametrize("page", ["README.md", "docs/quickstart.md", "docs/kaggle.md",
                                  *sorted(f"docs/commands/{p.name}" for p in (DOCS / "commands").glob("*.md"))])
def test_a_page_that_writes_commands_bare_first_says_they_assume_the_activated_venv(page):
    text = (ROOT / page).read_text(encoding="utf-8")
    if page == "README.md":
        text = text[text.index("\n## Quickstart\n"):]  # above it: the list of commands, not one to run
    blocks = _code_blocks(text)
    if page.startswith("docs/commands/"):
        blocks = blocks[1:]  # the synopsis at the top of a command page is its usage, not a command to run
    bare = next((line for block in blocks for line in block if BARE_COMMAND.match(line)), None)
    if bare is None:
        return
    note = text.find("source .venv/bin/activate")
    assert 0 <= note < text.index(bare), f"{page} runs `{bare}` before it says to activate the venv"
