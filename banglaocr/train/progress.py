"""What a training run shows and writes: the live progress bar, metrics.jsonl, curves.png, the summary table.

`metrics.jsonl` has one JSON object per log or evaluation row: `step`, `loss`, `lr` always;
`samples_per_s` on log rows; `val_cer`, `val_wer`, `val_ger`, `val_exact_match`, ... on eval rows.
On resume the rows after the checkpoint's step are dropped, so the file never holds a step twice; a last
line cut short (a write interrupted by a kill or a full disk) is dropped with a note, and the file is
rewritten whole (atomically: a failure leaves it as it was).

>>> import tempfile, pathlib
>>> log = MetricsLog(pathlib.Path(tempfile.mkdtemp()) / "metrics.jsonl")
>>> log.write({"step": 1, "loss": 2.0, "lr": 0.1}); log.write({"step": 2, "loss": 1.5, "lr": 0.1})
>>> log.truncate_after(1); [row["step"] for row in log.rows()]
[1]
>>> with log.path.open("a") as handle:
...     _ = handle.write('{"step": 2, "lo')
>>> print(log.truncate_after(1)); [row["step"] for row in log.rows()]
dropped the last line of ... (cut short by an interrupted write: '{"step": 2, "lo')
[1]
"""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console

from banglaocr.errors import UserError, writing
from banglaocr.files import atomic_write
from banglaocr.live_display import wants_live_display  # noqa: F401 (also imported from here)
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Column, Table
from rich.text import Text


class MetricsLog:
    """Append-only JSON-lines log of training metrics; every file-system error is `writing`'s one line."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def write(self, row: dict) -> None:
        with writing(self.path), self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")

    def rows(self) -> list[dict]:
        """The rows (a torn last line left out: `read`)."""
        return self.read()[0]

    def read(self) -> tuple[list[dict], str | None]:
        """(the rows, a note when the last line was cut short and left out). Only the LAST line can be torn by
        an interrupted append; a bad line before it was edited by someone: one `UserError` naming it."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return [], None
        lines = data.split(b"\n")
        rows, note = [], None
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            row = _parse_row(line)
            if row is not None:
                rows.append(row)
            elif number == len(lines):  # no newline after it: the append that wrote it did not finish
                shown = line[:60].decode("utf-8", errors="replace")
                note = f"dropped the last line of {self.path} (cut short by an interrupted write: {shown!r})"
            else:
                raise UserError(f"{self.path} line {number} is not a metrics row (edited?); delete that line "
                                "(or the file: it is a log) and run again")
        return rows, note

    def truncate_after(self, step: int) -> str | None:
        """Drop rows logged after `step` (work an interrupted run did past its last checkpoint) and a torn last
        line; return the note about the torn line (None when there was none)."""
        rows, note = self.read()
        kept = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows if r["step"] <= step)
        with writing(self.path):
            atomic_write(self.path, lambda tmp: tmp.write_text(kept, encoding="utf-8"))
        return note


def _parse_row(line: bytes) -> dict | None:
    """One metrics row, or None when `line` is not one (cut short, not JSON, not UTF-8, no step)."""
    try:
        row = json.loads(line.decode("utf-8"))
    except ValueError:  # UnicodeDecodeError too
        return None
    return row if isinstance(row, dict) and isinstance(row.get("step"), int) else None


FIELD_DEFAULTS = {"loss": "-", "lr": "-", "speed": "-", "val_cer": "-", "left": "", "grad_norm": "-", "scale": "-",
                  "skipped": "-"}
"""Every field the bar and the plain line show, as it reads before the loop first sets it ("-": not known yet,
or not in use - `scale` outside fp16)."""

SPEED_PERIOD_S = 300.0
"""The ETA comes from the speed of the last 5 minutes: steady, not thrown about by an evaluation or a checkpoint."""


PLAIN_LINES = 20
"""Piped output: a plain line every 1/PLAIN_LINES of the run's steps ..."""
PLAIN_EVERY_S = 60.0
"""... and at least this often (seconds, checked at each step), so a slow run still shows it is alive."""


class TrainProgress(Progress):
    """rich's Progress whose tasks start with `FIELD_DEFAULTS`: a caller that never sets a field still renders."""

    def add_task(self, description: str, start: bool = True, total: float | None = 100.0, completed: int = 0,
                 visible: bool = True, **fields) -> TaskID:
        return super().add_task(description, start=start, total=total, completed=completed, visible=visible,
                                **{**FIELD_DEFAULTS, **fields})


class PlainProgress(TrainProgress):
    """The progress of a run whose output is not a terminal (a pipe, a file, a Kaggle `!` cell): no live bar,
    which a pipe would only get at the very end, but one plain line at the first step, at every multiple of
    `every_steps` (default: 1/`PLAIN_LINES` of the task's total), at least every `every_s` seconds and at the last
    step - only between `start()` and `stop()`, like rich's live bar, so a process that never starts it (any
    but the main one) prints nothing.

    >>> import io
    >>> console = Console(file=io.StringIO(), width=80)
    >>> with PlainProgress(console=console, every_steps=2, every_s=1e9) as progress:
    ...     task = progress.add_task("train", total=4)
    ...     for step in (1, 2, 3, 4):
    ...         progress.update(task, completed=step, loss=f"{1 / step:.2f}")
    >>> [line.split("  ")[:2] for line in console.file.getvalue().splitlines()]
    [['step 1/4', 'loss 1.00'], ['step 2/4', 'loss 0.50'], ['step 4/4', 'loss 0.25']]
    """

    def __init__(self, *args, every_steps: int | None = None, every_s: float = PLAIN_EVERY_S, **kwargs):
        super().__init__(*args, **kwargs)
        self.every_steps, self.every_s = every_steps, every_s
        self.printing = False
        self.last_line: dict[TaskID, tuple[float, float]] = {}  # task -> (step, time) of its last line

    def start(self) -> None:  # no live display: it would reach a pipe only when the run ends
        self.printing = True

    def stop(self) -> None:
        self.printing = False

    def update(self, task_id: TaskID, **changes) -> None:
        super().update(task_id, **changes)
        if not self.printing or changes.get("completed") is None:
            return
        task, now = self._tasks[task_id], self.get_time()
        step_then, time_then = self.last_line.get(task_id, (None, now))
        if task.completed == step_then:
            return
        every_steps = self.every_steps or max(1, int(task.total or 0) // PLAIN_LINES)
        # At multiples of every_steps (as log rows are), so lines land on the same steps after a resume.
        if (step_then is None or task.completed // every_steps > step_then // every_steps
                or now - time_then >= self.every_s or task.finished):
            self.last_line[task_id] = (task.completed, now)
            self.console.print(plain_line(task), highlight=False, markup=False, soft_wrap=True)


def plain_line(task: Task) -> str:
    """One line of a task's state: step, loss, lr, samples/s, val CER, the health fields that are in use
    (grad_norm, scale, skipped), elapsed time, ETA and the time left before `train.time_limit`.

    >>> progress = TrainProgress()
    >>> task = progress.add_task("train", total=800, completed=120, loss="0.5829", lr="1.83e-03", speed="5.5")
    >>> plain_line(progress.tasks[0])
    'step 120/800  loss 0.5829  lr 1.83e-03  5.5 samples/s  val CER -  elapsed 0:00:00  ETA -'
    """
    from banglaocr.clock import format_duration

    fields = task.fields
    parts = [f"step {task.completed:.0f}/{task.total:.0f}", f"loss {fields['loss']}", f"lr {fields['lr']}",
             f"{fields['speed']} samples/s", f"val CER {fields['val_cer']}"]
    parts += [f"{name} {fields[name]}" for name in ("grad_norm", "scale", "skipped") if fields[name] != "-"]
    remaining = task.time_remaining
    parts += [f"elapsed {format_duration(task.elapsed or 0.0)}",
              f"ETA {format_duration(remaining) if remaining is not None else '-'}"]
    if fields["left"]:
        parts.append(f"left {fields['left']}")
    return "  ".join(parts)


_FULL = "loss {loss}  lr {lr}  {speed} samples/s  val CER {val_cer}"
LAYOUTS = (
    ("step", "loss {loss} lr {lr} {speed}/s CER {val_cer}", "elapsed<eta"),
    ("step", "short bar", "loss {loss}  lr {lr}  {speed}/s  CER {val_cer}", "elapsed<eta"),
    ("train", "step", "bar", _FULL, "elapsed", "ETA", "eta"),
    ("train", "step", "bar", _FULL, "grad {grad_norm}  scale {scale}  skipped {skipped}", "elapsed", "ETA", "eta"),
)
"""What the live bar shows, narrowest first (each column a name below or a template of the task's fields).
Every layout has step x/total, loss, lr, samples/s, the last val CER, the elapsed time and the ETA; at 80
columns they are abbreviated (`25.5/s`, `CER`, `0:05:12<1:23:45` = elapsed<ETA) and the bar is short or
gone (with a time limit); from about 105 columns they are spelled out beside a full bar; from about 145
grad_norm, the loss scale and skipped steps join them. The time left before `train.time_limit` comes last
when there is one."""

_TYPICAL = {"loss": "0.5829", "lr": "1.83e-03", "speed": "25.5", "val_cer": "0.225", "grad_norm": "3.41e+00",
            "scale": "65536", "skipped": "12", "left": "11:20:00"}
_TYPICAL_TEXT = {"train": "train", "step": "1200/8000", "short bar": "-" * 8, "bar": "-" * 10, "elapsed": "0:00:00",
                 "ETA": "ETA", "eta": "0:00:00", "elapsed<eta": "0:00:00<0:00:00", "left": "left 11:20:00"}
"""What each column takes with typical values (a full bar at its narrowest) - to choose the layout that fits."""


def _layout_width(parts: tuple[str, ...], time_limited: bool) -> int:
    """Columns a layout takes with typical values and a 4-digit step count (one space between columns)."""
    texts = [_TYPICAL_TEXT.get(part) or part.format(**_TYPICAL) for part in parts]
    texts += [_TYPICAL_TEXT["left"]] if time_limited else []
    return sum(len(text) for text in texts) + len(texts) - 1


class ElapsedAndRemainingColumn(ProgressColumn):
    """`0:05:12<1:23:45`: the elapsed time and the ETA in one column (as tqdm writes them), for narrow lines."""

    def render(self, task: Task) -> Text:
        from banglaocr.clock import format_duration

        remaining = task.time_remaining
        shown = format_duration(remaining) if remaining is not None and not task.finished else (
            "0:00:00" if task.finished else "-:--:--")
        return Text(f"{format_duration(task.elapsed or 0.0)}<{shown}", style="progress.remaining")


def make_progress(console: Console, time_limited: bool = False, every_steps: int | None = None,
                  every_s: float = PLAIN_EVERY_S) -> Progress:
    """The progress of a training run on `console`: the live bar (`live_bar`) where `wants_live_display`,
    else `PlainProgress` - a plain line every `every_steps` steps (default: 1/`PLAIN_LINES` of the task's
    total) and at least every `every_s` seconds.

    >>> import io
    >>> type(make_progress(Console(file=io.StringIO(), force_terminal=True))).__name__
    'PlainProgress'
    """
    if wants_live_display(console):
        return live_bar(console, time_limited)
    return PlainProgress(console=console, every_steps=every_steps, every_s=every_s,
                         speed_estimate_period=SPEED_PERIOD_S)


def live_bar(console: Console, time_limited: bool = False) -> Progress:
    """The live bar: the widest of `LAYOUTS` that fits the console (step x/total, loss, lr, samples/s, val CER,
    elapsed time and ETA in every one), with the time left before `train.time_limit` when there is one.

    >>> import io
    >>> console = Console(file=io.StringIO(), width=80, force_terminal=True)
    >>> progress = live_bar(console)
    >>> _ = progress.add_task("train", total=800, completed=120, loss="0.5829", lr="1.83e-03", speed="5.5",
    ...                       val_cer="0.225", left="")
    >>> line = progress.get_renderable(); console.print(line); text = console.file.getvalue()
    >>> all(part in text for part in ("120/800", "loss 0.5829", "lr 1.83e-03", "5.5/s", "CER 0.225", "0:00:00<"))
    True
    """
    fitting = [parts for parts in LAYOUTS if _layout_width(parts, time_limited) <= console.width]
    parts = fitting[-1] if fitting else LAYOUTS[0]

    def text(template: str) -> TextColumn:  # cut, never wrapped onto a second line
        return TextColumn(template.replace("{", "{task.fields[").replace("}", "]}"), table_column=Column(no_wrap=True))

    def column(part: str) -> ProgressColumn:
        fixed = Column(no_wrap=True)
        if part == "train":
            return TextColumn("[bold]train[/]", table_column=fixed)
        if part == "step":
            return MofNCompleteColumn(table_column=fixed)
        if part in ("bar", "short bar"):
            return BarColumn(bar_width=None if part == "bar" else len(_TYPICAL_TEXT[part]))
        if part == "elapsed":
            return TimeElapsedColumn(table_column=fixed)
        if part == "ETA":
            return TextColumn("ETA", table_column=fixed)
        if part == "eta":
            return TimeRemainingColumn(table_column=fixed)
        if part == "elapsed<eta":
            return ElapsedAndRemainingColumn(table_column=fixed)
        return text(part)

    columns = [column(part) for part in parts]
    if time_limited:
        columns.append(text("left {left}"))
    return TrainProgress(*columns, console=console, transient=False, speed_estimate_period=SPEED_PERIOD_S)


def plot_curves(rows: list[dict], path: Path) -> Path | None:
    """PNG of the training loss and the validation CER over optimizer steps."""
    loss_rows = [r for r in rows if "samples_per_s" in r]
    eval_rows = [r for r in rows if "val_cer" in r]
    if not loss_rows and not eval_rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (loss_axis, cer_axis) = plt.subplots(1, 2, figsize=(10, 3.6))
    if loss_rows:
        loss_axis.plot([r["step"] for r in loss_rows], [r["loss"] for r in loss_rows], color="tab:blue")
    loss_axis.set(title="training loss", xlabel="optimizer step", ylabel="loss per supervised token")
    if eval_rows:
        cer_axis.plot([r["step"] for r in eval_rows], [r["val_cer"] for r in eval_rows], "o-", color="tab:red")
    cer_axis.set(title="validation CER (generation)", xlabel="optimizer step", ylabel="CER")
    for axis in (loss_axis, cer_axis):
        axis.grid(alpha=0.3)
    figure.tight_layout()
    try:
        with writing(path):
            atomic_write(path, lambda tmp: figure.savefig(tmp, dpi=110, format="png"))
    finally:
        plt.close(figure)
    return path


def summary_table(summary: dict) -> Table:
    """The end-of-run table: steps, time (h:mm:ss), speed, the BEST and the FINAL validation CER, the test
    scores (of the best weights), skipped samples."""
    from banglaocr.clock import format_duration

    table = Table(title="training summary", show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")

    def fmt(value):
        return f"{value:.4f}" if isinstance(value, float) else str(value)

    table.add_row("steps", str(summary.get("steps")))
    if summary.get("train_time_s") is not None:
        table.add_row("train time", format_duration(summary["train_time_s"]))
    for key, label in (("samples_per_s", "samples/s"), ("final_loss", "final loss")):
        if summary.get(key) is not None:
            table.add_row(label, fmt(summary[key]))
    if summary.get("best_val_cer") is not None:
        table.add_row(f"best val CER (step {summary.get('best_step')})", fmt(summary["best_val_cer"]))
    before, after = summary.get("val_cer_before"), summary.get("val_cer_after")
    if before is not None and after is not None:
        ratio = f" (x{after / before:.2f})" if before > 0 else ""
        table.add_row("val CER before -> final", f"{before:.4f} -> {after:.4f}{ratio}")
    elif after is not None:
        table.add_row("final val CER", fmt(after))
    weights = f"best weights, step {summary.get('best_step')}" if summary.get("best_step") is not None else "final weights"
    for key, value in (summary.get("test") or {}).items():
        if key in ("cer", "mean_cer", "wer", "ger", "exact_match", "empty_predictions", "n"):
            table.add_row(f"test {key} ({weights})" if key == "cer" else f"test {key}", fmt(value))
    table.add_row("skipped samples", str(summary.get("skipped_samples", 0)))
    table.add_row("non-finite steps", str(summary.get("nonfinite_steps", 0)))
    return table
