"""Tables with Bangla cells line up: eval's and confusion-report's tables, measured in grapheme clusters."""

from __future__ import annotations

import re
from io import StringIO
from pathlib import Path

import pytest
from rich.console import Console

from banglaocr.cli import confusion_report as confusion_cli
from banglaocr.cli import eval as eval_cli
from banglaocr.report import confusion_report
from banglaocr.text import graphemes

BORDERS = set("│┃┏┳┓┡╇┩└┴┘")
BANGLA = re.compile("[\u0980-\u09ff]")
REFERENCES = ["ক্ষমা", "স্ত্রী", "বাংলা", "কিনি", "আমার সোনার বাংলা", "কিছু", "র্যাব", "উজ্জ্বল", "কলম"] * 3
PREDICTIONS = ["কমা", "স্তী", "বাঙলা", "কীনি", "আমার সোনার বাংলা", "কিচু", "রযাব", "", "কলমো"] * 3


def border_columns(line: str) -> list[int]:
    """Where the line's borders stand, counted in grapheme clusters from the left."""
    return [at for at, cluster in enumerate(graphemes(line)) if cluster in BORDERS]


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


def assert_aligned(text: str, expected_tables: int) -> int:
    """Every line of every table has its borders where the header has them; returns the Bangla rows."""
    found = tables(text)
    assert len(found) == expected_tables, text
    bangla_rows = 0
    for lines in found:
        header = border_columns(lines[1])
        for line in lines:
            assert border_columns(line) == header, f"misaligned:\n{lines[1]}\n{line}"
            bangla_rows += bool(BANGLA.search(line))
    return bangla_rows


def rendered(module, monkeypatch, width: int, call) -> str:
    console = Console(file=StringIO(), width=width, color_system=None)
    monkeypatch.setattr(module, "console", console)
    call()
    return console.file.getvalue()


@pytest.mark.parametrize("width", [200, 80, 48])
def test_eval_tables_line_up_with_bangla(monkeypatch, width):
    summary = {"model": "runs/cpu_demo", "data": "খাতা/words", "split": "test", "n": len(REFERENCES), "cer": 0.31,
               "mean_cer": 0.3, "wer": 0.6, "ger": 0.35, "exact_match": 0.2, "empty_predictions": 3,
               "unreadable_images": 0, "images_per_s": 12.5, "device": "cpu", "dtype": "float32", "batch_size": 16,
               "num_beams": 1}
    rows = [{"id": f"শব্দ-{index:02d}.png", "reference": ref, "prediction": hyp, "cer": 1.0 - index / 100}
            for index, (ref, hyp) in enumerate(zip(REFERENCES, PREDICTIONS))]
    text = rendered(eval_cli, monkeypatch, width, lambda: eval_cli._print_report(summary, rows, Path("eval-test")))
    assert assert_aligned(text, expected_tables=2) >= eval_cli.WORST
    assert "(empty)" in text and "ক্ষমা" in text and "উজ্জ্বল" in text


@pytest.mark.parametrize("level", ["char", "grapheme"])
@pytest.mark.parametrize("width", [200, 80, 48])
def test_confusion_tables_line_up_with_bangla(monkeypatch, level, width):
    report = confusion_report(REFERENCES, PREDICTIONS, level=level)
    text = rendered(confusion_cli, monkeypatch, width, lambda: confusion_cli._print_report(report, 20, 1))
    assert assert_aligned(text, expected_tables=4) >= 10
    if level == "grapheme":
        assert "ক্ষ" in text and "স্ত্রী" in text
