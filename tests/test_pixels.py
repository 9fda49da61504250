"""Pixels (banglaocr.data.pixels): budget geometry, batching, Qwen-exact patches."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from banglaocr.config import ImageConfig
from banglaocr.data.pixels import (
    QwenResize,
    budget_width,
    image_grid,
    images_to_batch,
    ink_box,
    model_size,
    patchify,
    resize_for_model,
    resize_to_budget,
    visual_tokens,
)


def qwen3_vl_image_processor():
    """Qwen2VLImageProcessorPil configured like Qwen3-VL-2B-Instruct's, except min_pixels.

    Qwen3-VL-2B ships min_pixels = 65536, which would upscale a word crop; the budget replaces
    that (DESIGN decision 6), so min_pixels is small here and smart_resize keeps budget sizes.
    """
    from transformers import Qwen2VLImageProcessorPil

    return Qwen2VLImageProcessorPil(
        patch_size=16, merge_size=2, temporal_patch_size=2,
        image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5],
        min_pixels=32 * 32, max_pixels=16777216,
    )


def word_like(width: int, height: int, seed: int) -> Image.Image:
    """Dark strokes on light, slightly noisy paper: the kind of image the budget sees."""
    rng = np.random.default_rng(seed)
    paper = rng.integers(200, 256, (height, width, 3), dtype=np.uint8)
    image = Image.fromarray(paper)
    draw = ImageDraw.Draw(image)
    for _ in range(6):
        x0, y0 = int(rng.integers(0, width - 4)), int(rng.integers(0, height - 4))
        x1, y1 = int(rng.integers(x0 + 2, width)), int(rng.integers(y0 + 2, height))
        draw.line((x0, y0, x1, y1), fill=tuple(int(v) for v in rng.integers(0, 80, 3)), width=3)
    return image


# --------------------------------------------------------------------------- patchify == Qwen


@pytest.mark.parametrize("height, widths", [(32, [32]), (32, [128, 64, 96]), (64, [256, 64, 512, 160]),
                                            (96, [96, 32]), (128, [416])])
def test_patchify_equals_qwen_image_processor(height, widths):
    images = [word_like(w, height, seed) for seed, w in enumerate(widths)]
    expected = qwen3_vl_image_processor()(images=images, return_tensors="pt")

    batch, batch_widths = images_to_batch(images)
    pixel_values, grid = patchify(batch, batch_widths)

    assert grid.tolist() == expected["image_grid_thw"].tolist()
    assert pixel_values.shape == expected["pixel_values"].shape
    assert pixel_values.dtype == torch.float32
    assert (pixel_values - expected["pixel_values"]).abs().max().item() < 1e-5


def test_patchify_equals_qwen_on_resized_real_crops():
    """Budget-resized crops of odd sizes (also tight-cropped and stretched) go through unchanged."""
    sources = [word_like(w, h, seed) for seed, (w, h) in enumerate([(173, 41), (90, 77), (301, 52), (33, 60)])]
    for budget in (ImageConfig(height=64), ImageConfig(height=32, stretch=2.0, tight_crop=True, max_width=256)):
        images = [resize_to_budget(image, budget) for image in sources]
        expected = qwen3_vl_image_processor()(images=images, return_tensors="pt")
        pixel_values, grid = patchify(*images_to_batch(images))
        assert grid.tolist() == expected["image_grid_thw"].tolist()
        assert (pixel_values - expected["pixel_values"]).abs().max().item() < 1e-5


def test_patchify_drops_padding_and_counts_visual_tokens():
    batch, widths = images_to_batch([word_like(64, 32, 0), word_like(160, 32, 1)])
    pixel_values, grid = patchify(batch, widths)
    assert grid.tolist() == image_grid(32, widths).tolist() == [[1, 2, 4], [1, 2, 10]]
    # 4 patches per visual token; the narrow image contributes no patch of its padding.
    assert pixel_values.shape[0] == 4 * (visual_tokens(32, 64) + visual_tokens(32, 160)) == 4 * (2 + 5)
    # Patches of the first image equal patchify of that image alone.
    alone, _ = patchify(*images_to_batch([word_like(64, 32, 0)]))
    assert torch.equal(pixel_values[: alone.shape[0]], alone)


def test_patchify_rejects_sizes_off_the_token_grid():
    with pytest.raises(ValueError, match="multiples of 32"):
        patchify(torch.zeros(1, 3, 48, 64), [64])
    with pytest.raises(ValueError, match="multiples of 32"):
        patchify(torch.zeros(1, 3, 32, 64), [40])


# --------------------------------------------------------------------------- resize


@pytest.mark.parametrize("size", [(300, 100), (40, 90), (1000, 20), (7, 7), (513, 64), (64, 64)])
@pytest.mark.parametrize("budget", [ImageConfig(), ImageConfig(height=32, stretch=2.0, max_width=256),
                                    ImageConfig(height=96, min_width=64, max_width=1024)])
def test_resize_to_budget_geometry(size, budget):
    image = resize_to_budget(Image.new("RGB", size, "white"), budget)
    width, height = image.size
    assert image.mode == "RGB"
    assert height == budget.height and height % 32 == 0
    assert width % 32 == 0 and budget.min_width <= width <= budget.max_width
    # Aspect kept (times the stretch) up to rounding to whole 32-pixel tokens, unless clamped.
    ideal = size[0] * budget.height / size[1] * budget.stretch
    if budget.min_width + 16 < ideal < budget.max_width - 16:
        assert abs(width - ideal) <= 16
    # A budget-sized image is a fixed point of Qwen's smart_resize (no further scaling).
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

    assert smart_resize(height, width, factor=32, min_pixels=32 * 32, max_pixels=16777216) == (height, width)


def test_budget_width_clamps_and_stretches():
    budget = ImageConfig(height=64, min_width=64, max_width=512)
    assert budget_width(64, 10, budget) == 64
    assert budget_width(64, 5000, budget) == 512
    assert budget_width(32, 64, dataclasses.replace(budget, stretch=2.0)) == 2 * budget_width(32, 64, budget)


def test_tight_crop_cuts_paper_margins():
    image = Image.new("RGB", (400, 200), (235, 235, 235))
    ImageDraw.Draw(image).rectangle((100, 80, 199, 99), fill=(20, 20, 20))  # ink 100 x 20
    box = ink_box(image)
    assert box is not None
    left, top, right, bottom = box
    assert 95 <= left <= 100 and 75 <= top <= 80 and 200 <= right <= 205 and 100 <= bottom <= 105
    cropped = resize_to_budget(image, ImageConfig(height=32, tight_crop=True))
    loose = resize_to_budget(image, ImageConfig(height=32))
    # Cropped, the 5:1 ink fills the width (~160 px at height 32); uncropped it is 2:1 paper (64 px).
    assert cropped.width >= 128 and loose.width == 64


def test_tight_crop_leaves_blank_images_alone():
    assert ink_box(Image.new("RGB", (50, 20), "white")) is None
    assert resize_to_budget(Image.new("RGB", (64, 32), "white"), ImageConfig(height=32, tight_crop=True)).size == (64, 32)


def test_transparent_images_land_on_white_paper():
    image = Image.new("RGBA", (64, 32), (0, 0, 0, 0))
    out = resize_to_budget(image, ImageConfig(height=32))
    assert np.asarray(out).min() == 255


# --------------------------------------------------------------------------- batch


def test_images_to_batch_pads_with_white():
    batch, widths = images_to_batch([Image.new("RGB", (32, 32), "black"), Image.new("RGB", (96, 32), "black")])
    assert widths == [32, 96] and batch.shape == (2, 3, 32, 96) and batch.dtype == torch.float32
    assert batch[0, :, :, :32].max() == 0 and batch[0, :, :, 32:].min() == 1 and batch[1].max() == 0


def test_images_to_batch_needs_equal_heights():
    with pytest.raises(ValueError, match="same height"):
        images_to_batch([Image.new("RGB", (32, 32)), Image.new("RGB", (32, 64))])


# --------------------------------------------------------------------------- Qwen's own geometry (smart_resize)


def test_qwen_resize_size_equals_transformers_smart_resize():
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

    rng = np.random.default_rng(0)
    sizes = [(100, 300), (64, 192), (16, 16), (48, 80), (33, 1000), (2000, 3000)]
    sizes += [(int(h), int(w)) for h, w in rng.integers(8, 1500, size=(300, 2))]
    for min_pixels, max_pixels in [(32 * 32, 32 * 384), (65536, 16777216), (3136, 1003520), (4096, 4096)]:
        geometry = QwenResize(min_pixels=min_pixels, max_pixels=max_pixels)
        for height, width in sizes:
            if max(height, width) / min(height, width) > 200:
                continue
            assert geometry.size(height, width) == smart_resize(height, width, factor=32, min_pixels=min_pixels,
                                                                max_pixels=max_pixels), (height, width, min_pixels)


def test_the_budget_and_smart_resize_differ_on_the_same_pixel_limits():
    """The shipped tiny model's budget (height 32, width 32..384, stretch 2) next to smart_resize with the
    pixel limits its preprocessor_config.json states: a 300x100 crop is one row of tokens vs two."""
    budget = ImageConfig(height=32, max_width=384, min_width=32, stretch=2.0)
    same_limits = QwenResize(min_pixels=32 * 32, max_pixels=32 * 384)
    assert model_size(100, 300, budget) == (32, 192) and model_size(100, 300, same_limits) == (64, 192)
    assert resize_for_model(Image.new("RGB", (300, 100), "white"), budget).size == (192, 32)


@pytest.mark.parametrize("min_pixels, max_pixels", [(32 * 32, 32 * 384), (65536, 16777216), (4096, 16384)])
def test_qwen_resize_then_patchify_equals_the_image_processor_on_raw_crops(min_pixels, max_pixels):
    """Crops of any size, resized by `resize_for_model(QwenResize)` and patchified, give exactly what
    Qwen's own image processor (with those limits) gives for the raw crop."""
    from transformers import Qwen2VLImageProcessorPil

    processor = Qwen2VLImageProcessorPil(patch_size=16, merge_size=2, temporal_patch_size=2,
                                         image_mean=[0.5] * 3, image_std=[0.5] * 3,
                                         size={"shortest_edge": min_pixels, "longest_edge": max_pixels})
    geometry = QwenResize(min_pixels=min_pixels, max_pixels=max_pixels)
    for seed, (width, height) in enumerate([(173, 41), (300, 100), (90, 77), (33, 60), (640, 64)]):
        raw = word_like(width, height, seed)
        expected = processor(images=[raw], return_tensors="pt")
        pixel_values, grid = patchify(*images_to_batch([resize_for_model(raw, geometry)]))
        assert grid.tolist() == expected["image_grid_thw"].tolist()
        assert (pixel_values - expected["pixel_values"]).abs().max().item() < 1e-5


def test_qwen_resize_refuses_nonsense_limits_and_sizes_slivers():
    with pytest.raises(ValueError, match="min_pixels <= max_pixels"):
        QwenResize(min_pixels=4096, max_pixels=1024)
    # transformers refuses aspect ratios over 200; banglaocr still gives the sliver a size of whole tokens
    height, width = QwenResize(1024, 12288).size(1, 1000)
    assert height >= 32 and width >= 32 and height % 32 == 0 and width % 32 == 0
