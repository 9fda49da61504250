"""Small things that cost a newcomer time, each checked as the newcomer meets it: a corrected retry after a
start that failed reuses the folder (a run that trained is never touched), the Ctrl-C message's command resumes
as printed, a multi-process run says `done:` once, written files get the mode the umask gives, and the
synth page's examples name files that exist."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

import train_helpers as helpers
from banglaocr.cli import app
from banglaocr.errors import UserError
from test_train_resume import sigterm_after_step

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()


def invoke_train(output_dir: Path, *extra: str, options: tuple[str, ...] = ()):
    args = ["train", "--recipe", "cpu_demo", "-o", str(output_dir), *options, *helpers.overrides(*extra)]
    with helpers.one_thread():
        return runner.invoke(app, args)


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every file and folder below `folder` with its bytes (None for a folder)."""
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None) for p in folder.rglob("*")}


# --------------------------------------------------------------------------- a start that failed


def test_a_start_that_failed_on_its_data_is_retried_in_the_same_folder(tmp_path):
    """Bad data stops the run before its first step, after it marked the folder (run.json): the corrected
    command, run again as it is, trains there - no --overwrite, no other folder."""
    out = tmp_path / "run"
    failed = invoke_train(out, "train.max_steps=1", f"data.source={tmp_path / 'no-such-words'}")
    assert failed.exit_code == 2, failed.output
    assert (out / "run.json").is_file() and "Traceback" not in failed.output
    retried = invoke_train(out, "train.max_steps=1")
    assert retried.exit_code == 0, retried.output
    assert "stopped before its first step" in retried.output
    assert json.loads((out / "summary.json").read_text())["steps"] == 1


def test_a_start_that_failed_after_scoring_the_starting_model_is_retried(tmp_path, monkeypatch):
    """With eval.before_training the start writes best/ (step 0) and a step-0 metrics row before the first step;
    a failure there still leaves nothing trained, so the retry starts again."""
    from banglaocr.train import loop

    out = tmp_path / "run"

    def fails(self, stop):
        raise UserError("the first step failed")

    monkeypatch.setattr(loop.TrainingRun, "train_step", fails)
    with pytest.raises(UserError):
        helpers.train(out, "train.max_steps=1", "eval.before_training=true")
    assert json.loads((out / "best" / "best_step.json").read_text())["step"] == 0
    assert [row["step"] for row in helpers.metrics(out)] == [0]
    monkeypatch.undo()
    summary = helpers.train(out, "train.max_steps=1", "eval.before_training=true")
    assert summary["steps"] == 1 and json.loads((out / "best" / "best_step.json").read_text())["step"] in (0, 1)


def _finished(folder: Path) -> None:
    helpers.train(folder, "train.max_steps=2")


def _step_logged(folder: Path) -> None:  # killed after step 1, before any checkpoint
    folder.mkdir()
    (folder / "run.json").write_text('{"tool": "banglaocr"}', encoding="utf-8")
    (folder / "recipe.yaml").write_text("{}", encoding="utf-8")
    (folder / "metrics.jsonl").write_text('{"step": 0, "loss": null, "lr": 0.0, "val_cer": 0.9}\n'
                                          '{"step": 1, "loss": 5.0, "lr": 0.001, "samples_per_s": 9.0}\n')


def _checkpoint_cut_short(folder: Path) -> None:  # killed while writing its first checkpoint
    (folder / "checkpoints" / ".tmp-step-1").mkdir(parents=True)
    (folder / "run.json").write_text('{"tool": "banglaocr"}', encoding="utf-8")


def _stopped_at_step_0(folder: Path) -> None:  # Ctrl-C before the first step: a checkpoint of step 0
    (folder / "checkpoints" / "step-0").mkdir(parents=True)
    (folder / "checkpoints" / "step-0" / "state.json").write_text('{"step": 0}', encoding="utf-8")
    (folder / "run.json").write_text('{"tool": "banglaocr"}', encoding="utf-8")


def _best_of_an_earlier_version(folder: Path) -> None:  # best/ without the step it holds
    (folder / "best").mkdir(parents=True)
    (folder / "best" / "adapter_model.safetensors").write_bytes(b"weights")
    (folder / "run.json").write_text('{"tool": "banglaocr"}', encoding="utf-8")


def _unreadable_log(folder: Path) -> None:
    folder.mkdir()
    (folder / "run.json").write_text('{"tool": "banglaocr"}', encoding="utf-8")
    (folder / "metrics.jsonl").write_bytes(b'{"step": 0}\n\xff\xfe not a row\n')


@pytest.mark.parametrize("make", [_finished, _step_logged, _checkpoint_cut_short, _stopped_at_step_0,
                                  _best_of_an_earlier_version, _unreadable_log])
def test_a_run_that_trained_is_never_removed_by_a_new_start(make, tmp_path):
    """Anything of a run past its start - a logged step, a checkpoint (even one cut short), best/ of a step
    it cannot name, a log it cannot read, a finished run - makes a new start refuse, touching nothing."""
    out = tmp_path / "run"
    make(out)
    before = snapshot(out)
    result = invoke_train(out, "train.max_steps=1")
    assert result.exit_code == 2 and "already holds a training run" in result.output, result.output
    assert snapshot(out) == before


# --------------------------------------------------------------------------- the command that resumes


def _continue_with(stderr: str) -> list[str]:
    """The command of a stop message ("... continue with: CMD"), as the shell splits it."""
    lines = [line for line in stderr.splitlines() if "continue with: " in line]
    assert len(lines) == 1, stderr
    return shlex.split(lines[0].split("continue with: ", 1)[1])


def _runnable(command: list[str]) -> list[str]:
    """`command` as a child process can run it: `banglaocr` is this venv's console script."""
    if command[0] == "banglaocr":
        return [str(Path(sys.executable).with_name("banglaocr")), *command[1:]]
    if command[0] == "python":
        return [sys.executable, *command[1:]]
    return command


def _logged_steps(folder: Path) -> int:
    try:
        return len(helpers.log_rows(folder))
    except (OSError, ValueError):  # not written yet, or its last line half-written
        return 0


@pytest.mark.slow  # two children (about 30 s); test_a_run_started_from_python... runs its command in the default run
def test_the_ctrl_c_message_prints_a_command_that_resumes_the_run(tmp_path):
    """A CLI run into its own --output-dir, stopped by Ctrl-C: the printed command, run from another folder,
    resumes it (from the checkpoint of the step reached) and finishes it."""
    out = tmp_path / "run"
    steps = 60
    args = ("train.max_steps=60", "train.save_steps=0", "lora.r=4", "lora.alpha=8")
    log = (tmp_path / "child.log").open("w")
    child = subprocess.Popen(helpers.cli_command(out, *args), env=helpers.subprocess_env(), stdout=subprocess.DEVNULL,
                             stderr=log)
    try:
        deadline = time.monotonic() + 180
        while _logged_steps(out) < 2:
            assert child.poll() is None and time.monotonic() < deadline, "no step logged"
            time.sleep(0.01)
        child.send_signal(signal.SIGINT)
        code = child.wait(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
        log.close()
    said = (tmp_path / "child.log").read_text(encoding="utf-8")
    assert code == 130, said
    command = _continue_with(said)
    assert command[-2:] == ["--resume", "auto"] and str(out) in command
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    resumed = subprocess.run(_runnable(command), cwd=elsewhere, env=helpers.subprocess_env(), capture_output=True,
                             text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    assert "resumedfrom" in "".join(resumed.stdout.split())
    assert json.loads((out / "summary.json").read_text())["steps"] == steps


def test_a_run_started_from_python_prints_a_command_that_resumes_it(tmp_path, monkeypatch):
    """`run_training` from a notebook or a script (no `banglaocr train` command line to repeat): the command
    trains the run's saved recipe in the run folder - and does resume it."""
    out = tmp_path / "mine"
    sigterm_after_step(monkeypatch, 2, signal.SIGINT)
    result = invoke_train(out, "train.max_steps=4")
    assert result.exit_code == 130, result.output
    command = _continue_with(result.stderr)
    assert command == ["banglaocr", "train", "--recipe", str(out / "recipe.yaml"), "--output-dir", str(out),
                       "--resume", "auto"]
    monkeypatch.undo()
    resumed = subprocess.run(_runnable(command), cwd=tmp_path, env=helpers.subprocess_env(), capture_output=True,
                             text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    assert [row["step"] for row in helpers.log_rows(out)] == [1, 2, 3, 4]


def test_a_two_process_run_says_done_once(tmp_path):
    out = tmp_path / "run"
    torchrun = Path(sys.executable).with_name("torchrun")
    command = [str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "banglaocr", "train", "--recipe",
               "cpu_demo", "-o", str(out), *helpers.overrides("train.max_steps=1")]
    result = subprocess.run(command, env={**helpers.subprocess_env(), "ACCELERATE_USE_CPU": "1"},
                            capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert json.loads((out / "summary.json").read_text())["processes"] == 2
    assert result.stdout.count("done: ") == 1, result.stdout


# --------------------------------------------------------------------------- file modes


def _modes(folder: Path) -> set[tuple[str, int]]:
    return {("dir" if p.is_dir() else "file", p.stat().st_mode & 0o777) for p in [folder, *folder.rglob("*")]
            if not p.is_symlink()}


def test_what_train_and_merge_lora_write_has_the_mode_of_the_umask(tmp_path):
    """safetensors writes its files 0600; a model folder for others to read gets 0644 / 0755 (umask 022)."""
    previous = os.umask(0o022)
    try:
        out = tmp_path / "run"
        helpers.train(out, "lora.r=4", "lora.alpha=8", "train.max_steps=2")
        merged = tmp_path / "merged"
        with helpers.one_thread():
            result = runner.invoke(app, ["merge-lora", "--adapter", str(out), "--out", str(merged)])
        assert result.exit_code == 0, result.output
    finally:
        os.umask(previous)
    assert (merged / "model.safetensors").stat().st_mode & 0o777 == 0o644
    for folder in (out / "final", out / "checkpoints" / "step-2", merged):
        assert any(p.suffix == ".safetensors" for p in folder.rglob("*")), folder
        assert _modes(folder) <= {("dir", 0o755), ("file", 0o644)}, (folder, _modes(folder))


def test_atomic_writes_follow_any_umask(tmp_path):
    import torch
    from safetensors.torch import save_file

    from banglaocr.files import atomic_folder, atomic_write

    previous = os.umask(0o027)
    try:
        atomic_write(tmp_path / "w.safetensors", lambda tmp: save_file({"w": torch.zeros(2)}, str(tmp)))
        with atomic_folder(tmp_path / "model") as tmp:
            (tmp / "sub").mkdir()
            save_file({"w": torch.zeros(2)}, str(tmp / "sub" / "model.safetensors"))
    finally:
        os.umask(previous)
    assert (tmp_path / "w.safetensors").stat().st_mode & 0o777 == 0o640
    assert _modes(tmp_path / "model") == {("dir", 0o750), ("file", 0o640)}


# --------------------------------------------------------------------------- the synth page's examples


def _synth_examples() -> list[list[str]]:
    """The `banglaocr synth` commands of docs/commands/synth.md's bash blocks, as the shell splits them."""
    text = (ROOT / "docs" / "commands" / "synth.md").read_text(encoding="utf-8")
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words[:2] == ["banglaocr", "synth"]:
                commands.append(words)
    return commands


def test_the_synth_examples_name_files_that_exist_and_run(tmp_path):
    """Every --words / --fonts of the examples is in the repository, and those examples run as written (only
    --out goes to a scratch folder and --n is cut to 40 images, for time)."""
    named = [command for command in _synth_examples() if "--words" in command or "--fonts" in command]
    assert len(named) >= 2
    for index, command in enumerate(named):
        for option in ("--words", "--fonts"):
            if option in command:
                assert (ROOT / command[command.index(option) + 1]).exists(), (option, command)
        args = command[2:]
        args[args.index("--out") + 1] = str(tmp_path / f"out{index}")
        args[args.index("--n") + 1] = "40"
        cwd = os.getcwd()
        os.chdir(ROOT)  # the paths are the repository's, as the page runs them from its root
        try:
            result = runner.invoke(app, ["synth", *args])
        finally:
            os.chdir(cwd)
        assert result.exit_code == 0, (command, result.output)
        assert json.loads((tmp_path / f"out{index}" / "synth.json").read_text())
