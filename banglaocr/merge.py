"""merge-lora: fold a LoRA adapter into its base and save a plain transformers model folder, checked.

`merge_lora` loads the base (float32) with the adapter, computes the logits of a probe batch (a
few rendered word images through the training collator), merges (`merge_and_unload`), saves the
merged model in the requested dtype into a temporary folder, loads that folder back with plain
`AutoModelForImageTextToText` and compares its logits with the adapter's. Only when the largest
difference is within tolerance is the folder renamed into place; otherwise it is deleted and a
`UserError` says by how much the check failed. A folder at `out_dir` is therefore always a
complete, checked merge (its `merge.json` holds the numbers).

The merged folder:

    config.json, generation_config.json     greedy, stops at <|im_end|>, max_new_tokens from banglaocr.json
                                            (`infer.save_read_settings`: every banglaocr model folder has it)
    model.safetensors                       every weight in `dtype`
    tokenizer.json, tokenizer_config.json, chat_template.jinja
    preprocessor_config.json                image processor that keeps budget-sized word crops as they are
                                            (it cannot resize to the budget: `banglaocr.prepare_image` does)
    video_preprocessor_config.json          so AutoProcessor builds Qwen3-VL's own video processor
    banglaocr.json                          image budget, prompt, max_new_tokens (copied from the adapter)
    recipe.yaml                             the training recipe, when the adapter folder has one
    merge.json                              the check: max |logits difference|, tolerance, dtype, sources
    README.md                               model card (scores carried over; a snippet that reads with plain
                                            transformers, no banglaocr needed)

Tolerance (on max |merged - adapter| over the probe logits, relative to the logits' scale
`max(1, max |adapter logits|)`): the reference is always the float32 adapter model.

| dtype    | tolerance | why (measured on the tiny test models: max diff / scale) |
| -------- | --------- | --- |
| float32  | 1e-4      | merging only re-associates float32 sums (W x + s B A x vs (W + s B A) x): 1e-7 to 3e-6 |
| float16  | 2e-2      | ~40 x fp16's unit roundoff (4.9e-4), rounding every weight and activation: 2.4e-3 |
| bfloat16 | 1e-1      | ~25 x bf16's unit roundoff (3.9e-3), same reasoning with 8-bit mantissas: 4.3e-3 |

Half-precision logits of deep models typically sit within about 1% of the logit scale of their
float32 version (more for bf16 than fp16); the half limits leave room for that on a 28-layer model
while still catching what matters there - overflow (non-finite logits always fail; the Qwen3-VL
vision MLP is known to exceed the fp16 range) and broken weights (differences of the order of the
scale). Exactness is checked separately and always at the float32 tolerance: the merged float32
model in memory against the adapter (`merge_max_abs_diff`), so a wrong merge (adapters lost, a
wrong scale) cannot hide inside the half-precision allowance.

`adapter_dir` may be an adapter folder (`adapter_config.json` inside; a training checkpoint's
`model/` is one) or a training output folder, whose `best/` (else `final/`) adapter is used.

>>> merge_lora("/no/such/folder", "/tmp/merged")
Traceback (most recent call last):
...
banglaocr.errors.UserError: adapter folder not found: /no/such/folder
"""

from __future__ import annotations

import gc
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from banglaocr.errors import UserError, first_line

DTYPES = ("float32", "float16", "bfloat16")

TOLERANCES = {"float32": 1e-4, "float16": 2e-2, "bfloat16": 1e-1}
"""Allowed max |merged - adapter| logits difference, relative to max(1, max |adapter logits|)."""

MERGE_TOLERANCE = TOLERANCES["float32"]
"""Allowed difference of the float32 merge itself (before the cast to the output dtype)."""

PROBE_WORDS = ("কলম", "বাংলা", "আমার", "পরীক্ষা")
"""Words of the probe batch: short and long, with a conjunct and vowel signs."""

REPORT_FILE = "merge.json"

# --------------------------------------------------------------------------- inputs


def tolerance(dtype: str) -> float:
    """The relative logits tolerance of a merged model saved in `dtype` (table in the module docstring).

    >>> tolerance("float32"), tolerance("bfloat16")
    (0.0001, 0.1)
    """
    if dtype not in TOLERANCES:
        raise UserError(f"--dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    return TOLERANCES[dtype]


def _check_out_dir(out: Path, adapter: Path, base: str | None, force: bool) -> None:
    """The output policy for a model folder (`output_policy.claim_model_folder`): never over the adapter,
    the base or a folder holding them, the current or home folder; an existing folder only with `force`."""
    from banglaocr.model.factory import adapter_base
    from banglaocr.output_policy import claim_model_folder

    try:
        named_base = base or adapter_base(adapter)
    except (OSError, ValueError, UserError):
        named_base = None  # loading the adapter says what is wrong with it
    claim_model_folder(out, "merge-lora", {"adapter": adapter, "base": Path(named_base) if named_base else None},
                       overwrite=force, is_ours=lambda folder: (folder / REPORT_FILE).is_file())


def probe_images(count: int = len(PROBE_WORDS)) -> list:
    """Word images for the logits check: bundled fonts, fixed seeds (the same images on every run).

    >>> [image.mode for image in probe_images(2)]
    ['RGB', 'RGB']
    """
    import numpy as np
    from PIL import Image, ImageDraw, features

    from banglaocr.data.synth import bundled_fonts, render_word, sample_rng

    words = [PROBE_WORDS[i % len(PROBE_WORDS)] for i in range(count)]
    if features.check("raqm"):
        fonts = bundled_fonts()
        return [render_word(word, fonts[i % len(fonts)], sample_rng(20260, i)) for i, word in enumerate(words)]
    # Without RAQM Bangla cannot be shaped; a numeric check needs ink, not correct glyphs.
    images = []
    for i in range(count):
        rng = np.random.default_rng(i)
        image = Image.new("RGB", (int(rng.integers(80, 200)), int(rng.integers(30, 60))), "white")
        draw = ImageDraw.Draw(image)
        for _ in range(8):
            draw.line([tuple(map(int, rng.integers(0, image.size))) for _ in range(3)], fill="black", width=2)
        images.append(image)
    return images


def probe_batch(tokenizer, settings) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Model inputs of the probe words (training format: prompt + image + answer) and the mask of real tokens.

    >>> from banglaocr.model.tokenizers import build_char_tokenizer
    >>> from banglaocr.infer import default_read_settings
    >>> inputs, mask = probe_batch(build_char_tokenizer(), default_read_settings())
    >>> sorted(inputs) == sorted(["input_ids", "attention_mask", "mm_token_type_ids", "pixel_values",
    ...                           "image_grid_thw"]), int(mask.sum()) == int(inputs["attention_mask"].sum())
    (True, True)
    """
    from banglaocr.data.collate import Collator, finish_batch_on_device
    from banglaocr.data.pixels import resize_to_budget
    from banglaocr.text import normalize

    collate = Collator(tokenizer, settings.prompt, train=True)
    samples = [{"image": resize_to_budget(image, settings.image), "text": normalize(word)}
               for image, word in zip(probe_images(), PROBE_WORDS)]
    batch = collate(samples)
    return finish_batch_on_device(batch, "cpu"), batch["attention_mask"].bool()


@torch.no_grad()
def masked_logits(model, inputs: dict[str, torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
    """float32 logits at the real (unpadded) positions of `inputs`: [tokens, vocab].

    Example: `masked_logits(model, *probe_batch(tokenizer, settings))` (the model is put in eval mode).
    """
    model.eval()
    return model(**inputs).logits.float()[mask]


def _max_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    # NaN compares False against any limit: report it as infinite so the check fails.
    if not (torch.isfinite(a).all() and torch.isfinite(b).all()):
        return float("inf")
    return float((a - b).abs().max())


# --------------------------------------------------------------------------- loading


def _load_adapter_model(folder: Path, base: str | None):
    """(PeftModel in float32, tokenizer, base it was loaded from)."""
    from transformers import AutoTokenizer

    from banglaocr.config import ModelConfig
    from banglaocr.model.factory import adapter_base, attach_saved_adapter, load_model
    from banglaocr.model.folder_check import check_model_folder, check_tokenizer_fits, tokenizer_problem

    # One clear line for any file of the adapter folder that asks for code or lies (adapter_config.json,
    # adapter_model.safetensors, tokenizer, read settings), and of the base it names unless --base replaces it,
    # before the factory or peft meets it. Without adapter weights peft would look for the folder on the hub;
    # pickled .bin adapters are refused (DESIGN: safetensors only).
    check_model_folder(folder, with_base=base is None)
    try:
        if base is None:
            # The factory finds the base the adapter names (a hub id, a folder, or the tiny base/ inside).
            loaded = load_model(ModelConfig(name_or_path=str(folder), dtype="float32"), None)
            return loaded.model, loaded.tokenizer, adapter_base(folder)
        if (Path(base).expanduser() / "adapter_config.json").is_file():
            raise UserError(f"--base {base} is an adapter folder; --base takes a full model (hub id or folder)")
        loaded = load_model(ModelConfig(name_or_path=base, dtype="float32"), None)
        model = attach_saved_adapter(loaded.model, folder, trainable=False)
        tokenizer = loaded.tokenizer
        if (folder / "tokenizer_config.json").is_file():  # the tokenizer the adapter was trained with
            try:
                tokenizer = AutoTokenizer.from_pretrained(str(folder), trust_remote_code=False)
            except Exception as err:  # noqa: BLE001 - tokenizers raises plain Exceptions for broken files
                problem = tokenizer_problem(folder) or f"{type(err).__name__}: {first_line(err)}"
                raise UserError(f"cannot load the tokenizer of {folder}: {problem}") from None
            check_tokenizer_fits(loaded.config, tokenizer, str(folder))
        return model, tokenizer, base
    except UserError:
        raise
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        # A broken adapter folder or a base it does not fit is bad input, not a bug here.
        lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()] or [type(err).__name__]
        mismatch = next((line for line in lines if line.startswith("size mismatch")), None)
        if mismatch is not None:
            raise UserError(f"cannot load the adapter in {folder}: it does not fit the base model ({mismatch[:300]}); "
                            "is the base the model it was trained on?") from None
        raise UserError(f"cannot load the adapter in {folder}: {lines[0]}") from None


def _check_adapter_loaded(model, folder: Path) -> int:
    """Every tensor of the adapter file is in the model, with its saved value; returns the number of
    LoRA-wrapped layers. peft only warns about adapter keys that found no place, and a merge of an
    adapter that did not load would pass the logits check (both sides lack it)."""
    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import load_file

    saved = load_file(str(folder / "adapter_model.safetensors"))
    # The model's adapter state under the names peft saves it with (adapter name removed).
    live = get_peft_model_state_dict(model, save_embedding_layers=False)
    for key, tensor in saved.items():
        if key not in live or not torch.equal(live[key].float(), tensor.float()):
            raise UserError(f"the adapter in {folder} does not fit its base model ({key} "
                            f"{'has no place in it' if key not in live else 'did not load'}): pass the right --base")
    return sum(1 for name, _ in model.named_modules() if name.endswith(".lora_A"))


# --------------------------------------------------------------------------- merge


def _write_side_files(tmp: Path, adapter: Path, tokenizer, settings) -> None:
    from banglaocr.infer import save_read_settings

    tokenizer.save_pretrained(str(tmp))  # tokenizer.json, tokenizer_config.json, chat_template.jinja
    # banglaocr.json, preprocessor_config.json, and generation_config.json in place of the base's: greedy,
    # stopping at <|im_end|> only, so a plain `model.generate(**inputs)` transcribes like `banglaocr predict`.
    save_read_settings(tmp, settings, tokenizer=tokenizer)
    if (adapter / "recipe.yaml").is_file():
        shutil.copy2(adapter / "recipe.yaml", tmp / "recipe.yaml")


def _write_card(tmp: Path, adapter: Path, base_name: str | None) -> None:
    """The merged folder's model card: the adapter's scores and confusion heatmap carried over."""
    from banglaocr.model_card import HEATMAP, card_metrics, write_model_card

    recipe = adapter / "recipe.yaml"
    write_model_card(tmp, base_name, "merged", card_metrics(adapter),
                     recipe.read_text(encoding="utf-8") if recipe.is_file() else None, adapter / HEATMAP)


def _save_merged(merged, folder: Path, dtype: str, tokenizer, settings, adapter: Path) -> None:
    """The merged model in `dtype`, with generation config, tokenizer, processor files and read settings."""
    from banglaocr.infer import generation_config

    merged = merged.to(getattr(torch, dtype))
    for key in merged.config.sub_configs:  # config.json states one dtype throughout
        if getattr(merged.config, key, None) is not None:
            getattr(merged.config, key).dtype = getattr(torch, dtype)
    # The base's may sample; save_pretrained validates and writes it before _write_side_files replaces it.
    merged.generation_config = generation_config(tokenizer, settings.max_new_tokens)
    merged.save_pretrained(str(folder), safe_serialization=True)
    _write_side_files(folder, adapter, tokenizer, settings)


def merge_lora(adapter_dir: str | Path, out_dir: str | Path, base: str | None = None, dtype: str = "float32",
               force: bool = False) -> dict[str, Any]:
    """Merge the adapter into its base, save a checked full model folder at `out_dir`; return the report.

    `adapter_dir` is an adapter folder or a training output folder (its best/, else final/).
    `base` overrides the base the adapter names (hub id or folder). `dtype` is the saved weight
    dtype (float32, float16 or bfloat16). An existing `out_dir` is replaced only with `force`.
    The report holds `max_abs_diff` (saved merged model vs adapter logits), `merge_max_abs_diff`
    (the float32 merge alone), `tolerance` (absolute, already scaled), `logit_scale`,
    `probe_tokens`, `lora_layers`, `read_settings` ("copied" or "default"), and the paths.

    Example (the tiny adapter of a training run):

        report = merge_lora("runs/cpu_lora/best", "runs/cpu_lora/merged")
        report["max_abs_diff"] <= report["tolerance"]   # always: otherwise it raised UserError
    """
    from transformers import AutoModelForImageTextToText

    from banglaocr.files import commit_folder, fresh_tmp_folder, write_json
    from banglaocr.infer import default_read_settings, load_read_settings, resolve_adapter_folder

    started = time.perf_counter()
    rel_tol = tolerance(dtype)
    adapter = resolve_adapter_folder(adapter_dir)
    out = Path(out_dir).expanduser()
    _check_out_dir(out, adapter, base, force)
    out.parent.mkdir(parents=True, exist_ok=True)

    model, tokenizer, base_name = _load_adapter_model(adapter, base)
    lora_layers = _check_adapter_loaded(model, adapter)
    stored = load_read_settings(adapter)
    settings = stored if stored is not None else default_read_settings()
    inputs, mask = probe_batch(tokenizer, settings)
    reference = masked_logits(model, inputs, mask)
    scale = max(1.0, float(reference.abs().max()))

    try:
        merged = model.merge_and_unload(safe_merge=True)  # safe_merge: refuse NaN weights
    except ValueError as err:
        raise UserError(f"merging {adapter} failed: {err}") from None
    merge_diff = _max_abs_diff(masked_logits(merged, inputs, mask), reference)
    if merge_diff > MERGE_TOLERANCE * scale:
        raise UserError(f"the merged float32 model does not reproduce the adapter: max |logits difference| "
                        f"{merge_diff:.3g} > {MERGE_TOLERANCE * scale:.3g}; nothing was written")

    tmp = fresh_tmp_folder(out)
    try:
        _save_merged(merged, tmp, dtype, tokenizer, settings, adapter)
        _write_card(tmp, adapter, base_name)
        del model, merged
        gc.collect()

        # The check runs on what was written, loaded the way any transformers user loads it.
        reloaded = AutoModelForImageTextToText.from_pretrained(str(tmp), dtype="auto", trust_remote_code=False)
        if reloaded.dtype != getattr(torch, dtype):
            raise UserError(f"the saved model loads as {reloaded.dtype}, expected {dtype}")
        diff = _max_abs_diff(masked_logits(reloaded, inputs, mask), reference)
        del reloaded
        limit = rel_tol * scale
        report = {
            "out_dir": str(out), "adapter_dir": str(adapter), "base": base_name, "dtype": dtype,
            "max_abs_diff": diff, "tolerance": limit, "merge_max_abs_diff": merge_diff,
            "logit_scale": scale, "probe_tokens": int(mask.sum()), "lora_layers": lora_layers,
            "read_settings": "copied" if stored is not None else "default",
        }
        if not diff <= limit:
            raise UserError(f"the merged model saved in {dtype} does not reproduce the adapter: max |logits "
                            f"difference| {diff:.3g} > tolerance {limit:.3g} (non-finite = overflow); "
                            f"nothing was written to {out}" + (" - try --dtype float32 (bfloat16 on GPUs that have it, not a T4)"
                                                                 if dtype == "float16" else ""))
        report["seconds"] = round(time.perf_counter() - started, 2)
        write_json(tmp / REPORT_FILE, report)
    except BaseException:
        # A failed check leaves nothing behind: a folder at out_dir is always a checked merge.
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    commit_folder(tmp, out)
    return report
