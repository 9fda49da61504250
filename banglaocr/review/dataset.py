"""The data set `banglaocr review` writes: a plain imagefolder that `train` and `eval` read unchanged.

```
DATASET/train/metadata.jsonl   one row per corrected (or confirmed) word of a training page
DATASET/train/000000.png ...   the word crops, named by a counter (never by a name from the input)
DATASET/val/...                the same for the validation pages (the folder appears with its first page)
DATASET/review-state.json      what was done to each word (saved, illegible, skipped), the split of each page
DATASET/review-journal.jsonl   every action, appended: two tabs saving one word both stay on record
```

A metadata row: `{"file_name", "text", "source", "page", "box", "model_reading", "confidence", "reviewed"}`.
Illegible words are not training data: they are in the state and the journal, never in metadata.jsonl.

Pages, not words, are split, so the words of one page never straddle train and val. A page's split is
decided when its first word is saved and recorded in the state: the k-th page reviewed (counting from 0)
goes to val when k % 10 == 1 - the second page, the twelfth, ... (a tenth of the pages; with two pages,
one each) - and never moves.

Every action is on disk before it is answered: the crop, then the state, then the split's metadata, each
written to a temporary file, fsync'd, renamed into place, and the folder fsync'd; the journal line is
appended and fsync'd. The state is the truth: a kill between two of these writes is repaired when the data
set is opened again (`open_dataset` rewrites metadata.jsonl from the state).

>>> import tempfile, pathlib
>>> from PIL import Image
>>> from banglaocr.review.inputs import ReviewItem
>>> folder = pathlib.Path(tempfile.mkdtemp()) / "reviewed"
>>> Image.new("RGB", (40, 20), "white").save(folder.parent / "a.png")
>>> item = ReviewItem(key="a.png", image=folder.parent / "a.png", source="a.png", page="a.png", reading="কলন")
>>> dataset = open_dataset(folder, "crops:" + str(folder.parent))
>>> dataset.record(item, "save", "কলম")["split"]
'train'
>>> (folder / "train" / "metadata.jsonl").read_text(encoding="utf-8").count("কলম")
1
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Callable

from banglaocr.errors import UserError
from banglaocr.files import atomic_write, read_text
from banglaocr.row_encoding import json_text

STATE_FILE = "review-state.json"
JOURNAL_FILE = "review-journal.jsonl"
METADATA_FILE = "metadata.jsonl"
REVIEW_SPLITS = ("train", "val")
ACTIONS = ("save", "skip", "illegible")
ACTION_STATES = {"save": "saved", "skip": "skipped", "illegible": "illegible"}
REVIEW_MARKER = "banglaocr review"
VAL_EVERY = 10
"""Every VAL_EVERY-th page (the second of each ten) is a validation page."""


def split_of_page(index: int) -> str:
    """The split of the `index`-th page reviewed (0-based): 'val' for the second of every ten.

    >>> [split_of_page(k) for k in range(3)], split_of_page(11)
    (['train', 'val', 'train'], 'val')
    """
    return "val" if index % VAL_EVERY == 1 else "train"


def fsync_folder(folder: Path) -> None:
    """Make a rename inside `folder` durable (a file system without directory fsync: nothing to do)."""
    try:
        handle = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)


def durable_write(path: Path, write: Callable[[Path], None]) -> None:
    """`files.atomic_write`, with the temporary file fsync'd before its rename and the folder after it."""
    def write_synced(tmp: Path) -> None:
        write(tmp)
        handle = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(handle)
        finally:
            os.close(handle)

    atomic_write(path, write_synced)
    fsync_folder(path.parent)


def durable_text(path: Path, text: str) -> None:
    durable_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def word_origin(item) -> dict:
    """Where a word came from, as its metadata row says: source, page, box, model reading, confidence."""
    return {"source": item.source, "page": item.page, "box": list(item.box) if item.box else None,
            "model_reading": item.reading, "confidence": item.confidence}


def _is_review_folder(folder: Path) -> bool:
    try:
        state = json.loads(read_text(folder / STATE_FILE))
    except (UserError, ValueError):
        return False
    return isinstance(state, dict) and state.get("written_by") == REVIEW_MARKER


def open_dataset(folder: str | Path, input_id: str) -> "ReviewDataset":
    """The data set at `folder`: new (missing or empty), or one an earlier review of the same input wrote
    (resumed, its metadata repaired from its state). Anything else is refused (`output_policy`)."""
    from banglaocr.output_policy import claim_folder

    folder = Path(folder).expanduser()
    verdict = claim_folder(folder, "review", (STATE_FILE, JOURNAL_FILE), overwrite=False,
                           is_ours=_is_review_folder)
    if verdict == "new":
        folder.mkdir(parents=True, exist_ok=True)
        state = {"written_by": REVIEW_MARKER, "input": input_id, "pages": {}, "items": {}, "next_file": 0}
        durable_text(folder / STATE_FILE, json_text(state, indent=1) + "\n")
        return ReviewDataset(folder, state)
    state = json.loads(read_text(folder / STATE_FILE))
    if state.get("input") != input_id:
        raise UserError(f"--out {folder} holds the review of {state.get('input')}, not of {input_id}: give that "
                        "INPUT to go on with it, or choose a new --out")
    dataset = ReviewDataset(folder, state)
    dataset.repair()
    return dataset


class ReviewDataset:
    """The data set of one review; `record` is safe from several threads (one lock, one writer)."""

    def __init__(self, folder: Path, state: dict) -> None:
        self.folder = folder
        self.state = state
        self.lock = threading.Lock()

    def entry(self, key: str) -> dict | None:
        """What was done to the word `key` (its state, text, split, file), or None."""
        return self.state["items"].get(key)

    def record(self, item, action: str, text: str | None = None, tab: str | None = None) -> dict:
        """Save `text` as the word of `item`, or mark it skipped or illegible; on disk before it returns."""
        if action not in ACTIONS:
            raise ValueError(f"unknown action {action!r}")
        with self.lock:
            before = self.state["items"].get(item.key)
            entry = {"state": ACTION_STATES[action], "time": round(time.time(), 3)}
            if before and before.get("file_name"):  # a word keeps its file and split once it has one
                entry |= {"split": before["split"], "file_name": before["file_name"]}
            if action == "save":
                entry |= self._place(item, entry)
                entry |= {"text": text, "changed": text != item.reading, "word": word_origin(item)}
                self._write_crop(item, entry)
            self.state["items"][item.key] = entry
            self._write_state()
            for split in {entry.get("split"), (before or {}).get("split")} - {None}:
                self._write_metadata(split)
            if before and before.get("state") == "saved" and action != "save":
                (self.folder / before["split"] / before["file_name"]).unlink(missing_ok=True)
            self._journal({"key": item.key, "action": action, "text": text, "tab": tab, **entry})
            return dict(entry)

    def _place(self, item, entry: dict) -> dict:
        """The split (its page's, decided now for a new page) and the file name of a word saved."""
        pages = self.state["pages"]
        if item.page not in pages:
            pages[item.page] = split_of_page(len(pages))
        split = entry.get("split") or pages[item.page]
        name = entry.get("file_name")
        if name is None:
            name = f"{self.state['next_file']:06d}.png"
            self.state["next_file"] += 1
        return {"split": split, "file_name": name}

    def _write_crop(self, item, entry: dict) -> None:
        from banglaocr.review.inputs import open_item_image

        folder = self.folder / entry["split"]
        folder.mkdir(exist_ok=True)
        target = folder / entry["file_name"]
        if not target.exists():
            image = open_item_image(item)  # UnreadableImage: nothing written, the caller says why
            durable_write(target, lambda tmp: image.save(tmp, format="PNG"))

    def _write_state(self) -> None:
        durable_text(self.folder / STATE_FILE, json_text(self.state, indent=1) + "\n")

    def _write_metadata(self, split: str) -> None:
        """Rewrite `split`'s metadata.jsonl from the state (rows in file order); removed when it has none."""
        rows = [{"file_name": entry["file_name"], "text": entry["text"], **entry["word"], "reviewed": True}
                for entry in self.state["items"].values()
                if entry.get("state") == "saved" and entry.get("split") == split]
        path = self.folder / split / METADATA_FILE
        if not rows:
            if path.exists():
                path.unlink()
                fsync_folder(path.parent)
            return
        path.parent.mkdir(exist_ok=True)
        rows.sort(key=lambda row: row["file_name"])
        durable_text(path, "".join(json_text(row) + "\n" for row in rows))

    def _journal(self, line: dict) -> None:
        handle = os.open(self.folder / JOURNAL_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            os.write(handle, (json_text(line) + "\n").encode("utf-8"))
            os.fsync(handle)
        finally:
            os.close(handle)

    def repair(self) -> None:
        """Rewrite each split's metadata from the state (a kill between the state and the metadata)."""
        with self.lock:
            for split in REVIEW_SPLITS:
                self._write_metadata(split)

    def counts(self, keys) -> dict:
        """How many of the words `keys` are saved, changed, illegible, skipped."""
        states = [self.state["items"].get(key) or {} for key in keys]
        return {"saved": sum(s.get("state") == "saved" for s in states),
                "changed": sum(s.get("state") == "saved" and bool(s.get("changed")) for s in states),
                "illegible": sum(s.get("state") == "illegible" for s in states),
                "skipped": sum(s.get("state") == "skipped" for s in states)}
