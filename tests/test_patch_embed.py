"""The vision tower's patch embedding as a matmul (banglaocr.model.patch_embed): the same numbers as
Qwen3-VL's Conv3d, the same trained weights, and saved folders that plain transformers loads as before."""

from __future__ import annotations

import torch

import train_helpers as helpers
from banglaocr.config import ModelConfig
from banglaocr.model import factory
from banglaocr.model.patch_embed import MatmulPatchEmbed, use_matmul_patch_embedding


def test_same_outputs_as_the_conv3d_on_the_real_2b_shape():
    torch.manual_seed(0)
    conv = torch.nn.Conv3d(3, 1024, kernel_size=(2, 16, 16), stride=(2, 16, 16))  # Qwen3-VL-2B's patch embed
    patches = torch.randn(300, 3, 2, 16, 16)
    expected = conv(patches)
    assert use_matmul_patch_embedding(conv) == 1 and isinstance(conv, MatmulPatchEmbed)
    assert float((conv(patches) - expected).abs().max()) <= 1e-5
    # A larger input is still a convolution (the general path).
    video = torch.randn(1, 3, 4, 32, 32)
    assert use_matmul_patch_embedding(conv, enabled=False) == 1
    reference = conv(video)
    use_matmul_patch_embedding(conv)
    assert float((conv(video) - reference).abs().max()) <= 1e-5


def test_the_factory_uses_it_and_the_vision_tower_gives_the_same_outputs():
    torch.manual_seed(0)
    loaded = factory.load_model(ModelConfig(name_or_path="t", init="tiny"), None)
    visual = loaded.model.model.visual
    assert type(visual.patch_embed.proj) is MatmulPatchEmbed
    grid = torch.tensor([[1, 2, 8]])
    pixels = torch.randn(16, 3 * 2 * 16 * 16)
    with torch.no_grad():
        fast = visual(pixels, grid_thw=grid)
        use_matmul_patch_embedding(visual, enabled=False)
        slow = visual(pixels, grid_thw=grid)
    fast, slow = (out.pooler_output if hasattr(out, "pooler_output") else out[0] for out in (fast, slow))
    assert float((fast - slow).abs().max()) <= 1e-5


def test_a_short_full_fine_tune_trains_the_same_weights(tmp_path, monkeypatch):
    args = ("lora=null", "train.max_steps=4", "train.save_steps=4")
    helpers.train(tmp_path / "matmul", *args)
    monkeypatch.setattr(factory, "use_matmul_patch_embedding", lambda model, enabled=True: 0)
    helpers.train(tmp_path / "conv", *args)
    matmul = helpers.trainable(tmp_path / "matmul" / "checkpoints" / "step-4")
    conv = helpers.trainable(tmp_path / "conv" / "checkpoints" / "step-4")
    assert any("patch_embed" in name for name in matmul)
    # Float rounding differs (a matmul sums in another order than the convolution); AdamW turns such
    # differences into steps of up to ~lr on near-zero gradients: far below what training moved.
    # 4 steps at lr 2e-3 move weights by up to ~8e-3.
    assert helpers.max_abs_diff(matmul, conv) <= 1e-4


def test_saved_folders_hold_the_usual_conv3d(tmp_path):
    from transformers import AutoModelForImageTextToText

    loaded = factory.load_model(ModelConfig(name_or_path="t", init="tiny"), None)
    factory.save_model_folder(loaded, tmp_path / "model")
    plain = AutoModelForImageTextToText.from_pretrained(str(tmp_path / "model"))
    assert type(plain.model.visual.patch_embed.proj) is torch.nn.Conv3d
    assert torch.equal(plain.model.visual.patch_embed.proj.weight, loaded.model.model.visual.patch_embed.proj.weight)
