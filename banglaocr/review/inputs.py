"""What `banglaocr review` shows: its INPUT turned into review items, least confident first.

INPUT is one of
- a predictions file written by `banglaocr predict --format jsonl`: word rows (`file`, `prediction`,
  `confidence`; or `error`; or `blank`) and page rows (`file`, `lines` of words with `box`, `prediction`,
  `confidence`: each word is cut from the page image by its box). Image paths are relative to the file's
  folder, or absolute (the user's own list). Each word row is its own page; the words of a page row share it;
- a `banglaocr segment` output: a folder with `layout.json` (pages of lines of words, each word's `crop`
  relative to the folder). The words of one layout page are one page;
- a folder of word crops (images found recursively, in sorted order): a crop directly in the folder is
  its own page, the crops of one sub-folder are one page (a page's words cut into a folder of their own).

The last two hold no readings: `read_items` reads them with a model first. A crop of a folder input must
lie inside it, symlinks followed (one that leads out is an item with an error, never read or served).

Order (`in_review_order`): items without a confidence first - a crop the model could not read, or a blank
one, needs a person most - then by rising confidence; ties keep the input's order.

>>> import tempfile, pathlib, json
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> rows = [{"file": "a.png", "prediction": "কলম", "confidence": 0.9}, {"file": "b.png", "error": "empty file"},
...         {"file": "c.png", "prediction": "খাতা", "confidence": 0.2}]
>>> _ = (folder / "p.jsonl").write_text("".join(json.dumps(r) + chr(10) for r in rows), encoding="utf-8")
>>> [(item.source, item.reading) for item in in_review_order(load_input(folder / "p.jsonl").items)]
[('b.png', None), ('c.png', 'খাতা'), ('a.png', 'কলম')]
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

from banglaocr.errors import UserError
from banglaocr.files import read_text
from banglaocr.pages.layout_file import LAYOUT_FILE, read_layout
from banglaocr.text import normalize

CROP_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")
MAX_INPUT_BYTES = 512 << 20
"""A predictions file or layout.json larger than this is not one `predict` or `segment` wrote for review."""


@dataclass(frozen=True)
class ReviewItem:
    """One word to review."""

    key: str
    """Its identity across restarts: the image as the input names it, with `#x0,y0,x1,y1` for a box."""
    image: Path
    """The file holding its pixels: the crop, or the page it is cut from (`box`)."""
    source: str
    """The image (or page) as the input names it."""
    page: str
    """The page it belongs to: words of one page go to one split."""
    box: tuple[int, int, int, int] | None = None
    """Where it lies on its page (x0, y0, x1, y1), when the input says."""
    cut: bool = False
    """`image` is the whole page: the word is cut from it by `box` (a page row of predict)."""
    reading: str | None = None
    """The model's reading (normalised); None when it could not read the image."""
    confidence: float | None = None
    """The reading's confidence (its sequence probability); None when unknown."""
    error: str | None = None
    """Why there is no reading (the image cannot be decoded, ...), one line."""
    order: int = 0
    """Its position in the input: the id the review page names it by."""
    outside: bool = False
    """Its file lies outside the input folder (a symlink, a `../` crop): never read, never served."""
    pdf_page: int | None = None
    """`image` is a PDF and the word is cut from this page of it (1-based), rendered `page_width` pixels wide
    as `predict --layout page` rendered it."""
    page_width: int | None = None


@dataclass(frozen=True)
class ReviewInput:
    """An INPUT read: its kind ('predictions', 'segment', 'crops'), its items, the model of its readings."""

    path: Path
    kind: str
    items: list[ReviewItem]
    model: str | None = None
    """The model whose readings these are (a predictions file's marker), or None until `read_items`."""


def load_input(path: str | Path) -> ReviewInput:
    """INPUT -> its items, in input order (readings still missing for a segment output or a crop folder)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise UserError(f"INPUT {path} does not exist: give a predictions .jsonl, a segment output folder or "
                        "a folder of word crops")
    if path.is_dir():
        if (path / LAYOUT_FILE).exists():
            return ReviewInput(path, "segment", _numbered(_layout_items(path)))
        return ReviewInput(path, "crops", _numbered(_crop_items(path)))
    if path.suffix.lower() != ".jsonl":
        raise UserError(f"INPUT {path} is a file but not a .jsonl: give the predictions of `banglaocr predict "
                        "--format jsonl`, a segment output folder or a folder of word crops")
    return ReviewInput(path, "predictions", _numbered(_prediction_items(path)), model=_predicting_model(path))


def in_review_order(items: list[ReviewItem]) -> list[ReviewItem]:
    """Unknown confidence first, then least confident first; ties in input order."""
    return sorted(items, key=lambda item: (item.confidence is not None, item.confidence or 0.0, item.order))


def _numbered(items: list[ReviewItem]) -> list[ReviewItem]:
    seen: set[str] = set()
    kept = []
    for item in items:
        if item.key not in seen:  # a word listed twice is reviewed once
            seen.add(item.key)
            kept.append(replace(item, order=len(kept)))
    if not kept:
        raise UserError("INPUT holds no word to review")
    return kept


# --------------------------------------------------------------------------- predictions


def _predicting_model(path: Path) -> str | None:
    """The model `predict` read with, from the marker beside its rows (`FILE.banglaocr.json`)."""
    from banglaocr.model.shipped import SHIPPED_MODELS, model_source
    from banglaocr.output_policy import marker_path, read_marker

    marker = read_marker(marker_path(path), "predict")
    models = (marker or {}).get("reader", {}).get("models") if isinstance(marker, dict) else None
    if not models or not isinstance(models[0], str):
        return None
    for name in SHIPPED_MODELS:  # the shipped reader by its name, as a recipe names it
        if Path(model_source(name)).resolve() == Path(models[0]).resolve():
            return name
    return models[0]


def _prediction_items(path: Path) -> list[ReviewItem]:
    text = read_text(path, f"INPUT {path}", max_bytes=MAX_INPUT_BYTES)
    items: list[ReviewItem] = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except (json.JSONDecodeError, RecursionError):
            raise UserError(f"INPUT {path}:{number} is not JSON: give the output of `banglaocr predict --format "
                            "jsonl`") from None
        if not isinstance(row, dict) or not isinstance(row.get("file"), str) or not row["file"]:
            raise UserError(f"INPUT {path}:{number} is not a predict row (no 'file')")
        image = _listed_path(path.parent, row["file"])
        if "lines" in row:
            items += _page_row_items(row, path.parent, f"{path}:{number}")
        else:
            items.append(ReviewItem(key=row["file"], image=image, source=row["file"], page=row["file"],
                                    reading=_reading(row), confidence=_confidence(row.get("confidence")),
                                    error=row.get("error") if isinstance(row.get("error"), str) else None))
    return items


def _listed_path(folder: Path, name: str) -> Path:
    listed = Path(name).expanduser()
    return listed if listed.is_absolute() else folder / listed


def _reading(row: dict) -> str | None:
    if "error" in row:
        return None
    return normalize(row.get("prediction", row.get("text")) or "")


def _confidence(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return min(1.0, max(0.0, float(value)))


def _page_row_items(row: dict, folder: Path, where: str) -> list[ReviewItem]:
    """The words of a `predict --layout page` row, each cut from the page by its box (a PDF page's row names
    the PDF as `source`, its `page` and the `width` it was rendered at)."""
    from banglaocr.pages.sources import is_pdf

    lines = row.get("lines")
    if not isinstance(lines, list) or not all(isinstance(line, list) for line in lines):
        raise UserError(f"INPUT {where}: 'lines' must be a list of lines, each a list of words")
    source, number, width = row.get("source"), row.get("page"), row.get("width")
    pdf_page = None
    if isinstance(source, str) and source and is_pdf(source) and _positive_int(number) and _positive_int(width):
        image, pdf_page = _listed_path(folder, source), number
    else:
        image, source = _listed_path(folder, row["file"]), row["file"]
    page = row["file"]
    items = []
    for word in (word for line in lines for word in line):
        box = _box(word.get("box") if isinstance(word, dict) else None, where)
        items.append(ReviewItem(key=f"{page}#{','.join(map(str, box))}", image=image, source=source,
                                page=page, box=box, cut=True, reading=_reading(word),
                                confidence=_confidence(word.get("confidence")),
                                pdf_page=pdf_page, page_width=width if pdf_page else None))
    return items


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _box(value: Any, where: str) -> tuple[int, int, int, int]:
    if (not isinstance(value, list) or len(value) != 4
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
        raise UserError(f"INPUT {where}: a word's 'box' must be [x0, y0, x1, y1]")
    x0, y0, x1, y1 = (int(round(v)) for v in value)
    if x1 <= x0 or y1 <= y0:
        raise UserError(f"INPUT {where}: the box {value} is empty")
    return x0, y0, x1, y1


# --------------------------------------------------------------------------- folders


def inside(root: Path, path: Path) -> bool:
    """Whether `path` (symlinks followed) lies inside the folder `root`.

    >>> inside(Path("/srv/crops"), Path("/srv/crops/../secret.png"))
    False
    """
    try:
        resolved, base = path.resolve(), root.resolve()
    except (OSError, RuntimeError):
        return False
    return resolved == base or base in resolved.parents


def _confined(root: Path, name: str) -> tuple[Path, str | None]:
    """`root / name` and why it may not be used (None when it may): it must stay inside `root`."""
    path = root / name
    if Path(name).is_absolute() or not inside(root, path):
        return path, f"{name} lies outside {root}"
    return path, None


def _layout_items(folder: Path) -> list[ReviewItem]:
    """The words of a segment output, page by page (`pages.layout_file.read_layout` checks the schema)."""
    items = []
    for number, page in enumerate(read_layout(folder / LAYOUT_FILE), start=1):
        name = str(page.get("file") or f"page {number}")
        source = str(page.get("source") or name)
        for word in (word for line in page["lines"] for word in line):
            crop, problem = _confined(folder, word["crop"])
            items.append(ReviewItem(key=word["crop"], image=crop, source=source, page=name,
                                    box=tuple(word["box"]), error=problem, outside=problem is not None))
    return items


def _crop_items(folder: Path) -> list[ReviewItem]:
    items = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            path = Path(root) / name
            if path.suffix.lower() not in CROP_SUFFIXES or name.startswith("."):
                continue
            relative = path.relative_to(folder).as_posix()
            parent = path.parent.relative_to(folder).as_posix()
            _, problem = _confined(folder, relative)
            items.append(ReviewItem(key=relative, image=path, source=relative,
                                    page=relative if parent == "." else parent + "/", error=problem,
                                    outside=problem is not None))
    if not items:
        raise UserError(f"INPUT {folder} holds no word crops ({', '.join(CROP_SUFFIXES)}) and no {LAYOUT_FILE}")
    return items


# --------------------------------------------------------------------------- reading


def open_item_image(item: ReviewItem):
    """The item's pixels as RGB (cut from its page by its box); `UnreadableImage` with the reason."""
    from banglaocr.data.decode import UnreadableImage
    from banglaocr.data.sources import open_image

    if item.error is not None and item.outside:
        raise UnreadableImage(item.error)
    if item.pdf_page is not None:
        from banglaocr.pages.sources import render_pdf_page

        image = render_pdf_page(item.image, item.pdf_page, item.page_width)
    else:
        image = open_image(str(item.image))
    if not item.cut:
        return image
    x0, y0, x1, y1 = item.box
    width, height = image.size
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(width, x1), min(height, y1)
    if x1 <= x0 or y1 <= y0:
        raise UnreadableImage(f"the box {list(item.box)} lies outside the page ({width}x{height})")
    return image.crop((x0, y0, x1, y1))


def read_items(review: ReviewInput, model: str, read: Callable[[list], list]) -> ReviewInput:
    """`review` with every item that has no reading yet read by `read` (a list of PIL images or error
    messages -> `infer.Reading`s in order); a crop that cannot be decoded keeps its error."""
    from banglaocr.data.decode import UnreadableImage

    todo = [item for item in review.items if item.reading is None and item.error is None]
    images = []
    for item in todo:
        try:
            images.append(open_item_image(item))
        except UnreadableImage as err:
            images.append(err)
    readable = [image for image in images if not isinstance(image, Exception)]
    readings = iter(read(readable))
    read_now = {}
    for item, image in zip(todo, images):
        if isinstance(image, Exception):
            read_now[item.key] = replace(item, error=str(image))
            continue
        reading = next(readings)
        confidence = getattr(reading, "confidence", None)
        read_now[item.key] = replace(item, reading=reading.text, error=reading.error,
                                     confidence=None if confidence is None else _confidence(confidence.sequence))
    items = [read_now.get(item.key, item) for item in review.items]
    return replace(review, items=items, model=model)
