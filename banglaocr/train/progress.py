"""What a training run shows and writes: the live progress bar, metrics.jsonl, curves.png, the summary table.

`metrics.jsonl` has one JSON object per log or evaluation row: `step`, `loss`, `lr` always;
`samples_per_s` on log rows; `val_cer`, `val_wer`, `val_ger`, `val_exact_match`, ... on eval rows.
On resume the rows after the checkpoint's step are dropped, so the file never holds a step twice.

>>> import tempfile, pathlib
>>> log = MetricsLog(pathlib.Path(tempfile.mkdtemp()) / "metrics.jsonl")
>>> log.write({"step": 1, "loss": 2.0, "lr": 0.1}); log.write({"step": 2, "loss": 1.5, "lr": 0.1})
>>> log.truncate_after(1); [row["step"] for row in log.rows()]
[1]
"""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table


class MetricsLog:
    """Append-only JSON-lines log of training metrics."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def write(self, row: dict) -> None:
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")

    def rows(self) -> list[dict]:
        if not self.path.is_file():
            return []
        return [json.loads(line) for line in self.path.read_text(encoding="utf-8").splitlines() if line.strip()]

    def truncate_after(self, step: int) -> None:
        """Drop rows logged after `step` (work an interrupted run did past its last checkpoint)."""
        kept = [row for row in self.rows() if row["step"] <= step]
        self.path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept), encoding="utf-8")


WIDE = 110
"""From this console width on the bar also shows lr, samples/s and the elapsed time."""


def make_progress(console: Console, time_limited: bool = False) -> Progress:
    """Step x/total, loss, last val CER and a smoothed ETA always (they fit 80 columns); lr, samples/s and
    the elapsed time on wider consoles; the time left before `train.time_limit` when there is one.

    >>> import io
    >>> console = Console(file=io.StringIO(), width=80, force_terminal=False)
    >>> progress = make_progress(console)
    >>> _ = progress.add_task("train", total=800, completed=120, loss="0.5829", lr="1.83e-03", speed="5.5",
    ...                       val_cer="0.225", left="")
    >>> line = progress.get_renderable(); console.print(line); text = console.file.getvalue()
    >>> all(part in text for part in ("120/800", "loss 0.5829", "val CER 0.225", "ETA"))
    True
    """
    wide = console.width >= WIDE
    columns = [TextColumn("[bold]train[/]"), MofNCompleteColumn(), BarColumn(bar_width=None if wide else 12)]
    if wide:
        columns.append(TextColumn("loss {task.fields[loss]}  lr {task.fields[lr]}  {task.fields[speed]} samples/s  "
                                  "val CER {task.fields[val_cer]}"))
        columns.append(TimeElapsedColumn())
    else:
        columns.append(TextColumn("loss {task.fields[loss]}  val CER {task.fields[val_cer]}"))
    columns += [TextColumn("ETA"), TimeRemainingColumn()]
    if time_limited:
        columns.append(TextColumn("left {task.fields[left]}"))
    # ETA from the speed of the last 5 minutes: steady, not thrown about by an evaluation or a checkpoint.
    return Progress(*columns, console=console, transient=False, speed_estimate_period=300.0)


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
    figure.savefig(path, dpi=110)
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
