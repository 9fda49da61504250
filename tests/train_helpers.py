"""Shared by the training tests: a really tiny recipe, one synthetic data set per session, runners.

Speed matters on a small CPU machine: the model is 1 layer x 32 wide with a 1-block vision tower,
images are one row of visual tokens (height 32, at most 128 wide), and torch runs on ONE thread
(two threads on a busy 2-core machine make every tiny op wait on a spinning partner - an AdamW step
on 130 k parameters goes from 3 ms to 200 ms). Subprocesses get `OMP_NUM_THREADS=1` for the same
reason; it also makes runs in different processes compute the same floats.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
from pathlib import Path
from typing import Iterator

import torch

SYNTH = {"n": 64, "seed": 0, "holdout_font": "Lohit-Bengali"}

TINY = [
    "model.name_or_path=tiny-test-model", "model.init=tiny",
    "model.tiny.hidden_size=32", "model.tiny.num_layers=1", "model.tiny.num_heads=2", "model.tiny.num_kv_heads=1",
    "model.tiny.intermediate_size=64", "model.tiny.vision_depth=1", "model.tiny.vision_hidden_size=32",
    "model.tiny.vision_heads=2", "model.tiny.vision_intermediate_size=64", "model.tiny.tokenizer=char",
    "model.dtype=float32", "lora=null",
    "data.source=synth", f"data.synth.n={SYNTH['n']}", f"data.synth.seed={SYNTH['seed']}",
    f"data.synth.holdout_font={SYNTH['holdout_font']}", "data.synth.fonts=null", "data.synth.clean=false",
    "data.synth.hand.slant=0.0", "data.synth.hand.pen=0", "data.synth.hand.wobble=0.0",
    "data.synth.short_fraction=0.0", "data.prompt=লেখো",
    "data.image.height=32", "data.image.max_width=128", "data.image.min_width=32", "data.num_workers=0",
    "train.batch_size=4", "train.grad_accum_steps=1", "train.lr=2e-3", "train.warmup_steps=0",
    "train.scheduler=constant", "train.precision=fp32", "train.log_steps=1", "train.eval_steps=0",
    "train.save_steps=0", "train.keep_last=2", "train.seed=0", "train.max_grad_norm=1.0", "train.threads=1",
    "augment.enabled=false", "loss.confusion_weight=0.0", "loss.focal_gamma=0.0", "loss.label_smoothing=0.0",
    "eval.max_samples=4", "eval.max_new_tokens=6", "eval.batch_size=8", "eval.num_beams=1",
    "eval.before_training=false",
]
"""Overrides of the shipped `cpu_demo` recipe that make it tiny (every value the tests rely on is set
here, so edits of the shipped recipe do not change what these tests check)."""


def synth_dir() -> Path:
    """The tiny synthetic data set, rendered once per test session into the session's cache folder."""
    folder = Path(os.environ["BANGLAOCR_CACHE"]) / "tiny-train-synth"
    if not (folder / "synth.json").is_file():
        from banglaocr.data.synth import write_synthetic_dataset

        write_synthetic_dataset(folder, n=SYNTH["n"], seed=SYNTH["seed"], holdout_font=SYNTH["holdout_font"])
    return folder


def overrides(*extra: str) -> list[str]:
    """The tiny recipe's overrides, reading the session's synthetic data, plus `extra`."""
    return [*TINY, f"data.synth.dir={synth_dir()}", *extra]


def tiny_recipe(*extra: str):
    from banglaocr.config import load_recipe

    return load_recipe("cpu_demo", overrides(*extra))


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def train(output_dir: Path, *extra: str, resume: str | None = None, **options) -> dict:
    """`run_training` in this process on the tiny recipe (progress output swallowed); the summary.
    `options` go to `run_training` (overwrite, allow_recipe_change)."""
    from rich.console import Console

    from banglaocr.train.loop import run_training

    with one_thread():
        return run_training(tiny_recipe(*extra), output_dir, resume=resume, console=Console(file=io.StringIO()),
                            **options)


def subprocess_env() -> dict:
    """The environment of a `python -m banglaocr` child: one thread, offline, this session's cache."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}


def cli_command(output_dir: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "banglaocr", "train", "--recipe", "cpu_demo", "-o", str(output_dir),
            *overrides(*extra)]


def metrics(output_dir: Path) -> list[dict]:
    path = Path(output_dir) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def log_rows(output_dir: Path) -> list[dict]:
    """The per-step log rows of metrics.jsonl (eval rows have no `samples_per_s`)."""
    return [row for row in metrics(output_dir) if "samples_per_s" in row]


def eval_rows(output_dir: Path) -> list[dict]:
    return [row for row in metrics(output_dir) if "val_cer" in row]


def trainable(checkpoint: Path) -> dict[str, torch.Tensor]:
    """The trainable weights a checkpoint folder (or a model folder) holds: its adapter file, or the full
    model file of a full fine-tune (the one copy resume reads)."""
    folder = Path(checkpoint) / "model" if (Path(checkpoint) / "model").is_dir() else Path(checkpoint)
    adapter = folder / "adapter_model.safetensors"
    return trainable_file(adapter if adapter.is_file() else folder / "model.safetensors")


def trainable_file(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


def max_abs_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert sorted(a) == sorted(b), "different parameter names"
    return max(float((a[name] - b[name]).abs().max()) for name in a)
