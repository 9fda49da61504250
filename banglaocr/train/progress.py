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


def make_progress(console: Console) -> Progress:
    """Step x/total, bar, loss, lr, samples/s, last val CER, elapsed and ETA."""
    return Progress(
        TextColumn("[bold]train[/]"),
        MofNCompleteColumn(),
        BarColumn(),
        TextColumn("loss {task.fields[loss]}  lr {task.fields[lr]}  {task.fields[speed]} samples/s  "
                   "val CER {task.fields[val_cer]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


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
    """The end-of-run table: steps, time, speed, best and test numbers, skipped samples."""
    table = Table(title="training summary", show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")

    def fmt(value):
        return f"{value:.4f}" if isinstance(value, float) else str(value)

    for key in ("steps", "train_time_s", "samples_per_s", "final_loss", "best_step", "best_val_cer"):
        if summary.get(key) is not None:
            table.add_row(key, fmt(summary[key]))
    before, after = summary.get("val_cer_before"), summary.get("val_cer_after")
    if before is not None and after is not None:
        ratio = f" (x{after / before:.2f})" if before > 0 else ""
        table.add_row("val CER before -> after", f"{before:.4f} -> {after:.4f}{ratio}")
    for key, value in (summary.get("test") or {}).items():
        if key in ("cer", "mean_cer", "wer", "ger", "exact_match", "empty_predictions", "n"):
            table.add_row(f"test_{key}", fmt(value))
    table.add_row("skipped_samples", str(summary.get("skipped_samples", 0)))
    table.add_row("nonfinite_steps", str(summary.get("nonfinite_steps", 0)))
    return table
