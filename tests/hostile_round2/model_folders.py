"""Crafted model folders: one that plants its own code, and folders whose files lie.

Everything is built from code into a temporary folder (no binary fixtures in the repository):

- `planted_folder(root, marker)`: a model folder whose config.json names an architecture transformers does
  not know and an `auto_map` into the folder's own `planted_code.py` (its tokenizer_config.json too); importing
  that module writes `marker`. Whatever banglaocr is asked to do with the folder, `marker` must never appear.
- `good_full_folder(path)` / `good_adapter_folder(path)`: a small valid full model folder (config.json,
  model.safetensors, tokenizer, generation config, banglaocr.json) and a LoRA adapter folder with its tiny
  base inside (`base/`), as banglaocr writes them.
- `CASES`: each crafted case - which good folder it starts from, what it breaks, and the file its one error
  line must name. `craft(case, good, dest)` copies the good folder to `dest` and breaks it.
"""

from __future__ import annotations

import json
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

PLANTED_MODULE = "planted_code"


def planted_folder(root: Path, marker: Path) -> Path:
    """A folder that needs its own code: unknown model_type + auto_map (config and tokenizer) into
    planted_code.py, which writes `marker` when imported."""
    folder = Path(root)
    folder.mkdir(parents=True, exist_ok=True)
    auto_map = {"AutoConfig": f"{PLANTED_MODULE}.PlantedConfig",
                "AutoModelForImageTextToText": f"{PLANTED_MODULE}.PlantedModel",
                "AutoModel": f"{PLANTED_MODULE}.PlantedModel"}
    (folder / "config.json").write_text(json.dumps({"model_type": "planted_arch", "auto_map": auto_map,
                                                    "architectures": ["PlantedModel"]}), encoding="utf-8")
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "PlantedTokenizer", "auto_map": {"AutoTokenizer": [f"{PLANTED_MODULE}.PlantedTokenizer",
                                                                              None]}}), encoding="utf-8")
    (folder / f"{PLANTED_MODULE}.py").write_text(
        "import pathlib\n"
        f"pathlib.Path({str(marker)!r}).write_text('the planted code ran')\n"
        "from transformers import PretrainedConfig, PreTrainedModel, PreTrainedTokenizer\n"
        "class PlantedConfig(PretrainedConfig):\n    model_type = 'planted_arch'\n"
        "class PlantedModel(PreTrainedModel):\n    config_class = PlantedConfig\n"
        "class PlantedTokenizer(PreTrainedTokenizer):\n    pass\n", encoding="utf-8")
    return folder


# --------------------------------------------------------------------------- good folders


def _tiny_spec():
    from banglaocr.config import TinyModelSpec

    return TinyModelSpec(hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1, intermediate_size=64,
                         vision_depth=1, vision_hidden_size=32, vision_heads=2, vision_intermediate_size=64,
                         tokenizer="char")


def good_full_folder(path: Path) -> Path:
    """A tiny full Qwen3-VL folder (random weights) with its tokenizer and read settings."""
    import torch

    from banglaocr.config import ModelConfig
    from banglaocr.infer import default_read_settings, save_read_settings
    from banglaocr.model.factory import load_model, save_model_folder

    torch.manual_seed(0)
    loaded = load_model(ModelConfig(name_or_path="tiny-crafted", init="tiny", tiny=_tiny_spec()), None)
    folder = save_model_folder(loaded, path)
    save_read_settings(folder, default_read_settings())
    return folder


def good_adapter_folder(path: Path) -> Path:
    """A tiny LoRA adapter folder (r=2) with its base saved inside (base/) and read settings."""
    import torch

    from banglaocr.config import LoraConfig, ModelConfig
    from banglaocr.infer import default_read_settings, save_read_settings
    from banglaocr.model.factory import load_model, save_model_folder

    torch.manual_seed(0)
    loaded = load_model(ModelConfig(name_or_path="tiny-crafted", init="tiny", tiny=_tiny_spec()), LoraConfig(r=2))
    folder = save_model_folder(loaded, path)
    save_read_settings(folder, default_read_settings())
    return folder


# --------------------------------------------------------------------------- ways to break a file


def _edit_json(name: str, change: Callable[[dict], None]) -> Callable[[Path], None]:
    def craft(folder: Path) -> None:
        raw = json.loads((folder / name).read_text(encoding="utf-8"))
        change(raw)
        (folder / name).write_text(json.dumps(raw), encoding="utf-8")
    return craft


def _set(name: str, keys: str, value) -> Callable[[Path], None]:
    """Set a (dotted) key of a JSON file."""
    def change(raw: dict) -> None:
        *parents, last = keys.split(".")
        for key in parents:
            raw = raw[key]
        raw[last] = value
    return _edit_json(name, change)


def _drop(name: str, key: str) -> Callable[[Path], None]:
    return _edit_json(name, lambda raw: raw.pop(key))


def _write(name: str, data: bytes | str) -> Callable[[Path], None]:
    def craft(folder: Path) -> None:
        path = folder / name
        if path.is_dir():
            shutil.rmtree(path)
        path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    return craft


def _delete(*names: str) -> Callable[[Path], None]:
    def craft(folder: Path) -> None:
        for name in names:
            (folder / name).unlink()
    return craft


def _both(*crafts: Callable[[Path], None]) -> Callable[[Path], None]:
    def craft(folder: Path) -> None:
        for one in crafts:
            one(folder)
    return craft


def read_safetensors(path: Path) -> tuple[dict, bytes]:
    """(header, tensor data) of a safetensors file."""
    raw = path.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8:8 + length]), raw[8 + length:]


def write_safetensors(path: Path, header: dict, data: bytes, length: int | None = None) -> None:
    """A safetensors file from a header and data; `length` overrides the 8-byte header length (a lie)."""
    encoded = json.dumps(header).encode("utf-8")
    path.write_bytes(struct.pack("<Q", len(encoded) if length is None else length) + encoded + data)


def _first_tensor(header: dict) -> str:
    return sorted(key for key in header if key != "__metadata__")[0]


def _tensors(name: str, how: str) -> Callable[[Path], None]:
    """Break the safetensors file `name` in one way (`how`)."""
    def craft(folder: Path) -> None:
        path = folder / name
        header, data = read_safetensors(path)
        key = _first_tensor(header)
        if how == "truncated":
            path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        elif how == "empty":
            path.write_bytes(b"")
        elif how == "length-lies":
            write_safetensors(path, header, data, length=2**40)
        elif how == "header-not-json":
            encoded = json.dumps(header).encode("utf-8")
            path.write_bytes(struct.pack("<Q", len(encoded)) + b"{" * len(encoded) + data)
        elif how == "offsets-beyond":
            header[key]["data_offsets"][1] += 4096
            write_safetensors(path, header, data)
        elif how == "dtype-lies":
            header[key]["dtype"] = "F64" if header[key]["dtype"] != "F64" else "F32"
            write_safetensors(path, header, data)
        elif how == "unknown-dtype":
            header[key]["dtype"] = "Q3"
            write_safetensors(path, header, data)
        elif how in ("missing-tensor", "wrong-shape", "renamed"):
            import torch
            from safetensors.torch import load_file, save_file

            tensors = load_file(str(path))
            key = sorted(tensors)[len(tensors) // 2]
            if how == "missing-tensor":
                del tensors[key]
            elif how == "wrong-shape":
                tensors[key] = torch.zeros(tensors[key].numel() + 6)
            else:
                tensors = {f"foreign.{k}": v for k, v in tensors.items()}
            save_file(tensors, str(path), metadata={"format": "pt"})
        else:
            raise ValueError(how)
    return craft


def _sharded(how: str) -> Callable[[Path], None]:
    """Replace model.safetensors by a shard index that lies (`how`)."""
    def craft(folder: Path) -> None:
        header, _ = read_safetensors(folder / "model.safetensors")
        shard = "model-00001-of-00001.safetensors"
        (folder / "model.safetensors").rename(folder / shard)
        weight_map = {key: shard for key in header if key != "__metadata__"}
        if how == "missing-shard":
            weight_map[_first_tensor(header)] = "model-00002-of-00002.safetensors"
        elif how == "escapes":
            weight_map[_first_tensor(header)] = "../outside.safetensors"
        index = "{not json" if how == "not-json" else json.dumps({"metadata": {}, "weight_map": weight_map})
        (folder / "model.safetensors.index.json").write_text(index, encoding="utf-8")
    return craft


def _config_value(keys: str, value) -> Callable[[Path], None]:
    return _set("config.json", keys, value)


def _adapter_base(value) -> Callable[[Path], None]:
    return _set("adapter_config.json", "base_model_name_or_path", value)


def _adapter_base_is_file(folder: Path) -> None:
    (folder / "base.txt").write_text("not a model", encoding="utf-8")
    _adapter_base(str(folder / "base.txt"))(folder)


def _adapter_base_is_an_adapter(folder: Path) -> None:
    shutil.copytree(folder, folder.parent / f"{folder.name}-other", dirs_exist_ok=True)
    _adapter_base(str(folder.parent / f"{folder.name}-other"))(folder)


# --------------------------------------------------------------------------- the cases


@dataclass(frozen=True)
class FolderCase:
    """One crafted folder: `base` ("full" or "adapter") is the good folder it starts from; `names` the
    text its one error line must hold (the file, and what is wrong where it matters)."""

    name: str
    base: str
    craft: Callable[[Path], None]
    names: tuple[str, ...]


def _case(name: str, base: str, craft: Callable[[Path], None], *names: str) -> FolderCase:
    return FolderCase(name, base, craft, names)


CASES: tuple[FolderCase, ...] = (
    # config.json
    _case("config-not-json", "full", _write("config.json", '{"model_type": "qwen3_vl", '), "config.json", "JSON"),
    _case("config-not-utf8", "full", _write("config.json", b"\xff\xfe{\x00}"), "config.json", "UTF-8"),
    _case("config-not-object", "full", _write("config.json", "[1, 2, 3]"), "config.json", "JSON object"),
    _case("config-no-model-type", "full", _drop("config.json", "model_type"), "config.json", "model_type"),
    _case("config-unknown-model-type", "full", _config_value("model_type", "no_such_arch"), "config.json",
          "no_such_arch"),
    _case("config-model-type-number", "full", _config_value("model_type", 7), "config.json", "model_type"),
    _case("config-other-architecture", "full", _config_value("model_type", "llama"), "config.json", "Qwen3-VL"),
    _case("config-auto-map", "full", _config_value("auto_map", {"AutoConfig": "x.Y"}), "config.json",
          "trust_remote_code"),
    _case("config-text-config-number", "full", _config_value("text_config", 7), "config.json", "text_config"),
    _case("config-size-text", "full", _config_value("text_config.hidden_size", "wide"), "config.json",
          "hidden_size"),
    _case("config-layers-negative", "full", _config_value("text_config.num_hidden_layers", -1), "config.json",
          "num_hidden_layers"),
    _case("config-heads-zero", "full", _config_value("vision_config.num_heads", 0), "config.json", "num_heads"),
    _case("config-mrope-lies", "full", _config_value("text_config.rope_parameters.mrope_section", [1, 1, 1]),
          "config.json", "mrope_section"),
    _case("config-token-id-outside", "full", _config_value("image_token_id", 10**6), "config.json",
          "image_token_id"),
    _case("config-patch-size", "full", _config_value("vision_config.patch_size", 14), "config.json", "patch"),
    _case("config-vocab-larger", "full", _config_value("text_config.vocab_size", 10**9), "model.safetensors",
          "config.json"),
    _case("config-vocab-smaller", "full", _config_value("text_config.vocab_size", 300), "model.safetensors",
          "config.json", "shape"),
    _case("config-is-folder", "full", _both(_delete("config.json"), lambda f: (f / "config.json").mkdir()),
          "config.json"),
    # model.safetensors
    _case("weights-missing", "full", _delete("model.safetensors"), "model.safetensors"),
    _case("weights-pickled-only", "full", _both(_delete("model.safetensors"), _write("pytorch_model.bin", b"\x80\x04")),
          "pytorch_model.bin", "safetensors"),
    _case("weights-empty", "full", _tensors("model.safetensors", "empty"), "model.safetensors"),
    _case("weights-truncated", "full", _tensors("model.safetensors", "truncated"), "model.safetensors"),
    _case("weights-length-lies", "full", _tensors("model.safetensors", "length-lies"), "model.safetensors"),
    _case("weights-header-not-json", "full", _tensors("model.safetensors", "header-not-json"), "model.safetensors"),
    _case("weights-offsets-beyond", "full", _tensors("model.safetensors", "offsets-beyond"), "model.safetensors"),
    _case("weights-dtype-lies", "full", _tensors("model.safetensors", "dtype-lies"), "model.safetensors"),
    _case("weights-unknown-dtype", "full", _tensors("model.safetensors", "unknown-dtype"), "model.safetensors",
          "dtype"),
    _case("weights-missing-tensor", "full", _tensors("model.safetensors", "missing-tensor"), "model.safetensors"),
    _case("weights-wrong-shape", "full", _tensors("model.safetensors", "wrong-shape"), "model.safetensors",
          "shape"),
    _case("weights-renamed", "full", _tensors("model.safetensors", "renamed"), "model.safetensors"),
    _case("shards-index-not-json", "full", _sharded("not-json"), "model.safetensors.index.json"),
    _case("shards-missing-shard", "full", _sharded("missing-shard"), "model.safetensors.index.json", "missing"),
    _case("shards-escape", "full", _sharded("escapes"), "model.safetensors.index.json", "outside"),
    # side files
    _case("generation-not-json", "full", _write("generation_config.json", "{nope"), "generation_config.json"),
    _case("generation-not-object", "full", _write("generation_config.json", "[1]"), "generation_config.json"),
    _case("generation-wrong-type", "full", _write("generation_config.json", '{"max_new_tokens": "many"}'),
          "generation_config.json"),
    _case("preprocessor-not-json", "full", _write("preprocessor_config.json", "{nope"), "preprocessor_config.json"),
    _case("preprocessor-wrong-type", "full",
          _both(_delete("banglaocr.json"), _write("preprocessor_config.json", '{"size": "huge"}')),
          "preprocessor_config.json"),
    _case("preprocessor-pixels-lie", "full",
          _both(_delete("banglaocr.json"), _write("preprocessor_config.json", '{"min_pixels": 1, "max_pixels": 1e15}')),
          "preprocessor_config.json"),
    _case("tokenizer-not-json", "full", _write("tokenizer.json", '{"version": "1.0", "model": '), "tokenizer.json"),
    _case("tokenizer-not-object", "full", _write("tokenizer.json", "[]"), "tokenizer.json"),
    _case("tokenizer-config-not-json", "full", _write("tokenizer_config.json", "{nope"), "tokenizer_config.json"),
    _case("tokenizer-config-not-object", "full", _write("tokenizer_config.json", "[]"), "tokenizer_config.json"),
    _case("tokenizer-config-wrong-type", "full", _set("tokenizer_config.json", "tokenizer_class", 5),
          "tokenizer_config.json"),
    _case("tokenizer-config-auto-map", "full",
          _set("tokenizer_config.json", "auto_map", {"AutoTokenizer": ["x.Y", None]}),
          "tokenizer_config.json", "trust_remote_code"),
    _case("tokenizer-missing", "full", _delete("tokenizer.json", "tokenizer_config.json"), "no tokenizer"),
    # banglaocr.json (read settings)
    _case("settings-not-json", "full", _write("banglaocr.json", "{nope"), "banglaocr.json"),
    _case("settings-not-object", "full", _write("banglaocr.json", '"lies"'), "banglaocr.json"),
    _case("settings-no-image", "full", _drop("banglaocr.json", "image"), "banglaocr.json", "image"),
    _case("settings-height-text", "full", _set("banglaocr.json", "image.height", "tall"), "banglaocr.json", "height"),
    _case("settings-height-not-32", "full", _set("banglaocr.json", "image.height", 33), "banglaocr.json", "height"),
    _case("settings-width-huge", "full", _set("banglaocr.json", "image.max_width", 2**40), "banglaocr.json",
          "max_width"),
    _case("settings-unknown-key", "full", _set("banglaocr.json", "image.depth", 3), "banglaocr.json", "depth"),
    _case("settings-tokens-zero", "full", _set("banglaocr.json", "max_new_tokens", 0), "banglaocr.json",
          "max_new_tokens"),
    _case("settings-tokens-huge", "full", _set("banglaocr.json", "max_new_tokens", 10**9), "banglaocr.json",
          "max_new_tokens"),
    _case("settings-prompt-number", "full", _set("banglaocr.json", "prompt", 5), "banglaocr.json", "prompt"),
    _case("settings-qwen-pixels-lie", "full", _set("banglaocr.json", "image", {"geometry": "qwen", "min_pixels": 10**13,
                                                                               "max_pixels": 10**14}),
          "banglaocr.json", "pixels"),
    # adapter folders
    _case("adapter-config-not-json", "adapter", _write("adapter_config.json", "{nope"), "adapter_config.json"),
    _case("adapter-config-not-object", "adapter", _write("adapter_config.json", "[]"), "adapter_config.json"),
    _case("adapter-no-base", "adapter", _drop("adapter_config.json", "base_model_name_or_path"),
          "adapter_config.json", "base_model_name_or_path"),
    _case("adapter-base-missing", "adapter", _adapter_base("/no/such/base/model"), "adapter_config.json",
          "/no/such/base/model"),
    _case("adapter-base-is-file", "adapter", _adapter_base_is_file, "adapter_config.json", "base.txt"),
    _case("adapter-base-is-itself", "adapter", _adapter_base("."), "adapter_config.json"),
    _case("adapter-base-is-adapter", "adapter", _adapter_base_is_an_adapter, "adapter_config.json", "adapter"),
    _case("adapter-base-config-broken", "adapter", _write("base/config.json", "{nope"), "base/config.json"),
    _case("adapter-r-text", "adapter", _set("adapter_config.json", "r", "four"), "adapter_config.json", "r"),
    _case("adapter-targets-number", "adapter", _set("adapter_config.json", "target_modules", 5),
          "adapter_config.json", "target_modules"),
    _case("adapter-peft-type", "adapter", _set("adapter_config.json", "peft_type", "NOPE"), "adapter_config.json",
          "LORA"),
    _case("adapter-weights-missing", "adapter", _delete("adapter_model.safetensors"), "adapter_model.safetensors"),
    _case("adapter-weights-truncated", "adapter", _tensors("adapter_model.safetensors", "truncated"),
          "adapter_model.safetensors"),
    _case("adapter-weights-length-lies", "adapter", _tensors("adapter_model.safetensors", "length-lies"),
          "adapter_model.safetensors"),
    _case("adapter-weights-missing-tensor", "adapter", _tensors("adapter_model.safetensors", "missing-tensor"),
          "adapter_model.safetensors", "missing"),
    _case("adapter-weights-wrong-shape", "adapter", _tensors("adapter_model.safetensors", "wrong-shape"),
          "adapter_model.safetensors", "shape"),
    _case("adapter-weights-renamed", "adapter", _tensors("adapter_model.safetensors", "renamed"),
          "adapter_model.safetensors", "no place"),
    _case("adapter-r-lies", "adapter", _set("adapter_config.json", "r", 3), "adapter_model.safetensors",
          "shape"),
    _case("adapter-settings-lie", "adapter", _set("banglaocr.json", "image.min_width", -32), "banglaocr.json",
          "min_width"),
    _case("adapter-tokenizer-not-json", "adapter", _write("tokenizer.json", "{nope"), "tokenizer.json"),
)
"""Every crafted case (`FolderCase`)."""


def craft(case: FolderCase, good: Path, dest: Path) -> Path:
    """`good` copied to `dest`, broken as `case` says; the folder to name as the model."""
    shutil.copytree(good, dest)
    case.craft(dest)
    return dest


def folder_is_a_file(root: Path) -> Path:
    """A model path that is a file."""
    path = Path(root) / "model-file"
    path.write_text("not a folder", encoding="utf-8")
    return path


def empty_folder(root: Path) -> Path:
    path = Path(root) / "empty-model"
    path.mkdir()
    return path
