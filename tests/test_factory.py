"""The model factory: tiny configs, LoRA, full fine-tune, quantisation, checkpointing, saving."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from banglaocr.config import LoraConfig, ModelConfig, TinyModelSpec
from banglaocr.errors import UserError
from banglaocr.model.factory import (
    load_model,
    resolve_dtype,
    save_model_folder,
    skip_lora_input_casts,
    tiny_model_config,
    trainable_parameter_summary,
)
from banglaocr.model.tokenizers import special_token_ids

SPEC = TinyModelSpec(hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=128,
                     vision_depth=2, vision_hidden_size=64, vision_heads=4, vision_intermediate_size=128)
TINY = ModelConfig(name_or_path="tiny", init="tiny", tiny=SPEC)


def _tiny_inputs(loaded, batch: int = 2, height: int = 32, widths=(64, 96), seed: int = 0) -> dict:
    """A right-padded batch in Qwen3-VL's chat layout: random pixels, a few text tokens, labels.

    Built by hand (not through the data collator) so these tests depend on the model alone.
    """
    generator = torch.Generator().manual_seed(seed)
    ids = special_token_ids(loaded.tokenizer)
    vision = loaded.config.vision_config
    patch, merge = vision.patch_size, vision.spatial_merge_size
    text = loaded.tokenizer.encode("কলম", add_special_tokens=False)
    rows, grids, pixels = [], [], []
    for index in range(batch):
        width = widths[index % len(widths)]
        grid = [1, height // patch, width // patch]
        image_tokens = grid[1] * grid[2] // merge**2
        row = ([ids["im_start"]] + text + [ids["vision_start"]] + [ids["image_pad"]] * image_tokens
               + [ids["vision_end"]] + text[: index + 1] + [ids["im_end"]])
        rows.append(row)
        grids.append(grid)
        pixels.append(torch.rand(grid[1] * grid[2], 3 * vision.temporal_patch_size * patch * patch,
                                 generator=generator) * 2 - 1)
    length = max(len(row) for row in rows)
    input_ids = torch.full((batch, length), ids["pad"])
    attention_mask = torch.zeros(batch, length, dtype=torch.long)
    for index, row in enumerate(rows):
        input_ids[index, : len(row)] = torch.tensor(row)
        attention_mask[index, : len(row)] = 1
    labels = torch.where(attention_mask.bool(), input_ids, torch.full_like(input_ids, -100))
    labels[input_ids == ids["image_pad"]] = -100
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "mm_token_type_ids": (input_ids == ids["image_pad"]).int(),
        "pixel_values": torch.cat(pixels),
        "image_grid_thw": torch.tensor(grids),
        "labels": labels,
    }


def _loss(model, inputs) -> torch.Tensor:
    return model(**inputs).loss


def _logits(model, inputs) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        inputs = {key: value for key, value in inputs.items() if key != "labels"}
        return model(**inputs).logits


def _tiny(lora: LoraConfig | None = LoraConfig(r=4, dropout=0.0), seed: int = 0, **model_overrides):
    torch.manual_seed(seed)
    config = ModelConfig(**{**TINY.__dict__, **model_overrides})
    return load_model(config, lora)


def _randomise_adapters(model, seed: int = 1) -> None:
    """LoRA B starts at zero (the adapter is a no-op); give it weights so saving is tested for real."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.requires_grad:
                param.add_(torch.randn(param.shape, generator=generator) * 0.05)


# --------------------------------------------------------------------------- tiny configs


@pytest.mark.parametrize("spec", [
    TinyModelSpec(),
    SPEC,
    TinyModelSpec(hidden_size=256, num_layers=4, num_heads=4, num_kv_heads=4, vision_depth=4),
    TinyModelSpec(hidden_size=64, num_layers=1, num_heads=2, num_kv_heads=1, vision_depth=5),
])
def test_tiny_config_follows_the_qwen3_vl_rules(spec, char_tokenizer):
    config = tiny_model_config(spec, char_tokenizer)
    text, vision = config.text_config, config.vision_config
    head_dim = spec.hidden_size // spec.num_heads
    assert text.head_dim == head_dim
    assert sum(text.rope_parameters["mrope_section"]) == head_dim // 2
    assert math.isqrt(vision.num_position_embeddings) ** 2 == vision.num_position_embeddings
    indexes = vision.deepstack_visual_indexes
    assert 1 <= len(indexes) <= min(3, spec.num_layers) and len(set(indexes)) == len(indexes)
    assert all(0 <= i < spec.vision_depth for i in indexes)
    assert (vision.patch_size, vision.spatial_merge_size, vision.temporal_patch_size) == (16, 2, 2)
    assert vision.out_hidden_size == text.hidden_size == spec.hidden_size
    assert config.tie_word_embeddings and text.tie_word_embeddings


@pytest.mark.parametrize("which", ["char_tokenizer", "qwen_tokenizer"])
def test_tiny_config_takes_every_token_id_from_the_tokenizer(request, which):
    tokenizer = request.getfixturevalue(which)
    ids = special_token_ids(tokenizer)
    config = tiny_model_config(SPEC, tokenizer)
    assert config.text_config.vocab_size == len(tokenizer)
    assert (config.image_token_id, config.video_token_id) == (ids["image_pad"], ids["video_pad"])
    assert (config.vision_start_token_id, config.vision_end_token_id) == (ids["vision_start"], ids["vision_end"])
    assert config.text_config.eos_token_id == tokenizer.eos_token_id == ids["im_end"]
    assert config.text_config.pad_token_id == tokenizer.pad_token_id == ids["pad"]
    assert config.text_config.bos_token_id == ids["pad"]  # as in Qwen3-VL's config (<|endoftext|>)


def test_mrope_section_matches_qwen3_vl_2b_at_its_head_dim(char_tokenizer):
    spec = TinyModelSpec(hidden_size=2048, num_heads=16, num_kv_heads=8)
    assert tiny_model_config(spec, char_tokenizer).text_config.rope_parameters["mrope_section"] == [24, 20, 20]


def test_dtype_policy():
    base = ModelConfig(name_or_path="x")
    assert resolve_dtype(base, "fp32", full_finetune=False) == torch.float32
    assert resolve_dtype(base, "bf16", full_finetune=False) == torch.bfloat16
    assert resolve_dtype(base, "fp16", full_finetune=False) == torch.float16
    assert resolve_dtype(base, "fp16", full_finetune=True) == torch.float32
    explicit = ModelConfig(name_or_path="x", dtype="bfloat16")
    assert resolve_dtype(explicit, "fp32", full_finetune=True) == torch.bfloat16


# --------------------------------------------------------------------------- LoRA / full fine-tune


def test_lora_step_trains_adapters_only():
    loaded = _tiny()
    assert loaded.is_peft and loaded.base_name_or_path is None
    model = loaded.model
    model.train()
    loss = _loss(model, _tiny_inputs(loaded))
    assert torch.isfinite(loss)
    loss.backward()
    lora_b = {n: p for n, p in model.named_parameters() if "lora_B" in n}
    assert lora_b and all(p.grad is not None and p.grad.abs().sum() > 0 for p in lora_b.values())
    for name, param in model.named_parameters():
        if "lora_" not in name:
            assert not param.requires_grad and param.grad is None, name
    trainable, total = trainable_parameter_summary(model)
    assert trainable == sum(p.numel() for n, p in model.named_parameters() if "lora_" in n)
    assert 0 < trainable < total


def test_no_vision_module_gets_lora():
    model = _tiny().model
    lora_modules = [name for name, module in model.named_modules() if hasattr(module, "lora_A")]
    assert lora_modules and not [name for name in lora_modules if ".visual." in name]
    assert all(".language_model." in name for name in lora_modules)
    # every linear layer of the language model is adapted: 7 per decoder layer
    assert len(lora_modules) == 7 * SPEC.num_layers


def test_train_modules_are_trained_in_full_next_to_the_adapters():
    loaded = _tiny(LoraConfig(r=4, train_modules=["merger"]))
    trainable = [n for n, p in loaded.model.named_parameters() if p.requires_grad]
    assert any(".visual.merger.modules_to_save." in n for n in trainable)
    assert not any("deepstack" in n for n in trainable)


def test_full_finetune_trains_every_parameter():
    loaded = _tiny(lora=None)
    assert not loaded.is_peft
    model = loaded.model
    trainable, total = trainable_parameter_summary(model)
    assert trainable == total
    model.train()
    _loss(model, _tiny_inputs(loaded)).backward()
    assert model.model.visual.blocks[0].mlp.linear_fc1.weight.grad.abs().sum() > 0
    assert model.lm_head.weight is model.model.language_model.embed_tokens.weight  # tied


def test_fp16_keeps_the_vision_tower_and_trainable_weights_in_fp32():
    torch.manual_seed(0)
    loaded = load_model(TINY, LoraConfig(r=4, dropout=0.0, train_modules=["merger"]), precision="fp16")
    base = loaded.model.get_base_model()
    assert base.model.language_model.layers[0].mlp.up_proj.base_layer.weight.dtype == torch.float16
    assert {p.dtype for p in base.model.visual.parameters()} == {torch.float32}
    assert {p.dtype for p in loaded.model.parameters() if p.requires_grad} == {torch.float32}
    # An outer fp16 autocast does not reach the vision tower.
    seen = []
    hook = base.model.visual.blocks[0].mlp.linear_fc1.register_forward_hook(
        lambda module, args, output: seen.append(output.dtype))
    inputs = _tiny_inputs(loaded)
    with torch.autocast("cpu", dtype=torch.float16):
        loss = _loss(loaded.model, inputs)
    hook.remove()
    assert seen == [torch.float32] and torch.isfinite(loss)


@pytest.mark.parametrize("lora", [LoraConfig(r=4, dropout=0.0), None], ids=["lora", "full"])
def test_gradient_checkpointing_gives_the_same_gradients(lora):
    grads = []
    for checkpointing in (False, True):
        loaded = _tiny(lora, gradient_checkpointing=checkpointing)
        if lora is not None:
            _randomise_adapters(loaded.model)  # non-zero B so every LoRA matrix gets a gradient
        model = loaded.model
        model.train()
        with warnings.catch_warnings():
            warnings.simplefilter("error", FutureWarning)  # no deprecated checkpointing API on our path
            loss = _loss(model, _tiny_inputs(loaded))
            loss.backward()
        grads.append((loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}))
    base = _tiny(lora, gradient_checkpointing=True).model
    assert any(getattr(m, "gradient_checkpointing", False) for m in base.modules())
    (loss_a, grads_a), (loss_b, grads_b) = grads
    assert torch.allclose(loss_a, loss_b, atol=1e-6)
    assert grads_a.keys() == grads_b.keys()
    for name in grads_a:
        assert torch.allclose(grads_a[name], grads_b[name], atol=1e-5), name
    assert sum(g.abs().sum() > 0 for g in grads_a.values()) >= len(grads_a) // 2


def test_lora_inputs_left_to_autocast_give_the_same_loss_and_gradients():
    # bf16 weights, float32 adapters, bf16 autocast: what train.precision=bf16 runs with LoRA.
    results = []
    for skip in (False, True):
        torch.manual_seed(0)
        loaded = load_model(TINY, LoraConfig(r=4, dropout=0.0), precision="bf16")
        _randomise_adapters(loaded.model)
        assert skip_lora_input_casts(loaded.model, skip=skip) > 0
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = _loss(loaded.model, _tiny_inputs(loaded))
        loss.backward()
        results.append((loss.detach(), {n: p.grad.clone() for n, p in loaded.model.named_parameters()
                                        if p.requires_grad}))
    (loss_cast, grads_cast), (loss_autocast, grads_autocast) = results
    # bf16 -> float32 -> bf16 is exact, so the matmuls see the same numbers either way.
    assert torch.equal(loss_cast, loss_autocast)
    assert all(torch.equal(grads_cast[name], grads_autocast[name]) for name in grads_cast)
    assert all(grad.dtype == torch.float32 for grad in grads_autocast.values())


# --------------------------------------------------------------------------- pretrained folders


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    """A tiny random model saved as a full model folder (stands in for a hub checkpoint)."""
    loaded = _tiny(lora=None)
    folder = tmp_path_factory.mktemp("tiny-base")
    save_model_folder(loaded, folder)
    return folder, loaded


def test_pretrained_folder_loads_with_the_same_logits(tiny_folder):
    folder, original = tiny_folder
    loaded = load_model(ModelConfig(name_or_path=str(folder)), LoraConfig(r=4))
    assert loaded.base_name_or_path == str(folder)
    inputs = _tiny_inputs(loaded)
    assert torch.allclose(_logits(loaded.model, inputs), _logits(original.model, inputs), atol=1e-6)
    assert loaded.tokenizer.get_vocab() == original.tokenizer.get_vocab()
    assert loaded.tokenizer.chat_template == original.tokenizer.chat_template


@pytest.mark.parametrize("bits", ["4bit", "8bit"])
def test_quantized_base_trains_lora(tiny_folder, bits):
    import bitsandbytes as bnb

    folder, original = tiny_folder
    loaded = load_model(ModelConfig(name_or_path=str(folder), quantization=bits), LoraConfig(r=4, dropout=0.0))
    base = loaded.model.get_base_model()
    quantized_type = bnb.nn.Linear4bit if bits == "4bit" else bnb.nn.Linear8bitLt
    quantized = [n for n, m in base.named_modules() if isinstance(m, quantized_type)]
    assert len(quantized) == 7 * SPEC.num_layers
    assert all(".language_model." in n for n in quantized)  # the vision tower stays unquantised
    inputs = _tiny_inputs(loaded)
    # The quantised model still computes nearly the same function.
    reference = _logits(original.model, inputs)
    error = (_logits(loaded.model, inputs) - reference).abs().mean() / reference.abs().mean()
    assert error < 0.2
    loaded.model.train()
    loss = _loss(loaded.model, inputs)
    assert torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0
               for n, p in loaded.model.named_parameters() if "lora_B" in n)
    trainable, total = trainable_parameter_summary(loaded.model)
    assert 0 < trainable < total


def test_quantization_without_lora_is_a_user_error(tiny_folder):
    folder, _ = tiny_folder
    with pytest.raises(UserError, match="needs LoRA"):
        load_model(ModelConfig(name_or_path=str(folder), quantization="4bit"), None)


# --------------------------------------------------------------------------- saving


def test_adapter_folder_round_trip(tmp_path):
    loaded = _tiny(LoraConfig(r=4, dropout=0.0, train_modules=["merger"]))
    _randomise_adapters(loaded.model)
    inputs = _tiny_inputs(loaded)
    expected = _logits(loaded.model, inputs)
    save_model_folder(loaded, tmp_path)
    names = {p.name for p in tmp_path.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "chat_template.jinja",
            "base"} <= names
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in (tmp_path / "base").iterdir()}

    # Through this package (frozen adapter for inference) ...
    reloaded = load_model(ModelConfig(name_or_path=str(tmp_path)), None)
    assert reloaded.is_peft
    assert torch.allclose(_logits(reloaded.model, inputs), expected, atol=1e-6)
    assert trainable_parameter_summary(reloaded.model)[0] == 0
    # ... and with plain transformers + peft.
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText, AutoTokenizer

    base = AutoModelForImageTextToText.from_pretrained(tmp_path / "base")
    plain = PeftModel.from_pretrained(base, tmp_path)
    assert torch.allclose(_logits(plain, inputs), expected, atol=1e-6)
    tokenizer = AutoTokenizer.from_pretrained(tmp_path)
    assert special_token_ids(tokenizer) == special_token_ids(loaded.tokenizer)
    # The saved base is the untouched random model: adapters off gives the same logits.
    with loaded.model.disable_adapter():
        without_adapter = _logits(loaded.model, inputs)
    fresh_base = AutoModelForImageTextToText.from_pretrained(tmp_path / "base")  # (peft injected into `base`)
    assert torch.allclose(_logits(fresh_base, inputs), without_adapter, atol=1e-6)
    assert not torch.allclose(without_adapter, expected, atol=1e-3)


def test_adapter_folder_reloads_trainable_and_saves_its_own_base(tmp_path):
    loaded = _tiny()
    save_model_folder(loaded, tmp_path / "first")
    resumed = load_model(ModelConfig(name_or_path=str(tmp_path / "first")), LoraConfig(r=4))
    assert trainable_parameter_summary(resumed.model)[0] == trainable_parameter_summary(loaded.model)[0]
    _randomise_adapters(resumed.model)
    inputs = _tiny_inputs(resumed)
    expected = _logits(resumed.model, inputs)
    save_model_folder(resumed, tmp_path / "second")
    assert (tmp_path / "second" / "base" / "model.safetensors").is_file()  # independent of "first"
    reloaded = load_model(ModelConfig(name_or_path=str(tmp_path / "second")), None)
    assert torch.allclose(_logits(reloaded.model, inputs), expected, atol=1e-6)


def test_full_model_folder_round_trip(tmp_path):
    from transformers import AutoModelForImageTextToText

    loaded = _tiny(lora=None)
    inputs = _tiny_inputs(loaded)
    expected = _logits(loaded.model, inputs)
    save_model_folder(loaded, tmp_path)
    plain = AutoModelForImageTextToText.from_pretrained(tmp_path)
    assert torch.allclose(_logits(plain, inputs), expected, atol=1e-6)
    assert plain.generation_config.eos_token_id == [loaded.tokenizer.eos_token_id, loaded.tokenizer.pad_token_id]
    reloaded = load_model(ModelConfig(name_or_path=str(tmp_path)), None)
    assert torch.allclose(_logits(reloaded.model, inputs), expected, atol=1e-6)


def test_tiny_model_generates():
    loaded = _tiny()
    inputs = _tiny_inputs(loaded, batch=1)
    inputs.pop("labels")
    out = loaded.model.generate(**inputs, max_new_tokens=3, do_sample=False)
    prompt_length = inputs["input_ids"].shape[1]
    assert prompt_length < out.shape[1] <= prompt_length + 3
    assert torch.equal(out[:, :prompt_length], inputs["input_ids"])


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize("name", ["/no/such/model/folder", "./missing-model", "~/nowhere/model"])
def test_missing_folder_is_a_user_error(name):
    with pytest.raises(UserError, match="model folder not found"):
        load_model(ModelConfig(name_or_path=name), LoraConfig())


def test_uncached_hub_id_offline_is_a_user_error(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError) as err:
        load_model(ModelConfig(name_or_path="Qwen/Qwen3-VL-2B-Instruct-not-cached"), LoraConfig())
    message = str(err.value)
    assert "HF_HUB_OFFLINE" in message and "local model folder" in message and "\n" not in message


def test_folder_without_a_model_is_a_user_error(tmp_path):
    (tmp_path / "notes.txt").write_text("not a model", encoding="utf-8")
    with pytest.raises(UserError, match="is not a model folder"):
        load_model(ModelConfig(name_or_path=str(tmp_path)), LoraConfig())


def test_random_init_builds_a_named_architecture_and_trains(tmp_path):
    """`model.init: random`: the architecture of a config.json folder with random weights; the real loop runs."""
    import train_helpers as helpers

    tiny = load_model(ModelConfig(name_or_path="t", init="tiny", tiny=TinyModelSpec(tokenizer="char")), None)
    tiny.model.config.save_pretrained(str(tmp_path / "arch"))
    tiny.tokenizer.save_pretrained(str(tmp_path / "arch"))
    built = load_model(ModelConfig(name_or_path=str(tmp_path / "arch"), init="random"), None)
    assert built.model.config.text_config.hidden_size == tiny.model.config.text_config.hidden_size
    assert len(built.tokenizer) == len(tiny.tokenizer)
    summary = helpers.train(tmp_path / "run", f"model.name_or_path={tmp_path / 'arch'}", "model.init=random",
                            "train.max_steps=2")
    assert summary["steps"] == 2


def test_the_shipped_2b_architecture_is_qwen3_vl_2b():
    """qwen3-vl-2b-arch (config only): built on the meta device, it has the 2B model's ~2.1 B parameters."""
    from transformers import AutoConfig, Qwen3VLForConditionalGeneration

    from banglaocr.model.shipped import architecture_source

    config = AutoConfig.from_pretrained(architecture_source("qwen3-vl-2b-arch"))
    with torch.device("meta"):
        model = Qwen3VLForConditionalGeneration._from_config(config)
    total = sum(p.numel() for p in model.parameters())
    assert 2.0e9 < total < 2.3e9, total
    assert config.text_config.num_hidden_layers == 28 and config.vision_config.depth == 24
