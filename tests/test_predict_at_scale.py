"""`predict` over many files: sharded over the processes of an `accelerate launch` into ONE output in input
order, rows written as they are produced, and `--resume` after a killed job that ends with the same file
as an uninterrupted run."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import train_helpers as helpers
from test_infer_cli import corrupt, write_images

COUNT = 300
CHUNK = "20"  # inputs per process between writes: small, so that a kill lands mid-job


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> list[str]:
    folder = tmp_path_factory.mktemp("scans")
    paths = write_images(folder, COUNT, seed=3)
    corrupt([paths[5], paths[101], paths[250]])
    return [str(p) for p in paths]


def predict_command(out: Path, inputs: list[str], *extra: str) -> list[str]:
    return [sys.executable, "-m", "banglaocr", "predict", "--model", "tiny", "--out", str(out), "--chunk-size",
            CHUNK, "--batch-size", "16", *inputs, *extra]


def two_processes(command: list[str]) -> list[str]:
    """The same command under `accelerate launch` with 2 CPU processes (gloo)."""
    accelerate = str(Path(sys.executable).with_name("accelerate"))
    return [accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision",
            "no", "--dynamo_backend", "no", "-m", *command[2:]]


def run(command: list[str]) -> subprocess.CompletedProcess:
    env = {**helpers.subprocess_env(), "ACCELERATE_USE_CPU": "1"}
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def one_process_out(inputs, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("one") / "rows.jsonl"
    result = run(predict_command(out, inputs))
    assert result.returncode == 1, result.stderr  # 3 unreadable inputs
    return out


@pytest.fixture(scope="module")
def one_process(one_process_out) -> bytes:
    return one_process_out.read_bytes()


@pytest.fixture(scope="module")
def one_process_marker(one_process_out) -> bytes:
    """The marker predict wrote beside its rows (`rows.jsonl.banglaocr.json`)."""
    return one_process_out.with_name(one_process_out.name + ".banglaocr.json").read_bytes()


def test_one_output_in_input_order_with_an_error_row_per_bad_file(one_process, inputs):
    rows = [json.loads(line) for line in one_process.decode().splitlines()]
    assert [row["file"] for row in rows] == inputs
    assert sum("error" in row for row in rows) == 3


def test_two_processes_write_the_same_file_as_one(one_process, inputs, tmp_path):
    """The three unreadable inputs are error rows, said in one line; no process nor the launcher prints a
    traceback (under accelerate launch predict exits 0 then: the launcher answers any other code with one)."""
    out = tmp_path / "rows.jsonl"
    result = run(two_processes(predict_command(out, inputs)))
    assert result.returncode == 0, result.stderr[-3000:]
    assert out.read_bytes() == one_process
    assert result.stderr.count(f"wrote {COUNT} rows") == 1  # one writer: the processes shared the work
    assert f"3 of {COUNT} input(s) could not be read" in result.stderr
    assert "Traceback (most recent call last)" not in result.stderr, result.stderr[-3000:]


def test_killed_half_way_then_resume_gives_the_uninterrupted_file(one_process, inputs, tmp_path):
    out = tmp_path / "rows.jsonl"
    env = {**helpers.subprocess_env()}
    child = subprocess.Popen(predict_command(out, inputs), env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and child.poll() is None:
        if out.is_file() and out.read_bytes().count(b"\n") >= COUNT // 2:
            break
        time.sleep(0.05)
    assert child.poll() is None, "the job finished before it could be killed"
    child.send_signal(signal.SIGKILL)
    child.wait()
    written = out.read_bytes().count(b"\n")
    assert COUNT // 2 <= written < COUNT
    result = run(predict_command(out, inputs, "--resume"))
    assert result.returncode == 1, result.stderr
    assert f"rows were there already (--resume)" in result.stderr
    assert out.read_bytes() == one_process


@pytest.mark.slow  # two processes, over 12 s on 2 cores: in .ci/run's second step
def test_resume_under_two_processes_after_a_torn_last_line(one_process, one_process_marker, inputs, tmp_path):
    """A job killed while writing leaves half a row: --resume cuts it and appends the rest, in order."""
    out = tmp_path / "rows.jsonl"
    lines = one_process.splitlines(keepends=True)
    out.write_bytes(b"".join(lines[:120]) + lines[120][:17])
    out.with_name(out.name + ".banglaocr.json").write_bytes(one_process_marker)  # what predict wrote beside it
    result = run(two_processes(predict_command(out, inputs, "--resume")))
    assert result.returncode == 0, result.stderr[-3000:]
    assert out.read_bytes() == one_process


def test_resume_needs_out_and_the_same_format(inputs, tmp_path):
    out = tmp_path / "rows.txt"
    out.write_text("a.png\tক\n", encoding="utf-8")
    wrong = run([sys.executable, "-m", "banglaocr", "predict", "--model", "tiny", "--out", str(out), "--format",
                 "jsonl", "--resume", inputs[0]])
    assert wrong.returncode == 2 and "is not jsonl output of predict" in wrong.stderr
    missing = run([sys.executable, "-m", "banglaocr", "predict", "--model", "tiny", "--resume", inputs[0]])
    assert missing.returncode == 2 and "--resume needs --out" in missing.stderr


@pytest.mark.slow  # two processes, over 12 s on 2 cores: in .ci/run's second step
def test_eval_under_two_processes_equals_one(tmp_path):
    """`eval` shares the generation over the processes; the main one writes the same files as one process."""
    data = str(helpers.synth_dir())
    def command(out):
        return [sys.executable, "-m", "banglaocr", "eval", "--model", "tiny", "--dataset", data, "--split", "all",
                "--batch-size", "8", "--out", str(out), "--json"]
    one = run(command(tmp_path / "one"))
    two = run(two_processes(command(tmp_path / "two")))
    assert one.returncode == 0 and two.returncode == 0, two.stderr[-3000:]
    assert (tmp_path / "one" / "predictions.jsonl").read_bytes() == (tmp_path / "two" / "predictions.jsonl").read_bytes()
    scores = [json.loads((tmp_path / name / "summary.json").read_text()) for name in ("one", "two")]
    keys = ("n", "cer", "mean_cer", "wer", "ger", "exact_match", "empty_predictions")
    assert [{k: s[k] for k in keys} for s in scores][0] == [{k: s[k] for k in keys} for s in scores][1]
    assert scores[1]["processes"] == 2 and scores[1]["n"] == 64
