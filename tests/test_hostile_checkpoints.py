"""Crafted checkpoints (tests/hostile_round2/checkpoints.py): a consistent state.json over contents that lie
is refused before anything is loaded - exit 2, one line naming the file, what is wrong and the earlier
checkpoint to resume instead; never a traceback, nothing of the run folder changed, no code run.

Each case copies a real tiny run (checkpoints step-2 and step-4), lets one generator break step-4, reseals
its manifest and runs `banglaocr train --resume auto` in this process. A representative case of each kind
runs by default; the whole corpus with `-m slow`.
"""

from __future__ import annotations

import shutil
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

import train_helpers as helpers
from banglaocr.cli import app
from hostile_round2 import checkpoints as crafted

runner = CliRunner()


@pytest.fixture(scope="module")
def good_runs(tmp_path_factory):
    """The good tiny runs, trained on first use (a full fine-tune only for the cases that need one)."""
    made: dict[str, Path] = {}

    def get(variant: str) -> Path:
        if variant not in made:
            made[variant] = crafted.good_run(tmp_path_factory.mktemp(f"good-{variant}") / "run", variant)
        return made[variant]
    return get


def snapshot(out: Path) -> dict[str, bytes]:
    """The bytes of every regular file a resume could touch (checkpoints, metrics, best/, final/)."""
    files = {}
    for path in sorted(out.rglob("*")):
        if stat.S_ISREG(path.lstat().st_mode) and path.relative_to(out).parts[0] in (
                "checkpoints", "metrics.jsonl", "best", "final", "summary.json"):
            files[path.relative_to(out).as_posix()] = path.read_bytes()
    return files


def resume(out: Path, variant: str):
    return runner.invoke(app, ["train", "--recipe", "cpu_demo", "-o", str(out),
                               *helpers.overrides(*crafted.run_args(variant)), "--resume", "auto"])


def crafted_copy(good: Path, tmp_path: Path, craft, reseal: bool = True) -> tuple[Path, Path]:
    out = tmp_path / "run"
    shutil.copytree(good, out, symlinks=True)
    newest = out / "checkpoints" / "step-4"
    craft(newest)
    if reseal:
        crafted.reseal(newest)
    return out, newest


def the_error_line(result) -> str:
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit) and "Traceback" not in result.output, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and result.output.rstrip().endswith(errors[0]), result.output
    return errors[0]


CASES = [name if case.fast else pytest.param(name, marks=pytest.mark.slow)
         for name, case in crafted.CASES.items()]


@pytest.mark.parametrize("name", CASES)
def test_a_crafted_checkpoint_is_refused_in_one_line(name, good_runs, tmp_path):
    case = crafted.CASES[name]
    out, newest = crafted_copy(good_runs(case.variant), tmp_path, case.craft, case.reseal)
    before = snapshot(out)
    with helpers.one_thread():
        line = the_error_line(resume(out, case.variant))
    assert f"{newest / case.file}:" in line and case.says in line, line
    if case.hint:
        assert line.endswith(f"resume from the earlier checkpoint instead: --resume {out / 'checkpoints' / 'step-2'}")
    assert snapshot(out) == before  # nothing half-resumed, nothing written over
    assert not (out / crafted.MARKER).exists()


def test_nan_weights_without_an_earlier_checkpoint_say_to_start_anew(good_runs, tmp_path):
    out, newest = crafted_copy(good_runs("lora"), tmp_path, crafted.adapter_weights_nan)
    shutil.rmtree(out / "checkpoints" / "step-2")
    with helpers.one_thread():
        line = the_error_line(resume(out, "lora"))
    assert f"{newest / crafted.ADAPTER}:" in line and "NaN or infinite values" in line
    assert line.endswith("there is no earlier checkpoint: start a new run (another --output-dir, or --overwrite)")


def test_the_earlier_checkpoint_named_resumes_exactly(good_runs, tmp_path):
    """Following the line's advice (--resume step-2) continues to the uncrafted run's final weights."""
    good = good_runs("lora")
    out, _ = crafted_copy(good, tmp_path, crafted.adapter_weights_nan)
    summary = helpers.train(out, *crafted.RUN_ARGS, resume=str(out / "checkpoints" / "step-2"))
    assert summary["steps"] == crafted.STEPS
    assert helpers.max_abs_diff(helpers.trainable(out / "checkpoints" / "step-4"),
                                helpers.trainable(good / "checkpoints" / "step-4")) == 0.0
