"""Kaggle's clock respected: `train.time_limit` saves a checkpoint and stops cleanly (exit code 0) before the
deadline, with the exact command to continue, and the run resumes exactly; the progress bar and the
summary read well at 80 columns."""

from __future__ import annotations

import io
import re
import subprocess

import pytest
from rich.console import Console

import train_helpers as helpers
from banglaocr.clock import KAGGLE_MARGIN_S, deadline, format_duration, parse_duration
from banglaocr.errors import UserError
from banglaocr.train import loop

STEPS = 400
# Batches of 16: a run of 400 steps takes well over the 10 s limit below, so it stops half-way whatever
# the machine's speed (within reason) - and a slow start-up still leaves it steps to take.
ARGS = ("lora.r=4", "lora.alpha=8", "lora.dropout=0.1", "augment.enabled=true", "augment.probability=1.0",
        f"train.max_steps={STEPS}", "train.scheduler=cosine", "train.warmup_steps=5", "train.lr=2e-3",
        "train.log_steps=10", "train.batch_size=16")


@pytest.mark.slow  # over 15 s on 2 cores: in .ci/run's second step, with the other long runs
def test_a_time_limited_run_stops_with_a_checkpoint_and_resumes_exactly(tmp_path):
    reference = tmp_path / "reference"
    helpers.train(reference, *ARGS)

    out = tmp_path / "run"
    command = helpers.cli_command(out, *ARGS, "train.time_limit=10s")
    stopped = subprocess.run(command, env=helpers.subprocess_env(), capture_output=True, text=True, timeout=300)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    message = " ".join(stopped.stderr.split())
    assert "stopped before the time limit after step" in message
    # The command as this child was started (python -m banglaocr), naming the run folder: copy-pasteable.
    assert re.search(r"continue with: \S*python\S* -m banglaocr train .*-o \S+", message), message
    assert message.endswith("--resume auto") and "Traceback" not in message
    assert "time limit 0:00:10 (train.time_limit)" in stopped.stdout
    checkpoints = [p for p in (out / "checkpoints").iterdir() if p.name.startswith("step-")]
    reached = max(int(p.name.split("-")[1]) for p in checkpoints)
    assert 0 < reached < STEPS
    assert not (out / "final").exists()  # paused, not finished

    # Continue without the limit (a schedule-only change: allowed with a note): the same weights.
    summary = helpers.train(out, *ARGS, "train.time_limit=null", resume="auto")
    assert summary["steps"] == STEPS
    weights = helpers.trainable(out / "checkpoints" / f"step-{STEPS}")
    assert helpers.max_abs_diff(weights, helpers.trainable(reference / "checkpoints" / f"step-{STEPS}")) <= 1e-6


def test_kaggle_sessions_get_a_deadline_by_themselves():
    when, note = deadline(None, started=0.0, environ={"KAGGLE_KERNEL_RUN_TYPE": "Batch"})
    assert when is not None and "Kaggle session" in note
    assert deadline(None, started=0.0, environ={}) == (None, "")
    assert deadline("90s", started=100.0, environ={"KAGGLE_KERNEL_RUN_TYPE": "Batch"})[0] == 190.0
    assert KAGGLE_MARGIN_S >= 600


def test_durations():
    assert parse_duration("1h5m30s") == 3930.0 and parse_duration("600") == 600.0
    assert format_duration(41400) == "11:30:00"
    for bad in ("", "abc", "5x", "0s", "-3m"):
        with pytest.raises(UserError):
            parse_duration(bad)


def test_the_bar_and_the_summary_read_well_at_80_columns(tmp_path):
    console = Console(file=io.StringIO(), width=80, force_terminal=False)
    with helpers.one_thread():
        loop.run_training(helpers.tiny_recipe("train.max_steps=6", "train.eval_steps=3", "train.log_steps=2"),
                          tmp_path / "run", console=console)
    text = console.file.getvalue()
    # Not a terminal: plain progress lines (never folded - a pipe has no width; the live bar's fit to 80
    # columns is tests/test_progress.py's), every other line within 80 columns.
    bar = [line for line in text.splitlines() if line.startswith("step 6/6 ")]
    assert bar, text
    assert all(len(line) <= 80 for line in text.splitlines() if not line.startswith("step "))
    assert "loss " in bar[-1] and "val CER " in bar[-1] and "ETA" in bar[-1]
    assert "…" not in bar[-1]  # nothing cut off
    # Start-up phases say what they did and how long it took; the summary labels best and final, h:mm:ss.
    assert "data: " in text and " s)" in text.split("data: ")[1].split("\n")[1] + text.split("data: ")[1]
    assert "model: tiny-test-model" in text
    assert "best val CER (step" in text and "train time" in text and "0:00:" in text
