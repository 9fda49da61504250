"""Batched generation: word images -> normalised Bangla text. Used by train-time eval, `eval`, `predict`.

Images are resized to the model's image geometry, batched by size (equal heights, similar widths:
less padding, so fewer wasted visual tokens), prompts are LEFT-padded (generation appends on the
right), decoding is greedy unless `num_beams > 1`, generation stops at `<|im_end|>`, and the text
goes through the same normaliser as the labels. Results come back in input order. A row whose
logits turn non-finite while it is generated (an fp16 overflow) comes back as None, never as the
garbage the argmax of NaN / inf would write.

A model folder written by banglaocr carries `banglaocr.json` (`ReadSettings`: image budget,
prompt, `max_new_tokens`), so eval / predict read images exactly the way training showed them, and
`generation_config.json` (greedy, `max_new_tokens`, stop at `<|im_end|>`) for other readers. A model
without `banglaocr.json` (a base from the hub) is read by its own preprocessing (`QwenResize` from its
preprocessor_config.json), as plain transformers reads it.

Outside banglaocr: Qwen's image processor cannot resize to the budget (`smart_resize` keeps the
area, banglaocr a fixed height: on the shipped tiny model's config a 300x100 crop becomes 64x192
in plain transformers, 32x192 here). The `preprocessor_config.json` banglaocr writes only promises
that a crop ALREADY at budget size passes through unchanged; `prepare_image` gives that crop (and the
prompt), and the model card's snippet does the same without banglaocr.

`load_for_inference` loads whatever a user names - a hub id, a full / merged / adapter model
folder, a training output folder - with those settings, on the best device and dtype at hand;
`read_images` reads any number of images in bounded memory, turning one that does not decode
into an error `Reading` instead of stopping the rest.

>>> from PIL import Image
>>> from banglaocr.config import ImageConfig
>>> reading_batches([Image.new("RGB", (w, 32)) for w in (64, 256, 128)], ImageConfig(height=32), batch_size=2)
[[1, 2], [0]]
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import torch
from PIL import Image

from banglaocr import hub
from banglaocr.confidence import Confidence, TokenProbabilities, reading_confidence
from banglaocr.config import DataConfig, ImageConfig, ModelConfig
from banglaocr.data.collate import Collator, finish_batch_on_device, generation_batch
from banglaocr.data.pixels import MERGE_SIZE, ImageGeometry, QwenResize, model_size, resize_for_model
from banglaocr.errors import UserError
from banglaocr.model.shipped import looks_like_path, shipped_model
from banglaocr.model.tokenizers import special_token_ids
from banglaocr.text import normalize

SETTINGS_FILE = "banglaocr.json"
PREPROCESSOR_FILE = "preprocessor_config.json"
GENERATION_FILE = "generation_config.json"
NONFINITE_ERROR = ("non-finite logits while generating (an fp16 overflow?): nothing was read; "
                   "read with --precision fp32, or bf16 on a GPU that has it")
"""The error of a row whose logits turned NaN / inf before it ended (`generate_texts` gives None)."""

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
    """How a model reads an image: the image geometry, the prompt and the generation length."""

    image: ImageGeometry
    """The budget (`ImageConfig`) banglaocr trained with, or Qwen's own `QwenResize` for a model it did not."""
    prompt: str
    max_new_tokens: int
    origin: str = field(default="", compare=False)
    """Where the settings came from, in words (`banglaocr.json in runs/x/best`, ...): reports say it."""

    def to_dict(self) -> dict:
        image = dataclasses.asdict(self.image)
        if isinstance(self.image, QwenResize):
            image = {"geometry": "qwen", **image}
        return {"image": image, "prompt": self.prompt, "max_new_tokens": self.max_new_tokens}

    @classmethod
    def from_dict(cls, raw: dict, origin: str = "") -> "ReadSettings":
        image = dict(raw["image"])
        geometry = QwenResize(**{k: v for k, v in image.items() if k != "geometry"}) \
            if image.get("geometry") == "qwen" else ImageConfig(**image)
        return cls(image=geometry, prompt=raw["prompt"], max_new_tokens=int(raw["max_new_tokens"]), origin=origin)

    @property
    def trained(self) -> bool:
        """True for settings a training run wrote (a `banglaocr.json`), False for a model's own or defaults."""
        return self.origin.startswith(SETTINGS_FILE)

    def geometry(self) -> dict:
        """The image geometry for reports (eval's summary.json): its kind, its numbers, where it came from.

        >>> default_read_settings().geometry()["kind"]
        'budget'
        """
        kind = "qwen_smart_resize" if isinstance(self.image, QwenResize) else "budget"
        return {"kind": kind, **dataclasses.asdict(self.image), "from": self.origin,
                "description": self.describe_geometry()}

    def describe_geometry(self) -> str:
        """The image geometry in one line.

        >>> ReadSettings(QwenResize(65536, 16777216), "লেখো", 32, origin="its preprocessor_config.json").describe_geometry()
        "Qwen's own smart_resize, 65,536 to 16,777,216 pixels (its preprocessor_config.json)"
        """
        image = self.image
        if isinstance(image, QwenResize):
            text = f"Qwen's own smart_resize, {image.min_pixels:,} to {image.max_pixels:,} pixels"
        else:
            text = (f"budget: height {image.height}, width {image.min_width}-{image.max_width}"
                    + (f", stretch {image.stretch:g}" if image.stretch != 1.0 else "")
                    + (", tight crop" if image.tight_crop else ""))
        return f"{text} ({self.origin})" if self.origin else text


def default_read_settings() -> ReadSettings:
    """Settings for a model folder without `banglaocr.json` nor a preprocessor_config.json to read by."""
    return ReadSettings(image=ImageConfig(), prompt=DataConfig(source="-").prompt, max_new_tokens=32,
                        origin="default budget")


def generation_config(tokenizer: Any, max_new_tokens: int):
    """The `GenerationConfig` of banglaocr's reading: greedy, `max_new_tokens`, stop at `<|im_end|>` only.

    >>> from banglaocr.model.tokenizers import build_char_tokenizer
    >>> config = generation_config(build_char_tokenizer(), 24)
    >>> config.do_sample, config.max_new_tokens, config.eos_token_id, config.pad_token_id
    (False, 24, 2, 0)
    """
    from transformers import GenerationConfig

    from banglaocr.model.tokenizers import special_token_ids

    ids = special_token_ids(tokenizer)
    # A plain `model.generate(**inputs)` then reads like `banglaocr predict` (Qwen3-VL's own
    # generation_config.json samples, and a base's applies to an adapter unless the adapter has one).
    return GenerationConfig(bos_token_id=ids["pad"], eos_token_id=ids["im_end"], pad_token_id=ids["pad"],
                            do_sample=False, num_beams=1, max_new_tokens=max_new_tokens)


def _pixel_limits(image: ImageGeometry) -> tuple[int, int]:
    """(min, max) pixels of Qwen's image processor that leave an image of this geometry as it is."""
    if isinstance(image, QwenResize):
        return image.min_pixels, image.max_pixels
    return image.height * image.min_width, image.height * image.max_width


def save_read_settings(folder: str | Path, settings: ReadSettings, *, tokenizer: Any = None) -> None:
    """Write what a reader outside banglaocr needs into a model folder: `banglaocr.json` (the settings),
    `generation_config.json` (`generation_config`), `preprocessor_config.json` and Qwen3-VL's
    `video_preprocessor_config.json` (so `AutoProcessor` builds the right processor where torchvision is).

    `tokenizer`: the model's (its special token ids go into generation_config.json); default: the
    tokenizer already saved in `folder`. The preprocessor config's pixel limits are the budget's
    smallest and largest image: a crop ALREADY resized to the budget (`prepare_image`) passes Qwen's
    `smart_resize` unchanged. It cannot do the resizing itself - smart_resize keeps the area, not the
    height (module docstring) - so plain transformers / vLLM must be given the resized crop.

    >>> import tempfile
    >>> from banglaocr.model.tokenizers import build_char_tokenizer
    >>> folder = Path(tempfile.mkdtemp())
    >>> save_read_settings(folder, default_read_settings(), tokenizer=build_char_tokenizer())
    >>> sorted(p.name for p in folder.iterdir())
    ['banglaocr.json', 'generation_config.json', 'preprocessor_config.json', 'video_preprocessor_config.json']
    """
    folder = Path(folder)
    if tokenizer is None:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(folder), trust_remote_code=False)
    (folder / SETTINGS_FILE).write_text(json.dumps(settings.to_dict(), ensure_ascii=False, indent=2),
                                        encoding="utf-8")
    generation_config(tokenizer, settings.max_new_tokens).save_pretrained(str(folder))
    smallest, largest = _pixel_limits(settings.image)
    preprocessor = {
        "image_processor_type": "Qwen2VLImageProcessor",
        "processor_class": "Qwen3VLProcessor",
        "do_resize": True, "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
        "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "do_convert_rgb": True,
        "patch_size": 16, "temporal_patch_size": 2, "merge_size": 2,
        "size": {"shortest_edge": smallest, "longest_edge": largest},
    }
    (folder / PREPROCESSOR_FILE).write_text(json.dumps(preprocessor, indent=2), encoding="utf-8")
    (folder / "video_preprocessor_config.json").write_text(json.dumps(VIDEO_PREPROCESSOR, indent=2), encoding="utf-8")


def load_read_settings(folder: str | Path) -> ReadSettings | None:
    """The `banglaocr.json` of `folder`, or None when it has none."""
    from banglaocr.model.folder_check import check_read_settings, read_json_object

    path = Path(folder) / SETTINGS_FILE
    if not path.exists():
        return None
    raw = read_json_object(path)
    check_read_settings(raw, path)  # types and ranges first: one line naming the file when it lies
    return ReadSettings.from_dict(raw, origin=f"{SETTINGS_FILE} in {folder}")


def _preprocessor_file(name: str) -> Path | None:
    """The preprocessor_config.json of a model folder, or of a hub id (from the cache when the hub does not
    answer); None when there is none."""
    path = Path(name).expanduser()
    if path.is_dir():
        return path / PREPROCESSOR_FILE if (path / PREPROCESSOR_FILE).exists() else None
    from transformers.utils import cached_file

    try:
        found = cached_file(name, PREPROCESSOR_FILE, local_files_only=hub.offline() or hub.unreachable() is not None,
                            _raise_exceptions_for_missing_entries=False,
                            _raise_exceptions_for_connection_errors=False)
    except (OSError, ValueError):
        return None
    return Path(found) if found else None


def own_read_settings(name: str) -> ReadSettings | None:
    """How a model banglaocr did not train reads by its own preprocessing: `QwenResize` with the pixel
    limits of its preprocessor_config.json (a model folder or a hub id), the default prompt and length;
    None when it has no such file.

    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> _ = (folder / PREPROCESSOR_FILE).write_text('{"size": {"shortest_edge": 65536, "longest_edge": 16777216}}')
    >>> own_read_settings(str(folder)).image
    QwenResize(min_pixels=65536, max_pixels=16777216)
    """
    from banglaocr.model.folder_check import preprocessor_geometry

    path = _preprocessor_file(name)
    if path is None:
        return None
    default = default_read_settings()
    return ReadSettings(image=preprocessor_geometry(path), prompt=default.prompt,
                        max_new_tokens=default.max_new_tokens, origin=f"{PREPROCESSOR_FILE} of {name}")


def read_settings(model: str, adapter: str | None = None, *, check_folder: bool = True) -> ReadSettings:
    """The settings `model` (with `adapter` on it) is read with, without loading any weights.

    In order: the `banglaocr.json` of the adapter, then of the model (a model banglaocr trained is read
    the way training showed it images); else the model's own preprocessing (`own_read_settings`: the
    adapter's, the model's, an adapter folder's base's preprocessor_config.json); else
    `default_read_settings()`. `model` and `adapter` are named as `load_for_inference` takes them.
    `check_folder`: check the model folder's other files too (`resolve_model`), for a caller that loads it next.

    >>> read_settings("tiny").image
    ImageConfig(height=32, max_width=384, min_width=32, stretch=2.0, tight_crop=True)
    """
    from banglaocr.model.factory import adapter_base

    name = resolve_model(model, check_folder=check_folder)
    folders: list[str] = []
    if adapter is not None:
        folders.append(str(resolve_adapter_folder(adapter)))
    folders.append(name)
    if (Path(name) / "adapter_config.json").is_file():
        folders.append(adapter_base(Path(name)))
    for folder in folders:
        settings = load_read_settings(folder) if Path(folder).is_dir() else None
        if settings is not None:
            return settings
    for folder in folders:
        settings = own_read_settings(folder)
        if settings is not None:
            return settings
    return dataclasses.replace(default_read_settings(),
                               origin=f"default budget: no {SETTINGS_FILE} nor {PREPROCESSOR_FILE} for {model}")


# --------------------------------------------------------------------------- the exact input, for any reader


@dataclass(frozen=True)
class PreparedImage:
    """One word image exactly as banglaocr shows it to a model, with the prompt it asks (`prepare_image`)."""

    image: Image.Image
    """The pixels: decoded (EXIF orientation, transparency on white), resized to the model's geometry (RGB)."""
    prompt: str
    """The question after the image (the training prompt)."""
    max_new_tokens: int
    """The generation length banglaocr reads with (also in the folder's generation_config.json)."""
    blank: bool
    """The image holds no ink: banglaocr reads it as "" without asking the model (which would invent a word)."""

    @property
    def messages(self) -> list[dict]:
        """The chat for `processor.apply_chat_template(messages, add_generation_prompt=True, ...)` (or vLLM's
        `LLM.chat`): one user turn, the image then the prompt - the training sequence, token for token."""
        return [{"role": "user", "content": [{"type": "image", "image": self.image},
                                             {"type": "text", "text": self.prompt}]}]

    def chat_text(self, tokenizer: Any) -> str:
        """The prompt as text with ONE `<|image_pad|>` (which processors / vLLM expand to the image's visual
        tokens), ending with the assistant turn's start - what generation continues from.

        >>> from banglaocr.model.tokenizers import build_char_tokenizer
        >>> prepared = PreparedImage(Image.new("RGB", (64, 32)), "লেখো", 24, blank=True)
        >>> prepared.chat_text(build_char_tokenizer())
        '<|im_start|>user\\n<|vision_start|><|image_pad|><|vision_end|>লেখো<|im_end|>\\n<|im_start|>assistant\\n'
        """
        one_token = [[1, MERGE_SIZE, MERGE_SIZE]]  # a grid of 2x2 patches = one visual token
        return tokenizer.decode(generation_batch(tokenizer, self.prompt, one_token)["input_ids"][0])


def prepare_image(image: Any, model: str | Path) -> PreparedImage:
    """The exact pixels and prompt banglaocr reads `image` with, for the model `model`: feed them to
    plain transformers, vLLM or anything else and the model sees what `banglaocr predict` shows it.

    `image`: a file path, a PIL image or encoded bytes. `model`: what `--model` takes - a model,
    merged or adapter folder, a training output folder, `tiny`, a hub id (`read_settings` says which
    settings apply: the folder's banglaocr.json, else the model's own preprocessing).

    >>> prepared = prepare_image(Image.new("RGB", (300, 100), "white"), "tiny")
    >>> prepared.image.size, prepared.prompt, prepared.blank
    ((192, 32), 'লেখো', True)

    With plain transformers (`processor = AutoProcessor.from_pretrained(folder)`)::

        inputs = processor.apply_chat_template(prepared.messages, add_generation_prompt=True, tokenize=True,
                                               return_dict=True, return_tensors="pt")
        model.generate(**inputs)   # greedy, stops at <|im_end|>: the folder's generation_config.json
    """
    from banglaocr.data.sources import UnreadableImage, open_image

    settings = read_settings(str(model), check_folder=False)  # settings only: no weights are read here
    try:
        decoded = open_image(image)
    except UnreadableImage as err:
        shown = image if isinstance(image, (str, Path)) else type(image).__name__
        raise UserError(f"cannot read {shown}: {err}") from None
    return PreparedImage(image=resize_for_model(decoded, settings.image), prompt=settings.prompt,
                         max_new_tokens=settings.max_new_tokens, blank=_is_blank(decoded))


# --------------------------------------------------------------------------- generation


def reading_batches(images: list[Image.Image], geometry: ImageGeometry, batch_size: int) -> list[list[int]]:
    """Indices of `images` cut into generation batches: one height per batch (patchify needs it), widest
    first (batches of similar width pad less), at most `batch_size` each. Ties keep input order."""
    return batches_by_size([model_size(image.height, image.width, geometry) for image in images], batch_size)


def batches_by_size(sizes: list[tuple[int, int]], batch_size: int) -> list[list[int]]:
    """`reading_batches` from the images' model sizes (height, width) alone.

    >>> batches_by_size([(32, 64), (32, 256), (64, 96), (32, 128)], batch_size=2)
    [[2], [1, 3], [0]]
    """
    order = sorted(range(len(sizes)), key=lambda i: (-sizes[i][0], -sizes[i][1], i))
    batches: list[list[int]] = []
    for index in order:
        if not batches or len(batches[-1]) >= batch_size or sizes[batches[-1][0]][0] != sizes[index][0]:
            batches.append([])
        batches[-1].append(index)
    return batches


def _model_device(model: torch.nn.Module) -> torch.device:
    # Where the input embedding runs: under model.device_map the first parameter may be offloaded
    # (meta) or on another GPU than the embedding.
    from banglaocr.model.placement import input_device

    return input_device(model)


class NonFiniteRows:
    """A logits processor for `generate` that notes which batch rows met non-finite logits (NaN / inf:
    an fp16 overflow) before they ended; their text would be the argmax of garbage.

    One reduction over the vocabulary per step, kept on the device (read once, after generation).
    Rows count from the step a row ended at `eos_id` no more. Beams: a row is flagged when any of its
    beams is.

    >>> rows = NonFiniteRows(prompt_length=1, eos_id=2, num_beams=1)
    >>> _ = rows(torch.tensor([[5, 7], [5, 2]]), torch.tensor([[0.0, float("nan")], [float("inf"), 0.0]]))
    >>> rows.flagged()
    [True, False]
    """

    def __init__(self, prompt_length: int, eos_id: int, num_beams: int) -> None:
        self.prompt_length, self.eos_id, self.num_beams = prompt_length, eos_id, num_beams
        self.seen: torch.Tensor | None = None

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        bad = ~torch.isfinite(scores).all(dim=-1)
        ended = (input_ids[:, self.prompt_length:] == self.eos_id).any(dim=-1)
        bad = (bad & ~ended).view(-1, self.num_beams).any(dim=-1)
        self.seen = bad if self.seen is None else self.seen | bad
        return scores

    def flagged(self) -> list[bool]:
        return [] if self.seen is None else self.seen.tolist()


def _logits_processors(watch: NonFiniteRows, probe: TokenProbabilities | None = None):
    from transformers import LogitsProcessorList

    # Not LogitsProcessor subclasses (that would import transformers' generation at import time);
    # generate only calls what the list holds. The probe goes last: it must see the scores chosen from.
    return LogitsProcessorList([watch] + ([probe] if probe is not None else []))


def generate_texts(model: Any, tokenizer: Any, images: Sequence[Image.Image], settings: ReadSettings,
                   batch_size: int = 16, num_beams: int = 1, device: torch.device | str | None = None,
                   on_batch: Callable[[int], None] | None = None,
                   sizes: list[tuple[int, int]] | None = None) -> list[str | None]:
    """Read every image; return normalised texts in input order (None: non-finite logits, `NONFINITE_ERROR`).

    `model` is a Qwen3-VL (or a PeftModel around one) - not a DDP wrapper. `on_batch(n)` is
    called after each batch with the number of images done in it (progress bars). With `sizes`, the
    `images` are already resized for the model (`resize_for_model`) and `sizes` are the model sizes of the
    images as decoded (`pixels.model_size`): the batches are those `reading_batches` cuts of the decoded images.
    `generate_readings` gives each text's `Confidence` too.
    """
    texts, _ = generate_readings(model, tokenizer, images, settings, batch_size=batch_size, num_beams=num_beams,
                                 device=device, on_batch=on_batch, sizes=sizes, confidence=False)
    return texts


@torch.no_grad()
def generate_readings(model: Any, tokenizer: Any, images: Sequence[Image.Image], settings: ReadSettings,
                      batch_size: int = 16, num_beams: int = 1, device: torch.device | str | None = None,
                      on_batch: Callable[[int], None] | None = None, sizes: list[tuple[int, int]] | None = None,
                      confidence: bool = True) -> tuple[list[str | None], list[Confidence | None]]:
    """`generate_texts` with each reading's `Confidence` (None for a non-finite row, or when `confidence`
    is False). Greedy: the chosen tokens' probabilities are noted as they are chosen (`TokenProbabilities`);
    beams: from generate's per-step scores (`compute_transition_scores`), which beam search keeps anyway."""
    if not images:
        return [], []
    device = torch.device(device) if device is not None else _model_device(model)
    ids = special_token_ids(tokenizer)
    collate = Collator(tokenizer, settings.prompt, train=False)
    results: list[str | None] = [""] * len(images)
    confidences: list[Confidence | None] = [None] * len(images)
    was_training = model.training
    model.eval()
    try:
        batches = reading_batches(images, settings.image, batch_size) if sizes is None else \
            batches_by_size(sizes, batch_size)
        for chunk in batches:
            shown = [images[i] if sizes is not None else resize_for_model(images[i], settings.image) for i in chunk]
            inputs = finish_batch_on_device(collate([{"image": image} for image in shown]), device)
            prompt_length = inputs["input_ids"].shape[1]
            watch = NonFiniteRows(prompt_length, ids["im_end"], num_beams)
            probe = TokenProbabilities() if confidence and num_beams == 1 else None
            beam_scores = confidence and num_beams > 1
            output = model.generate(
                **inputs, max_new_tokens=settings.max_new_tokens, num_beams=num_beams,
                do_sample=False,  # Qwen3-VL's shipped generation config samples; OCR wants the argmax
                eos_token_id=ids["im_end"], pad_token_id=ids["pad"],
                logits_processor=_logits_processors(watch, probe),
                return_dict_in_generate=beam_scores, output_scores=beam_scores,
            )
            sequences = output.sequences if beam_scores else output
            logprobs = probe.finish(sequences) if probe is not None else \
                _beam_logprobs(model, output) if beam_scores else None
            new_tokens = sequences[:, prompt_length:].tolist()
            for at, (index, row) in enumerate(zip(chunk, new_tokens)):
                nonfinite = bool(watch.flagged() and watch.flagged()[at])
                ended = ids["im_end"] in row
                row = row[:row.index(ids["im_end"])] if ended else row
                results[index] = None if nonfinite else normalize(tokenizer.decode(row, skip_special_tokens=True))
                if logprobs is not None and not nonfinite:
                    confidences[index] = reading_confidence(tokenizer, row, logprobs[at][:len(row) + ended])
            if on_batch is not None:
                on_batch(len(chunk))
    finally:
        model.train(was_training)
    return results, confidences


def _beam_logprobs(model: Any, output: Any) -> list[list[float]]:
    """Per returned sequence, its tokens' log-probabilities under beam search (from the kept scores)."""
    scores = model.compute_transition_scores(output.sequences, output.scores, output.beam_indices,
                                             normalize_logits=False)
    return scores.float().cpu().tolist()


# --------------------------------------------------------------------------- loading a model to read with

# Precision names (as in recipes) -> the ModelConfig.dtype that loads the weights in it.
_PRECISION_DTYPE_NAMES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}
PRECISIONS = ("auto", *_PRECISION_DTYPE_NAMES)


def _is_model_folder(path: Path) -> bool:
    return (path / "config.json").is_file() or (path / "adapter_config.json").is_file()


def _model_folder_in(path: Path) -> Path | None:
    """`path` itself when it is a model folder; a training output folder's best/, else final/, else model/."""
    if _is_model_folder(path):
        return path
    if (path / "recipe.yaml").is_file():
        for name in ("best", "final", "model"):
            if _is_model_folder(path / name):
                return path / name
    return None


def resolve_model(model: str, *, check_folder: bool = True) -> str:
    """Where `model` loads from: a model folder's path, or a hub id unchanged; a local folder is checked
    (`folder_check.check_model_folder`) unless `check_folder` is False.

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
    from banglaocr.model.folder_check import check_model_folder

    shipped = shipped_model(model)
    if shipped is not None:
        return str(shipped)
    path = Path(model).expanduser()
    if path.is_dir():
        found = _model_folder_in(path)
        if found is not None:
            if check_folder:  # before anything reads it: a folder that lies is one line here
                check_model_folder(found)
            return str(found)
        if (path / "recipe.yaml").is_file():
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
    final/), or a checkpoint folder's model/. Used by `--adapter` (eval, predict) and `merge-lora`. The
    adapter's own files are checked (`folder_check.check_model_folder`); its base is the caller's to check.

    >>> import tempfile, pathlib
    >>> from safetensors.torch import save_file
    >>> run = pathlib.Path(tempfile.mkdtemp())
    >>> (run / "final").mkdir()
    >>> _ = (run / "final" / "adapter_config.json").write_text(
    ...     '{"peft_type": "LORA", "r": 8, "lora_alpha": 16, "base_model_name_or_path": "Qwen/Qwen3-VL-2B-Instruct"}')
    >>> save_file({}, run / "final" / "adapter_model.safetensors")
    >>> resolve_adapter_folder(run).name
    'final'
    """
    from banglaocr.model.folder_check import check_model_folder

    folder = Path(path).expanduser()
    if folder.exists() and not folder.is_dir():
        raise UserError(f"adapter path is a file, expected an adapter folder: {path}")
    if not folder.is_dir():
        raise UserError(f"adapter folder not found: {path}")
    for found in (folder, folder / "best", folder / "final", folder / "model"):  # + a run's, a checkpoint's
        if (found / "adapter_config.json").is_file():
            # Its own files only: the base is whatever the caller puts under it (--model, --base, or the one it names).
            check_model_folder(found, with_base=False)
            return found
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
    Settings: `read_settings` - the `banglaocr.json` of the adapter, then of the model; for a model
    banglaocr did not train (a hub base), its own preprocessing (`QwenResize` from its
    preprocessor_config.json), so its zero-shot score is the one plain transformers gives; else
    `default_read_settings()`. `device`: default cuda if available, else cpu; `precision`
    `auto` picks bf16 / fp16 / fp32 (`inference_precision`). The model is in eval mode with
    no parameter requiring gradients, on `device`.

    >>> load_for_inference("/no/such/run")
    Traceback (most recent call last):
    ...
    banglaocr.errors.UserError: model folder not found: /no/such/run
    """
    from banglaocr.model.factory import attach_saved_adapter, core_model, load_model

    target = _device(device)
    precision = inference_precision(precision, target)
    name = resolve_model(model)
    adapter_dir = resolve_adapter_folder(adapter) if adapter is not None else None
    if adapter_dir is not None and (Path(name) / "adapter_config.json").is_file():
        raise UserError(f"{model} is itself an adapter folder: with --adapter, --model must be the base model")
    settings = read_settings(model, adapter)  # before the weights: a bad preprocessor_config.json fails fast

    # dtype is set explicitly: load_model's `auto` means fp32 master weights for a full folder
    # (right for training it, twice the memory and slower for reading with it).
    model_cfg = ModelConfig(name_or_path=name, dtype=_PRECISION_DTYPE_NAMES[precision])
    loaded = load_model(model_cfg, None, precision=precision)
    network = loaded.model
    if adapter_dir is not None:
        network = attach_saved_adapter(network, adapter_dir, trainable=False)
    # Read the way banglaocr reads, whatever the folder's generation_config.json says (it may ask for
    # sampling, forced tokens or a minimum length): greedy, stop at <|im_end|>.
    core_model(network).generation_config = generation_config(loaded.tokenizer, settings.max_new_tokens)
    network.requires_grad_(False)  # load_model readies a full folder for training
    network.eval()
    network.to(target)
    loaded = dataclasses.replace(loaded, model=network, is_peft=loaded.is_peft or adapter_dir is not None)
    return loaded, settings


# --------------------------------------------------------------------------- reading many images


@dataclass(frozen=True)
class Reading:
    """What became of one input of `read_images`: its text, or why it could not be read."""

    source: Any
    """The input as given (a path, a `Record`, ...)."""
    text: str | None
    """The normalised text the model read; None when the image could not be decoded or read."""
    error: str | None = None
    """Why the image could not be decoded, or `NONFINITE_ERROR` (one line); None on success."""
    blank: bool = False
    """The image holds no ink (`pixels.ink_box` finds none, nor on the inverted image): `text` is ""
    without asking the model, which would invent a word."""
    nonfinite: bool = False
    """The logits turned non-finite while this image was read (an fp16 overflow): `text` is None and
    `error` is `NONFINITE_ERROR` instead of the garbage the model wrote."""
    confidence: Confidence | None = None
    """How sure the model was (`banglaocr.confidence`); None for errors, non-finite rows and blank images."""


def read_images(model: Any, tokenizer: Any, sources: Iterable[Any], settings: ReadSettings,
                batch_size: int = 16, num_beams: int = 1, chunk_size: int = 1024,
                on_batch: Callable[[int], None] | None = None, process_index: int = 0,
                num_processes: int = 1) -> Iterator[Reading]:
    """Decode and read many images; yield one `Reading` per source, in input order.

    `sources` are whatever `open_image` takes (paths, `Record`s, bytes). An image that fails to
    decode becomes a `Reading` with `error` set and the rest go on; a blank image (no ink) becomes
    an empty `Reading` with `blank` set, not shown to the model; an image whose logits turned
    non-finite, a `Reading` with `nonfinite` set. `on_batch(n)` is called with the number of inputs finished
    (read, blank or failed) by this process.

    Memory stays bounded however many images there are, and however large: they are read `chunk_size` at a
    time (each chunk batched by size inside `generate_texts`), and each image is resized for the model as soon
    as it is decoded (and checked for ink), so one full-size image is in memory at a time. A chunk holds at most
    `HELD_MEGAPIXELS` of resized images; those beyond (large model inputs: a model's own geometry may allow
    16 megapixels each) are decoded again when their batch comes. The pixels and the batches are the same
    either way.

    Several processes (`process_index` of `num_processes`, e.g. under `accelerate launch`): every
    process decodes the chunk, the chunk's batches (`reading_batches`) are dealt out (batch k to process
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


def _one_line(err: Exception) -> str:
    return " ".join(str(err).split()) or type(err).__name__


def _read_chunk(model, tokenizer, chunk: list, settings: ReadSettings, reading: tuple[int, int], on_batch,
                process_index: int, num_processes: int) -> Iterator[Reading]:
    """`read_images` of one chunk: decode, set blanks and failures aside, generate for the rest."""
    from banglaocr.data.sources import UnreadableImage, open_image

    geometry = settings.image
    errors, blanks = {}, set()
    images = ShownImages(geometry)
    for index, source in enumerate(chunk):
        try:
            image = open_image(source)
        except UnreadableImage as err:
            errors[index] = _one_line(err)
            continue
        if _is_blank(image):
            blanks.add(index)
        else:
            # Down to the model's input at once: the chunk holds small arrays, not its decoded images.
            images.add(source, resize_for_model(image, geometry), model_size(image.height, image.width, geometry))
        del image
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
            text, confidence = next(texts)
            if isinstance(text, _Unread):
                yield Reading(source=source, text=None, error=text.reason)
            elif text is None:
                yield Reading(source=source, text=None, error=NONFINITE_ERROR, nonfinite=True)
            else:
                yield Reading(source=source, text=text, confidence=confidence)


def _generate_shared(model, tokenizer, images: "ShownImages", settings: ReadSettings, reading: tuple[int, int],
                     on_batch, process_index: int, num_processes: int) -> list:
    """`generate_readings` over the processes: the batches of `reading_batches` dealt out, the (text,
    confidence) pairs gathered; an image that no longer decoded when its batch came gives `_Unread` as text."""
    batch_size, num_beams = reading
    if num_processes == 1:
        texts, confidences = generate_readings(model, tokenizer, images, settings, batch_size=batch_size,
                                               num_beams=num_beams, on_batch=on_batch, sizes=images.sizes)
        return [(images.outcome(index, text), confidence)
                for index, (text, confidence) in enumerate(zip(texts, confidences))]
    from accelerate.utils import gather_object

    batches = batches_by_size(images.sizes, batch_size)
    # Given its batches in this order, generate_texts cuts exactly the same batches again (one height's
    # batches are full but for its last one, so a process's share of them is cut the same way).
    mine = [index for batch in batches[process_index::num_processes] for index in batch]
    share = images.subset(mine)
    texts, confidences = generate_readings(model, tokenizer, share, settings, batch_size=batch_size,
                                           num_beams=num_beams, on_batch=on_batch if process_index == 0 else None,
                                           sizes=share.sizes)
    gathered = dict(gather_object([(index, (images.outcome(index, text), confidence))
                                   for index, text, confidence in zip(mine, texts, confidences)]))
    return [gathered[index] for index in range(len(images))]


HELD_MEGAPIXELS = 64.0
"""Most pixels a chunk of `read_images` holds between decoding and reading, in megapixels of images already
resized for the model (about 256 MB: Pillow holds RGB in 4 bytes a pixel). A chunk of 1,024 word crops under
an image budget (64x512 = 0.03 megapixels each) stays far below; images read at a large size (a base model's
own geometry allows up to 16 megapixels each) beyond it are decoded again when their batch comes."""


@dataclass(frozen=True)
class _Unread:
    """An image that decoded when its chunk was read, but not when its batch came (changed meanwhile)."""

    reason: str


class ShownImages(Sequence):
    """The images of one chunk as the model is shown them (resized for it as soon as decoded), in the order
    they were added: held up to `HELD_MEGAPIXELS`, the rest decoded and resized again when asked for (same
    pixels: decoding and resizing are deterministic). An image that no longer decodes then is shown as blank
    paper of its size and its error noted (`outcome` gives it instead of the text read from the paper)."""

    def __init__(self, geometry: ImageGeometry) -> None:
        self.geometry = geometry
        self._sources: list[Any] = []
        self._held: list[Image.Image | None] = []
        self._sizes: list[tuple[int, int]] = []
        self._failed: dict[int, str] = {}
        self._indices: list[int] | None = None  # a subset's positions in the whole chunk; None = all
        self.held_pixels = 0

    def add(self, source: Any, shown: Image.Image, size: tuple[int, int]) -> None:
        """One decoded image: `shown` resized for the model, `size` its model size as decoded (batch order)."""
        pixels = shown.width * shown.height
        keep = self.held_pixels + pixels <= HELD_MEGAPIXELS * 1e6
        self.held_pixels += pixels if keep else 0
        self._sources.append(source)
        self._held.append(shown if keep else None)
        self._sizes.append(size)

    def subset(self, positions: list[int]) -> "ShownImages":
        """The images at `positions` (a process's share), sharing the pixels held and the errors noted."""
        view = ShownImages.__new__(ShownImages)
        view.__dict__.update(self.__dict__)
        view._indices = [self._index(position) for position in positions]
        return view

    @property
    def sizes(self) -> list[tuple[int, int]]:
        return [self._sizes[self._index(position)] for position in range(len(self))]

    def outcome(self, index: int, text: str | None) -> "str | None | _Unread":
        """The text read for the image at chunk index `index`, or `_Unread` when it no longer decoded."""
        return _Unread(self._failed[index]) if index in self._failed else text

    def __len__(self) -> int:
        return len(self._sources) if self._indices is None else len(self._indices)

    def __getitem__(self, position):
        if isinstance(position, slice):
            return [self[i] for i in range(len(self))[position]]
        index = self._index(position)
        if self._held[index] is not None:
            return self._held[index]
        from banglaocr.data.sources import UnreadableImage, open_image

        try:
            return resize_for_model(open_image(self._sources[index]), self.geometry)
        except UnreadableImage as err:
            self._failed[index] = f"{_one_line(err)} (when read again: changed while it was read?)"
            height, width = self._sizes[index]
            return Image.new("RGB", (width, height), "white")

    def _index(self, position: int) -> int:
        if not -len(self) <= position < len(self):
            raise IndexError(position)
        return position % len(self) if self._indices is None else self._indices[position]
