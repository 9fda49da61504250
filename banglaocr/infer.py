"""Batched generation: word images -> normalised Bangla text. Used by train-time eval, `eval`, `predict`.

Images are resized to the model's image budget, batched in order of width (less padding, so
fewer wasted visual tokens), prompts are LEFT-padded (generation appends on the right), decoding
is greedy unless `num_beams > 1`, generation stops at `<|im_end|>`, and the text goes through the
same normaliser as the labels. Results come back in input order.

A model folder written by banglaocr carries `banglaocr.json` (`ReadSettings`: image budget,
prompt, `max_new_tokens`), so eval / predict read images exactly the way training showed them.

`load_for_inference` loads whatever a user names - a hub id, a full / merged / adapter model
folder, a training output folder - with those settings, on the best device and dtype at hand;
`read_images` reads any number of images in bounded memory, turning one that does not decode
into an error `Reading` instead of stopping the rest.

>>> from PIL import Image
>>> from banglaocr.config import ImageConfig
>>> order_by_width([Image.new("RGB", (w, 32)) for w in (64, 256, 128)], ImageConfig(height=32))
[1, 2, 0]
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import torch
from PIL import Image

from banglaocr.config import DataConfig, ImageConfig, ModelConfig
from banglaocr.data.collate import Collator, finish_batch_on_device
from banglaocr.data.pixels import budget_width, resize_to_budget
from banglaocr.errors import UserError
from banglaocr.model.shipped import looks_like_path, shipped_model
from banglaocr.model.tokenizers import special_token_ids
from banglaocr.text import normalize

SETTINGS_FILE = "banglaocr.json"

VIDEO_PREPROCESSOR = {
    # Qwen3-VL's video processor with its own defaults. Without this file AutoProcessor falls back
    # to the image processor's config and builds Qwen2-VL's video processor instead.
    "video_processor_type": "Qwen3VLVideoProcessor",
    "processor_class": "Qwen3VLProcessor",
    "patch_size": 16, "temporal_patch_size": 2, "merge_size": 2,
    "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
}


@dataclass(frozen=True)
class ReadSettings:
    """How a model reads an image: the image budget, the prompt and the generation length."""

    image: ImageConfig
    prompt: str
    max_new_tokens: int

    def to_dict(self) -> dict:
        return {"image": dataclasses.asdict(self.image), "prompt": self.prompt,
                "max_new_tokens": self.max_new_tokens}

    @classmethod
    def from_dict(cls, raw: dict) -> "ReadSettings":
        return cls(image=ImageConfig(**raw["image"]), prompt=raw["prompt"], max_new_tokens=int(raw["max_new_tokens"]))


def default_read_settings() -> ReadSettings:
    """Settings for a model folder without `banglaocr.json` (e.g. the base model from the hub)."""
    return ReadSettings(image=ImageConfig(), prompt=DataConfig(source="-").prompt, max_new_tokens=32)


def save_read_settings(folder: str | Path, settings: ReadSettings) -> None:
    """Write `banglaocr.json`, a `preprocessor_config.json` that does not upscale word crops, and Qwen3-VL's
    `video_preprocessor_config.json` (so `AutoProcessor` builds the right processor where torchvision exists).

    Qwen3-VL-2B's own image processor upscales every image to >= 65,536 pixels; the config
    written here sets min_pixels to the budget's smallest image, so plain transformers / vLLM
    keep word crops at the size the model was trained on.
    """
    folder = Path(folder)
    (folder / SETTINGS_FILE).write_text(json.dumps(settings.to_dict(), ensure_ascii=False, indent=2),
                                        encoding="utf-8")
    image = settings.image
    preprocessor = {
        "image_processor_type": "Qwen2VLImageProcessor",
        "processor_class": "Qwen3VLProcessor",
        "do_resize": True, "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
        "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "do_convert_rgb": True,
        "patch_size": 16, "temporal_patch_size": 2, "merge_size": 2,
        "size": {"shortest_edge": image.height * image.min_width, "longest_edge": image.height * image.max_width},
    }
    (folder / "preprocessor_config.json").write_text(json.dumps(preprocessor, indent=2), encoding="utf-8")
    (folder / "video_preprocessor_config.json").write_text(json.dumps(VIDEO_PREPROCESSOR, indent=2), encoding="utf-8")


def load_read_settings(folder: str | Path) -> ReadSettings | None:
    path = Path(folder) / SETTINGS_FILE
    if not path.is_file():
        return None
    return ReadSettings.from_dict(json.loads(path.read_text(encoding="utf-8")))


def order_by_width(images: list[Image.Image], image_cfg: ImageConfig) -> list[int]:
    """Indices of `images`, widest budget width first (batches of similar width pad less)."""
    widths = [budget_width(image.height, image.width, image_cfg) for image in images]
    return sorted(range(len(images)), key=lambda i: (-widths[i], i))


def _model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def generate_texts(model: Any, tokenizer: Any, images: list[Image.Image], settings: ReadSettings,
                   batch_size: int = 16, num_beams: int = 1, device: torch.device | str | None = None,
                   on_batch: Callable[[int], None] | None = None) -> list[str]:
    """Read every image; return normalised texts in input order.

    `model` is a Qwen3-VL (or a PeftModel around one) - not a DDP wrapper. `on_batch(n)` is
    called after each batch with the number of images done in it (progress bars).
    """
    if not images:
        return []
    device = torch.device(device) if device is not None else _model_device(model)
    ids = special_token_ids(tokenizer)
    collate = Collator(tokenizer, settings.prompt, train=False)
    order = order_by_width(images, settings.image)
    results: list[str] = [""] * len(images)
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            batch = collate([{"image": resize_to_budget(images[i], settings.image)} for i in chunk])
            inputs = finish_batch_on_device(batch, device)
            output = model.generate(
                **inputs, max_new_tokens=settings.max_new_tokens, num_beams=num_beams,
                do_sample=False,  # Qwen3-VL's shipped generation config samples; OCR wants the argmax
                eos_token_id=ids["im_end"], pad_token_id=ids["pad"],
            )
            new_tokens = output[:, inputs["input_ids"].shape[1]:]
            for index, row in zip(chunk, new_tokens.tolist()):
                if ids["im_end"] in row:
                    row = row[:row.index(ids["im_end"])]
                results[index] = normalize(tokenizer.decode(row, skip_special_tokens=True))
            if on_batch is not None:
                on_batch(len(chunk))
    finally:
        model.train(was_training)
    return results


# --------------------------------------------------------------------------- loading a model to read with

# Precision names (as in recipes) -> the ModelConfig.dtype that loads the weights in it.
_PRECISION_DTYPE_NAMES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}
PRECISIONS = ("auto", *_PRECISION_DTYPE_NAMES)


def _is_model_folder(path: Path) -> bool:
    return (path / "config.json").is_file() or (path / "adapter_config.json").is_file()


def resolve_model(model: str) -> str:
    """Where `model` loads from: a model folder's path, or a hub id unchanged.

    Rules, in order (`UserError` with the reason when none applies):
    0. a shipped model's name (`tiny`) is its folder inside the package (`./tiny` is a local path);
    1. a folder with `config.json` (full or merged model) or `adapter_config.json` (adapter) is itself;
    2. a training output folder (`recipe.yaml` next to `best/` or `final/`) means its `best/`,
       else its `final/`;
    3. a checkpoint folder (`checkpoints/step-N`) means its `model/`;
    4. anything that is not a local path is a hub id (e.g. `Qwen/Qwen3-VL-2B-Instruct`).

    >>> resolve_model("Qwen/Qwen3-VL-2B-Instruct")
    'Qwen/Qwen3-VL-2B-Instruct'
    >>> resolve_model("./no/such/run")
    Traceback (most recent call last):
    ...
    banglaocr.errors.UserError: model folder not found: ./no/such/run
    """
    shipped = shipped_model(model)
    if shipped is not None:
        return str(shipped)
    path = Path(model).expanduser()
    if path.is_dir():
        if _is_model_folder(path):
            return str(path)
        if (path / "recipe.yaml").is_file():
            for name in ("best", "final"):
                if _is_model_folder(path / name):
                    return str(path / name)
            if _is_model_folder(path / "model"):
                return str(path / "model")
            steps = sorted((p for p in (path / "checkpoints").glob("step-*") if _is_model_folder(p / "model")),
                           key=lambda p: int(p.name.split("-")[-1]) if p.name.split("-")[-1].isdigit() else -1)
            hint = f"; the newest checkpoint's model is {steps[-1] / 'model'}" if steps else ""
            raise UserError(f"training output folder {model} has no best/ or final/ model yet{hint}")
        raise UserError(f"{model} is not a model folder (no config.json or adapter_config.json) "
                        "nor a training output folder (recipe.yaml with best/ or final/)")
    if path.exists():
        raise UserError(f"model path is a file, expected a model folder: {model}")
    if looks_like_path(model):
        raise UserError(f"model folder not found: {model}")
    return model


def default_device() -> torch.device:
    """cuda when a GPU is visible, else cpu."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _device(device: str | None) -> torch.device:
    if not device:
        return default_device()
    try:
        target = torch.device(device)
    except RuntimeError:
        raise UserError(f"unknown device {device!r} (e.g. cpu, cuda, cuda:1)") from None
    if target.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {device!r} asked for, but no CUDA GPU is visible")
    return target


def inference_precision(precision: str, device: torch.device) -> str:
    """`auto` -> bf16 on GPUs that have it, fp16 on other GPUs (e.g. a T4), fp32 on the CPU.

    >>> inference_precision("auto", torch.device("cpu")), inference_precision("bf16", torch.device("cpu"))
    ('fp32', 'bf16')
    """
    if precision not in PRECISIONS:
        raise UserError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if device.type != "cuda":
        return "fp32" if precision == "auto" else precision
    # Without including_emulation=False a T4 reports bf16 "supported" (emulated, slow).
    native_bf16 = torch.cuda.is_bf16_supported(including_emulation=False)
    if precision == "auto":
        return "bf16" if native_bf16 else "fp16"
    if precision == "bf16" and not native_bf16:
        raise UserError("this GPU has no bf16 (e.g. a T4): use --precision fp16")
    return precision


def resolve_adapter_folder(path: str | Path) -> Path:
    """The adapter folder named by `path`: the folder itself, a training output folder's best/ (else
    final/), or a checkpoint folder's model/. Used by `--adapter` (eval, predict) and `merge-lora`.

    >>> import tempfile, pathlib
    >>> run = pathlib.Path(tempfile.mkdtemp())
    >>> (run / "final").mkdir(); _ = (run / "final" / "adapter_config.json").write_text("{}")
    >>> resolve_adapter_folder(run).name
    'final'
    """
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise UserError(f"adapter folder not found: {path}")
    if (folder / "adapter_config.json").is_file():
        return folder
    for name in ("best", "final", "model"):  # a training output folder, a checkpoint folder
        if (folder / name / "adapter_config.json").is_file():
            return folder / name
    if any((folder / sub / "config.json").is_file() for sub in (".", "best", "final", "model")):
        raise UserError(f"{path} is not an adapter folder: it holds a full model (a full fine-tune or an "
                        "earlier merge), so there is nothing to merge or apply - use it as the model itself")
    raise UserError(f"not an adapter folder: {path} has no adapter_config.json "
                    "(nor best/ or final/ of a training output folder)")


def load_for_inference(model: str, adapter: str | None = None, precision: str = "auto",
                       device: str | None = None):
    """Load a model to read with, and the `ReadSettings` it was trained with: `(LoadedModel, ReadSettings)`.

    `model`: a hub id, a full or merged model folder, an adapter folder (its
    `adapter_config.json` names the base, loaded first), a training output folder (its `best/`,
    else `final/`) or a checkpoint folder (see `resolve_model`). `adapter`: an adapter folder
    (or a LoRA run's output folder) applied on top of `model`, which is then its base.
    Settings come from `banglaocr.json` (the adapter's first, then the model's), else
    `default_read_settings()`. `device`: default cuda if available, else cpu; `precision`
    `auto` picks bf16 / fp16 / fp32 (`inference_precision`). The model is in eval mode with
    no parameter requiring gradients, on `device`.

    >>> load_for_inference("/no/such/run")
    Traceback (most recent call last):
    ...
    banglaocr.errors.UserError: model folder not found: /no/such/run
    """
    from banglaocr.model.factory import load_model

    target = _device(device)
    precision = inference_precision(precision, target)
    name = resolve_model(model)
    adapter_dir = resolve_adapter_folder(adapter) if adapter is not None else None
    if adapter_dir is not None and (Path(name) / "adapter_config.json").is_file():
        raise UserError(f"{model} is itself an adapter folder: with --adapter, --model must be the base model")

    # dtype is set explicitly: load_model's `auto` means fp32 master weights for a full folder
    # (right for training it, twice the memory and slower for reading with it).
    model_cfg = ModelConfig(name_or_path=name, dtype=_PRECISION_DTYPE_NAMES[precision])
    loaded = load_model(model_cfg, None, precision=precision)
    network = loaded.model
    if adapter_dir is not None:
        import warnings

        from peft import PeftModel

        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            network = PeftModel.from_pretrained(network, str(adapter_dir), is_trainable=False)
    network.requires_grad_(False)  # load_model readies a full folder for training
    network.eval()
    network.to(target)
    loaded = dataclasses.replace(loaded, model=network, is_peft=loaded.is_peft or adapter_dir is not None)

    settings = None
    for folder in (adapter_dir, Path(name)):
        if folder is not None and folder.is_dir():
            settings = load_read_settings(folder)
            if settings is not None:
                break
    return loaded, settings or default_read_settings()


# --------------------------------------------------------------------------- reading many images


@dataclass(frozen=True)
class Reading:
    """What became of one input of `read_images`: its text, or why it could not be read."""

    source: Any
    """The input as given (a path, a `Record`, ...)."""
    text: str | None
    """The normalised text the model read; None when the image could not be decoded."""
    error: str | None = None
    """Why the image could not be decoded (one line); None on success."""
    blank: bool = False
    """The image holds no ink (`pixels.ink_box` finds none, nor on the inverted image): `text` is ""
    without asking the model, which would invent a word."""


def read_images(model: Any, tokenizer: Any, sources: Iterable[Any], settings: ReadSettings,
                batch_size: int = 16, num_beams: int = 1, chunk_size: int = 1024,
                on_batch: Callable[[int], None] | None = None, process_index: int = 0,
                num_processes: int = 1) -> Iterator[Reading]:
    """Decode and read many images; yield one `Reading` per source, in input order.

    `sources` are whatever `open_image` takes (paths, `Record`s, bytes). An image that fails to
    decode becomes a `Reading` with `error` set and the rest go on; a blank image (no ink) becomes
    an empty `Reading` with `blank` set, not shown to the model. Images are decoded `chunk_size`
    at a time, so memory stays bounded however many there are (each chunk is ordered by width
    inside `generate_texts`). `on_batch(n)` is called with the number of inputs finished (read,
    blank or failed) by this process.

    Several processes (`process_index` of `num_processes`, e.g. under `accelerate launch`): every
    process decodes the chunk, the chunk's width-ordered batches are dealt out (batch k to process
    k % num_processes) and the texts gathered, so every process yields every `Reading`, and the
    batches - hence the texts - are exactly those of one process. All processes must call this with
    the same sources.

    >>> import torch
    >>> from banglaocr.config import ModelConfig
    >>> from banglaocr.model.factory import load_model
    >>> _ = torch.manual_seed(0)
    >>> tiny = load_model(ModelConfig(name_or_path="demo", init="tiny"), None)
    >>> sources = ["missing.png", Image.new("RGB", (64, 32), "white")]
    >>> [(r.text, r.error, r.blank) for r in read_images(tiny.model, tiny.tokenizer, sources, default_read_settings())]
    [(None, 'no such file: missing.png', False), ('', None, True)]
    """
    chunk: list[Any] = []
    for source in sources:
        chunk.append(source)
        if len(chunk) >= chunk_size:
            yield from _read_chunk(model, tokenizer, chunk, settings, (batch_size, num_beams), on_batch,
                                   process_index, num_processes)
            chunk = []
    if chunk:
        yield from _read_chunk(model, tokenizer, chunk, settings, (batch_size, num_beams), on_batch,
                               process_index, num_processes)


def _is_blank(image: Image.Image) -> bool:
    from PIL import ImageOps

    from banglaocr.data.pixels import ink_box

    # Light ink on dark paper has no ink by ink_box's measure either: blank only if neither has.
    return ink_box(image) is None and ink_box(ImageOps.invert(image)) is None


def _read_chunk(model, tokenizer, chunk: list, settings: ReadSettings, reading: tuple[int, int], on_batch,
                process_index: int, num_processes: int) -> Iterator[Reading]:
    """`read_images` of one chunk: decode, set blanks and failures aside, generate for the rest."""
    from banglaocr.data.sources import UnreadableImage, open_image

    images, errors, blanks = [], {}, set()
    for index, source in enumerate(chunk):
        try:
            image = open_image(source)
        except UnreadableImage as err:
            errors[index] = " ".join(str(err).split()) or type(err).__name__
            continue
        if _is_blank(image):
            blanks.add(index)
        else:
            images.append(image)
    if (errors or blanks) and on_batch is not None and process_index == 0:
        on_batch(len(errors) + len(blanks))
    texts = iter(_generate_shared(model, tokenizer, images, settings, reading, on_batch, process_index,
                                  num_processes))
    for index, source in enumerate(chunk):
        if index in errors:
            yield Reading(source=source, text=None, error=errors[index])
        elif index in blanks:
            yield Reading(source=source, text="", blank=True)
        else:
            yield Reading(source=source, text=next(texts))


def _generate_shared(model, tokenizer, images: list[Image.Image], settings: ReadSettings, reading: tuple[int, int],
                     on_batch, process_index: int, num_processes: int) -> list[str]:
    """`generate_texts` over the processes: the width-ordered batches dealt out, the texts gathered."""
    batch_size, num_beams = reading
    if num_processes == 1:
        return generate_texts(model, tokenizer, images, settings, batch_size=batch_size, num_beams=num_beams,
                              on_batch=on_batch)
    from accelerate.utils import gather_object

    order = order_by_width(images, settings.image)
    batches = [order[start:start + batch_size] for start in range(0, len(order), batch_size)]
    # Given its batches in this order, generate_texts cuts exactly the same batches again.
    mine = [index for batch in batches[process_index::num_processes] for index in batch]
    texts = generate_texts(model, tokenizer, [images[i] for i in mine], settings, batch_size=batch_size,
                           num_beams=num_beams, on_batch=on_batch if process_index == 0 else None)
    gathered = dict(gather_object(list(zip(mine, texts))))
    return [gathered[index] for index in range(len(images))]
