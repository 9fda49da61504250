"""Augmentation of word images on the accelerator, training only: kornia on the IMAGES.

Applied by `collate.finish_batch_on_device` to the [B, 3, H, W] batch in [0, 1] that
`pixels.images_to_batch` made, BEFORE `pixels.patchify` normalises it. Scanner-like effects
(affine, blur, contrast, noise) and handwriting-like ones (slant, stroke width, elastic warp,
baseline wobble, ink and paper texture). Never augment `pixel_values`: those are flattened,
normalised patches. Seeded by a `torch.Generator`, so a resumed run draws the same augmentations.

>>> import torch
>>> from banglaocr.config import AugmentConfig
>>> batch = torch.ones(2, 3, 32, 64)
>>> out = augment_batch(batch, [64, 48], AugmentConfig(probability=0.0), torch.Generator().manual_seed(0))
>>> torch.equal(out, batch)
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from banglaocr.config import AugmentConfig

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
    import kornia  # see _shape_strokes

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
    draws = _draw(batch, widths, cfg, generator)
    # Work in ink space (0 = white, 1 = black): dilation then means bolder strokes. What a warp
    # brings in from outside an image (its padding, or beyond the batch edge) is that image's own
    # paper tone, so a rotated grey scan gets no white corners.
    width = batch.shape[3]
    padding = torch.arange(width, device=batch.device).view(1, 1, 1, -1) >= draws.widths.view(-1, 1, 1, 1)
    paper = 1.0 - _paper_tone(batch, draws.widths, padding)
    ink = _shape_strokes(torch.where(padding, paper, 1.0 - batch), paper, draws, cfg)
    images = _shade_page(1.0 - ink, draws, cfg).clamp_(0.0, 1.0)
    # Chance per image, then white padding: columns past each image's width are blank paper again.
    keep = draws.u["skip"] >= cfg.probability
    images = torch.where(keep.view(-1, 1, 1, 1), batch, images)
    return images.masked_fill(padding, 1.0)


@dataclass
class _Draws:
    """The random choices of one `augment_batch` call."""

    host: torch.Tensor  # [B, len(_PARAMS)] uniforms on the generator's device
    u: dict[str, torch.Tensor]  # the same (and the handwriting uniforms) by name, on the batch's device
    fields: torch.Generator  # the device generator of the large noise fields
    widths: torch.Tensor  # image widths, on the batch's device


def _draw(batch: torch.Tensor, widths: list[int], cfg: AugmentConfig, generator: torch.Generator) -> _Draws:
    """All per-image draws happen first, in a fixed order, so the stream is the same whatever the device.

    Small host-to-device copies are `non_blocking`: a blocking copy would wait for every kernel already
    queued on the device (a sync point) before augmentation could even be queued.
    """
    device, dtype, b = batch.device, batch.dtype, batch.shape[0]
    host = torch.rand(b, len(_PARAMS), generator=generator, device=generator.device)
    params = host.to(device, dtype, non_blocking=True)
    u = {name: params[:, i] for i, name in enumerate(_PARAMS)}
    field_seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
    fields = generator if generator.device == device else torch.Generator(device=device).manual_seed(field_seed)
    width_t = torch.tensor(widths).to(device, non_blocking=True)
    if cfg.baseline_wobble > 0 or cfg.ink_texture > 0 or cfg.paper_texture > 0:
        extra = torch.rand(b, len(_HANDWRITING_PARAMS), generator=generator, device=generator.device)
        extra = extra.to(device, dtype, non_blocking=True)
        u.update({name: extra[:, i] for i, name in enumerate(_HANDWRITING_PARAMS)})
    return _Draws(host=host, u=u, fields=fields, widths=width_t)


def _shape_strokes(ink: torch.Tensor, paper: torch.Tensor, draws: _Draws, cfg: AugmentConfig) -> torch.Tensor:
    """Geometry and strokes, in ink space: affine warp, baseline wobble, elastic warp, stroke width,
    ink texture, blur."""
    # Imported here: the data-loader workers run the CPU half of the data path and never need it.
    import kornia

    b, _, height, width = ink.shape
    device, dtype, u = ink.device, ink.dtype, draws.u
    matrices = _affine_matrices(u["angle"], u["shear"], u["scale"], draws.widths, height, cfg)
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
        noise = torch.rand(b, 2, height, width, generator=draws.fields, device=device, dtype=dtype)
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
        blotches = _smooth_noise(b, height, width, max(2.0, INK_CELL_HEIGHTS * height), draws.fields, device, dtype)
        ink = paper + (ink - paper) * (1 - u["ink"].view(-1, 1, 1, 1) * cfg.ink_texture * blotches)
    if cfg.blur_sigma > 0:
        # sigma stays on the host: kornia checks sigma > 0 where the tensor lives, which on the
        # device would be a sync point. ~1e-3 is a delta kernel, i.e. no blur.
        sigma = (draws.host[:, _PARAMS.index("blur")] * cfg.blur_sigma).clamp_min(1e-3)
        kernel = _odd(6 * cfg.blur_sigma + 1)
        ink = kornia.filters.gaussian_blur2d(ink, (kernel, kernel), torch.stack([sigma, sigma], 1).to(dtype))
    return ink


def _shade_page(images: torch.Tensor, draws: _Draws, cfg: AugmentConfig) -> torch.Tensor:
    """Light and paper, in image space: contrast/brightness, paper shading and grain, sensor noise."""
    b, _, height, width = images.shape
    device, dtype, u = images.device, images.dtype, draws.u
    if cfg.contrast > 0:
        factor = (1 + (u["contrast"] * 2 - 1) * cfg.contrast).view(-1, 1, 1, 1)
        shift = ((u["brightness"] * 2 - 1) * cfg.contrast / 2).view(-1, 1, 1, 1)
        images = (images - 0.5) * factor + 0.5 + shift
    if cfg.paper_texture > 0:
        # Multiplicative, like uneven light or a stained sheet: the paper darkens, dark ink hardly changes.
        shade = (1 - PAPER_GRAIN) * _smooth_noise(b, height, width, max(2.0, PAPER_CELL_HEIGHTS * height),
                                                  draws.fields, device, dtype)
        shade = shade + PAPER_GRAIN * torch.rand(b, 1, height, width, generator=draws.fields, device=device,
                                                 dtype=dtype)
        images = images * (1 - u["paper"].view(-1, 1, 1, 1) * cfg.paper_texture * shade)
    if cfg.noise_std > 0:
        std = (u["noise"] * cfg.noise_std).view(-1, 1, 1, 1)
        images = images + torch.randn(images.shape, generator=draws.fields, device=device, dtype=dtype) * std
    return images
