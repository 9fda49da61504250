"""Files written so that a kill never leaves a half-written one that looks whole.

Shared by training (checkpoints, best/, final/, summary.json), `merge-lora` and `eval`: a folder is
written under a temporary sibling name and renamed into place when complete; a file is written
next to its target and renamed over it (`os.replace` is atomic on one file system).

>>> import tempfile, pathlib
>>> root = pathlib.Path(tempfile.mkdtemp())
>>> with atomic_folder(root / "model") as tmp:
...     _ = (tmp / "config.json").write_text("{}")
>>> write_json(root / "summary.json", {"cer": 0.5})
>>> sorted(p.name for p in root.iterdir())
['model', 'summary.json']
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from pathlib import Path
from typing import Callable, Iterator

from banglaocr.row_encoding import json_text


def commit_folder(tmp: Path, final: Path) -> None:
    """Rename a finished temporary folder into place, replacing `final` if it exists."""
    if final.exists():
        # Move the old folder aside first so that at every instant one complete folder exists
        # under a known name (a kill between the two renames leaves `.old-NAME`, still whole).
        old = final.parent / f".old-{final.name}"
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)


def fresh_tmp_folder(final: Path) -> Path:
    """An empty `.tmp-NAME` sibling of `final` (left-overs of a killed write are removed)."""
    tmp = final.parent / f".tmp-{final.name}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    return tmp


@contextlib.contextmanager
def atomic_folder(final: Path) -> Iterator[Path]:
    """Yield a temporary sibling folder; rename it to `final` when the block finishes cleanly."""
    final = Path(final)
    tmp = fresh_tmp_folder(final)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    commit_folder(tmp, final)


def _fresh_tmp_file(path: Path) -> Path:
    """A new, empty `.NAME.XXXXXXXX.tmp` beside `path`, created exclusively: never a file or FIFO already
    there (opening a FIFO planted under a fixed temporary name would block)."""
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))  # the mode goes through umask
            return tmp
        except FileExistsError:
            continue


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call `write(tmp_path)`, then rename the temporary file over `path` (never a half-written `path`;
    a failed write leaves `path` as it was and no temporary file behind)."""
    path = Path(path)
    tmp = _fresh_tmp_file(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json(path: Path, payload: dict) -> None:
    """`payload` as indented UTF-8 JSON at `path`, atomically (any file name inside it survives:
    `row_encoding.json_text`)."""
    atomic_write(path, lambda tmp: tmp.write_text(json_text(payload, indent=2) + "\n", encoding="utf-8"))


def read_text(path: Path, label: str | None = None) -> str:
    """A UTF-8 text file (a byte-order mark dropped). A file that cannot be read or is not UTF-8 is one
    `UserError` naming it as `label` (default: the path).

    >>> import tempfile, pathlib
    >>> bad = pathlib.Path(tempfile.mkdtemp()) / "x.jsonl"; _ = bad.write_bytes(b"\\xff")
    >>> read_text(bad, "recipe x.jsonl")
    Traceback (most recent call last):
    ...
    banglaocr.errors.UserError: recipe x.jsonl is not UTF-8 text (byte 0); save it as UTF-8
    """
    from banglaocr.errors import UserError

    label = label or str(path)
    try:
        return Path(path).read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise UserError(f"{label} is not UTF-8 text (byte {err.start}); save it as UTF-8") from None
    except OSError as err:
        raise UserError(f"cannot read {label}: {err.strerror or err}") from None
