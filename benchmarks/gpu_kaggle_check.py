"""Does the Kaggle T4x2 recipe train the real Qwen3-VL-2B shape? `banglaocr train` itself, measured.

Runs the real training loop as a subprocess - `python -m banglaocr train --recipe
recipes/gpu_2b_random.yaml` (the kaggle_t4x2 settings on Qwen3-VL-2B's architecture with RANDOM
weights, synthetic words, no download) plus dotted overrides (`train.precision`, `train.max_steps`,
`train.batch_size`, `train.output_dir`, `data.synth.dir`) - then reads what the run wrote
(`summary.json`, `metrics.jsonl`, `recipe.yaml`, `final/`) and prints ONE JSON line. A crash or an
out-of-memory error of the run is that line too (`error`: the last line of the run's output; the
whole output is in `<out>/<precision>.log`, and the folder is then kept). Random weights give the
real shapes, hence the real speed and memory; the loss values mean nothing.

Each run goes to `<out>/<precision>/`, the synthetic words (rendered once) to `<out>/synth/`. `--out`
keeps everything - several GB per 2B run, as the loop saves the random base weights with `best/`,
`final/` and the checkpoint; without it a run folder is deleted once read.

The JSON line (every key always present; null where it does not apply):
- `precision`, `device` (CUDA device 0's name, or `cpu`), `processes`, `batch_size_per_process`,
  `grad_accum_steps`, `steps`, `nonfinite_steps` (optimizer steps skipped as non-finite; a
  GradScaler may skip a few at the start under fp16 while it lowers its scale).
- `samples_per_s`: steady state, from `metrics.jsonl`: the log windows AFTER the first one (the first
  pays for kernel selection, allocator growth and the DataLoader's start); `samples_per_s_basis`
  says which steps. With a single log window it falls back to all steps and says so.
  `samples_per_s_run` is summary.json's figure for the whole run (warm-up and the final validation
  included). `step_s`: seconds per optimizer step at the steady rate.
- `peak_gpu_memory_gib`: summary.json's `peak_gpu_memory_gb` (torch.cuda.max_memory_allocated, in
  units of 2**30 bytes) of the main process over the whole run - training steps, the final
  validation and the test split's generation; with one process, the peak per process. `fits_t4`:
  <= 14.5 GiB, what torch sees of a Kaggle T4's 16 GB (allocated memory: the allocator reserves
  somewhat more, and summary.json does not record that).
- `tokens_per_sample` (non-padding sequence positions, visual tokens included),
  `padded_tokens_per_sample`, `supervised_tokens_per_sample`, `patches_per_sample` (16x16x2
  vision-tower inputs; 4 of them merge into one visual token): means over the steady steps, replayed
  from the run's own data - its `recipe.yaml`, the synthetic folder it rendered, its batch stream
  (`BatchStream`, same seed), resized to its image budget and collated by banglaocr's `Collator`
  with the tokenizer saved in `final/`. Nothing is assumed.
- `params`: counted from the run's `final/base/*.safetensors` and `final/adapter_model.safetensors`
  (tensor shapes only): `lm` (language-model matrices, embeddings excluded), `lm_head` (vocabulary x
  hidden; tied to the embeddings), `vision` (patch embedding + vision blocks: run per patch),
  `vision_merger` (merger + deepstack mergers: run per visual token), `lora`, `lora_vision`.
- `model_tflops_per_step`, `peak_tflops`, `mfu`.

MFU = model FLOPs per optimizer step / (step_s x peak FLOP/s of one device x processes), with the
model FLOPs of LoRA on a frozen base, per sample:

    4 x lm x tokens                   language model: forward 2N, backward to the activations 2N
                                      (frozen weights: no weight gradients)
  + 4 x lm_head x supervised          lm_head runs on the supervised positions only (forward + backward)
  + 6 x lora x tokens                 LoRA: forward, activation and weight gradients
  + 2 x vision x patches              vision tower, forward only (frozen, nothing to train before it)
  + 2 x vision_merger x patches / 4   the mergers run on merged (2x2) patches
  + [only when adapters reach into the vision tower: its backward to the activations,
     2 x (vision x patches + vision_merger x patches / 4), + 6 x lora_vision x patches]

Left out: norm weights, biases, the position-embedding lookup and the attention products (scores
and values: 4 x sequence x attention width per token and layer, under 1% of the matrices' FLOPs at
this recipe's sequences of about 50 tokens). The recomputation of gradient
checkpointing is NOT counted: it is work the hardware does, not model FLOPs - hence MFU, not
hardware utilisation. Peak FLOP/s: dense fp16/bf16 tensor-core figures by device name (`PEAK_TFLOPS`:
T4 65 fp16, V100 125 fp16, L4 121, A100 312, H100 SXM 989, H200 989); `--peak-tflops` overrides;
for another device (or fp32) `mfu` is null and `notes` says why.

    python benchmarks/gpu_kaggle_check.py --both                 # on a GPU: fp16, then bf16, + a table
    python benchmarks/gpu_kaggle_check.py --precision bf16 --steps 40
    python benchmarks/gpu_kaggle_check.py --tiny --device cpu    # CPU smoke test of the same path (fp32)
    python benchmarks/gpu_kaggle_check.py --device-map           # the 2B split over the GPU and the CPU

`--device-map` runs the same check in ONE process with `model.device_map=auto` and
`model.max_memory=[0=<--gpu-memory>, cpu=<--cpu-memory>]` (default 3 GiB on GPU 0: the vision tower,
the embedding and the first layers; the rest is offloaded to the CPU, its LoRA weights stay on the GPU)
through the real loop: accelerate's offload hooks streaming frozen weights to the GPU at every forward,
adapters of offloaded layers training, the fp32 vision tower and the matmul patch embedding under the
hooks, generation for the final validation, the saved base read back from the offload store. It is slow
by design (offloaded weights cross PCIe at every forward): read its line for "it trains", not for speed.
Its runs go to `<out>/<precision>-device-map/`. With `--device cpu` (the smoke test) only
`cpu=<--cpu-memory>` is given: what does not fit is offloaded to disk.

accelerate runs CPU-offloaded layers on GPU 0, so that run keeps every activation on one device. The
layout of two GPUs - the last layers, hence the hidden states, on another device than the inputs,
labels and the tied lm_head - is checked next to it in process (`two_devices` in the JSON line):
banglaocr's tiny model with its last decoder layer and final norm on GPU 0 and the rest on the CPU
(both execute), one LoRA forward + backward of `SupervisedLossModel` against the same model on the CPU
alone (`loss_diff`, `grad_max_diff`; `ok` within 1e-4). On `--device cpu` both halves are the CPU:
the plumbing only.

Without CUDA and without `--device cpu` it exits with code 2 and one line. Needs what
`banglaocr train` needs for the recipe (bitsandbytes for its 8-bit AdamW, or pass
`train.optimizer=adamw` as an extra override and compare memory with care).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without installing the package
    sys.path.insert(1, str(ROOT))

RECIPE = ROOT / "recipes" / "gpu_2b_random.yaml"
T4_USABLE_GIB = 14.5  # what torch sees of a Kaggle T4's 16 GB
MERGE = 4  # Qwen3-VL merges 2x2 patches into one visual token
# Dense tensor-core peaks (no sparsity), TFLOP/s, by a pattern on the device name; first match wins.
PEAK_TFLOPS = [
    (r"\bT4\b", {"fp16": 65.0}),
    (r"\bV100\b", {"fp16": 125.0}),
    (r"\bL4\b", {"fp16": 121.0, "bf16": 121.0}),
    (r"\bA100\b", {"fp16": 312.0, "bf16": 312.0}),
    (r"\bH100\b(?!.*\b(PCIe|NVL)\b)", {"fp16": 989.0, "bf16": 989.0}),  # SXM ("H100 80GB HBM3")
    (r"\bH200\b(?!.*\bNVL\b)", {"fp16": 989.0, "bf16": 989.0}),
]
# --tiny: the same recipe and path with banglaocr's small random model, fp32, small data.
TINY_OVERRIDES = ["model.name_or_path=tiny", "model.init=tiny", "lora.r=8", "lora.alpha=16",
                  "data.synth.n=120", "data.num_workers=0", "train.log_steps=2"]
TINY_DEFAULTS = {"steps": 6, "batch_size": 4}
KEYS = ("model", "precision", "device", "device_map", "processes", "batch_size_per_process", "grad_accum_steps",
        "steps", "samples_per_s", "samples_per_s_basis", "samples_per_s_run", "step_s", "peak_gpu_memory_gib", "fits_t4",
        "nonfinite_steps", "tokens_per_sample", "padded_tokens_per_sample", "supervised_tokens_per_sample",
        "patches_per_sample", "params", "model_tflops_per_step", "peak_tflops", "mfu", "final_loss", "two_devices",
        "wall_s", "output_dir", "notes")


@dataclasses.dataclass(frozen=True)
class Params:
    """Parameter counts of the FLOPs formula (see the module docstring)."""

    lm: int
    lm_head: int
    vision: int
    vision_merger: int
    lora: int
    lora_vision: int = 0


@dataclasses.dataclass(frozen=True)
class Counts:
    """Token and patch counts of some samples (sums)."""

    samples: int = 0
    tokens: int = 0
    padded_tokens: int = 0
    supervised: int = 0
    patches: int = 0

    def __add__(self, other: Counts) -> Counts:
        return Counts(*(a + b for a, b in zip(dataclasses.astuple(self), dataclasses.astuple(other))))


# --------------------------------------------------------------------------- FLOPs and MFU


def model_flops(params: Params, counts: Counts) -> float:
    """Model FLOPs of one forward + backward over `counts` (the module docstring's formula).

    >>> model_flops(Params(lm=100, lm_head=10, vision=20, vision_merger=8, lora=5),
    ...             Counts(samples=1, tokens=7, supervised=3, patches=16))
    3834.0
    """
    vision_forward = 2 * params.vision * counts.patches + 2 * params.vision_merger * counts.patches / MERGE
    flops = (4 * params.lm * counts.tokens + 4 * params.lm_head * counts.supervised
             + 6 * params.lora * counts.tokens + vision_forward)
    if params.lora_vision:  # gradients then flow back into the vision tower too
        flops += vision_forward + 6 * params.lora_vision * counts.patches
    return float(flops)


def mfu(flops_per_step: float, step_s: float, peak_tflops: float, devices: int = 1) -> float:
    """Model FLOPs utilisation: FLOPs of one step over what `devices` devices could do in `step_s`.

    >>> mfu(6.5e12, 0.5, 65.0)
    0.2
    """
    return flops_per_step / (step_s * peak_tflops * 1e12 * devices)


def peak_tflops(device: str, precision: str) -> float | None:
    """The device's dense fp16/bf16 peak from `PEAK_TFLOPS`, None when unknown (or fp32).

    >>> peak_tflops("Tesla T4", "fp16"), peak_tflops("NVIDIA H100 PCIe", "bf16"), peak_tflops("cpu", "fp32")
    (65.0, None, None)
    """
    for pattern, peaks in PEAK_TFLOPS:
        if re.search(pattern, device):
            return peaks.get(precision)
    return None


# --------------------------------------------------------------------------- reading the run


def _shapes(path: Path) -> dict[str, list[int]]:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as handle:
        return {name: handle.get_slice(name).get_shape() for name in handle.keys()}


def count_params(model_dir: Path) -> Params | None:
    """The formula's parameter counts from a saved LoRA model folder (`final/`); None without an adapter."""
    adapter = model_dir / "adapter_model.safetensors"
    if not adapter.is_file():
        return None
    base = {}
    for path in sorted((model_dir / "base").glob("*.safetensors")):
        base.update(_shapes(path))
    groups = dict.fromkeys(("lm", "embed", "lm_head", "vision", "vision_merger"), 0)
    for name, shape in base.items():
        if len(shape) < 2 or "pos_embed" in name:  # norms and biases; a position-embedding lookup
            continue
        if "embed_tokens" in name:
            group = "embed"
        elif name.startswith("lm_head"):
            group = "lm_head"
        elif ".visual." in f".{name}":
            group = "vision_merger" if "merger" in name else "vision"
        else:
            group = "lm"
        groups[group] += math.prod(shape)
    lora = dict.fromkeys((False, True), 0)
    for name, shape in _shapes(adapter).items():
        lora[".visual." in name] += math.prod(shape)
    return Params(lm=groups["lm"], lm_head=groups["lm_head"] or groups["embed"], vision=groups["vision"],
                  vision_merger=groups["vision_merger"], lora=lora[False], lora_vision=lora[True])


def steady_rate(rows: list[dict], samples_per_step: int) -> tuple[float, int, str] | None:
    """(samples/s, first steady step, basis) from metrics.jsonl's training rows, leaving out the first log
    window; None with fewer than two windows.

    >>> steady_rate([{"step": 5, "samples_per_s": 10.0}, {"step": 10, "samples_per_s": 20.0},
    ...              {"step": 12, "samples_per_s": 8.0}], 4)  # 20 samples in 1 s, then 8 in 1 s
    (14.0, 6, 'steps 6-12 (the log windows after the first)')
    """
    rows = [row for row in rows if "samples_per_s" in row]
    if len(rows) < 2:
        return None
    samples = seconds = 0.0
    for previous, row in zip(rows, rows[1:]):
        window = (row["step"] - previous["step"]) * samples_per_step
        samples += window
        seconds += window / row["samples_per_s"]
    first = rows[0]["step"] + 1
    return samples / seconds, first, f"steps {first}-{rows[-1]['step']} (the log windows after the first)"


def replay_counts(run_dir: Path, first_step: int, last_step: int, processes: int) -> Counts | None:
    """Token and patch counts of steps first..last (1-based, all processes), replayed from the run's data
    stream exactly as the loop draws it; None for a curriculum run (its stream changes with the loss)."""
    from transformers import AutoTokenizer

    from banglaocr.config import load_recipe
    from banglaocr.data.collate import Collator
    from banglaocr.data.sources import load_splits, resolve_source
    from banglaocr.train.batches import BatchStream, WordImages
    from banglaocr.train.loss import supervised_token_count

    recipe = load_recipe(run_dir / "recipe.yaml")
    cfg = recipe.train
    if recipe.data.curriculum is not None:
        return None
    records = load_splits(resolve_source(recipe.data, run_dir)).train
    images = WordImages(records, recipe.data.image)
    collate = Collator(AutoTokenizer.from_pretrained(str(run_dir / "final")), recipe.data.prompt, train=True)
    total = Counts()
    for rank in range(processes):
        stream = BatchStream(lengths=[len(r.text) for r in records], batch_size=cfg.batch_size, seed=cfg.seed,
                             group_by_length=cfg.group_by_length, rank=rank, world_size=processes).iterate(0)
        for micro in range(last_step * cfg.grad_accum_steps):
            indices = next(stream)
            if micro < (first_step - 1) * cfg.grad_accum_steps:
                continue
            samples = [s for s in (images[i] for i in indices) if "error" not in s]
            if not samples:
                continue
            batch = collate(samples)
            total += Counts(samples=len(samples), tokens=int(batch["attention_mask"].sum()),
                            padded_tokens=int(batch["input_ids"].numel()),
                            supervised=int(supervised_token_count(batch["labels"])),
                            patches=int(batch["image_grid_thw"].prod(dim=1).sum()))
    return total


# --------------------------------------------------------------------------- one run


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="extra recipe overrides for the run")
    parser.add_argument("--precision", choices=["fp16", "bf16", "fp32"],
                        help="default: the recipe's (fp16); fp32 with --tiny --device cpu")
    parser.add_argument("--both", action="store_true", help="fp16, then bf16; one line each and a table")
    parser.add_argument("--steps", type=int, help="optimizer steps (default: the recipe's, 30; --tiny: 6)")
    parser.add_argument("--batch-size", type=int, help="per process (default: the recipe's, 16; --tiny: 4)")
    parser.add_argument("--out", type=Path, help="folder for the runs (kept); default: a temporary folder")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--tiny", action="store_true", help="banglaocr's tiny random model (smoke test)")
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--peak-tflops", type=float, help="the device's peak (overrides the table)")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per run")
    parser.add_argument("--device-map", action="store_true",
                        help="one process, model.device_map=auto with max_memory: the model split over GPU and CPU")
    parser.add_argument("--gpu-memory", default="3GiB", help="--device-map: GPU 0's share (model.max_memory)")
    parser.add_argument("--cpu-memory", default="64GiB", help="--device-map: the CPU's share (model.max_memory)")
    return parser.parse_args(argv)


def train_command(args, precision: str, run_dir: Path, synth_dir: Path) -> list[str]:
    """`python -m banglaocr train` with the recipe and the overrides of this check."""
    defaults = TINY_DEFAULTS if args.tiny else {}
    overrides = [f"train.precision={precision}", f"train.output_dir={run_dir}", f"data.synth.dir={synth_dir}"]
    steps, batch_size = args.steps or defaults.get("steps"), args.batch_size or defaults.get("batch_size")
    overrides += [f"train.max_steps={steps}"] if steps else []
    overrides += [f"train.batch_size={batch_size}"] if batch_size else []
    overrides += TINY_OVERRIDES if args.tiny else []
    overrides += device_map_overrides(args)
    return [sys.executable, "-m", "banglaocr", "train", "--recipe", str(RECIPE), "--overwrite",
            *overrides, *args.overrides]


def device_map_overrides(args) -> list[str]:
    """`--device-map`: the recipe keys that split the model over GPU 0 and the CPU (only the CPU with --device cpu).

    >>> device_map_overrides(argparse.Namespace(device_map=True, device="cuda", gpu_memory="3GiB", cpu_memory="64GiB"))
    ['model.device_map=auto', 'model.max_memory=[0=3GiB, cpu=64GiB]']
    """
    if not args.device_map:
        return []
    shares = [f"cpu={args.cpu_memory}"] if args.device == "cpu" else [f"0={args.gpu_memory}", f"cpu={args.cpu_memory}"]
    return ["model.device_map=auto", f"model.max_memory=[{', '.join(shares)}]"]


def run_name(args, precision: str) -> str:
    return f"{precision}-device-map" if args.device_map else precision


def run_training(args, precision: str, out: Path) -> tuple[Path, str | None]:
    """Run `banglaocr train` (output in `<out>/<run name>.log`); returns (run folder, error line or None)."""
    run_dir, log = out / run_name(args, precision), out / f"{run_name(args, precision)}.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    if args.device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    command = train_command(args, precision, run_dir, out / "synth")
    print(f"running: {' '.join(command[1:])}", file=sys.stderr, flush=True)
    with log.open("w", encoding="utf-8") as handle:
        try:
            code = subprocess.run(command, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT,
                                  timeout=args.timeout).returncode
        except subprocess.TimeoutExpired:
            return run_dir, f"banglaocr train ran past --timeout {args.timeout:g} s"
    if code == 0:
        return run_dir, None
    lines = [line.strip() for line in log.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
    return run_dir, f"banglaocr train exited with code {code}: {lines[-1][:500] if lines else '(no output)'}"


def device_name(device: str) -> str:
    import torch

    return torch.cuda.get_device_name(0) if device == "cuda" else "cpu"


def measure(args, precision: str, run_dir: Path) -> dict:
    """The JSON line's numbers from a finished run's folder."""
    summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines() if line]
    from banglaocr.config import load_recipe

    cfg = load_recipe(run_dir / "recipe.yaml").train
    processes, notes = summary["processes"], []
    per_step = cfg.batch_size * cfg.grad_accum_steps * processes
    steady = steady_rate(rows, per_step)
    if steady is None:
        rate, first, basis = summary["samples_per_s"], 1, "all steps (one log window: warm-up included)"
    else:
        rate, first, basis = steady
    counts = replay_counts(run_dir, first, summary["steps"], processes)
    params = count_params(run_dir / "final")
    step_s = per_step / rate
    device = device_name(args.device)
    peak = args.peak_tflops or peak_tflops(device, precision)
    flops = model_flops(params, counts) / (summary["steps"] - first + 1) if counts and params else None
    if peak is None:
        notes.append(f"no peak FLOP/s known for {device} in {precision}: pass --peak-tflops for the MFU")
    if counts is None:
        notes.append("a curriculum run: its data stream is not replayed, no token counts")
    if params is None:
        notes.append("no LoRA adapter in final/: the FLOPs formula is for LoRA runs")
    memory = summary["peak_gpu_memory_gb"]

    def per_sample(field: str) -> float | None:
        return round(getattr(counts, field) / counts.samples, 2) if counts else None

    return {
        "model": "tiny" if args.tiny else "qwen3-vl-2b-arch (random weights)",
        "precision": precision, "device": device, "processes": processes,
        "batch_size_per_process": cfg.batch_size, "grad_accum_steps": cfg.grad_accum_steps,
        "steps": summary["steps"], "samples_per_s": round(rate, 2), "samples_per_s_basis": basis,
        "samples_per_s_run": round(summary["samples_per_s"], 2), "step_s": round(step_s, 4),
        "peak_gpu_memory_gib": round(memory, 2) if memory is not None else None,
        "fits_t4": memory <= T4_USABLE_GIB if memory is not None else None,
        "nonfinite_steps": summary["nonfinite_steps"],
        "tokens_per_sample": per_sample("tokens"),
        "padded_tokens_per_sample": per_sample("padded_tokens"),
        "supervised_tokens_per_sample": per_sample("supervised"),
        "patches_per_sample": per_sample("patches"),
        "params": dataclasses.asdict(params) if params else None,
        "model_tflops_per_step": float(f"{flops / 1e12:.4g}") if flops is not None else None,
        "peak_tflops": peak,
        "mfu": float(f"{mfu(flops, step_s, peak, processes):.4g}") if flops is not None and peak else None,
        "final_loss": summary["final_loss"], "notes": notes,
    }


def check(args, precision: str, out: Path) -> dict:
    """One run and its JSON line (an `error` line when the run failed)."""
    started = time.perf_counter()
    run_dir, error = run_training(args, precision, out)
    if error is None:
        try:
            measured = measure(args, precision, run_dir)
        except (OSError, KeyError, ValueError) as err:  # e.g. a run stopped by its time limit: no summary.json
            error = f"reading the run in {run_dir} failed: {type(err).__name__}: {err}"
    if error is not None:
        return {"precision": precision, "error": error, "log": str(out / f"{run_name(args, precision)}.log")}
    result = {key: None for key in KEYS}
    result.update(measured)
    result["device_map"] = device_map_overrides(args)[1].split("=", 1)[1] if args.device_map else None
    result["two_devices"] = two_device_check("cuda:0" if args.device == "cuda" else "cpu") if args.device_map else None
    result["wall_s"] = round(time.perf_counter() - started, 1)
    if args.out or args.keep:
        result["output_dir"] = str(run_dir)
    else:  # read: gone (a 2B run saves its random base with best/, final/ and the checkpoint)
        shutil.rmtree(run_dir, ignore_errors=True)
    return result


def two_device_check(tail_device: str, tolerance: float = 1e-4) -> dict:
    """One LoRA forward + backward with the tiny model's last decoder layer and final norm on `tail_device` and
    everything else (inputs, labels, the tied lm_head with its embedding) on the CPU, against the model on the
    CPU alone: what `device_map=auto` does on two GPUs, on one GPU and the CPU.

    >>> result = two_device_check("cpu")
    >>> result["tail_device"], result["ok"], result["loss_diff"]
    ('cpu', True, 0.0)
    """
    import torch
    from accelerate import dispatch_model
    from PIL import Image

    from banglaocr.config import ImageConfig, LoraConfig, ModelConfig, TinyModelSpec
    from banglaocr.data.collate import Collator, finish_batch_on_device
    from banglaocr.data.pixels import resize_to_budget
    from banglaocr.model.factory import core_model, load_model
    from banglaocr.model.placement import execution_device
    from banglaocr.train.supervised_model import SupervisedLossModel

    spec = TinyModelSpec(hidden_size=64, num_layers=2, vision_depth=1)
    models = []
    for _ in range(2):
        torch.manual_seed(0)
        models.append(load_model(ModelConfig(name_or_path="tiny", init="tiny", dtype="float32", tiny=spec),
                                 LoraConfig(r=4, dropout=0.0)))
    core = core_model(models[1].model)
    last = f"model.language_model.layers.{spec.num_layers - 1}"
    on_cpu = ["model.visual", "model.language_model.embed_tokens", "model.language_model.rotary_emb", "lm_head",
              *(f"model.language_model.layers.{i}" for i in range(spec.num_layers - 1))]
    dispatch_model(core, {**dict.fromkeys(on_cpu, "cpu"), last: tail_device, "model.language_model.norm": tail_device},
                   main_device="cpu")
    generator = torch.Generator().manual_seed(0)
    images = [resize_to_budget(Image.fromarray((torch.rand(32, 64 * (i + 1), 3, generator=generator) * 255)
                                               .to(torch.uint8).numpy()), ImageConfig(height=32, max_width=128))
              for i in range(2)]
    batch = Collator(models[0].tokenizer, "লেখো", train=True)(
        [{"image": image, "text": text} for image, text in zip(images, ["কলম", "আমার বই"])])
    losses, grads = [], []
    for loaded in models:
        loss = SupervisedLossModel(loaded.model, 2.0, 0.1)(finish_batch_on_device(batch, "cpu"), batch["labels"])
        loss.backward()
        losses.append(loss.detach())
        grads.append({n: p.grad.cpu() for n, p in loaded.model.named_parameters() if p.requires_grad})
    loss_diff = float((losses[0] - losses[1]).abs())
    grad_diff = max(float((grads[0][n] - grads[1][n]).abs().max()) for n in grads[0])
    return {"tail_device": str(execution_device(core.model.language_model.norm)), "loss_device": str(losses[1].device),
            "loss_diff": loss_diff, "grad_max_diff": grad_diff,
            "ok": losses[1].device.type == "cpu" and max(loss_diff, grad_diff) <= tolerance}


def table(results: list[dict]) -> str:
    """A Markdown table of the runs."""
    lines = ["| precision | samples/s | step s | peak GiB | fits T4 | non-finite steps | MFU |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['precision']} | error: {r['error']} | | | | | |")
            continue
        cells = [r[key] for key in ("samples_per_s", "step_s", "peak_gpu_memory_gib", "fits_t4", "nonfinite_steps",
                                    "mfu")]
        lines.append(f"| {r['precision']} | " + " | ".join("-" if c is None else str(c) for c in cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: no CUDA device here: this check measures a GPU (use --tiny --device cpu for the CPU "
              "smoke test)", file=sys.stderr)
        return 2
    from banglaocr.config import load_recipe

    if args.both:
        precisions = ["fp16", "bf16"]
    else:
        precisions = [args.precision or ("fp32" if args.tiny and args.device == "cpu"
                                         else load_recipe(RECIPE).train.precision)]
    out = args.out or Path(tempfile.mkdtemp(prefix="gpu_kaggle_check-"))
    out.mkdir(parents=True, exist_ok=True)
    results = []
    try:
        for precision in precisions:
            results.append(check(args, precision, out))
            print(json.dumps(results[-1]), flush=True)
    finally:
        failed = len(results) < len(precisions) or any("error" in r for r in results)
        if args.out is None and not args.keep and not failed:  # a failed run's log stays
            shutil.rmtree(out, ignore_errors=True)
    if len(results) > 1:
        print(table(results))
    failed_two_devices = any(not (r.get("two_devices") or {"ok": True})["ok"] for r in results)
    return 1 if failed_two_devices or any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
