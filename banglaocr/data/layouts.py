"""The public Bangla handwriting data sets read as they are unpacked: BN-HTRd and BanglaWriting.

Both become `Record`s like every other source (`banglaocr.data.sources`), each knowing its writer and its
page (`Record.meta["writer"]`, `["page"]`), so that the held-out splits are made of whole writers
(`data.split_by`). Rows that cannot be used are counted with their reason in the `SkipReport`, never
dropped silently: a missing crop, an empty word, a word in Latin letters, a box outside its page or too
small to hold a word.

BN-HTRd (document folders `1/` .. `150/`, one writer each):

    N/N.xlsx                    a sheet with an `Id` (or `ID`) and a `Word` (or `word`) column
    N/Words/<page>/<Id>.jpg     the word crops, named by their Id (`1_1_2_3`: document 1, page 1, ...)

BanglaWriting (the `converted` or `raw` folder: one page per writer):

    <writer>_<age>_<gender>.jpg     a page (the writer is taken from the name: `data.writer_pattern`)
    <writer>_<age>_<gender>.json    LabelMe's JSON beside it: `shapes[].label` (the word), `shapes[].points`
                                    (two corners in any order, or a polygon), `imagePath`, `imageWidth`,
                                    `imageHeight`

The words of a BanglaWriting page are cropped from it once and kept in the package cache
(`$BANGLAOCR_CACHE` or `~/.cache/banglaocr`, `crops/`): decoding a whole page photograph for every word
of every epoch would make the data loader the bottleneck. A crop is made again when its page or JSON
changes.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from banglaocr.config import DataConfig
from banglaocr.data.sources import IMAGE_FILE_SUFFIXES, MAX_LABEL_CHARS, Record, SkipReport, open_image
from banglaocr.errors import UserError, first_line
from banglaocr.files import expand_home, read_text
from banglaocr.text import normalize

LAYOUT_NAMES = ("bn-htrd", "banglawriting")
"""Layout names, as `data.source` spells them before a path (`bn-htrd:PATH`)."""
LATIN = re.compile(r"[A-Za-z]")
MIN_BOX_PIXELS = 2
"""A box narrower or lower than this is no word (a stray click in the annotation tool)."""
MIN_INSIDE = 0.5
"""A box with less than this share of its area on the page is outside it (clipping would keep a sliver)."""
CROP_VERSION = 1
"""Part of each cached crop's key: a change in how crops are cut makes them again."""

MISSING_CROP = "missing crop"
EMPTY_WORD = "empty word"
LATIN_WORD = "Latin letters in the word"
OUTSIDE = "box outside the page"
DEGENERATE = f"degenerate box (under {MIN_BOX_PIXELS} pixels)"


def named_layout(source: str) -> tuple[str, Path] | None:
    """(layout, folder) for a source named `bn-htrd:PATH` or `banglawriting:PATH` (any case), else None; a
    named folder that is not there is a `UserError`.

    >>> named_layout("swapnillo/BN-HTR-Handwritten-Dataset") is None
    True
    """
    prefix, colon, rest = source.partition(":")
    if not colon or prefix.lower() not in LAYOUT_NAMES:
        return None
    folder = Path(expand_home(rest, "data source"))
    if not folder.is_dir():
        raise UserError(f"data source {source}: no such folder: {rest}")
    layout = prefix.lower()
    if not (_is_bn_htrd(folder) if layout == "bn-htrd" else _is_banglawriting(folder)):
        only = _only_child(folder)
        if only is not None and (_is_bn_htrd(only) if layout == "bn-htrd" else _is_banglawriting(only)):
            return layout, only
        raise UserError(f"data source {source}: {rest} is not a {_LOOKS[layout]}")
    return layout, folder


_LOOKS = {"bn-htrd": "BN-HTRd folder (document folders N/ with N.xlsx and Words/)",
          "banglawriting": "BanglaWriting folder (page images with a LabelMe .json beside each)"}


def detect_layout(folder: Path) -> tuple[str, Path] | None:
    """(layout, the folder that holds it) when `folder` - or its only subfolder, the top folder of an
    unpacked archive - is laid out as BN-HTRd or BanglaWriting, else None."""
    for candidate in (folder, _only_child(folder)):
        if candidate is None:
            continue
        if _is_bn_htrd(candidate):
            return "bn-htrd", candidate
        if _is_banglawriting(candidate):
            return "banglawriting", candidate
    return None


def layout_records(layout: str, folder: Path, cfg: DataConfig, skipped: SkipReport) -> list[Record]:
    """The records of a folder in `layout` (`bn_htrd_records` or `banglawriting_records`)."""
    if layout == "bn-htrd":
        return bn_htrd_records(folder, skipped)
    return banglawriting_records(folder, cfg, skipped)


def _not_ours(path: Path) -> bool:
    """Archive and editor leftovers that are no part of a data set: hidden files, macOS's `__MACOSX/` and
    `._NAME` resource forks, Excel's `~$NAME.xlsx` lock files."""
    return path.name.startswith((".", "~$")) or path.name == "__MACOSX"


def _only_child(folder: Path) -> Path | None:
    try:
        children = [p for p in folder.iterdir() if not _not_ours(p)]
    except OSError:
        return None
    return children[0] if len(children) == 1 and children[0].is_dir() else None


def _usable_word(raw: Any, sample_id: str, skipped: SkipReport) -> str | None:
    """The normalised word of a label cell, or None (counted) for an empty one, one in Latin letters, one too
    long to be a word."""
    text = normalize("" if raw is None else _cell_text(raw))
    if not text:
        skipped.add(EMPTY_WORD, sample_id)
        return None
    if LATIN.search(text):
        skipped.add(LATIN_WORD, sample_id)
        return None
    if len(text) > MAX_LABEL_CHARS:
        skipped.add(f"label too long (over {MAX_LABEL_CHARS} characters)", sample_id)
        return None
    return text


def _inside(path: Path, root: Path) -> bool:
    """True when `path`, symlinks followed, stays inside `root` (a data set from elsewhere must not make us
    read other files)."""
    try:
        return path.resolve().is_relative_to(root.resolve())
    except (OSError, RuntimeError):
        return False


# --------------------------------------------------------------------------- BN-HTRd


def _sheets(document: Path) -> list[Path]:
    """A document folder's label sheets: `N.xlsx`, else every .xlsx in it (sorted)."""
    own = document / f"{document.name}.xlsx"
    if own.is_file():
        return [own]
    return sorted(p for p in document.glob("*.xlsx") if p.is_file() and not _not_ours(p))


def _words_folder(document: Path) -> Path | None:
    """A document folder's `Words/` (any case), or None."""
    try:
        return next((p for p in document.iterdir() if p.name.lower() == "words" and p.is_dir()), None)
    except OSError:
        return None


def _is_bn_htrd(folder: Path) -> bool:
    try:
        return any(child.is_dir() and not _not_ours(child) and _words_folder(child) is not None and _sheets(child)
                   for child in folder.iterdir())
    except OSError:
        return False


def _sheet_rows(sheet: Path, root: Path) -> list[tuple[int, str, Any]]:
    """(row number, Id, word cell) of a BN-HTRd sheet; `UserError` for a file that is no workbook or a
    sheet without the Id / Word columns."""
    import openpyxl

    where = str(sheet.relative_to(root))
    try:
        workbook = openpyxl.load_workbook(sheet, read_only=True, data_only=True)
    except Exception as err:  # openpyxl raises zipfile, KeyError, ValueError, ... for a damaged file
        raise UserError(f"{where}: not a readable .xlsx workbook ({first_line(err)})") from None
    try:
        rows = workbook.worksheets[0].iter_rows(values_only=True)
        header, id_column, word_column = None, None, None
        found: list[tuple[int, str, Any]] = []
        for number, cells in enumerate(rows, start=1):
            if header is None:
                if not any(cell not in (None, "") for cell in cells):
                    continue
                header = [str(cell).strip().lower() if cell is not None else "" for cell in cells]
                id_column = header.index("id") if "id" in header else None
                word_column = header.index("word") if "word" in header else None
                if id_column is None or word_column is None:
                    shown = ", ".join(str(cell) for cell in cells if cell not in (None, ""))
                    raise UserError(f"{where}: no Id and Word columns in its first row (found: {shown})")
                continue
            cells = list(cells) + [None] * (len(header) - len(cells))
            sample_id, word = cells[id_column], cells[word_column]
            if sample_id in (None, "") and word in (None, ""):
                continue  # a blank row of the sheet
            found.append((number, "" if sample_id is None else _cell_text(sample_id), word))
        return found
    finally:
        workbook.close()


def _cell_text(value: Any) -> str:
    """An Id cell as text (a number Excel stored for an Id such as `12` reads back as 12, not 12.0)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def _crops(document: Path, root: Path, skipped: SkipReport) -> dict[str, Path]:
    """The word crops of a document folder by Id (the file name before its first dot); a second crop of one
    Id, an empty file or one leading outside the data folder is counted and left out."""
    words = _words_folder(document)
    found: dict[str, Path] = {}
    if words is None:
        return found
    for path in sorted(words.rglob("*")):
        if path.suffix.lower() not in IMAGE_FILE_SUFFIXES or path.is_dir() or _not_ours(path):
            continue
        name = str(path.relative_to(root))
        key = path.name.split(".")[0]
        if not _inside(path, root):
            skipped.add("image symlink leading outside its folder", name)
        elif not path.is_file() or path.stat().st_size == 0:
            skipped.add("empty image file", name)
        elif key in found:
            skipped.add("second crop of one Id", name)
        else:
            found[key] = path
    return found


def bn_htrd_records(root: Path, skipped: SkipReport) -> list[Record]:
    """Records of a BN-HTRd folder: every sheet row whose Id has a crop under `Words/`, named by the crop's
    path; the writer is the document folder, the page the folder under `Words/` (`1_1`)."""
    records = []
    documents = sorted((p for p in root.iterdir()
                        if p.is_dir() and not _not_ours(p) and (_words_folder(p) is not None or _sheets(p))),
                       key=lambda p: (not p.name.isdigit(), int(p.name) if p.name.isdigit() else 0, p.name))
    for document in documents:
        crops = _crops(document, root, skipped)
        used: set[str] = set()
        sheets = _sheets(document)
        if not sheets:
            for path in crops.values():
                skipped.add(f"crop without a row (no {document.name}.xlsx)", str(path.relative_to(root)))
            continue
        for sheet in sheets:
            for number, sample_id, word in _sheet_rows(sheet, root):
                row_name = f"{sheet.relative_to(root)}:{number}"
                if not sample_id:
                    skipped.add("row without an Id", row_name)
                    continue
                if sample_id in used:
                    skipped.add("Id listed before", f"{row_name} ({sample_id})")
                    continue
                used.add(sample_id)
                crop = crops.get(sample_id)
                if crop is None:
                    skipped.add(MISSING_CROP, f"{document.name}/Words/{sample_id}")
                    continue
                name = str(crop.relative_to(root))
                text = _usable_word(word, name, skipped)
                if text is None:
                    continue
                page_folder = crop.parent.relative_to(_words_folder(document))
                page = str(page_folder) if str(page_folder) != "." else "_".join(sample_id.split("_")[:2])
                records.append(Record(id=name, text=text, image=str(crop),
                                      meta={"writer": document.name, "page": f"{document.name}/{page}",
                                            "layout": "bn-htrd"}))
        for key, path in crops.items():
            if key not in used:
                skipped.add(f"crop without a row in {sheets[0].name}", str(path.relative_to(root)))
    return records


# --------------------------------------------------------------------------- BanglaWriting


def _page_jsons(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.json")
                  if p.is_file() and not any(_not_ours(Path(part)) for part in p.relative_to(root).parts))


def _is_banglawriting(folder: Path) -> bool:
    """True when one of the first JSON files of `folder` is LabelMe's (a `shapes` list) with its page beside it."""
    try:
        candidates = sorted(p for p in folder.glob("*.json") if p.is_file() and not _not_ours(p))[:3]
    except OSError:
        return False
    for path in candidates:
        try:
            page = json.loads(read_text(path, max_bytes=MAX_JSON_BYTES))
        except (UserError, ValueError, RecursionError):
            continue
        if isinstance(page, dict) and isinstance(page.get("shapes"), list) and (
                _page_image(path, page, folder) is not None or _embedded_page(page) is not None):
            return True
    return False


MAX_JSON_BYTES = 64 << 20
"""Largest page JSON read (LabelMe may embed the page as base64 `imageData`: megabytes, not gigabytes)."""


def _page_image(json_path: Path, page: dict, root: Path) -> Path | None:
    """The page image of a LabelMe JSON: its `imagePath` (relative to the JSON) when that file is there,
    else an image of the same name beside the JSON; None when neither is (or it leads outside `root`)."""
    named = page.get("imagePath")
    candidates = []
    if isinstance(named, str) and named and not Path(named.replace("\\", "/")).is_absolute():
        candidates.append(json_path.parent / named.replace("\\", "/"))
    candidates += [json_path.with_suffix(suffix) for suffix in IMAGE_FILE_SUFFIXES]
    candidates += [json_path.with_suffix(suffix.upper()) for suffix in IMAGE_FILE_SUFFIXES]
    for candidate in candidates:
        try:
            if candidate.is_file() and _inside(candidate, root):
                return candidate
        except (OSError, ValueError):
            continue
    return None


def writer_of(page_name: str, pattern: str) -> str:
    """A BanglaWriting page's writer: the first match of `pattern` in its file name without the extension
    (its first group, if it has one); the name itself where the pattern does not match.

    >>> writer_of("201_16_1.jpg", "^[^_]+"), writer_of("page-7.jpg", r"(\\d+)"), writer_of("x.jpg", "^[0-9]+")
    ('201', '7', 'x')
    """
    stem = Path(page_name).stem
    found = re.search(pattern, stem)
    if found is None or not found.group(0):
        return stem
    return found.group(1) if found.re.groups and found.group(1) else found.group(0)


def _embedded_page(page: dict) -> bytes | None:
    """The page image LabelMe embedded in its JSON (`imageData`, base64), or None."""
    data = page.get("imageData")
    if not isinstance(data, str) or not data:
        return None
    try:
        return base64.b64decode(data, validate=True)
    except (ValueError, TypeError):
        return None


def _box(points: Any) -> tuple[float, float, float, float] | None:
    """(left, top, right, bottom) around LabelMe points (two corners in any order, or a polygon); None when
    they are not at least two [x, y] pairs of numbers."""
    if not isinstance(points, list) or len(points) < 2:
        return None
    xs, ys = [], []
    for point in points:
        if not (isinstance(point, (list, tuple)) and len(point) == 2
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in point)):
            return None
        xs.append(float(point[0]))
        ys.append(float(point[1]))
    return min(xs), min(ys), max(xs), max(ys)


def _crop_box(box: tuple[float, float, float, float] | None, scale: tuple[float, float],
              size: tuple[int, int]) -> tuple[tuple[int, int, int, int] | None, str | None]:
    """The pixel box to cut from a page of `size` (boxes scaled by `scale` = page size / the JSON's
    imageWidth, imageHeight), or (None, the reason it cannot be used)."""
    if box is None:
        return None, DEGENERATE
    left, top, right, bottom = box[0] * scale[0], box[1] * scale[1], box[2] * scale[0], box[3] * scale[1]
    if right - left < MIN_BOX_PIXELS or bottom - top < MIN_BOX_PIXELS:
        return None, DEGENERATE
    width, height = size
    inside = (max(0.0, min(right, width) - max(left, 0.0)) * max(0.0, min(bottom, height) - max(top, 0.0)))
    if inside < MIN_INSIDE * (right - left) * (bottom - top):
        return None, OUTSIDE
    cut = (max(0, math.floor(left)), max(0, math.floor(top)),
           min(width, math.ceil(right)), min(height, math.ceil(bottom)))
    if cut[2] - cut[0] < MIN_BOX_PIXELS or cut[3] - cut[1] < MIN_BOX_PIXELS:
        return None, OUTSIDE
    return cut, None


def _crops_folder(page_image: Path | bytes, json_path: Path) -> Path:
    """Where the crops of one page are cached: named by the page's and the JSON's path, size and time (a page
    embedded in its JSON: the JSON's)."""
    parts = [str(CROP_VERSION)]
    for path in (page_image, json_path) if isinstance(page_image, Path) else (json_path,):
        stat = path.stat()
        parts += [str(path.resolve()), str(stat.st_size), str(stat.st_mtime_ns)]
    key = hashlib.sha256("\0".join(parts).encode("utf-8", "surrogateescape")).hexdigest()[:24]
    cache = os.environ.get("BANGLAOCR_CACHE")
    return (Path(cache) if cache else Path.home() / ".cache" / "banglaocr") / "crops" / "banglawriting" / key


@dataclass(frozen=True)
class Crop:
    """What became of one LabelMe shape: its word image (a cached file's path, or PNG bytes when no cache
    could be written) or the reason it cannot be used."""

    image: str | bytes | None = None
    skipped: str | None = None


def _cut_page(page_image: Path | bytes, wanted: dict[int, Any], declared: tuple[Any, Any]) -> dict[int, Crop]:
    """Cut the boxes `wanted` (shape index -> LabelMe points) from a page, as PNG bytes."""
    import io

    from banglaocr.data.decode import UnreadableImage

    try:
        page = open_image(page_image if isinstance(page_image, bytes) else str(page_image))
    except UnreadableImage as err:
        reason = f"unreadable page image ({str(err).split(' (')[0]})"
        return {index: Crop(skipped=reason) for index in wanted}
    scale = (1.0, 1.0)
    width, height = declared
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in (width, height)):
        scale = (page.width / width, page.height / height)  # a page resized after it was annotated
    cut: dict[int, Crop] = {}
    for index, points in wanted.items():
        box, problem = _crop_box(_box(points), scale, page.size)
        if problem is not None:
            cut[index] = Crop(skipped=problem)
            continue
        buffer = io.BytesIO()
        page.crop(box).save(buffer, format="PNG")
        cut[index] = Crop(image=buffer.getvalue())
    return cut


def _recorded_crops(folder: Path, wanted: dict[int, Any]) -> dict[int, Crop] | None:
    """The crops cached in `folder` for the shapes `wanted`, or None when they are not all there."""
    try:
        recorded = json.loads((folder / "crops.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(recorded, dict) or not all(isinstance(recorded.get(str(i)), dict) for i in wanted):
        return None
    crops = {}
    for index in wanted:
        entry = recorded[str(index)]
        crops[index] = (Crop(image=str(folder / entry["file"])) if "file" in entry
                        else Crop(skipped=entry.get("skipped")))
    return crops


def _cached_crops(page_image: Path | bytes, json_path: Path, wanted: dict[int, Any],
                  declared: tuple[Any, Any]) -> dict[int, Crop]:
    """The crops of one page: cut once and kept (`_crops_folder`, with `crops.json` saying what became of
    each shape); later loads read what was cut."""
    folder = _crops_folder(page_image, json_path)
    recorded = _recorded_crops(folder, wanted)
    if recorded is not None:
        return recorded
    cut = _cut_page(page_image, wanted, declared)
    tmp = None
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
        outcome = {}
        for index, crop in cut.items():
            if crop.image is not None:
                (tmp / f"{index}.png").write_bytes(crop.image)
                outcome[str(index)] = {"file": f"{index}.png"}
            else:
                outcome[str(index)] = {"skipped": crop.skipped}
        (tmp / "crops.json").write_text(json.dumps(outcome), encoding="utf-8")
        theirs = _recorded_crops(folder, wanted)  # another process (a second rank) cut the page meanwhile
        if theirs is not None:
            shutil.rmtree(tmp, ignore_errors=True)
            return theirs
        if folder.exists():  # a damaged copy (a marker cut short): replaced
            shutil.rmtree(folder)
        os.rename(tmp, folder)  # whole or not at all: a reader never sees half a page's crops
    except OSError:
        # No cache (a read-only home, a full disk) or another process renamed its copy first: the copy
        # that is there, else this load's crops in memory.
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        return _recorded_crops(folder, wanted) or cut
    return {index: Crop(image=str(folder / f"{index}.png")) if crop.image is not None else crop
            for index, crop in cut.items()}


def banglawriting_records(root: Path, cfg: DataConfig, skipped: SkipReport) -> list[Record]:
    """Records of a BanglaWriting folder: every LabelMe shape of every page with a usable word and box, cut
    from its page (`_cached_crops`), named `PAGE#INDEX` (the shape's place in the JSON); writer and page
    from the page's file name (`writer_of`)."""
    records = []
    for json_path in _page_jsons(root):
        where = str(json_path.relative_to(root))
        try:
            page = json.loads(read_text(json_path, max_bytes=MAX_JSON_BYTES))
        except (UserError, ValueError, RecursionError) as err:
            skipped.add(f"unreadable page JSON ({first_line(err).split(': ')[-1][:60]})", where)
            continue
        if not isinstance(page, dict) or not isinstance(page.get("shapes"), list):
            continue  # another JSON (no LabelMe page): not ours to count
        page_image = _page_image(json_path, page, root) or _embedded_page(page)
        name = str(page_image.relative_to(root)) if isinstance(page_image, Path) else str(
            json_path.with_suffix(".jpg").relative_to(root))
        texts: dict[int, str] = {}
        wanted: dict[int, Any] = {}
        for index, shape in enumerate(page["shapes"]):
            sample_id = f"{name}#{index}"
            if not isinstance(shape, dict):
                skipped.add(DEGENERATE, sample_id)
                continue
            text = _usable_word(shape.get("label"), sample_id, skipped)
            if text is None:
                continue
            if page_image is None:
                skipped.add("missing page image", sample_id)
                continue
            texts[index] = text
            wanted[index] = shape.get("points")
        if not wanted:
            continue
        writer = writer_of(Path(name).name, cfg.writer_pattern)
        crops = _cached_crops(page_image, json_path, wanted, (page.get("imageWidth"), page.get("imageHeight")))
        for index, crop in crops.items():
            sample_id = f"{name}#{index}"
            if crop.image is None:
                skipped.add(crop.skipped or DEGENERATE, sample_id)
                continue
            records.append(Record(id=sample_id, text=texts[index], image=crop.image,
                                  meta={"writer": writer, "page": name, "layout": "banglawriting"}))
    return records
