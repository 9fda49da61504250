"""The expected disk use of a run (`banglaocr.disk_use`): counted on the meta device, checked against the
bytes real training runs write - file by file - and against the 2B shape's arithmetic."""

from __future__ import annotations

import io
import json
import math
import random
from pathlib import Path

import pytest
import torch

from banglaocr.config import load_recipe
from banglaocr.disk_use import (
    OPTIMIZER_JSON_BYTES_PER_TENSOR, SMALL_FILES_BYTES, BNB_BLOCK_SIZE, BNB_QMAP_ENTRIES, DiskFit, FileSize,
    FolderSize, ModelShape, RunDiskUse, advice, describe, disk_fit, estimate_disk_use, folder_bytes, keep_last_that_fits,
    safetensors_bytes, synthetic_data_size, try_estimate)
from train_helpers import TINY, one_thread, synth_dir, tiny_recipe

RUN = ["train.max_steps=4", "train.save_steps=2", "train.eval_steps=2", "train.keep_last=1"]
"""Two checkpoints, one kept: rotation happens; two validations: best/ is written (and may be replaced)."""


def cpu_demo_lora(*extra: str):
    """The shipped cpu_demo recipe - LoRA r16 on the shipped tiny model, language model and vision tower -
    on the tests' small synthetic data set, for a few steps."""
    data = [o for o in TINY if o.startswith(("data.", "train.", "augment.", "loss.", "eval."))]
    return load_recipe("cpu_demo", [*data, f"data.synth.dir={synth_dir()}", *RUN, *extra])


CASES = {
    "cpu_demo LoRA, AdamW": lambda: cpu_demo_lora(),
    "full fine-tune, 8-bit AdamW": lambda: tiny_recipe("train.optimizer=adamw8bit", *RUN),
    "tiny init LoRA + train_modules, fp16 (base/ saved, vision tower fp32)": lambda: tiny_recipe(
        "lora.r=4", "lora.train_modules=[merger]", "model.dtype=auto", "train.precision=fp16", *RUN),
}


def test_safetensors_bytes_is_the_size_safetensors_writes(tmp_path):
    from safetensors.torch import save_file

    rng = random.Random(0)
    dtypes = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.uint8: "U8",
              torch.int64: "I64", torch.float64: "F64", torch.bool: "BOOL"}
    for trial in range(5):
        tensors, described = {}, []
        for index in range(rng.randint(1, 40)):
            dtype = rng.choice(list(dtypes))
            shape = tuple(rng.randint(1, 300) for _ in range(rng.randint(0, 3)))
            name = f"layer.{rng.randint(0, 10**6)}.w{index}"
            tensors[name] = torch.zeros(shape, dtype=dtype)
            described.append((name, dtypes[dtype], shape))
        metadata = {"format": "pt", "step": str(trial)} if trial % 2 else None
        path = tmp_path / f"{trial}.safetensors"
        save_file(tensors, str(path), metadata=metadata)
        assert safetensors_bytes(described, metadata) == path.stat().st_size


def run_files(folder: Path) -> dict[str, int]:
    return {p.relative_to(folder).as_posix(): p.stat().st_size for p in sorted(folder.rglob("*")) if p.is_file()}


def check_folder(estimated: FolderSize, folder: Path) -> None:
    """Every file the estimate names has exactly its bytes on disk; every other file is a small one (no
    tensor file the estimate does not know of, e.g. a second copy of the weights), and the small files of
    each part fit its allowance.

    Tolerances: none for tensor and tokenizer files - their bytes are computed (safetensors header + data,
    the tokenizer saved), so any difference is a wrong count; the small files (JSON whose length moves with
    losses, timings and paths) only have to stay under their allowance, which the estimate adds as an upper
    bound, so the estimate may overstate a folder by at most that allowance and never understate it."""
    real = run_files(folder)
    named = {f.path: f.bytes for f in estimated.files if not f.path.endswith("(small files)")}
    allowances = {f.path.removesuffix("(small files)"): f.bytes for f in estimated.files
                  if f.path.endswith("(small files)")}
    assert {path: real.get(path) for path in named} == named, folder
    others = {path: size for path, size in real.items() if path not in named}
    strays = [path for path in others if path.endswith(".safetensors") and not Path(path).name.startswith("rng-rank")]
    assert not strays, f"{folder}: tensor files the estimate does not count: {strays}"
    for prefix, allowance in allowances.items():
        deeper = [p for p in allowances if p != prefix and p.startswith(prefix)]
        small = sum(size for path, size in others.items()
                    if path.startswith(prefix) and not any(path.startswith(d) for d in deeper))
        assert small <= allowance, f"{folder}/{prefix}: small files {small} bytes > allowance {allowance}"


@pytest.mark.parametrize("case", list(CASES))
def test_the_estimate_is_what_a_real_run_writes(case, tmp_path):
    from rich.console import Console

    from banglaocr.train.loop import run_training

    recipe = CASES[case]()
    use = estimate_disk_use(recipe, tmp_path)
    with one_thread():
        run_training(recipe, tmp_path, console=Console(file=io.StringIO()))
    checkpoints = sorted((tmp_path / "checkpoints").glob("step-*"))
    assert [p.name for p in checkpoints] == ["step-4"] and use.checkpoints_kept == 1 and use.saves == 2
    assert not (tmp_path / "checkpoints" / "best.safetensors").exists()
    check_folder(use.checkpoint, checkpoints[-1])
    for folder in ("best", "final"):
        check_folder(use.model_folder, tmp_path / folder)
    # The run's folders at the end: the estimate minus at most the allowances it holds for small files.
    written = sum(folder_bytes(tmp_path / name) for name in ("checkpoints", "best", "final"))
    estimated = use.at_end - use.data_bytes
    slack = sum(f.bytes for f in use.checkpoint.files if f.path.endswith("(small files)")) + 2 * sum(
        f.bytes for f in use.model_folder.files if f.path.endswith("(small files)"))
    assert estimated - slack <= written <= estimated


def test_the_kaggle_recipe_on_the_2b_shape(qwen_tokenizer, tmp_path):
    """LoRA r256 on every linear layer of the language model: r x (in + out) values per layer, float32,
    stored once; 8-bit AdamW: 2 bytes per value plus its absmax blocks and maps; 4 checkpoints at the peak."""
    from banglaocr.model.shipped import MODELS_DIR

    recipe = load_recipe("kaggle_t4x2")
    use = estimate_disk_use(recipe)
    text = json.loads((MODELS_DIR / "qwen3-vl-2b-arch" / "config.json").read_text())["text_config"]
    hidden, inter, heads, kv = (text[k] for k in ("hidden_size", "intermediate_size", "num_attention_heads",
                                                  "num_key_value_heads"))
    head_dim = text.get("head_dim", hidden // heads)
    pairs = [(hidden, heads * head_dim), (hidden, kv * head_dim), (hidden, kv * head_dim), (heads * head_dim, hidden),
             (hidden, inter), (hidden, inter), (inter, hidden)]  # q k v o gate up down
    r = recipe.lora.r
    per_layer = [r * (i + o) for i, o in pairs]
    values = text["num_hidden_layers"] * sum(per_layer)
    shape = use.shape
    assert sum(math.prod(s) for _, _, s in shape.trainable) == values == 278_921_216
    assert {d for _, d, _ in shape.saved} == {"F32"} and shape.base is None and not shape.full
    adapter = use.checkpoint.file("model/adapter_model.safetensors").bytes
    assert 0 < adapter - 4 * values < 100_000  # the header: 392 names
    tensors = [r * i for i, _ in pairs] + [r * o for _, o in pairs]  # lora_A, lora_B of each layer
    absmax = text["num_hidden_layers"] * sum(2 * 4 * math.ceil(n / BNB_BLOCK_SIZE) for n in tensors)
    maps = len(shape.trainable) * 2 * 4 * BNB_QMAP_ENTRIES
    optimizer = use.checkpoint.file("training_state.safetensors").bytes
    assert 0 < optimizer - (2 * values + absmax + maps) < 200_000
    qwen_tokenizer.save_pretrained(tmp_path)  # the real Qwen vocabulary: about 11 MB
    assert dict(shape.tokenizer_files)["tokenizer.json"] == (tmp_path / "tokenizer.json").stat().st_size > 10_000_000
    assert (use.keep_last, use.saves, use.checkpoints_at_peak) == (3, 12, 4)
    ckpt, folder = use.checkpoint.bytes, use.model_folder.bytes
    assert use.peak == 4 * ckpt + folder and use.at_end == 3 * ckpt + 2 * folder
    assert "qwen3-vl-2b-arch" in shape.source


SHAPE = ModelShape(saved=(), trainable=(), base=None, full=False, tokenizer_files=(), source="sizes made up")


def folders(checkpoint: int, model_folder: int) -> tuple[FolderSize, FolderSize]:
    return (FolderSize("checkpoints/step-N", (FileSize("x", checkpoint, ""),)),
            FolderSize("best/, final/", (FileSize("y", model_folder, ""),)))


def test_the_peak_holds_keep_last_plus_the_checkpoint_being_written():
    ckpt, folder = folders(100, 40)
    many = RunDiskUse(ckpt, folder, keep_last=3, saves=12, has_best=True, data=None, shape=SHAPE)
    assert (many.checkpoints_at_peak, many.peak, many.at_end) == (4, 440, 380)
    few = RunDiskUse(ckpt, folder, keep_last=3, saves=2, has_best=True, data=FileSize("d", 7, ""), shape=SHAPE)
    assert (few.checkpoints_kept, few.checkpoints_at_peak, few.peak, few.at_end) == (2, 2, 7 + 280, 7 + 280)
    no_best = RunDiskUse(ckpt, folder, keep_last=1, saves=5, has_best=False, data=None, shape=SHAPE)
    assert (no_best.peak, no_best.at_end) == (200, 140)
    # Replacing best/ holds two of it for a moment (the old one stays until the new one is complete): as
    # many model folders as the end holds, so the end covers it.
    big, small = folders(10, 100)
    assert RunDiskUse(big, small, keep_last=1, saves=3, has_best=True, data=None, shape=SHAPE).peak == 10 + 2 * 100


def test_what_fits_and_what_to_do(tmp_path):
    ckpt, folder = folders(100, 40)
    use = RunDiskUse(ckpt, folder, keep_last=3, saves=12, has_best=True, data=None, shape=SHAPE)
    (tmp_path / "checkpoints" / "step-2").mkdir(parents=True)
    (tmp_path / "checkpoints" / "step-2" / "w").write_bytes(b"x" * 30)
    fit = disk_fit(use, tmp_path)
    assert fit.present == 30 and fit.needed == 410 and fit.fits
    tight = DiskFit(tmp_path, free=250, present=30, needed=410)
    assert not tight.fits and keep_last_that_fits(use, tight) == 1  # 2 x 100 + 40 - 30 <= 250
    assert advice(use, tight).startswith("lower train.keep_last to 1 (each kept checkpoint is 100 B)")
    hopeless = DiskFit(tmp_path, free=10, present=0, needed=440)
    assert keep_last_that_fits(use, hopeless) is None and advice(use, hopeless).startswith("free 430 B there")
    assert any("DOES NOT FIT" in line for line in describe(use, tight))


def test_an_architecture_that_cannot_be_read_offline_is_one_line():
    use, fit, why = try_estimate(load_recipe("kaggle_t4x2", ["model.name_or_path=someone/not-cached-model"]))
    assert use is None and fit is None
    assert "someone/not-cached-model is not in the local cache" in why and "\n" not in why


def test_synthetic_data_is_measured_by_rendering_a_sample(tmp_path):
    recipe = tiny_recipe()
    rendered = synthetic_data_size(recipe.data, tmp_path)  # data.synth.dir: rendered already
    assert rendered.bytes == folder_bytes(synth_dir()) and "rendered already" in rendered.what
    fresh = load_recipe("cpu_demo", [*(o for o in TINY if o.startswith("data.")), f"data.synth.dir={tmp_path / 'new'}"])
    estimated = synthetic_data_size(fresh.data, tmp_path)
    assert not (tmp_path / "new").exists() and "rendered on first use" in estimated.what
    assert 0.75 <= estimated.bytes / rendered.bytes <= 1.33, (estimated.bytes, rendered.bytes)


def test_small_file_allowances_are_what_the_module_says():
    use = estimate_disk_use(tiny_recipe("lora.r=4", *RUN))
    small = {f.path: f.bytes for f in use.checkpoint.files if f.path.endswith("(small files)")}
    states = 3 * len(use.shape.trainable)  # AdamW: step, exp_avg, exp_avg_sq
    assert small == {"model/(small files)": SMALL_FILES_BYTES,
                     "(small files)": SMALL_FILES_BYTES + OPTIMIZER_JSON_BYTES_PER_TENSOR * states}


def test_the_checkpoint_size_benchmark_compares_both_layouts():
    """The layout before: + trainable.safetensors per checkpoint, + checkpoints/best.safetensors per run."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # benchmarks/ runs from a checkout
    from benchmarks.checkpoint_size import old_layout, report

    trainable = (("w", "F32", (10, 10)),)
    shape = ModelShape(saved=trainable, trainable=trainable, base=None, full=False, tokenizer_files=(), source="-")
    ckpt, folder = folders(1000, 600)
    use = RunDiskUse(ckpt, folder, keep_last=3, saves=12, has_best=True, data=None, shape=shape)
    old = old_layout(use, 3000)
    copy = safetensors_bytes(list(trainable))
    assert old["trainable"] == copy and old["checkpoint"] == 1000 + copy
    assert old["best_file"] == safetensors_bytes(list(trainable), {"step": "3000"})
    assert old["peak"] == 4 * (1000 + copy) + 600 + old["best_file"]
    assert old["at_end"] == 3 * (1000 + copy) + 2 * 600 + old["best_file"]
    text, checkpoint_ratio, run_ratio = report("cpu_demo", check=False)
    assert "| `trainable.safetensors` |" in text and checkpoint_ratio > 1.2 and run_ratio > 1.0
    assert text.rstrip().endswith(f"checkpoint_ratio={checkpoint_ratio:.2f} run_ratio={run_ratio:.2f}")
