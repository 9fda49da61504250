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
import stat
from pathlib import Path
from typing import Callable, Iterator

from banglaocr.row_encoding import json_text


def current_umask() -> int:
    """This process's umask, read from /proc where there is one (setting it to read it, the only other way
    before Python 3.13, races with other threads creating files)."""
    try:
        for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def settle_modes(path: Path) -> None:
    """Give `path` - and, for a folder, everything below it - the mode `open()` / `mkdir()` give under the
    user's umask (0644 / 0755 with umask 022). Some writers create their files 0600 through a private
    temporary file of their own (safetensors' `save_file`, so every `save_pretrained`): a model folder
    written for others to read would be readable by its owner alone.

    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())  # mkdtemp makes it 0700
    >>> (folder / "model.safetensors").touch(mode=0o600)
    >>> settle_modes(folder)
    >>> [oct(p.stat().st_mode & 0o777) == oct(0o777 & ~current_umask() & (0o666 if p.is_file() else 0o777))
    ...  for p in (folder, folder / "model.safetensors")]
    [True, True]
    """
    umask = current_umask()
    path = Path(path)
    if path.is_symlink():  # a link's own mode means nothing; what it points to is not ours
        return
    if not path.is_dir():
        _chmod(path, 0o666 & ~umask)
        return
    for root, _, files in os.walk(path):  # links to folders are listed, never entered
        _chmod(root, 0o777 & ~umask)
        for name in files:
            if not os.path.islink(os.path.join(root, name)):
                _chmod(os.path.join(root, name), 0o666 & ~umask)


def _chmod(path, mode: int) -> None:
    try:
        os.chmod(path, mode)
    except OSError:  # a file system without modes (vfat, some network shares): nothing to settle there
        pass


def commit_folder(tmp: Path, final: Path) -> None:
    """Rename a finished temporary folder into place, replacing `final` if it exists; every file in it gets
    the mode the user's umask gives (`settle_modes`)."""
    settle_modes(tmp)
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
    a failed write leaves `path` as it was and no temporary file behind). The file gets the mode the user's
    umask gives, whatever `write` did to it (`settle_modes`)."""
    path = Path(path)
    tmp = _fresh_tmp_file(path)
    try:
        write(tmp)
        settle_modes(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json(path: Path, payload: dict) -> None:
    """`payload` as indented UTF-8 JSON at `path`, atomically (any file name inside it survives:
    `row_encoding.json_text`)."""
    atomic_write(path, lambda tmp: tmp.write_text(json_text(payload, indent=2) + "\n", encoding="utf-8"))


def read_text(path: Path, label: str | None = None, max_bytes: int | None = None) -> str:
    """A UTF-8 text file (a byte-order mark dropped). A file that cannot be read, is not UTF-8, is larger
    than `max_bytes` or is no regular file (a FIFO would block until something writes to it, a device
    never ends) is one `UserError` naming it as `label` (default: the path).

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
        # O_NONBLOCK: opening a FIFO for reading returns at once instead of waiting for a writer; it changes
        # nothing for a regular file. The kind is checked on the opened file, so it cannot change in between.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise UserError(f"cannot read {label}: no such file") from None
    except OSError as err:
        raise UserError(f"cannot read {label}: {err.strerror or err}") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise UserError(f"{label} is {file_kind(info.st_mode)}, not a regular file; give a file")
        if max_bytes is not None and info.st_size > max_bytes:
            raise UserError(f"{label} is {info.st_size / 2**20:.1f} MiB, more than the {max_bytes / 2**20:g} MiB "
                            "such a file can be; is it the right file?")
        try:
            data = handle.read()
        except OSError as err:
            raise UserError(f"cannot read {label}: {err.strerror or err}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise UserError(f"{label} is not UTF-8 text (byte {err.start}); save it as UTF-8") from None


FILE_KINDS = ((stat.S_ISREG, "regular file"), (stat.S_ISDIR, "folder"), (stat.S_ISFIFO, "FIFO"),
              (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"), (stat.S_ISSOCK, "socket"))
"""The kinds of file an `st_mode` can name, as messages call them."""


def mode_kind(mode: int) -> str:
    """What a `st_mode` is: 'regular file', 'folder', 'FIFO', ... ('special file' for anything else).

    >>> mode_kind(os.stat(".").st_mode)
    'folder'
    """
    return next((name for test, name in FILE_KINDS if test(mode)), "special file")


def file_kind(mode: int) -> str:
    """What a `st_mode` is, with its article, for messages: 'a folder', 'a FIFO', 'a character device', ...

    >>> file_kind(os.stat(".").st_mode)
    'a folder'
    """
    return f"a {mode_kind(mode)}"


def expand_home(path: str | Path, label: str) -> str | Path:
    """`path` with `~` and `~user` expanded (of the type it came as); a `~user` this machine has no such user
    for is one `UserError` naming `label` - pathlib would raise RuntimeError, os.path would leave the `~`
    for a confusing "not found" later.

    >>> expand_home("runs/x", "--out")
    'runs/x'
    >>> expand_home("~nosuchuser/x", "--model")
    Traceback (most recent call last):
    ...
    banglaocr.errors.UserError: --model ~nosuchuser/x: no such user for ~nosuchuser; give the folder itself
    """
    from banglaocr.errors import UserError

    text = os.fspath(path)
    if not text.startswith("~"):
        return path
    expanded = os.path.expanduser(text)
    if expanded.startswith("~"):  # os.path leaves a ~user it cannot find
        user = text.split(os.sep, 1)[0]
        raise UserError(f"{label} {text}: no such user for {user}; give the folder itself")
    return type(path)(expanded) if isinstance(path, Path) else expanded
