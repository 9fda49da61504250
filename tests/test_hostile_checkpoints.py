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


# --------------------------------------------------------------------------- states the tiny run does not have


def test_a_curriculum_position_out_of_range_is_named():
    from banglaocr.config import CurriculumStage
    from banglaocr.train.loop import RunState
    from banglaocr.train.resume_state import run_state_problem

    stages = [CurriculumStage(), CurriculumStage()]
    saved = {"step": 6, "batches_consumed": 2, "curriculum": {"stage": 1, "steps": 1, "loss_ema": 0.5}}
    assert run_state_problem(saved, RunState, 6, 1, 4, stages) is None
    saved["curriculum"]["stage"] = 5
    assert run_state_problem(saved, RunState, 6, 1, 4, stages) == (
        "run_state.curriculum.stage is 5; data.curriculum has stages 0-1")
    saved["curriculum"] = {"stage": 1, "steps": 1, "loss_ema": 0.5, "epoch": 3}
    assert "run_state.curriculum holds" in run_state_problem(saved, RunState, 6, 1, 4, stages)
    saved = {"step": 6, "batches_consumed": 7, "curriculum": None}  # more than 6 steps can draw
    assert "batches_consumed is 7: not a whole number of steps" in run_state_problem(saved, RunState, 6, 1, 4, stages)


def test_an_fp16_scaler_state_is_checked_against_the_scaler():
    import torch

    from banglaocr.train.resume_state import scaler_problem

    template = torch.amp.GradScaler("cpu").state_dict()
    assert scaler_problem(dict(template), template) is None and scaler_problem(None, template) is None
    assert scaler_problem({**template, "scale": 0.0}, template) == "scaler.scale is 0.0: not positive"
    assert scaler_problem({**template, "scale": float("inf")}, template) == "scaler.scale is inf: not finite"
    assert scaler_problem({**template, "growth_interval": 2.5}, template) == (
        "scaler.growth_interval is 2.5: not a whole number")
    assert scaler_problem({"scale": 1.0}, template).startswith("its GradScaler state is not {")


def test_a_bitsandbytes_optimizer_state_is_checked_inside_its_quant_table():
    bnb = pytest.importorskip("bitsandbytes")
    import torch

    from banglaocr.train.resume_state import optimizer_problem

    model = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.Linear(128, 2))
    optimizer = bnb.optim.AdamW8bit(model.parameters())
    model(torch.ones(1, 64)).sum().backward()
    optimizer.step()
    assert optimizer_problem(optimizer.state_dict(), optimizer, step=1) is None
    saved = optimizer.state_dict()
    saved["state"][0]["__bnb_optimizer_quant_state__"]["state1"] = torch.zeros(3, dtype=torch.uint8)
    assert optimizer_problem(saved, optimizer, step=1) == (
        "optimizer.state[0].__bnb_optimizer_quant_state__.state1 has the shape [3], its parameter [128, 64]")
