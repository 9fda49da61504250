"""Weights & Biases reporting (`train.report_to: [tensorboard, wandb]`), checked in an offline run folder:
the metrics.jsonl rows, the recipe as config, and the curves and confusion heatmap as images."""

from __future__ import annotations

import json

import train_helpers as helpers
from wandb_records import config, history


def test_an_offline_wandb_run_holds_the_metrics_rows_and_the_recipe(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    out = tmp_path / "run"
    helpers.train(out, "train.max_steps=4", "train.eval_steps=2", "train.log_steps=1",
                  "train.report_to=[tensorboard, wandb]")
    runs = list((out / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(runs) == 1
    rows = history(runs[0])
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    for row in logged:  # every metrics.jsonl row, with its numbers, at its step
        match = [r for r in rows if r.get("_step") == row["step"] and all(
            r.get(key) == value for key, value in row.items() if key != "step" and isinstance(value, (int, float)))]
        assert match, row
    # Rows of one step are merged into one history row; the images are logged at the last step.
    images = {key.split("/")[0] for r in rows for key in r if key.endswith("/_type") and r[key] == "image-file"}
    assert images == {"curves", "confusion_heatmap"}
    recipe = config(runs[0])
    assert recipe["train"]["max_steps"] == 4 and recipe["train"]["report_to"] == ["tensorboard", "wandb"]
    assert (out / "tensorboard").is_dir()


def test_report_to_rejects_an_unknown_tracker():
    import pytest

    from banglaocr.errors import UserError

    with pytest.raises(UserError, match="report_to.*knows tensorboard and wandb, not mlflow"):
        helpers.tiny_recipe("train.report_to=[mlflow]")
