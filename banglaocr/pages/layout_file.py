"""layout.json: the pages of a `segment` run (or `synth --pages`' truth) with their lines of words.

A JSON list of pages, each::

    {"file": "scans/p1.jpg", "source": "scans/p1.jpg", "page": null, "width": W, "height": H,
     "skew_degrees": 1.3, "lines": [[{"box": [x0, y0, x1, y1], "crop": "crops/p1/l01-w01.png"}, ...], ...]}

`box` is in the original page image's pixels (x1, y1 exclusive); `crop` and a rendered PDF page's `file`
are relative to the folder that holds layout.json. `synth --pages` adds "text" to each word and each page.
Crops are written first, layout.json last and atomically: a layout.json never names a crop not yet there.

>>> import tempfile, pathlib
>>> from PIL import Image
>>> from banglaocr.pages.segment import PageLayout, Word
>>> out = pathlib.Path(tempfile.mkdtemp())
>>> layout = PageLayout(200, 100, 0.0, [[Word((10, 20, 50, 40), Image.new("RGB", (40, 20), "white"))]])
>>> entry = save_page(out, "scan.png", "scan.png", None, layout, "scan")
>>> write_layout(out, [entry])
>>> read_layout(out / "layout.json")[0]["lines"]
[[{'box': [10, 20, 50, 40], 'crop': 'crops/scan/l01-w01.png'}]]
"""

from __future__ import annotations

import json
from pathlib import Path

from banglaocr.errors import UserError, writing
from banglaocr.files import atomic_write, read_text
from banglaocr.row_encoding import json_text

LAYOUT_FILE = "layout.json"
CROPS_FOLDER = "crops"
PAGE_KEYS = ("file", "source", "page", "width", "height", "skew_degrees", "lines")
MAX_LAYOUT_BYTES = 512 << 20


def crop_name(folder: str, line: int, word: int) -> str:
    """The crop of word `word` of line `line` (both 1-based) of a page whose crops go in `folder`.

    >>> crop_name("p1", 3, 12)
    'crops/p1/l03-w12.png'
    """
    return f"{CROPS_FOLDER}/{folder}/l{line:02d}-w{word:02d}.png"


def save_page(out_dir: Path, file: str, source: str, page: int | None, layout, crop_folder: str) -> dict:
    """Write the crops of `layout` (a `segment.PageLayout`) under `out_dir/crops/crop_folder/` and return the
    page's layout.json entry."""
    out_dir = Path(out_dir)
    lines = []
    for line_number, words in enumerate(layout.lines, start=1):
        entries = []
        for word_number, word in enumerate(words, start=1):
            name = crop_name(crop_folder, line_number, word_number)
            target = out_dir / name
            with writing(target):
                target.parent.mkdir(parents=True, exist_ok=True)
                word.image.save(target, format="PNG")
            entries.append({"box": [int(v) for v in word.box], "crop": name})
        lines.append(entries)
    return {"file": file, "source": source, "page": page, "width": int(layout.width),
            "height": int(layout.height), "skew_degrees": float(layout.skew_degrees), "lines": lines}


def write_layout(out_dir: Path, pages: list[dict]) -> None:
    """`out_dir/layout.json`, atomically (after the crops it names)."""
    target = Path(out_dir) / LAYOUT_FILE
    with writing(target):
        # One page a line: a file of many pages stays readable and diffable, a page's words stay together.
        text = "[\n" + ",\n".join(json_text(page) for page in pages) + ("\n]\n" if pages else "]\n")
        atomic_write(target, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def read_layout(path: Path) -> list[dict]:
    """The pages of a layout.json, checked against the schema above (`UserError` naming what is wrong)."""
    path = Path(path)
    try:
        pages = json.loads(read_text(path, str(path), max_bytes=MAX_LAYOUT_BYTES))
    except json.JSONDecodeError as err:
        raise UserError(f"{path} is not valid JSON ({err.msg}, line {err.lineno})") from None
    if not isinstance(pages, list):
        raise UserError(f"{path} must be a JSON list of pages")
    for number, page in enumerate(pages, start=1):
        problem = page_problem(page)
        if problem:
            raise UserError(f"{path} page {number}: {problem}")
    return pages


def page_problem(page) -> str | None:
    """What makes `page` no layout.json page entry, or None.

    >>> page_problem({"file": "a.png", "source": "a.png", "page": None, "width": 9, "height": 9,
    ...               "skew_degrees": 0.0, "lines": [[{"box": [1, 2, 3], "crop": "c.png"}]]})
    'line 1 word 1: box must be 4 integers [x0, y0, x1, y1]'
    """
    if not isinstance(page, dict):
        return "not a JSON object"
    missing = [key for key in PAGE_KEYS if key not in page]
    if missing:
        return f"missing {', '.join(missing)}"
    if not isinstance(page["lines"], list):
        return "lines must be a list of lines"
    for line_number, line in enumerate(page["lines"], start=1):
        if not isinstance(line, list):
            return f"line {line_number} must be a list of words"
        for word_number, word in enumerate(line, start=1):
            where = f"line {line_number} word {word_number}"
            if not isinstance(word, dict):
                return f"{where}: not a JSON object"
            box = word.get("box")
            if not (isinstance(box, list) and len(box) == 4 and all(isinstance(v, int) for v in box)):
                return f"{where}: box must be 4 integers [x0, y0, x1, y1]"
            if not isinstance(word.get("crop"), str):
                return f"{where}: crop must be a file name"
    return None
