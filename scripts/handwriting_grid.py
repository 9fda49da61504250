"""Write docs/images/handwriting_grid.png: synth's simulated hand, one effect per column.

    python scripts/handwriting_grid.py [--out PATH]

Rows are words in bundled fonts; the first column is the plain render, then each simulated-hand
effect alone (cluster jitter, warp, pen and pressure, broken strokes, bleed), and last all of them
as `recipes/tiny_base_v2.yaml` sets them, with the scanner's flaws. Each cell is `render_word`
with the generator seeded by its row, so the grid is the same on every run.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from banglaocr.config import HandConfig, load_recipe
from banglaocr.data.synth import bundled_fonts, font_name, render_word
from banglaocr.text import normalize

OUT = Path(__file__).resolve().parent.parent / "docs" / "images" / "handwriting_grid.png"
ROWS = [("আগ্রহীদের", "NotoSansBengali-Regular"), ("কর্মক্ষেত্রে", "NotoSerifBengali-Variable"),
        ("স্ত্রী", "AnekBangla-Variable"), ("উজ্জ্বল", "LikhanNormal"), ("রাষ্ট্রপতি", "Atma-Medium"),
        ("সৌন্দর্য", "BalooDa2-Variable")]
COLUMNS = [
    ("plain", HandConfig(), True),
    ("jitter 1", HandConfig(simulate=1.0, jitter=1.0), True),
    ("warp 0.12", HandConfig(simulate=1.0, warp=0.12), True),
    ("pen [-0.5, 3], pressure 1", HandConfig(simulate=1.0, pen_range=[-0.5, 3.0], pressure=1.0), True),
    ("breaks 1", HandConfig(simulate=1.0, breaks=1.0), True),
    ("bleed 1", HandConfig(simulate=1.0, bleed=1.0), True),
    ("tiny_base_v2, scanned", None, False),
]
V2_RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "tiny_base_v2.yaml"
CELL_W, CELL_H, LABEL_H = 260, 80, 22


def main(out: Path = OUT) -> None:
    fonts = {font_name(p): p for p in bundled_fonts()}
    v2_hand = load_recipe(V2_RECIPE).data.synth.hand
    grid = Image.new("RGB", (CELL_W * len(COLUMNS), LABEL_H + CELL_H * len(ROWS)), "white")
    draw = ImageDraw.Draw(grid)
    for column, (label, hand, clean) in enumerate(COLUMNS):
        draw.text((column * CELL_W + 6, 4), label, fill="black")
        for row, (word, font) in enumerate(ROWS):
            hand = v2_hand if hand is None else hand
            image = render_word(normalize(word), fonts[font], np.random.default_rng(row), clean=clean, hand=hand)
            image.thumbnail((CELL_W - 10, CELL_H - 10))
            grid.paste(image, (column * CELL_W + 5, LABEL_H + row * CELL_H + 5))
    for row, (_, font) in enumerate(ROWS):  # the font's name under each row's first cell
        draw.text((6, LABEL_H + (row + 1) * CELL_H - 14), font, fill=(120, 120, 120))
    out.parent.mkdir(parents=True, exist_ok=True)
    grid.save(out, optimize=True)
    print(f"wrote {out}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    main(parser.parse_args().out)
