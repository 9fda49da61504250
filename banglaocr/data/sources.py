"""Data sources -> records: a hub data set, a local imagefolder, a saved data set, a manifest or a public layout.

Every source becomes three lists of `Record`s (train / val / test) plus a `SkipReport`.
Records are light: the image stays on disk (or in the memory-mapped Arrow table) until
`open_image` decodes it. Labels are normalised here, once, with `banglaocr.text.normalize`.

Nothing is dropped silently: a bad row (an empty label, a missing or zero-byte image file,
a duplicate, a malformed line, a path leading out of an imagefolder) is skipped at load time
and counted with its reason; an image that fails to decode later is counted by whoever
decodes it (`SkipReport.add`). A problem of the whole table (not UTF-8, no valid row, a
column missing from every row) is one `UserError`.

Accepted sources (`data.source`):
- a local folder with `metadata.jsonl` / `metadata.csv` per split folder (`train/`, `val/`
  or `validation/`, `test/`) or at its root (one split): what `banglaocr synth` writes. Such a
  folder is often someone else's data, so every file name must resolve inside the folder holding
  the metadata, symlinks followed;
- a local folder without metadata but with its own table: one `.csv` / `.jsonl` at its root or
  in `labels/` (a folder of JPGs with `labels.csv`; GraDeT-HTR's `labels/label.csv` naming the
  files of `images/`), or tables named by split (`train.csv`, `test.csv`); confined the same way;
- a BN-HTRd or a BanglaWriting folder as it is unpacked (`banglaocr.data.layouts`), recognised
  or named `bn-htrd:PATH` / `banglawriting:PATH`;
- a folder written by `datasets.Dataset.save_to_disk` / `DatasetDict.save_to_disk`;
- a `.jsonl` or `.csv` manifest with image paths (relative to the manifest, or to an `images/`
  folder beside it or beside its folder) and text: the user's own list, so absolute and `../`
  paths are read;
- anything else goes to `datasets.load_dataset(source, config_name)`: a hub id such as
  `swapnillo/BN-HTR-Handwritten-Dataset`, or a local folder of parquet/arrow files.

Columns: the configured `data.image_column` / `data.text_column`, else the one column with a
common name (`banglaocr.data.columns`). A row is named by its image file as the table writes it.
An image name without a suffix (`1_1_2_1`) finds `1_1_2_1.jpg` (or .png, ...).

Held-out splits (a source without val or test): `data.val_fraction` / `test_fraction` of the
training split, seeded, made of single samples or - `data.split_by`, the default for the public
layouts - of whole writers or pages, so that none is in two splits.

>>> import json, tempfile, pathlib
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> Image.new("RGB", (60, 20), "white").save(folder / "a.png")
>>> rows = [{"image": "a.png", "text": "কলম"}, {"image": "gone.png", "text": "খাতা"}]
>>> _ = (folder / "words.jsonl").write_text("".join(json.dumps(r) + chr(10) for r in rows))
>>> splits = load_splits(DataConfig(source=str(folder / "words.jsonl"), val_fraction=0, test_fraction=0))
>>> [r.text for r in splits.train], splits.skipped.summary()
(['কলম'], 'skipped 1 sample(s): 1 missing image file (e.g. gone.png)')
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from banglaocr.config import DataConfig
from banglaocr.data.columns import IMAGE_NAMES, TEXT_NAMES, find_column
from banglaocr.data.decode import UnreadableImage, as_unreadable, header_size, open_checked, to_rgb
from banglaocr.errors import UserError, first_line
from banglaocr.files import expand_home, file_kind, read_text
from banglaocr.text import normalize

MAX_LABEL_CHARS = 10_000
"""A longer label is a broken row (a whole document in one cell), not a word or a line: training on it
would build a sequence of tens of thousands of tokens."""

VAL_SPLIT_NAMES = ("val", "validation", "valid", "dev")
TEST_SPLIT_NAMES = ("test",)


def unreadable_reason(error: str) -> str:
    """The skip reason of an image that failed to decode: its error without the details in parentheses,
    so reports group alike failures.

    >>> unreadable_reason("image file is truncated (5 bytes not processed)")
    'unreadable image (image file is truncated)'
    """
    return f"unreadable image ({error.split(' (')[0]})"


@dataclass(frozen=True)
class HubImage:
    """A lazy reference to an undecoded image cell of a `datasets.Dataset` (memory-mapped, pickles cheaply)."""

    dataset: Any
    row: int
    column: str


@dataclass(frozen=True)
class Record:
    """One labelled word image. `image` is a file path, a `HubImage` or raw bytes."""

    id: str
    text: str
    image: Any
    cls: str | None = None
    meta: dict = field(default_factory=dict, compare=False)


@dataclass
class SkipReport:
    """Counts of skipped samples by reason, with a few example ids per reason.

    >>> report = SkipReport()
    >>> report.add("empty label", "row 7")
    >>> report.total, report.summary()
    (1, 'skipped 1 sample(s): 1 empty label (e.g. row 7)')
    """

    counts: Counter = field(default_factory=Counter)
    examples: dict = field(default_factory=dict)

    def add(self, reason: str, sample_id: str) -> None:
        self.counts[reason] += 1
        self.examples.setdefault(reason, [])
        if len(self.examples[reason]) < 3:
            self.examples[reason].append(sample_id)

    def merge(self, other: "SkipReport") -> None:
        for reason, count in other.counts.items():
            self.counts[reason] += count
            for example in other.examples.get(reason, []):
                if len(self.examples.setdefault(reason, [])) < 3:
                    self.examples[reason].append(example)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def summary(self) -> str:
        if not self.total:
            return "skipped 0 samples"
        parts = [f"{count} {reason} (e.g. {', '.join(self.examples[reason])})"
                 for reason, count in self.counts.most_common()]
        return f"skipped {self.total} sample(s): " + "; ".join(parts)

    def as_dict(self) -> dict:
        return {"total": self.total, "by_reason": dict(self.counts), "examples": self.examples}


@dataclass
class DataSplits:
    """Train / val / test records of one source and what was skipped while loading them.

    A source without usable training samples - a folder with only `test/`, the normal case for
    evaluation - still loads: its val and test records are there, and reading `train` raises the
    reason (`no_train`) as a `UserError`, so training on it stops with that one line.
    """

    train_records: list[Record]
    val: list[Record]
    test: list[Record]
    skipped: SkipReport
    source: str
    no_train: str | None = None
    """Why there is no usable training split (None when there is one)."""
    held_out: tuple[str, ...] = ()
    """The splits ("val", "test") carved out of the training split, not given by the source."""
    fractions: tuple[float, float] = (0.0, 0.0)
    """`data.val_fraction` and `data.test_fraction` they were carved with."""

    @property
    def train(self) -> list[Record]:
        if self.no_train is not None:
            raise UserError(self.no_train)
        return self.train_records

    def split(self, name: str) -> list[Record]:
        if name not in ("train", "val", "test"):
            raise UserError(f"unknown split '{name}' (choose train, val or test)")
        return getattr(self, name)

    def why_empty(self, name: str) -> str:
        """Why split `name` holds no sample, and what to do, in one line (for a split that is empty).

        >>> DataSplits([Record("a", "ক", b"x")] * 9, [], [], SkipReport(), "words.csv", held_out=("val", "test"),
        ...            fractions=(0.05, 0.05)).why_empty("test")
        "split 'test' of words.csv is empty: words.csv has no test split and data.test_fraction 0.05 of its 9 samples holds out none; evaluate every sample with --split all (or hold out more: data.test_fraction=0.2)"
        """
        if name in self.held_out:
            fraction = self.fractions[0] if name == "val" else self.fractions[1]
            total = len(self.train_records) + len(self.val) + len(self.test)
            return (f"split '{name}' of {self.source} is empty: {self.source} has no {name} split and "
                    f"data.{name}_fraction {fraction:g} of its {total} samples holds out none; evaluate every "
                    f"sample with --split all (or hold out more: data.{name}_fraction=0.2)")
        return f"split '{name}' of {self.source} is empty ({self.skipped.summary()})"


# --------------------------------------------------------------------------- images


def open_image(record_or_image: Record | Any) -> Image.Image:
    """Decode a record's image to upright RGB on white (`banglaocr.data.decode`); raise `UnreadableImage`
    with the reason.

    >>> open_image(Record(id="x", text="ক", image=b""))
    Traceback (most recent call last):
    ...
    banglaocr.data.decode.UnreadableImage: empty image data
    """
    image = _open_lazily(record_or_image)
    try:
        return to_rgb(image)
    finally:
        if image is not _given_image(record_or_image):  # close the file this opened, never the caller's image
            image.close()


def image_size(record: Record) -> tuple[int, int]:
    """(width, height) as displayed (EXIF orientation applied), from the image header without decoding pixels."""
    if isinstance(record.image, Image.Image):
        return record.image.size
    with _open_lazily(record) as image:  # closes the file this opened
        return header_size(image)


def _given_image(record_or_image: Record | Any) -> Any:
    return record_or_image.image if isinstance(record_or_image, Record) else record_or_image


def _open_lazily(record_or_image: Record | Any) -> Image.Image:
    """A record's image opened (header read and size checked, pixels not yet decoded); `UnreadableImage`
    when it cannot be."""
    source = _given_image(record_or_image)
    if isinstance(source, Image.Image):
        return source
    if isinstance(source, HubImage):
        source = source.dataset[source.row][source.column]
    if isinstance(source, dict):  # datasets' undecoded Image cell: {"bytes": ..., "path": ...}
        source = source.get("bytes") or source.get("path")
    if source is None:
        raise UnreadableImage("no image")
    if isinstance(source, (bytes, bytearray)):
        if not source:
            raise UnreadableImage("empty image data")
        return open_checked(io.BytesIO(source))
    with as_unreadable():
        path = Path(source)
        if not path.is_file():
            raise UnreadableImage(f"not a regular file: {path}" if path.exists() else f"no such file: {path}")
        if path.stat().st_size == 0:
            raise UnreadableImage("empty file")
    return open_checked(str(path))

# --------------------------------------------------------------------------- reading rows

MALFORMED = "malformed manifest line"
TOO_LONG = f"label too long (over {MAX_LABEL_CHARS} characters)"
IMAGE_FILE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp")
"""Suffixes tried, in this order, for an image name written without one."""


def _read_table(path: Path, skipped: SkipReport) -> list[tuple[int, dict]]:
    """(line number, row) of each row of a .jsonl or .csv file (UTF-8, a byte-order mark allowed).

    A line that is not a row - not JSON, not a JSON object, a CSV line with another number of
    fields than the header - is skipped and counted (`MALFORMED`, named `file:line`); a file that
    cannot be read, is not UTF-8 or has no valid row at all is one clear `UserError`.
    """
    if path.suffix not in (".jsonl", ".csv"):
        raise UserError(f"{path}: manifest must be .jsonl or .csv")
    text = read_text(path)
    if path.suffix == ".jsonl":
        rows, bad = _jsonl_rows(text, path, skipped)
    else:
        rows, bad = _csv_rows(text, path, skipped)
    if bad and not rows:
        raise UserError(f"{path}: no line is a valid row (line {bad[0]}: {bad[1]}); "
                        f"is it a {'JSON-lines' if path.suffix == '.jsonl' else 'CSV'} file?")
    return rows


def _jsonl_rows(text: str, path: Path, skipped: SkipReport) -> tuple[list[tuple[int, dict]], tuple | None]:
    rows, first_bad = [], None
    # split("\n"), not splitlines(): U+2028 and other Unicode line breaks may stand inside a JSON string.
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            problem = None if isinstance(row, dict) else "not a JSON object"
        except (json.JSONDecodeError, RecursionError):
            problem = "not valid JSON"
        if problem is not None:
            skipped.add(MALFORMED, f"{path.name}:{number}")
            first_bad = first_bad or (number, problem)
            continue
        rows.append((number, row))
    return rows, first_bad


def _csv_rows(text: str, path: Path, skipped: SkipReport) -> tuple[list[tuple[int, dict]], tuple | None]:
    reader = csv.reader(io.StringIO(text, newline=""))
    rows, first_bad, header = [], None, None
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as err:  # a NUL byte, a field over the size limit: this line only
            problem = f"not CSV ({err})"
        else:
            if not fields:
                continue  # blank line
            if header is None:
                header = fields
                continue
            if len(fields) == len(header):
                rows.append((reader.line_num, dict(zip(header, fields))))
                continue
            problem = f"{len(fields)} fields, the header has {len(header)}"
        skipped.add(MALFORMED, f"{path.name}:{reader.line_num}")
        first_bad = first_bad or (reader.line_num, problem)
    return rows, first_bad


def _records_from_rows(rows: list[tuple[int, dict]], table: Table, cfg: DataConfig,
                       skipped: SkipReport) -> list[Record]:
    """Records of a table's rows (`_read_table`); bad rows skipped with a reason.

    The image and text columns are the configured ones or the table's common names (`columns`); a row is
    named by its image file as the table writes it (a row without one by `table:line`). Image names are
    looked up in `table.search` folders in turn, with an image suffix added to a name without one.
    """
    if not rows:
        return []
    columns = list(dict.fromkeys(str(key) for _, row in rows for key in row))
    image_key = find_column(columns, cfg.image_column, IMAGE_NAMES, "image", "data.image_column", table.where)
    text_key = find_column(columns, cfg.text_column, TEXT_NAMES, "transcription", "data.text_column", table.where)
    records = []
    for line, row in rows:
        name = row.get(image_key)
        sample_id = name if isinstance(name, str) and name else f"{table.where}:{line}"
        raw_text = row.get(text_key)
        if isinstance(raw_text, (dict, list, bool)):
            skipped.add("label is not text", sample_id)
            continue
        text = normalize("" if raw_text is None else str(raw_text))
        if name in (None, ""):
            skipped.add("no image path", sample_id)
            continue
        if not text:
            skipped.add("empty label", sample_id)
            continue
        if len(text) > MAX_LABEL_CHARS:
            skipped.add(TOO_LONG, sample_id)
            continue
        if not isinstance(name, str):
            skipped.add("image path is not text", sample_id)
            continue
        path, problem = _image_path(table, name)
        if problem is not None:
            skipped.add(problem, sample_id)
            continue
        cls = row.get(cfg.class_column) if cfg.class_column else None
        meta = {k: v for k, v in row.items() if k not in (image_key, text_key, cfg.class_column)}
        records.append(Record(id=sample_id, text=text, image=str(path), cls=cls, meta=meta))
    return records


@dataclass(frozen=True)
class Table:
    """Where a table's image names point: the folders searched in turn, and the folder they must stay in.

    `confined` (an imagefolder's metadata, a table inside a data folder): every image must resolve inside
    it, symlinks followed - a data set from elsewhere must not make us read other files. A manifest given
    as `data.source` is the user's own list and may name any path (`confined` None).
    """

    where: str
    """How messages name the table (`labels.csv`, `train/metadata.jsonl`)."""
    search: tuple[Path, ...]
    confined: Path | None = None


def _table_beside(path: Path, where: str, confined: Path | None) -> Table:
    """A table whose image names are relative to its folder, else to an `images/` folder beside it or beside
    its folder (GraDeT-HTR: `labels/label.csv` names the files of `images/`)."""
    folder = path.parent
    extra = [candidate for candidate in (folder / "images", folder.parent / "images")
             if candidate != folder and candidate.is_dir()
             and (confined is None or candidate.resolve().is_relative_to(confined.resolve()))]
    return Table(where=where, search=(folder, *dict.fromkeys(extra)), confined=confined)


def _spellings(name: str) -> list[str]:
    """`name`, then - for a name without an image suffix (GraDeT-HTR-style ids such as `1_1_2_1`) - the name
    with each image suffix."""
    if Path(name).suffix.lower() in IMAGE_FILE_SUFFIXES:
        return [name]
    suffixes = [*IMAGE_FILE_SUFFIXES, *(suffix.upper() for suffix in IMAGE_FILE_SUFFIXES)]
    return [name, *(name + suffix for suffix in suffixes)]


def _lexists(path: Path) -> bool:
    """Whether `path` is there (a broken symlink too); a name no file can have (a NUL byte, too long, a
    symlink loop) raises instead of reading as missing."""
    try:
        os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return False
    return True


def _image_path(table: Table, name: str) -> tuple[Path | None, str | None]:
    """The image file a row names, or (None, the skip reason)."""
    confined = table.confined
    try:
        if confined is not None and Path(name).is_absolute():
            return None, "absolute image path in an imagefolder"
        for folder in table.search:
            folder = folder.absolute()
            if confined is not None and not Path(os.path.normpath(folder / name)).is_relative_to(
                    os.path.normpath(confined.absolute())):
                return None, "image path outside its folder"
            for spelling in _spellings(name):
                candidate = folder / spelling
                if not _lexists(candidate):
                    continue
                path = candidate.resolve()
                if confined is not None and not path.is_relative_to(confined.resolve()):
                    return None, "image symlink leading outside its folder"
                if not path.is_file():
                    return None, "missing image file"
                if path.stat().st_size == 0:
                    return None, "empty image file"
                return path, None
    except (OSError, ValueError, RuntimeError):  # a NUL byte, a name too long, a symlink loop
        return None, "invalid image path"
    return None, "missing image file"


def _without_duplicates(records: list[Record], skipped: SkipReport) -> list[Record]:
    """The first row of each image file (and of each id): a file listed twice is scored (or trained) once."""
    kept, files, ids = [], set(), set()
    for record in records:
        if record.image in files or record.id in ids:
            skipped.add("duplicate row (image or id listed before)", record.id)
            continue
        files.add(record.image)
        ids.add(record.id)
        kept.append(record)
    return kept


def _find_metadata(folder: Path) -> Path | None:
    """The metadata file of an imagefolder split, or None. One of that name that is no regular file (a FIFO,
    a folder, a broken symlink) is a `UserError`: ignoring it would drop the split silently, reading a FIFO
    would wait forever."""
    for name in ("metadata.jsonl", "metadata.csv"):
        path = folder / name
        if path.is_file():
            return path
        if os.path.lexists(path):
            kind = file_kind(path.stat().st_mode) if path.exists() else "a broken symlink"
            raise UserError(f"{path} is {kind}, not a regular file; a metadata file must be one")
    return None


def _imagefolder_splits(root: Path, cfg: DataConfig, skipped: SkipReport) -> dict[str, list[Record]]:
    splits: dict[str, list[Record]] = {}
    try:
        children = sorted(p for p in root.iterdir() if p.is_dir())
    except OSError as err:
        raise UserError(f"cannot read data folder {root}: {err.strerror or err}") from None
    for child in children:
        metadata = _find_metadata(child)
        if metadata is not None:
            table = Table(where=f"{child.name}/{metadata.name}", search=(child,), confined=child)
            splits[child.name] = _records_from_rows(_read_table(metadata, skipped), table, cfg, skipped)
    root_metadata = _find_metadata(root)
    if root_metadata is not None:
        table = Table(where=root_metadata.name, search=(root,), confined=root)
        splits.setdefault("train", [])
        splits["train"] += _records_from_rows(_read_table(root_metadata, skipped), table, cfg, skipped)
    return {name: _without_duplicates(records, skipped) for name, records in splits.items()}


SPLIT_NAMES = {name: "val" for name in VAL_SPLIT_NAMES} | {"train": "train", "test": "test"}
"""Table stems that name a split (`train.csv`, `validation.jsonl`, ...) in a folder of tables."""
TABLE_FOLDERS = (".", "labels")
"""Where a data folder without metadata.jsonl / metadata.csv may keep its table (GraDeT-HTR: `labels/`)."""


def _label_tables(root: Path) -> list[Path]:
    """The .csv / .jsonl files at the root of a data folder or in its `labels/` folder."""
    found = []
    for name in TABLE_FOLDERS:
        folder = root / name
        if folder.is_dir():
            found += sorted(p for p in folder.iterdir() if p.suffix in (".csv", ".jsonl") and p.is_file())
    return found


def _table_splits(root: Path, tables: list[Path], cfg: DataConfig, skipped: SkipReport) -> dict[str, list[Record]]:
    """A data folder with its own table instead of metadata.jsonl: one table (any name) is the train split;
    several must be named by their splits (train.csv, val.csv, test.csv)."""
    named = {table: SPLIT_NAMES.get(table.stem.lower()) for table in tables}
    if len(tables) > 1 and None in named.values():
        shown = ", ".join(str(t.relative_to(root)) for t in tables)
        raise UserError(f"{root} has no metadata.jsonl or metadata.csv and several tables ({shown}); name one as "
                        "the data source (data.source / --dataset), or name them train, val and test")
    splits: dict[str, list[Record]] = {}
    for table, split in named.items():
        where = str(table.relative_to(root))
        records = _records_from_rows(_read_table(table, skipped), _table_beside(table, where, root), cfg, skipped)
        splits.setdefault(split or "train", []).extend(records)
    return {name: _without_duplicates(records, skipped) for name, records in splits.items()}


def _has_files(root: Path, suffixes: tuple[str, ...]) -> bool:
    return any(path.suffix.lower() in suffixes for path in root.rglob("*"))


def _no_metadata_error(root: Path) -> UserError:
    images = sum(1 for path in root.rglob("*") if path.suffix.lower() in IMAGE_FILE_SUFFIXES)
    what = f"its {images} image(s) need" if images else "it holds no images either; word images need"
    return UserError(f"no metadata.jsonl or metadata.csv in {root}: {what} a table of file names and "
                     "transcriptions - metadata.jsonl / metadata.csv (file_name,text; or filename,label, "
                     "image_id,text, ...) at its root or in each split folder (train/, val/, test/) - or name "
                     "a .csv / .jsonl manifest as the data source")


def _dataset_columns(dataset: Any, cfg: DataConfig, split_name: str) -> tuple[str, str]:
    """(image column, text column) of a `datasets.Dataset`: `columns.find_column` over its columns - a text
    column must hold strings (a class label of integers is no transcription); with no image column of a
    common name, its one `Image` column."""
    import datasets

    features = dataset.features
    where = f"split '{split_name}'"
    texts = [name for name in dataset.column_names
             if isinstance(features[name], datasets.Value) and features[name].dtype in ("string", "large_string")]
    images = [name for name in dataset.column_names if isinstance(features[name], datasets.Image)]
    try:
        image = find_column(dataset.column_names, cfg.image_column, IMAGE_NAMES, "image", "data.image_column", where)
    except UserError:
        if cfg.image_column is not None or len(images) != 1:
            raise
        image = images[0]
    text = find_column(texts if cfg.text_column is None else dataset.column_names, cfg.text_column, TEXT_NAMES,
                       "transcription", "data.text_column", where)
    return image, text


def _hub_records(dataset: Any, cfg: DataConfig, split_name: str, skipped: SkipReport) -> list[Record]:
    """Records of a `datasets.Dataset` without decoding its images (they stay in the Arrow table)."""
    import datasets

    image_column, text_column = _dataset_columns(dataset, cfg, split_name)
    columns = dataset.column_names
    if isinstance(dataset.features[image_column], datasets.Image):
        dataset = dataset.cast_column(image_column, datasets.Image(decode=False))
    texts = dataset[text_column]
    classes = dataset[cfg.class_column] if cfg.class_column and cfg.class_column in columns else None
    records = []
    for row, raw_text in enumerate(texts):
        sample_id = f"{split_name}#{row}"
        text = normalize(str(raw_text or ""))
        if not text:
            skipped.add("empty label", sample_id)
            continue
        if len(text) > MAX_LABEL_CHARS:
            skipped.add(TOO_LONG, sample_id)
            continue
        cls = None if classes is None else classes[row]
        records.append(Record(id=sample_id, text=text, image=HubImage(dataset, row, image_column),
                              cls=None if cls is None else str(cls)))
    return records


def _load_with_datasets(source: str, cfg: DataConfig, skipped: SkipReport,
                        from_disk: bool) -> dict[str, list[Record]]:
    import datasets

    from banglaocr import hub

    from_hub = not from_disk and not Path(source).is_dir()
    # With the hub unreachable, datasets retries for half a minute before it fails (or falls back to its
    # cache): ask the hub once first, and read a cached copy without asking it at all.
    cache_only = from_hub and _check_hub(source)
    try:
        with hub.cache_only(cache_only):
            if from_disk:
                loaded = datasets.load_from_disk(source)
            else:
                loaded = datasets.load_dataset(source, cfg.config_name)
    except (FileNotFoundError, ConnectionError, OSError, ValueError) as err:
        raise UserError(f"cannot load data set '{source}': {first_line(err)} "
                        "(offline? use a local folder, or set HF_HUB_OFFLINE=1 with a cached copy)") from None
    if isinstance(loaded, datasets.Dataset):
        loaded = {"train": loaded}
    return {name: _hub_records(ds, cfg, name, skipped) for name, ds in loaded.items()}


def _check_hub(source: str) -> bool:
    """For a hub data set id: True when it is to be read from the local cache only (cached, hub unreachable);
    a `UserError` in one line when the hub does not answer and nothing is cached."""
    from banglaocr import hub

    if hub.offline():
        return False  # datasets reads the cache at once (or fails at once)
    problem = hub.unreachable()
    if problem is None:
        return False
    if hub.cached(source, repo_type="dataset"):
        return True
    raise UserError(f"cannot load data set '{source}': {problem}; set HF_HUB_OFFLINE=1 to use a copy in the local "
                    "cache, or give a local folder")


def _load_raw_splits(cfg: DataConfig, skipped: SkipReport) -> tuple[dict[str, list[Record]], str]:
    """The source's splits as it has them, and what its held-out splits are made of by default
    (`data.split_by` null): whole writers for the public data sets' layouts, single samples otherwise."""
    from banglaocr.data.layouts import detect_layout, layout_records, named_layout

    source = cfg.source
    named = named_layout(source)
    if named is not None:
        layout, folder = named
        return {"train": layout_records(layout, folder, cfg, skipped)}, "writer"
    path = Path(expand_home(source, "data source"))
    if path.exists() and not path.is_dir():  # a manifest; one that is no regular file is refused when read
        table = _table_beside(path, path.name, None)
        records = _records_from_rows(_read_table(path, skipped), table, cfg, skipped)
        return {"train": _without_duplicates(records, skipped)}, "sample"
    if path.is_dir():
        if (path / "dataset_dict.json").is_file() or (path / "dataset_info.json").is_file():
            return _load_with_datasets(str(path), cfg, skipped, from_disk=True), "sample"
        splits = _imagefolder_splits(path, cfg, skipped)
        if splits:
            return splits, "sample"
        detected = detect_layout(path)
        if detected is not None:
            layout, folder = detected
            return {"train": layout_records(layout, folder, cfg, skipped)}, "writer"
        tables = _label_tables(path)
        if tables:
            return _table_splits(path, tables, cfg, skipped), "sample"
        if _has_files(path, DATASETS_FILES):
            return _load_with_datasets(str(path), cfg, skipped, from_disk=False), "sample"
        raise _no_metadata_error(path)
    if path.suffix in (".jsonl", ".csv") or source.startswith((".", "/", "~")) or (
            len(path.parts) > 1 and path.parent.is_dir()):  # `data/words` with a local data/: a typo, not a hub id
        raise UserError(f"data source not found: {source}")
    return _load_with_datasets(source, cfg, skipped, from_disk=False), "sample"


DATASETS_FILES = (".parquet", ".arrow")
"""Files of a local folder that `datasets.load_dataset` reads as a data set of its own (images and text in
its columns)."""


# --------------------------------------------------------------------------- selection and split


def _select_classes(records: list[Record], cfg: DataConfig, rng: random.Random) -> list[Record]:
    if cfg.classes is not None:
        wanted = set(cfg.classes)
        present = {r.cls for r in records}
        if records and not wanted & present:
            raise UserError(f"data.classes {sorted(wanted)} match no sample "
                            f"(classes present: {sorted(str(c) for c in present)})")
        records = [r for r in records if r.cls in wanted]
    if cfg.samples_per_class == "all":
        return records
    by_class: dict[Any, list[Record]] = {}
    for record in records:
        by_class.setdefault(record.cls, []).append(record)
    chosen = []
    for cls in sorted(by_class, key=str):
        group = by_class[cls]
        if len(group) > cfg.samples_per_class:
            group = rng.sample(group, cfg.samples_per_class)
        chosen.extend(group)
    return chosen


def _named_split(splits: dict[str, list[Record]], explicit: str | None, names: tuple[str, ...],
                 kind: str) -> list[Record] | None:
    if explicit is not None:
        if explicit not in splits:
            raise UserError(f"data.{kind}_split '{explicit}' not found (splits: {', '.join(sorted(splits))})")
        return splits[explicit]
    for name in names:
        if name in splits:
            return splits[name]
    return None


def load_splits(cfg: DataConfig) -> DataSplits:
    """Load `cfg.source` into seeded train/val/test record lists, counting what was skipped.

    When the source has no validation (or test) split, `val_fraction` (`test_fraction`) of the
    training split is held out with `split_seed`: the same seed always gives the same split.
    A source with val/test records but no usable training split loads (see `DataSplits`); one
    with no usable records at all is a `UserError`.
    """
    if cfg.source == "synth":
        raise UserError("data.source 'synth' must be rendered first (banglaocr synth --out DIR), "
                        "then point data.source at DIR")
    skipped = SkipReport()
    splits, default_split_by = _load_raw_splits(cfg, skipped)
    no_train = None
    if cfg.split not in splits:
        no_train = f"data.split '{cfg.split}' not found in {cfg.source} (splits: {', '.join(sorted(splits))})"
        if not splits:
            raise UserError(no_train)
    rng = random.Random(cfg.split_seed)
    train = _select_classes(splits.get(cfg.split, []), cfg, rng)
    val = _named_split(splits, cfg.val_split, VAL_SPLIT_NAMES, "val")
    test = _named_split(splits, cfg.test_split, TEST_SPLIT_NAMES, "test")
    val = None if val is None else _select_classes(val, cfg, rng)
    test = None if test is None else _select_classes(test, cfg, rng)
    held_out = tuple(name for name, given in (("val", val), ("test", test)) if given is None)
    if held_out:
        n_val = round(len(train) * cfg.val_fraction) if val is None else 0
        n_test = round(len(train) * cfg.test_fraction) if test is None else 0
        split_by = cfg.split_by or default_split_by
        if split_by == "sample":
            train, held_val, held_test = _held_out_samples(train, n_val, n_test, rng)
        else:
            train, held_val, held_test = _held_out_groups(train, n_val, n_test, rng, split_by)
        val = held_val if val is None else val
        test = held_test if test is None else test
    if not train and no_train is None:
        no_train = f"no usable training samples in {cfg.source} ({skipped.summary()})"
    if no_train is not None and not val and not test:
        raise UserError(no_train)
    return DataSplits(train_records=train, val=val, test=test, skipped=skipped, source=cfg.source,
                      no_train=no_train, held_out=held_out, fractions=(cfg.val_fraction, cfg.test_fraction))


def _held_out_samples(train: list[Record], n_val: int, n_test: int,
                      rng: random.Random) -> tuple[list[Record], list[Record], list[Record]]:
    """(train, val, test): `n_val` and `n_test` single samples drawn with `rng`, the rest kept in order."""
    order = list(range(len(train)))
    rng.shuffle(order)
    held_val = [train[i] for i in order[:n_val]]
    held_test = [train[i] for i in order[n_val:n_val + n_test]]
    return [train[i] for i in sorted(order[n_val + n_test:])], held_val, held_test


def _held_out_groups(train: list[Record], n_val: int, n_test: int, rng: random.Random,
                     split_by: str) -> tuple[list[Record], list[Record], list[Record]]:
    """(train, val, test) made of whole groups (writers or pages, `Record.meta[split_by]`), drawn with `rng`:
    each held-out split with a share takes at least one group, then more while its size comes closer to
    its share; the training split keeps at least one group. Every sample must know its group: one that does
    not is a `UserError`."""
    groups: dict[str, list[int]] = {}
    for index, record in enumerate(train):
        group = record.meta.get(split_by)
        if group in (None, ""):
            raise UserError(f"data.split_by '{split_by}' needs the {split_by} of every sample (a BN-HTRd or "
                            f"BanglaWriting folder, or a '{split_by}' column), and {record.id} has none; "
                            "set data.split_by=sample")
        groups.setdefault(str(group), []).append(index)
    keys = sorted(groups)
    rng.shuffle(keys)
    chosen: dict[str, list[int]] = {"val": [], "test": []}
    queue = list(keys)
    for name, share in (("val", n_val), ("test", n_test)):
        while share > 0 and len(queue) > 1:
            size, next_size = len(chosen[name]), len(groups[queue[0]])
            if size and abs(size + next_size - share) >= abs(size - share):
                break
            chosen[name].extend(groups[queue.pop(0)])
    held = set(chosen["val"]) | set(chosen["test"])
    return ([record for index, record in enumerate(train) if index not in held],
            [train[i] for i in sorted(chosen["val"])], [train[i] for i in sorted(chosen["test"])])


def synth_dir(cfg: DataConfig, work_dir: Path) -> Path:
    """Where `data.source: synth` renders: `data.synth.dir`, else a folder named by its parameters."""
    if cfg.synth.dir:
        return Path(cfg.synth.dir)
    holdout = f"-{cfg.synth.holdout_font}" if cfg.synth.holdout_font else ""
    return Path(work_dir) / f"synth-{cfg.synth.n}-{cfg.synth.seed}{holdout}"


def resolve_source(cfg: DataConfig, work_dir: Path) -> DataConfig:
    """Render `source: synth` on first use (later runs reuse the folder) and point the config at it.

    Any other source is returned unchanged. The rendered folder carries `synth.json`; a folder
    rendered with other parameters is an error rather than silently reused.
    """
    if cfg.source != "synth":
        return cfg
    from banglaocr.data.synth import recorded_settings, synth_settings, write_synthetic_dataset

    folder = synth_dir(cfg, work_dir)
    marker = folder / "synth.json"
    synth = cfg.synth
    settings = dict(n=synth.n, seed=synth.seed, holdout_font=synth.holdout_font, short_fraction=synth.short_fraction,
                    only_fonts=synth.fonts, clean=synth.clean, hand=synth.hand)
    if marker.is_file():
        if recorded_settings(json.loads(marker.read_text(encoding="utf-8"))) != synth_settings(**settings):
            raise UserError(f"{folder} holds synthetic data rendered with other settings; "
                            "delete it or set data.synth.dir elsewhere")
    elif folder.is_dir() and any(folder.iterdir()):
        write_synthetic_dataset(folder, **settings)  # refuses: a folder with other files is not ours to replace
    else:
        from banglaocr.files import atomic_folder

        # Rendered beside its place and renamed when whole: a render cut short (a kill, a full disk) leaves no
        # half-filled folder that the next run (a resume) would refuse.
        with atomic_folder(folder) as tmp:
            write_synthetic_dataset(tmp, **settings)
    return dataclasses.replace(cfg, source=str(folder))
