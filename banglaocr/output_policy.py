"""What a command may write over: one rule for every `--out` (predict, eval, merge-lora; train's run folder,
`train/run_folder.py`, follows it too).

1. Nothing there yet, an empty file or an empty folder: written.
2. What banglaocr wrote, known by its marker: predict's rows file (its sidecar `FILE.banglaocr.json`
   naming the command, the format and the model, and rows that parse), eval's folder (its
   `summary.json`). The next run of the same command replaces it.
   A model folder (merge-lora's `merge.json`, train's `run.json`) is replaced only with `--overwrite`
   even then: it took a run to make.
3. Anything else - a user's file, a folder holding other files, another command's output: refused in
   one line (exit 2) and left exactly as it was, unless `--overwrite` is given (merge-lora's `--force`
   is the same flag).
4. Never, flag or not: a FIFO, socket or block device where a result file goes (opening a FIFO blocks
   until someone reads it), a folder where a file goes or a file where a folder goes; and for a folder
   that is replaced as a whole: the current folder or one above it, the home folder, or a folder that
   is or holds the command's own input.

A character device (`/dev/null`, a terminal) is a stream: predict writes to it as it would to stdout.
Nothing here writes; every check is done before a model is loaded.

>>> import tempfile, pathlib
>>> mine = pathlib.Path(tempfile.mkdtemp()) / "notes.txt"
>>> _ = mine.write_text("my notes")
>>> claim_file(mine, "predict", overwrite=False, is_ours=lambda path, marker: True)  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
banglaocr.errors.UserError: --out ... exists and banglaocr predict did not write it (no notes.txt.banglaocr.json ...
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path
from typing import Callable

from banglaocr.errors import UserError, filesystem_error
from banglaocr.files import mode_kind

OVERWRITE_FLAG = "--overwrite"
MARKER_SUFFIX = ".banglaocr.json"
"""The sidecar that marks a results file as banglaocr's: `rows.jsonl` -> `rows.jsonl.banglaocr.json`."""
MARKER_MAX_BYTES = 1 << 20


def path_kind(path: Path, option: str = "--out") -> str | None:
    """What is at `path` (symlinks followed): 'file', 'folder', 'character device', 'FIFO', 'socket',
    'block device', 'broken symlink', or None when nothing is. A symlink loop is one `UserError`."""
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return "broken symlink" if os.path.islink(path) else None
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise UserError(f"{option} {path} is a symlink loop; choose another {option}") from None
        raise UserError(f"cannot check {option} {path}: {err.strerror or err}") from None
    kind = mode_kind(mode)
    return "file" if kind == "regular file" else kind


def refuse_special(path: Path, kind: str, option: str = "--out") -> None:
    """Refuse a FIFO, socket, block device or broken symlink where a result file is written."""
    why = "writing to it would block until something reads it" if kind == "FIFO" else "it is no regular file"
    raise UserError(f"{option} {path} is a {kind}: {why}; choose a regular file (or a new name) for {option}")


def read_marker(path: Path, command: str) -> dict | None | bool:
    """The sidecar marker at `path`: its content when `banglaocr {command}` wrote it, None when there is
    none, False when something else is there (a user's file, another command's marker). Read-only."""
    kind = path_kind(path)
    if kind is None:
        return None
    if kind != "file" or path.stat().st_size > MARKER_MAX_BYTES:
        return False
    try:
        marker = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, ValueError):
        return False
    return marker if isinstance(marker, dict) and marker.get("written_by") == f"banglaocr {command}" else False


def marker_path(path: Path) -> Path:
    return path.with_name(path.name + MARKER_SUFFIX)


def claim_file(path: Path, command: str, *, overwrite: bool, is_ours: Callable[[Path, dict], bool],
               option: str = "--out") -> tuple[str, dict | None]:
    """May `command` write the results file `path`? ('new' | 'ours' | 'overwrite' | 'stream', its marker).

    'ours': its sidecar marker is `command`'s and `is_ours(path, marker)` (the rows parse) - replaced by a
    new run, continued by --resume. 'overwrite': someone else's, and `overwrite` was given. 'stream': a
    character device. Anything else is one `UserError`; nothing is written."""
    kind = path_kind(path, option)
    if kind == "character device":
        return "stream", None
    if kind == "folder":
        raise UserError(f"{option} {path} is a folder; give a file name")
    if kind not in (None, "file"):
        refuse_special(path, kind, option)
    sidecar = marker_path(path)
    marker = read_marker(sidecar, command)
    if marker is False and path_kind(sidecar, option) not in (None, "file"):
        refuse_special(sidecar, path_kind(sidecar, option), option)
    if kind is not None and marker and is_ours(path, marker):
        return "ours", marker
    foreign = [p for p, there in ((path, kind is not None and path.stat().st_size > 0), (sidecar, marker is False))
               if there]
    if not foreign:
        return "new", None
    if overwrite:
        return "overwrite", None
    raise UserError(foreign_file_line(path, command, option, foreign[0], marked=bool(marker)))


def foreign_file_line(path: Path, command: str, option: str, culprit: Path, marked: bool = False) -> str:
    """The one line that refuses a results file `command` did not write (`marked`: its marker is there,
    but the content is not what `command` writes)."""
    sidecar = marker_path(path)
    if culprit == sidecar:
        why = f"{sidecar} exists and is not banglaocr {command}'s marker"
    elif marked:
        why = f"{path} holds lines banglaocr {command} did not write (though {sidecar.name} is beside it)"
    else:
        why = f"{path} exists and banglaocr {command} did not write it (no {sidecar.name} beside it)"
    return (f"{option} {why}; it is left as it is: choose another {option}, or pass {OVERWRITE_FLAG} "
            "to replace it")


def claim_folder(folder: Path, command: str, files: tuple[str, ...], *, overwrite: bool,
                 is_ours: Callable[[Path], bool], option: str = "--out") -> str:
    """May `command` write `files` into `folder`? 'new' (missing or empty), 'ours' or 'overwrite'.

    A folder that holds other files and is not `command`'s (`is_ours`) is refused unless `overwrite`;
    with it, `files` are written into it and nothing else there is touched. One of `files` that is
    not a regular file (a FIFO, a folder) is refused either way. Nothing is written."""
    kind = path_kind(folder, option)
    if kind is None:
        return "new"
    if kind != "folder":
        raise UserError(f"{option} {folder} is a {kind}, not a folder; choose another {option}")
    for name in files:
        inner = path_kind(folder / name, option)
        if inner not in (None, "file"):
            raise UserError(f"{option} {folder}: {folder / name} is a {inner}, not a regular file; banglaocr "
                            f"{command} writes its results there - remove it, or choose another {option}")
    try:
        held = sorted(entry.name for entry in os.scandir(folder))
    except OSError as err:
        raise UserError(f"cannot read {option} {folder}: {err.strerror or err}") from None
    if not held:
        return "new"
    if is_ours(folder):
        return "ours"
    if overwrite:
        return "overwrite"
    shown = ", ".join(held[:5]) + (", ..." if len(held) > 5 else "")
    raise UserError(f"{option} {folder} is not empty and is not a banglaocr {command} folder (it holds {shown}); "
                    f"it is left as it is: choose a new {option}, or pass {OVERWRITE_FLAG} to write "
                    f"{' and '.join(files)} into it")


def _resolved(path: Path, option: str) -> Path:
    try:
        return path.resolve()
    except (RuntimeError, OSError):  # Python 3.11 raises RuntimeError on a symlink loop
        raise UserError(f"{option} {path} is a symlink loop; choose another {option}") from None


def refuse_replacing_inputs(out: Path, inputs: dict[str, Path | None], option: str = "--out") -> None:
    """A folder replaced as a whole (its old content deleted) must not hold what the command reads, nor
    the current folder, nor the home folder: one `UserError` naming which."""
    target = _resolved(out, option)
    for name, source in inputs.items():
        if source is None or not os.path.lexists(source):
            continue
        source = _resolved(source, option)
        if source == target or target in source.parents:
            raise UserError(f"{option} {out} would replace the {name} folder {source}: choose another folder")
    here = Path.cwd().resolve()
    if target == here or target in here.parents:
        raise UserError(f"{option} {out} is the current folder or holds it: replacing it would delete what is in "
                        f"it; choose a new folder for {option}")
    home = Path.home().resolve() if "HOME" in os.environ else None
    if home is not None and target == home:
        raise UserError(f"{option} {out} is the home folder; choose a new folder for {option}")


def claim_model_folder(out: Path, command: str, inputs: dict[str, Path | None], *, overwrite: bool,
                       is_ours: Callable[[Path], bool], option: str = "--out") -> str:
    """May `command` put a model folder at `out` (replacing what is there as a whole)? 'new' or 'overwrite'.

    Never over its own `inputs`, the current folder, the home folder, or a file. An existing folder,
    even one banglaocr wrote (`is_ours`), is replaced only with `overwrite`. Nothing is written."""
    refuse_replacing_inputs(out, inputs, option)
    kind = path_kind(out, option)
    if kind is None:
        return "new"
    if kind != "folder":
        raise UserError(f"{option} {out} is a {kind}, expected a folder; choose another {option}")
    if overwrite:
        return "overwrite"
    if is_ours(out):
        raise UserError(f"{out} already exists (an earlier banglaocr {command}): choose another {option}, or pass "
                        f"{OVERWRITE_FLAG} (or --force) to replace it")
    if not any(os.scandir(out)):
        return "new"
    raise UserError(f"{out} already exists and is not a banglaocr {command} folder; it is left as it is: choose "
                    f"another {option}, or pass {OVERWRITE_FLAG} (or --force) to replace it and all it holds")


def write_error_line(path: Path | str, err: OSError, option: str = "--out") -> str:
    """One line for an `OSError` while writing `path`: `errors.filesystem_error`'s wording (full disk and
    permissions told apart), with the remedy of an output the user chose: another `option`.

    >>> write_error_line("/mnt/ro/rows.jsonl", OSError(errno.EROFS, "Read-only file system"))
    'cannot write /mnt/ro/rows.jsonl: the file system is read-only; choose a writable --out'
    """
    line = filesystem_error(err, path)
    if line.code in (errno.EACCES, errno.EPERM, errno.EROFS):
        line = line.changed(remedy=f"choose a writable {option}")
    return str(line)
