"""Word boxes drawn on a page: the PNG `segment --draw-boxes` and `predict --layout page --draw-boxes` write.

>>> from PIL import Image
>>> page = Image.new("RGB", (200, 100), "white")
>>> drawn = draw_boxes(page, [((10, 10, 60, 40), RED), ((70, 10, 120, 40), GREEN)])
>>> drawn.getpixel((10, 20)), drawn.getpixel((70, 20)), page.getpixel((10, 20))
((230, 0, 0), (0, 150, 60), (255, 255, 255))
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

RED, GREEN, BLUE, GREY = (230, 0, 0), (0, 150, 60), (0, 90, 255), (150, 150, 150)


def draw_boxes(image: Image.Image, boxes: list[tuple[tuple[int, int, int, int], tuple[int, int, int]]]) -> Image.Image:
    """A copy of `image` (RGB) with each (box, colour) drawn as a rectangle; lines scale with the page
    (one pixel per 800 of its longer side), so a box stays visible on a 4000-pixel photo."""
    canvas = image.convert("RGB").copy()
    draw = ImageDraw.Draw(canvas)
    width = max(1, round(max(canvas.size) / 800))
    for (x0, y0, x1, y1), colour in boxes:
        draw.rectangle((x0, y0, max(x0, x1 - 1), max(y0, y1 - 1)), outline=colour, width=width)
    return canvas


def save_drawing(image: Image.Image, target: Path) -> None:
    """Write a drawing as PNG, atomically (a killed run never leaves half a picture)."""
    from banglaocr.errors import writing
    from banglaocr.files import atomic_write

    target = Path(target)
    with writing(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(target, lambda tmp: image.save(tmp, format="PNG"))
