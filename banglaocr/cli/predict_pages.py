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

from pathlib import Path

from banglaocr.cli.predict_output import csv_line, reading_fields, shown_confidence
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
        return csv_line([escape_field(file), "", "", "", "", "", "", "", escape_field(error), "", "", ""])
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
            rows.append(csv_line([escape_field(page.file), str(number), str(k), *map(str, box),
                                  escape_field(reading.text or ""), escape_field(reading.error or ""),
                                  "true" if reading.blank else "", shown_confidence(reading.confidence),
                                  "true" if _flagged(reading, flag_below) else ""]))
    return "".join(rows)


def _page_json(page, flag_below: float | None) -> dict:
    lines = [[{"box": list(box), **reading_fields(reading.text, reading.error, reading.blank, reading.confidence,
                                                  _flagged(reading, flag_below))}
              for box, reading in line] for line in page.lines]
    confidence = page.confidence
    return {"file": page.file, "source": page.source, "page": page.page, "width": page.width,
            "height": page.height, "skew_degrees": round(page.skew_degrees, 2), "text": page.text,
            "confidence": None if confidence is None else round(confidence, 4), "words": page.words, "lines": lines}


def page_counts(page, flag_below: float | None) -> dict:
    """What `predict` reports of one page: its words, blank crops, non-finite and flagged readings."""
    readings = [reading for line in page.lines for _, reading in line]
    return {"pages": page.error is None, "failed": page.error is not None, "words": len(readings),
            "blank": sum(r.blank for r in readings), "nonfinite": sum(r.nonfinite for r in readings),
            "flagged": sum(_flagged(r, flag_below) for r in readings)}


# --------------------------------------------------------------------------- --draw-boxes


def claim_boxes_folder(folder: Path, overwrite: bool) -> None:
    """--draw-boxes under the output policy (new, empty, an earlier one of predict's, or --overwrite); its
    marker written."""
    from banglaocr.cli.common import check_writable
    from banglaocr.errors import writing
    from banglaocr.files import write_json
    from banglaocr.output_policy import claim_folder, read_marker

    claim_folder(folder, "predict", (BOXES_MARKER,), overwrite=overwrite,
                 is_ours=lambda found: isinstance(read_marker(found / BOXES_MARKER, "predict"), dict),
                 option="--draw-boxes")
    check_writable(folder, "folder")
    with writing(folder / BOXES_MARKER):
        folder.mkdir(parents=True, exist_ok=True)
        write_json(folder / BOXES_MARKER, {"written_by": "banglaocr predict", "what": "word boxes on pages"})


def drawing_name(page, names: dict[str, str]) -> str:
    """`STEM.png` (`STEM-pNNN.png` for a PDF page), `STEM-2...` when another input had the same stem (as
    `segment` names its crop folders); `names` maps each input seen to its stem."""
    from banglaocr.cli.segment import unique_stem

    if page.source not in names:
        names[page.source] = unique_stem(Path(page.source).stem or "page", set(names.values()))
    stem = names[page.source]
    return f"{stem}.png" if page.page is None else f"{stem}-p{page.page:03d}.png"


def draw_page(page, folder: Path, names: dict[str, str], flag_below: float | None) -> None:
    """Write the page with its word boxes coloured by confidence (see the module docstring)."""
    from banglaocr.pages.drawing import GREEN, GREY, RED, draw_boxes, save_drawing

    threshold = DRAW_FLAG_DEFAULT if flag_below is None else flag_below
    boxes = [(box, GREY if reading.blank else RED if reading.text is None or _flagged(reading, threshold)
              else GREEN) for line in page.lines for box, reading in line]
    save_drawing(draw_boxes(page.image, boxes), folder / drawing_name(page, names))
