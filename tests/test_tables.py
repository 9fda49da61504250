"""Tables with Bangla cells line up: eval's and confusion-report's tables, every line as wide as the others in
the cells the terminal draws (wcwidth's measurements of real terminals: xterm's, which VTE, xterm.js and
mintty share, and one that draws Bangla otherwise, kitty)."""

from __future__ import annotations

import re
from io import StringIO
from pathlib import Path

import pytest
from rich.console import Console
from wcwidth import width as cells

from banglaocr.cli import confusion_report as confusion_cli
from banglaocr.cli import eval as eval_cli
from banglaocr.confidence import confidence_report
from banglaocr.report import confusion_report

BORDERS = set("│┃┏┳┓┡╇┩└┴┘")
BANGLA = re.compile("[\u0980-\u09ff]")
REFERENCES = ["ক্ষমা", "স্ত্রী", "বাংলা", "কিনি", "আমার সোনার বাংলা", "কিছু", "র্যাব", "উজ্জ্বল", "কলম"] * 3
PREDICTIONS = ["কমা", "স্তী", "বাঙলা", "কীনি", "আমার সোনার বাংলা", "কিচু", "রযাব", "", "কলমো"] * 3
TERMINALS = {"xterm": {"TERM": "xterm-256color"}, "vte": {"TERM": "xterm-256color", "VTE_VERSION": "7600"},
             "xterm-kitty": {"TERM": "xterm-kitty"}}
"""Terminals (wcwidth's names) and the environment they give a program."""


@pytest.fixture(params=sorted(TERMINALS))
def terminal(request, monkeypatch) -> str:
    """The tables are printed in this terminal (its environment variables)."""
    for name in ("TERM_PROGRAM", "TERM", "VTE_VERSION", "KONSOLE_VERSION"):
        monkeypatch.delenv(name, raising=False)
    for name, value in TERMINALS[request.param].items():
        monkeypatch.setenv(name, value)
    return request.param


def border_columns(line: str, terminal: str) -> list[int]:
    """Where the line's borders stand, in `terminal`'s cells from the left."""
    return [cells(line[:at], term_program=terminal) for at, char in enumerate(line) if char in BORDERS]


def tables(text: str) -> list[list[str]]:
    """The lines of each table in `text`, top border to bottom border."""
    found, current = [], None
    for line in text.splitlines():
        if line.startswith("┏"):
            current = []
        if current is not None:
            current.append(line)
        if line.startswith("└") and current is not None:
            found.append(current)
            current = None
    return found


def assert_aligned(text: str, expected_tables: int, terminal: str) -> int:
    """Every line of every table is as wide as its top border in `terminal`'s cells, with its borders where the
    header has them; returns the Bangla rows."""
    found = tables(text)
    assert len(found) == expected_tables, text
    bangla_rows = 0
    for lines in found:
        top, header = cells(lines[0], term_program=terminal), border_columns(lines[1], terminal)
        for line in lines:
            assert cells(line, term_program=terminal) == top, f"not as wide as the top border:\n{lines[0]}\n{line}"
            assert border_columns(line, terminal) == header, f"misaligned:\n{lines[1]}\n{line}"
            bangla_rows += bool(BANGLA.search(line))
    return bangla_rows


def rendered(module, monkeypatch, width: int, call) -> str:
    console = Console(file=StringIO(), width=width, color_system=None)
    monkeypatch.setattr(module, "console", console)
    call()
    return console.file.getvalue()


@pytest.mark.parametrize("width", [200, 80, 48])
def test_eval_tables_line_up_with_bangla(monkeypatch, width, terminal):
    summary = {"model": "runs/cpu_demo", "data": "খাতা/words", "split": "test", "n": len(REFERENCES), "cer": 0.31,
               "mean_cer": 0.3, "wer": 0.6, "ger": 0.35, "exact_match": 0.2, "empty_predictions": 3,
               "unreadable_images": 0, "images_per_s": 12.5, "device": "cpu", "dtype": "float32", "batch_size": 16,
               "num_beams": 1}
    rows = [{"id": f"শব্দ-{index:02d}.png", "reference": ref, "prediction": hyp, "cer": 1.0 - index / 100,
             "confidence": 1.0 - index / 50} for index, (ref, hyp) in enumerate(zip(REFERENCES, PREDICTIONS))]
    summary["confidence"] = confidence_report(rows)
    text = rendered(eval_cli, monkeypatch, width, lambda: eval_cli._print_report(summary, rows, Path("eval-test")))
    # the metrics, the worst samples, the coverage table of the most confident readings
    assert assert_aligned(text, expected_tables=3, terminal=terminal) >= eval_cli.WORST
    assert "(empty)" in text and "ক্ষমা" in text and "উজ্জ্বল" in text


@pytest.mark.parametrize("level", ["char", "grapheme"])
@pytest.mark.parametrize("width", [200, 80, 48])
def test_confusion_tables_line_up_with_bangla(monkeypatch, level, width, terminal):
    report = confusion_report(REFERENCES, PREDICTIONS, level=level)
    text = rendered(confusion_cli, monkeypatch, width, lambda: confusion_cli._print_report(report, 20, 1))
    assert assert_aligned(text, expected_tables=4, terminal=terminal) >= 10
    if level == "grapheme":
        assert "ক্ষ" in text and "স্ত্রী" in text


def test_the_common_terminals_draw_bangla_alike_and_the_tables_use_their_widths():
    """xterm, VTE, xterm.js (VS Code) and mintty were measured to draw these words in the same cells: where the
    terminal cannot be told (a pipe, Windows Terminal's xterm-256color), the tables use those widths."""
    from banglaocr.cli.tables import display_width, terminal_program

    for text in {*REFERENCES, *PREDICTIONS, "ক্ষ", "ি", "র\u200d্যাব", "ক\u200cষ", "য়"}:
        measured = {cells(text, term_program=name) for name in ("xterm", "vte", "xterm.js", "mintty")}
        assert measured == {display_width(text)}, text
    assert terminal_program({"TERM": "xterm-256color", "WT_SESSION": "x"}) == terminal_program({}) == "xterm"
