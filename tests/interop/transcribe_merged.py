"""Transcribe word images with a merged model folder, the way a plain transformers user would.

    python transcribe_merged.py MODEL_DIR IMAGE [IMAGE ...]

prints one JSON object: {"texts": [...], "grids": [[t, h, w], ...], "versions": {...},
"processor": {...}}. It imports only torch, transformers, Pillow and numpy - never banglaocr -
so it proves the folder is usable on its own (tests/test_merge.py runs it in a second virtualenv
that has torchvision, which `AutoProcessor` needs for Qwen3-VL).

What comes from the folder: the model (`AutoModelForImageTextToText`), the processor
(`AutoProcessor`: tokenizer, chat template, image processor), the generation settings
(`generation_config.json`: greedy, stop at <|im_end|>, max_new_tokens), and the prompt and image
budget from `banglaocr.json`, read as plain JSON.

Why the script resizes the images itself: banglaocr shows the model every word crop at a FIXED
HEIGHT (the budget: optional tight crop to the ink, height H, width scaled by the aspect ratio
times `stretch`, rounded to whole 32-pixel visual tokens, clamped to [min_width, max_width]).
Qwen's image processor (`smart_resize`) cannot express that: it keeps the aspect ratio and scales
the AREA into [min_pixels, max_pixels], so the height it picks depends on each crop's size, and no
stretch or crop exists there. No min/max pixel setting reproduces the budget for crops of varying
size. What the folder's preprocessor_config.json does guarantee (min_pixels = H x min_width,
max_pixels = H x max_width) is that a crop already at budget size passes through the processor
unchanged. So a user resizes to the budget (the dozen lines of `resize_to_budget` below, which
mirror banglaocr's) and hands the result to the processor.

Example:

    python tests/interop/transcribe_merged.py runs/cpu_lora/merged scans/word1.png scans/word2.png
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
import transformers
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB, with transparency composited onto white paper."""
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")
    return image.convert("RGB")


def ink_box(image: Image.Image) -> tuple[int, int, int, int] | None:
    """The ink's bounding box plus a margin of 8% of its height (at least 2 px); None when blank."""
    gray = np.asarray(image.convert("L"), dtype=np.int16)
    paper, ink = int(np.percentile(gray, 90)), int(np.percentile(gray, 1))
    if paper - ink < 24:
        return None
    mask = gray < (paper + ink) / 2
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    top, bottom, left, right = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    margin = max(2, round(0.08 * (bottom - top)))
    return (max(0, left - margin), max(0, top - margin),
            min(image.width, right + margin), min(image.height, bottom + margin))


def resize_to_budget(image: Image.Image, budget: dict) -> Image.Image:
    """Height = budget height; width from the aspect ratio x stretch, in whole 32-pixel tokens, clamped."""
    image = to_rgb(image)
    if budget.get("tight_crop"):
        box = ink_box(image)
        if box is not None:
            image = image.crop(box)
    scaled = image.width * budget["height"] / max(image.height, 1) * budget.get("stretch", 1.0)
    width = int(min(budget["max_width"], max(budget["min_width"], round(scaled / 32) * 32)))
    if image.size == (width, budget["height"]):
        return image
    return image.resize((width, budget["height"]), Image.Resampling.BICUBIC)


@torch.no_grad()
def transcribe(model_dir: Path, image_paths: list[Path]) -> dict:
    settings = json.loads((model_dir / "banglaocr.json").read_text(encoding="utf-8"))
    processor = AutoProcessor.from_pretrained(model_dir)
    model = AutoModelForImageTextToText.from_pretrained(model_dir).eval()
    texts, grids = [], []
    for path in image_paths:
        image = resize_to_budget(Image.open(path), settings["image"])
        messages = [{"role": "user", "content": [{"type": "image", "image": image},
                                                 {"type": "text", "text": settings["prompt"]}]}]
        inputs = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                               return_dict=True, return_tensors="pt")
        output = model.generate(**inputs)  # greedy, stops at <|im_end|>: the folder's generation_config.json
        new_tokens = output[0, inputs["input_ids"].shape[1]:]
        texts.append(processor.decode(new_tokens, skip_special_tokens=True))
        grids.append(inputs["image_grid_thw"][0].tolist())
    return {
        "texts": texts,
        "grids": grids,
        "processor": {"class": type(processor).__name__,
                      "image_processor": type(processor.image_processor).__name__,
                      "video_processor": type(processor.video_processor).__name__},
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        "dtype": str(model.dtype),
        "banglaocr_imported": "banglaocr" in sys.modules,
    }


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    result = transcribe(Path(argv[0]), [Path(p) for p in argv[1:]])
    print(json.dumps(result, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
