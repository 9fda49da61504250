"""What this machine offers a run, checked: the rows of `banglaocr doctor`.

Each check is a `Check`: what was looked at, what was found, whether it works, and - when it does
not - the one thing to do. `needs(recipe)` says which checks a recipe cannot do without (a CUDA GPU
for `train.precision: fp16`, bitsandbytes for `train.optimizer: adamw8bit`, Pillow's RAQM for
`data.source: synth`, the hub or the local cache for a hub id, ...); without a recipe only Python,
torch, accelerate and a writable output folder are needed.

>>> from banglaocr.config import load_recipe
>>> sorted(needs(load_recipe("cpu_demo")))
['accelerate', 'disk', 'kornia', 'python', 'raqm', 'torch']
>>> needs(load_recipe("kaggle_t4x2"))["gpu"]
'train.precision fp16'
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from banglaocr import hub
from banglaocr.errors import first_line

MIN_FREE_GIB = 1.0
"""Free disk the output folder needs at least when the run's own disk use cannot be estimated."""
ALWAYS_NEEDED = ("python", "torch", "accelerate", "disk")


@dataclass(frozen=True)
class Check:
    """One row of `doctor`: `key` is what a recipe may need ("gpu", "raqm", "model", ...)."""

    key: str
    name: str
    found: str
    ok: bool
    fix: str = ""


def needs(recipe=None) -> dict[str, str]:
    """The checks `recipe` cannot run without, each with the recipe key that needs it."""
    needed = {key: "always" for key in ALWAYS_NEEDED}
    if recipe is None:
        return needed
    precision = recipe.train.precision
    if precision == "fp16":
        needed["gpu"] = "train.precision fp16"
    if precision == "bf16":
        needed["bf16"] = "train.precision bf16"
    if recipe.train.optimizer == "adamw8bit":
        needed["bitsandbytes"] = "train.optimizer adamw8bit"
    if recipe.model.quantization is not None:
        needed["bitsandbytes"] = f"model.quantization {recipe.model.quantization}"
    if recipe.augment.enabled:
        needed["kornia"] = "augment.enabled"
    if recipe.data.source == "synth":
        needed["raqm"] = "data.source synth"
    for key, _, why in hub_ids(recipe):
        needed[key] = why
    return needed


def hub_ids(recipe) -> list[tuple[str, str, str]]:
    """(check key, hub id, recipe key) of the model and the data set a recipe downloads from the hub.

    >>> from banglaocr.config import load_recipe
    >>> [repo for _, repo, _ in hub_ids(load_recipe("kaggle_t4x2"))]
    ['Qwen/Qwen3-VL-2B-Instruct', 'swapnillo/BN-HTR-Handwritten-Dataset']
    """
    from banglaocr.model.shipped import looks_like_path, shipped_model

    found = []
    name = recipe.model.name_or_path
    if recipe.model.init == "pretrained" and shipped_model(name) is None and not _local(name) \
            and not looks_like_path(name):
        found.append(("model", name, "model.name_or_path"))
    source = recipe.data.source
    if source != "synth" and not _local(source) and not source.startswith((".", "/", "~")) \
            and not source.endswith((".jsonl", ".csv")):
        found.append(("data", source, "data.source"))
    return found


def _local(name: str) -> bool:
    return Path(name).expanduser().exists()


def output_folder(recipe=None, output_dir: Path | None = None) -> Path:
    """The folder a run writes to: `output_dir`, else the recipe's train.output_dir, else here."""
    return Path(output_dir or (recipe.train.output_dir if recipe is not None else "."))


def run_checks(recipe=None, output_dir: Path | None = None, estimate=None) -> list[Check]:
    """Every row of `doctor`, in order (a row per GPU; a row per hub id of `recipe`). With a recipe the disk
    row compares the run's expected disk use (`estimate`: what `disk_use.try_estimate` returns, computed
    here when not given) with the free space."""
    output = output_folder(recipe, output_dir)
    checks = [python_check(), *torch_checks(), bitsandbytes_check(), kornia_check(), raqm_check()]
    accelerate, processes = accelerate_check()
    if recipe is not None and estimate is None:
        from banglaocr.disk_use import try_estimate

        estimate = try_estimate(recipe, output)
    checks += [accelerate, threads_check(recipe, processes), disk_check(output, estimate), hub_check()]
    if recipe is not None:
        checks += [cache_check(key, repo_id, recipe.model.revision if key == "model" else None)
                   for key, repo_id, _ in hub_ids(recipe)]
    return checks


def python_check() -> Check:
    version = ".".join(map(str, sys.version_info[:3]))
    return Check("python", "Python", f"{version} ({sys.executable})", sys.version_info >= (3, 10),
                 "banglaocr needs Python 3.10 or newer")


def torch_checks() -> list[Check]:
    """torch and its CUDA, one row per GPU (memory, bf16), and whether bf16 is there for a run."""
    try:
        import torch
    except ImportError as err:
        return [Check("torch", "torch", f"not importable ({err})", False,
                      "pip install torch (the CPU build: --index-url https://download.pytorch.org/whl/cpu)")]
    build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "CPU build (no CUDA)"
    rows = [Check("torch", "torch", f"{torch.__version__}, {build}", True)]
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        rows.append(Check("gpu", "GPU", "none: torch sees no CUDA device", False,
                          "run on a machine with a CUDA GPU and a CUDA build of torch, or set train.precision=fp32"))
    bf16 = []
    for index in range(count):
        props = torch.cuda.get_device_properties(index)
        has_bf16 = props.major >= 8  # Ampere and newer; a T4 (7.5) has none
        bf16.append(has_bf16)
        rows.append(Check("gpu", f"GPU {index}", f"{props.name}, {props.total_memory / 2**30:.1f} GiB, compute "
                                                 f"{props.major}.{props.minor}, bf16 {'yes' if has_bf16 else 'no'}",
                          True))
    if count == 0:
        rows.append(Check("bf16", "bf16", "CPU only: bf16 autocast on the CPU (slow)", True))
    else:
        rows.append(Check("bf16", "bf16", "every GPU" if all(bf16) else "not on every GPU", all(bf16),
                          "use train.precision=fp16 (bf16 needs an Ampere or newer GPU: A100, L4, H100, RTX 30xx)"))
    return rows


def bitsandbytes_check() -> Check:
    """One step of bitsandbytes' 8-bit AdamW on a small tensor (on the GPU when there is one)."""
    fix = "pip install -U bitsandbytes, or set train.optimizer=adamw and model.quantization=null"
    noisy = logging.getLogger("bitsandbytes")
    level = noisy.level
    noisy.setLevel(logging.ERROR)  # an optional CPU kernel it announces at import; nothing is wrong
    try:
        import bitsandbytes
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
        weight = torch.nn.Parameter(torch.ones(64, 64, device=device))
        weight.grad = torch.ones_like(weight)
        optimizer = bitsandbytes.optim.AdamW8bit([weight], lr=1e-2, min_8bit_size=0)
        optimizer.step()
        moved = bool((weight.detach() != 1).all())
        state = optimizer.state[weight]["state1"].dtype
    except Exception as err:  # any failure means: the 8-bit optimizer is not usable here
        return Check("bitsandbytes", "bitsandbytes", f"8-bit AdamW fails: {first_line(err)}", False, fix)
    finally:
        noisy.setLevel(level)
    ok = moved and str(state) == "torch.uint8"
    found = f"{bitsandbytes.__version__}, 8-bit AdamW step on {device}: {'ok' if ok else 'weights did not move'}"
    return Check("bitsandbytes", "bitsandbytes", found, ok, fix)


def kornia_check() -> Check:
    try:
        import kornia
    except Exception as err:
        return Check("kornia", "kornia", f"not importable ({first_line(err)})", False,
                     "pip install kornia, or set augment.enabled=false")
    return Check("kornia", "kornia", f"{kornia.__version__} (augmentation)", True)


def raqm_check() -> Check:
    """Pillow's RAQM layout engine: without it Bangla renders with broken conjuncts and vowel signs."""
    from PIL import __version__ as pillow_version
    from PIL import features

    if features.check("raqm"):
        found = f"Pillow {pillow_version}, RAQM {features.version('raqm')}, FriBiDi {features.version('fribidi')}"
        return Check("raqm", "Pillow RAQM", found, True)
    return Check("raqm", "Pillow RAQM", f"Pillow {pillow_version} without RAQM: Bangla cannot be rendered", False,
                 "Debian/Ubuntu: apt-get install libfribidi0 (Pillow's RAQM loads it), then run again")


def accelerate_check() -> tuple[Check, int]:
    """accelerate's default config, and how many processes `accelerate launch` would start."""
    try:
        import accelerate
        import torch
        from accelerate.commands.config.config_args import default_config_file, load_config_from_file
    except Exception as err:
        return Check("accelerate", "accelerate", f"not importable ({first_line(err)})", False,
                     "pip install accelerate"), 1
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if not os.path.isfile(default_config_file):
        processes = max(gpus, 1)
        found = (f"{accelerate.__version__}, no default config: `accelerate launch` starts {processes} "
                 f"process{'es' if processes > 1 else ''} ({'one per GPU' if gpus else 'no GPU'})")
        return Check("accelerate", "accelerate", found, True), processes
    try:
        config = load_config_from_file(default_config_file)
    except Exception as err:
        return Check("accelerate", "accelerate", f"{default_config_file} unreadable ({first_line(err)})", False,
                     f"run `accelerate config` again, or delete {default_config_file}"), 1
    processes = max(int(config.num_processes or 1), 1)
    found = (f"{accelerate.__version__}, {default_config_file}: {config.distributed_type}, {processes} "
             f"process{'es' if processes > 1 else ''}, mixed precision {config.mixed_precision}")
    return Check("accelerate", "accelerate", found, True), processes


def threads_check(recipe, processes: int) -> Check:
    """The torch threads a training process would get here (see `banglaocr.train.threads`)."""
    from banglaocr.train.threads import busy_cpus, cpu_threads, machine_cpus

    requested = recipe.train.threads if recipe is not None else None
    env = os.environ.get("OMP_NUM_THREADS", "")
    requested = requested or (int(env) if env.isdigit() and int(env) > 0 else None)
    cpus, load = machine_cpus(), busy_cpus()
    threads = cpu_threads(requested, cpus, processes, load)
    found = (f"{cpus} CPU{'s' if cpus > 1 else ''} usable (of {os.cpu_count()}), load {load:.1f}: {threads} torch thread"
             f"{'s' if threads > 1 else ''} per training process")
    return Check("threads", "CPU threads", found, True)


def disk_check(folder: Path, estimate=None) -> Check:
    """Free space and write permission at the output folder (its nearest existing parent); with `estimate`
    (`disk_use.try_estimate`'s answer for a recipe) the run's expected peak must fit, else
    `MIN_FREE_GIB`."""
    existing = folder.expanduser().absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    free = shutil.disk_usage(existing).free / 2**30
    writable = os.access(existing, os.W_OK)
    found = f"{free:.1f} GiB free at {folder.expanduser().absolute()}{'' if writable else ', NOT writable'}"
    if not writable:
        return Check("disk", "disk", found, False,
                     f"choose a writable output folder (train -o DIR); {existing} is read-only")
    use, fit, why = estimate or (None, None, "")
    if use is None:
        note = f"; the run's disk use cannot be estimated ({why})" if why else ""
        return Check("disk", "disk", found + note, free >= MIN_FREE_GIB,
                     f"free some space or choose another output folder (train -o DIR); {MIN_FREE_GIB:.0f} GiB at least")
    from banglaocr.disk_use import advice, format_bytes

    found += (f"; the run needs {format_bytes(use.peak)} at its peak ({format_bytes(use.checkpoint.bytes)} per "
              f"checkpoint x {use.checkpoints_at_peak})")
    if fit.present:
        found += f", {format_bytes(fit.present)} of it there already"
    return Check("disk", "disk", found, fit.fits, advice(use, fit))


def hub_check() -> Check:
    """Whether the Hugging Face hub answers (a few seconds at most), or HF_HUB_OFFLINE is set."""
    if hub.offline():
        return Check("hub", "Hugging Face hub", "offline (HF_HUB_OFFLINE=1): the local cache only", False,
                     "unset HF_HUB_OFFLINE to download models and data sets")
    problem = hub.unreachable()
    if problem is None:
        return Check("hub", "Hugging Face hub", f"{hub.endpoint()} answers", True)
    return Check("hub", "Hugging Face hub", problem, False,
                 "check the network (a proxy: HTTPS_PROXY; a mirror: HF_ENDPOINT), or set HF_HUB_OFFLINE=1 "
                 "and use the local cache")


def cache_check(key: str, repo_id: str, revision: str | None = None) -> Check:
    """A hub id a recipe names: in the local cache, or downloadable (the hub answers)."""
    repo_type = "model" if key == "model" else "dataset"
    name = "model" if key == "model" else "data set"
    if hub.cached(repo_id, repo_type, revision):
        return Check(key, name, f"{repo_id}: in the local cache", True)
    if not hub.offline() and hub.unreachable() is None:
        return Check(key, name, f"{repo_id}: not cached yet, downloaded on first use", True)
    where = "HF_HUB_OFFLINE is set" if hub.offline() else "the hub is unreachable"
    flag = " --repo-type dataset" if repo_type == "dataset" else ""
    return Check(key, name, f"{repo_id}: not in the local cache and {where}", False,
                 f"`hf download {repo_id}{flag}` where the hub answers and copy HF_HOME here, or name a "
                 "local folder in the recipe")
