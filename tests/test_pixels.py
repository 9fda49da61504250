"""Pixels (banglaocr.data.pixels): budget geometry, batching, augmentation, Qwen-exact patches."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from banglaocr.config import AugmentConfig, ImageConfig
from banglaocr.data.pixels import (
    augment_batch,
    budget_width,
    image_grid,
    images_to_batch,
    ink_box,
    patchify,
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


# --------------------------------------------------------------------------- augmentation


def word_batch() -> tuple[torch.Tensor, list[int]]:
    return images_to_batch([word_like(w, 64, seed) for seed, w in enumerate([256, 128, 192, 64, 256, 96])])


FULL = AugmentConfig(probability=1.0, elastic_alpha=2.0, stroke_width=1)


def test_augment_is_deterministic_under_a_seed():
    batch, widths = word_batch()
    first = augment_batch(batch, widths, FULL, torch.Generator().manual_seed(3))
    second = augment_batch(batch, widths, FULL, torch.Generator().manual_seed(3))
    other = augment_batch(batch, widths, FULL, torch.Generator().manual_seed(4))
    assert torch.equal(first, second)
    assert not torch.equal(first, other)
    assert not torch.equal(first, batch)
    assert batch.equal(word_batch()[0]), "the input batch must not be modified"


def test_augment_disabled_or_never_applied_is_a_no_op():
    batch, widths = word_batch()
    generator = torch.Generator().manual_seed(0)
    assert augment_batch(batch, widths, dataclasses.replace(FULL, enabled=False), generator) is batch
    assert torch.equal(augment_batch(batch, widths, dataclasses.replace(FULL, probability=0.0), generator), batch)


def test_augment_with_zero_strengths_is_the_identity():
    batch, widths = word_batch()
    still = AugmentConfig(probability=1.0, rotate_degrees=0, shear=0, scale=0, elastic_alpha=0, blur_sigma=0,
                          noise_std=0, stroke_width=0, contrast=0)
    out = augment_batch(batch, widths, still, torch.Generator().manual_seed(0))
    assert (out - batch).abs().max().item() < 1e-4


def test_augment_keeps_padding_white_shape_and_range():
    batch, widths = word_batch()
    out = augment_batch(batch, widths, dataclasses.replace(FULL, stroke_width=2, noise_std=0.1),
                        torch.Generator().manual_seed(1))
    assert out.shape == batch.shape and out.dtype == batch.dtype
    assert out.min() >= 0 and out.max() <= 1
    for i, width in enumerate(widths):
        assert out[i, :, :, width:].eq(1).all()


def test_augment_probability_picks_whole_images():
    batch, widths = word_batch()
    out = augment_batch(batch, widths, dataclasses.replace(FULL, probability=0.5), torch.Generator().manual_seed(0))
    changed = [not torch.equal(out[i], batch[i]) for i in range(len(widths))]
    assert any(changed) and not all(changed)


def test_augment_then_patchify_feeds_the_model_geometry():
    batch, widths = word_batch()
    out = augment_batch(batch, widths, FULL, torch.Generator().manual_seed(0))
    pixel_values, grid = patchify(out, widths)
    assert grid.tolist() == image_grid(64, widths).tolist()
    assert pixel_values.min() >= -1 and pixel_values.max() <= 1


@pytest.mark.gpu
def test_augment_and_patchify_on_cuda():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    batch, widths = word_batch()
    cuda = batch.cuda()
    first = augment_batch(cuda, widths, FULL, torch.Generator().manual_seed(5))
    second = augment_batch(cuda, widths, FULL, torch.Generator().manual_seed(5))
    assert first.device.type == "cuda" and torch.equal(first, second)
    gpu_values, gpu_grid = patchify(cuda, widths)
    cpu_values, cpu_grid = patchify(batch, widths)
    assert torch.equal(gpu_values.cpu(), cpu_values) and torch.equal(gpu_grid.cpu(), cpu_grid)


# --------------------------------------------------------------------------- handwriting-like effects


STILL = AugmentConfig(probability=1.0, rotate_degrees=0, shear=0, scale=0, elastic_alpha=0, blur_sigma=0,
                      noise_std=0, stroke_width=0, contrast=0)
"""Every scanner-like effect off: what a handwriting effect does is then all that changes."""
HANDWRITING = {"baseline_wobble": 4.0, "ink_texture": 1.0, "paper_texture": 1.0}


def bar_batch() -> tuple[torch.Tensor, list[int]]:
    """Flat light-grey paper with one black horizontal bar (rows 14-17), two widths."""
    batch = torch.full((2, 3, 32, 128), 0.9)
    batch[:, :, 14:18, 8:120] = 0.0
    batch[1, :, :, 96:] = 1.0  # the second image is 96 wide: the rest is white padding
    batch[1, :, 14:18, 88:] = torch.where(torch.arange(88, 128) < 96, 0.0, 1.0)
    return batch, [128, 96]


@pytest.mark.parametrize("name", [*HANDWRITING, "all"])
def test_handwriting_effects_are_deterministic_in_range_and_keep_padding_white(name):
    batch, widths = word_batch()
    cfg = dataclasses.replace(FULL, **(HANDWRITING if name == "all" else {name: HANDWRITING[name]}))
    first = augment_batch(batch, widths, cfg, torch.Generator().manual_seed(3))
    second = augment_batch(batch, widths, cfg, torch.Generator().manual_seed(3))
    assert torch.equal(first, second)
    assert not torch.equal(first, augment_batch(batch, widths, cfg, torch.Generator().manual_seed(4)))
    assert not torch.equal(first, augment_batch(batch, widths, FULL, torch.Generator().manual_seed(3)))
    assert first.min() >= 0 and first.max() <= 1 and first.shape == batch.shape
    for i, width in enumerate(widths):
        assert first[i, :, :, width:].eq(1).all()


def test_handwriting_effects_at_zero_leave_the_augmentation_stream_as_it_was():
    """Off (the default), the effects draw nothing: the generator ends where it would without them, so
    runs with old seeds see the same images."""
    batch, widths = word_batch()
    off = dataclasses.replace(FULL, baseline_wobble=0.0, ink_texture=0.0, paper_texture=0.0)
    assert off == FULL
    g_off, g_on = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    augment_batch(batch, widths, off, g_off)
    augment_batch(batch, widths, dataclasses.replace(FULL, ink_texture=0.5), g_on)
    assert not torch.equal(g_off.get_state(), g_on.get_state())  # on: one more draw ...
    g_plain = torch.Generator().manual_seed(0)
    augment_batch(batch, widths, FULL, g_plain)
    assert torch.equal(g_off.get_state(), g_plain.get_state())  # ... off: none


def test_baseline_wobble_moves_columns_up_and_down_within_the_amplitude():
    batch, widths = bar_batch()
    out = augment_batch(batch, widths, dataclasses.replace(STILL, baseline_wobble=4.0), torch.Generator().manual_seed(1))
    ink = (0.9 - out[0, 0]).clamp_min(0)  # ink mass per pixel, paper = 0
    rows = torch.arange(32, dtype=torch.float32).view(-1, 1)
    centre = (ink * rows).sum(0) / ink.sum(0).clamp_min(1e-6)
    bar = centre[8:120]
    assert bar.max() - bar.min() > 0.5, "the bar should waver"
    assert (bar - 15.5).abs().max() <= 4.0 + 0.1, "by at most the amplitude"
    # A vertical shift keeps each column's ink (bilinear resampling of a bar well inside the image).
    assert torch.allclose(ink.sum(0)[8:120], torch.full((112,), 4 * 0.9), atol=1e-3)


def test_ink_texture_lightens_ink_only_and_paper_texture_darkens_paper():
    batch, widths = bar_batch()
    ink_out = augment_batch(batch, widths, dataclasses.replace(STILL, ink_texture=1.0), torch.Generator().manual_seed(2))
    paper = batch == 0.9
    assert torch.allclose(ink_out[paper], batch[paper], atol=1e-6), "paper stays"
    stroke = batch == 0.0
    assert (ink_out[stroke] >= 0).all() and ink_out[stroke].max() > 0.05, "strokes get lighter in places"

    paper_out = augment_batch(batch, widths, dataclasses.replace(STILL, paper_texture=1.0),
                              torch.Generator().manual_seed(2))
    assert (paper_out <= batch + 1e-6).all(), "shading only darkens"
    assert paper_out[paper].min() < 0.85, "the paper gets visibly shaded somewhere"
    assert torch.allclose(paper_out[stroke], batch[stroke]), "black ink stays black"


def test_handwriting_effects_at_zero_strength_are_the_identity():
    batch, widths = word_batch()
    cfg = dataclasses.replace(STILL, baseline_wobble=0.0, ink_texture=0.0, paper_texture=0.0)
    assert (augment_batch(batch, widths, cfg, torch.Generator().manual_seed(0)) - batch).abs().max().item() < 1e-4


@pytest.mark.gpu
def test_handwriting_effects_on_cuda_are_deterministic():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    batch, widths = word_batch()
    cfg = dataclasses.replace(FULL, **HANDWRITING)
    first = augment_batch(batch.cuda(), widths, cfg, torch.Generator().manual_seed(5))
    second = augment_batch(batch.cuda(), widths, cfg, torch.Generator().manual_seed(5))
    assert torch.equal(first, second) and first.min() >= 0 and first.max() <= 1
    for i, width in enumerate(widths):
        assert first[i, :, :, width:].eq(1).all()
