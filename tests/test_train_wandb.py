"""Weights & Biases reporting (`train.report_to: [tensorboard, wandb]`), checked in an offline run folder:
the metrics.jsonl rows, the recipe as config, and the curves and confusion heatmap as images.

W&B's service writes the offline run file in the background; `run.finish()` returns before the last
records are on disk, so a reader right after it (this test, `wandb sync` in the next notebook cell) could
find the file short - more likely the busier the machine. Reporting ends by shutting the service down
(`wandb_report.close_wandb`), which waits for the file: the tests read it at once, however loaded the
machine, and check that it is whole (its exit record). Generous service start-up limits keep a slow
start on a busy machine from failing a test."""

from __future__ import annotations

import io
import json

import pytest

import train_helpers as helpers
from wandb_records import config, history, records


@pytest.fixture(autouse=True)
def offline_wandb(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_INIT_TIMEOUT", "600")  # seconds: wandb.init waits for its service ...
    monkeypatch.setenv("WANDB__SERVICE_WAIT", "600")  # ... which may start slowly beside busy processes


def run_file(out):
    runs = list((out / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(runs) == 1, runs
    return runs[0]


def record_types(path) -> list[str]:
    return [record.WhichOneof("record_type") for record in records(path)]


def test_an_offline_wandb_run_holds_the_metrics_rows_and_the_recipe(tmp_path):
    out = tmp_path / "run"
    helpers.train(out, "train.max_steps=4", "train.eval_steps=2", "train.log_steps=1",
                  "train.report_to=[tensorboard, wandb]")
    path = run_file(out)
    assert "exit" in record_types(path)  # the whole run is on disk when training returns
    rows = history(path)
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    for row in logged:  # every metrics.jsonl row, with its numbers, at its step
        match = [r for r in rows if r.get("_step") == row["step"] and all(
            r.get(key) == value for key, value in row.items() if key != "step" and isinstance(value, (int, float)))]
        assert match, row
    # Rows of one step are merged into one history row; the images are logged at the last step.
    images = {key.split("/")[0] for r in rows for key in r if key.endswith("/_type") and r[key] == "image-file"}
    assert images == {"curves", "confusion_heatmap"}
    recipe = config(path)
    assert recipe["train"]["max_steps"] == 4 and recipe["train"]["report_to"] == ["tensorboard", "wandb"]
    assert (out / "tensorboard").is_dir()


def test_the_offline_run_file_is_whole_as_soon_as_reporting_ends(tmp_path):
    """Read at once after `finish_wandb` (no training in between to give the service time): every row and
    the exit record are there."""
    from banglaocr.train.wandb_report import finish_wandb, log_row, start_wandb

    run, run_id = start_wandb(helpers.tiny_recipe(), tmp_path, None)
    for step in range(1, 6):
        assert log_row(run, {"step": step, "loss": 1.0 / step, "lr": 1e-3}) is None
    assert finish_wandb(run, {}) is None
    path = run_file(tmp_path)
    assert "exit" in record_types(path)
    assert [row["_step"] for row in history(path)] == [1, 2, 3, 4, 5]


def test_wandb_failing_mid_run_is_one_warning_and_the_run_goes_on(tmp_path, monkeypatch):
    """W&B is a copy of metrics.jsonl: when it fails during the run (its service gone), one warning line,
    no traceback, and the run ends as it would have, with every row in metrics.jsonl."""
    import wandb.sdk.wandb_run
    from rich.console import Console

    from banglaocr.train.loop import run_training

    calls = {"n": 0}
    original = wandb.sdk.wandb_run.Run.log

    def log(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 2:
            raise ConnectionResetError(104, "Connection reset by peer")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(wandb.sdk.wandb_run.Run, "log", log)
    out, said = tmp_path / "run", io.StringIO()
    with helpers.one_thread():
        summary = run_training(helpers.tiny_recipe("train.max_steps=4", "train.eval_steps=2",
                                                   "train.report_to=[tensorboard, wandb]"),
                               out, console=Console(file=said, width=400))
    text = said.getvalue()
    assert summary["steps"] == 4 and "Traceback" not in text
    warnings = [line for line in text.splitlines() if line.startswith("warning: W&B reporting stopped")]
    assert len(warnings) == 1 and "Connection reset by peer" in warnings[0] and "metrics.jsonl" in warnings[0]
    assert [row["step"] for row in helpers.log_rows(out)] == [1, 2, 3, 4]


def test_report_to_rejects_an_unknown_tracker():
    from banglaocr.errors import UserError

    with pytest.raises(UserError, match="report_to.*knows tensorboard and wandb, not mlflow"):
        helpers.tiny_recipe("train.report_to=[mlflow]")
