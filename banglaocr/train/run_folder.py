"""The output folder of a training run: marked as one, locked while it runs, never someone else's files.

- `run.json` is written first: it marks the folder as a banglaocr run (folders of earlier versions are
  recognised by `recipe.yaml` + `metrics.jsonl`).
- `.banglaocr.lock` is held with an OS file lock for the whole run (released on exit and when the
  process dies, whatever the cause): a second run into the same folder is refused at once.
- A non-empty folder that is not a banglaocr run is refused (`--overwrite` writes into it anyway); a folder
  that holds only synthetic data rendered for the run (`synth-*/synth.json`) is not "non-empty";
  a finished or stopped run is continued with `--resume auto`, or replaced with `--overwrite`.
- A run that failed before it trained - no checkpoint, no completed step, no final model (bad data, the hub
  offline, a model that does not load) - is not a run to protect: the corrected command starts it again
  without `--overwrite` (`failed_start`). Nothing of a run that completed a step is ever removed that way.

>>> import tempfile, pathlib
>>> folder = pathlib.Path(tempfile.mkdtemp()) / "run"
>>> lock = claim_run_folder(folder, resuming=False, overwrite=False)
>>> sorted(p.name for p in folder.iterdir())
['.banglaocr.lock', 'run.json']
>>> claim_run_folder(folder, resuming=True, overwrite=False)
Traceback (most recent call last):
...
banglaocr.errors.UserError: ... is in use by another training run (process ...); wait for it to finish or choose another --output-dir
>>> lock.release()
"""

from __future__ import annotations

import fcntl
import os
import shutil
import sys
import time
from pathlib import Path

from banglaocr.errors import UserError, filesystem_error
from banglaocr.files import write_json

RUN_FILE = "run.json"
LOCK_FILE = ".banglaocr.lock"
RUN_OUTPUTS = ("checkpoints", "best", "final", "metrics.jsonl", "summary.json", "test_predictions.jsonl",
               "curves.png", "tensorboard", "recipe.yaml")
"""What a run writes (and `--overwrite` removes); rendered synthetic data is kept for reuse."""


class RunFolderLock:
    """The OS lock on a run folder; `release()` (or the process ending) frees it."""

    def __init__(self, handle, path: Path):
        self._handle = handle
        self.path = Path(path)
        self.restarted = False  # the folder held a run that failed before it trained (`failed_start`)

    def in_place(self) -> bool:
        """Whether the lock file we hold is still the one at its path: False once the run folder was removed,
        moved or replaced (a bind mount over it, read-only or not, shows the same file)."""
        if self._handle is None:
            return False
        try:
            here = os.stat(self.path)
        except OSError:
            return False
        held = os.fstat(self._handle.fileno())
        if (here.st_dev, here.st_ino) == (held.st_dev, held.st_ino):
            return True
        try:  # some file systems (overlayfs) number an open file apart from its path: it holds our process id
            return self.path.read_text(encoding="utf-8").strip() == str(os.getpid())
        except (OSError, ValueError):
            return False

    def release(self) -> None:
        if self._handle is not None:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            try:
                self._handle.close()
            except OSError:  # the process id it holds could not be written (a full disk): nothing is lost
                pass
            self._handle = None


def is_run_folder(folder: Path) -> bool:
    """A banglaocr training output folder (this version's `run.json`, or an earlier version's files)."""
    return (folder / RUN_FILE).is_file() or ((folder / "recipe.yaml").is_file() and (folder / "metrics.jsonl").is_file())


def failed_start(folder: Path) -> bool:
    """Whether the run in `folder` stopped before it trained: no checkpoint (not even one cut short), no
    final/ or summary, no metrics row of a completed step, and a best/ (if any) of step 0 only - the starting
    model scored by `eval.before_training`. What such a start wrote (`run.json`, `recipe.yaml`, an empty
    log) can go: the same command makes it again. Anything unreadable counts as trained (never removed).

    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "run.json").write_text("{}"); _ = (folder / "recipe.yaml").write_text("{}")
    >>> failed_start(folder)
    True
    >>> _ = (folder / "metrics.jsonl").write_text('{"step": 1, "loss": 2.0, "lr": 0.001}\\n')
    >>> failed_start(folder)
    False
    """
    import json

    checkpoints = folder / "checkpoints"
    if checkpoints.exists() and (not checkpoints.is_dir() or any(checkpoints.iterdir())):
        return False
    if any((folder / name).exists() for name in ("final", "summary.json", "test_predictions.jsonl", "curves.png")):
        return False
    try:
        if (folder / "best").exists():
            if json.loads((folder / "best" / "best_step.json").read_text(encoding="utf-8")).get("step") != 0:
                return False
        metrics = folder / "metrics.jsonl"
        lines = metrics.read_text(encoding="utf-8").splitlines() if metrics.exists() else []
        return all(json.loads(line).get("step") == 0 for line in lines if line.strip())
    except (OSError, ValueError, AttributeError):  # unreadable, not JSON, not an object: keep it
        return False


def claim_run_folder(folder: Path, resuming: bool, overwrite: bool) -> RunFolderLock:
    """Create `folder` if needed, lock it, refuse what must not be overwritten, mark it as a run.
    The lock's `restarted` says whether it held a run that had failed before it trained (`failed_start`),
    whose files were removed to start it again."""
    folder = Path(folder)
    _create(folder)
    had_lock_file = (folder / LOCK_FILE).exists()
    lock = _lock(folder)
    try:
        # Synthetic data rendered into the folder (a folder with synth.json) is the run's own input.
        others = sorted(p.name for p in folder.iterdir()
                        if p.name != LOCK_FILE and not (p / "synth.json").is_file())
        if others and not is_run_folder(folder) and not overwrite:
            shown = ", ".join(others[:5]) + (", ..." if len(others) > 5 else "")
            raise UserError(f"{folder} is not empty and is not a banglaocr run folder (it holds {shown}); "
                            "choose a new --output-dir, or pass --overwrite to write into it anyway")
        restarted = False
        if is_run_folder(folder) and not resuming:
            restarted = failed_start(folder)
            if not overwrite and not restarted:
                raise UserError(f"{folder} already holds a training run; continue it with --resume auto, "
                                "replace it with --overwrite, or choose another --output-dir")
            _remove_run_outputs(folder)
            if restarted:  # the new start's own mark (its command and time)
                (folder / RUN_FILE).unlink(missing_ok=True)
        if not (folder / RUN_FILE).is_file():
            write_json(folder / RUN_FILE, {"tool": "banglaocr", "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                           "command": sys.argv})
    except OSError as err:
        lock.release()
        raise filesystem_error(err, getattr(err, "filename", None) or folder / RUN_FILE) from None
    except BaseException:
        lock.release()
        if not had_lock_file:  # a refused folder is left exactly as it was
            (folder / LOCK_FILE).unlink(missing_ok=True)
        raise
    lock.restarted = restarted
    return lock


def _create(folder: Path) -> None:
    if folder.exists() and not folder.is_dir():
        raise UserError(f"--output-dir {folder} is a file, not a folder; choose another --output-dir")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        failed = filesystem_error(err, folder, what="the output folder")
        raise failed.changed(verb="create", remedy=f"{failed.remedy}, or choose another --output-dir") from None


def _lock(folder: Path) -> RunFolderLock:
    try:
        handle = open(folder / LOCK_FILE, "a+", encoding="utf-8")
    except OSError as err:
        failed = filesystem_error(err, folder / LOCK_FILE)
        raise failed.changed(remedy=f"{failed.remedy}, or choose another --output-dir") from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise UserError(f"{folder} is in use by another training run (process {holder}); wait for it to "
                        "finish or choose another --output-dir") from None
    lock = RunFolderLock(handle, folder / LOCK_FILE)
    try:  # who holds it, for the message of a second run (a full disk may refuse even these few bytes)
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
    except OSError as err:
        lock.release()
        raise filesystem_error(err, folder / LOCK_FILE) from None
    return lock


def _remove_run_outputs(folder: Path) -> None:
    """--overwrite of a run folder: what the previous run wrote goes (its rendered data stays)."""
    for name in RUN_OUTPUTS:
        path = folder / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
