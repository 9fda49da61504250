"""Checkpoints that survive killed sessions - and that are safe to resume from when someone else made them.

A checkpoint folder `checkpoints/step-N/` holds:

- `model/`                    the model folder (PEFT adapter + base reference, or full weights) and tokenizer;
                              also the one store of the trainable weights (what resume loads: every tensor
                              is stored once - `train/trainable_weights.py`)
- `training_state.json` + `.safetensors`   optimizer, scheduler and GradScaler states, the `RunState`
- `rng-rank{R}.json` + `.safetensors`      python / numpy / torch / CUDA / augmentation RNG states of process R,
                                           and the torch thread count it computed with
- `recipe.yaml`               the resolved recipe (resume compares it with the current one)
- `state.json`                written last: step, best val CER, time, the training split's fingerprint, and the
                              size and SHA-256 of every other file (resume verifies them and falls back to an
                              older checkpoint)

Nothing in a checkpoint is unpickled: states are JSON plus tensors in safetensors files
(`write_state` / `read_state`), so a checkpoint folder shared by someone else cannot run code on
`--resume`. Checkpoints of earlier versions (`training_state.pt`, `rng-rank*.pt`) are read with
`torch.load(weights_only=True)` and an allow-list of the numpy types an RNG state holds.

A checkpoint may also lie with a consistent state.json (crafted, or written by a bug): before anything is
loaded, `check_checkpoint_files` checks what resume reads (plain files, safetensors headers against their
files, state.json's step, the RNG states), `read_state` that each JSON fits its tensors,
`trainable_weights.restore_from_folder` the weights against the model (names, shapes, finite values) and
`resume_state.check_training_state` the optimizer, scheduler, scaler and counters against the run. Each
lie is one `UserError` line naming the file, with the earlier checkpoint to resume instead (`resume_hint`).

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
import stat
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from banglaocr.errors import UserError, first_line
from banglaocr.files import write_json

STEP_PATTERN = re.compile(r"^step-(\d+)$")
MANIFEST = "state.json"
LEGACY_STATE = "training_state.pt"  # checkpoints of earlier versions
TRAINING_STATE_KEYS = ("optimizer", "scheduler", "run_state")
"""What training_state must hold (`scaler` too in this version; None without a GradScaler)."""
MAX_THREADS = 4096


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


class StateError(ValueError):
    """A state file whose JSON does not fit its tensors (or is not a state at all)."""


NDARRAY_DTYPES = ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
                  "float16", "float32", "float64")
"""The numpy dtypes a state may name (an RNG state holds uint32 arrays)."""


def _from_plain(obj: Any, tensors: dict[str, torch.Tensor], used: set[str] | None = None) -> Any:
    """What `_to_plain` made of `obj`; `StateError` when the JSON names a tensor the file lacks or a bad dtype.
    `used` collects the tensor names the JSON refers to."""
    used = set() if used is None else used
    if isinstance(obj, list):
        return [_from_plain(v, tensors, used) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if "__tensor__" in obj:
        return _tensor(obj["__tensor__"], tensors, used)
    if "__ndarray__" in obj:
        return _ndarray(_tensor(obj["__ndarray__"], tensors, used), obj.get("dtype"))
    if "__tuple__" in obj:
        if not isinstance(obj["__tuple__"], list):
            raise StateError("a __tuple__ entry is not a list")
        return tuple(_from_plain(v, tensors, used) for v in obj["__tuple__"])
    if "__items__" in obj:
        items = obj["__items__"]
        if not isinstance(items, list) or not all(isinstance(p, list) and len(p) == 2 for p in items):
            raise StateError("an __items__ entry is not a list of [key, value] pairs")
        result = {}
        for key, value in items:
            key = _from_plain(key, tensors, used)
            if not isinstance(key, (str, int, float, bool, type(None), tuple)):
                raise StateError(f"an __items__ key is a {type(key).__name__}")
            result[key] = _from_plain(value, tensors, used)
        return result
    return {k: _from_plain(v, tensors, used) for k, v in obj.items()}


def _tensor(key: Any, tensors: dict[str, torch.Tensor], used: set[str]) -> torch.Tensor:
    if not isinstance(key, str) or key not in tensors:
        raise StateError(f"it names the tensor {str(key)[:40]!r}, which its .safetensors file does not hold")
    used.add(key)
    return tensors[key]


def _ndarray(tensor: torch.Tensor, dtype: Any) -> np.ndarray:
    if dtype not in NDARRAY_DTYPES:
        raise StateError(f"it names the array dtype {str(dtype)[:40]!r}")
    values = tensor.numpy()
    converted = values.astype(np.dtype(dtype))
    if values.dtype.kind in "biu" and not np.array_equal(converted.astype(values.dtype), values):
        raise StateError(f"an array's values do not fit its dtype {dtype}")  # would wrap around silently
    return converted


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


def regular_file_problem(path: Path) -> str | None:
    """Why `path` is not a plain file of its own (missing, a folder, a symbolic link, a device or FIFO), or None.

    Links are refused rather than followed: a file that points elsewhere can change after the checkpoint
    was checked (or hang a reader, if it points at a FIFO); banglaocr writes none.
    """
    try:
        mode = Path(path).lstat().st_mode
    except FileNotFoundError:
        return "is missing"
    except OSError as err:
        return f"cannot be read ({err.strerror or err})"
    if stat.S_ISLNK(mode):
        return "is a symbolic link, not a file (copy the file it points to in its place)"
    if stat.S_ISDIR(mode):
        return "is a folder, not a file"
    if not stat.S_ISREG(mode):
        return "is not a regular file (a device, FIFO or socket)"
    return None


def load_tensor_file(path: Path, hint: str = "") -> dict[str, torch.Tensor]:
    """The tensors of the safetensors file `path`, its header checked against the file first
    (`folder_check.check_safetensors`); `UserError` "PATH: what is wrong`hint`" otherwise."""
    from safetensors.torch import load_file

    from banglaocr.model.folder_check import check_safetensors

    path = Path(path)
    problem = regular_file_problem(path)
    if problem:
        raise UserError(f"{path}: {problem}{hint}")
    try:
        check_safetensors(path)
    except UserError as err:
        raise UserError(f"{err}{hint}") from None
    try:
        return load_file(str(path))
    except Exception as err:  # the library's own refusals (SafetensorError), an I/O error, a dtype torch lacks
        raise UserError(f"{path}: not a readable safetensors file ({' '.join(first_line(err).split())[:160]})"
                        f"{hint}") from None


def read_state(folder: Path, name: str, hint: str = "") -> Any:
    """What `write_state` wrote; JSON and tensors only - nothing is unpickled. A file that is missing, not
    JSON, not a sound tensor file, or whose JSON does not fit its tensors is `UserError` naming the file
    and what is wrong (then `hint`)."""
    folder = Path(folder)
    tensors = load_tensor_file(folder / f"{name}.safetensors", hint)
    path = folder / f"{name}.json"
    plain = _read_json(path, hint)
    used: set[str] = set()
    try:
        state = _from_plain(plain, tensors, used)
    except (StateError, RecursionError) as err:
        raise UserError(f"{path}: {err if isinstance(err, StateError) else 'nested too deeply'}{hint}") from None
    unused = sorted(set(tensors) - used)
    if unused:  # the two files do not belong together
        raise UserError(f"{folder / name}.safetensors: holds tensors its .json never names (e.g. {unused[0]!r})"
                        f"{hint}")
    return state


def _read_json(path: Path, hint: str = "") -> Any:
    """The JSON of a state file; `UserError` "PATH: what is wrong`hint`"."""
    problem = regular_file_problem(path)
    if problem is None:
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except OSError as err:
            problem = f"cannot be read ({err.strerror or err})"
        except UnicodeDecodeError:
            problem = "is not UTF-8 text"
        except ValueError as err:
            problem = f"is not JSON ({first_line(err)})"
        except RecursionError:
            problem = "is not JSON (nested too deeply)"
    raise UserError(f"{path}: {problem}{hint}")


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
    folder = Path(folder)
    if (folder / MANIFEST).is_file() or not (folder / LEGACY_STATE).is_file():
        state = read_state(folder, "training_state", resume_hint(folder))
    else:
        state = _legacy_load(folder / LEGACY_STATE)
    missing = [key for key in TRAINING_STATE_KEYS if not isinstance(state, dict) or key not in state]
    if missing:
        raise UserError(f"{folder / 'training_state.json'}: holds no {missing[0]}{resume_hint(folder)}")
    return state


def read_rng_state(folder: Path, rank: int) -> dict | None:
    """The RNG states process `rank` saved (None when it saved none, e.g. a run with fewer processes),
    checked (`rng_state_problem`)."""
    folder = Path(folder)
    if (folder / f"rng-rank{rank}.json").is_file() or (folder / MANIFEST).is_file() and rank == 0:
        state, path = read_state(folder, f"rng-rank{rank}", resume_hint(folder)), folder / f"rng-rank{rank}.json"
    elif (folder / f"rng-rank{rank}.pt").is_file():
        state, path = _legacy_load(folder / f"rng-rank{rank}.pt"), folder / f"rng-rank{rank}.pt"
    else:
        return None
    problem = rng_state_problem(state, legacy=path.suffix == ".pt")
    if problem:
        raise UserError(f"{path}: {problem}{resume_hint(folder)}")
    return state


# --------------------------------------------------------------------------- RNG states


def capture_rng_state(augment_generator: torch.Generator | None = None) -> dict:
    """Every random number source a training step draws from, for exact resume - and this process's torch
    thread count: not a random source, but the other thing its floats depend on (the order in which a
    parallel reduction adds), so a resumed process can use the same (`saved_threads`)."""
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "threads": torch.get_num_threads(),
    }
    if augment_generator is not None:
        state["augment"] = augment_generator.get_state()
    return state


def restore_rng_state(state: dict, augment_generator: torch.Generator | None = None) -> None:
    """Put back what `capture_rng_state` saved (checked first by `read_rng_state`: nothing is half set)."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if augment_generator is not None and state.get("augment") is not None:
        augment_generator.set_state(state["augment"])


def rng_state_problem(state: Any, legacy: bool = False) -> str | None:
    """What is wrong with a saved RNG state (`capture_rng_state`'s dict), or None - checked before any of it
    is set, so a bad part never leaves the others restored and the run going on from a mix.

    >>> rng_state_problem(capture_rng_state(torch.Generator())) is None
    True
    >>> rng_state_problem({**capture_rng_state(torch.Generator()), "torch": torch.zeros(7, dtype=torch.uint8)})
    'its torch state is 7 bytes; a CPU generator state is 5056'
    """
    if not isinstance(state, dict):
        return "is not a table of RNG states"
    needed = ("python", "numpy", "torch") if legacy else ("python", "numpy", "torch", "augment")
    missing = [key for key in needed if key not in state]
    if missing:
        return f"holds no {missing[0]} state"
    for key in ("torch", "augment"):
        if state.get(key) is not None:
            problem = _generator_problem(state[key])
            if problem:
                return f"its {key} state {problem}"
    cuda = state.get("cuda")
    if cuda is not None and not (isinstance(cuda, list) and all(
            isinstance(t, torch.Tensor) and t.dtype == torch.uint8 and t.ndim == 1 for t in cuda)):
        return "its cuda state is not a list of byte tensors"
    problem = _python_rng_problem(state["python"]) or _numpy_rng_problem(state["numpy"])
    if problem:
        return problem
    threads = state.get("threads")
    if threads is not None and not (type(threads) is int and 1 <= threads <= MAX_THREADS):
        return f"its thread count {repr(threads)[:20]} is not a number from 1 to {MAX_THREADS}"
    return None


def _generator_problem(value: Any) -> str | None:
    if not isinstance(value, torch.Tensor) or value.dtype != torch.uint8 or value.ndim != 1:
        return "is not a 1-D byte tensor"
    expected = torch.Generator().get_state().numel()
    if value.numel() != expected:
        return f"is {value.numel()} bytes; a CPU generator state is {expected}"
    try:
        torch.Generator().set_state(value)  # a throwaway generator: torch's own check, nothing is changed
    except (RuntimeError, TypeError, ValueError) as err:
        return f"is refused by torch ({first_line(err)})"
    return None


def _python_rng_problem(value: Any) -> str | None:
    # random.getstate(): (3, 624 words + the position, gauss_next)
    if not (isinstance(value, tuple) and len(value) == 3 and value[0] == 3 and isinstance(value[1], tuple)
            and len(value[1]) == 625 and all(type(n) is int and 0 <= n < 2**32 for n in value[1])
            and value[1][-1] <= 624 and (value[2] is None or type(value[2]) is float)):
        return "its python state is not a Mersenne Twister state (version 3, 625 words, gauss_next)"
    try:
        random.Random().setstate(value)
    except (TypeError, ValueError, OverflowError) as err:
        return f"its python state is refused ({first_line(err)})"
    return None


def _numpy_rng_problem(value: Any) -> str | None:
    # np.random.get_state(): ("MT19937", 624 uint32 words, position, has_gauss, cached_gaussian)
    if not (isinstance(value, tuple) and len(value) == 5 and value[0] == "MT19937"
            and isinstance(value[1], np.ndarray) and value[1].dtype == np.uint32 and value[1].shape == (624,)
            and type(value[2]) is int and 0 <= value[2] <= 624 and value[3] in (0, 1) and type(value[3]) is int
            and type(value[4]) in (float, int)):
        return "its numpy state is not a legacy MT19937 state (624 uint32 words, position 0-624, has_gauss 0/1)"
    try:
        np.random.RandomState().set_state(value)
    except (TypeError, ValueError, IndexError) as err:
        return f"its numpy state is refused ({first_line(err)})"
    return None


def saved_threads(folder: Path, rank: int) -> int | None:
    """The torch thread count process `rank` of the checkpoint's run computed with (None: not recorded -
    a checkpoint of an earlier version, or a run with fewer processes)."""
    path = Path(folder) / f"rng-rank{rank}.json"
    if not path.is_file():
        return None
    saved = _read_json(path, resume_hint(folder))
    threads = saved.get("threads") if isinstance(saved, dict) else None
    if threads is not None and not (type(threads) is int and 1 <= threads <= MAX_THREADS):
        raise UserError(f"{path}: its thread count {repr(threads)[:20]} is not a number from 1 to "
                        f"{MAX_THREADS}{resume_hint(folder)}")
    return threads


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
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        return None if (folder / LEGACY_STATE).is_file() else f"{MANIFEST} is unreadable"
    if not isinstance(files, dict):
        return f"{MANIFEST} is unreadable (its files are not a table)"
    for name, expected in files.items():
        if not (isinstance(expected, dict) and type(expected.get("bytes")) is int
                and isinstance(expected.get("sha256"), str)):
            return f"{MANIFEST} is unreadable (its entry for {name[:80]!r} is not {{bytes, sha256}})"
        if Path(name).is_absolute() or ".." in Path(name).parts:
            return f"{MANIFEST} lists {name[:80]!r}, a path outside the checkpoint"
        path = folder / name
        if path.is_dir():
            return f"{name} is a folder, not a file"
        if not path.is_file():
            return f"{name} is missing"
        size = path.stat().st_size
        if size != expected["bytes"]:
            return f"{name} is {size} bytes, {expected['bytes']} were written"
        if check_hashes and _sha256(path) != expected["sha256"]:
            return f"{name} was changed after it was written (SHA-256 differs)"
    return None


def read_manifest(folder: Path) -> dict:
    """state.json of a checkpoint (empty for a checkpoint of an earlier version, which has none)."""
    path = Path(folder) / MANIFEST
    if not path.exists() and not path.is_symlink():
        return {}
    info = _read_json(path, resume_hint(folder))
    if not isinstance(info, dict):
        raise UserError(f"{path}: is not a JSON object{resume_hint(folder)}")
    return info


def resume_hint(folder: Path) -> str:
    """What to do instead of resuming the checkpoint `folder` (for the end of a refusal): the newest earlier
    checkpoint beside it that is whole, else a new run. Empty for a folder that is not a `step-N` checkpoint."""
    folder = Path(folder)
    match = STEP_PATTERN.match(folder.name)
    if not match:
        return ""
    step = int(match.group(1))
    earlier = [p for p in list_checkpoints(folder.parent)
               if int(STEP_PATTERN.match(p.name).group(1)) < step and checkpoint_damage(p, check_hashes=False) is None]
    if earlier:
        return f"; resume from the earlier checkpoint instead: --resume {earlier[-1]}"
    return "; there is no earlier checkpoint: start a new run (another --output-dir, or --overwrite)"


REQUIRED_FILES = ("training_state.json", "training_state.safetensors", "rng-rank0.json", "rng-rank0.safetensors",
                  "recipe.yaml")
WEIGHT_FILES = ("model/adapter_model.safetensors", "model/model.safetensors")  # LoRA / full fine-tune


def check_checkpoint_files(folder: Path) -> None:
    """The files of a whole checkpoint (`checkpoint_damage` found none missing or altered) checked for what a
    consistent manifest cannot vouch for: each file resume reads is a plain file of its own (no link, no
    folder) and listed in the manifest, a sound tensor file where it is one; state.json's step is the
    folder's; every saved RNG state is one. `UserError` "PATH: what is wrong; what to do" otherwise.
    Checkpoints of earlier versions (no manifest) are checked as they are read."""
    from banglaocr.model.folder_check import check_safetensors

    folder = Path(folder)
    if not (folder / MANIFEST).is_file():
        return
    hint = resume_hint(folder)
    info = read_manifest(folder)
    match = STEP_PATTERN.match(folder.name)
    step = info.get("step")
    if type(step) is not int or step < 0 or (match and step != int(match.group(1))):
        raise UserError(f"{folder / MANIFEST}: its step {repr(step)[:40]} is not the step of the folder "
                        f"{folder.name}{hint}")
    listed = info.get("files", {})
    weights = [name for name in WEIGHT_FILES if (folder / name).exists() or (folder / name).is_symlink()]
    if not weights:
        raise UserError(f"{folder / 'model'}: holds no weights (adapter_model.safetensors or model.safetensors)"
                        f"{hint}")
    # Each process reads its own rng-rank file (checked then); those the manifest lists are checked now.
    rng_files = sorted(name for name in listed if re.fullmatch(r"rng-rank\d+\.(json|safetensors)", name))
    read = {*REQUIRED_FILES, *weights, *rng_files}
    for name in sorted(read | set(listed)):
        linked = _linked_folder(folder, name)
        if linked is not None:
            raise UserError(f"{linked}: is a symbolic link to another folder (copy the folder in its place){hint}")
        path = folder / name
        problem = regular_file_problem(path)
        if problem is None and name not in listed:
            problem = f"is not listed in {MANIFEST} (the checkpoint's list of its own files)"
        if problem:
            raise UserError(f"{path}: {problem}{hint}")
        if name in read and name.endswith(".safetensors"):
            try:
                check_safetensors(path)
            except UserError as err:
                raise UserError(f"{err}{hint}") from None
    for name in rng_files:
        if name.endswith(".json"):
            read_rng_state(folder, int(re.search(r"\d+", name).group()))


def _linked_folder(folder: Path, name: str) -> Path | None:
    """A folder on the way from `folder` to its file `name` that is a symbolic link (its files live elsewhere)."""
    for parent in reversed(Path(name).parents[:-1]):
        if (folder / parent).is_symlink():
            return folder / parent
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
    None when there is none); a path -> that checkpoint (or an output folder's newest), verified. The one
    chosen is then checked for what its manifest cannot vouch for (`check_checkpoint_files`)."""
    if resume is None:
        return None
    if resume == "auto":
        found = _newest_whole(list_checkpoints(Path(output_dir) / "checkpoints"), say)
    else:
        found = _explicit_checkpoint(resume, say)
    if found is not None:
        check_checkpoint_files(found)
    return found


def _explicit_checkpoint(resume: str, say: Callable[[str], None]) -> Path:
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
