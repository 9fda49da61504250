"""The run's clock: a time limit (`train.time_limit`, or a Kaggle session's end) and durations as h:mm:ss.

A run with a time limit saves a checkpoint and stops cleanly before the deadline (exit code 0, with the
exact `--resume auto` command), instead of being killed mid-step and losing everything since its last
checkpoint. On Kaggle (`KAGGLE_KERNEL_RUN_TYPE` is set) the limit defaults to the session's end: 12 hours
(9 with a TPU) after the session started, less a safety margin.

>>> parse_duration("11h30m"), parse_duration("90s"), parse_duration("45m"), parse_duration("2h")
(41400.0, 90.0, 2700.0, 7200.0)
>>> format_duration(3725.4), format_duration(59)
('1:02:05', '0:00:59')
"""

from __future__ import annotations

import os
import re
import time

from banglaocr.errors import UserError

KAGGLE_SESSION_S = 12 * 3600.0
KAGGLE_TPU_SESSION_S = 9 * 3600.0
KAGGLE_MARGIN_S = 15 * 60.0
"""Stop this long before a Kaggle session's end: the last checkpoint and the output upload need time."""

_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?$")


def parse_duration(text: str) -> float:
    """`11h30m`, `45m`, `90s`, `1h5m30s` or plain seconds -> seconds (> 0)."""
    value = str(text).strip().lower().replace(" ", "")
    if re.fullmatch(r"\d+(?:\.\d+)?", value):
        seconds = float(value)
    else:
        match = _DURATION.match(value)
        if not value or match is None or not any(match.groups()):
            raise UserError(f"train.time_limit: '{text}' is not a duration (e.g. 11h30m, 45m, 90s)")
        hours, minutes, secs = (float(part) if part else 0.0 for part in match.groups())
        seconds = hours * 3600 + minutes * 60 + secs
    if seconds <= 0:
        raise UserError(f"train.time_limit: '{text}' must be longer than 0 s")
    return seconds


def format_duration(seconds: float) -> str:
    """h:mm:ss."""
    seconds = int(round(max(seconds, 0.0)))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _session_start() -> float:
    """When this machine's session began: the start of process 1 (the container's first process)."""
    try:
        import psutil

        return psutil.Process(1).create_time()
    except Exception:  # no psutil, no /proc: count from now, the cautious side
        return time.time()


def deadline(time_limit: str | None, started: float, environ=os.environ) -> tuple[float | None, str]:
    """(the wall-clock time to be done by, or None; a line saying where it comes from)."""
    if time_limit is not None:
        limit = parse_duration(time_limit)
        return started + limit, f"time limit {format_duration(limit)} (train.time_limit)"
    if environ.get("KAGGLE_KERNEL_RUN_TYPE"):
        session = KAGGLE_TPU_SESSION_S if environ.get("TPU_NAME") else KAGGLE_SESSION_S
        end = _session_start() + session - KAGGLE_MARGIN_S
        return end, (f"Kaggle session: stopping by {time.strftime('%H:%M', time.localtime(end))} "
                     f"({format_duration(session / 1)} session less {format_duration(KAGGLE_MARGIN_S)}; "
                     "set train.time_limit to change it)")
    return None, ""
