"""Page segmentation on synthetic pages with known boxes: word boxes, lines, skew, and the page CER it costs.

Pages are rendered by `banglaocr.data.synth_pages.render_page` (what `banglaocr synth --pages` writes) in
four styles, then `banglaocr.pages.segment.segment_page` (what `banglaocr segment` runs) finds their words:

- fonts: the bundled fonts other than Galada, no hand; plain and ruled paper, some tight pages;
- unseen hand: Galada in recipes/cpu_demo.yaml's hand (slant -0.35, pen 1, wobble 2.5), the style the
  shipped tiny reader never saw;
- simulated hands: a new random writer per word (cluster jitter, pen width, pressure, broken strokes, warp);
- touching lines: every page tight (descenders of a line touch the ascenders of the next), all ruled.

Each page is skewed by up to 5 degrees and lit unevenly. Printed per style and overall:

- word-box precision and recall at IoU 0.5 (one-to-one matching, greedy by IoU: `pages.scoring`);
- line count accuracy (pages where the number of lines found is the true number) and the mean absolute
  skew error;
- page CER with the shipped tiny reader (`infer.load_for_inference("tiny")` + `infer.read_images`; page
  text = lines joined by a newline, words by a space; `metrics.corpus_scores`) reading the crops
  `segment_page` cut, side by side with the page CER of reading the TRUE boxes' crops - the difference
  is what the segmentation costs;
- the time segment_page takes per page.

    python benchmarks/segmentation.py                   # 4 pages per style, tiny reader (~4 min on 2 busy cores)
    python benchmarks/segmentation.py --pages 2 --no-read
    python benchmarks/segmentation.py --save            # also writes benchmarks/results/segmentation.txt
    python benchmarks/segmentation.py --degradations --save   # photo-like damage instead (~1 min, no reader)

`--degradations`: the same simulated-hands pages (3) as they come from a phone rather than a scanner - a
shadow across the page (brightness falling to 45% at one edge), a blur (Gaussian, sigma 1.5), JPEG at
quality 35, half the resolution, and all of them at once (half size, shadow, blur 1.0, JPEG 35) - word-box
precision and recall for each beside the clean pages (boxes found on a half-size page are scaled back).
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
from contextlib import redirect_stdout
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

RESULTS = Path(__file__).resolve().parent / "results" / "segmentation.txt"
DEGRADATION_RESULTS = RESULTS.with_name("segmentation_degradations.txt")
UNSEEN_HAND = {"slant": -0.35, "pen": 1, "wobble": 2.5}
"""recipes/cpu_demo.yaml's hand (with Galada: the style the tiny reader never saw)."""
SIMULATED_HAND = {"simulate": 1.0, "jitter": 0.5, "pen_range": [-0.5, 2.0], "pressure": 0.5, "breaks": 0.3,
                  "warp": 0.08}
STYLE_SEED_STRIDE = 1000


@dataclass(frozen=True)
class Style:
    name: str
    fonts: str  # "bundled" (all but Galada) or a font's file stem
    hand: dict | None
    ruled: float
    tight: float


STYLES = (
    Style("fonts", "bundled", None, 0.5, 0.3),
    Style("unseen hand", "Galada-Regular", UNSEEN_HAND, 0.5, 0.3),
    Style("simulated hands", "bundled", SIMULATED_HAND, 0.5, 0.3),
    Style("touching lines", "bundled", None, 1.0, 1.0),
)


def style_fonts(style: Style):
    from banglaocr.data.synth import bundled_fonts, font_name

    fonts = bundled_fonts()
    if style.fonts == "bundled":
        return [p for p in fonts if not font_name(p).startswith("Galada")]
    return [p for p in fonts if font_name(p) == style.fonts]


def measure_style(style: Style, index: int, pages: int, seed: int) -> dict:
    """Render the style's pages, segment them; boxes, lines, skew, and the crops for reading."""
    from banglaocr.config import HandConfig
    from banglaocr.data.synth import bundled_words
    from banglaocr.data.synth_pages import render_page
    from banglaocr.pages.scoring import match_boxes
    from banglaocr.pages.segment import segment_page

    hand = HandConfig(**style.hand) if style.hand else None
    words, fonts = bundled_words(), style_fonts(style)
    found_n = true_n = matched = lines_right = 0
    skew_error, seconds, found_crops, true_crops = 0.0, 0.0, [], []
    for k in range(pages):
        page = render_page(seed, index * STYLE_SEED_STRIDE + k, words=words, fonts=fonts, hand=hand,
                           ruled=style.ruled, tight=style.tight)
        started = time.perf_counter()
        layout = segment_page(page.image)
        seconds += time.perf_counter() - started
        found = [w.box for line in layout.lines for w in line]
        truth = [w.box for line in page.lines for w in line]
        found_n, true_n = found_n + len(found), true_n + len(truth)
        matched += len(match_boxes(found, truth))
        lines_right += len(layout.lines) == len(page.lines)
        skew_error += abs(layout.skew_degrees - page.skew_degrees)
        found_crops.append([[w.image for w in line] for line in layout.lines])
        true_crops.append([[w.crop for w in line] for line in page.lines])
        true_crops[-1] = (page.text, true_crops[-1])
    return {"style": style.name, "pages": pages, "found": found_n, "true": true_n, "matched": matched,
            "lines_right": lines_right, "skew_error": skew_error, "seconds": seconds,
            "found_crops": found_crops, "true_crops": true_crops}


def page_texts(loaded, settings, pages_of_crops) -> list[str]:
    """Read every crop with the reader; the page texts (lines joined by a newline, words by a space)."""
    from banglaocr.infer import read_images

    flat = [crop for page in pages_of_crops for line in page for crop in line]
    readings = iter(read_images(loaded.model, loaded.tokenizer, flat, settings, batch_size=32))
    texts = []
    for page in pages_of_crops:
        lines = [" ".join((next(readings).text or "") for _ in line) for line in page]
        texts.append("\n".join(lines))
    return texts


def page_cer(loaded, settings, result: dict) -> tuple[float, float]:
    """(page CER reading the found crops, page CER reading the true crops)."""
    from banglaocr.metrics import corpus_scores

    references = [text for text, _ in result["true_crops"]]
    found = page_texts(loaded, settings, result["found_crops"])
    true = page_texts(loaded, settings, [crops for _, crops in result["true_crops"]])
    return corpus_scores(references, found)["cer"], corpus_scores(references, true)["cer"]


def report_line(name: str, r: dict, cers: tuple[float, float] | None) -> str:
    precision = r["matched"] / r["found"] if r["found"] else 1.0
    recall = r["matched"] / r["true"] if r["true"] else 1.0
    cer = f"{cers[0]:>9.3f} {cers[1]:>9.3f}" if cers else f"{'-':>9} {'-':>9}"
    return (f"{name:<16} {r['pages']:>5} {r['true']:>6} {r['found']:>6} {precision:>9.3f} {recall:>7.3f} "
            f"{r['lines_right'] / r['pages']:>8.2f} {r['skew_error'] / r['pages']:>9.2f} {cer} "
            f"{r['seconds'] / r['pages']:>7.2f}")


def run(pages: int, seed: int, read: bool) -> str:
    out = io.StringIO()
    loaded = settings = None
    if read:
        from banglaocr.infer import load_for_inference

        loaded, settings = load_for_inference("tiny", device="cpu")
    header = (f"{'style':<16} {'pages':>5} {'words':>6} {'found':>6} {'precision':>9} {'recall':>7} "
              f"{'lines ok':>8} {'skew err':>9} {'CER seg':>9} {'CER true':>9} {'s/page':>7}")
    print(f"segmentation benchmark: {pages} pages per style, seed {seed}, IoU 0.5, reader "
          f"{'tiny' if read else '(none: --no-read)'}", file=out)
    print(header, file=out)
    total = {"pages": 0, "found": 0, "true": 0, "matched": 0, "lines_right": 0, "skew_error": 0.0, "seconds": 0.0}
    cer_pairs, references_all = [], []
    for index, style in enumerate(STYLES):
        result = measure_style(style, index, pages, seed)
        cers = page_cer(loaded, settings, result) if read else None
        if cers:
            cer_pairs.append((cers, sum(len(text) for text, _ in result["true_crops"])))
        references_all.append(result)
        for key in total:
            total[key] += result[key]
        print(report_line(style.name, result, cers), file=out, flush=True)
        print(report_line(style.name, result, cers), file=sys.stderr, flush=True)
    overall = None
    if cer_pairs:
        chars = sum(n for _, n in cer_pairs)  # corpus CER: each style's edits weighted by its characters
        overall = (sum(c[0] * n for c, n in cer_pairs) / chars, sum(c[1] * n for c, n in cer_pairs) / chars)
    print(report_line("all", total, overall), file=out)
    print("precision/recall: word boxes matched one-to-one at IoU >= 0.5; lines ok: share of pages with the "
          "true number of lines; skew err: mean |found - true| degrees; CER seg / CER true: page CER of the "
          "tiny reader on segment_page's crops / on the true boxes' crops", file=out)
    return out.getvalue()


def _shadow(image):
    import numpy as np
    from PIL import Image

    pixels = np.asarray(image).astype(np.float32)
    height, width = pixels.shape[:2]
    light = np.linspace(0.45, 1.0, width)[None, :, None] * np.linspace(1.0, 0.8, height)[:, None, None]
    return Image.fromarray((pixels * light).clip(0, 255).astype(np.uint8))


def _jpeg(image, quality: int = 35):
    from PIL import Image

    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def _half(image):
    return image.resize((image.width // 2, image.height // 2))


def degradations(pages: int, seed: int) -> str:
    """Word-box precision/recall of the simulated-hands pages under photo-like damage (see the docstring)."""
    from PIL import ImageFilter

    from banglaocr.config import HandConfig
    from banglaocr.data.synth import bundled_words
    from banglaocr.data.synth_pages import render_page
    from banglaocr.pages.scoring import match_boxes
    from banglaocr.pages.segment import segment_page

    blur = lambda sigma: (lambda image: image.filter(ImageFilter.GaussianBlur(sigma)))  # noqa: E731
    variants = {"clean": (lambda image: image, 1.0), "shadow": (_shadow, 1.0), "blur 1.5": (blur(1.5), 1.0),
                "jpeg q35": (_jpeg, 1.0), "half size": (_half, 0.5),
                "all of them": (lambda image: _jpeg(blur(1.0)(_shadow(_half(image)))), 0.5)}
    style = STYLES[2]
    rendered = [render_page(seed, 2 * STYLE_SEED_STRIDE + k, words=bundled_words(), fonts=style_fonts(style),
                            hand=HandConfig(**style.hand), ruled=style.ruled, tight=style.tight) for k in range(pages)]
    out = io.StringIO()
    print(f"segmentation under photo-like damage: {pages} simulated-hands pages, seed {seed}, IoU 0.5", file=out)
    print(f"{'variant':<12} {'words':>6} {'found':>6} {'precision':>9} {'recall':>7}", file=out)
    for name, (damage, scale) in variants.items():
        found_n = true_n = matched = 0
        for page in rendered:
            layout = segment_page(damage(page.image))
            found = [tuple(v / scale for v in word.box) for line in layout.lines for word in line]
            truth = [word.box for line in page.lines for word in line]
            found_n, true_n = found_n + len(found), true_n + len(truth)
            matched += len(match_boxes(found, truth))
        print(f"{name:<12} {true_n:>6} {found_n:>6} {matched / max(1, found_n):>9.3f} {matched / true_n:>7.3f}",
              file=out)
    return out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=4, help="pages per style")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-read", action="store_true", help="skip the page CER (no reader loaded)")
    parser.add_argument("--save", action="store_true", help=f"also write {RESULTS.relative_to(ROOT)}")
    parser.add_argument("--degradations", action="store_true",
                        help=f"photo-like damage instead (3 pages unless --pages; {DEGRADATION_RESULTS.name})")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    started = time.perf_counter()
    if args.degradations:
        text = degradations(args.pages if "--pages" in sys.argv else 3, args.seed)
        text += f"({time.perf_counter() - started:.0f} s)\n"
        print(text, end="")
        if args.save:
            DEGRADATION_RESULTS.write_text(text, encoding="utf-8")
        return
    with redirect_stdout(sys.stderr):  # library chatter stays off the report
        text = run(args.pages, args.seed, not args.no_read)
    text += f"({time.perf_counter() - started:.0f} s)\n"
    print(text, end="")
    if args.save:
        RESULTS.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
