"""Augmentation (banglaocr.data.augment): seeded, in range, padding kept white, handwriting-like effects."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from banglaocr.config import AugmentConfig
from banglaocr.data.augment import augment_batch
from banglaocr.data.pixels import image_grid, images_to_batch, patchify
from test_pixels import word_like

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
