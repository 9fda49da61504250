"""Model cards: the README.md that makes a model folder ready to upload to the Hugging Face hub as it is.

`best/`, `final/` (training) and `merge-lora`'s output get one: YAML metadata the hub reads (language bn,
base model, library, pipeline tag, tags, the evaluation results) and a page with what the model is, how
it was trained (the resolved recipe), its scores, the confusion heatmap when there is one, and how to
use it without banglaocr. `merge-lora` carries the adapter's card over (scores and heatmap included).

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

CARD = "README.md"
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
    lines += ["", "## Use", "", "```python", "from transformers import AutoModelForImageTextToText, AutoTokenizer",
              'model = AutoModelForImageTextToText.from_pretrained("<this folder or hub id>")',
              'tokenizer = AutoTokenizer.from_pretrained("<this folder or hub id>")',
              "```", "", "or `banglaocr predict --model <this folder> scans/*.png` (it reads `banglaocr.json`: the "
              "image budget and prompt the model was trained with)."]
    if recipe_yaml:
        lines += ["", "## Training recipe", "", "```yaml", recipe_yaml.rstrip(), "```"]
    card = folder / CARD
    card.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return card


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
