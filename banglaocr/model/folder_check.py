"""Check a model folder before anything loads it: no code from data, no file that lies.

A model folder may come from anyone. transformers and peft trust what they read: an `auto_map` in
config.json makes transformers import the folder's own Python (or ask on stdin whether it may), a
safetensors header that lies about sizes fails deep inside the reader, a missing weight is silently
initialised at random, a config with a wrong field crashes the first forward. `check_model_folder`
reads the files banglaocr relies on - cheaply: the small JSON files, each safetensors file's 8-byte
length and JSON header against the file's size, the model the config describes built on the meta
device - and turns the first problem into one `UserError` line that names the file and what is wrong.

- `forbid_remote_code_prompt()`: transformers never asks "Do you wish to run the custom code?"
  (it would read stdin); where it would, it raises instead. Applied when this module is imported.
- `check_model_folder(folder, trust_remote_code)`: a full model folder, or an adapter folder and
  the local base it names.
- `check_recipe_model(model_cfg)`: the folder a training recipe names, before the run starts.
- `check_safetensors(path)`: a safetensors file's header against its size.
- `refuse_incomplete_load(info, folder)`, `check_tokenizer_fits(config, tokenizer, where)`: after loading.

>>> check_model_folder("/no/such/folder")
Traceback (most recent call last):
...
banglaocr.errors.UserError: model folder not found: /no/such/folder
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import Any

from banglaocr.errors import UserError, first_line

SMALL_FILE_BYTES = 16 * 2**20
"""Largest JSON side file read (config, generation config, settings, adapter config, shard index)."""
SAFETENSORS_HEADER_BYTES = 100 * 2**20
"""safetensors' own limit on the JSON header."""
QWEN3_VL = "qwen3_vl"
WEIGHTS = "model.safetensors"
WEIGHTS_INDEX = "model.safetensors.index.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
PICKLED_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json", "adapter_model.bin")
_DTYPE_BITS = {"BOOL": 8, "U8": 8, "I8": 8, "F8_E4M3": 8, "F8_E5M2": 8, "F8_E8M0": 8, "I16": 16, "U16": 16,
               "F16": 16, "BF16": 16, "I32": 32, "U32": 32, "F32": 32, "I64": 64, "U64": 64, "F64": 64}
_TOKEN_ID_KEYS = {"image_token_id": "image_pad", "video_token_id": "video_pad",
                  "vision_start_token_id": "vision_start", "vision_end_token_id": "vision_end"}


def forbid_remote_code_prompt() -> None:
    """Make transformers raise where it would ask on stdin whether to run a model's own code.

    transformers asks only when `trust_remote_code` is None (banglaocr passes it explicitly everywhere);
    with its timeout at 0 the same call raises a ValueError instead of reading a keypress, so a path
    that forgot to pass it still runs nothing.
    """
    from transformers import dynamic_module_utils

    dynamic_module_utils.TIME_OUT_REMOTE_CODE = 0


def code_refusal(path: Path, what: str) -> UserError:
    """The one line for a folder that needs its own code to load."""
    return UserError(f"{path}: {what} - loading it would run Python code from the model folder, which banglaocr "
                     "does not do unless a training recipe sets model.trust_remote_code=true (predict, eval, "
                     "merge-lora and scan-dims never run it)")


def read_json_object(path: Path, limit: int = SMALL_FILE_BYTES) -> dict:
    """The JSON object in `path`; `UserError` naming the file when it is not one (or is too large to be one)."""
    try:
        if not path.is_file():
            raise UserError(f"cannot read {path}: not a regular file")
        if path.stat().st_size > limit:
            raise UserError(f"cannot read {path}: {path.stat().st_size:,} bytes, more than a {path.name} can be "
                            f"({limit:,})")
        raw = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError:
        raise UserError(f"cannot read {path}: not UTF-8 text, so not JSON") from None
    except ValueError as err:  # json.JSONDecodeError
        raise UserError(f"cannot read {path}: not valid JSON ({first_line(err)})") from None
    except OSError as err:
        raise UserError(f"cannot read {path}: {err.strerror or err}") from None
    if not isinstance(raw, dict):
        raise UserError(f"cannot read {path}: expected a JSON object, found {type(raw).__name__}")
    return raw


# --------------------------------------------------------------------------- folders


def check_model_folder(folder: str | Path, trust_remote_code: bool = False, *, with_base: bool = True) -> Any:
    """Refuse a model folder whose files ask for code or lie: `UserError`, one line naming the file.

    A full folder (config.json): its config, its weights against the model the config describes (names and
    shapes), tokenizer config, generation config and read settings. An adapter folder (adapter_config.json):
    the adapter's files and - `with_base` - the base it names, when that is a local folder (a hub id is
    checked by the hub's loader), with the adapter's tensors against the LoRA layers of that base.
    Returns the transformers config of the model (of the adapter's base), or None where it was not read
    (a hub base, trusted custom code, `with_base=False`).
    """
    forbid_remote_code_prompt()
    path = Path(folder).expanduser()
    if not path.exists():
        raise UserError(f"model folder not found: {folder}")
    if not path.is_dir():
        raise UserError(f"model path is a file, expected a model folder: {folder}")
    if (path / "adapter_config.json").exists():
        return _check_adapter_folder(path, trust_remote_code, with_base)
    if (path / "config.json").exists():
        return _check_full_folder(path, trust_remote_code)
    raise UserError(f"{folder} is not a model folder (no config.json or adapter_config.json)")


def check_recipe_model(model_cfg) -> None:
    """The local folder a recipe's `model` section names (`init: pretrained`: the model; `random`: its
    architecture), checked before a run or a dry run starts - its tokenizer loaded too, as the run will
    (a dry run loads no weights, so this is where it learns that the tokenizer is broken); hub ids and
    `init: tiny` pass."""
    from banglaocr.model.factory import load_model_tokenizer
    from banglaocr.model.shipped import architecture_source, looks_like_path, model_source

    if model_cfg.init == "tiny":
        return
    name = model_cfg.name_or_path
    source = Path(architecture_source(name) if model_cfg.init == "random" else model_source(name)).expanduser()
    if not source.exists() and not looks_like_path(name):
        return  # a hub id
    if model_cfg.init == "random":
        if not source.is_dir():
            raise UserError(f"model.init=random: no architecture folder at {name}")
        config = check_config(source, model_cfg.trust_remote_code)
        if not any((source / file).exists() for file in ("tokenizer.json", "tokenizer_config.json")):
            return  # the run uses the real Qwen tokenizer
    else:
        config = check_model_folder(source, model_cfg.trust_remote_code)
    tokenizer = load_model_tokenizer(model_cfg, str(source))
    if config is not None:
        check_tokenizer_fits(config, tokenizer, str(source))


def _check_full_folder(folder: Path, trust_remote_code: bool) -> Any:
    config = check_config(folder, trust_remote_code)
    shapes = check_weights(folder)
    if config is not None:
        _check_weights_fit(config, shapes, folder)
    _check_side_files(folder, trust_remote_code)
    return config


def _check_adapter_folder(folder: Path, trust_remote_code: bool, with_base: bool) -> Any:
    path = folder / "adapter_config.json"
    raw = read_json_object(path)
    if raw.get("peft_type") != "LORA":
        raise UserError(f"{path}: peft_type {raw.get('peft_type')!r}; banglaocr reads LoRA adapters (\"LORA\")")
    r, alpha, targets = raw.get("r"), raw.get("lora_alpha"), raw.get("target_modules")
    if not _is_int(r) or r <= 0:
        raise UserError(f"{path}: r must be a positive whole number, got {r!r}")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not math.isfinite(alpha):
        raise UserError(f"{path}: lora_alpha must be a number, got {alpha!r}")
    if not (targets is None or isinstance(targets, str)
            or isinstance(targets, list) and all(isinstance(item, str) for item in targets)):
        raise UserError(f"{path}: target_modules must be a name pattern or a list of names, got {targets!r}")
    saved = raw.get("modules_to_save")
    if not (saved is None or isinstance(saved, list) and all(isinstance(item, str) for item in saved)):
        raise UserError(f"{path}: modules_to_save must be a list of names, got {saved!r}")
    base = raw.get("base_model_name_or_path")
    if not isinstance(base, str) or not base.strip():
        raise UserError(f"{path}: base_model_name_or_path must name the base model, got {base!r}")
    try:
        _import_peft().PeftConfig.from_pretrained(str(folder))
    except Exception as err:  # noqa: BLE001 - whatever peft makes of a crafted file, it is the file's fault
        raise UserError(f"{path}: not a LoRA adapter config peft can read ({type(err).__name__}: "
                        f"{first_line(err)})") from None
    weights = folder / ADAPTER_WEIGHTS
    if not weights.exists():
        pickled = "; adapter_model.bin is pickled, banglaocr reads safetensors only" \
            if (folder / "adapter_model.bin").exists() else ""
        raise UserError(f"{folder} has no adapter weights ({ADAPTER_WEIGHTS}){pickled}")
    shapes = check_safetensors(weights)
    _check_side_files(folder, trust_remote_code)
    if not with_base:
        return None
    config = _check_adapter_base(folder, base, trust_remote_code)
    if config is not None:
        _check_adapter_fits(folder, config, shapes)
    return config


def _import_peft():
    import banglaocr.model.factory  # noqa: F401 - it quiets bitsandbytes' import-time note before peft imports it
    import peft

    return peft


def _check_adapter_base(folder: Path, base: str, trust_remote_code: bool) -> Any:
    from banglaocr.model.factory import adapter_base
    from banglaocr.model.shipped import looks_like_path, model_source

    where = folder / "adapter_config.json"
    source = Path(model_source(adapter_base(folder))).expanduser()
    if not source.exists():
        if looks_like_path(base) or Path(base).is_absolute():
            raise UserError(f"{where}: its base model {base!r} (base_model_name_or_path) does not exist; "
                            "pass the base with --base (merge-lora) or --model with --adapter")
        return None  # a hub id: the loader says whether it can have it
    if source.resolve() == folder.resolve():
        raise UserError(f"{where}: base_model_name_or_path names the adapter folder itself, not its base model")
    if (source / "adapter_config.json").exists():
        raise UserError(f"{where}: its base {base!r} is another adapter folder, not a full model")
    if not source.is_dir() or not (source / "config.json").exists():
        raise UserError(f"{where}: its base {base!r} is not a model folder (no config.json)")
    return _check_full_folder(source, trust_remote_code)


def check_tokenizer_folder(folder: str | Path, trust_remote_code: bool = False) -> None:
    """A folder a tokenizer is loaded from (any model's, e.g. scan-dims --tokenizer): no code of its own
    (`auto_map` in tokenizer_config.json or config.json), a tokenizer_config.json that is a JSON object."""
    forbid_remote_code_prompt()
    folder = Path(folder).expanduser()
    tokenizer_config = folder / "tokenizer_config.json"
    if tokenizer_config.exists():
        raw = read_json_object(tokenizer_config)
        if "auto_map" in raw and not trust_remote_code:
            raise code_refusal(tokenizer_config, "its auto_map names a tokenizer class of the folder's own")
        for key in ("tokenizer_class", "chat_template"):
            if raw.get(key) is not None and not isinstance(raw[key], str):
                raise UserError(f"{tokenizer_config}: {key} must be text, got {raw[key]!r}")
    config = folder / "config.json"
    if config.exists() and "auto_map" in read_json_object(config) and not trust_remote_code:
        raise code_refusal(config, "its auto_map names model classes of the folder's own")


def _check_side_files(folder: Path, trust_remote_code: bool) -> None:
    """Tokenizer config, generation config, processor config and read settings, where the folder has them."""
    check_tokenizer_folder(folder, trust_remote_code)
    for name in ("special_tokens_map.json", "added_tokens.json", "preprocessor_config.json",
                 "video_preprocessor_config.json"):
        if (folder / name).exists():
            read_json_object(folder / name)
    generation = folder / "generation_config.json"
    if generation.exists():
        read_json_object(generation)
        from transformers import GenerationConfig

        try:
            GenerationConfig.from_pretrained(str(folder))
        except Exception as err:  # noqa: BLE001 - a crafted file may break it in any way
            raise UserError(f"{generation}: not a generation config ({type(err).__name__}: "
                            f"{first_line(err)})") from None
    # banglaocr.json, else the preprocessor_config.json a reader would go by: one line naming it when it lies.
    if (folder / "banglaocr.json").exists():
        check_read_settings(read_json_object(folder / "banglaocr.json"), folder / "banglaocr.json")
    elif (folder / "preprocessor_config.json").exists():
        preprocessor_geometry(folder / "preprocessor_config.json")


MAX_PROMPT_CHARS = 10_000
MAX_QWEN_PIXELS = 2**28
"""Most pixels per image a model folder's read settings or preprocessor config may ask for."""
QWEN_DEFAULT_PIXELS = (56 * 56, 28 * 28 * 1280)
"""(min, max) pixels of transformers' Qwen2-VL image processor when preprocessor_config.json states none."""


def preprocessor_geometry(path: Path):
    """`QwenResize` with the pixel limits of a preprocessor_config.json (how plain transformers would resize
    for the model), checked: numbers, 0 < min <= max <= `MAX_QWEN_PIXELS`, Qwen3-VL's 32-pixel visual tokens."""
    from banglaocr.data.pixels import TOKEN_PIXELS, QwenResize

    raw = read_json_object(path)
    try:
        size = raw.get("size") or {}
        smallest = int(raw.get("min_pixels") or size.get("shortest_edge") or QWEN_DEFAULT_PIXELS[0])
        largest = int(raw.get("max_pixels") or size.get("longest_edge") or QWEN_DEFAULT_PIXELS[1])
        factor = int(raw.get("patch_size", 16)) * int(raw.get("merge_size", 2))
        geometry = QwenResize(min_pixels=smallest, max_pixels=largest)
    except (OSError, ValueError, TypeError, AttributeError, OverflowError) as err:
        raise UserError(f"cannot read the image settings {path}: {first_line(err)}") from None
    if largest > MAX_QWEN_PIXELS:  # every image would be upscaled or kept up to this many pixels
        raise UserError(f"{path}: {largest:,} pixels per image is implausible (at most {MAX_QWEN_PIXELS:,})")
    if factor != TOKEN_PIXELS:
        raise UserError(f"{path} describes {factor}-pixel visual tokens; banglaocr reads Qwen3-VL models "
                        f"({TOKEN_PIXELS}-pixel tokens: 16-pixel patches merged 2x2)")
    return geometry


def check_read_settings(raw: dict, path: Path) -> None:
    """banglaocr.json's fields have the types and ranges a recipe's would (`data.image`, `data.prompt`,
    `eval.max_new_tokens`): a lie is one line naming the file, not a crash at the first image."""
    import dataclasses

    from banglaocr.config import PLAUSIBLE, ImageConfig

    def refuse(message: str) -> UserError:
        return UserError(f"{path}: {message}")

    image, prompt, max_new_tokens = raw.get("image"), raw.get("prompt"), raw.get("max_new_tokens")
    if not isinstance(image, dict):
        raise refuse(f"'image' must be an object of image settings, got {image!r}")
    if image.get("geometry") == "qwen":
        low, high = image.get("min_pixels"), image.get("max_pixels")
        if set(image) - {"geometry", "min_pixels", "max_pixels"}:
            raise refuse(f"unknown image keys {sorted(set(image) - {'geometry', 'min_pixels', 'max_pixels'})}")
        if not (_is_int(low) and _is_int(high) and 0 < low <= high <= MAX_QWEN_PIXELS):
            raise refuse(f"image.min_pixels / max_pixels must be whole numbers with 0 < min <= max <= "
                         f"{MAX_QWEN_PIXELS:,}, got {low!r}, {high!r}")
    else:
        fields = {f.name: f for f in dataclasses.fields(ImageConfig)}
        unknown = sorted(set(image) - set(fields))
        if unknown:
            raise refuse(f"unknown image key {unknown[0]!r} (keys: {', '.join(fields)})")
        for name, value in image.items():
            kind = str(fields[name].type)  # "int", "float" or "bool" (the module's annotations are text)
            ok = (isinstance(value, bool) if kind == "bool" else _is_int(value) if kind == "int" else
                  not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value))
            if not ok:
                raise refuse(f"image.{name} must be {'a whole number' if kind == 'int' else kind}, got {value!r}")
            bounds = PLAUSIBLE.get(f"data.image.{name}")
            if bounds is not None and bounds[1] is not None and value > bounds[1]:
                raise refuse(f"image.{name} {value!r} is implausible (at most {bounds[1]})")
        try:
            ImageConfig(**image)
        except Exception as err:  # noqa: BLE001 - the section's own checks (_FieldError)
            raise refuse(f"image.{getattr(err, 'field_name', '')} {first_line(err)}") from None
    if not isinstance(prompt, str) or not prompt.strip() or len(prompt) > MAX_PROMPT_CHARS:
        raise refuse(f"'prompt' must be text of 1 to {MAX_PROMPT_CHARS:,} characters, got "
                     f"{prompt[:40] + '...' if isinstance(prompt, str) and len(prompt) > 40 else prompt!r}")
    high = PLAUSIBLE["eval.max_new_tokens"][1]
    if not _is_int(max_new_tokens) or not 0 < max_new_tokens <= high:
        raise refuse(f"'max_new_tokens' must be a whole number from 1 to {high}, got {max_new_tokens!r}")


def tokenizer_problem(folder: str | Path) -> str | None:
    """Which tokenizer file of `folder` is broken, in words (for a tokenizer that failed to load); None when
    each one found is a JSON object."""
    path = Path(folder).expanduser()
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json"):
        if (path / name).exists():
            try:
                read_json_object(path / name, limit=2**31)
            except UserError as err:
                return str(err)
    return None


# --------------------------------------------------------------------------- config


def check_config(folder: Path, trust_remote_code: bool) -> Any:
    """The folder's config (a transformers config object) after refusing code and lies; None when it is
    custom code the recipe trusts (then transformers' own loader is all there is)."""
    path = folder / "config.json"
    raw = read_json_object(path)
    model_type = raw.get("model_type")
    if "auto_map" in raw and not trust_remote_code:
        raise code_refusal(path, "its auto_map names model classes of the folder's own")
    if not isinstance(model_type, str) or not model_type:
        raise UserError(f"{path}: no model_type (a model folder's config.json names its architecture, "
                        f"e.g. \"{QWEN3_VL}\")")
    from transformers import AutoConfig
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    if model_type not in CONFIG_MAPPING:
        if "auto_map" in raw:  # trusted custom code
            return None
        raise UserError(f"{path}: model_type {model_type!r} is not an architecture transformers knows; "
                        f"banglaocr reads Qwen3-VL models (model_type \"{QWEN3_VL}\")")
    if model_type != QWEN3_VL:
        raise UserError(f"{path}: model_type {model_type!r}; banglaocr reads Qwen3-VL models "
                        f"(model_type \"{QWEN3_VL}\")")
    try:
        config = AutoConfig.from_pretrained(str(folder), trust_remote_code=False)
    except Exception as err:  # noqa: BLE001 - strict dataclass checks, conversions: any error is the file's
        raise UserError(f"{path}: not a valid Qwen3-VL config ({type(err).__name__}: {first_line(err)})") from None
    _check_qwen3_vl_shape(config, path)
    return config


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_qwen3_vl_shape(config, path: Path) -> None:
    """The rules a Qwen3-VL config must keep for its forward pass to run (and for banglaocr's patchify)."""
    text, vision = config.text_config, config.vision_config

    def positive(section, prefix: str, *names: str) -> None:
        for name in names:
            value = getattr(section, name, None)
            if not _is_int(value) or value <= 0:
                raise UserError(f"{path}: {prefix}{name} must be a positive whole number, got {value!r}")

    positive(text, "text_config.", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
             "num_key_value_heads", "vocab_size")
    positive(vision, "vision_config.", "depth", "hidden_size", "intermediate_size", "num_heads", "out_hidden_size",
             "num_position_embeddings", "patch_size", "spatial_merge_size", "temporal_patch_size")
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
    problems = []
    if text.num_attention_heads % text.num_key_value_heads:
        problems.append("text_config.num_attention_heads must be a multiple of num_key_value_heads")
    if vision.hidden_size % vision.num_heads:
        problems.append("vision_config.hidden_size must be a multiple of num_heads")
    if vision.out_hidden_size != text.hidden_size:
        problems.append("vision_config.out_hidden_size must equal text_config.hidden_size")
    if math.isqrt(vision.num_position_embeddings) ** 2 != vision.num_position_embeddings:
        problems.append("vision_config.num_position_embeddings must be a square number")
    if (vision.patch_size, vision.spatial_merge_size, vision.temporal_patch_size) != (16, 2, 2):
        problems.append("vision_config: banglaocr reads 16-pixel patches merged 2x2 over 2 frames "
                        "(patch_size 16, spatial_merge_size 2, temporal_patch_size 2)")
    section = ((getattr(text, "rope_parameters", None) or {}).get("mrope_section"))
    if not (isinstance(section, list) and len(section) == 3 and all(_is_int(item) and item >= 0 for item in section)
            and sum(section) == head_dim // 2):
        problems.append(f"text_config.rope_parameters.mrope_section must be 3 whole numbers summing to head_dim / 2 "
                        f"({head_dim // 2}), got {section!r}")
    indexes = getattr(vision, "deepstack_visual_indexes", None) or []
    if not (isinstance(indexes, list) and all(_is_int(i) and 0 <= i < vision.depth for i in indexes)
            and len(indexes) <= text.num_hidden_layers):
        problems.append(f"vision_config.deepstack_visual_indexes must name vision blocks (0 to {vision.depth - 1}), "
                        f"at most one per text layer, got {indexes!r}")
    for key in _TOKEN_ID_KEYS:
        value = getattr(config, key, None)
        if not _is_int(value) or not 0 <= value < text.vocab_size:
            problems.append(f"{key} must be a token id below text_config.vocab_size ({text.vocab_size}), got {value!r}")
    if problems:
        raise UserError(f"{path}: {problems[0]}")


def _meta_model(config, path: Path):
    """The model `config` describes, on the meta device (no memory)."""
    import torch
    from transformers import Qwen3VLForConditionalGeneration

    try:
        with torch.device("meta"):
            return Qwen3VLForConditionalGeneration._from_config(config)
    except Exception as err:  # noqa: BLE001 - the config's numbers, whatever they break
        raise UserError(f"{path}: describes no model that can be built ({type(err).__name__}: "
                        f"{first_line(err)})") from None


def _compare_tensors(saved: dict[str, list[int]], expected: dict[str, list[int]], groups: list[list[str]],
                     where: Path, against: str, allowed: set[str] = frozenset()) -> None:
    """Every saved tensor has a place of its shape, and every group of names (tied weights share one) is
    saved under at least one name."""
    extra = sorted(set(saved) - set(expected) - allowed)
    if extra:
        more = f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""
        raise UserError(f"{where}: tensor {extra[0]!r}{more} has no place in {against}")
    for name in sorted(set(saved) & set(expected)):
        if list(saved[name]) != list(expected[name]):
            raise UserError(f"{where}: tensor {name!r} has shape {list(saved[name])}, {against} expects "
                            f"{list(expected[name])}")
    missing = sorted(names[0] for names in groups if not any(name in saved for name in names))
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise UserError(f"{where}: tensor {missing[0]!r}{more} of {against} is missing")


def _check_weights_fit(config, shapes: dict[str, list[int]], folder: Path) -> None:
    """The weights hold exactly the tensors of the model config.json describes, of its shapes - checked on
    the meta device before anything is allocated (a config that lies about its sizes asks for no memory)."""
    if getattr(config, "quantization_config", None) is not None:
        return  # packed weights: other shapes than the model's parameters (transformers checks them)
    model = _meta_model(config, folder / "config.json")
    expected, groups = {}, {}
    for name, tensor in model.state_dict(keep_vars=True).items():
        expected[name] = list(tensor.shape)
        groups.setdefault(id(tensor), []).append(name)  # tied weights: one tensor, several names
    buffers = {name for name, _ in model.named_buffers()}  # older checkpoints may still hold them
    where = folder / (WEIGHTS if (folder / WEIGHTS).exists() else WEIGHTS_INDEX)
    _compare_tensors(shapes, expected, list(groups.values()), where, "config.json's model", buffers)


def _check_adapter_fits(folder: Path, base_config, shapes: dict[str, list[int]]) -> None:
    """The adapter's tensors are the LoRA weights its adapter_config.json puts on the base, of their shapes
    (checked on the meta device)."""
    import warnings

    peft = _import_peft()
    from peft.utils import get_peft_model_state_dict

    model = _meta_model(base_config, folder / "adapter_config.json")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # peft's notes on renamed bases and deprecated properties
            config = peft.PeftConfig.from_pretrained(str(folder))
            config.inference_mode = False
            wrapped = peft.get_peft_model(model, config)
    except Exception as err:  # noqa: BLE001 - target_modules that match nothing, and whatever else peft meets
        raise UserError(f"{folder / 'adapter_config.json'}: its LoRA layers do not fit the base model "
                        f"({type(err).__name__}: {first_line(err)})") from None
    expected = {name: list(tensor.shape)
                for name, tensor in get_peft_model_state_dict(wrapped, save_embedding_layers=False).items()}
    _compare_tensors(shapes, expected, [[name] for name in expected], folder / ADAPTER_WEIGHTS,
                     "the LoRA setup of adapter_config.json on its base model")


# --------------------------------------------------------------------------- weights


def check_weights(folder: Path) -> dict[str, list[int]]:
    """The full folder's safetensors weights (one file, or shards with their index) checked; tensor name ->
    shape over all of them."""
    single, index = folder / WEIGHTS, folder / WEIGHTS_INDEX
    if single.exists():
        return check_safetensors(single)
    if index.exists():
        return _check_shards(folder, index)
    pickled = [name for name in PICKLED_WEIGHTS if (folder / name).exists()]
    if pickled:
        raise UserError(f"{folder} holds pickled weights only ({pickled[0]}); banglaocr reads safetensors weights "
                        f"({WEIGHTS}) - pickles can run code when loaded")
    raise UserError(f"{folder} has no weights ({WEIGHTS} or {WEIGHTS_INDEX})")


def _check_shards(folder: Path, index: Path) -> dict[str, list[int]]:
    weight_map = read_json_object(index).get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise UserError(f"{index}: no weight_map (tensor name -> shard file)")
    shards: dict[str, set] = {}
    for name, shard in weight_map.items():
        if not isinstance(shard, str) or Path(shard).name != shard or shard in ("", ".", ".."):
            raise UserError(f"{index}: tensor {name!r} points at {shard!r}, not a file in the folder")
        shards.setdefault(shard, set()).add(name)
    shapes: dict[str, list[int]] = {}
    for shard, names in shards.items():
        if not (folder / shard).exists():
            raise UserError(f"{index}: shard {shard} is missing from {folder}")
        header = check_safetensors(folder / shard)
        absent = sorted(names - header.keys())
        if absent:
            raise UserError(f"{index}: {absent[0]!r} is said to be in {shard}, which does not hold it")
        shapes.update(header)
    return shapes


def check_safetensors(path: Path) -> dict[str, list[int]]:
    """Tensor name -> shape from a safetensors file's header, after checking the header against the file:
    its length, JSON, dtypes, shapes, and offsets that tile the data exactly. `UserError` naming the file."""
    try:
        if not path.is_file():
            raise UserError(f"{path}: not a regular file")
        size = path.stat().st_size
        with path.open("rb") as handle:
            prefix = handle.read(8)
            if len(prefix) < 8:
                raise UserError(f"{path}: {size} bytes, too short for a safetensors file (empty or truncated)")
            (length,) = struct.unpack("<Q", prefix)
            if length > min(size - 8, SAFETENSORS_HEADER_BYTES):
                raise UserError(f"{path}: its header claims {length:,} bytes but the file has {size:,} "
                                "(truncated, or not a safetensors file)")
            header_bytes = handle.read(length)
    except OSError as err:
        raise UserError(f"cannot read {path}: {err.strerror or err}") from None
    try:
        header = json.loads(header_bytes.decode("utf-8"))
    except ValueError as err:  # UnicodeDecodeError too
        raise UserError(f"{path}: its header is not JSON ({first_line(err)}); not a safetensors file") from None
    if not isinstance(header, dict):
        raise UserError(f"{path}: its header is not a JSON object; not a safetensors file")
    shapes, spans = {}, []
    for name, info in header.items():
        if name == "__metadata__":
            if not isinstance(info, dict) or not all(isinstance(v, str) for v in info.values()):
                raise UserError(f"{path}: __metadata__ must map names to text")
            continue
        spans.append((_tensor_span(path, name, info), name))
        shapes[name] = info["shape"]
    data = size - 8 - length
    end = 0
    for (begin, stop), name in sorted(spans):
        if begin != end:
            raise UserError(f"{path}: tensor {name!r} starts at byte {begin:,} of the data, expected {end:,} "
                            "(overlapping or gapped offsets)")
        end = stop
    if end != data:
        raise UserError(f"{path}: the header describes {end:,} bytes of tensor data, the file holds {data:,} "
                        "(truncated or padded)")
    return shapes


def _tensor_span(path: Path, name: str, info: Any) -> tuple[int, int]:
    if not isinstance(info, dict):
        raise UserError(f"{path}: tensor {name!r} has no dtype / shape / data_offsets")
    dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
    if dtype not in _DTYPE_BITS:
        raise UserError(f"{path}: tensor {name!r} has unknown dtype {dtype!r}")
    if not isinstance(shape, list) or not all(_is_int(n) and n >= 0 for n in shape):
        raise UserError(f"{path}: tensor {name!r} has shape {shape!r}, not a list of sizes")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_int(n) for n in offsets)
            and 0 <= offsets[0] <= offsets[1]):
        raise UserError(f"{path}: tensor {name!r} has data_offsets {offsets!r}, not [begin, end]")
    expected = math.prod(shape) * _DTYPE_BITS[dtype] // 8
    if offsets[1] - offsets[0] != expected:
        raise UserError(f"{path}: tensor {name!r} ({dtype} {shape}) needs {expected:,} bytes, its offsets give "
                        f"{offsets[1] - offsets[0]:,}")
    return offsets[0], offsets[1]


# --------------------------------------------------------------------------- after loading


def refuse_incomplete_load(info: dict, folder: str) -> None:
    """transformers' loading info (`output_loading_info=True`) of `folder`: a weight it had to make up (missing),
    could not place (unexpected) or had to re-initialise (shape mismatch) is refused - it would only warn."""
    for kind, what in (("mismatched_keys", "has the wrong shape"), ("missing_keys", "is missing"),
                       ("unexpected_keys", "has no place in the model")):
        keys = sorted(info.get(kind) or [], key=str)
        if keys:
            first = keys[0]
            if isinstance(first, tuple):  # (name, shape in the file, shape the config gives)
                name, saved, expected = first
                first, what = name, f"{what} ({list(saved)} in the file, {list(expected)} by config.json)"
            more = f" (and {len(keys) - 1} more)" if len(keys) > 1 else ""
            raise UserError(f"the weights in {folder} ({WEIGHTS}) do not fit its config.json: {first} {what}{more}")


def check_tokenizer_fits(config, tokenizer, where: str) -> None:
    """The tokenizer's special ids are the ones the config's model was built with, and within its vocabulary
    (a mismatch would fail or read garbage at the first image)."""
    from banglaocr.model.tokenizers import special_token_ids

    ids = special_token_ids(tokenizer)
    vocab = config.text_config.vocab_size
    for key, special in _TOKEN_ID_KEYS.items():
        expected = getattr(config, key, None)
        if expected is not None and expected != ids[special]:
            raise UserError(f"the tokenizer of {where} does not fit its config.json: {key} is {expected}, the "
                            f"tokenizer's id for it is {ids[special]}")
    if len(tokenizer) > vocab:
        raise UserError(f"the tokenizer of {where} has {len(tokenizer)} tokens, more than the model's vocabulary "
                        f"({vocab}, config.json text_config.vocab_size)")


forbid_remote_code_prompt()  # wherever banglaocr loads models, transformers cannot ask on stdin
