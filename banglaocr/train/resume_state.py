"""A checkpoint's training state checked against the run that is to continue it, before any of it is loaded.

`checkpoint.read_training_state` gives what the files hold; `check_training_state` says whether it fits
this run: the optimizer state has one entry per trainable parameter, with the tensors AdamW keeps, of the
parameters' shapes and finite, and parameter groups like this optimizer's; the scheduler and GradScaler
states have the fields (and kinds of values) this run's have; the run state's counters are whole numbers in
range that agree with each other and with the checkpoint's step; its data position and the training split
it was trained on fit this run's. A lie is one line naming the file - never a traceback steps later, never
a run that goes on from half a state (optimizer and schedule restored, data position not).

>>> import torch
>>> model = torch.nn.Linear(2, 2)
>>> optimizer = torch.optim.AdamW(model.parameters())
>>> model(torch.ones(1, 2)).sum().backward(); optimizer.step()
>>> saved = optimizer.state_dict()
>>> optimizer_problem(saved, optimizer, step=1) is None
True
>>> saved["state"][1]["exp_avg"] = torch.zeros(3)
>>> optimizer_problem(saved, optimizer, step=1)
'optimizer.state[1].exp_avg has the shape [3], its parameter [2]'
"""

from __future__ import annotations

import dataclasses
import math
import re
import typing
from pathlib import Path
from typing import Any, Sequence

import torch

from banglaocr.errors import UserError

ADAMW_STATE = ("exp_avg", "exp_avg_sq", "step")
WANDB_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def _number(value: Any) -> bool:
    return type(value) in (int, float)


def _kind_problem(value: Any, template: Any) -> str | None:
    """Why `value` is not the kind of value `template` is (numbers are one kind; None stands for None or a flag)."""
    if template is None:
        return None if value is None or type(value) is bool else "not empty or true/false"
    if type(template) is bool:
        return None if type(value) is bool else "not true/false"
    if _number(template):
        if not _number(value):
            return "not a number"
        return None if math.isfinite(value) else "not finite"
    if isinstance(template, (list, tuple)):
        if not isinstance(value, (list, tuple)) or len(value) != len(template):
            return f"not a list of {len(template)}"
        return next((p for p in map(_kind_problem, value, template) if p), None)
    if isinstance(template, str):
        return None if isinstance(value, str) else "not text"
    return None


def _shown(value: Any) -> str:
    return repr(value)[:40]


# --------------------------------------------------------------------------- optimizer, scheduler, scaler


def optimizer_problem(saved: Any, optimizer: torch.optim.Optimizer, step: int) -> str | None:
    """What is wrong with an optimizer state for `optimizer` (its parameter groups and per-parameter
    state) saved at optimizer step `step`, or None."""
    inner = getattr(optimizer, "optimizer", optimizer)  # accelerate's wrapper
    if not isinstance(saved, dict) or not isinstance(saved.get("state"), dict) or not isinstance(
            saved.get("param_groups"), list) or not all(isinstance(g, dict) for g in saved["param_groups"]):
        return "its optimizer state is not {state, param_groups}"
    template = inner.state_dict()["param_groups"]
    groups = saved["param_groups"]
    if [g.get("params") for g in groups] != [g["params"] for g in template]:
        sizes = [len(g["params"]) if isinstance(g.get("params"), list) else "?" for g in groups]
        return (f"its optimizer holds parameter groups of {sizes} parameters, this model's has "
                f"{[len(g['params']) for g in template]}; was the recipe changed?")
    for index, (group, want) in enumerate(zip(groups, template)):
        for key, value in group.items():
            if key == "params" or key not in want:
                continue  # a setting of another torch version: torch fills in or ignores what it lacks
            problem = _kind_problem(value, want[key])
            if problem is None and _number(value) and value < 0:
                problem = "negative"
            if problem:
                return f"optimizer.param_groups[{index}].{key} is {_shown(value)}: {problem}"
    params = [p for group in inner.param_groups for p in group["params"]]
    return _param_state_problem(saved["state"], params, inner, step)


def _param_state_problem(state: dict, params: list[torch.Tensor], optimizer, step: int) -> str | None:
    unknown = [key for key in state if type(key) is not int or not 0 <= key < len(params)]
    if unknown:
        return f"its optimizer holds state for parameter {_shown(unknown[0])}; the model has {len(params)}"
    if state and len(state) != len(params):  # the missing ones would start from zero: half a resume
        return f"its optimizer holds state for {len(state)} of the model's {len(params)} trainable parameters"
    adamw = isinstance(optimizer, torch.optim.AdamW)
    amsgrad = {id(p) for g in optimizer.param_groups if g.get("amsgrad") for p in g["params"]}
    for index, entry in sorted(state.items()):
        param = params[index]
        where = f"optimizer.state[{index}]"
        if not isinstance(entry, dict):
            return f"{where} is not a table"
        if adamw:
            expected = set(ADAMW_STATE) | ({"max_exp_avg_sq"} if id(param) in amsgrad else set())
            if set(entry) != expected:
                odd = sorted(expected - set(entry)) or sorted(set(entry) - expected)
                return f"{where} holds {sorted(entry)}, AdamW keeps {sorted(expected)} (e.g. {odd[0]!r})"
        for key, value in entry.items():
            problem = _state_value_problem(key, value, param, step, adamw)
            if problem:
                return f"{where}.{key}{'' if problem.startswith('.') else ' '}{problem}"
    return None


def _state_value_problem(key: str, value: Any, param: torch.Tensor, step: int, adamw: bool) -> str | None:
    if isinstance(value, dict) and not adamw:  # bitsandbytes keeps its tensors in one nested table
        for inner, item in value.items():
            problem = _state_value_problem(str(inner), item, param, step, adamw)
            if problem:
                return f".{inner} {problem}" if not problem.startswith(".") else f".{inner}{problem}"
        return None
    if key == "step":
        number = float(value) if isinstance(value, torch.Tensor) and value.numel() == 1 else value
        if not _number(number) or not math.isfinite(number) or not 0 <= number <= step or number != int(number):
            return f"is {_shown(value)}, not a step count from 0 to {step}"
        return None
    if not isinstance(value, torch.Tensor):
        return None if not adamw and (value is None or _number(value)) else f"is {_shown(value)}, not a tensor"
    moment = adamw or key in ("state1", "state2")  # bitsandbytes: state1/state2 have the parameter's elements
    if moment and (value.numel() != param.numel() if not adamw else tuple(value.shape) != tuple(param.shape)):
        return f"has the shape {list(value.shape)}, its parameter {list(param.shape)}"
    if adamw and not value.is_floating_point():
        return f"is {str(value.dtype).replace('torch.', '')}, not floating point"
    if value.is_floating_point() and not bool(torch.isfinite(value).all()):
        return "holds NaN or infinite values (the first step would make the weights NaN)"
    return None


def scheduler_problem(saved: Any, template: dict, step: int) -> str | None:
    """What is wrong with a learning-rate scheduler state whose scheduler's state is like `template`, or None.
    (LambdaLR's load_state_dict sets every saved key as an attribute: an unknown key is refused.)"""
    if not isinstance(saved, dict):
        return "its scheduler state is not a table"
    unknown = sorted(set(saved) - set(template))
    if unknown:
        return f"its scheduler state holds {unknown[0]!r}, which this scheduler does not have"
    missing = [key for key in ("last_epoch", "base_lrs", "_last_lr", "_step_count") if key not in saved]
    if missing:
        return f"its scheduler state holds no {missing[0]}"
    for key, value in saved.items():
        problem = _kind_problem(value, template[key])
        if problem is None and key in ("base_lrs", "_last_lr") and any(v < 0 for v in value):
            problem = "negative"
        if problem:
            return f"scheduler.{key} is {_shown(value)}: {problem}"
    if type(saved["last_epoch"]) is not int or saved["last_epoch"] != step:
        return f"scheduler.last_epoch is {_shown(saved['last_epoch'])}, the checkpoint's step is {step}"
    if type(saved["_step_count"]) is not int or saved["_step_count"] < 1:
        return f"scheduler._step_count is {_shown(saved['_step_count'])}, not a count"
    if saved.get("lr_lambdas") is not None and any(fn is not None for fn in saved["lr_lambdas"]):
        return "scheduler.lr_lambdas holds values; this schedule saves none"
    return None


def scaler_problem(saved: Any, template: dict | None) -> str | None:
    """What is wrong with a GradScaler state for a run whose scaler's state is `template` (None: no scaler,
    so a saved one is not used - but it must still be one), or None."""
    if saved is None:
        return None  # an fp32 run saved none: under fp16 the scale starts afresh
    template = template or torch.amp.GradScaler("cpu").state_dict()  # unused here, but it must be one
    if not isinstance(saved, dict) or set(saved) != set(template):
        return f"its GradScaler state is not {{{', '.join(sorted(template))}}}"
    for key, value in saved.items():
        problem = _kind_problem(value, template[key])
        if problem is None and type(template[key]) is int and type(value) is not int:
            problem = "not a whole number"
        if problem is None and (value < 0 or value == 0 and key != "_growth_tracker"):
            problem = "not positive"
        if problem:
            return f"scaler.{key} is {_shown(value)}: {problem}"
    return None


# --------------------------------------------------------------------------- the run state


def _fits(value: Any, hint: Any) -> bool:
    for kind in typing.get_args(hint) or (hint,):
        if kind is type(None) and value is None:
            return True
        if kind is int and type(value) is int or kind is float and _number(value):
            return True
        if kind in (dict, list, str) and isinstance(value, kind):
            return True
    return False


def run_state_problem(saved: Any, run_state_type: type, step: int, batches_per_step: int | None,
                      samples_per_step: int | None, stages: Sequence | None) -> str | None:
    """What is wrong with a saved `RunState` (as a dict) of a checkpoint at `step`, or None: unknown fields,
    values of the wrong kind, counters below zero or out of step with each other, a data position the
    stream cannot be at (`batches_per_step` micro-batches of all processes per optimizer step; None: the
    batch size, accumulation or processes were changed on purpose, so neither it nor `samples_per_step`
    can be checked)."""
    if not isinstance(saved, dict):
        return "its run_state is not a table"
    hints = typing.get_type_hints(run_state_type)
    unknown = sorted(str(key) for key in saved if key not in hints)
    if unknown:
        return f"its run_state holds {unknown[0][:40]!r}, which this version of banglaocr does not know"
    for key in ("step", "batches_consumed"):
        if key not in saved:
            return f"its run_state holds no {key}"
    for key, value in saved.items():
        if not _fits(value, hints[key]):
            return f"run_state.{key} is {_shown(value)}, not {hints[key]}".replace("typing.", "")
        if _number(value) and (not math.isfinite(value) or value < 0):
            return f"run_state.{key} is {_shown(value)}: {'not finite' if not math.isfinite(value) else 'negative'}"
    state = run_state_type(**saved)
    return (_counters_problem(state, step, samples_per_step) or _data_position_problem(state, batches_per_step, stages)
            or _tables_problem(state))


def _counters_problem(state, step: int, samples_per_step: int | None) -> str | None:
    if state.step != step:
        return f"run_state.step is {state.step}, the checkpoint's step is {step}"
    if state.best_step is not None and state.best_step > step:
        return f"run_state.best_step is {state.best_step}, after the checkpoint's step {step}"
    if not state.consecutive_nonfinite <= state.nonfinite_steps <= step:
        return (f"run_state counts {state.nonfinite_steps} non-finite steps ({state.consecutive_nonfinite} in a row) "
                f"in {step} steps")
    if samples_per_step is not None and state.samples_seen > step * samples_per_step:
        return f"run_state.samples_seen is {state.samples_seen}, more than {step} steps of {samples_per_step} samples"
    return None


def _data_position_problem(state, batches_per_step: int | None, stages: Sequence | None) -> str | None:
    consumed, most = state.batches_consumed, state.step * (batches_per_step or 0)
    if batches_per_step is None:
        pass
    elif stages is None and consumed != most:
        return (f"run_state.batches_consumed is {consumed}, but {state.step} steps draw {most} micro-batches: "
                "the data would not continue where it stopped")
    elif stages is not None and (consumed > most or consumed % batches_per_step):
        return (f"run_state.batches_consumed is {consumed}: not a whole number of steps of {batches_per_step} "
                f"micro-batches up to {most}")
    if stages is None or state.curriculum is None:
        return None
    from banglaocr.train.curriculum import CurriculumState

    fields = {f.name for f in dataclasses.fields(CurriculumState)}
    curriculum = state.curriculum
    if set(curriculum) != fields:
        return f"run_state.curriculum holds {sorted(curriculum)}, not {sorted(fields)}"
    stage, steps, loss = curriculum["stage"], curriculum["steps"], curriculum["loss_ema"]
    if type(stage) is not int or not 0 <= stage < len(stages):
        return f"run_state.curriculum.stage is {_shown(stage)}; data.curriculum has stages 0-{len(stages) - 1}"
    if type(steps) is not int or not 0 <= steps <= state.step:
        return f"run_state.curriculum.steps is {_shown(steps)}, not a count from 0 to {state.step}"
    if loss is not None and not (_number(loss) and math.isfinite(loss) and loss >= 0):
        return f"run_state.curriculum.loss_ema is {_shown(loss)}, not a loss"
    return None


def _tables_problem(state) -> str | None:
    examples = state.skipped_examples
    if not all(isinstance(p, list) and len(p) == 2 and all(isinstance(s, str) for s in p) for p in examples):
        return "run_state.skipped_examples is not a list of [reason, sample id] pairs"
    if state.skipped_samples != len(examples):
        return f"run_state.skipped_samples is {state.skipped_samples}, but it lists {len(examples)} skipped samples"
    if state.wandb_id is not None and not WANDB_ID.match(state.wandb_id):
        return f"run_state.wandb_id {_shown(state.wandb_id)} is not a W&B run id"
    if state.confusion is not None:
        from banglaocr.confusion import ConfusionStats

        try:
            table = ConfusionStats.from_dict(state.confusion)
            counts = [*table.support.values(), *table.deletions.values(), *table.insertions.values(),
                      *(n for row in table.substitutions.values() for n in row.values()), table.samples]
        except (KeyError, TypeError, ValueError, AttributeError):
            return "run_state.confusion is not a confusion table"
        if any(n < 0 for n in counts):
            return "run_state.confusion holds negative counts"
    return None


# --------------------------------------------------------------------------- the training split


def data_problem(saved: Any, current: dict, allow_change: bool) -> str | None:
    """Whether the training split of this run (`batches.data_fingerprint`) is the one the checkpoint was
    trained on (`saved`, from its state.json; None in checkpoints of earlier versions)."""
    if saved is None or allow_change or saved == current:
        return None
    if not (isinstance(saved, dict) and set(saved) == set(current)):
        return "its train_data is not {samples, sha256}"
    other = "other samples" if saved["samples"] == current["samples"] else f"{current['samples']} samples"
    return (f"the checkpoint was trained on a training split of {saved['samples']} samples, this run's has "
            f"{other}: the data order would not continue where it stopped - restore the data, start a new run "
            "(another --output-dir), or pass --allow-recipe-change")


def check_training_state(folder: Path, saved: dict, *, optimizer, scheduler, scaler_state: dict | None,
                         run_state_type: type, batches_per_step: int, samples_per_step: int,
                         stages: Sequence | None, train_data: dict, allow_recipe_change: bool) -> None:
    """`UserError` "FILE: what is wrong; what to do" unless the checkpoint's training state (`saved`, from
    `read_training_state`) and its training split fit this run - called before anything is loaded.
    `allow_recipe_change` (--allow-recipe-change): the data, batch size, accumulation or processes may differ
    from the checkpoint's run, so the data position and the training split are not compared."""
    if allow_recipe_change:
        batches_per_step = samples_per_step = None
    from banglaocr.train.checkpoint import read_manifest, resume_hint

    folder = Path(folder)
    manifest = read_manifest(folder)
    run_state = saved["run_state"]
    step = run_state.get("step") if isinstance(run_state, dict) else None
    if type(step) is not int or step < 0:
        problem = f"run_state.step is {_shown(step)}, not a step"
    else:
        problem = (run_state_problem(run_state, run_state_type, manifest.get("step", step), batches_per_step,
                                     samples_per_step, stages)
                   or optimizer_problem(saved["optimizer"], optimizer, step)
                   or scheduler_problem(saved["scheduler"], scheduler.state_dict(), step)
                   or scaler_problem(saved.get("scaler"), scaler_state))
    name = "training_state.json" if (folder / "training_state.json").is_file() else "training_state.pt"
    if problem:
        raise UserError(f"{folder / name}: {problem}{resume_hint(folder)}")
    problem = data_problem(manifest.get("train_data"), train_data, allow_recipe_change)
    if problem:
        raise UserError(f"{folder / 'state.json'}: {problem}")
