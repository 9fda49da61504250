"""`predict --layout page`: whole pages (images and PDFs) read word by word, one row per page.

Each page is segmented as `banglaocr segment` does it (`pages.segment`) and its word crops are read as
`predict` reads word crops (`pages.reading.read_pages`). The rows, in input order, one per page (a PDF gives
one per page; a PDF page is named `SOURCE#page=N`):

- `jsonl`: `{"file", "source", "page", "width", "height", "skew_degrees", "text", "confidence", "words",
  "lines": [[{"box": [x0, y0, x1, y1], "prediction", "confidence", "lowest_token_confidence", "clusters"},
  ...], ...]}` (a word adds `"flagged": true` below --flag-below, `"blank": true` for a crop without ink, or
  has `"error"` instead of its reading); `{"file": INPUT, "error": reason}` for an input that cannot be read.
  `banglaocr review` takes these rows as they are.
- `text`: `==> FILE <==`, the page's text line by line, a blank line (`ERROR: reason` for an error).
- `csv`: one row per word, columns `PAGE_CSV_COLUMNS` (line and word numbered from 1 in reading order); an
  input that cannot be read is one row with its error.

`--draw-boxes DIR` writes each page with its word boxes, `DIR/NAME.png` (`NAME-pNNN.png` for a PDF page):
red for a reading below --flag-below (0.5 when it is not given), green for the others, grey for a blank crop.

>>> from types import SimpleNamespace
>>> from banglaocr.confidence import Confidence
>>> from banglaocr.pages.reading import PageReading
>>> word = SimpleNamespace(text="আমি", error=None, blank=False, confidence=Confidence(0.9, 0.8, (("আ", 0.9),)))
>>> page = PageReading("p.png", "p.png", None, 120, 40, 0.0, [[((4, 5, 60, 30), word)]])
>>> print(page_row(page, "text", None), end="")
==> p.png <==
আমি
<BLANKLINE>
>>> page_row(page, "csv", 0.95)
'p.png,1,1,4,5,60,30,আমি,,,0.9,true\\n'
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from banglaocr.row_encoding import escape_field, json_line

PAGE_CSV_COLUMNS = ["file", "line", "word", "x0", "y0", "x1", "y1", "prediction", "error", "blank", "confidence",
                    "flagged"]
BOXES_MARKER = "predict-boxes.json"
"""What marks a --draw-boxes folder as predict's (a later run may write into it again)."""
DRAW_FLAG_DEFAULT = 0.5
"""Without --flag-below, boxes of readings below this confidence are drawn red."""


def error_row(file: str, error: str, fmt: str) -> str:
    """The row of an input (or PDF page) that could not be read."""
    if fmt == "jsonl":
        return json_line({"file": file, "error": error})
    if fmt == "csv":
        return _csv_line([escape_field(file), "", "", "", "", "", "", "", escape_field(error), "", "", ""])
    return f"==> {escape_field(file)} <==\nERROR: {escape_field(error)}\n\n"


def _flagged(reading, flag_below: float | None) -> bool:
    return flag_below is not None and reading.confidence is not None and reading.confidence.sequence < flag_below


def page_row(page, fmt: str, flag_below: float | None) -> str:
    """The row (the lines, for text and csv) of one `pages.reading.PageReading`."""
    if page.error is not None:
        return error_row(page.file, page.error, fmt)
    if fmt == "jsonl":
        return json_line(_page_json(page, flag_below))
    if fmt == "text":
        return f"==> {escape_field(page.file)} <==\n" + "".join(escape_field(line) + "\n"
                                                              for line in page.text.split("\n")) + "\n"
    rows = []
    for number, line in enumerate(page.lines, start=1):
        for k, (box, reading) in enumerate(line, start=1):
            shown = "" if reading.confidence is None else f"{round(reading.confidence.sequence, 4):g}"
            rows.append(_csv_line([escape_field(page.file), str(number), str(k), *map(str, box),
                                   escape_field(reading.text or ""), escape_field(reading.error or ""),
                                   "true" if reading.blank else "", shown,
                                   "true" if _flagged(reading, flag_below) else ""]))
    return "".join(rows)


def _page_json(page, flag_below: float | None) -> dict:
    lines = []
    for line in page.lines:
        words = []
        for box, reading in line:
            word = {"box": list(box)}
            if reading.error is not None:
                word["error"] = reading.error
            else:
                word["prediction"] = reading.text
            if reading.blank:
                word["blank"] = True
            if reading.confidence is not None:
                word.update(reading.confidence.to_row())
            if _flagged(reading, flag_below):
                word["flagged"] = True
            words.append(word)
        lines.append(words)
    confidence = page.confidence
    return {"file": page.file, "source": page.source, "page": page.page, "width": page.width,
            "height": page.height, "skew_degrees": round(page.skew_degrees, 2), "text": page.text,
            "confidence": None if confidence is None else round(confidence, 4), "words": page.words, "lines": lines}


def _csv_line(fields: list[str]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(fields)
    return buffer.getvalue()


def page_counts(page, flag_below: float | None) -> dict:
    """What `predict` reports of one page: its words, blank crops, non-finite and flagged readings."""
    readings = [reading for line in page.lines for _, reading in line]
    return {"pages": page.error is None, "failed": page.error is not None, "words": len(readings),
            "blank": sum(r.blank for r in readings), "nonfinite": sum(r.nonfinite for r in readings),
            "flagged": sum(_flagged(r, flag_below) for r in readings)}


# --------------------------------------------------------------------------- --draw-boxes


def claim_boxes_folder(folder: Path, overwrite: bool) -> Path:
    """--draw-boxes under the output policy (new, empty, an earlier one of predict's, or --overwrite)."""
    from banglaocr.cli.common import check_writable
    from banglaocr.files import expand_home, write_json
    from banglaocr.output_policy import claim_folder

    folder = Path(expand_home(folder, "--draw-boxes"))
    claim_folder(folder, "predict", (BOXES_MARKER,), overwrite=overwrite, is_ours=_is_boxes_folder,
                 option="--draw-boxes")
    check_writable(folder, "folder")
    from banglaocr.errors import writing

    with writing(folder / BOXES_MARKER):
        folder.mkdir(parents=True, exist_ok=True)
        write_json(folder / BOXES_MARKER, {"written_by": "banglaocr predict", "what": "word boxes on pages"})
    return folder


def _is_boxes_folder(folder: Path) -> bool:
    try:
        marker = json.loads((folder / BOXES_MARKER).read_text(encoding="utf-8"))
        return marker.get("written_by") == "banglaocr predict"
    except (OSError, ValueError, AttributeError):
        return False


def drawing_name(page, names: dict[str, str]) -> str:
    """`STEM.png` (`STEM-pNNN.png` for a PDF page), `STEM-2...` when another input had the same stem;
    `names` maps each input seen to its stem."""
    if page.source not in names:
        stem = Path(page.source).stem or "page"
        taken = set(names.values())
        name, k = stem, 1
        while name in taken:
            k += 1
            name = f"{stem}-{k}"
        names[page.source] = name
    stem = names[page.source]
    return f"{stem}.png" if page.page is None else f"{stem}-p{page.page:03d}.png"


def draw_page(page, folder: Path, names: dict[str, str], flag_below: float | None) -> None:
    """Write the page with its word boxes coloured by confidence (see the module docstring)."""
    from banglaocr.pages.drawing import GREEN, GREY, RED, draw_boxes, save_drawing

    threshold = DRAW_FLAG_DEFAULT if flag_below is None else flag_below
    boxes = [(box, GREY if reading.blank else RED if reading.text is None or _flagged(reading, threshold)
              else GREEN) for line in page.lines for box, reading in line]
    save_drawing(draw_boxes(page.image, boxes), folder / drawing_name(page, names))
