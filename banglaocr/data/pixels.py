"""Pixels: resize word crops to the image budget, batch them, augment them and cut them into patches.

The path of an image, in order (DESIGN "the data path"):

1. `resize_to_budget` (CPU, data-loader workers): RGB, optional tight crop to the ink, height =
   budget height, width a multiple of 32. Sizes that are multiples of 32 are left alone by Qwen's
   `smart_resize`, so what the model sees is exactly what the budget says.
2. `images_to_batch` (CPU): one float tensor [B, 3, H, Wmax] in [0, 1], right-padded with white.
3. `augment_batch` (on the accelerator, training only): kornia on the IMAGES, before normalisation
   (scanner-like: affine, blur, contrast, noise; handwriting-like: slant, stroke width, elastic warp,
   baseline wobble, ink and paper texture). Never augment `pixel_values`: those are flattened,
   normalised patches.
4. `patchify` (on the accelerator): normalise to [-1, 1] and lay the patches out exactly like
   `Qwen2VLImageProcessor` does (tested equal), giving `pixel_values` and `image_grid_thw`.

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

import numpy as np
import torch
from PIL import Image

from banglaocr.config import AugmentConfig, ImageConfig

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


# One uniform per image for each random choice of `augment_batch`, drawn together in this order
# (adding a name changes the stream: augmentations of old seeds are not reproduced across versions).
_PARAMS = ("angle", "shear", "scale", "elastic", "stroke", "blur", "contrast", "brightness", "noise", "skip")
# The handwriting-like effects draw their uniforms in a second call, made only when one of them is on:
# with all three off the generator is used exactly as before they existed (old seeds reproduce).
_HANDWRITING_PARAMS = ("wobble", "wobble_period", "wobble_phase", "ink", "paper")

# Baseline wobble: one sine wave along x whose length is 2-6 line heights (a wavering line over a
# word, not a ripple inside a letter).
WOBBLE_PERIOD_HEIGHTS = (2.0, 6.0)
# Ink blotches are about a tenth of the line height across (a third of a stroke's length at most);
# paper shading varies over half a line height, with a quarter of its depth as per-pixel grain.
INK_CELL_HEIGHTS = 0.1
PAPER_CELL_HEIGHTS = 0.5
PAPER_GRAIN = 0.25


def _odd(value: float) -> int:
    size = max(3, int(math.ceil(value)))
    return size if size % 2 == 1 else size + 1


def _affine_matrices(u_angle: torch.Tensor, u_shear: torch.Tensor, u_scale: torch.Tensor,
                     widths: torch.Tensor, height: int, cfg: AugmentConfig) -> torch.Tensor:
    """Per-image [B, 2, 3] affine (rotation, horizontal shear, scale) about each image's own centre.

    The `u_*` are uniforms in [0, 1), one per image, mapped to [-max, max] of each setting.
    """
    angle = (u_angle * 2 - 1) * math.radians(cfg.rotate_degrees)
    shear = (u_shear * 2 - 1) * cfg.shear
    scale = 1 + (u_scale * 2 - 1) * cfg.scale
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    cx = (widths.to(u_angle.dtype) - 1) / 2
    cy = torch.full_like(cx, (height - 1) / 2)
    # A = R(angle) * scale @ Shear, with Shear = [[1, shear], [0, 1]] (x' = x + shear * y: slant).
    a00, a01 = cos, cos * shear - sin
    a10, a11 = sin, sin * shear + cos
    # Keep the centre fixed: t = c - A c.
    tx = cx - (a00 * cx + a01 * cy)
    ty = cy - (a10 * cx + a11 * cy)
    return torch.stack([torch.stack([a00, a01, tx], 1), torch.stack([a10, a11, ty], 1)], 1)


def _paper_tone(batch: torch.Tensor, widths: torch.Tensor, padding: torch.Tensor) -> torch.Tensor:
    """Per-image, per-channel paper colour [B, 3, 1, 1]: the median of the image's outer ring of pixels.

    Word crops have paper at their edges (tight crops keep a margin); the median ignores the
    odd stroke that touches an edge. Only the ring is sorted, which keeps this cheap.
    """
    b, channels, height, _ = batch.shape
    rows = torch.cat([batch[:, :, 0], batch[:, :, -1]], 2)
    rows = rows.masked_fill(torch.cat([padding[:, :, 0], padding[:, :, 0]], 2), float("nan"))
    last = (widths - 1).view(-1, 1, 1, 1).expand(b, channels, height, 1)
    cols = torch.cat([batch[:, :, :, 0], batch.gather(3, last).squeeze(3)], 2)
    return torch.cat([rows, cols], 2).nanmedian(dim=2).values.view(b, channels, 1, 1)


def _stroke_width(ink: torch.Tensor, radius: torch.Tensor, max_radius: int) -> torch.Tensor:
    """Bolder (radius > 0: dilation of the ink) or thinner (radius < 0: erosion) strokes, per image."""
    import kornia  # see augment_batch

    kernel = torch.ones(3, 3, device=ink.device, dtype=ink.dtype)
    out = ink
    bold, thin = ink, ink
    # Every radius is computed for the whole batch and picked per image with `where`: no
    # data-dependent branching, so no CPU-GPU sync point. Each step costs one 3x3 max/min.
    for step in range(1, max_radius + 1):
        bold = kornia.morphology.dilation(bold, kernel)
        thin = kornia.morphology.erosion(thin, kernel)
        pick = radius.view(-1, 1, 1, 1)
        out = torch.where(pick == step, bold, out)
        out = torch.where(pick == -step, thin, out)
    return out


def _smooth_noise(b: int, height: int, width: int, cell: float, generator: torch.Generator,
                  device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """[B, 1, H, W] noise in [0, 1] that varies over about `cell` pixels: uniforms on a coarse grid,
    bilinearly upsampled (a convex mix, so the range stays [0, 1] - no normalisation needed)."""
    rows, cols = math.ceil(height / cell) + 1, math.ceil(width / cell) + 1
    coarse = torch.rand(b, 1, rows, cols, generator=generator, device=device, dtype=dtype)
    return torch.nn.functional.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)


def _baseline_wobble(ink: torch.Tensor, amplitude: torch.Tensor, period: torch.Tensor,
                     phase: torch.Tensor) -> torch.Tensor:
    """Shift every column of each image vertically by `amplitude * sin(2 pi x / period + phase)` pixels.

    `amplitude`, `period` (pixels) and `phase` are [B]. Rows from beyond the top or bottom edge
    repeat the edge row (paper, in a word crop). Columns keep their place, so padding stays padding.
    """
    b, _, height, width = ink.shape
    x = torch.arange(width, device=ink.device, dtype=ink.dtype).view(1, 1, -1)
    y = torch.arange(height, device=ink.device, dtype=ink.dtype).view(1, -1, 1)
    shift = amplitude.view(-1, 1, 1) * torch.sin(2 * math.pi * x / period.view(-1, 1, 1) + phase.view(-1, 1, 1))
    # grid_sample reads the source at normalised coordinates (align_corners: -1 and 1 are the edge pixels).
    grid_x = (x * (2.0 / max(width - 1, 1)) - 1.0).expand(b, height, width)
    grid_y = (y - shift) * (2.0 / max(height - 1, 1)) - 1.0
    grid = torch.stack([grid_x, grid_y], dim=3)
    return torch.nn.functional.grid_sample(ink, grid, mode="bilinear", padding_mode="border", align_corners=True)


def augment_batch(batch: torch.Tensor, widths: list[int], cfg: AugmentConfig,
                  generator: torch.Generator) -> torch.Tensor:
    """Augment a batch of word images [B, 3, H, W] in [0, 1] on its own device (kornia); returns a new tensor.

    Each image is augmented with probability `cfg.probability`: an affine warp about its centre
    (rotation, slant, zoom), an optional wavering baseline (`baseline_wobble`: a sine wave of
    vertical shifts along the word), an optional elastic wobble (`elastic_alpha`: rms displacement
    in pixels), thinner/bolder strokes (`stroke_width`), optional uneven ink (`ink_texture`:
    blotches that lighten strokes, never the paper), Gaussian blur, contrast/brightness, optional
    paper shading and grain (`paper_texture`) and Gaussian noise, each drawn per image. Padding
    (columns past an image's width) stays white.
    The result depends only on the batch, the config and the generator's state: the same seed
    gives the same images on the same device. Pass a CPU generator: per-image parameters are drawn
    on it (tiny), and the large noise fields come from a device generator seeded from it, so no
    large tensor crosses to the device and nothing waits for the device.

    >>> batch = torch.ones(2, 3, 32, 64); batch[:, :, 10:20, 20:40] = 0.0
    >>> out = augment_batch(batch, [64, 48], AugmentConfig(), torch.Generator().manual_seed(0))
    >>> out.shape == batch.shape, bool((out[1, :, :, 48:] == 1).all())
    (True, True)
    """
    if not cfg.enabled or cfg.probability == 0.0:
        return batch
    # Imported here: the data-loader workers run the CPU half of this module and never need it.
    import kornia

    device, dtype = batch.device, batch.dtype
    b, _, height, width = batch.shape
    # All per-image draws happen first, in a fixed order, so the stream is the same whatever the
    # device. Small host-to-device copies are `non_blocking`: a blocking copy would wait for every
    # kernel already queued on the device (a sync point) before augmentation could even be queued.
    host = torch.rand(b, len(_PARAMS), generator=generator, device=generator.device)
    params = host.to(device, dtype, non_blocking=True)
    u = {name: params[:, i] for i, name in enumerate(_PARAMS)}
    field_seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
    if generator.device == device:
        field_generator = generator
    else:
        field_generator = torch.Generator(device=device).manual_seed(field_seed)
    width_t = torch.tensor(widths).to(device, non_blocking=True)
    if cfg.baseline_wobble > 0 or cfg.ink_texture > 0 or cfg.paper_texture > 0:
        extra = torch.rand(b, len(_HANDWRITING_PARAMS), generator=generator, device=generator.device)
        extra = extra.to(device, dtype, non_blocking=True)
        u.update({name: extra[:, i] for i, name in enumerate(_HANDWRITING_PARAMS)})

    # Work in ink space (0 = white, 1 = black): dilation then means bolder strokes. What a warp
    # brings in from outside an image (its padding, or beyond the batch edge) is that image's own
    # paper tone, so a rotated grey scan gets no white corners.
    padding = torch.arange(width, device=device).view(1, 1, 1, -1) >= width_t.view(-1, 1, 1, 1)
    paper = 1.0 - _paper_tone(batch, width_t, padding)
    ink = torch.where(padding, paper, 1.0 - batch)

    matrices = _affine_matrices(u["angle"], u["shear"], u["scale"], width_t, height, cfg)
    ink = kornia.geometry.transform.warp_affine(ink, matrices, (height, width), padding_mode="fill",
                                                fill_value=paper)

    if cfg.baseline_wobble > 0:
        low, high = WOBBLE_PERIOD_HEIGHTS
        ink = _baseline_wobble(ink, u["wobble"] * cfg.baseline_wobble,
                               height * (low + (high - low) * u["wobble_period"]), 2 * math.pi * u["wobble_phase"])

    if cfg.elastic_alpha > 0:
        # Wobble on the scale of a quarter of the line height. Smoothing white noise U(-1, 1) with a
        # 2-D Gaussian of std s leaves a field of std ~ 0.163 / s; scale it to `elastic_alpha` pixels
        # and then to grid_sample's normalised coordinates (2 / size per pixel).
        sigma = max(height / 4.0, 2.0)
        kernel = _odd(4 * sigma)
        strength = u["elastic"].view(-1, 1, 1, 1)
        noise = torch.rand(b, 2, height, width, generator=field_generator, device=device, dtype=dtype)
        noise = (noise * 2 - 1) * strength
        pixels = cfg.elastic_alpha * sigma / 0.163
        ink = kornia.geometry.transform.elastic_transform2d(
            ink, noise, kernel_size=(kernel, kernel), sigma=(sigma, sigma),
            alpha=(pixels * 2 / width, pixels * 2 / height), padding_mode="border")

    if cfg.stroke_width > 0:
        # Radius uniform over {-R, ..., R}.
        radius = (u["stroke"] * (2 * cfg.stroke_width + 1)).floor().long() - cfg.stroke_width
        ink = _stroke_width(ink, radius, cfg.stroke_width)

    if cfg.ink_texture > 0:
        # Only what is darker than the paper is thinned: the paper tone stays, the strokes get blotchy.
        blotches = _smooth_noise(b, height, width, max(2.0, INK_CELL_HEIGHTS * height), field_generator, device, dtype)
        ink = paper + (ink - paper) * (1 - u["ink"].view(-1, 1, 1, 1) * cfg.ink_texture * blotches)

    if cfg.blur_sigma > 0:
        # sigma stays on the host: kornia checks sigma > 0 where the tensor lives, which on the
        # device would be a sync point. ~1e-3 is a delta kernel, i.e. no blur.
        sigma = (host[:, _PARAMS.index("blur")] * cfg.blur_sigma).clamp_min(1e-3)
        kernel = _odd(6 * cfg.blur_sigma + 1)
        ink = kornia.filters.gaussian_blur2d(ink, (kernel, kernel), torch.stack([sigma, sigma], 1).to(dtype))

    images = 1.0 - ink
    if cfg.contrast > 0:
        factor = (1 + (u["contrast"] * 2 - 1) * cfg.contrast).view(-1, 1, 1, 1)
        shift = ((u["brightness"] * 2 - 1) * cfg.contrast / 2).view(-1, 1, 1, 1)
        images = (images - 0.5) * factor + 0.5 + shift

    if cfg.paper_texture > 0:
        # Multiplicative, like uneven light or a stained sheet: the paper darkens, dark ink hardly changes.
        shade = (1 - PAPER_GRAIN) * _smooth_noise(b, height, width, max(2.0, PAPER_CELL_HEIGHTS * height),
                                                  field_generator, device, dtype)
        shade = shade + PAPER_GRAIN * torch.rand(b, 1, height, width, generator=field_generator, device=device,
                                                 dtype=dtype)
        images = images * (1 - u["paper"].view(-1, 1, 1, 1) * cfg.paper_texture * shade)

    if cfg.noise_std > 0:
        std = (u["noise"] * cfg.noise_std).view(-1, 1, 1, 1)
        images = images + torch.randn(images.shape, generator=field_generator, device=device, dtype=dtype) * std

    images = images.clamp_(0.0, 1.0)
    # Chance per image, then white padding: columns past each image's width are blank paper again.
    keep = u["skip"] >= cfg.probability
    images = torch.where(keep.view(-1, 1, 1, 1), batch, images)
    return images.masked_fill(padding, 1.0)


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
