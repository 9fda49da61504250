"""Pixels: resize word crops to the image budget, batch them and cut them into patches (image geometry).

The path of an image, in order (DESIGN "the data path"):

1. `resize_to_budget` (CPU, data-loader workers): RGB, optional tight crop to the ink, height =
   budget height, width a multiple of 32. Sizes that are multiples of 32 are left alone by Qwen's
   `smart_resize`, so what the model sees is exactly what the budget says.
2. `images_to_batch` (CPU): one float tensor [B, 3, H, Wmax] in [0, 1], right-padded with white.
3. `augment.augment_batch` (on the accelerator, training only; its own module): kornia on the
   IMAGES, before normalisation - never on `pixel_values`.
4. `patchify` (on the accelerator): normalise to [-1, 1] and lay the patches out exactly like
   `Qwen2VLImageProcessor` does (tested equal), giving `pixel_values` and `image_grid_thw`.

Two geometries decide the size in step 1 (`resize_for_model`): the image budget (`ImageConfig`,
what banglaocr trains with: a FIXED height) and `QwenResize`, Qwen's own `smart_resize` (it keeps
the aspect ratio and scales the AREA into [min_pixels, max_pixels], so the height varies from crop to
crop) - how a model banglaocr did not train reads by its own preprocessor_config.json. The two differ:
on the shipped tiny model's config a 300x100 crop is 32x192 under its budget and 64x192 under
smart_resize with the same pixel limits.

>>> from PIL import Image
>>> from banglaocr.config import ImageConfig
>>> image = resize_to_budget(Image.new("RGB", (300, 100), "white"), ImageConfig(height=64))
>>> image.size, visual_tokens(image.height, image.width)
((192, 64), 12)
>>> batch, widths = images_to_batch([image])
>>> pixel_values, grid = patchify(batch, widths)
>>> tuple(pixel_values.shape), grid.tolist()
((48, 1536), [[1, 4, 12]])
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from banglaocr.config import ImageConfig

# Qwen3-VL's vision geometry: 16-pixel patches, 2x2 patches merged into one visual token, and a
# single image repeated over a temporal patch of 2 frames. One visual token covers 32x32 pixels.
PATCH_SIZE = 16
MERGE_SIZE = 2
TEMPORAL_PATCH_SIZE = 2
TOKEN_PIXELS = PATCH_SIZE * MERGE_SIZE

# Tight crop: a pixel is ink when it is darker than halfway between the paper (a bright
# percentile) and the darkest ink (a dark percentile). Below this paper-ink contrast (0-255)
# the image is taken as blank and left uncropped.
MIN_INK_CONTRAST = 24
# Margin kept around the ink box, as a fraction of the box height (at least 2 pixels), so that
# strokes touching the box keep their anti-aliased edges.
CROP_MARGIN = 0.08


def _to_rgb(image: Image.Image) -> Image.Image:
    """RGB with any transparency composited onto white paper (not onto black, as `convert` would)."""
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        paper = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(paper, rgba).convert("RGB")
    return image.convert("RGB")


def ink_box(image: Image.Image) -> tuple[int, int, int, int] | None:
    """Bounding box (left, top, right, bottom) of the ink plus a small margin; None for a blank image.

    >>> from PIL import ImageDraw
    >>> image = Image.new("RGB", (100, 50), "white")
    >>> ImageDraw.Draw(image).rectangle((30, 10, 69, 29), fill="black")
    >>> ink_box(image)
    (28, 8, 72, 32)
    """
    gray = np.asarray(image.convert("L"), dtype=np.int16)
    paper = int(np.percentile(gray, 90))
    ink = int(np.percentile(gray, 1))
    if paper - ink < MIN_INK_CONTRAST:
        return None
    mask = gray < (paper + ink) / 2
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    top, bottom = int(rows[0]), int(rows[-1]) + 1
    left, right = int(cols[0]), int(cols[-1]) + 1
    margin = max(2, round(CROP_MARGIN * (bottom - top)))
    return (max(0, left - margin), max(0, top - margin),
            min(image.width, right + margin), min(image.height, bottom + margin))


def budget_width(height: int, width: int, budget: ImageConfig) -> int:
    """Width in pixels that an image of `height` x `width` gets under `budget` (a multiple of 32).

    >>> budget_width(100, 300, ImageConfig(height=64, max_width=512))
    192
    >>> budget_width(32, 1000, ImageConfig(height=64, max_width=512))  # wider crops are squeezed
    512
    """
    scaled = width * budget.height / max(height, 1) * budget.stretch
    rounded = round(scaled / TOKEN_PIXELS) * TOKEN_PIXELS
    return int(min(budget.max_width, max(budget.min_width, rounded)))


def resize_to_budget(image: Image.Image, budget: ImageConfig) -> Image.Image:
    """Resize a word crop to the image budget: RGB, height = `budget.height`, width a multiple of 32.

    The aspect ratio is kept (times `budget.stretch` horizontally) up to rounding to whole visual
    tokens and clamping to [min_width, max_width]. With `budget.tight_crop` the crop is first cut
    to the ink's bounding box, so paper margins do not spend visual tokens.

    >>> from banglaocr.config import ImageConfig
    >>> resize_to_budget(Image.new("L", (90, 30), 255), ImageConfig(height=32, stretch=2.0)).size
    (192, 32)
    """
    image = _to_rgb(image)
    if budget.tight_crop:
        box = ink_box(image)
        if box is not None:
            image = image.crop(box)
    width = budget_width(image.height, image.width, budget)
    if image.size == (width, budget.height):
        return image
    # Bicubic is what Qwen's image processor uses; PIL antialiases when it shrinks.
    return image.resize((width, budget.height), Image.Resampling.BICUBIC)


@dataclass(frozen=True)
class QwenResize:
    """Qwen's own image geometry (`smart_resize`): keep the aspect ratio, round both sides to whole
    32-pixel visual tokens and scale the area into [min_pixels, max_pixels]. What a Qwen3-VL model
    reads by its own `preprocessor_config.json` (`size.shortest_edge` / `size.longest_edge`).

    >>> QwenResize(min_pixels=65536, max_pixels=16777216).size(64, 192)  # Qwen3-VL-2B: 70 visual tokens
    (160, 448)
    """

    min_pixels: int
    max_pixels: int

    def __post_init__(self) -> None:
        if not 0 < self.min_pixels <= self.max_pixels:
            raise ValueError(f"QwenResize needs 0 < min_pixels <= max_pixels, got {self.min_pixels}, "
                             f"{self.max_pixels}")

    def size(self, height: int, width: int) -> tuple[int, int]:
        """(height, width) an image of `height` x `width` is resized to; `smart_resize` of transformers'
        Qwen2-VL image processor, line for line (tested equal), with its factor 32 = patch 16 x merge 2."""
        height, width = max(height, 1), max(width, 1)
        # Python's round (half to even), as transformers computes it.
        h_bar = round(height / TOKEN_PIXELS) * TOKEN_PIXELS
        w_bar = round(width / TOKEN_PIXELS) * TOKEN_PIXELS
        if h_bar * w_bar > self.max_pixels:
            beta = math.sqrt(height * width / self.max_pixels)
            h_bar = max(TOKEN_PIXELS, math.floor(height / beta / TOKEN_PIXELS) * TOKEN_PIXELS)
            w_bar = max(TOKEN_PIXELS, math.floor(width / beta / TOKEN_PIXELS) * TOKEN_PIXELS)
        elif h_bar * w_bar < self.min_pixels:
            beta = math.sqrt(self.min_pixels / (height * width))
            h_bar = math.ceil(height * beta / TOKEN_PIXELS) * TOKEN_PIXELS
            w_bar = math.ceil(width * beta / TOKEN_PIXELS) * TOKEN_PIXELS
        # transformers refuses aspect ratios above 200 (a ValueError mid-batch); here such a sliver
        # still gets a size (at least one token a side), so one odd image cannot stop a run.
        return max(h_bar, TOKEN_PIXELS), max(w_bar, TOKEN_PIXELS)


ImageGeometry = ImageConfig | QwenResize
"""How word crops are sized for the model: banglaocr's budget, or Qwen's own smart_resize."""


def model_size(height: int, width: int, geometry: ImageGeometry) -> tuple[int, int]:
    """(height, width) that an image of `height` x `width` gets under `geometry` (before any tight crop).

    >>> model_size(100, 300, ImageConfig(height=32, max_width=384, stretch=2.0))
    (32, 192)
    >>> model_size(100, 300, QwenResize(min_pixels=32 * 32, max_pixels=32 * 384))
    (64, 192)
    """
    if isinstance(geometry, QwenResize):
        return geometry.size(height, width)
    return geometry.height, budget_width(height, width, geometry)


def resize_for_model(image: Image.Image, geometry: ImageGeometry) -> Image.Image:
    """The image the model is shown: `resize_to_budget` under a budget, Qwen's smart_resize under
    `QwenResize` (RGB, bicubic, like Qwen's image processor; no crop, no stretch).

    >>> resize_for_model(Image.new("RGB", (300, 100), "white"), QwenResize(1024, 12288)).size
    (192, 64)
    """
    if isinstance(geometry, ImageConfig):
        return resize_to_budget(image, geometry)
    image = _to_rgb(image)
    height, width = geometry.size(image.height, image.width)
    if image.size == (width, height):
        return image
    return image.resize((width, height), Image.Resampling.BICUBIC)


def visual_tokens(height: int, width: int) -> int:
    """Visual tokens (= `<|image_pad|>` tokens) for an image of this size after patchify.

    >>> visual_tokens(64, 256)
    16
    """
    return (height // PATCH_SIZE) * (width // PATCH_SIZE) // (MERGE_SIZE * MERGE_SIZE)


def image_grid(height: int, widths: list[int], patch_size: int = PATCH_SIZE) -> torch.Tensor:
    """`image_grid_thw` [B, 3] = (1, height / patch, width / patch) for images of one batch (CPU).

    >>> image_grid(64, [256, 96]).tolist()
    [[1, 4, 16], [1, 4, 6]]
    """
    return torch.tensor([[1, height // patch_size, width // patch_size] for width in widths], dtype=torch.long)


def images_to_batch(images: list[Image.Image]) -> tuple[torch.Tensor, list[int]]:
    """Stack equally high RGB images into a float32 [B, 3, H, Wmax] tensor in [0, 1], padded with white.

    The widths are returned so that `patchify` can drop the padding again.

    >>> batch, widths = images_to_batch([Image.new("RGB", (64, 32), "black"), Image.new("RGB", (96, 32))])
    >>> tuple(batch.shape), widths, batch[0, 0, 0, -1].item()
    ((2, 3, 32, 96), [64, 96], 1.0)
    """
    if not images:
        raise ValueError("images_to_batch needs at least one image")
    height = images[0].height
    if any(image.height != height for image in images):
        heights = sorted({image.height for image in images})
        raise ValueError(f"all images of a batch must have the same height (resize_to_budget), got {heights}")
    widths = [image.width for image in images]
    batch = torch.ones(len(images), 3, height, max(widths), dtype=torch.float32)
    for i, image in enumerate(images):
        pixels = torch.from_numpy(np.asarray(_to_rgb(image), dtype=np.uint8).copy())
        batch[i, :, :, : image.width] = pixels.permute(2, 0, 1).float().div_(255.0)
    return batch, widths


def patchify(batch: torch.Tensor, widths: list[int], patch_size: int = PATCH_SIZE,
             temporal_patch_size: int = TEMPORAL_PATCH_SIZE,
             merge_size: int = MERGE_SIZE) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalise a [B, 3, H, W] batch in [0, 1] and cut it into Qwen's flat patches.

    Returns `pixel_values` [sum of patches, 3 * temporal * patch * patch] and `image_grid_thw`
    [B, 3] = (1, H / patch, width / patch) per image, laid out exactly like
    `Qwen2VLImageProcessor` (mean = std = 0.5; patches in merge-window order: window row, window
    column, then the 2x2 patches inside; the single frame repeated over the temporal patch).
    Each image is cropped to its own width, so padding never reaches the model. The index of the
    kept windows is built on the CPU from `widths`: no CPU-GPU sync point.

    >>> pixel_values, grid = patchify(torch.zeros(2, 3, 32, 64), [64, 32])
    >>> tuple(pixel_values.shape), grid.tolist(), pixel_values.min().item()
    ((12, 1536), [[1, 2, 4], [1, 2, 2]], -1.0)
    """
    b, channels, height, width = batch.shape
    window = patch_size * merge_size
    if height % window or width % window or any(w % window or w > width for w in widths):
        raise ValueError(f"patchify needs heights and widths that are multiples of {window} "
                         f"(resize_to_budget), got height {height}, widths {widths} in {width}")
    rows, cols = height // window, width // window
    x = batch * 2.0 - 1.0  # (x - 0.5) / 0.5: Qwen3-VL's image mean and std are both 0.5
    x = x.reshape(b, channels, rows, merge_size, patch_size, cols, merge_size, patch_size)
    # -> (B, window row, window col, row in window, col in window, C, pixel row, pixel col)
    x = x.permute(0, 2, 5, 3, 6, 1, 4, 7)
    windows = x.reshape(b * rows * cols, merge_size * merge_size, channels, patch_size, patch_size)
    keep = torch.cat([
        (i * rows * cols + torch.arange(rows).view(-1, 1) * cols + torch.arange(w // window).view(1, -1)).flatten()
        for i, w in enumerate(widths)
    ]).to(batch.device, non_blocking=True)
    kept = windows.index_select(0, keep)
    # The image is one frame; Qwen repeats it over the temporal patch (the vision tower's 3-D
    # patch embedding expects `temporal_patch_size` frames).
    kept = kept.unsqueeze(3).expand(-1, -1, -1, temporal_patch_size, -1, -1)
    pixel_values = kept.reshape(-1, channels * temporal_patch_size * patch_size * patch_size)
    return pixel_values, image_grid(height, widths, patch_size).to(batch.device, non_blocking=True)
