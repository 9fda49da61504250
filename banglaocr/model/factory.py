"""Build the model: a pretrained Qwen3-VL (hub id or folder) or a tiny random one, plus LoRA.

`load_model` is the one entry point. It decides the weight dtype, quantises the frozen base
(bitsandbytes 8-bit / 4-bit NF4), turns on gradient checkpointing, wraps the model in LoRA
adapters (or leaves every parameter trainable for a full fine-tune) and returns it with its
tokenizer. `save_model_folder` writes what it returns as standard folders that plain
transformers / peft load offline.

Weight dtype (`model.dtype: auto` follows `train.precision`):

| precision | LoRA base weights | full fine-tune weights |
| --------- | ----------------- | ---------------------- |
| fp32      | float32           | float32                |
| bf16      | bfloat16          | float32 (autocast does the bf16 math) |
| fp16      | float16, vision tower float32 | float32 (autocast does the fp16 math) |

Trainable parameters are always float32 when the weights are half precision: LoRA
matrices and `train_modules` copies are upcast (a GradScaler cannot unscale fp16
gradients, and small updates vanish in fp16/bf16 weights). With float16 weights the vision
tower is kept in float32 and runs with autocast switched off: Qwen3-VL's vision MLP
overflows the fp16 range. A quantised base quantises the language model only; the vision
tower stays unquantised.

Saved folders (`save_model_folder`):

    adapter folder (LoRA)                  full folder (no LoRA, or merged)
      adapter_config.json                    config.json, generation_config.json
      adapter_model.safetensors              model.safetensors
      tokenizer.json, tokenizer_config.json  tokenizer.json, tokenizer_config.json
      chat_template.jinja                    chat_template.jinja
      base/   (tiny random bases only: a full folder; adapter_config.json names it "base")

A hub or local base is named by `base_model_name_or_path` in adapter_config.json instead.

>>> import torch
>>> from banglaocr.config import ModelConfig, LoraConfig, TinyModelSpec
>>> _ = torch.manual_seed(0)
>>> tiny = ModelConfig(name_or_path="tiny", init="tiny", tiny=TinyModelSpec(hidden_size=64, num_layers=2))
>>> loaded = load_model(tiny, LoraConfig(r=4))
>>> loaded.is_peft, trainable_parameter_summary(loaded.model)[0]
(True, 14336)
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from banglaocr import hub
from banglaocr.config import LoraConfig, ModelConfig, TinyModelSpec
from banglaocr.errors import UserError, first_line
from banglaocr.model.folder_check import (check_config, check_model_folder, check_safetensors, check_tokenizer_fits,
                                          read_json_object, refuse_incomplete_load, tokenizer_problem)
from banglaocr.model.patch_embed import use_matmul_patch_embedding
from banglaocr.model.placement import (dispatch, max_memory_mapping, offloaded_state_dict,
                                       refuse_offloaded_trainables, set_forward)
from banglaocr.model.shipped import architecture_source, looks_like_path, model_source
from banglaocr.model.tokenizers import build_char_tokenizer, build_qwen_tokenizer, special_token_ids

# bitsandbytes (imported by peft) warns at import, on CPUs with AVX512-BF16, that an optional hub
# kernel is not installed; it then uses its own CPU kernel and nothing is wrong, so the line is dropped.
logging.getLogger("bitsandbytes.backends.cpu.ops").addFilter(
    lambda record: "kernels-community" not in record.getMessage())

# Name of the tiny base's folder inside an adapter folder (and its `base_model_name_or_path`).
BASE_SUBFOLDER = "base"

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
_PRECISION_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass(frozen=True)
class LoadedModel:
    """A model ready to train or run, with the tokenizer that belongs to it."""

    model: Any
    """`peft.PeftModel` when LoRA is on, else the `Qwen3VLForConditionalGeneration` itself."""
    tokenizer: Any
    """The Qwen-format tokenizer (special token ids: `tokenizers.special_token_ids`)."""
    config: Any
    """The transformers model config (`Qwen3VLConfig`): token ids, sizes."""
    is_peft: bool
    """True when `model` carries LoRA adapters."""
    base_name_or_path: str | None = None
    """Where the base weights can be loaded from again (hub id or folder); None for a tiny random
    base, which `save_model_folder` then writes next to the adapter."""


# --------------------------------------------------------------------------- configs and dtypes


def qwen3_vl_config(text: dict, vision: dict, ids: dict[str, int]) -> Any:
    """A `Qwen3VLConfig` from text / vision sizes plus what every Qwen3-VL shares: 16-pixel patches
    merged 2x2 over 2 frames, tied embeddings, and the special token ids (`special_token_ids`).

    >>> ids = {"pad": 0, "im_end": 2, "image_pad": 12, "video_pad": 13, "vision_start": 9, "vision_end": 10}
    >>> qwen3_vl_config({"vocab_size": 64}, {"depth": 1}, ids).image_token_id
    12
    """
    from transformers import Qwen3VLConfig

    return Qwen3VLConfig(
        text_config={**text, "bos_token_id": ids["pad"], "eos_token_id": ids["im_end"], "pad_token_id": ids["pad"],
                     "tie_word_embeddings": True},
        vision_config={**vision, "patch_size": 16, "spatial_merge_size": 2, "temporal_patch_size": 2},
        image_token_id=ids["image_pad"],
        video_token_id=ids["video_pad"],
        vision_start_token_id=ids["vision_start"],
        vision_end_token_id=ids["vision_end"],
        tie_word_embeddings=True,
    )


def tiny_model_config(spec: TinyModelSpec, tokenizer) -> Any:
    """A small Qwen3-VL config whose vocabulary and special token ids come from `tokenizer`.

    Qwen3-VL-2B's shape rules scaled down: M-RoPE sections in the 24:20:20 proportion summing to
    head_dim / 2, a square grid of vision position embeddings, up to three deepstack layers
    spread over the vision tower (each feeds one of the first text layers), 16-pixel patches
    merged 2x2, tied embeddings.

    >>> from banglaocr.model.tokenizers import build_char_tokenizer
    >>> config = tiny_model_config(TinyModelSpec(), build_char_tokenizer())
    >>> config.text_config.rope_parameters["mrope_section"], config.vision_config.deepstack_visual_indexes
    ([6, 5, 5], [0, 1, 2])
    """
    ids = special_token_ids(tokenizer)
    head_dim = spec.hidden_size // spec.num_heads
    half = head_dim // 2
    height_width = half * 5 // 16  # 20 of 64 in Qwen3-VL-2B
    mrope_section = [half - 2 * height_width, height_width, height_width]
    # The text layers that receive deepstack features are the first len(indexes) ones, and
    # each index must name a vision block: at most min(3, text layers, vision blocks).
    count = min(3, spec.num_layers, spec.vision_depth)
    indexes = sorted({max(0, spec.vision_depth * (i + 1) // (count + 1) - 1) for i in range(count)})
    if len(indexes) < count:
        indexes = list(range(count))
    # Position embeddings are interpolated over a square grid; 16x16 suffices for word crops.
    grid_side = 16
    return qwen3_vl_config(
        text={
            "vocab_size": len(tokenizer),
            "hidden_size": spec.hidden_size,
            "intermediate_size": spec.intermediate_size,
            "num_hidden_layers": spec.num_layers,
            "num_attention_heads": spec.num_heads,
            "num_key_value_heads": spec.num_kv_heads,
            "head_dim": head_dim,
            "max_position_embeddings": 32768,
            "rope_parameters": {"rope_type": "default", "rope_theta": 5_000_000.0,
                                "mrope_section": mrope_section, "mrope_interleaved": True},
        },
        vision={
            "depth": spec.vision_depth,
            "hidden_size": spec.vision_hidden_size,
            "intermediate_size": spec.vision_intermediate_size,
            "num_heads": spec.vision_heads,
            "out_hidden_size": spec.hidden_size,
            "num_position_embeddings": grid_side * grid_side,
            "deepstack_visual_indexes": indexes,
        },
        ids=ids,
    )


def resolve_dtype(model_cfg: ModelConfig, precision: str, full_finetune: bool) -> torch.dtype:
    """The dtype the weights are loaded in (see the module docstring's table).

    >>> resolve_dtype(ModelConfig(name_or_path="x"), "fp16", full_finetune=False)
    torch.float16
    >>> resolve_dtype(ModelConfig(name_or_path="x"), "bf16", full_finetune=True)
    torch.float32
    """
    if model_cfg.dtype != "auto":
        return _DTYPES[model_cfg.dtype]
    if precision not in _PRECISION_DTYPES:
        raise UserError(f"train.precision must be one of fp32, fp16, bf16, got {precision!r}")
    if full_finetune:
        return torch.float32  # optimizer updates need float32 master weights
    return _PRECISION_DTYPES[precision]


# --------------------------------------------------------------------------- loading


def load_model(model_cfg: ModelConfig, lora_cfg: LoraConfig | None, precision: str = "fp32") -> LoadedModel:
    """Load (or build) the model, quantise, checkpoint, wrap it in LoRA and place it as the recipe says.

    `init: tiny` builds a random model from `model_cfg.tiny` (seed it with `torch.manual_seed`);
    `init: pretrained` loads `name_or_path`, a hub id, a shipped model's name (`tiny`) or a local
    folder - a full model folder, or an adapter folder written by `save_model_folder` (its base
    is loaded first). `lora_cfg` None = full fine-tune (every parameter trainable).

    `model.device_map` (every `init`): the model is built on the CPU, patched and given its adapters,
    then split by accelerate (`placement.dispatch`, trainable weights kept resident). A quantised base
    is the exception: bitsandbytes quantises while loading, so transformers places it then.

    >>> load_model(ModelConfig(name_or_path="/no/such/folder"), None)
    Traceback (most recent call last):
    ...
    banglaocr.errors.UserError: model folder not found: /no/such/folder
    """
    if model_cfg.init == "pretrained" and Path(model_source(model_cfg.name_or_path)).expanduser().exists():
        # Every file the loaders will read, before they read it: code refused, lies one line each.
        check_model_folder(model_source(model_cfg.name_or_path), model_cfg.trust_remote_code)
    # A shipped name (`tiny`) loads from the package; the name itself is what adapters record as their base.
    adapter_folder = as_adapter_folder(model_source(model_cfg.name_or_path)) if model_cfg.init == "pretrained" else None
    if lora_cfg is None and adapter_folder is None and model_cfg.quantization is not None:
        raise UserError("model.quantization needs LoRA: a quantised base cannot be fully fine-tuned "
                        "(set a lora section or model.quantization=null)")
    full_finetune = lora_cfg is None and adapter_folder is None
    dtype = resolve_dtype(model_cfg, precision, full_finetune=full_finetune)
    model, tokenizer, base_name = _base_model(model_cfg, adapter_folder, dtype)
    _prepare_base(model, model_cfg, dtype, precision)
    if adapter_folder is not None:
        model = attach_saved_adapter(model, adapter_folder, trainable=lora_cfg is not None)
    elif lora_cfg is not None:
        model = _add_lora(model, lora_cfg)
    else:
        for param in model.parameters():
            param.requires_grad_(True)
    if lora_cfg is not None and dtype != torch.float32:
        _upcast_trainable(model)
    if model_cfg.device_map is not None and model_cfg.quantization is None:
        # After the adapters: they are what must stay resident when layers are offloaded.
        dispatch(core_model(model), max_memory_mapping(model_cfg.max_memory), full_finetune=full_finetune)
    refuse_offloaded_trainables(model)
    return LoadedModel(model=model, tokenizer=tokenizer, config=core_model(model).config,
                       is_peft=not full_finetune, base_name_or_path=base_name)


def _base_model(model_cfg: ModelConfig, adapter_folder: Path | None, dtype: torch.dtype):
    """(model, tokenizer, base name to record) before patches and adapters."""
    if model_cfg.init in ("tiny", "random"):
        if model_cfg.quantization is not None:
            raise UserError("model.quantization needs pretrained weights (model.init: pretrained); "
                            f"quantising a random {model_cfg.init} model has nothing to preserve")
        build = _build_tiny if model_cfg.init == "tiny" else _build_random
        return (*build(model_cfg, dtype), None)
    base_name = adapter_base(adapter_folder) if adapter_folder else model_cfg.name_or_path
    base_source = model_source(base_name)
    # Only bitsandbytes needs transformers to place the weights while loading (it quantises on the way);
    # everything else is placed by `dispatch` once the adapters exist.
    device_map = model_cfg.device_map if model_cfg.quantization is not None else None
    model = _load_pretrained(model_cfg, base_source, dtype, device_map)
    tokenizer_source = str(adapter_folder) if adapter_folder else base_source
    tokenizer = load_model_tokenizer(model_cfg, tokenizer_source)
    if getattr(model.config, "model_type", None) == "qwen3_vl":
        check_tokenizer_fits(model.config, tokenizer, tokenizer_source)
    if adapter_folder is not None and Path(base_name).parent == adapter_folder:
        # A tiny base saved inside the adapter folder: save it again with every new adapter
        # folder rather than point at this one (checkpoint rotation may delete it).
        base_name = None
    return model, tokenizer, base_name


def _prepare_base(model, model_cfg: ModelConfig, dtype: torch.dtype, precision: str) -> None:
    """Patch embedding as a matmul, fp32 vision tower under fp16, k-bit preparation, checkpointing."""
    use_matmul_patch_embedding(model)  # the vision tower's Conv3d patch embedding, as the matmul it is
    if dtype == torch.float16 or precision == "fp16":
        # By precision too: float32 weights (a full fine-tune) still run under fp16 autocast.
        _keep_vision_tower_in_fp32(model)
    if model_cfg.quantization is not None:
        from peft import prepare_model_for_kbit_training

        # Checkpointing is switched on below with the non-deprecated method; peft's own call
        # would use the deprecated name.
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
        _keep_4bit_weights_trainable_on_cpu(model)
    if model_cfg.gradient_checkpointing:
        # use_reentrant=False: gradients reach LoRA weights even though the checkpointed
        # block's inputs are frozen activations (the reentrant variant would drop them).
        model.activation_checkpointing_enable({"use_reentrant": False})
        model.config.use_cache = False  # the cache is useless while training and conflicts with recompute


def _build_tiny(model_cfg: ModelConfig, dtype: torch.dtype):
    from transformers import GenerationConfig, Qwen3VLForConditionalGeneration

    tokenizer = build_char_tokenizer() if model_cfg.tiny.tokenizer == "char" else build_qwen_tokenizer()
    config = tiny_model_config(model_cfg.tiny, tokenizer)
    model = Qwen3VLForConditionalGeneration._from_config(
        config, attn_implementation=model_cfg.attn_implementation, dtype=dtype)
    ids = special_token_ids(tokenizer)
    # Like Qwen3-VL's generation_config.json (stop at <|im_end|> or <|endoftext|>), but greedy.
    model.generation_config = GenerationConfig(
        bos_token_id=ids["pad"], eos_token_id=[ids["im_end"], ids["pad"]], pad_token_id=ids["pad"])
    return model, tokenizer


def _build_random(model_cfg: ModelConfig, dtype: torch.dtype):
    """`name_or_path`'s architecture (its config.json) with random weights; the folder's tokenizer, else the
    real Qwen tokenizer (rebuilt offline)."""
    from transformers import AutoConfig, GenerationConfig, Qwen3VLForConditionalGeneration

    source = architecture_source(model_cfg.name_or_path)
    if Path(source).expanduser().is_dir():
        check_config(Path(source).expanduser(), model_cfg.trust_remote_code)
    try:
        config = AutoConfig.from_pretrained(source, revision=model_cfg.revision,
                                            trust_remote_code=model_cfg.trust_remote_code)
    except Exception as err:  # noqa: BLE001 - whatever a crafted or unreachable config raises, it is bad input
        raise UserError(f"model.init=random: no architecture at {model_cfg.name_or_path} ({first_line(err)}); "
                        "name a folder with config.json, or qwen3-vl-2b-arch") from None
    model = Qwen3VLForConditionalGeneration._from_config(config, attn_implementation=model_cfg.attn_implementation,
                                                        dtype=dtype)
    has_tokenizer = (Path(source) / "tokenizer.json").is_file() or (Path(source) / "tokenizer_config.json").is_file()
    tokenizer = load_model_tokenizer(model_cfg, source) if has_tokenizer else build_qwen_tokenizer()
    check_tokenizer_fits(config, tokenizer, source)
    ids = special_token_ids(tokenizer)
    model.generation_config = GenerationConfig(
        bos_token_id=ids["pad"], eos_token_id=[ids["im_end"], ids["pad"]], pad_token_id=ids["pad"])
    return model, tokenizer


def _check_reachable(name: str, revision: str | None = None) -> str:
    """Fail early, in one line, for a folder that does not exist, or for a hub id that is not in the
    local cache while the hub does not answer (a few seconds, not a minute of retries); returns the
    name to load."""
    path = Path(name).expanduser()
    if path.exists() and not path.is_dir():
        raise UserError(f"model path is a file, expected a model folder: {name}")
    if looks_like_path(name) and not path.is_dir():
        raise UserError(f"model folder not found: {name}")
    if path.is_dir():
        return str(path)
    if not hub.offline() and not hub.cached(name, revision=revision):
        problem = hub.unreachable()
        if problem is not None:
            raise UserError(f"cannot load model '{name}': {problem}; set HF_HUB_OFFLINE=1 to use the models "
                            "in the local cache, or give a local model folder")
    return name


def _from_cache_only(name: str, revision: str | None = None) -> bool:
    """True for a cached hub model while the hub does not answer: read the cache without asking the
    hub (huggingface_hub would retry each file for a minute before falling back to it)."""
    return (not Path(name).expanduser().is_dir() and not hub.offline() and hub.cached(name, revision=revision)
            and hub.unreachable() is not None)


def _offline_hint() -> str:
    if hub.offline():
        return ("HF_HUB_OFFLINE is set: use a hub id that is already in the local cache, "
                "or a local model folder")
    return ("check the hub id and your network, set HF_HUB_OFFLINE=1 to use the models in the local cache, "
            "or give a local model folder")


def _load_pretrained(model_cfg: ModelConfig, name: str, dtype: torch.dtype, device_map: Any):
    from transformers import AutoModelForImageTextToText

    name = _check_reachable(name, model_cfg.revision)
    kwargs: dict[str, Any] = {
        "dtype": dtype,
        "revision": model_cfg.revision,
        "trust_remote_code": model_cfg.trust_remote_code,
        "attn_implementation": model_cfg.attn_implementation,
        "use_safetensors": True,  # never unpickle weights (pickles can run code)
        # Weights that are missing, unplaced or of the wrong shape come back in the loading info and are
        # refused below (transformers would only warn, with random values in their place).
        "output_loading_info": True,
        "ignore_mismatched_sizes": True,
    }
    if _from_cache_only(name, model_cfg.revision):
        # transformers does not hand local_files_only on to its adapter lookup: it goes to both
        kwargs.update(local_files_only=True, adapter_kwargs={"local_files_only": True})
    if model_cfg.quantization is not None:
        kwargs["quantization_config"] = _quantization_config(model_cfg.quantization, dtype)
    if device_map is not None:
        kwargs.update(device_map=device_map, max_memory=max_memory_mapping(model_cfg.max_memory))
    try:
        with _quiet_load_report():
            model, info = AutoModelForImageTextToText.from_pretrained(name, **kwargs)
    except (OSError, ValueError) as err:  # HFValidationError is a ValueError
        raise UserError(f"cannot load model '{name}': {first_line(err)} ({_offline_hint()})") from None
    except ImportError as err:
        raise UserError(f"cannot load model '{name}': {err}") from None
    except Exception as err:  # noqa: BLE001 - a folder checked by folder_check can still break a loader its own way
        raise UserError(f"cannot load model '{name}': {type(err).__name__}: {first_line(err)}") from None
    refuse_incomplete_load(info, name)
    return model


@contextlib.contextmanager
def _quiet_load_report():
    """Hide transformers' table of missing / unexpected / mismatched weights (and its note on missing tied
    weights): `refuse_incomplete_load` turns the same facts into one line."""
    # A filter, not a level: transformers runs an extra tensor-parallel check (and warns) when the level is raised.
    report = logging.getLogger("transformers.modeling_utils")
    report.addFilter(_not_a_load_report)
    try:
        yield
    finally:
        report.removeFilter(_not_a_load_report)


def _not_a_load_report(record: logging.LogRecord) -> bool:
    message = record.getMessage()
    return "LOAD REPORT" not in message and "checkpoint seem corrupted" not in message


def _quantization_config(kind: str, dtype: torch.dtype):
    from transformers import BitsAndBytesConfig

    # Only the language model is quantised: the vision tower is small next to it, gets no
    # adapters, and quantising it degrades every image feature the adapters learn from.
    # Patterns match module names from the start (transformers' should_convert_module).
    skip = ["model.visual", "visual", "lm_head"]
    if kind == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=skip)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=dtype,
        llm_int8_skip_modules=skip,
    )


def _keep_4bit_weights_trainable_on_cpu(model) -> None:
    """Stop bitsandbytes from repacking 4-bit weights for CPU inference.

    On CPUs with AVX512-BF16, bitsandbytes 0.50 repacks a Linear4bit's weight the first time it
    runs in eval mode, and later training-mode calls go through a kernel without autograd:
    gradients silently stop flowing to every adapter below that layer (evaluate, then train on,
    and the early layers' LoRA weights freeze). GPUs are unaffected; on CPU we give up the
    faster inference kernel.
    """
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False


def load_model_tokenizer(model_cfg: ModelConfig, name: str):
    """The tokenizer of the model `name` (a hub id or folder) as `load_model` loads it; `UserError` in one line."""
    from transformers import AutoTokenizer

    folder = Path(name).expanduser()
    if folder.is_dir() and not any((folder / file).exists() for file in ("tokenizer.json", "tokenizer_config.json")):
        # transformers would build something from config.json alone, which then lacks the Qwen tokens
        raise UserError(f"{name} has no tokenizer (tokenizer.json, tokenizer_config.json)")
    try:
        # AutoTokenizer, not AutoProcessor: the processor needs torchvision (its video part).
        tokenizer = AutoTokenizer.from_pretrained(
            name, revision=model_cfg.revision, trust_remote_code=model_cfg.trust_remote_code,
            local_files_only=_from_cache_only(name, model_cfg.revision))
    except Exception as err:  # noqa: BLE001 - tokenizers raises plain Exceptions for files it cannot parse
        problem = tokenizer_problem(name) if Path(name).expanduser().is_dir() else None
        if problem is not None:
            raise UserError(f"cannot load the tokenizer of '{name}': {problem}") from None
        hint = f" ({_offline_hint()})" if isinstance(err, OSError) else ""
        raise UserError(f"cannot load the tokenizer of '{name}': {type(err).__name__}: "
                        f"{first_line(err)}{hint}") from None
    try:
        special_token_ids(tokenizer)
    except ValueError as err:
        raise UserError(f"the tokenizer of '{name}' is not a Qwen tokenizer: {err}") from None
    return tokenizer


# --------------------------------------------------------------------------- adapters


def as_adapter_folder(name: str) -> Path | None:
    """`name` as a saved PEFT adapter folder (`adapter_config.json` inside), else None (a model or hub id)."""
    path = Path(name).expanduser()
    return path if (path / "adapter_config.json").is_file() else None


def adapter_base(folder: Path) -> str:
    """The base an adapter folder names; a relative name is looked up inside the folder first."""
    base = read_json_object(folder / "adapter_config.json").get("base_model_name_or_path")
    if not base or not isinstance(base, str):
        raise UserError(f"adapter folder {folder} does not name its base model (base_model_name_or_path)")
    inside = folder / base
    if not Path(base).is_absolute() and (inside / "config.json").is_file():
        return str(inside)
    return base


def attach_saved_adapter(model, folder: Path, trainable: bool):
    """The adapter saved in `folder` on `model` (a PeftModel); `UserError` when it does not fit the model:
    a shape peft cannot load, or a LoRA weight of the file or of the model without its counterpart (peft
    would only warn, and read with the adapter half missing)."""
    from peft import PeftModel
    from peft.utils import get_peft_model_state_dict

    saved = set(check_safetensors(Path(folder) / "adapter_model.safetensors"))
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            warnings.filterwarnings("ignore", message=".*[Ff]ound missing adapter keys.*")
            attached = PeftModel.from_pretrained(model, str(folder), is_trainable=trainable)
    except Exception as err:  # noqa: BLE001 - peft's errors about a file that does not fit are of any type
        lines = [line.strip() for line in str(err).splitlines() if line.strip()] or [type(err).__name__]
        detail = next((line for line in lines if line.startswith("size mismatch")), lines[0])[:300]
        raise UserError(f"the adapter in {folder} does not fit the base model ({detail}); is the base the model "
                        "it was trained on?") from None
    live = set(get_peft_model_state_dict(attached, save_embedding_layers=False))
    for keys, what in ((saved - live, "has no place in the base model"), (live - saved, "is missing from the file")):
        if keys:
            more = f" (and {len(keys) - 1} more)" if len(keys) > 1 else ""
            raise UserError(f"the adapter in {folder} does not fit the base model: {sorted(keys)[0]} {what}{more} "
                            "(adapter_model.safetensors); is the base the model it was trained on?")
    return attached


def _add_lora(model, lora_cfg: LoraConfig):
    import peft

    config = peft.LoraConfig(
        r=lora_cfg.r,
        lora_alpha=lora_cfg.alpha,
        lora_dropout=lora_cfg.dropout,
        # A string is matched in full against every module name (a regex), a list by suffix.
        target_modules=lora_cfg.target_modules,
        modules_to_save=list(lora_cfg.train_modules) or None,
        task_type="CAUSAL_LM",
    )
    try:
        with warnings.catch_warnings():
            # peft reads the deprecated `is_gradient_checkpointing` property; nothing to act on here.
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            return peft.get_peft_model(model, config)
    except ValueError as err:
        raise UserError(f"lora.target_modules / lora.train_modules match nothing usable: {err}") from None


def _upcast_trainable(model) -> None:
    """Trainable parameters in float32 (peft already does this for LoRA matrices; not for
    `train_modules` copies)."""
    for param in model.parameters():
        if param.requires_grad and param.dtype in (torch.float16, torch.bfloat16):
            param.data = param.data.float()


def skip_lora_input_casts(model, skip: bool = True) -> int:
    """Let autocast choose the dtype of LoRA's matmuls instead of peft; returns how many layers changed.

    Before every adapter, peft copies the layer's input to the adapter's dtype (bf16/fp16
    activations -> a float32 copy, because the trainable matrices are float32), and then
    autocast copies it back to half precision for `lora_A`'s matmul: two copies of every
    adapted layer's input per step (and their backward) for numbers that end up the same.
    Only for a model that runs under autocast (train.precision fp16/bf16): without autocast the
    cast is what makes float32 adapters work on half-precision activations. `skip=False` puts
    peft's casts back.

    >>> from banglaocr.config import ModelConfig, LoraConfig, TinyModelSpec
    >>> loaded = load_model(ModelConfig(name_or_path="tiny", init="tiny",
    ...                                 tiny=TinyModelSpec(hidden_size=64, num_layers=2)), LoraConfig(r=4))
    >>> skip_lora_input_casts(loaded.model) > 0
    True
    """
    from peft.tuners.tuners_utils import BaseTunerLayer

    layers = [module for module in model.modules() if isinstance(module, BaseTunerLayer)]
    for layer in layers:
        layer.cast_input_dtype_enabled = not skip  # read by peft's `_cast_input_dtype` (peft >= 0.15)
    return len(layers)


def _forward_without_autocast(self, hidden_states, *args, **kwargs):
    # A float32 vision tower must not be run in fp16 by an outer autocast (accelerate's
    # mixed precision): its MLP activations exceed the fp16 range.
    with torch.autocast(device_type=hidden_states.device.type, enabled=False):
        return type(self).forward(self, hidden_states, *args, **kwargs)


def _keep_vision_tower_in_fp32(model) -> None:
    visual = getattr(getattr(model, "model", None), "visual", None)
    if visual is None:
        return
    for param in visual.parameters():
        if param.dtype == torch.float16:
            # An offloaded (meta) weight too: accelerate casts what it streams in to the weight's dtype.
            param.data = param.data.float()
    # Bound to the instance (not a closure over it): a deep copy binds to the copy. Under a dispatch
    # hook it becomes the forward the hook calls (`placement.set_forward`).
    set_forward(visual, _forward_without_autocast)


def core_model(model):
    """The transformers model inside a PeftModel (LoRA layers included); the model itself otherwise."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


# --------------------------------------------------------------------------- reporting and saving


def trainable_parameter_summary(model) -> tuple[int, int]:
    """(trainable, total) parameter counts; shared (tied) tensors count once, 4-bit ones unpacked.

    >>> trainable_parameter_summary(torch.nn.Linear(3, 2))
    (8, 8)
    """
    trainable = total = 0
    for param in model.parameters():
        count = param.numel()
        if param.__class__.__name__ == "Params4bit":
            # bitsandbytes packs two 4-bit values per storage byte.
            storage = getattr(param, "quant_storage", torch.uint8)
            count = count * 2 * torch.empty(0, dtype=storage).element_size()
        total += count
        if param.requires_grad:
            trainable += count
    return trainable, total


def save_model_folder(loaded: LoadedModel, out_dir: str | Path) -> Path:
    """Write an adapter folder (LoRA) or a full model folder, with tokenizer and chat template.

    Layout in the module docstring. A tiny random base is written to `out_dir/base` so the
    adapter folder loads on its own: `load_model(ModelConfig(name_or_path=out_dir), None)`, or
    with plain peft: `PeftModel.from_pretrained(AutoModelForImageTextToText.from_pretrained(
    out_dir / "base"), out_dir)`.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if loaded.is_peft:
        peft_config = loaded.model.peft_config["default"]
        original_base = peft_config.base_model_name_or_path
        if loaded.base_name_or_path is None:
            _save_base_of_adapter(loaded, out / BASE_SUBFOLDER)
            peft_config.base_model_name_or_path = BASE_SUBFOLDER
        else:
            peft_config.base_model_name_or_path = loaded.base_name_or_path
        try:
            # Embeddings are frozen under LoRA (train_modules copies are saved anyway); saying so
            # also spares peft a look for the base's config relative to the working directory.
            loaded.model.save_pretrained(str(out), safe_serialization=True, save_embedding_layers=False)
        finally:
            peft_config.base_model_name_or_path = original_base
    else:
        if getattr(loaded.model, "is_quantized", False):
            raise UserError("a quantised model cannot be saved as a full model folder (merge into an "
                            "unquantised base instead)")
        loaded.model.save_pretrained(str(out), safe_serialization=True)
    loaded.tokenizer.save_pretrained(str(out))
    return out


def _save_base_of_adapter(loaded: LoadedModel, folder: Path) -> None:
    """Save the frozen base weights of a LoRA model, without the adapters peft injected."""
    base = loaded.model.get_base_model()
    state = {}
    for key, tensor in offloaded_state_dict(base).items():  # offloaded layers (model.device_map) read back
        if "lora_" in key or ".modules_to_save." in key:
            continue
        # peft wraps targeted layers (`q_proj.base_layer.weight`) and train_modules
        # (`merger.original_module.weight`); the plain model names them without that level.
        key = key.replace(".base_layer.", ".").replace(".original_module.", ".")
        state[key] = tensor
    base.save_pretrained(str(folder), state_dict=state, safe_serialization=True)
    loaded.tokenizer.save_pretrained(str(folder))

