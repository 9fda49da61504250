"""Batched generation: word images -> normalised Bangla text. Used by train-time eval, `eval`, `predict`.

Images are resized to the model's image budget, batched in order of width (less padding, so
fewer wasted visual tokens), prompts are LEFT-padded (generation appends on the right), decoding
is greedy unless `num_beams > 1`, generation stops at `<|im_end|>`, and the text goes through the
same normaliser as the labels. Results come back in input order.

A model folder written by banglaocr carries `banglaocr.json` (`ReadSettings`: image budget,
prompt, `max_new_tokens`), so eval / predict read images exactly the way training showed them.

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
from typing import Any, Callable

import torch
from PIL import Image

from banglaocr.config import DataConfig, ImageConfig
from banglaocr.data.collate import Collator, finish_batch_on_device
from banglaocr.data.pixels import budget_width, resize_to_budget
from banglaocr.model.tokenizers import special_token_ids
from banglaocr.text import normalize

SETTINGS_FILE = "banglaocr.json"


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
    """Write `banglaocr.json` and a `preprocessor_config.json` that does not upscale word crops.

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
