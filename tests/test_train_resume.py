"""Resume is exact: a run stopped by SIGTERM and resumed ends with the SAME weights as an uninterrupted
run (data order, optimizer, scheduler, augmentation and dropout RNG all restored), and metrics.jsonl
never holds a step twice.

The reference runs and the deterministic interruptions run in this process (`run_training`); one test
sends a real SIGTERM to a `python -m banglaocr train` child and resumes it with `--resume auto`.

The thread count is part of exactness (parallel sums add in an order that depends on it): a resumed run
computes with the count its checkpoint recorded, whatever the machine's load, CPUs or OMP_NUM_THREADS
say now; only train.threads overrides it, with a note.
"""

from __future__ import annotations

import io
import json
import shutil
import signal
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import torch
from rich.console import Console

import train_helpers as helpers
from banglaocr.train import checkpoint as ckpt
from banglaocr.train.loop import TrainingInterrupted, run_training
from banglaocr.train.progress import MetricsLog

TOLERANCE = 1e-6
STEPS = 12
# LoRA with dropout (torch RNG) and augmentation on every image (the augmentation generator), a
# warm-up + cosine schedule and an evaluation half-way: every piece of state resume must restore.
LORA = ("lora.r=4", "lora.alpha=8", "lora.dropout=0.1")
FULL = ("lora=null",)
COMMON = ("augment.enabled=true", "augment.probability=1.0", f"train.max_steps={STEPS}", "train.eval_steps=6",
          "train.scheduler=cosine", "train.warmup_steps=2", "train.lr=2e-3")


def final_weights(output_dir: Path, step: int = STEPS) -> dict:
    return helpers.trainable(output_dir / "checkpoints" / f"step-{step}")


def assert_steps_logged_once(output_dir: Path, steps: int, eval_steps: list[int]) -> None:
    logged = [row["step"] for row in helpers.log_rows(output_dir)]
    assert logged == list(range(1, steps + 1)), Counter(logged)
    assert [row["step"] for row in helpers.eval_rows(output_dir)] == eval_steps


@pytest.fixture(scope="module")
def reference_runs(tmp_path_factory):
    """Uninterrupted runs (LoRA and full fine-tune), saving every 2 steps and keeping all checkpoints."""
    runs = {}
    for name, model_args in (("lora", LORA), ("full", FULL)):
        out = tmp_path_factory.mktemp(f"reference-{name}") / "run"
        helpers.train(out, *model_args, *COMMON, "train.save_steps=2", "train.keep_last=100")
        runs[name] = out
    return runs


def sigterm_after_step(monkeypatch, step: int, signum: int = signal.SIGTERM) -> None:
    """Deliver a real SIGTERM (or `signum`) to this process right after the log row of `step` is written."""
    assert threading.current_thread() is threading.main_thread()  # the loop's handler must catch it
    original = MetricsLog.write

    def write(self, row):
        original(self, row)
        if row["step"] == step and "samples_per_s" in row:
            signal.raise_signal(signum)

    monkeypatch.setattr(MetricsLog, "write", write)


@pytest.mark.parametrize("variant", ["lora", "full"])
def test_sigterm_between_checkpoints_then_resume_auto_is_exact(variant, reference_runs, tmp_path, monkeypatch):
    """Stopped after step 5 (checkpoints every 4 steps), a checkpoint of step 5 is saved; resuming from
    it gives the uninterrupted run's final weights, and no step is logged twice."""
    model_args = LORA if variant == "lora" else FULL
    out = tmp_path / "run"
    sigterm_after_step(monkeypatch, 5)
    with pytest.raises(TrainingInterrupted) as stopped:
        helpers.train(out, *model_args, *COMMON, "train.save_steps=4")
    assert stopped.value.exit_code == 143 and stopped.value.signal_name == "SIGTERM"
    assert json.loads((out / "checkpoints" / "step-5" / "state.json").read_text())["step"] == 5
    assert not (out / "final").exists()
    monkeypatch.undo()

    summary = helpers.train(out, *model_args, *COMMON, "train.save_steps=4", resume="auto")
    assert summary["steps"] == STEPS
    assert helpers.max_abs_diff(final_weights(out), final_weights(reference_runs[variant])) <= TOLERANCE
    assert_steps_logged_once(out, STEPS, [6, 12])


def test_sigterm_right_after_a_checkpoint_reuses_it(reference_runs, tmp_path, monkeypatch):
    """Stopped right after the step-4 checkpoint: no second checkpoint is written, resume is exact."""
    out = tmp_path / "run"
    sigterm_after_step(monkeypatch, 4)
    with pytest.raises(TrainingInterrupted):
        helpers.train(out, *LORA, *COMMON, "train.save_steps=4")
    assert sorted(p.name for p in (out / "checkpoints").iterdir() if p.name.startswith("step-")) == ["step-4"]
    monkeypatch.undo()
    helpers.train(out, *LORA, *COMMON, "train.save_steps=4", resume="auto")
    assert helpers.max_abs_diff(final_weights(out), final_weights(reference_runs["lora"])) <= TOLERANCE
    assert_steps_logged_once(out, STEPS, [6, 12])


def test_sigint_saves_and_exits_130(tmp_path, monkeypatch):
    """Ctrl-C is handled like SIGTERM (checkpoint of the step reached), with exit code 130."""
    out = tmp_path / "run"
    sigterm_after_step(monkeypatch, 3, signal.SIGINT)
    with pytest.raises(TrainingInterrupted) as stopped:
        helpers.train(out, *LORA, *COMMON, "train.save_steps=0")
    assert stopped.value.exit_code == 130 and stopped.value.signal_name == "SIGINT"
    assert json.loads((out / "checkpoints" / "step-3" / "state.json").read_text())["step"] == 3


def test_resume_from_an_explicit_checkpoint_folder(reference_runs, tmp_path):
    """--resume DIR (a checkpoint of another run) continues from that step to the same final weights."""
    out = tmp_path / "continued"
    start = reference_runs["lora"] / "checkpoints" / "step-6"
    summary = helpers.train(out, *LORA, *COMMON, "train.save_steps=2", resume=str(start))
    assert summary["steps"] == STEPS
    assert helpers.max_abs_diff(final_weights(out), final_weights(reference_runs["lora"])) <= TOLERANCE
    assert [row["step"] for row in helpers.log_rows(out)] == list(range(7, STEPS + 1))


def test_resume_auto_without_checkpoints_starts_fresh(reference_runs, tmp_path):
    """`--resume auto` in an empty folder is a fresh start (a re-queued job can always pass it)."""
    out = tmp_path / "fresh"
    helpers.train(out, *LORA, *COMMON, "train.save_steps=12", resume="auto")
    assert helpers.max_abs_diff(final_weights(out), final_weights(reference_runs["lora"])) <= TOLERANCE


# --------------------------------------------------------------------------- a real signal to a child


SUB_STEPS = 60  # long enough (about 2 s of steps after the signal is sent) that it lands mid-way
SUB_ARGS = (*LORA, "augment.enabled=true", "augment.probability=1.0", f"train.max_steps={SUB_STEPS}",
            "train.save_steps=4", "train.eval_steps=30", "train.scheduler=cosine", "train.warmup_steps=2")


def _wait_for_step(output_dir: Path, process: subprocess.Popen, step: int, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    metrics = output_dir / "metrics.jsonl"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return
        if metrics.is_file():
            lines = [line for line in metrics.read_text(encoding="utf-8").splitlines() if line.endswith("}")]
            if lines and json.loads(lines[-1])["step"] >= step:
                return
        time.sleep(0.01)
    process.kill()
    pytest.fail(f"no step {step} within {timeout} s")


@pytest.mark.slow  # over 15 s on 2 cores: in .ci/run's second step, with the other long runs
def test_sigterm_to_a_cli_child_exits_143_and_resume_auto_matches(tmp_path):
    """`python -m banglaocr train` stopped by SIGTERM mid-way exits 143 after saving a checkpoint of the
    step it reached; `--resume auto` finishes with the uninterrupted run's weights."""
    reference = tmp_path / "reference"
    helpers.train(reference, *SUB_ARGS)

    out = tmp_path / "run"
    log = (tmp_path / "child.log").open("w")
    child = subprocess.Popen(helpers.cli_command(out, *SUB_ARGS), env=helpers.subprocess_env(),
                             stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_for_step(out, child, 3)
        assert child.poll() is None, "the run ended before it could be interrupted"
        child.send_signal(signal.SIGTERM)
        code = child.wait(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
        log.close()
    output = (tmp_path / "child.log").read_text(encoding="utf-8")
    assert code == 143, output
    assert "SIGTERM" in output and "--resume auto" in output and "Traceback" not in output
    reached = helpers.log_rows(out)[-1]["step"]
    assert 3 <= reached < SUB_STEPS
    newest = max((p for p in (out / "checkpoints").iterdir() if p.name.startswith("step-")),
                 key=lambda p: int(p.name.split("-")[1]))
    assert json.loads((newest / "state.json").read_text())["step"] == reached
    assert not any(p.name.startswith(".tmp-") for p in (out / "checkpoints").iterdir())

    resumed = subprocess.run([*helpers.cli_command(out, *SUB_ARGS), "--resume", "auto"],
                             env=helpers.subprocess_env(), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"resumedfrom{newest}" in "".join(resumed.stdout.split())  # rich may wrap the long path
    assert helpers.max_abs_diff(final_weights(out, SUB_STEPS), final_weights(reference, SUB_STEPS)) <= TOLERANCE
    assert_steps_logged_once(out, SUB_STEPS, [30, 60])


# --------------------------------------------------------------------------- the thread count


THREAD_STEPS = 6
# A full fine-tune with augmentation: its parallel sums differ in the last bits with 1 thread or 2
# (a LoRA run of this tiny model does not), so a resume that changed the count would not be exact.
THREAD_ARGS = ("lora=null", "augment.enabled=true", "augment.probability=1.0", f"train.max_steps={THREAD_STEPS}",
               "train.save_steps=0", "train.threads=null")


def machine(monkeypatch, cpus: int, load: float) -> None:
    """What `threads.choose_threads` sees of this machine (its CPUs and load average), with no OMP_NUM_THREADS."""
    from banglaocr.train import threads

    monkeypatch.setattr(threads, "machine_cpus", lambda: cpus)
    monkeypatch.setattr(threads, "busy_cpus", lambda: load)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)


def threads_during_steps(monkeypatch) -> list[int]:
    """The torch thread count at every optimizer step this process makes from now on."""
    from banglaocr.train import loop

    seen, original = [], loop.TrainingRun.train_step

    def train_step(self, stop):
        seen.append(torch.get_num_threads())
        return original(self, stop)

    monkeypatch.setattr(loop.TrainingRun, "train_step", train_step)
    return seen


@pytest.fixture(scope="module")
def two_thread_runs(tmp_path_factory):
    """An uninterrupted run and one stopped by SIGTERM after step 3, both on an idle 2-CPU machine (2 threads)."""
    with pytest.MonkeyPatch.context() as patch:
        machine(patch, cpus=2, load=0.0)
        reference = tmp_path_factory.mktemp("threads-reference") / "run"
        helpers.train(reference, *THREAD_ARGS)
        stopped = tmp_path_factory.mktemp("threads-stopped") / "run"
        sigterm_after_step(patch, 3)
        with pytest.raises(TrainingInterrupted):
            helpers.train(stopped, *THREAD_ARGS)
    return reference, stopped


@pytest.mark.parametrize("now", ["busy", pytest.param("omp", marks=pytest.mark.slow),
                                 pytest.param("fewer-cpus", marks=pytest.mark.slow)])
def test_resume_computes_with_the_checkpoints_thread_count(now, two_thread_runs, tmp_path, monkeypatch):
    """Resumed where the choice would be 1 thread - a busy machine, OMP_NUM_THREADS=1, or one CPU left to the
    process - the run computes with the 2 threads its checkpoint recorded, ends bit-exact with the
    uninterrupted run, and says so."""
    reference, stopped = two_thread_runs
    out = tmp_path / "run"
    shutil.copytree(stopped, out)
    assert ckpt.saved_threads(out / "checkpoints" / "step-3", 0) == 2
    machine(monkeypatch, cpus=1 if now == "fewer-cpus" else 2, load=1.0 if now == "busy" else 0.0)
    if now == "omp":
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
    seen = threads_during_steps(monkeypatch)
    console = io.StringIO()
    with helpers.one_thread():
        run_training(helpers.tiny_recipe(*THREAD_ARGS), out, resume="auto", console=Console(file=console, width=400))
    assert seen == [2] * (THREAD_STEPS - 3)
    said = console.getvalue()
    assert "torch threads: 2 per process, as the checkpoint was computed with: the resumed run stays bit-exact" in said
    assert ("slower; train.threads=1 is faster but not bit-exact" in said) == (now == "fewer-cpus")
    assert helpers.max_abs_diff(final_weights(out, THREAD_STEPS), final_weights(reference, THREAD_STEPS)) == 0.0


def test_a_thread_count_set_on_resume_wins_and_the_note_says_what_it_costs(two_thread_runs, tmp_path, monkeypatch):
    _, stopped = two_thread_runs
    out = tmp_path / "run"
    shutil.copytree(stopped, out)
    machine(monkeypatch, cpus=2, load=0.0)
    seen = threads_during_steps(monkeypatch)
    console = io.StringIO()
    with helpers.one_thread():
        run_training(helpers.tiny_recipe(*THREAD_ARGS, "train.threads=1"), out, resume="auto",
                     console=Console(file=console, width=400))
    assert seen == [1] * (THREAD_STEPS - 3)
    assert ("torch threads: 1 per process (as set); the checkpoint was computed with 2 - parallel sums add in "
            "another order, so the continuation may differ from an uninterrupted run in the last bits "
            "(train.threads=null reuses 2)") in console.getvalue()


@pytest.mark.slow
def test_sigkill_then_resume_with_another_omp_num_threads_is_bit_exact(tmp_path):
    """A real child killed with SIGKILL mid-way (computing with OMP_NUM_THREADS=2), resumed by a child with
    OMP_NUM_THREADS=1: the resumed child computes with 2 threads again and ends with the uninterrupted
    child's weights, bit for bit."""
    args = (*THREAD_ARGS, "train.max_steps=40", "train.save_steps=4")

    def env(threads: int) -> dict:
        return {**helpers.subprocess_env(), "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}

    reference = tmp_path / "reference"
    done = subprocess.run(helpers.cli_command(reference, *args), env=env(2), capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    out = tmp_path / "run"
    child = subprocess.Popen(helpers.cli_command(out, *args), env=env(2), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        _wait_for_step(out, child, 9)
        assert child.poll() is None, "the run ended before it could be killed"
        child.kill()
        child.wait(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
    resumed = subprocess.run([*helpers.cli_command(out, *args), "--resume", "auto"], env=env(1),
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "as the checkpoint was computed with" in " ".join(resumed.stdout.split())
    assert helpers.max_abs_diff(final_weights(out, 40), final_weights(reference, 40)) == 0.0
