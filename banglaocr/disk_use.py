"""The disk a training run takes, counted before it runs: every file of a checkpoint, of best/ and of
final/, from the model the recipe builds - on the meta device (shapes and dtypes, no weights, nothing
downloaded) - and what `train.keep_last` costs.

What is counted (the layout `banglaocr train` writes):

    checkpoints/step-N/  model/                      the model folder: adapter_model.safetensors (every
                                                     trainable tensor once, float32) or, for a full
                                                     fine-tune, model.safetensors; base/ only when the base
                                                     has no name to load it from (model.init tiny/random);
                                                     the tokenizer files
                         training_state.safetensors  the optimizer state (AdamW: exp_avg + exp_avg_sq per
                                                     trainable tensor; 8-bit AdamW: 2 bytes per element,
                                                     float32 absmax blocks and quantisation maps)
    best/, final/        the model folder again (plus model card, recipe, confusion heatmap)
    synth-N-S/           the rendered images of `data.source: synth` (rendered once, then reused)

Tensor files are counted exactly (safetensors: 8 bytes of header length, the JSON header, the data);
the tokenizer files by saving the run's tokenizer once; the small files (configs, read settings, RNG
and run states, manifest, model card, heatmap) with an allowance, an upper bound that
tests/test_disk_use.py checks against real runs. While a checkpoint is written it sits in
`checkpoints/.tmp-step-N` beside the `keep_last` kept ones - the oldest is removed only once the new
one is in place - so the run's peak holds `keep_last + 1` checkpoints.

>>> from banglaocr.config import load_recipe
>>> use = estimate_disk_use(load_recipe("cpu_demo"))
>>> use.checkpoint.file("model/adapter_model.safetensors").bytes, use.checkpoints_at_peak
(820160, 3)
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from banglaocr.errors import UserError, first_line

SMALL_FILES_BYTES = 128 * 1024
"""Allowance for the small files of one folder (configs, read settings, RNG states of two processes,
manifest, recipe, model card, heatmap): 20-90 KB in cpu_demo runs."""
OPTIMIZER_JSON_BYTES_PER_TENSOR = 256
"""Allowance per trainable tensor for training_state.json (its entries that point into the tensors file)."""
BNB_BLOCK_SIZE = 256
"""bitsandbytes' 8-bit optimizers keep one float32 absmax per 256 elements (`Optimizer8bit.init_state`)."""
BNB_QMAP_ENTRIES = 256
"""... and two 256-entry float32 quantisation maps with every 8-bit state (qmap1, qmap2)."""
BNB_MIN_8BIT_SIZE = 4096
"""AdamW8bit's `min_8bit_size`: tensors with fewer elements keep float32 states."""
SYNTH_SAMPLE_IMAGES = 24
"""Images rendered to measure the bytes per image of synthetic data that is not rendered yet."""
HUB_ARCHITECTURES = {"qwen/qwen3-vl-2b-instruct": "qwen3-vl-2b-arch"}
"""Hub ids (lower case) whose architecture ships with banglaocr (config.json only): estimated offline."""

_PT = {"format": "pt"}  # the metadata transformers and peft write into every safetensors file
# safetensors writes tensors ordered by dtype (this order), then by name; the order moves the offsets.
_SAFETENSORS_ORDER = ("U64", "I64", "F64", "C64", "F32", "U32", "I32", "BF16", "F16", "U16", "I16", "I8", "U8",
                      "BOOL")
_ITEM_BYTES = {"U64": 8, "I64": 8, "F64": 8, "C64": 8, "F32": 4, "U32": 4, "I32": 4, "BF16": 2, "F16": 2, "U16": 2,
               "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}
_TORCH_CODES = {"float32": "F32", "float16": "F16", "bfloat16": "BF16", "float64": "F64", "uint8": "U8",
                "int8": "I8", "int16": "I16", "int32": "I32", "int64": "I64", "bool": "BOOL"}

Tensor = tuple[str, str, tuple[int, ...]]
"""(name, safetensors dtype code, shape): a tensor as a file stores it."""


class EstimateUnavailable(Exception):
    """The recipe's model cannot be built without weights here (e.g. a hub id not in the local cache)."""


# --------------------------------------------------------------------------- bytes of files


def safetensors_bytes(tensors: list[Tensor], metadata: dict[str, str] | None = None) -> int:
    """The size of the safetensors file holding `tensors`, as safetensors writes it: 8 bytes of header
    length, the JSON header padded to a multiple of 8, the data.

    >>> import tempfile, torch
    >>> from safetensors.torch import save_file
    >>> path = Path(tempfile.mkdtemp()) / "t.safetensors"
    >>> save_file({"a": torch.zeros(3, 5), "b": torch.zeros(7, dtype=torch.uint8)}, str(path), metadata={"format": "pt"})
    >>> safetensors_bytes([("a", "F32", (3, 5)), ("b", "U8", (7,))], {"format": "pt"}) == path.stat().st_size
    True
    """
    header: dict = {"__metadata__": metadata} if metadata else {}
    offset = 0
    for name, dtype, shape in sorted(tensors, key=lambda t: (_SAFETENSORS_ORDER.index(t[1]), t[0])):
        size = math.prod(shape) * _ITEM_BYTES[dtype]
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return 8 + len(text) + (-len(text) % 8) + offset


def data_bytes(tensors: list[Tensor]) -> int:
    """The bytes of the tensors' values alone.

    >>> data_bytes([("a", "F32", (3, 5)), ("b", "BF16", (4,))])
    68
    """
    return sum(math.prod(shape) * _ITEM_BYTES[dtype] for _, dtype, shape in tensors)


def as_tensor(name: str, tensor) -> Tensor:
    """A torch tensor (a meta one too) as (name, dtype code, shape)."""
    return name, _TORCH_CODES[str(tensor.dtype).removeprefix("torch.")], tuple(tensor.shape)


def optimizer_state_tensors(trainable: list[Tensor], optimizer: str) -> list[Tensor]:
    """The tensors training_state.safetensors holds for `trainable` (in optimizer order), named t0, t1, ...
    as the checkpoint writes them: AdamW keeps a float32 step and exp_avg + exp_avg_sq in the parameter's
    dtype; bitsandbytes' 8-bit AdamW keeps uint8 states with their absmax blocks and quantisation maps
    (float32 states below `BNB_MIN_8BIT_SIZE` elements; its step is a plain number).

    >>> [t[1:] for t in optimizer_state_tensors([("w", "F32", (64, 100))], "adamw8bit")]
    [('U8', (64, 100)), ('F32', (256,)), ('U8', (64, 100)), ('F32', (256,)), ('F32', (25,)), ('F32', (25,))]
    """
    states: list[tuple[str, tuple[int, ...]]] = []
    for _, dtype, shape in trainable:
        if optimizer == "adamw":
            states += [("F32", ()), (dtype, shape), (dtype, shape)]
        elif math.prod(shape) < BNB_MIN_8BIT_SIZE:
            states += [("F32", shape), ("F32", shape)]
        else:
            blocks = (math.ceil(math.prod(shape) / BNB_BLOCK_SIZE),)
            qmap = (BNB_QMAP_ENTRIES,)
            states += [("U8", shape), ("F32", qmap), ("U8", shape), ("F32", qmap), ("F32", blocks), ("F32", blocks)]
    return [(f"t{index}", dtype, shape) for index, (dtype, shape) in enumerate(states)]


def format_bytes(count: int) -> str:
    """Bytes for people (binary units, as `df -h`).

    >>> format_bytes(820160), format_bytes(1_690_000_000), format_bytes(512)
    ('801 KiB', '1.57 GiB', '512 B')
    """
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if count >= scale:
            value = count / scale
            return f"{value:.2f} {unit}" if value < 10 else f"{value:.1f} {unit}" if value < 100 else \
                f"{value:.0f} {unit}"
    return f"{count} B"


def folder_bytes(folder: Path) -> int:
    """Bytes of every file under `folder` (0 when it does not exist)."""
    folder = Path(folder)
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else 0


# --------------------------------------------------------------------------- the model, without weights


@dataclass(frozen=True)
class ModelShape:
    """What the model folder of a run stores, read off the model built on the meta device."""

    saved: tuple[Tensor, ...]
    """adapter_model.safetensors (LoRA: every trainable tensor) or model.safetensors (full fine-tune)."""
    trainable: tuple[Tensor, ...]
    """The parameters that train, in the optimizer's order (what the optimizer state covers)."""
    base: tuple[Tensor, ...] | None
    """The frozen base stored in base/ (a base without a name: model.init tiny or random), else None."""
    full: bool
    """A full fine-tune (lora: null): model.safetensors instead of an adapter."""
    tokenizer_files: tuple[tuple[str, int], ...]
    """(file name, bytes) of the tokenizer as `save_pretrained` writes it."""
    source: str
    """Where the architecture was read (for the report)."""


def build_model_shape(recipe) -> ModelShape:
    """The recipe's model on the meta device - its architecture, dtypes (`factory.resolve_dtype`, the fp32
    vision tower under fp16), LoRA or full fine-tune, as `factory.load_model` builds it - as tensor lists.

    A full fine-tune of the shipped tiny model stores what its own model.safetensors holds, to the byte:

    >>> from banglaocr.config import load_recipe
    >>> from banglaocr.model.shipped import MODELS_DIR
    >>> shape = build_model_shape(load_recipe("cpu_demo", ["lora=null"]))
    >>> shape.full, shape.base is None, len(shape.trainable)
    (True, True, 98)
    >>> safetensors_bytes(list(shape.saved), {"format": "pt"}) == (MODELS_DIR / "tiny" / "model.safetensors").stat().st_size
    True
    """
    import torch

    # The factory's own steps (its LoRA wrapping, fp32 vision tower, float32 trainables), so that what is
    # counted here cannot drift from what `load_model` builds; only loading weights is left out.
    from banglaocr.model.factory import _add_lora, _keep_vision_tower_in_fp32, _upcast_trainable, resolve_dtype

    model_cfg, lora_cfg = recipe.model, recipe.lora
    config, tokenizer, where = _architecture(model_cfg)
    adapter = where.adapter
    if adapter is not None and lora_cfg is None:
        raise EstimateUnavailable(f"{model_cfg.name_or_path} is an adapter folder and lora is null: nothing trains")
    dtype = resolve_dtype(model_cfg, recipe.train.precision, full_finetune=lora_cfg is None)
    from transformers import AutoModelForImageTextToText

    with torch.device("meta"):
        model = AutoModelForImageTextToText.from_config(config, dtype=dtype)
        if dtype == torch.float16 or recipe.train.precision == "fp16":
            _keep_vision_tower_in_fp32(model)
        if adapter is not None:
            model = _saved_adapter_on(model, adapter)
        elif lora_cfg is not None:
            model = _add_lora(model, lora_cfg)
    if lora_cfg is None:
        model.requires_grad_(True)
    elif dtype != torch.float32:
        _upcast_trainable(model)
    trainable = _trainable(model, recipe.train)
    if lora_cfg is None:
        saved, base = _unique_state(model), None
    else:
        from peft import get_peft_model_state_dict

        state = get_peft_model_state_dict(model, save_embedding_layers=False)
        saved = tuple(as_tensor(name, tensor) for name, tensor in state.items())
        base = _base_of_adapter(model) if where.base_saved else None
    return ModelShape(saved=saved, trainable=trainable, base=base, full=lora_cfg is None,
                      tokenizer_files=_saved_tokenizer_files(tokenizer), source=where.note)


def _trainable(model, train_cfg) -> tuple[Tensor, ...]:
    """The parameters that train, in the optimizer's order (`train.optim.parameter_groups`: decay or not,
    vision or not) - the order numbers the optimizer state's tensors, which moves its header's offsets."""
    from banglaocr.train.optim import parameter_groups

    names = {id(param): name for name, param in model.named_parameters()}
    try:
        groups = parameter_groups(model, train_cfg)
    except UserError as err:  # no trainable parameters
        raise EstimateUnavailable(str(err)) from None
    return tuple(as_tensor(names[id(param)], param) for group in groups for param in group["params"])


def _unique_state(model) -> tuple[Tensor, ...]:
    """The model's state dict with tied tensors once (as `save_pretrained` stores them)."""
    seen, tensors = set(), []
    for name, tensor in model.state_dict(keep_vars=True).items():
        if id(tensor) not in seen:
            seen.add(id(tensor))
            tensors.append(as_tensor(name, tensor))
    return tuple(tensors)


def _base_of_adapter(model) -> tuple[Tensor, ...]:
    """The frozen base as `factory._save_base_of_adapter` stores it: without adapters and train_modules
    copies, peft's wrapping level taken out of the names, tied tensors once."""
    seen, tensors = set(), []
    for name, tensor in model.get_base_model().state_dict(keep_vars=True).items():
        if "lora_" in name or ".modules_to_save." in name or id(tensor) in seen:
            continue
        seen.add(id(tensor))
        tensors.append(as_tensor(name.replace(".base_layer.", ".").replace(".original_module.", "."), tensor))
    return tuple(tensors)


def _saved_adapter_on(model, folder: Path):
    """A saved adapter's LoRA (its adapter_config.json) on `model`, trainable - its shapes, not its weights."""
    import peft

    config = peft.PeftConfig.from_pretrained(str(folder))
    config.inference_mode = False
    return peft.get_peft_model(model, config)


def _saved_tokenizer_files(tokenizer) -> tuple[tuple[str, int], ...]:
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer.save_pretrained(tmp)
        return tuple(sorted((p.name, p.stat().st_size) for p in Path(tmp).iterdir() if p.is_file()))


# --------------------------------------------------------------------------- where the architecture comes from


@dataclass(frozen=True)
class _Source:
    note: str
    adapter: Path | None = None
    base_saved: bool = False


def _architecture(model_cfg):
    """(transformers config, tokenizer, `_Source`) of the model a recipe builds - read from files only."""
    from banglaocr.model.factory import tiny_model_config
    from banglaocr.model.tokenizers import build_char_tokenizer, build_qwen_tokenizer

    if model_cfg.init == "tiny":
        qwen = model_cfg.tiny.tokenizer == "qwen"
        tokenizer = build_qwen_tokenizer() if qwen else build_char_tokenizer()
        return (tiny_model_config(model_cfg.tiny, tokenizer), tokenizer,
                _Source("model.tiny (a tiny Qwen3-VL)", base_saved=True))
    if model_cfg.init == "random":
        from banglaocr.model.shipped import architecture_source

        config, tokenizer, note = _named_architecture(architecture_source(model_cfg.name_or_path), model_cfg.revision,
                                                      model_cfg.trust_remote_code)
        return config, tokenizer, _Source(f"{note}, random weights", base_saved=True)
    return _pretrained_architecture(model_cfg.name_or_path, model_cfg.revision, model_cfg.trust_remote_code)


def _pretrained_architecture(name: str, revision: str | None, trust_remote_code: bool = False):
    from banglaocr.model.factory import adapter_base, as_adapter_folder
    from banglaocr.model.shipped import model_source

    source = model_source(name)
    adapter = as_adapter_folder(source)
    if adapter is None:
        config, tokenizer, note = _named_architecture(source, revision, trust_remote_code)
        return config, tokenizer, _Source(note)
    base = adapter_base(adapter)
    config, _, note = _named_architecture(model_source(base), revision, trust_remote_code)
    from banglaocr.model.tokenizers import load_tokenizer

    # A base inside the adapter folder is saved again with every new folder (factory.load_model).
    return config, load_tokenizer(str(adapter)), _Source(f"{note} + the adapter {adapter}", adapter,
                                                          base_saved=Path(base).parent == adapter)


def _named_architecture(source: str, revision: str | None, trust_remote_code: bool = False):
    """(config, tokenizer, note) of a folder with config.json, or of a hub id in the local cache - or, for
    a hub id whose architecture ships with banglaocr, of that copy."""
    from transformers import AutoConfig

    from banglaocr import hub
    from banglaocr.model.shipped import MODELS_DIR
    from banglaocr.model.tokenizers import build_qwen_tokenizer, is_qwen_vl_hub_id, load_tokenizer

    folder = Path(source).expanduser()
    if folder.is_dir():
        has_tokenizer = (folder / "tokenizer.json").is_file() or (folder / "tokenizer_config.json").is_file()
        config = AutoConfig.from_pretrained(str(folder), trust_remote_code=trust_remote_code)
        return config, load_tokenizer(str(folder)) if has_tokenizer else build_qwen_tokenizer(), str(folder)
    if hub.cached(source, revision=revision):
        from transformers import AutoTokenizer

        config = AutoConfig.from_pretrained(source, revision=revision, local_files_only=True,
                                            trust_remote_code=trust_remote_code)
        tokenizer = build_qwen_tokenizer() if is_qwen_vl_hub_id(source) else AutoTokenizer.from_pretrained(
            source, revision=revision, local_files_only=True, trust_remote_code=trust_remote_code)
        return config, tokenizer, f"{source} (local cache)"
    shipped = HUB_ARCHITECTURES.get(source.lower())
    if shipped is None:
        raise EstimateUnavailable(f"the architecture of {source} is not in the local cache (hf download {source} "
                                  "config.json, then run again)")
    # The bundled tokenizer is the hub's (the same vocabulary and merges, built offline).
    config = AutoConfig.from_pretrained(str(MODELS_DIR / shipped), trust_remote_code=False)
    return config, build_qwen_tokenizer(), f"{source} as the shipped {shipped} (its config is not in the local cache)"


# --------------------------------------------------------------------------- folders and the run


@dataclass(frozen=True)
class FileSize:
    """One file (or the small files of a folder) and its expected bytes."""

    path: str
    bytes: int
    what: str


@dataclass(frozen=True)
class FolderSize:
    """The expected files of one folder of the run."""

    name: str
    files: tuple[FileSize, ...]

    @property
    def bytes(self) -> int:
        return sum(f.bytes for f in self.files)

    def file(self, path: str) -> FileSize:
        return next(f for f in self.files if f.path == path)


def model_folder_files(shape: ModelShape, prefix: str = "") -> list[FileSize]:
    """The files of a model folder (a checkpoint's model/, best/, final/): tensors, tokenizer, small files."""
    count = data_bytes(shape.trainable) // 4
    if shape.full:
        dtypes = "/".join(sorted({d for _, d, _ in shape.saved}))
        files = [FileSize(f"{prefix}model.safetensors", safetensors_bytes(list(shape.saved), _PT),
                          f"every weight ({len(shape.saved)} tensors), {dtypes}")]
    else:
        files = [FileSize(f"{prefix}adapter_model.safetensors", safetensors_bytes(list(shape.saved), _PT),
                          f"every trainable tensor once ({len(shape.saved)} tensors, {count:,} values), float32")]
    if shape.base is not None:
        dtypes = "/".join(sorted({d for _, d, _ in shape.base}))
        files.append(FileSize(f"{prefix}base/model.safetensors", safetensors_bytes(list(shape.base), _PT),
                              f"the frozen base (no name to load it from again), {dtypes}"))
        files += [FileSize(f"{prefix}base/{name}", size, "tokenizer") for name, size in shape.tokenizer_files]
    files += [FileSize(f"{prefix}{name}", size, "tokenizer") for name, size in shape.tokenizer_files]
    files.append(FileSize(f"{prefix}(small files)", SMALL_FILES_BYTES,
                          "configs, read settings, model card, heatmap (allowance)"))
    return files


def checkpoint_files(shape: ModelShape, optimizer: str) -> list[FileSize]:
    """The files of one checkpoints/step-N folder."""
    states = optimizer_state_tensors(list(shape.trainable), optimizer)
    kind = "8-bit AdamW: uint8 states + absmax" if optimizer != "adamw" else "AdamW: exp_avg + exp_avg_sq"
    return [*model_folder_files(shape, "model/"),
            FileSize("training_state.safetensors", safetensors_bytes(states), f"optimizer state ({kind})"),
            FileSize("(small files)", SMALL_FILES_BYTES + OPTIMIZER_JSON_BYTES_PER_TENSOR * len(states),
                     "recipe, RNG and run states, manifest (allowance)")]


@dataclass(frozen=True)
class RunDiskUse:
    """The expected disk use of a run: one checkpoint, best/ and final/, the data cache, and the totals."""

    checkpoint: FolderSize
    model_folder: FolderSize
    """best/ and final/ (each)."""
    keep_last: int
    saves: int
    """Checkpoints the run writes (every train.save_steps and at the last step)."""
    has_best: bool
    """Whether the run validates (best/ is written)."""
    data: FileSize | None
    shape: ModelShape

    @property
    def checkpoints_kept(self) -> int:
        return min(self.keep_last, self.saves)

    @property
    def checkpoints_at_peak(self) -> int:
        """Kept checkpoints plus the one being written (its .tmp folder exists before the oldest goes)."""
        return min(self.keep_last + 1, self.saves)

    @property
    def at_end(self) -> int:
        """The output folder once the run is done: kept checkpoints, best/, final/, data."""
        return (self.checkpoints_kept * self.checkpoint.bytes + (1 + self.has_best) * self.model_folder.bytes
                + self.data_bytes)

    @property
    def peak(self) -> int:
        """The most the run holds at any moment: while a checkpoint is written (next to the kept ones and
        best/), or at the end. (Replacing best/ briefly holds two of it - as many folders as the end.)"""
        writing = self.checkpoints_at_peak * self.checkpoint.bytes + self.has_best * self.model_folder.bytes
        return max(writing + self.data_bytes, self.at_end)

    @property
    def data_bytes(self) -> int:
        return self.data.bytes if self.data is not None else 0

    def as_dict(self) -> dict:
        return {"checkpoint_bytes": self.checkpoint.bytes,
                "checkpoint_files": {f.path: f.bytes for f in self.checkpoint.files},
                "model_folder_bytes": self.model_folder.bytes, "keep_last": self.keep_last, "saves": self.saves,
                "checkpoints_at_peak": self.checkpoints_at_peak, "has_best": self.has_best,
                "data_bytes": self.data_bytes, "peak_bytes": self.peak, "at_end_bytes": self.at_end,
                "architecture": self.shape.source}


def checkpoint_saves(train_cfg) -> int:
    """How many checkpoints a run writes: every `save_steps` and at the last step.

    >>> from banglaocr.config import TrainConfig
    >>> checkpoint_saves(TrainConfig(max_steps=3000, save_steps=250)), checkpoint_saves(TrainConfig(max_steps=10, save_steps=4))
    (12, 3)
    """
    if not train_cfg.save_steps:
        return 1
    return train_cfg.max_steps // train_cfg.save_steps + bool(train_cfg.max_steps % train_cfg.save_steps)


def estimate_disk_use(recipe, output_dir: str | Path | None = None) -> RunDiskUse:
    """The expected disk use of `recipe`'s run into `output_dir` (default: train.output_dir).

    `EstimateUnavailable` when the model cannot be built without weights here.
    """
    output = Path(output_dir or recipe.train.output_dir)
    shape = build_model_shape(recipe)
    data = recipe.data
    has_best = data.source == "synth" or data.val_split is not None or data.val_fraction > 0
    return RunDiskUse(checkpoint=FolderSize("checkpoints/step-N", tuple(checkpoint_files(shape, recipe.train.optimizer))),
                      model_folder=FolderSize("best/, final/", tuple(model_folder_files(shape))),
                      keep_last=recipe.train.keep_last, saves=checkpoint_saves(recipe.train), has_best=has_best,
                      data=synthetic_data_size(data, output), shape=shape)


def synthetic_data_size(data_cfg, work_dir: Path) -> FileSize | None:
    """The images `data.source: synth` renders (into the output folder unless data.synth.dir says otherwise):
    their bytes when rendered already,
    else `SYNTH_SAMPLE_IMAGES` rendered now, scaled to `data.synth.n`. None for other sources (a hub data
    set goes to the Hugging Face cache, a local one is read where it is)."""
    if data_cfg.source != "synth":
        return None
    from banglaocr.data.sources import synth_dir
    from banglaocr.data.synth import write_synthetic_dataset

    folder, synth = synth_dir(data_cfg, work_dir), data_cfg.synth
    if (folder / "synth.json").is_file():
        return FileSize(str(folder), folder_bytes(folder), "synthetic images (rendered already)")
    sample = min(synth.n, SYNTH_SAMPLE_IMAGES)
    with tempfile.TemporaryDirectory() as tmp:
        write_synthetic_dataset(tmp, n=sample, seed=synth.seed, holdout_font=synth.holdout_font,
                                short_fraction=synth.short_fraction, only_fonts=synth.fonts, clean=synth.clean,
                                hand=synth.hand, workers=1)
        measured = folder_bytes(Path(tmp))
    return FileSize(str(folder), measured * synth.n // sample,
                    f"synthetic images, rendered on first use ({measured // sample:,} bytes per image measured)")


# --------------------------------------------------------------------------- does it fit


@dataclass(frozen=True)
class DiskFit:
    """The run's expected disk use next to the free space of the output folder's file system."""

    folder: Path
    free: int
    present: int
    """Bytes the run's folders already hold there (a resumed run; rendered data)."""
    needed: int
    """Bytes the run still needs at its peak."""

    @property
    def fits(self) -> bool:
        return self.needed <= self.free


def disk_fit(use: RunDiskUse, output_dir: str | Path) -> DiskFit:
    """Compare `use` with the free space where `output_dir` is (its nearest existing parent)."""
    folder = Path(output_dir).expanduser().absolute()
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    present = sum(folder_bytes(folder / name) for name in ("checkpoints", "best", "final"))
    if use.data is not None:
        present += folder_bytes(Path(use.data.path))  # rendered already: counted in `use`, and there
    return DiskFit(folder=folder, free=shutil.disk_usage(existing).free, present=present,
                   needed=max(0, use.peak - present))


def keep_last_that_fits(use: RunDiskUse, fit: DiskFit) -> int | None:
    """The largest train.keep_last whose peak fits the free space (None when not even 1 does)."""
    for keep in range(use.keep_last, 0, -1):
        smaller = RunDiskUse(use.checkpoint, use.model_folder, keep, use.saves, use.has_best, use.data, use.shape)
        if smaller.peak - fit.present <= fit.free:
            return keep
    return None


def advice(use: RunDiskUse, fit: DiskFit) -> str:
    """What to do when the run does not fit: a smaller train.keep_last that fits, or another output folder."""
    other = f"choose an output folder with {format_bytes(fit.needed)} free (train -o DIR)"
    keep = keep_last_that_fits(use, fit)
    if keep is None or keep == use.keep_last:
        return f"free {format_bytes(fit.needed - fit.free)} there or {other}"
    return (f"lower train.keep_last to {keep} (each kept checkpoint is {format_bytes(use.checkpoint.bytes)}), "
            f"or {other}")


def describe(use: RunDiskUse, fit: DiskFit | None = None) -> list[str]:
    """The expected disk use as lines for a terminal: the checkpoint by file, what keep_last costs,
    best/ and final/, the data, the peak and, with `fit`, the free space."""
    def row(label: str, count: int, note: str = "", indent: int = 2) -> str:
        return f"{' ' * indent}{label:<{40 - indent}} {format_bytes(count):>10}  {note}".rstrip()

    ckpt = use.checkpoint
    lines = [f"expected disk use, counted on the meta device ({use.shape.source}):",
             row("one checkpoint (checkpoints/step-N)", ckpt.bytes)]
    lines += [row(f.path, f.bytes, f.what, indent=4) for f in grouped_files(ckpt.files)]
    count, saves = use.checkpoints_at_peak, use.saves
    lines.append(row(f"x {count} checkpoint{'s' * (count > 1)}", count * ckpt.bytes,
                     f"train.keep_last {use.keep_last} + the one being written ({saves} save{'s' * (saves > 1)} "
                     "in the run)"))
    folders = "best/ + final/" if use.has_best else "final/"
    lines.append(row(folders, (1 + use.has_best) * use.model_folder.bytes,
                     f"{format_bytes(use.model_folder.bytes)} each: the model folder, as in a checkpoint's model/"))
    if use.data is not None:
        lines.append(row(f"{Path(use.data.path).name}/", use.data.bytes, use.data.what))
    lines.append(row("peak", use.peak, f"at the end: {format_bytes(use.at_end)}"))
    if fit is not None:
        verdict = "fits" if fit.fits else f"DOES NOT FIT: {advice(use, fit)}"
        held = f"; {format_bytes(fit.present)} of the run there already" if fit.present else ""
        lines.append(row("free", fit.free, f"at {fit.folder}{held}: {verdict}"))
    return lines


def grouped_files(files: tuple[FileSize, ...]) -> list[FileSize]:
    """A folder's files as the report lists them: the tokenizer files (tokenizer.json, its config, the chat
    template) of each folder as one entry."""
    merged: dict[str, FileSize] = {}
    for f in files:
        if f.what == "tokenizer":
            folder = f.path.rsplit("/", 1)[0] + "/" if "/" in f.path else ""
            key = f"{folder}tokenizer files"
            earlier = merged.get(key)
            merged[key] = FileSize(key, f.bytes + (earlier.bytes if earlier else 0), "tokenizer.json, config, chat template")
        else:
            merged[f.path] = f
    return list(merged.values())


def try_estimate(recipe, output_dir: str | Path | None = None) -> tuple[RunDiskUse | None, DiskFit | None, str]:
    """(use, fit, "") or (None, None, why not) - an estimate that fails never stops the command asking."""
    output = Path(output_dir or recipe.train.output_dir)
    try:
        use = estimate_disk_use(recipe, output)
        return use, disk_fit(use, output), ""
    except (EstimateUnavailable, UserError, OSError, ValueError, ImportError) as err:
        return None, None, first_line(err)
