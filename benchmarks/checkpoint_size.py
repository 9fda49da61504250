"""Checkpoint size of the kaggle_t4x2 recipe on Qwen3-VL-2B's shape: every tensor stored once (this version)
next to the layout before (the adapter stored twice per checkpoint - `model/` and `trainable.safetensors` -
and once more as `checkpoints/best.safetensors`), side by side, with what `train.keep_last` costs.

    python benchmarks/checkpoint_size.py [--recipe kaggle_t4x2] [--no-check] [--out FILE]

- The model is the recipe's, built on the meta device by `banglaocr.disk_use` (shapes and dtypes, no
  weights, nothing downloaded): Qwen3-VL-2B's architecture (the hub's config.json when cached, else the
  shipped `qwen3-vl-2b-arch`), the recipe's dtype policy, its LoRA applied with peft. Every tensor file is
  counted to the byte (safetensors: header + data), the tokenizer files by saving the real Qwen tokenizer,
  small files (configs, states, model card) with the module's allowance.
- The layout before adds, per checkpoint, `trainable.safetensors` (the trainable tensors, float32, a second
  time) and, per run, `checkpoints/best.safetensors` (the same tensors a third time).
- The run: `keep_last` checkpoints plus the one being written (its temporary folder exists before the
  oldest is rotated out), best/ and final/. Kaggle gives 20 GB of working space (/kaggle/working).
- Unless `--no-check`: the estimate is checked against real runs on this machine (cpu_demo's LoRA on the
  shipped tiny model, and a full fine-tune of a tiny model with 8-bit AdamW, 4 steps each): each counted
  file's estimated bytes next to its bytes on disk; and what the estimate costs `train --dry-run`: the
  same command in fresh processes, with the estimate and with it switched off, alternating, median wall
  time.

Writes benchmarks/results/checkpoint_size.md (and prints it). The last line is
`checkpoint_ratio=X.XX run_ratio=Y.YY` (the layout before / this version: one checkpoint; the run's peak).
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import math
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout

KAGGLE_WORKING_BYTES = 20 * 10**9  # /kaggle/working: "20 GB"
RESULT = ROOT / "benchmarks" / "results" / "checkpoint_size.md"


def gb(count: int) -> str:
    return f"{count / 1e9:.2f}"


def old_layout(use, best_step: int) -> dict[str, int]:
    """The layout before, from this version's estimate: + trainable.safetensors per checkpoint (no metadata),
    + checkpoints/best.safetensors (metadata: the best step)."""
    from banglaocr.disk_use import safetensors_bytes

    trainable = safetensors_bytes(list(use.shape.trainable))
    best_file = safetensors_bytes(list(use.shape.trainable), {"step": str(best_step)}) if use.has_best else 0
    checkpoint = use.checkpoint.bytes + trainable
    writing = use.checkpoints_at_peak * checkpoint + use.has_best * (use.model_folder.bytes + best_file)
    at_end = use.checkpoints_kept * checkpoint + (1 + use.has_best) * use.model_folder.bytes + best_file
    return {"trainable": trainable, "best_file": best_file, "checkpoint": checkpoint,
            "peak": max(writing, at_end) + use.data_bytes, "at_end": at_end + use.data_bytes}


def checkpoint_table(use, old: dict[str, int]) -> list[str]:
    from banglaocr.disk_use import grouped_files

    lines = ["| file of `checkpoints/step-N/` | what | this version, bytes | before, bytes |", "| --- | --- | ---: | ---: |"]
    for f in grouped_files(use.checkpoint.files):
        lines.append(f"| `{f.path}` | {f.what} | {f.bytes:,} | {f.bytes:,} |")
    lines.append(f"| `trainable.safetensors` | the trainable tensors again (float32) | - | {old['trainable']:,} |")
    lines.append(f"| **one checkpoint** | | **{use.checkpoint.bytes:,}** ({gb(use.checkpoint.bytes)} GB) | "
                 f"**{old['checkpoint']:,}** ({gb(old['checkpoint'])} GB) |")
    return lines


def run_table(use, old: dict[str, int]) -> list[str]:
    n, ckpt, folder = use.checkpoints_at_peak, use.checkpoint.bytes, use.model_folder.bytes
    rows = [(f"{n} checkpoints (keep_last {use.keep_last} + the one being written)", n * ckpt, n * old["checkpoint"]),
            ("best/ (model folder)", folder * use.has_best, folder * use.has_best),
            ("final/ (model folder)", folder, folder),
            ("checkpoints/best.safetensors", 0, old["best_file"])]
    if use.data is not None:
        rows.append((f"{Path(use.data.path).name}/ (synthetic data)", use.data.bytes, use.data.bytes))
    rows += [("**peak** (while a checkpoint is written, or at the end)", use.peak, old["peak"]),
             ("at the end (keep_last checkpoints, best/, final/)", use.at_end, old["at_end"])]
    lines = ["| the run | this version, GB | before, GB | before / this |", "| --- | ---: | ---: | ---: |"]
    for label, new, before in rows:
        ratio = f"{before / new:.2f}" if new else "-"
        lines.append(f"| {label} | {gb(new)} | {gb(before)} | {ratio} |")
    return lines


def keep_last_table(use, best_step: int) -> list[str]:
    lines = ["| train.keep_last | checkpoints at the peak | peak, this version, GB | peak, before, GB | "
             "fits 20 GB: this / before |", "| ---: | ---: | ---: | ---: | --- |"]
    for keep in range(1, 7):
        variant = dataclasses.replace(use, keep_last=keep)
        old = old_layout(variant, best_step)
        fits = lambda b: "yes" if b <= KAGGLE_WORKING_BYTES else "no"  # noqa: E731
        lines.append(f"| {keep} | {variant.checkpoints_at_peak} | {gb(variant.peak)} | {gb(old['peak'])} | "
                     f"{fits(variant.peak)} / {fits(old['peak'])} |")
    return lines


CHECK_RUN = ["data.synth.n=64", "train.max_steps=4", "train.save_steps=2", "train.eval_steps=2", "train.keep_last=1",
             "train.batch_size=4", "train.threads=1", "eval.max_samples=4", "eval.max_new_tokens=6",
             "eval.before_training=false", "augment.enabled=false"]
TINY_FULL = ["model.name_or_path=tiny-check", "model.init=tiny", "model.tiny.hidden_size=32", "model.tiny.num_layers=1",
             "model.tiny.num_heads=2", "model.tiny.num_kv_heads=1", "model.tiny.intermediate_size=64",
             "model.tiny.vision_depth=1", "model.tiny.vision_hidden_size=32", "model.tiny.vision_heads=2",
             "model.tiny.vision_intermediate_size=64", "lora=null", "train.optimizer=adamw8bit"]


def check_against_runs() -> list[str]:
    """Real runs on this machine: each counted file of the newest checkpoint and of final/, estimated vs on
    disk, and the tensor files on disk the estimate does not count (there should be none)."""
    import torch
    from rich.console import Console

    from banglaocr.config import load_recipe
    from banglaocr.disk_use import estimate_disk_use
    from banglaocr.train.loop import run_training

    torch.set_num_threads(1)
    root = Path(tempfile.mkdtemp(prefix="banglaocr-checkpoint-size-"))
    cases = {"cpu_demo (LoRA r16 on the shipped tiny model, AdamW)": [],
             "tiny full fine-tune (8-bit AdamW)": TINY_FULL}
    lines = ["| run | file | estimate, bytes | on disk, bytes |", "| --- | --- | ---: | ---: |"]
    for index, (name, extra) in enumerate(cases.items()):
        recipe = load_recipe("cpu_demo", [*CHECK_RUN, f"data.synth.dir={root / 'synth'}", *extra])
        out = root / f"run-{index}"
        use = estimate_disk_use(recipe, out)
        run_training(recipe, out, console=Console(file=io.StringIO()))
        strays = []
        for folder, estimated in ((out / "checkpoints" / "step-4", use.checkpoint), (out / "final", use.model_folder)):
            counted = {f.path for f in estimated.files}
            for f in estimated.files:
                if not f.path.endswith("(small files)"):
                    path = folder / f.path
                    real = f"{path.stat().st_size:,}" if path.is_file() else "missing"
                    lines.append(f"| {name} | `{folder.name}/{f.path}` | {f.bytes:,} | {real} |")
            strays += [f"{folder.name}/{p.relative_to(folder).as_posix()}" for p in folder.rglob("*.safetensors")
                       if p.relative_to(folder).as_posix() not in counted and not p.name.startswith("rng-rank")]
        lines.append(f"| {name} | tensor files on disk not counted | - | {', '.join(strays) or 'none'} |")
    return lines


DRY_RUN_REPEATS = 3
# The dry run as `banglaocr train` runs it; `{off}` switches its disk-use estimate off (the command before).
DRY_RUN = ("import sys; import banglaocr.cli.train as train\n"
           "if {off}: train._print_disk_use = lambda *args: None\n"
           "from banglaocr.cli import main; sys.argv = ['banglaocr', 'train', '--recipe', {recipe!r}, '--dry-run']; main()")


def dry_run_cost(recipe_name: str) -> list[str]:
    """Wall seconds of `banglaocr train --recipe R --dry-run` in a fresh process (imports included), with
    the disk-use estimate and without it, alternating so that both see the same machine load."""
    import os

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    walls: dict[bool, list[float]] = {True: [], False: []}
    cpus: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(DRY_RUN_REPEATS):
        for off in (True, False):
            start, used = time.perf_counter(), _children_cpu()
            subprocess.run([sys.executable, "-c", DRY_RUN.format(off=off, recipe=recipe_name)], env=env, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            walls[off].append(time.perf_counter() - start)
            cpus[off].append(_children_cpu() - used)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines = [f"| `train --recipe {recipe_name} --dry-run` | median wall, s | median CPU (user + sys), s | "
             "wall of each run, s |", "| --- | ---: | ---: | --- |"]
    for off, label in ((True, "the recipe's YAML only (the estimate switched off)"),
                       (False, "YAML + expected disk use (this version)")):
        lines.append(f"| {label} | {statistics.median(walls[off]):.1f} | {statistics.median(cpus[off]):.1f} | "
                     f"{', '.join(f'{t:.1f}' for t in walls[off])} |")
    ratio = lambda runs: statistics.median(runs[False]) / statistics.median(runs[True])  # noqa: E731
    lines.append(f"| with / without | {ratio(walls):.1f} | {ratio(cpus):.1f} | {os.cpu_count()} CPUs, load average "
                 f"{load:.1f} at the end |")
    return lines


def _children_cpu() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def report(recipe_name: str, check: bool) -> tuple[str, float, float]:
    from banglaocr.config import load_recipe
    from banglaocr.disk_use import estimate_disk_use

    recipe = load_recipe(recipe_name)
    use = estimate_disk_use(recipe)
    best_step = recipe.train.max_steps  # the longest step number best.safetensors could name
    old = old_layout(use, best_step)
    lora = f"LoRA r{recipe.lora.r}" if recipe.lora else "full fine-tune"
    values = sum(math.prod(shape) for _, _, shape in use.shape.trainable)
    text = [f"# Checkpoint size: {recipe_name} on the 2B shape, every tensor once vs the layout before", "",
            f"`python benchmarks/checkpoint_size.py --recipe {recipe_name}`", "",
            f"- model: {use.shape.source}, built on the meta device (no weights); {lora} "
            f"({values:,} trainable values, {len(use.shape.trainable)} tensors), train.precision "
            f"{recipe.train.precision}, train.optimizer {recipe.train.optimizer}",
            f"- run: {recipe.train.max_steps} steps, a checkpoint every {recipe.train.save_steps} ({use.saves} saves), "
            f"train.keep_last {use.keep_last}; 1 GB = 10^9 bytes", "",
            "## One checkpoint", "", *checkpoint_table(use, old), "",
            "## The run", "", *run_table(use, old), "",
            "## What train.keep_last costs", "", *keep_last_table(use, best_step), ""]
    if check:
        text += ["## The estimate next to real runs (this machine)", "", *check_against_runs(), "",
                 "## What the estimate costs the dry run (this machine)", "", *dry_run_cost(recipe_name), ""]
    checkpoint_ratio, run_ratio = old["checkpoint"] / use.checkpoint.bytes, old["peak"] / use.peak
    text.append(f"checkpoint_ratio={checkpoint_ratio:.2f} run_ratio={run_ratio:.2f}")
    return "\n".join(text) + "\n", checkpoint_ratio, run_ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", default="kaggle_t4x2")
    parser.add_argument("--no-check", action="store_true", help="skip the real runs that check the estimate and the dry-run timing")
    parser.add_argument("--out", type=Path, default=RESULT)
    args = parser.parse_args()
    text, _, _ = report(args.recipe, not args.no_check)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(text, end="")


if __name__ == "__main__":
    main()
