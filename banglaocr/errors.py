"""The one error type users see: a clear message and an exit code, never a traceback.

Library code raises `UserError` for bad input (a broken recipe, a missing file, a
renderer without Bangla shaping); the CLI prints its message on one line and exits
with `exit_code`. A write the file system refuses (a full disk, a permission, a read-only or vanished
folder) is one too: `filesystem_error` / `writing` turn the `OSError` and the path into the line that says
which of those it was and what to do - every writer uses them.

>>> err = UserError("data.source: no such folder 'x'")
>>> err.exit_code
2
"""

from __future__ import annotations

import contextlib
import errno
import re
from pathlib import Path
from typing import Iterator


class UserError(Exception):
    """Bad input from the user: shown as one line, exit code 2 unless told otherwise."""

    def __init__(self, message: str, exit_code: int = 2):
        super().__init__(message)
        self.exit_code = exit_code


def first_line(err: BaseException) -> str:
    """The first line of an exception's message (its type name when it has none), for one-line errors.

    >>> first_line(OSError("offline\\nlong details")), first_line(ValueError())
    ('offline', 'ValueError')
    """
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


# --------------------------------------------------------------------------- the file system said no

_OS_ERROR_IN_TEXT = re.compile(r"\(os error (\d+)\)|Os \{ code: (\d+)")
"""How Rust extensions (safetensors, tokenizers) spell the OS error inside their own exception's text."""

_WHAT_HAPPENED = {
    errno.ENOSPC: ("no space left on the device", "free some disk space"),
    errno.EDQUOT: ("the disk quota is used up", "free some disk space (or ask for a larger quota)"),
    errno.EACCES: ("permission denied", "fix the permissions of {folder} (it must be writable by you)"),
    errno.EPERM: ("operation not permitted", "fix the permissions of {folder} (it must be writable by you)"),
    errno.EROFS: ("the file system is read-only", "make {folder} writable again (remount it read-write)"),
    errno.ENOENT: ("its folder {folder} no longer exists (removed while in use?)", "recreate {folder}"),
    errno.ENOTDIR: ("a file stands where a folder of its path should be", "remove that file or recreate {folder}"),
    errno.EFBIG: ("the file is too large for this file system", "use a file system that holds larger files"),
    errno.EIO: ("the device reported an input/output error", "check the disk (dmesg) or use another one"),
}


def os_error_code(err: BaseException) -> int | None:
    """The errno behind `err`: an `OSError`'s own, or the one a Rust extension (safetensors, tokenizers) put in
    its message; None when `err` is not about the file system.

    >>> os_error_code(OSError(errno.ENOSPC, "No space left on device")) == errno.ENOSPC
    True
    >>> os_error_code(Exception("Error while serializing: I/O error: No space left on device (os error 28)"))
    28
    >>> os_error_code(ValueError("a bug")) is None
    True
    """
    if isinstance(err, OSError):
        return err.errno if err.errno is not None else -1
    found = _OS_ERROR_IN_TEXT.search(str(err))
    return int(found.group(1) or found.group(2)) if found else None


class FilesystemError(UserError):
    """A file-system operation refused, as one line: "cannot write [what] PATH: what happened; what to do[,
    then ...]" (`filesystem_error` makes it). `then` is what the user does after the fix (the command that
    continues the work); `verb` is "write" for outputs, "use" for paths that may be inputs."""

    def __init__(self, path: Path | str, code: int | None, problem: str, remedy: str, then: str = "",
                 what: str = "", verb: str = "write"):
        named = f"{what} {path}" if what else str(path)
        super().__init__(f"cannot {verb} {named}: {problem}; {remedy}" + (f", then {then}" if then else ""))
        self.path, self.code, self.problem, self.remedy = Path(path), code, problem, remedy
        self.then, self.what, self.verb = then, what, verb

    def changed(self, **changes) -> FilesystemError:
        """A copy with some parts replaced (`then`, `remedy`, `what`, ...)."""
        parts = dict(path=self.path, code=self.code, problem=self.problem, remedy=self.remedy, then=self.then,
                     what=self.what, verb=self.verb)
        return FilesystemError(**{**parts, **changes})

    def followed_by(self, then: str) -> FilesystemError:
        """The same error with what to do after the fix (kept when it already says so)."""
        return self if self.then or not then else self.changed(then=then)


def filesystem_error(err: BaseException, path: Path | str, then: str = "", what: str = "",
                     verb: str = "write") -> FilesystemError:
    """The one line for `err` (an `OSError`, or an extension's error carrying an OS error) while writing `path`
    (`what` names it: "checkpoint"): a full disk, a permission or a read-only file system told apart, each
    with what to do.

    >>> print(filesystem_error(OSError(errno.ENOSPC, "No space left on device"), "/runs/a/metrics.jsonl",
    ...                        then="continue with --resume auto"))
    cannot write /runs/a/metrics.jsonl: no space left on the device; free some disk space, then continue with --resume auto
    >>> print(filesystem_error(PermissionError(errno.EACCES, "Permission denied"), "/runs/a/best"))
    cannot write /runs/a/best: permission denied; fix the permissions of /runs/a (it must be writable by you)
    """
    code = os_error_code(err)
    path = Path(path)
    folder = path.parent if path.parent != path else path
    if code in _WHAT_HAPPENED:
        problem, remedy = _WHAT_HAPPENED[code]
    else:
        detail = err.strerror if isinstance(err, OSError) and err.strerror else first_line(err)
        problem, remedy = " ".join(str(detail).split())[:160], "check the disk and the folder {folder}"
    return FilesystemError(path, code, problem.format(folder=folder), remedy.format(folder=folder), then, what, verb)


@contextlib.contextmanager
def writing(path: Path | str, then: str = "") -> Iterator[None]:
    """Turn a file-system error raised inside the block (while writing `path`) into `filesystem_error`'s one
    line; any other exception (a bug) passes unchanged.

    >>> with writing("/runs/a/summary.json"):
    ...     raise OSError(errno.EROFS, "Read-only file system")
    Traceback (most recent call last):
    ...
    banglaocr.errors.FilesystemError: cannot write /runs/a/summary.json: the file system is read-only; make /runs/a writable again (remount it read-write)
    """
    try:
        yield
    except UserError:
        raise
    except Exception as err:
        if os_error_code(err) is None:
            raise
        raise filesystem_error(err, path, then) from None
