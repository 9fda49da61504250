"""Hostile disks for `banglaocr train`: a small file system filled step by step, an output folder made
read-only or removed while the run writes, a metrics.jsonl whose last line was cut short.

Everything is made by code at test time:

- `small_disk(size)`: a tmpfs of `size` bytes mounted on a fresh folder (root only; unmounted on exit);
  `fill(mount, leave)` puts a filler file on it that takes all but `leave` bytes.
- `watch_writes(out, ...)`: an audit hook that records every file opened for writing under `out` with
  how full the disk was at that moment (a trace) - or makes the n-th of them fail with an errno, the
  stand-in for a full disk where no tmpfs can be mounted (Python-level opens only: what Rust extensions
  write is not seen).
- `write_points(trace, start)`: from a trace, the amounts of free space at which each write is the one
  that fails - the levels a full-disk sweep steps through - each with the file it hits.
- `after_step(step, action, out)`: right after the log row of `step`, remove the output folder,
  bind-mount it read-only over itself, or fill its disk to the last byte.
- `train_command(out, overrides, hook)`: `banglaocr train ...` in a child process that runs `hook`
  (a line of Python calling the functions above) before the command.
- `read_only(folder)`: a read-only bind mount of `folder` over itself (root ignores chmod; a read-only
  mount stops root too: EROFS).
- `tear_last_line(path)`: append the first bytes of a row, as an interrupted append leaves them.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterator

PAGE = 4096
"""tmpfs hands out space in pages: free space and the filler are counted in whole pages."""
TESTS = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- mounts


def can_mount() -> bool:
    """Whether this process may mount file systems (root, and a kernel that lets it: not every container)."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    try:
        with small_disk(64 * 1024):
            return True
    except (OSError, subprocess.CalledProcessError):
        return False


@contextlib.contextmanager
def small_disk(size: int) -> Iterator[Path]:
    """A tmpfs of `size` bytes on a new folder; unmounted (and the folder removed) on exit, whatever happened."""
    mount = Path(tempfile.mkdtemp(prefix="banglaocr-small-disk-"))
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)], check=True,
                       capture_output=True)
        try:
            yield mount
        finally:
            unmount_all(mount)
    finally:
        with contextlib.suppress(OSError):
            mount.rmdir()


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[Path]:
    """`folder` bind-mounted read-only over itself while the block runs (writes fail with EROFS, for root too)."""
    bind_read_only(folder)
    try:
        yield folder
    finally:
        unmount_all(folder)


def bind_read_only(folder: Path) -> None:
    subprocess.run(["mount", "--bind", str(folder), str(folder)], check=True, capture_output=True)
    subprocess.run(["mount", "-o", "remount,ro,bind", str(folder)], check=True, capture_output=True)


def unmount_all(folder: Path) -> None:
    """Unmount every mount stacked on `folder` (a hook in a child process may have left one). `os.path.ismount`
    does not see a bind mount of a folder over itself (same device): /proc/self/mounts does."""
    target = os.path.realpath(folder)
    for _ in range(8):
        with open("/proc/self/mounts", encoding="utf-8") as mounts:
            points = [line.split()[1].replace("\\040", " ") for line in mounts]
        if target not in points:
            return
        subprocess.run(["umount", "-l", target], check=False, capture_output=True)


def used(mount: Path) -> int:
    """Bytes in use on the file system of `mount`."""
    stats = os.statvfs(mount)
    return (stats.f_blocks - stats.f_bfree) * stats.f_frsize


def free(mount: Path) -> int:
    stats = os.statvfs(mount)
    return stats.f_bavail * stats.f_frsize


def fill(mount: Path, leave: int = 0) -> Path:
    """A filler file on `mount` that takes all but `leave` bytes (rounded down to whole pages)."""
    filler = mount / "filler"
    size = max(0, free(mount) - leave) // PAGE * PAGE
    with filler.open("ab") as handle:
        if size:
            os.posix_fallocate(handle.fileno(), handle.tell(), size)
    return filler


# --------------------------------------------------------------------------- which files a run writes

_WATCH: dict = {"out": None}
"""The one watch of this process (an audit hook cannot be removed, so one hook serves every watch)."""


def _written_path(args: tuple, out: str) -> str | None:
    """The path of an "open" audit event that opens a file for writing under `out`, else None."""
    path, mode, flags = (list(args) + [None, None, None])[:3]
    if path is None or isinstance(path, int):
        return None
    path = os.path.abspath(os.fsdecode(path))
    if path != out and not path.startswith(out + os.sep):
        return None
    writes = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
        isinstance(flags, int) and bool(flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)))
    return path if writes else None


def _audit(event: str, args: tuple) -> None:
    watch = _WATCH
    if event != "open" or watch["out"] is None:
        return
    path = _written_path(args, watch["out"])
    if path is None:
        return
    watch["count"] += 1
    watch["rows"].append({"path": os.path.relpath(path, watch["out"]),
                          "used": used(Path(watch["mount"])) if watch["mount"] else None})
    if watch["fail_at"] is not None and watch["count"] >= watch["fail_at"]:
        raise OSError(watch["code"], os.strerror(watch["code"]), path)


@contextlib.contextmanager
def watch_writes(out: Path, mount: Path | None = None, fail_at: int | None = None,
                 code: int = errno.ENOSPC) -> Iterator[list[dict]]:
    """While the block runs, every file opened for writing under `out` adds a trace row {"path", "used"} to the
    yielded list (`path` inside `out`; `used`: bytes in use on `mount` then, None without one); with `fail_at`,
    the open of that number (1-based) and every later one fails with `code` (ENOSPC: a disk that stays full)."""
    if not _WATCH.get("installed"):
        sys.addaudithook(_audit)
        _WATCH["installed"] = True
    rows: list[dict] = []
    _WATCH.update(out=os.path.abspath(out), mount=str(mount) if mount else None, fail_at=fail_at, code=code,
                  count=0, rows=rows)
    try:
        yield rows
    finally:
        _WATCH["out"] = None


def trace_to_file(out: str, mount: str, trace: str) -> None:
    """In a child process: watch `out` for the whole process and write the trace to `trace` at exit, with a
    last row of how full the disk was then (`train_command`'s hook)."""
    context = watch_writes(Path(out), Path(mount))
    rows = context.__enter__()
    _WATCH["held"] = context  # kept: a context manager that is collected runs its exit (the watch would end)

    def save() -> None:
        rows.append({"path": "<exit>", "used": used(Path(mount))})
        Path(trace).write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")

    atexit.register(save)


def fail_writes_from(out: str, nth: int, code: int = errno.ENOSPC) -> None:
    """In a child process: the `nth` file opened for writing under `out`, and every later one, fails with `code`."""
    context = watch_writes(Path(out), fail_at=nth, code=code)
    context.__enter__()
    _WATCH["held"] = context  # kept, as in trace_to_file


def write_points(trace: list[dict], start: int, limit: int | None = None) -> list[tuple[int, str]]:
    """(free-space level, the file whose write it fails) for each write a full disk can stop: level K (bytes
    free when the run starts, `start` bytes in use then) fails the first write that needs more than K.

    The write opened at trace row i fills the disk from row i's use to row i + 1's; it is the one that fails
    for K in [the most in use before it, what it reached) - one level from each such range that spans a
    page (tmpfs counts pages). At most `limit` levels, one per kind of file (`file_kind`) first, then spread
    over the run."""
    uses = [row["used"] - start for row in trace]
    found: dict[int, str] = {}
    peak = 0
    for row, before, after in zip(trace, uses, uses[1:]):
        peak = max(peak, before)
        if after - peak >= PAGE:
            found.setdefault((peak + (after - peak) // 2) // PAGE * PAGE, row["path"])
    points = sorted(found.items())
    if limit is None or len(points) <= limit:
        return points
    by_kind: dict[str, tuple[int, str]] = {}
    for level, path in points:
        by_kind.setdefault(file_kind(path), (level, path))
    chosen = sorted(by_kind.values())
    if len(chosen) > limit:
        chosen = [chosen[round(i * (len(chosen) - 1) / (limit - 1))] for i in range(limit)]
    rest = [point for point in points if point not in chosen]
    while len(chosen) < limit and rest:
        chosen.append(rest.pop(len(rest) // 2))
    return sorted(set(chosen))


def file_kind(path: str) -> str:
    """What a written file of a run is (`path` inside the run folder, as traced), without the names that change
    from run to run (temporary names, step numbers, image numbers, the event file's time and host):
    `checkpoints/step/model/config.json`, `best/README.md`, `tensorboard/events`, `metrics.jsonl`."""
    name = re.sub(r"(^|/)\.tmp-", r"\1", path)
    name = re.sub(r"(^|/)\.([^/]+)\.[0-9a-f]{8}\.tmp$", r"\1\2", name)
    name = re.sub(r"step-\d+", "step", name)
    name = re.sub(r"/\d+\.png$", "/N.png", name)
    return re.sub(r"events\.out\.tfevents\..*$", "events", name)


def read_trace(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


# --------------------------------------------------------------------------- the output folder while a run writes


def after_step(step: int, action: str, out: Path):
    """Make the run's output folder `out` hostile right after the log row of `step` is written: "remove" it,
    "read-only" (a read-only bind mount over it), or "fill" its disk to the last byte. Patches
    `MetricsLog.write` in this process; returns the function that undoes the patch."""
    from banglaocr.train.progress import MetricsLog

    assert action in ("remove", "read-only", "fill"), action
    original = MetricsLog.write

    def act() -> None:
        if action == "remove":
            shutil.rmtree(out)
        elif action == "read-only":
            bind_read_only(out)
        else:
            fill(Path(out).parent)

    def write(self, row: dict) -> None:
        original(self, row)
        if row["step"] == step and "samples_per_s" in row:
            act()

    MetricsLog.write = write
    return lambda: setattr(MetricsLog, "write", original)


def train_command(out: Path, overrides: list[str], hook: str | None = None, resume: bool = False) -> list[str]:
    """`banglaocr train --recipe cpu_demo -o OUT OVERRIDES... [--resume auto]` as a child process command that
    first runs `hook`, a line of Python with this module imported as `disk` (e.g.
    `disk.after_step(3, 'remove', out)`)."""
    prelude = "import sys; sys.argv[0] = 'banglaocr'; "
    if hook is not None:
        prelude += f"sys.path.insert(0, {str(TESTS)!r}); from hostile_round2 import disk; {hook}; "
    prelude += "from banglaocr.cli import main; main()"
    return [sys.executable, "-c", prelude, "train", "--recipe", "cpu_demo", "-o", str(out), *overrides,
            *(["--resume", "auto"] if resume else [])]


# --------------------------------------------------------------------------- a torn metrics.jsonl


def tear_last_line(path: Path, keep: int = 17) -> bytes:
    """Append the first `keep` bytes of a copy of the last row (no newline): what an append cut short by a kill
    or a full disk leaves. Returns the bytes appended."""
    last = [line for line in Path(path).read_bytes().splitlines() if line.strip()][-1]
    torn = last[:keep]
    with Path(path).open("ab") as handle:
        handle.write(torn)
    return torn
