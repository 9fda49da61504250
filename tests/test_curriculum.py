"""The curriculum (`data.curriculum`): the schema, the stage selection, the smoothed loss and the advance
rule, and real tiny runs - a two-stage run changes stage where the rule says, trains each stage only on
its samples, logs `curriculum_stage`, resumes EXACTLY across the stage change, and changes stage at the
same step on every process of a DDP launch.

`data.curriculum: null` (the default) is covered by the existing training tests, which run unchanged;
`test_one_stage_over_everything_is_the_plain_run` checks the curriculum machinery itself adds nothing.
"""

from __future__ import annotations

import dataclasses
import io
import json
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import train_helpers as helpers
from banglaocr.config import AugmentConfig, CurriculumStage, field_docs, recipe_from_dict
from banglaocr.data.sources import Record
from banglaocr.errors import UserError
from banglaocr.train.curriculum import (
    EMA_DECAY,
    CurriculumState,
    scaled_augment,
    should_advance,
    smoothed_loss,
    stage_indices,
    stage_seed,
)
from banglaocr.train.loop import TrainingInterrupted
from banglaocr.train.progress import MetricsLog

TOLERANCE = 1e-6


# --------------------------------------------------------------------------- schema


def recipe_with(curriculum):
    return recipe_from_dict({"model": {"name_or_path": "t"}, "data": {"source": "synth", "curriculum": curriculum}})


def test_every_stage_key_has_a_docstring_and_null_is_the_default():
    """The recipe-wide docstring test does not look inside lists of sections: check the stage here."""
    docs = field_docs(CurriculumStage)
    assert all(docs.get(f.name) for f in dataclasses.fields(CurriculumStage))
    assert recipe_with(None).data.curriculum is None


def test_a_curriculum_is_read_from_yaml_and_overrides():
    recipe = recipe_with([{"max_chars": 3, "fonts": ["A", "B"], "augment_strength": 0.2, "advance_loss": "1e0",
                           "min_steps": 100}, {"max_chars": 5, "max_steps": 50}, {}])
    first, second, last = recipe.data.curriculum
    assert (first.max_chars, first.fonts, first.augment_strength, first.advance_loss, first.min_steps) == \
        (3, ["A", "B"], 0.2, 1.0, 100)
    assert second.max_steps == 50 and last == CurriculumStage()
    from banglaocr.config import load_recipe

    loaded = load_recipe("cpu_demo", ["data.curriculum=[{max_chars: 3, advance_loss: 1.0}, {}]"])
    assert [s.max_chars for s in loaded.data.curriculum] == [3, None]


@pytest.mark.parametrize("curriculum, message", [
    ([], "'data.curriculum': must hold at least one stage"),
    ([{"max_chars": 0}], "'data.curriculum[0].max_chars': must be > 0"),
    ([{"advance_loss": 1.0}, {"augment_strength": 1.5}], "'data.curriculum[1].augment_strength': must be in [0, 1]"),
    ([{"fonts": []}], "'data.curriculum[0].fonts': must list at least one font"),
    ([{"min_steps": 10, "max_steps": 5}], "'data.curriculum[0].max_steps': must be >= 1 and >= min_steps"),
    ([{"max_char": 3}], "unknown recipe key 'data.curriculum[0].max_char' (did you mean 'max_chars'?)"),
    ([3], "'data.curriculum[0]': expected a mapping"),
    ([{"max_chars": 3}, {}], "stage [0] sets neither advance_loss nor max_steps"),
    ("short", "'data.curriculum': expected list of mapping | null"),
])
def test_bad_stages_are_one_line_naming_the_key(curriculum, message):
    with pytest.raises(UserError) as err:
        recipe_with(curriculum)
    assert message in str(err.value) and "\n" not in str(err.value)


# --------------------------------------------------------------------------- pure parts


RECORDS = [Record("a", "ক", None, meta={"font": "Sans"}), Record("b", "কলম", None, meta={"font": "Serif"}),
           Record("c", "বাংলাদেশ", None, meta={"font": "Sans"}), Record("d", "জল", None, meta={"font": "Bold"})]


def test_stage_indices_filter_by_length_and_font():
    assert stage_indices(RECORDS, CurriculumStage(), 0) == [0, 1, 2, 3]
    assert stage_indices(RECORDS, CurriculumStage(max_chars=3), 0) == [0, 1, 3]
    assert stage_indices(RECORDS, CurriculumStage(fonts=["Sans", "Bold"]), 0) == [0, 2, 3]
    assert stage_indices(RECORDS, CurriculumStage(max_chars=2, fonts=["Sans"]), 0) == [0]


@pytest.mark.parametrize("records, stage, message", [
    ([Record("x", "ক", None)], CurriculumStage(fonts=["Sans"]), "data.curriculum[2].fonts: the training samples record no font"),
    (RECORDS, CurriculumStage(fonts=["Sans", "Lohit"]), "data.curriculum[2].fonts: no training sample is in Lohit (training fonts: Bold, Sans, Serif)"),
    (RECORDS, CurriculumStage(max_chars=1, fonts=["Serif"]), "data.curriculum[2]: selects no training sample"),
])
def test_a_stage_that_selects_nothing_is_an_error_not_an_empty_stream(records, stage, message):
    with pytest.raises(UserError, match="^" + message.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(")
                       .replace(")", r"\)")):
        stage_indices(records, stage, 2)


def test_smoothed_loss_is_an_ema_restarted_per_stage():
    ema = None
    for loss in (4.0, 2.0, float("inf"), 1.0):
        ema = smoothed_loss(ema, loss)
    expected = EMA_DECAY * (EMA_DECAY * 4.0 + (1 - EMA_DECAY) * 2.0) + (1 - EMA_DECAY) * 1.0  # inf is skipped
    assert ema == pytest.approx(expected)
    state = CurriculumState().after_step(3.0).after_step(1.0)
    assert state.steps == 2 and state.loss_ema == pytest.approx(EMA_DECAY * 3.0 + (1 - EMA_DECAY) * 1.0)
    assert state.advanced() == CurriculumState(stage=1, steps=0, loss_ema=None)


def test_advance_rule_min_steps_threshold_max_steps_and_last_stage():
    stages = [CurriculumStage(advance_loss=1.0, min_steps=10), CurriculumStage(advance_loss=0.8, max_steps=30),
              CurriculumStage(advance_loss=5.0, max_steps=1)]

    def advances(stage, steps, ema):
        return should_advance(stages, CurriculumState(stage, steps, ema))

    assert not advances(0, 9, 0.1)   # min_steps first, however low the loss
    assert advances(0, 10, 0.99)
    assert not advances(0, 10, 1.0)  # strictly below the threshold
    assert not advances(0, 10, None)
    assert not advances(1, 29, 0.9) and advances(1, 30, 0.9) and advances(1, 1, 0.7)  # max_steps, or the loss
    assert not advances(2, 100, 0.1)  # the last stage stays


def test_scaled_augment_scales_every_magnitude_and_the_probability():
    full = AugmentConfig(probability=0.8, rotate_degrees=3, shear=0.2, scale=0.1, elastic_alpha=2, blur_sigma=1,
                         noise_std=0.04, stroke_width=2, contrast=0.2, baseline_wobble=3, ink_texture=0.6,
                         paper_texture=0.4)
    assert scaled_augment(full, 1.0) is full
    clean = scaled_augment(full, 0.0)
    numeric = [f.name for f in dataclasses.fields(AugmentConfig) if f.name != "enabled"]
    assert all(getattr(full, name) > 0 for name in numeric), "give every setting a value in this test"
    assert all(getattr(clean, name) == 0 for name in numeric) and clean.enabled
    half = scaled_augment(full, 0.5)
    assert half.probability == pytest.approx(0.4) and half.stroke_width == 1 and half.baseline_wobble == 1.5


def test_a_checkpoint_from_a_longer_curriculum_is_refused():
    with pytest.raises(UserError, match=r"stage \[2\], but data.curriculum has only 2 stages"):
        CurriculumState.from_dict({"stage": 2, "steps": 0, "loss_ema": None}, [CurriculumStage()] * 2)
    assert CurriculumState.from_dict(None, [CurriculumStage()]) == CurriculumState()


def test_stage_seeds_differ_and_the_first_is_the_run_seed():
    assert stage_seed(3, 0) == 3 and len({stage_seed(3, i) for i in range(5)}) == 5


# --------------------------------------------------------------------------- tiny runs


STEPS = 10
CHANGE = 4  # min_steps of stage 0; its advance_loss is far above any loss, so it ends after exactly 4 steps
SHORT = 5   # stage 0: labels of at most 5 characters ...


def train_records() -> list[dict]:
    lines = (helpers.synth_dir() / "train" / "metadata.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def stage0_fonts() -> list[str]:
    """... in every training font but one that short words use (so both filters really drop samples)."""
    fonts = sorted({row["font"] for row in train_records() if len(row["text"]) <= SHORT})
    assert len(fonts) >= 3, fonts
    return fonts[1:]


def curriculum_args(min_steps: int = CHANGE) -> tuple[str, ...]:
    fonts = ", ".join(stage0_fonts())
    stages = (f"[{{max_chars: {SHORT}, fonts: [{fonts}], augment_strength: 0.5, advance_loss: 1000.0, "
              f"min_steps: {min_steps}}}, {{augment_strength: 1.0}}]")
    # Augmentation on every image, the handwriting effects included: the augmentation RNG is state that
    # resume must restore, and the stage's strength changes what it draws.
    return (f"data.curriculum={stages}", "augment.enabled=true", "augment.probability=1.0",
            "augment.baseline_wobble=2.0", "augment.ink_texture=0.5", "augment.paper_texture=0.3",
            f"train.max_steps={STEPS}", "train.scheduler=cosine", "train.warmup_steps=2")


def final_weights(output_dir: Path) -> dict:
    return helpers.trainable(output_dir / "checkpoints" / f"step-{STEPS}")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted two-stage run, checkpoints every 2 steps (all kept), recording which samples
    each step read and what the console said."""
    from rich.console import Console

    from banglaocr.train import batches, loop

    out = tmp_path_factory.mktemp("curriculum") / "run"
    seen: list[str] = []
    probabilities: list[float] = []
    original_item, original_finish = batches.WordImages.__getitem__, loop.finish_batch_on_device

    def recording_item(self, index):
        seen.append(self.records[index].id)
        return original_item(self, index)

    def recording_finish(batch, device, augment_cfg=None, generator=None):
        if augment_cfg is not None:  # training batches (evaluation passes None)
            probabilities.append(augment_cfg.probability)
        return original_finish(batch, device, augment_cfg, generator)

    console = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, helpers.one_thread():
        patch.setattr(batches.WordImages, "__getitem__", recording_item)
        patch.setattr(loop, "finish_batch_on_device", recording_finish)  # the name the training step calls
        recipe = helpers.tiny_recipe(*curriculum_args(), "train.save_steps=2", "train.keep_last=100")
        loop.run_training(recipe, out, console=Console(file=console, width=200))
    return {"out": out, "seen": seen, "console": console.getvalue(), "recipe": recipe,
            "probabilities": probabilities}


def test_a_two_stage_run_trains_each_stage_on_its_samples_and_logs_the_stage(reference):
    from banglaocr.data.sources import load_splits, resolve_source

    rows = helpers.log_rows(reference["out"])
    assert [row["step"] for row in rows] == list(range(1, STEPS + 1))
    assert [row["curriculum_stage"] for row in rows] == [0] * CHANGE + [1] * (STEPS - CHANGE)
    assert all(isinstance(row["curriculum_loss"], float) for row in rows)

    records = {r.id: r for r in load_splits(resolve_source(reference["recipe"].data, reference["out"])).train}
    batch = reference["recipe"].train.batch_size
    first, later = reference["seen"][:CHANGE * batch], reference["seen"][CHANGE * batch:]
    fonts = set(stage0_fonts())
    assert all(len(records[i].text) <= SHORT and records[i].meta["font"] in fonts for i in first)
    assert any(len(records[i].text) > SHORT or records[i].meta["font"] not in fonts for i in later)
    # Stage 0 augments at half strength (probability 1.0 x 0.5), stage 1 as configured.
    assert reference["probabilities"] == [0.5] * CHANGE + [1.0] * (STEPS - CHANGE)

    text = " ".join(reference["console"].split())
    assert "curriculum stage [0] of 2:" in text and f"step {CHANGE}: curriculum stage [0] done after {CHANGE} steps" in text
    assert "curriculum stage [1] of 2:" in text
    saved = json.loads((reference["out"] / "checkpoints" / f"step-{CHANGE}" / "state.json").read_text())
    assert saved["step"] == CHANGE


@pytest.mark.parametrize("start", [2, CHANGE, 6])
def test_resume_before_at_and_after_the_stage_change_is_exact(reference, tmp_path, start):
    """Resumed from the reference's checkpoint of step 2 (stage 0), 4 (the step that changed stage) or 6
    (stage 1), a run ends with the uninterrupted run's weights and logs the same stages."""
    out = tmp_path / "continued"
    checkpoint = reference["out"] / "checkpoints" / f"step-{start}"
    summary = helpers.train(out, *curriculum_args(), "train.save_steps=2", resume=str(checkpoint))
    assert summary["steps"] == STEPS
    assert helpers.max_abs_diff(final_weights(out), final_weights(reference["out"])) <= TOLERANCE
    mine = {row["step"]: row for row in helpers.log_rows(out)}
    theirs = {row["step"]: row for row in helpers.log_rows(reference["out"])}
    assert sorted(mine) == list(range(start + 1, STEPS + 1))
    for step, row in mine.items():
        assert row["curriculum_stage"] == theirs[step]["curriculum_stage"]
        assert row["curriculum_loss"] == pytest.approx(theirs[step]["curriculum_loss"], abs=1e-9)


def test_sigterm_at_the_stage_change_then_resume_auto_is_exact(reference, tmp_path, monkeypatch):
    """SIGTERM right after the step that changed stage: the next step has already drawn its micro-batch
    from the NEW stage's stream; it is given back, and the resumed run draws it again."""
    assert threading.current_thread() is threading.main_thread()
    original = MetricsLog.write

    def write(self, row):
        original(self, row)
        if row["step"] == CHANGE and "samples_per_s" in row:
            signal.raise_signal(signal.SIGTERM)

    monkeypatch.setattr(MetricsLog, "write", write)
    out = tmp_path / "run"
    with pytest.raises(TrainingInterrupted):
        helpers.train(out, *curriculum_args(), "train.save_steps=0")
    monkeypatch.undo()
    state = json.loads((out / "checkpoints" / f"step-{CHANGE}" / "state.json").read_text())
    assert state["step"] == CHANGE
    helpers.train(out, *curriculum_args(), "train.save_steps=0", resume="auto")
    assert helpers.max_abs_diff(final_weights(out), final_weights(reference["out"])) <= TOLERANCE
    assert [row["step"] for row in helpers.log_rows(out)] == list(range(1, STEPS + 1))


def test_one_stage_over_everything_is_the_plain_run(tmp_path):
    """A single stage with every sample at strength 1 trains exactly like `data.curriculum: null`: the
    machinery (stream, seed, augmentation, the per-step loss read) changes nothing by itself."""
    common = ("augment.enabled=true", "augment.probability=1.0", "train.max_steps=4")
    plain, staged = tmp_path / "plain", tmp_path / "staged"
    helpers.train(plain, *common)
    helpers.train(staged, *common, "data.curriculum=[{augment_strength: 1.0}]")
    assert helpers.max_abs_diff(helpers.trainable(plain / "checkpoints" / "step-4"),
                                helpers.trainable(staged / "checkpoints" / "step-4")) == 0.0
    assert [r["loss"] for r in helpers.log_rows(plain)] == [r["loss"] for r in helpers.log_rows(staged)]


@pytest.mark.slow  # two processes, over 12 s on 2 cores: in .ci/run's second step
def test_ddp_ranks_change_stage_together_and_match_one_process(tmp_path):
    """Two gloo processes: bit-identical weights on both ranks, the stage change at the same step as a
    one-process run that sees the same micro-batches (batch 4 x accumulation 2), and the same weights
    up to float reduction order. Stage 0 ends on its loss threshold (not on a step count), so the
    all-reduced loss really decides: the threshold is set between the smoothed losses of steps 5 and 6
    of a one-process probe over the same micro-batches."""
    common = ("augment.enabled=false", "train.max_steps=12", "train.save_steps=0")
    probe = tmp_path / "probe"
    helpers.train(probe, *common, "train.grad_accum_steps=2",
                  f"data.curriculum=[{{max_chars: {SHORT}, max_steps: 10}}, {{}}]")
    smoothed = {row["step"]: row["curriculum_loss"] for row in helpers.log_rows(probe)}
    assert smoothed[4] > smoothed[5] > smoothed[6], smoothed  # the loss falls: the threshold is crossed once
    threshold = (smoothed[5] + smoothed[6]) / 2
    args = (*common, f"data.curriculum=[{{max_chars: {SHORT}, advance_loss: {threshold!r}, min_steps: 2}}, {{}}]")

    out, dump = tmp_path / "ddp", tmp_path / "ranks"
    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**helpers.subprocess_env(), "ACCELERATE_USE_CPU": "1"}
    command = [str(torchrun), "--standalone", "--nproc_per_node", "2", str(Path(__file__).with_name("ddp_worker.py")),
               str(out), str(dump), *helpers.overrides(*args, "train.grad_accum_steps=1")]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rank0, rank1 = (helpers.trainable_file(dump / f"rank{r}.safetensors") for r in (0, 1))
    assert helpers.max_abs_diff(rank0, rank1) == 0.0

    single = tmp_path / "single"
    helpers.train(single, *args, "train.grad_accum_steps=2")
    expected = [0] * 6 + [1] * 6
    assert [row["curriculum_stage"] for row in helpers.log_rows(single)] == expected
    assert [row["curriculum_stage"] for row in helpers.log_rows(out)] == expected
    assert helpers.max_abs_diff(rank0, helpers.trainable(single / "checkpoints" / "step-12")) <= 1e-5
