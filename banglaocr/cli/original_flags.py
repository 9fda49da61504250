"""The original training script's flags, accepted by `banglaocr train` as aliases of recipe keys.

People come with the command they ran on Kaggle:

    --lora_r 256 --lora_alpha 512 --batch_size 16 --learning_rate 1e-4 --num_train_epochs 3 --fp16
    --output_dir out --dataset_name swapnillo/BN-HTR-Handwritten-Dataset --dataset_classes word
    --samples_per_class all --scan_dataset_dimensions True --dimension_scan_samples 50000
    --padding_buffer 1.1 --focal_alpha 0.25 --focal_gamma 2.0 --label_smoothing 0.1 --logging_steps 5
    --eval_steps 1000 --save_steps 200 --compute_train_metrics True

`translate` turns them into recipe overrides (`lora.r=256`, ...); what needs the data - the number of
epochs (-> `train.max_steps`) and the dimension scan (-> the image budget) - is resolved by `train`
once the data is loaded. A flag with no meaning here is explained in one line, never silently dropped.
docs/migrating.md maps every flag.

>>> t = translate(["--lora_r", "8", "--learning_rate=1e-4", "--fp16", "--dataset_classes", "word",
...                "--compute_train_metrics", "True"], cuda=True)
>>> t.overrides
['lora.r=8', 'train.lr=1e-4', 'train.precision=fp16', 'data.classes=[word]']
>>> t.notes[0].split(":")[0]
'--compute_train_metrics'
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from banglaocr.errors import UserError

SIMPLE = {
    "--lora_r": "lora.r", "--lora_alpha": "lora.alpha", "--lora_dropout": "lora.dropout",
    "--batch_size": "train.batch_size", "--per_device_train_batch_size": "train.batch_size",
    "--gradient_accumulation_steps": "train.grad_accum_steps", "--learning_rate": "train.lr",
    "--weight_decay": "train.weight_decay", "--warmup_steps": "train.warmup_steps", "--max_steps": "train.max_steps",
    "--focal_gamma": "loss.focal_gamma", "--label_smoothing": "loss.label_smoothing",
    "--logging_steps": "train.log_steps", "--eval_steps": "train.eval_steps", "--save_steps": "train.save_steps",
    "--save_total_limit": "train.keep_last", "--seed": "train.seed", "--dataset_name": "data.source",
    "--model_name": "model.name_or_path", "--model_name_or_path": "model.name_or_path",
    "--max_new_tokens": "eval.max_new_tokens",
}
"""Flags that are one recipe key each (the value as it is)."""

NO_MEANING = {
    "--compute_train_metrics": "banglaocr measures CER/WER by real generation on the validation split at every "
                               "eval step; teacher-forced training metrics are not computed (they overstate "
                               "accuracy)",
    "--focal_alpha": "banglaocr's focal loss has no alpha: a constant factor on every token only rescales the "
                     "loss, which the learning rate already does",
}
"""Flags accepted and explained, with nothing to set."""

BOOLEAN = ("--fp16", "--bf16", "--scan_dataset_dimensions", "--compute_train_metrics")
"""Flags that may stand alone (True) or take True/False; every other flag takes a value."""
ALL_FLAGS = sorted({*SIMPLE, *BOOLEAN, *NO_MEANING, "--num_train_epochs", "--output_dir", "--dataset_classes",
                    "--samples_per_class", "--dimension_scan_samples", "--padding_buffer"})


@dataclass
class Translation:
    """What the original flags ask for."""

    overrides: list[str] = field(default_factory=list)
    output_dir: str | None = None
    epochs: float | None = None  # -> train.max_steps, from the data size
    scan: dict | None = None  # {"samples": N, "padding_buffer": x}: the image budget from a scan of the data
    notes: list[str] = field(default_factory=list)
    mapping: list[tuple[str, str]] = field(default_factory=list)  # (original flag and value, what it became)


def _pairs(args: list[str]) -> list[tuple[str, str | None]]:
    """`--flag value`, `--flag=value` and bare boolean flags -> (flag, value or None)."""
    pairs, index = [], 0
    while index < len(args):
        arg = args[index]
        if not arg.startswith("--"):
            raise UserError(f"unexpected argument '{arg}' (overrides are section.key=value, flags start with --)")
        flag, _, inline = arg.partition("=")
        if flag not in ALL_FLAGS:
            raise UserError(f"unknown option '{flag}' (banglaocr train --help; the original script's flags are "
                            "listed in docs/migrating.md)")
        if inline:
            pairs.append((flag, inline))
        elif flag in BOOLEAN and (index + 1 >= len(args) or args[index + 1].lower() not in ("true", "false")):
            pairs.append((flag, None))
        elif index + 1 < len(args):
            pairs.append((flag, args[index + 1]))
            index += 1
        else:
            raise UserError(f"option '{flag}' needs a value")
        index += 1
    return pairs


def _truthy(flag: str, value: str | None) -> bool:
    if value is None or value.lower() == "true":
        return True
    if value.lower() == "false":
        return False
    raise UserError(f"option '{flag}' takes True or False, got '{value}'")


def _number(flag: str, value: str, kind: type, positive: bool) -> int | float:
    """The value of a numeric flag: an `int` or finite `float`, > 0 (`positive`) or >= 0; one line naming the
    flag otherwise (never a ValueError, never an endless number of epochs).

    >>> _number("--num_train_epochs", "1.5", float, positive=True)
    1.5
    >>> _number("--num_train_epochs", "inf", float, positive=True)
    Traceback (most recent call last):
    ...
    banglaocr.errors.UserError: option '--num_train_epochs' takes a finite number > 0, got 'inf'
    """
    import math

    described = f"{'a whole number' if kind is int else 'a finite number'} {'> 0' if positive else '>= 0'}"
    shown = repr(value) if len(value) <= 40 else repr(value[:40] + "...")
    try:
        number = kind(value)
    except (ValueError, OverflowError):
        raise UserError(f"option '{flag}' takes {described}, got {shown}") from None
    if not math.isfinite(number) or number < 0 or (positive and number == 0):
        raise UserError(f"option '{flag}' takes {described}, got {shown}")
    return number


def translate(args: list[str], cuda: bool) -> Translation:
    """The original flags -> recipe overrides and the parts `train` resolves with the data (module docstring).
    `cuda`: whether a GPU is there (`--fp16` on a machine without one trains in fp32, with a note)."""
    out = Translation()
    scan = {"enabled": False, "samples": 1000, "padding_buffer": 0.1}
    for flag, value in _pairs(args):
        shown = flag if value is None else f"{flag} {value}"
        before = len(out.overrides)
        if flag in SIMPLE:
            out.overrides.append(f"{SIMPLE[flag]}={value}")
        elif flag in NO_MEANING:
            out.notes.append(f"{flag}: {NO_MEANING[flag]}")
        elif flag in ("--fp16", "--bf16"):
            if _truthy(flag, value):
                if cuda:
                    out.overrides.append(f"train.precision={flag[2:]}")
                else:
                    out.notes.append(f"{flag}: no CUDA GPU here, so training runs in fp32 (train.precision=fp32)")
                    out.overrides.append("train.precision=fp32")
        elif flag == "--output_dir":
            out.output_dir = value
        elif flag == "--num_train_epochs":
            out.epochs = _number(flag, value, float, positive=True)
        elif flag == "--dataset_classes":
            out.overrides.append(f"data.classes=[{value}]")
        elif flag == "--samples_per_class":
            out.overrides.append(f"data.samples_per_class={value}")
        elif flag == "--scan_dataset_dimensions":
            scan["enabled"] = _truthy(flag, value)
        elif flag == "--dimension_scan_samples":
            scan["samples"] = _number(flag, value, int, positive=True)
        elif flag == "--padding_buffer":
            # The original multiplied (1.1 = 10 % head-room); scan-dims takes the head-room itself.
            buffer = _number(flag, value, float, positive=False)
            scan["padding_buffer"] = buffer - 1.0 if buffer >= 1.0 else buffer
        made = ", ".join(out.overrides[before:]) or {
            "--output_dir": f"--output-dir {value}", "--num_train_epochs": "train.max_steps from the data size",
            "--scan_dataset_dimensions": "the image budget from scan-dims",
            "--dimension_scan_samples": "scan-dims --samples", "--padding_buffer": "scan-dims --padding-buffer",
        }.get(flag, "(explained below)")
        out.mapping.append((shown, made))
    if scan["enabled"]:
        out.scan = {"samples": scan["samples"], "padding_buffer": scan["padding_buffer"]}
    return out


def steps_for_epochs(epochs: float, train_samples: int, samples_per_step: int) -> int:
    """Optimizer steps that show every training sample `epochs` times (at least 1).

    >>> steps_for_epochs(3, train_samples=1000, samples_per_step=64)
    47
    """
    import math

    return max(1, math.ceil(epochs * train_samples / samples_per_step))


def data_needs(translation: Translation) -> list[str]:
    """What of the data the flags need, and for what (empty: nothing - a dry run then loads no data).

    >>> data_needs(translate(["--num_train_epochs", "3", "--scan_dataset_dimensions"], cuda=False))
    ['--num_train_epochs 3 needs the number of training samples (train.max_steps)', '--scan_dataset_dimensions needs the image sizes and label lengths of the training split, label tokens counted with the model tokenizer (the image budget)']
    """
    needs = []
    if translation.epochs is not None:
        needs.append(f"--num_train_epochs {translation.epochs:g} needs the number of training samples (train.max_steps)")
    if translation.scan is not None:
        needs.append("--scan_dataset_dimensions needs the image sizes and label lengths of the training split, "
                     "label tokens counted with the model tokenizer (the image budget)")
    return needs


def resolve_with_data(translation: Translation, recipe, output_dir, dry_run: bool = False) -> list[str]:
    """The overrides that need the data: the image budget of a dimension scan (`--scan_dataset_dimensions`)
    and `train.max_steps` for `--num_train_epochs`. Loads (or renders) the data as the run will; a `dry_run`
    writes nothing (synthetic data not rendered yet is rendered into a scratch folder, removed after)."""
    import contextlib
    import dataclasses
    import os
    import tempfile
    from pathlib import Path

    from banglaocr.data.sources import load_splits, resolve_source, synth_dir

    extra: list[str] = []
    if not data_needs(translation):
        return extra
    with contextlib.ExitStack() as scratch:  # the scan reads the images: inside, while a scratch folder exists
        data, work = recipe.data, Path(output_dir or recipe.train.output_dir)
        if dry_run and data.source == "synth" and not (synth_dir(data, work) / "synth.json").is_file():
            work = Path(scratch.enter_context(tempfile.TemporaryDirectory(prefix="banglaocr-dry-run-")))
            data = dataclasses.replace(data, synth=dataclasses.replace(data.synth, dir=None))
        splits = load_splits(resolve_source(data, work))
        if translation.scan is not None:
            extra += _scanned_budget(translation, recipe, splits.train)
    if translation.epochs is not None:
        processes = int(os.environ.get("WORLD_SIZE", "1"))
        steps = steps_for_epochs(translation.epochs, len(splits.train), recipe.train.samples_per_step(processes))
        extra.append(f"train.max_steps={steps}")
    return extra


def _scanned_budget(translation: Translation, recipe, records: list) -> list[str]:
    """`--scan_dataset_dimensions`: the image budget and max_new_tokens scan-dims recommends for `records`."""
    from banglaocr.data.scan import scan_records
    from banglaocr.model.shipped import model_source
    from banglaocr.model.tokenizers import load_counting_tokenizer

    name = recipe.model.tiny.tokenizer if recipe.model.init == "tiny" else model_source(recipe.model.name_or_path)
    counting, note = load_counting_tokenizer(name)
    if note is not None:
        translation.notes.append(f"--scan_dataset_dimensions: {note}")
    budget = scan_records(records, counting, samples=translation.scan["samples"],
                          padding_buffer=translation.scan["padding_buffer"], stretch=recipe.data.image.stretch).budget
    return [f"data.image.height={budget['height']}", f"data.image.max_width={budget['max_width']}",
            f"eval.max_new_tokens={budget['max_new_tokens']}"]


_OVERRIDE = re.compile(r"^[A-Za-z_]\w*(\.\w+)*=")


def split_arguments(items: list[str]) -> tuple[list[str], list[str]]:
    """`train`'s free arguments -> (original flags with their values, recipe overrides `section.key=value`).

    >>> split_arguments(["--lora_r", "8", "train.lr=1e-4", "--fp16", "lora.alpha=16"])
    (['--lora_r', '8', '--fp16'], ['train.lr=1e-4', 'lora.alpha=16'])
    """
    flags, overrides, index = [], [], 0
    while index < len(items):
        item = items[index]
        if item.startswith("--"):
            flags.append(item)
            nxt = items[index + 1] if index + 1 < len(items) else None
            if "=" not in item and nxt is not None and not nxt.startswith("--") and not _OVERRIDE.match(nxt):
                flags.append(nxt)
                index += 1
        else:
            overrides.append(item)
        index += 1
    return flags, overrides


def describe(translation: Translation, extra: list[str]) -> str:
    """The lines `train` prints once: what each original flag became, and the notes."""
    lines = ["original flags -> recipe overrides:"]
    lines += [f"  {flag:<34} {made}" for flag, made in translation.mapping]
    if extra:
        lines.append(f"  (from the data) {' '.join(extra)}")
    lines += [f"note: {note}" for note in translation.notes]
    return "\n".join(lines)
