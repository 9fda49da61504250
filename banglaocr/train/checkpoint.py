"""Checkpoints that survive killed sessions - and that are safe to resume from when someone else made them.

A checkpoint folder `checkpoints/step-N/` holds:

- `model/`                    the model folder (PEFT adapter + base reference, or full weights) and tokenizer;
                              also the one store of the trainable weights (what resume loads: every tensor
                              is stored once - `train/trainable_weights.py`)
- `training_state.json` + `.safetensors`   optimizer, scheduler and GradScaler states, the `RunState`
- `rng-rank{R}.json` + `.safetensors`      python / numpy / torch / CUDA / augmentation RNG states of process R
- `recipe.yaml`               the resolved recipe (resume compares it with the current one)
- `state.json`                written last: step, best val CER, time, and the size and SHA-256 of every
                              other file (resume verifies them and falls back to an older checkpoint)

Nothing in a checkpoint is unpickled: states are JSON plus tensors in safetensors files
(`write_state` / `read_state`), so a checkpoint folder shared by someone else cannot run code on
`--resume`. Checkpoints of earlier versions (`training_state.pt`, `rng-rank*.pt`) are read with
`torch.load(weights_only=True)` and an allow-list of the numpy types an RNG state holds.

A folder is written into `checkpoints/.tmp-step-N/` and renamed into place only when complete, so a
kill mid-write leaves the previous checkpoints intact; old ones are removed only after the new one is
in place (`keep_last`).

>>> import tempfile, pathlib
>>> root = pathlib.Path(tempfile.mkdtemp())
>>> for step in (1, 2, 3):
...     (root / f"step-{step}").mkdir(); write_manifest(root / f"step-{step}", {"step": step})
>>> [p.name for p in rotate_checkpoints(root, keep_last=2)], [p.name for p in list_checkpoints(root)]
(['step-1'], ['step-2', 'step-3'])
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import shutil
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from banglaocr.errors import UserError
from banglaocr.files import write_json

STEP_PATTERN = re.compile(r"^step-(\d+)$")
MANIFEST = "state.json"
LEGACY_STATE = "training_state.pt"  # checkpoints of earlier versions


# --------------------------------------------------------------------------- states as JSON + safetensors


def _to_plain(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """`obj` as JSON-able data; its tensors and arrays go into `tensors` under generated keys."""
    if isinstance(obj, torch.Tensor):
        key = f"t{len(tensors)}"
        tensors[key] = obj.detach().to("cpu").clone().contiguous()
        return {"__tensor__": key}
    if isinstance(obj, np.ndarray):
        key = f"t{len(tensors)}"
        tensors[key] = torch.from_numpy(obj.astype(np.int64) if obj.dtype == np.uint32 else obj.copy())
        return {"__ndarray__": key, "dtype": str(obj.dtype)}
    if isinstance(obj, tuple):
        return {"__tuple__": [_to_plain(v, tensors) for v in obj]}
    if isinstance(obj, list):
        return [_to_plain(v, tensors) for v in obj]
    if isinstance(obj, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in obj):
            return {k: _to_plain(v, tensors) for k, v in obj.items()}
        return {"__items__": [[_to_plain(k, tensors), _to_plain(v, tensors)] for k, v in obj.items()]}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, (np.integer, np.floating)):
        return obj.item()
    raise TypeError(f"cannot store a {type(obj).__name__} in a checkpoint state")


def _from_plain(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, list):
        return [_from_plain(v, tensors) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if "__tensor__" in obj:
        return tensors[obj["__tensor__"]]
    if "__ndarray__" in obj:
        return tensors[obj["__ndarray__"]].numpy().astype(np.dtype(obj["dtype"]))
    if "__tuple__" in obj:
        return tuple(_from_plain(v, tensors) for v in obj["__tuple__"])
    if "__items__" in obj:
        return {_from_plain(k, tensors): _from_plain(v, tensors) for k, v in obj["__items__"]}
    return {k: _from_plain(v, tensors) for k, v in obj.items()}


def write_state(folder: Path, name: str, state: Any) -> None:
    """`state` (nested dicts/lists/tuples of plain values, tensors and numpy arrays) as `name.json` + `name.safetensors`.

    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> write_state(folder, "s", {"step": 3, "m": torch.ones(2), 0: (1.5, None)})
    >>> state = read_state(folder, "s"); state["step"], state["m"].tolist(), state[0]
    (3, [1.0, 1.0], (1.5, None))
    """
    from safetensors.torch import save_file

    tensors: dict[str, torch.Tensor] = {}
    plain = _to_plain(state, tensors)
    save_file(tensors, str(Path(folder) / f"{name}.safetensors"))
    (Path(folder) / f"{name}.json").write_text(json.dumps(plain), encoding="utf-8")


def read_state(folder: Path, name: str) -> Any:
    """What `write_state` wrote; JSON and tensors only - nothing is unpickled."""
    from safetensors.torch import load_file

    tensors = load_file(str(Path(folder) / f"{name}.safetensors"))
    return _from_plain(json.loads((Path(folder) / f"{name}.json").read_text(encoding="utf-8")), tensors)


def _legacy_load(path: Path) -> Any:
    """A `.pt` state of an earlier version, with torch's weights-only unpickler: tensors, plain containers
    and the numpy types of an RNG state - no other class or function can be named by the file."""
    core = getattr(np, "_core", None) or np.core  # numpy 2 / numpy 1
    allowed = [np.ndarray, np.dtype, type(np.dtype(np.uint32)), core.multiarray._reconstruct]
    try:
        with torch.serialization.safe_globals(allowed):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a crafted or damaged file: refuse it in one line, never run it
        message = " ".join(str(err).split())[:200]
        raise UserError(f"refusing to load {path}: not a plain tensor state ({message})") from None


def read_training_state(folder: Path) -> dict:
    """optimizer / scheduler / scaler / run_state of a checkpoint (this version's files, else a legacy .pt)."""
    if (folder / "training_state.json").is_file():
        return read_state(folder, "training_state")
    return _legacy_load(folder / LEGACY_STATE)


def read_rng_state(folder: Path, rank: int) -> dict | None:
    """The RNG states process `rank` saved (None when it saved none, e.g. a run with fewer processes)."""
    if (folder / f"rng-rank{rank}.json").is_file():
        return read_state(folder, f"rng-rank{rank}")
    if (folder / f"rng-rank{rank}.pt").is_file():
        return _legacy_load(folder / f"rng-rank{rank}.pt")
    return None


# --------------------------------------------------------------------------- RNG states


def capture_rng_state(augment_generator: torch.Generator | None = None) -> dict:
    """Every random number source a training step draws from, for exact resume."""
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }
    if augment_generator is not None:
        state["augment"] = augment_generator.get_state()
    return state


def restore_rng_state(state: dict, augment_generator: torch.Generator | None = None) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if augment_generator is not None and state.get("augment") is not None:
        augment_generator.set_state(state["augment"])


# --------------------------------------------------------------------------- the manifest and verification


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(folder: Path, info: dict) -> None:
    """`state.json`: `info` plus the size and SHA-256 of every other file in `folder` (write it last)."""
    files = {p.relative_to(folder).as_posix(): {"bytes": p.stat().st_size, "sha256": _sha256(p)}
             for p in sorted(folder.rglob("*")) if p.is_file() and p.name != MANIFEST}
    write_json(folder / MANIFEST, {**info, "files": files})


def checkpoint_damage(folder: Path, check_hashes: bool = True) -> str | None:
    """Why `folder` cannot be resumed from (a missing, truncated or altered file), or None when it is whole."""
    manifest = folder / MANIFEST
    if not manifest.is_file():
        return None if (folder / LEGACY_STATE).is_file() else f"{MANIFEST} is missing"
    try:
        files = json.loads(manifest.read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return None if (folder / LEGACY_STATE).is_file() else f"{MANIFEST} is unreadable"
    for name, expected in files.items():
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        size = path.stat().st_size
        if size != expected["bytes"]:
            return f"{name} is {size} bytes, {expected['bytes']} were written"
        if check_hashes and _sha256(path) != expected["sha256"]:
            return f"{name} was changed after it was written (SHA-256 differs)"
    return None


# --------------------------------------------------------------------------- finding, rotating, resuming


def list_checkpoints(checkpoints_dir: Path) -> list[Path]:
    """Checkpoint folders (`step-N` with a manifest, or an earlier version's state file), oldest first."""
    checkpoints_dir = Path(checkpoints_dir)
    if not checkpoints_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in checkpoints_dir.iterdir()
             if p.is_dir() and (m := STEP_PATTERN.match(p.name))
             and ((p / MANIFEST).is_file() or (p / LEGACY_STATE).is_file())]
    return [p for _, p in sorted(found)]


def rotate_checkpoints(checkpoints_dir: Path, keep_last: int) -> list[Path]:
    """Delete all but the newest `keep_last` checkpoints; return the deleted folders."""
    existing = list_checkpoints(checkpoints_dir)
    doomed = existing[:-keep_last] if keep_last > 0 else []
    for folder in doomed:
        shutil.rmtree(folder, ignore_errors=True)
    return doomed


def checkpoints_after(checkpoints_dir: Path, step: int) -> list[Path]:
    """Checkpoints of a later step than `step`: after resuming an older checkpoint, the abandoned run's."""
    return [p for p in list_checkpoints(checkpoints_dir) if int(STEP_PATTERN.match(p.name).group(1)) > step]


def resolve_resume(resume: str | None, output_dir: Path, say: Callable[[str], None] = print) -> Path | None:
    """`auto` -> the newest WHOLE checkpoint under output_dir (a damaged newer one is skipped, saying so;
    None when there is none); a path -> that checkpoint (or an output folder's newest), verified."""
    if resume is None:
        return None
    if resume == "auto":
        return _newest_whole(list_checkpoints(Path(output_dir) / "checkpoints"), say)
    path = Path(resume)
    if (path / MANIFEST).is_file() or (path / LEGACY_STATE).is_file():
        damage = checkpoint_damage(path)
        if damage:
            raise UserError(f"--resume {resume}: the checkpoint is damaged ({damage}); resume from an older one")
        return path
    if (path / "checkpoints").is_dir():  # an output folder: take its newest whole checkpoint
        found = _newest_whole(list_checkpoints(path / "checkpoints"), say)
        if found:
            return found
    raise UserError(f"--resume {resume}: not a checkpoint folder (expected {MANIFEST} inside)")


def _newest_whole(checkpoints: list[Path], say: Callable[[str], None]) -> Path | None:
    for folder in reversed(checkpoints):
        damage = checkpoint_damage(folder)
        if damage is None:
            return folder
        say(f"[yellow]checkpoint {folder} is damaged ({damage}); trying the one before it[/]")
    if checkpoints:
        raise UserError(f"no whole checkpoint left in {checkpoints[0].parent}: every one is damaged "
                        "(see above); start a new run with --overwrite or another --output-dir")
    return None
