"""Model cards: the README.md that makes a model folder ready to upload to the Hugging Face hub as it is.

`best/`, `final/` (training) and `merge-lora`'s output get one: YAML metadata the hub reads (language bn,
base model, library, pipeline tag, tags, the evaluation results) and a page with what the model is, how
it was trained (the resolved recipe), its scores, the confusion heatmap when there is one, and how to
use it without banglaocr. `merge-lora` carries the adapter's card over (scores and heatmap included).

How to use it without banglaocr is `READ_SNIPPET`: a script that runs as it stands from inside the
folder with plain transformers (and peft for an adapter), prints `path<TAB>reading` per image - what
`banglaocr predict` prints (tests/test_model_card_snippet.py runs it on 20 images, adapter and merged
folder) - and so shows what any other reader must do: resize each crop to banglaocr's budget FIRST
(Qwen's image processor keeps the area, not the height, so left to itself it shows the model other
pixels), prompt with the training prompt, decode greedily up to `<|im_end|>`. The resize is inlined
(a dozen lines mirroring `data.pixels.resize_to_budget`) rather than shipped as a module beside the
weights: the card is then all a reader needs, it works in a notebook cell as well as in a file, and
nothing executable but the snippet itself travels with the folder.

>>> import tempfile, pathlib
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> card = write_model_card(folder, base_model="Qwen/Qwen3-VL-2B-Instruct", kind="adapter",
...                         metrics={"val_cer": 0.0812, "step": 3000}, recipe_yaml="train:\\n  lr: 0.0001\\n")
>>> text = card.read_text(); text.startswith("---\\nlanguage:\\n- bn\\n"), "base_model: Qwen/Qwen3-VL-2B-Instruct" in text
(True, True)
"""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from banglaocr.files import atomic_write

CARD = "README.md"
READ_SNIPPET = r'''# Read word images with this model folder and plain transformers - no banglaocr needed. Save as
# read_words.py, then from inside this folder: python read_words.py scan1.png scan2.png ...
# It prints one "path<TAB>reading" line per image: what `banglaocr predict` prints for it.
# Needs torch, transformers >= 5, torchvision, pillow, numpy; peft too for an adapter folder.
import json
import sys
import unicodedata
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from transformers import AutoModelForImageTextToText, AutoProcessor, GenerationConfig

FOLDER = Path(".")  # this model folder (run from inside it, or put its path here)
SETTINGS = json.loads((FOLDER / "banglaocr.json").read_text(encoding="utf-8"))  # image budget + prompt


def load_image(path):
    """Upright RGB, transparency on white paper (as banglaocr decodes an image file)."""
    image = ImageOps.exif_transpose(Image.open(path))
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        image = Image.alpha_composite(Image.new("RGBA", image.size, "white"), image.convert("RGBA"))
    return image.convert("RGB")


def ink_box(image):
    """The ink's bounding box plus a margin of 8% of its height (at least 2 px); None: no ink."""
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


def resize(image, budget):
    """banglaocr's image budget: crop to the ink (tight_crop), height = budget height, width = aspect
    ratio x stretch in whole 32-pixel visual tokens, clamped. Qwen's own resize keeps the AREA instead,
    so the processor must get the crop at this size (which it then leaves as it is)."""
    box = ink_box(image) if budget["tight_crop"] else None
    if box is not None:
        image = image.crop(box)
    width = round(image.width * budget["height"] / max(image.height, 1) * budget["stretch"] / 32) * 32
    width = int(min(budget["max_width"], max(budget["min_width"], width)))
    if image.size == (width, budget["height"]):
        return image
    return image.resize((width, budget["height"]), Image.Resampling.BICUBIC)


def normalize(text):
    """banglaocr's normal form of Bangla text: NFC, precomposed nukta letters, khanda ta, danda, one space."""
    text = unicodedata.normalize("NFC", text.replace("\u200b", "").replace("\ufeff", ""))
    text = text.replace("\u09a4\u09cd\u200d", "\u09ce").replace("\u200c", "").replace("\u200d", "")
    text = unicodedata.normalize("NFC", text)
    for base, letter in (("\u09af", "\u09df"), ("\u09a1", "\u09dc"), ("\u09a2", "\u09dd")):
        text = text.replace(base + "\u09bc", letter)
    return " ".join(text.replace("|", "\u0964").replace("\u0964\u0964", "\u0965").split())


device = "cuda" if torch.cuda.is_available() else "cpu"
dtype = torch.bfloat16 if device == "cuda" and torch.cuda.is_bf16_supported(including_emulation=False) \
    else torch.float32  # float32 on the CPU (as banglaocr predict) and on GPUs without bf16 (a T4)
processor = AutoProcessor.from_pretrained(FOLDER)
if (FOLDER / "adapter_config.json").is_file():  # a LoRA adapter: load its base, then the adapter on it
    from peft import PeftModel

    base = json.loads((FOLDER / "adapter_config.json").read_text(encoding="utf-8"))["base_model_name_or_path"]
    base = FOLDER / base if (FOLDER / base / "config.json").is_file() else base  # a folder inside, or a hub id
    model = PeftModel.from_pretrained(AutoModelForImageTextToText.from_pretrained(base, dtype=dtype), FOLDER)
else:
    model = AutoModelForImageTextToText.from_pretrained(FOLDER, dtype=dtype)
model = model.to(device).eval()
generation = GenerationConfig.from_pretrained(FOLDER)  # greedy, max_new_tokens, stop at <|im_end|>


@torch.no_grad()
def read(path):
    image = load_image(path)
    if ink_box(image) is None and ink_box(ImageOps.invert(image)) is None:
        return ""  # no ink: banglaocr does not ask the model, which would invent a word
    messages = [{"role": "user", "content": [{"type": "image", "image": resize(image, SETTINGS["image"])},
                                             {"type": "text", "text": SETTINGS["prompt"]}]}]
    inputs = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                           return_dict=True, return_tensors="pt").to(device)
    output = model.generate(**inputs, generation_config=generation)
    return normalize(processor.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True))


for path in sys.argv[1:]:
    print(f"{path}\t{read(path)}")
'''
"""The card's "Use" script (verbatim in every card): reads word images with plain transformers."""
HEATMAP = "confusion_heatmap.png"
METRIC_NAMES = {"val_cer": "validation CER", "val_wer": "validation WER", "test_cer": "test CER",
                "test_wer": "test WER", "test_exact_match": "test exact match", "step": "optimizer step"}


def _metadata(base_model: str | None, kind: str, metrics: dict) -> dict:
    meta = {
        "language": ["bn"],
        "library_name": "peft" if kind == "adapter" else "transformers",
        "pipeline_tag": "image-text-to-text",
        "tags": ["ocr", "bangla", "bengali", "handwriting-recognition", "qwen3-vl", "banglaocr"],
    }
    if base_model and not Path(base_model).is_absolute():
        meta["base_model"] = base_model  # a hub id or a shipped name; a local path means nothing on the hub
    results = [{"type": {"cer": "cer", "wer": "wer"}[key.split("_")[1]], "value": round(float(value), 4),
                "name": METRIC_NAMES[key]}
               for key, value in metrics.items() if key in ("val_cer", "val_wer", "test_cer", "test_wer")
               and value is not None]
    if results:
        meta["model-index"] = [{"name": "banglaocr", "results": [{
            "task": {"type": "image-to-text", "name": "Bangla handwritten word recognition"},
            "metrics": results}]}]
    return meta


def write_model_card(folder: Path, base_model: str | None, kind: str, metrics: dict | None = None,
                     recipe_yaml: str | None = None, heatmap: Path | None = None) -> Path:
    """Write `folder/README.md` (and copy `heatmap` beside it). `kind`: `adapter`, `full` or `merged`."""
    folder, metrics = Path(folder), {k: v for k, v in (metrics or {}).items() if v is not None}
    if heatmap is not None and Path(heatmap).is_file() and Path(heatmap).resolve() != (folder / HEATMAP).resolve():
        shutil.copy2(heatmap, folder / HEATMAP)
    what = {"adapter": "a LoRA adapter", "full": "a fully fine-tuned model", "merged": "a merged model (LoRA "
            "adapter merged into its base)"}[kind]
    lines = ["---", yaml.safe_dump(_metadata(base_model, kind, metrics), sort_keys=False, allow_unicode=True).rstrip(),
             "---", "", "# Bangla handwritten word reader", "",
             f"Qwen3-VL fine-tuned by [banglaocr](https://pypi.org/project/banglaocr/) to read one handwritten "
             f"Bangla word per image: {what}" + (f" on `{base_model}`." if base_model else "."), "",
             "The answer is the word in Unicode Bangla (normalised: NFC, precomposed য়/ড়/ঢ়, ৎ)."]
    if metrics:
        lines += ["", "## Scores", "", "| metric | value |", "| --- | --- |"]
        lines += [f"| {METRIC_NAMES.get(key, key)} | {value:.4f} |" if isinstance(value, float) else
                  f"| {METRIC_NAMES.get(key, key)} | {value} |" for key, value in metrics.items()]
        lines += ["", "CER/WER from real generation (greedy), not teacher forcing."]
    if (folder / HEATMAP).is_file():
        lines += ["", "## Confusions", "", f"![which characters it confuses]({HEATMAP})"]
    lines += _use_section(base_model, kind)
    if recipe_yaml:
        lines += ["", "## Training recipe", "", "```yaml", recipe_yaml.rstrip(), "```"]
    card = folder / CARD
    text = "\n".join(lines) + "\n"
    # Whole or not at all: best/'s card is rewritten in place at the end of a run (a full disk must not
    # leave it empty).
    atomic_write(card, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return card


def _use_section(base_model: str | None, kind: str) -> list[str]:
    """The card's "Use" section: banglaocr's commands, the plain-transformers script, serving."""
    from banglaocr.model.shipped import SHIPPED_MODELS

    lines = ["", "## Use", "",
             "With banglaocr: `banglaocr predict --model <this folder> scans/*.png` (it reads `banglaocr.json`: the "
             "image budget and prompt the model was trained with); in Python, `banglaocr.prepare_image(path, "
             "\"<this folder>\")` gives the exact pixels and prompt for any other reader.", "",
             "Without banglaocr: Qwen's image processor resizes by AREA, while this model was trained at a FIXED "
             "HEIGHT (`banglaocr.json`: height, width range, stretch, tight crop), so each crop is resized to that "
             "size first - the folder's `preprocessor_config.json` then leaves it as it is. Save this as "
             "`read_words.py` in this folder and run `python read_words.py scans/*.png` from inside it: one "
             "`path<TAB>reading` line per image, what `banglaocr predict` prints (16-bit greyscale scans: "
             "convert them to 8 bits first).", "", "```python", READ_SNIPPET.rstrip(), "```"]
    if kind == "adapter" and base_model in SHIPPED_MODELS:
        lines += ["", f"The base `{base_model}` ships inside banglaocr (`banglaocr/models/{SHIPPED_MODELS[base_model]}/` "
                  f"of the installed package): without banglaocr, copy that folder here as `{base_model}/` "
                  "and the script finds it."]
    lines += ["", "Serving with vLLM: send the resized crop (`banglaocr.prepare_image`, or `resize` above), the same "
              "prompt, greedy decoding, stop at `<|im_end|>` - banglaocr's docs/serving.md has the code."]
    return lines


def card_metrics(folder: Path) -> dict:
    """The CER/WER results a banglaocr model card in `folder` states ({} when there is none)."""
    card = Path(folder) / CARD
    if not card.is_file():
        return {}
    text = card.read_text(encoding="utf-8")
    if not text.startswith("---\n") or "\n---\n" not in text[4:]:
        return {}
    try:
        meta = yaml.safe_load(text[4:text.index("\n---\n", 4)]) or {}
        found = meta["model-index"][0]["results"][0]["metrics"]
    except (yaml.YAMLError, KeyError, IndexError, TypeError):
        return {}
    names = {name: key for key, name in METRIC_NAMES.items()}
    return {names[m["name"]]: m["value"] for m in found if m.get("name") in names}


def write_training_card(folder: Path, recipe, base_model: str | None, is_adapter: bool, metrics: dict | None,
                        confusion: dict | None = None) -> Path:
    """The card of a model folder a training run writes (best/, final/): base, scores, the resolved recipe, and
    - when `confusion` (a `ConfusionStats.to_dict()` of the last validation) is given - its heatmap beside it;
    None keeps the heatmap the folder already has."""
    from banglaocr.config import recipe_to_yaml

    heatmap = None
    if confusion:
        from banglaocr.confusion import ConfusionStats
        from banglaocr.report import report_from_stats, write_heatmap

        heatmap = write_heatmap(report_from_stats(ConfusionStats.from_dict(confusion)), Path(folder) / HEATMAP)
    return write_model_card(folder, base_model, "adapter" if is_adapter else "full", metrics,
                            recipe_to_yaml(recipe), heatmap)
