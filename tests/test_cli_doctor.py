"""`banglaocr doctor` on this machine: the rows, what a recipe needs, the exit codes."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from banglaocr import hub
from banglaocr.cli import app
from banglaocr.config import load_recipe
from banglaocr.machine import cache_check, hub_check, needs
from test_hub import answering_endpoint, closed_port  # noqa: F401 - a fixture and a helper

runner = CliRunner()


def doctor(*args: str):
    result = runner.invoke(app, ["doctor", "--json", *args])
    return result, json.loads(result.stdout) if result.stdout.startswith("{") else None


@pytest.mark.parametrize("args", [[], ["--recipe", "cpu_demo"]])
def test_every_row_needed_here_is_there(args, tmp_path):
    result, report = doctor(*args, "--output-dir", str(tmp_path / "run"))
    assert result.exit_code == 0, result.output
    rows = {row["check"]: row for row in report["checks"]}
    needed = [row for row in report["checks"] if row["needed"]]
    assert needed and all(row["ok"] for row in needed) and report["missing"] == []
    for name in ("Python", "torch", "bitsandbytes", "kornia", "Pillow RAQM", "accelerate", "CPU threads", "disk",
                 "Hugging Face hub"):
        assert name in rows, name
    for name in ("bitsandbytes", "kornia", "Pillow RAQM"):  # installed with banglaocr, and working here
        assert rows[name]["ok"], rows[name]
    assert "8-bit AdamW step" in rows["bitsandbytes"]["found"]
    assert "process" in rows["accelerate"]["found"] and str(tmp_path / "run") in rows["disk"]["found"]
    if args:
        assert {"raqm", "kornia"} <= {row["key"] for row in needed}


def test_a_recipe_that_needs_a_gpu_fails_with_the_fix():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    result = runner.invoke(app, ["doctor", "--recipe", "cpu_demo", "train.precision=fp16"], env={"COLUMNS": "250"})
    assert result.exit_code == 1, result.output
    gpu = next(line for line in result.output.splitlines() if "│ GPU" in line)
    assert "MISSING (train.precision fp16)" in gpu and "train.precision=fp32" in gpu
    assert "needs missing: GPU (exit code 1)" in result.output
    _, report = doctor("--recipe", "cpu_demo", "train.precision=fp16")
    assert report["missing"] == ["GPU"]


def test_bad_input_is_one_line_exit_2():
    for args in (["--recipe", "no-such-recipe"], ["train.lr=1"], ["--recipe", "cpu_demo", "train.nope=1"]):
        result = runner.invoke(app, ["doctor", *args])
        assert result.exit_code == 2, result.output
        assert result.output.strip().count("\n") == 0 and "Traceback" not in result.output


def test_what_the_shipped_recipes_need():
    kaggle = needs(load_recipe("kaggle_t4x2"))
    assert kaggle["gpu"] == "train.precision fp16" and kaggle["bitsandbytes"] == "train.optimizer adamw8bit"
    assert kaggle["model"] == "model.name_or_path" and kaggle["data"] == "data.source" and "raqm" not in kaggle
    demo = needs(load_recipe("cpu_demo"))
    assert "gpu" not in demo and "bitsandbytes" not in demo and "model" not in demo and demo["raqm"]
    assert needs(load_recipe("cpu_demo", ["train.precision=bf16", "model.quantization=4bit"]))["bitsandbytes"] \
        == "model.quantization 4bit"


def test_hub_rows_offline_unreachable_and_answering(monkeypatch, tmp_path, answering_endpoint):
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    assert hub_check().found.startswith("offline") and not cache_check("model", "org/model").ok
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE")
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    hub.unreachable.cache_clear()
    try:
        row = hub_check()
        assert not row.ok and "unreachable" in row.found and "HF_HUB_OFFLINE=1" in row.fix
        missing = cache_check("model", "org/model")
        assert not missing.ok and "the hub is unreachable" in missing.found and "hf download org/model" in missing.fix
        monkeypatch.setenv("HF_ENDPOINT", answering_endpoint)
        hub.unreachable.cache_clear()
        assert hub_check().ok and cache_check("data", "org/words").found.endswith("downloaded on first use")
    finally:
        hub.unreachable.cache_clear()


def test_with_a_recipe_the_disk_row_holds_the_runs_expected_disk_use(tmp_path):
    result, report = doctor("--recipe", "cpu_demo", "--output-dir", str(tmp_path / "run"))
    assert result.exit_code == 0, result.output
    disk = next(row for row in report["checks"] if row["key"] == "disk")
    use = report["disk_use"]
    assert disk["ok"] and "the run needs" in disk["found"] and use["fits"] and use["free_bytes"] > use["needed_bytes"]
    assert use["keep_last"] == 2 and use["checkpoints_at_peak"] == 3  # the kept ones + the one being written
    files = use["checkpoint_files"]
    assert files["model/adapter_model.safetensors"] > 0 and files["training_state.safetensors"] > 0
    assert "trainable.safetensors" not in files and sum(files.values()) == use["checkpoint_bytes"]
    # cpu_demo: a checkpoint is larger than best/ or final/, so the peak is while a checkpoint is written
    assert use["peak_bytes"] == 3 * use["checkpoint_bytes"] + use["model_folder_bytes"] + use["data_bytes"]
    table = runner.invoke(app, ["doctor", "--recipe", "cpu_demo", "-o", str(tmp_path / "run")], env={"COLUMNS": "250"})
    assert "expected disk use, counted on the meta device" in table.output
    assert "x 3 checkpoints" in table.output and "best/ + final/" in table.output and ": fits" in table.output


def test_a_run_that_does_not_fit_fails_the_disk_row_with_the_fix(monkeypatch, tmp_path):
    import dataclasses
    import shutil

    from banglaocr.disk_use import estimate_disk_use

    use = estimate_disk_use(load_recipe("cpu_demo"), tmp_path)
    free = dataclasses.replace(use, keep_last=1).peak + 1  # room for one kept checkpoint, not for two
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda path: real(path)._replace(free=free))
    result = runner.invoke(app, ["doctor", "--recipe", "cpu_demo", "-o", str(tmp_path)], env={"COLUMNS": "250"})
    assert result.exit_code == 1, result.output
    disk = next(line for line in result.output.splitlines() if line.startswith("│ disk"))
    assert "MISSING (always)" in disk and "lower train.keep_last to 1" in disk
    assert "DOES NOT FIT" in result.output and "needs missing: disk (exit code 1)" in result.output


def test_without_an_estimate_the_disk_row_says_why_and_asks_for_the_minimum(tmp_path):
    _, report = doctor("--recipe", "kaggle_t4x2", "model.name_or_path=someone/not-cached-model", "-o", str(tmp_path))
    disk = next(row for row in report["checks"] if row["key"] == "disk")
    assert "cannot be estimated (the architecture of someone/not-cached-model is not in the local cache" in disk["found"]
    assert disk["ok"] and "not in the local cache" in report["disk_use"]["unavailable"]
