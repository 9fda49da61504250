"""The run folder and checkpoints as a trust boundary: nothing from a checkpoint runs, nobody's files are
overwritten, two runs never share a folder, and damaged or foreign checkpoints fail in one line (or are
skipped for an older whole one) - resume stays exact."""

from __future__ import annotations

import errno
import io
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from rich.console import Console
from typer.testing import CliRunner

import train_helpers as helpers
from banglaocr.cli import app
from banglaocr.errors import UserError
from banglaocr.train import checkpoint as ckpt
from banglaocr.train import loop
from test_train_resume import sigterm_after_step

STEPS = 8
ARGS = ("lora.r=4", "lora.alpha=8", "lora.dropout=0.1", "augment.enabled=true", "augment.probability=1.0",
        f"train.max_steps={STEPS}", "train.scheduler=cosine", "train.warmup_steps=2", "train.lr=2e-3",
        "train.save_steps=2", "train.keep_last=100")
runner = CliRunner()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("safety") / "run"
    helpers.train(out, *ARGS)
    return out


def final(out: Path) -> dict:
    return helpers.trainable(out / "checkpoints" / f"step-{STEPS}")


def interrupted_run(tmp_path: Path, monkeypatch, after_step: int = 5) -> Path:
    """A run stopped by SIGTERM after `after_step` (a checkpoint of that step is saved)."""
    out = tmp_path / "run"
    sigterm_after_step(monkeypatch, after_step)
    with pytest.raises(loop.TrainingInterrupted):
        helpers.train(out, *ARGS)
    monkeypatch.undo()
    return out


class PlantedCode:
    """Unpickling this runs `touch MARKER` - what a crafted checkpoint file would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def as_legacy_checkpoint(folder: Path) -> None:
    """Rewrite a checkpoint in the format of earlier versions (torch.save'd .pt states, no manifest)."""
    torch.save(ckpt.read_training_state(folder), folder / "training_state.pt")
    torch.save(ckpt.read_state(folder, "rng-rank0"), folder / "rng-rank0.pt")
    for name in ("training_state.json", "training_state.safetensors", "rng-rank0.json", "rng-rank0.safetensors",
                 "state.json"):
        (folder / name).unlink()


# --------------------------------------------------------------------------- no code from checkpoints


def test_a_checkpoint_of_an_earlier_version_resumes_exactly(reference, tmp_path, monkeypatch):
    out = interrupted_run(tmp_path, monkeypatch)
    as_legacy_checkpoint(out / "checkpoints" / "step-5")
    helpers.train(out, *ARGS, resume="auto")
    assert helpers.max_abs_diff(final(out), final(reference)) <= 1e-6


@pytest.mark.parametrize("planted", ["training_state.pt", "rng-rank0.pt"])
def test_planted_pickle_in_a_checkpoint_runs_nothing(planted, tmp_path, monkeypatch):
    out = interrupted_run(tmp_path, monkeypatch)
    folder = out / "checkpoints" / "step-5"
    as_legacy_checkpoint(folder)
    marker = tmp_path / "code-ran"
    torch.save({"optimizer": PlantedCode(marker)}, folder / planted)
    with pytest.raises(UserError, match="refusing to load .* not a plain tensor state") as raised:
        helpers.train(out, *ARGS, resume="auto")
    assert not marker.exists()
    assert "\n" not in str(raised.value)


def test_a_pickle_beside_a_checkpoint_of_this_version_is_never_read(reference, tmp_path, monkeypatch):
    out = interrupted_run(tmp_path, monkeypatch)
    marker = tmp_path / "code-ran"
    for name in ("training_state.pt", "rng-rank0.pt"):
        torch.save(PlantedCode(marker), out / "checkpoints" / "step-5" / name)
    helpers.train(out, *ARGS, resume="auto")
    assert not marker.exists()
    assert helpers.max_abs_diff(final(out), final(reference)) <= 1e-6


# --------------------------------------------------------------------------- damaged checkpoints


def test_a_truncated_newest_checkpoint_falls_back_to_the_previous_one(reference, tmp_path, monkeypatch):
    out = interrupted_run(tmp_path, monkeypatch)  # checkpoints step-2, step-4 and step-5 (at the stop)
    weights = out / "checkpoints" / "step-5" / "model" / "adapter_model.safetensors"  # the one copy of the weights
    weights.write_bytes(weights.read_bytes()[:100])
    console = io.StringIO()
    with helpers.one_thread():
        loop.run_training(helpers.tiny_recipe(*ARGS), out, resume="auto", console=Console(file=console, width=300))
    said = console.getvalue()
    assert "step-5 is damaged (model/adapter_model.safetensors is 100 bytes" in said and "resumed from" in said
    assert "step-4" in said.split("resumed from")[1].splitlines()[0]
    assert helpers.max_abs_diff(final(out), final(reference)) <= 1e-6


def test_an_explicitly_named_damaged_checkpoint_is_refused(tmp_path, monkeypatch):
    out = interrupted_run(tmp_path, monkeypatch)
    state = out / "checkpoints" / "step-4" / "training_state.json"
    state.write_text(state.read_text().replace("1", "2", 1))
    with pytest.raises(UserError, match="damaged .*training_state.json was changed after it was written"):
        helpers.train(out, *ARGS, resume=str(out / "checkpoints" / "step-4"))


@pytest.mark.parametrize("code, says", [
    (errno.ENOSPC, "no space left on the device; free some disk space (or lower train.keep_last)"),
    (errno.EDQUOT, "the disk quota is used up; free some disk space"),
    (errno.EACCES, "permission denied; fix the permissions of"),
    (errno.EROFS, "the file system is read-only; make"),
])
def test_a_failed_checkpoint_write_is_one_line_that_says_why_and_keeps_the_earlier_checkpoints(
        code, says, reference, tmp_path, monkeypatch):
    """A full disk, a quota, a permission and a read-only file system are told apart (a permission error is
    never "free some disk space"); the line names the checkpoint and the one the run continues from."""
    out = tmp_path / "run"
    original = loop.save_model_folder

    def save_model_folder(loaded, folder, *args, **kwargs):
        if "step-6" in str(folder):  # the checkpoint's model/ folder: the adapter weights
            raise OSError(code, os.strerror(code))
        return original(loaded, folder, *args, **kwargs)

    monkeypatch.setattr(loop, "save_model_folder", save_model_folder)
    with pytest.raises(UserError) as raised:
        helpers.train(out, *ARGS)
    monkeypatch.undo()
    line = str(raised.value)
    assert line.startswith(f"cannot write checkpoint {out / 'checkpoints' / 'step-6'}: {says}"), line
    assert line.endswith("then continue with --resume auto (it resumes from checkpoint step-4, which is intact)")
    assert "\n" not in line and (code in (errno.ENOSPC, errno.EDQUOT)) == ("disk space" in line)
    names = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert names == ["step-2", "step-4"]  # no half-written folder left
    helpers.train(out, *ARGS, resume="auto")
    assert helpers.max_abs_diff(final(out), final(reference)) <= 1e-6


# --------------------------------------------------------------------------- resuming with another recipe


def test_resume_refuses_a_recipe_that_makes_another_run(tmp_path, monkeypatch):
    out = interrupted_run(tmp_path, monkeypatch)
    with pytest.raises(UserError, match=r"differs from checkpoint step-5's in lora.r, train.batch_size: that would"):
        helpers.train(out, *ARGS, "train.batch_size=2", "lora.r=8", resume="auto")
    # Said explicitly, it goes on (and the note lists what changed).
    console = io.StringIO()
    with helpers.one_thread():
        loop.run_training(helpers.tiny_recipe(*ARGS, "train.seed=3"), out, resume="auto",
                          console=Console(file=console, width=300), allow_recipe_change=True)
    assert "resuming with changed train.seed" in console.getvalue()


def test_resume_with_a_longer_schedule_is_allowed_with_a_note(tmp_path, monkeypatch):
    out = interrupted_run(tmp_path, monkeypatch)
    console = io.StringIO()
    with helpers.one_thread():
        summary = loop.run_training(helpers.tiny_recipe(*ARGS, "train.max_steps=10", "train.eval_steps=5"), out,
                                    resume="auto", console=Console(file=console, width=300))
    assert summary["steps"] == 10
    assert "resuming with changed train.eval_steps, train.max_steps" in console.getvalue()


def test_resuming_an_older_checkpoint_replaces_the_newer_ones(tmp_path, monkeypatch):
    """Resume step-2 of a folder that also holds step-4 and step-5: the new run's step-4 must survive
    rotation, and the abandoned step-5 must not be what the next --resume auto picks."""
    out = interrupted_run(tmp_path, monkeypatch)
    sigterm_after_step(monkeypatch, 4)
    with pytest.raises(loop.TrainingInterrupted):
        helpers.train(out, *ARGS, "train.keep_last=2", resume=str(out / "checkpoints" / "step-2"),
                      allow_recipe_change=True)
    monkeypatch.undo()
    kept = sorted(p.name for p in (out / "checkpoints").iterdir() if p.name.startswith("step-"))
    assert kept == ["step-2", "step-4"]
    assert ckpt.resolve_resume("auto", out, print).name == "step-4"


# --------------------------------------------------------------------------- the run folder


def test_a_folder_with_someone_elses_files_is_refused_and_untouched(tmp_path):
    out = tmp_path / "mine"
    (out / "best").mkdir(parents=True)
    for name in ("recipe.yaml", "summary.json", "test_predictions.jsonl", "best/notes.txt", "my-notes.txt"):
        (out / name).write_text(f"my own {name}", encoding="utf-8")
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    result = runner.invoke(app, ["train", "--recipe", "cpu_demo", "-o", str(out), *helpers.overrides("train.max_steps=1")])
    assert result.exit_code == 2 and "is not empty and is not a banglaocr run folder" in result.output
    assert "Traceback" not in result.output
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    with helpers.one_thread():
        result = runner.invoke(app, ["train", "--recipe", "cpu_demo", "-o", str(out), "--overwrite",
                                     *helpers.overrides("train.max_steps=1")])
    assert result.exit_code == 0, result.output
    # Asked to, the run writes its files there (best/ replaced); what it does not write stays.
    assert (out / "run.json").is_file() and (out / "my-notes.txt").read_text() == "my own my-notes.txt"


@pytest.mark.parametrize("where", ["file", "proc"])
def test_an_output_folder_that_cannot_be_created_is_one_line(where, tmp_path):
    target = tmp_path / "a-file" if where == "file" else Path("/proc/banglaocr-test/run")
    if where == "file":
        target.write_text("x")
    result = runner.invoke(app, ["train", "--recipe", "cpu_demo", "-o", str(target), *helpers.overrides()])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "output" in result.output
    assert len(result.output.strip().splitlines()) == 1


@pytest.mark.slow  # over 15 s on 2 cores: in .ci/run's second step, with the other long runs
def test_two_concurrent_runs_into_one_folder(tmp_path):
    """The second exits 2 at once, naming the first's process; the first finishes unharmed."""
    out = tmp_path / "run"
    args = ("train.max_steps=300", "train.log_steps=10")
    log = (tmp_path / "first.log").open("w")
    first = subprocess.Popen(helpers.cli_command(out, *args), env=helpers.subprocess_env(), stdout=log,
                             stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 120
        while not (out / "metrics.jsonl").is_file() and first.poll() is None and time.time() < deadline:
            time.sleep(0.2)
        assert first.poll() is None, "the first run ended before the second started"
        started = time.time()
        second = subprocess.run(helpers.cli_command(out, *args), env=helpers.subprocess_env(), capture_output=True,
                                text=True, timeout=120)
        assert second.returncode == 2, second.stdout + second.stderr
        assert f"is in use by another training run (process {first.pid})" in second.stderr.replace("\n", " ")
        assert "Traceback" not in second.stderr
        assert time.time() - started < 30
        assert first.wait(timeout=300) == 0
    finally:
        if first.poll() is None:
            first.send_signal(signal.SIGKILL)
        log.close()
    steps = [row["step"] for row in helpers.log_rows(out)]
    assert steps == list(range(10, 301, 10))
    assert json.loads((out / "summary.json").read_text())["steps"] == 300


def test_the_lock_is_released_when_the_process_is_killed(tmp_path):
    out = tmp_path / "run"
    child = subprocess.Popen(helpers.cli_command(out, "train.max_steps=400"), env=helpers.subprocess_env(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (out / "metrics.jsonl").is_file() and time.time() < deadline:
        time.sleep(0.2)
    child.send_signal(signal.SIGKILL)
    child.wait()
    resumed = subprocess.run([*helpers.cli_command(out, "train.max_steps=2"), "--resume", "auto"],
                             env=helpers.subprocess_env(), capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr


# --------------------------------------------------------------------------- edge cases of the step


def test_a_first_micro_batch_without_any_readable_image_still_runs_a_pass(tmp_path, monkeypatch):
    """Under DDP every process must make the same forward/backward passes: a process whose first
    micro-batch failed to decode entirely runs a zero-weight pass on a placeholder (it used to skip it,
    leaving the other processes waiting in the all-reduce)."""
    from banglaocr.train import batches

    original_item = batches.WordImages.__getitem__
    first_batch_ids: set = set()

    def failing_item(self, index):
        item = original_item(self, index)
        if len(first_batch_ids) < 4 or item["id"] in first_batch_ids:  # the first 4 samples drawn
            first_batch_ids.add(item["id"])
            return {"error": "cannot identify image file", "id": item["id"]}
        return item

    forwards = []
    original_forward = loop.SupervisedLossModel.forward

    def counting_forward(self, *args, **kwargs):
        forwards.append(1)
        return original_forward(self, *args, **kwargs)

    monkeypatch.setattr(batches.WordImages, "__getitem__", failing_item)
    monkeypatch.setattr(loop.SupervisedLossModel, "forward", counting_forward)
    summary = helpers.train(tmp_path / "run", "train.max_steps=3", "train.grad_accum_steps=2")
    assert len(forwards) == 3 * 2  # one pass per micro-batch, the unreadable first one included
    assert summary["steps"] == 3 and summary["skipped_samples"] >= 4


def test_fp16_mixed_precision_keeps_the_vision_tower_in_fp32_for_a_full_fine_tune():
    """The fp16 safety net depends on the precision, not on the weight dtype: float32 weights (a full
    fine-tune) under fp16 autocast still run the vision tower without autocast."""
    from banglaocr.config import ModelConfig
    from banglaocr.model.factory import load_model

    loaded = load_model(ModelConfig(name_or_path="t", init="tiny"), None, precision="fp16")
    visual = loaded.model.model.visual
    assert next(visual.parameters()).dtype == torch.float32
    assert "forward" in vars(visual)  # the autocast-free forward is bound to the instance


def test_fp16_trainable_weights_are_refused_before_training():
    from banglaocr.config import ModelConfig
    from banglaocr.model.factory import load_model

    loaded = load_model(ModelConfig(name_or_path="t", init="tiny", dtype="float16"), None, precision="fp16")
    with pytest.raises(UserError, match="needs float32 trainable weights"):
        loop.refuse_half_precision_trainables(loaded.model, "fp16")
    loop.refuse_half_precision_trainables(loaded.model, "bf16")  # bf16 has no GradScaler: allowed


def test_the_manifest_names_every_file_with_its_size(reference):
    folder = reference / "checkpoints" / f"step-{STEPS}"
    files = json.loads((folder / "state.json").read_text())["files"]
    on_disk = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()} - {"state.json"}
    assert set(files) == on_disk
    assert all(files[name]["bytes"] == (folder / name).stat().st_size for name in files)
    assert ckpt.checkpoint_damage(folder) is None
    shutil.copytree(folder, reference.parent / "copy")
    (reference.parent / "copy" / "recipe.yaml").unlink()
    assert ckpt.checkpoint_damage(reference.parent / "copy") == "recipe.yaml is missing"


@pytest.mark.parametrize("flag, engine", [("ACCELERATE_USE_DEEPSPEED", "DeepSpeed"), ("ACCELERATE_USE_FSDP", "FSDP")])
def test_an_unproven_engine_is_refused_in_one_line(flag, engine, tmp_path, monkeypatch):
    """What `accelerate launch --use_deepspeed / --use_fsdp` sets: refused at start, exit 2, naming DDP."""
    monkeypatch.setenv(flag, "true")
    result = runner.invoke(app, ["train", "--recipe", "cpu_demo", "-o", str(tmp_path / "run"), *helpers.overrides()])
    assert result.exit_code == 2, result.output
    assert f"{engine} is not supported by banglaocr train" in result.output and "--multi_gpu" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "run").exists()


def test_resume_with_another_number_of_processes_is_refused(tmp_path, monkeypatch):
    out = interrupted_run(tmp_path, monkeypatch)
    folder = out / "checkpoints" / "step-5"
    shutil.copy(folder / "rng-rank0.json", folder / "rng-rank1.json")  # as if written by 2 processes
    with pytest.raises(UserError, match=r"the number of processes \(2 -> 1\)"):
        helpers.train(out, *ARGS, resume=str(folder))
