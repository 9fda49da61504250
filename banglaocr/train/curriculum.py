"""The training curriculum (`data.curriculum`): which samples each stage trains on, and when it moves on.

A tiny model trained from scratch learns to read far sooner when it starts on short items in a few
clean fonts with mild augmentation and moves on to longer words, more fonts and full augmentation as
its loss falls. This module holds the pure parts; the training loop calls them once per optimizer step:

- `stage_indices`: the training samples of a stage (label length, fonts); an empty selection is a
  `UserError` naming the stage, never a silent empty stream.
- `smoothed_loss`: an exponential moving average of the step loss, `EMA_DECAY` per optimizer step,
  restarted at every stage (a new stage's loss starts higher; the old average would say "done").
- `should_advance`: the rule - at least `min_steps` in the stage, then the smoothed loss below
  `advance_loss`, or `max_steps` reached; the last stage never advances.
- `scaled_augment`: the `augment` section at a stage's `augment_strength`.
- `CurriculumState`: stage, steps in the stage and the smoothed loss - saved in checkpoints, so a
  resumed run takes the same decisions at the same steps.

Each stage gets its own data stream (`stage_seed`): the loop restarts a `BatchStream` over the
stage's samples at micro-batch 0, so the order after a stage change depends only on the stage,
never on how many batches an earlier stage used.

>>> from banglaocr.config import CurriculumStage
>>> from banglaocr.data.sources import Record
>>> records = [Record("a", "ক", None, meta={"font": "X"}), Record("b", "কলম", None, meta={"font": "Y"}),
...            Record("c", "কলমদানি", None, meta={"font": "X"})]
>>> stages = [CurriculumStage(max_chars=3, fonts=["X", "Y"], advance_loss=1.0, min_steps=2), CurriculumStage()]
>>> stage_indices(records, stages[0], 0), stage_indices(records, stages[1], 1)
([0, 1], [0, 1, 2])
>>> state = CurriculumState()
>>> for loss in (2.0, 0.5, 0.4):
...     state = state.after_step(loss)
>>> state.steps, round(state.loss_ema, 4), should_advance(stages, state)
(3, 1.8487, False)
>>> should_advance(stages, CurriculumState(stage=0, steps=2, loss_ema=0.9))
True
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from banglaocr.config import AugmentConfig, CurriculumStage
from banglaocr.errors import UserError

EMA_DECAY = 0.95
"""Weight of the old smoothed loss at each optimizer step: the average spans about 1 / (1 - 0.95) =
20 steps (a half-life of 13.5 steps) - long enough that one lucky batch does not end a stage,
short enough to follow a loss that falls over a few hundred steps."""

_UNSCALED_AUGMENT = ("enabled",)
"""`augment` keys that `scaled_augment` leaves alone; every other one is a magnitude or a probability."""


def stage_key(index: int) -> str:
    """The recipe key of stage `index`, as errors name it.

    >>> stage_key(2)
    'data.curriculum[2]'
    """
    return f"data.curriculum[{index}]"


def stage_indices(records: Sequence[Any], stage: CurriculumStage, index: int) -> list[int]:
    """Positions in `records` (training `Record`s) that stage `index` trains on, in record order.

    Raises `UserError` (naming the stage) when the stage selects nothing, when it names fonts
    that no training sample has, or when it filters by font on data that records no fonts.

    >>> from banglaocr.data.sources import Record
    >>> stage_indices([Record("a", "কলম", None)], CurriculumStage(fonts=["X"]), 0)
    Traceback (most recent call last):
    ...
    banglaocr.errors.UserError: data.curriculum[0].fonts: the training samples record no font (only synthetic data does); set fonts: null
    """
    chosen = list(range(len(records)))
    if stage.fonts is not None:
        known = sorted({r.meta.get("font") for r in records if r.meta.get("font")})
        if not known:
            # Without this check every sample would be filtered out and the error below would blame
            # the stage's selection, not the data.
            raise UserError(f"{stage_key(index)}.fonts: the training samples record no font (only synthetic "
                            "data does); set fonts: null")
        unknown = [name for name in stage.fonts if name not in known]
        if unknown:
            raise UserError(f"{stage_key(index)}.fonts: no training sample is in {', '.join(unknown)} "
                            f"(training fonts: {', '.join(known)})")
        wanted = set(stage.fonts)
        chosen = [i for i in chosen if records[i].meta.get("font") in wanted]
    if stage.max_chars is not None:
        chosen = [i for i in chosen if len(records[i].text) <= stage.max_chars]
    if not chosen:
        raise UserError(f"{stage_key(index)}: selects no training sample (max_chars {stage.max_chars}, "
                        f"fonts {stage.fonts or 'all'}); raise max_chars or add fonts")
    return chosen


def stage_seed(seed: int, index: int) -> int:
    """Seed of the data order of stage `index`: `seed` itself for the first stage (a one-stage
    curriculum over every sample at strength 1 is exactly the run without one), then distinct per
    stage, so a stage over the same samples as an earlier one does not replay its order.

    >>> stage_seed(5, 0), stage_seed(5, 1) != stage_seed(5, 2) != 5
    (5, True)
    """
    return seed if index == 0 else seed * 1_000 + 7_919 * index


def smoothed_loss(previous: float | None, loss: float, decay: float = EMA_DECAY) -> float | None:
    """The next value of the moving average: the first loss of a stage starts it; a non-finite loss
    (an optimizer step skipped for overflow) leaves it as it was.

    >>> smoothed_loss(None, 2.0), smoothed_loss(2.0, 1.0, decay=0.5), smoothed_loss(2.0, float("nan"))
    (2.0, 1.5, 2.0)
    """
    if not math.isfinite(loss):
        return previous
    if previous is None:
        return float(loss)
    return decay * previous + (1.0 - decay) * float(loss)


def should_advance(stages: Sequence[CurriculumStage], state: CurriculumState) -> bool:
    """Whether the run moves from `state.stage` to the next stage now.

    `max_steps` in the stage moves on whatever the loss; otherwise at least `min_steps` (and one)
    steps, then a smoothed loss below `advance_loss`. The last stage never moves on.

    >>> stages = [CurriculumStage(advance_loss=1.0, min_steps=5, max_steps=50), CurriculumStage()]
    >>> [should_advance(stages, CurriculumState(0, steps, ema)) for steps, ema in ((4, 0.5), (5, 0.5), (5, 1.0), (50, 3.0))]
    [False, True, False, True]
    """
    if state.stage >= len(stages) - 1:
        return False
    stage = stages[state.stage]
    if stage.max_steps is not None and state.steps >= stage.max_steps:
        return True
    return (stage.advance_loss is not None and state.steps >= max(stage.min_steps, 1)
            and state.loss_ema is not None and state.loss_ema < stage.advance_loss)


def scaled_augment(cfg: AugmentConfig, strength: float) -> AugmentConfig:
    """`cfg` with every magnitude and the probability times `strength` (integer radii rounded).

    1 returns `cfg` itself (the augmentation stream is exactly the configured one); 0 is clean images.

    >>> weak = scaled_augment(AugmentConfig(probability=0.8, rotate_degrees=3.0, stroke_width=2), 0.5)
    >>> weak.probability, weak.rotate_degrees, weak.stroke_width, weak.enabled
    (0.4, 1.5, 1, True)
    """
    if strength == 1.0:
        return cfg
    changes = {}
    for name, annotation in typing.get_type_hints(AugmentConfig).items():
        if name in _UNSCALED_AUGMENT:
            continue
        value = getattr(cfg, name) * strength
        # By the schema's type, not the value's: `rotate_degrees=3` given from Python is still a float setting.
        changes[name] = round(value) if annotation is int else float(value)
    return dataclasses.replace(cfg, **changes)


def describe_stage(stage: CurriculumStage, index: int, total: int, samples: int) -> str:
    """One line about a stage, for the console.

    Stages go by their index in `data.curriculum` (as in errors and the `curriculum_stage` of metrics rows).

    >>> describe_stage(CurriculumStage(max_chars=3, fonts=["A", "B"], augment_strength=0.3, advance_loss=1.0), 0, 3, 120)
    'curriculum stage [0] of 3: 120 samples, up to 3 characters, fonts A, B, augmentation x0.3, next at smoothed loss < 1'
    """
    parts = [f"curriculum stage [{index}] of {total}: {samples} samples",
             f"up to {stage.max_chars} characters" if stage.max_chars is not None else "all lengths",
             f"fonts {', '.join(stage.fonts)}" if stage.fonts else "all fonts",
             f"augmentation x{stage.augment_strength:g}"]
    rules = []
    if index < total - 1:
        if stage.advance_loss is not None:
            rules.append(f"smoothed loss < {stage.advance_loss:g}"
                         + (f" after {stage.min_steps} steps" if stage.min_steps else ""))
        if stage.max_steps is not None:
            rules.append(f"{stage.max_steps} steps")
    if rules:
        parts.append("next at " + " or ".join(rules))
    return ", ".join(parts)


@dataclass(frozen=True)
class CurriculumState:
    """Where a run is in its curriculum; `as_dict()` goes into checkpoints (`RunState.curriculum`)."""

    stage: int = 0
    """Index of the current stage in `data.curriculum`."""
    steps: int = 0
    """Optimizer steps done in the current stage."""
    loss_ema: float | None = None
    """Smoothed training loss of the current stage (None before its first step)."""

    def after_step(self, loss: float) -> CurriculumState:
        """The state after one more optimizer step of this stage, whose mean token loss was `loss`."""
        return dataclasses.replace(self, steps=self.steps + 1, loss_ema=smoothed_loss(self.loss_ema, loss))

    def advanced(self) -> CurriculumState:
        """The first moment of the next stage: no steps, no smoothed loss yet.

        >>> CurriculumState(stage=0, steps=7, loss_ema=0.5).advanced()
        CurriculumState(stage=1, steps=0, loss_ema=None)
        """
        return CurriculumState(stage=self.stage + 1)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, saved: dict | None, stages: Sequence[CurriculumStage]) -> CurriculumState:
        """The state a checkpoint saved (None: a fresh run, or a checkpoint of a run without a curriculum).

        >>> CurriculumState.from_dict({"stage": 1, "steps": 3, "loss_ema": 0.7}, [CurriculumStage()] * 2).stage
        1
        """
        state = cls(**saved) if saved else cls()
        if state.stage >= len(stages):
            raise UserError(f"the checkpoint is in curriculum stage [{state.stage}], but data.curriculum has "
                            f"only {len(stages)} stages; was the recipe changed?")
        return state
