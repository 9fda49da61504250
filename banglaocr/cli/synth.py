"""`banglaocr synth`: render synthetic Bangla word images into an imagefolder data set.

>>> from typer.testing import CliRunner
>>> from banglaocr.cli import app
>>> "--holdout-font" in CliRunner().invoke(app, ["synth", "--help"]).output
True
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from banglaocr.cli.common import SeedOption, console, user_errors

OutOption = Annotated[Path, typer.Option(
    "--out", metavar="DIR", help="Folder to write train/, val/, test/ and synth.json into.")]
CountOption = Annotated[int, typer.Option(
    "--n", metavar="N", min=1, help="Number of images over all splits (80/10/10).")]

# The simulated hand's options (a new random writer per image), as aliases: `synth` stays one screen.
SimulateOption = Annotated[float, typer.Option(
    "--simulate", metavar="X", min=0.0, max=1.0,
    help="Share of images written by a simulated hand, a new random writer each (needed by the options below).")]
JitterOption = Annotated[float, typer.Option(
    "--jitter", metavar="X", min=0.0, max=1.0,
    help="Simulated hand: per-cluster scale, rotation, baseline and spacing jitter.")]
PenRangeOption = Annotated[tuple[float, float] | None, typer.Option(
    "--pen-range", metavar="THIN HEAVY",
    help="Simulated hand: pen width change in pixels at size 40, drawn per image (e.g. -0.5 2).")]
PressureOption = Annotated[float, typer.Option(
    "--pressure", metavar="X", min=0.0, max=1.0, help="Simulated hand: pen width swelling along the word.")]
BleedOption = Annotated[float, typer.Option(
    "--bleed", metavar="X", min=0.0, max=1.0, help="Simulated hand: ink bleeding into the paper.")]
BreaksOption = Annotated[float, typer.Option(
    "--breaks", metavar="X", min=0.0, max=1.0, help="Simulated hand: broken strokes and faded patches.")]
WarpOption = Annotated[float, typer.Option(
    "--warp", metavar="X", min=0.0, max=0.3,
    help="Simulated hand: smooth thin-plate-spline warp, a fraction of the text height.")]

FontsOption = Annotated[Path | None, typer.Option(
    "--fonts", metavar="DIR", help="Folder of .ttf/.otf/.woff/.woff2 fonts (default: the bundled fonts).")]
WordsOption = Annotated[Path | None, typer.Option(
    "--words", metavar="FILE", help="UTF-8 word list, one word a line (default: the bundled list).")]
HoldoutFontOption = Annotated[str | None, typer.Option(
    "--holdout-font", metavar="NAME", help="Font (file name without extension) used only in val/test.")]
# The options of pages (`--pages`), as aliases too.
PagesOption = Annotated[int | None, typer.Option(
    "--pages", metavar="N", min=1,
    help="Render N pages of lines of words with their true boxes instead (layout.json).")]
RuledOption = Annotated[float, typer.Option(
    "--ruled", metavar="X", min=0.0, max=1.0, help="Pages: share on ruled paper.")]
TightOption = Annotated[float, typer.Option(
    "--tight", metavar="X", min=0.0, max=1.0,
    help="Pages: share with lines so close that ascenders and descenders touch.")]
MaxSkewOption = Annotated[float, typer.Option(
    "--max-skew", metavar="DEG", min=0.0, max=15.0, help="Pages: largest page skew, in degrees either way.")]


def synth(
    out: OutOption,
    n: CountOption = 2000,
    seed: SeedOption = 0,
    fonts: FontsOption = None,
    words: WordsOption = None,
    holdout_font: HoldoutFontOption = None,
    short_fraction: Annotated[
        float,
        typer.Option("--short-fraction", metavar="X", min=0.0, max=1.0,
                     help="Fraction of samples showing a single letter or a consonant + vowel sign instead of a word."),
    ] = 0.0,
    font: Annotated[
        list[str] | None,
        typer.Option("--font", metavar="NAME",
                     help="Render in this font only (file name without extension); repeat for several."),
    ] = None,
    clean: Annotated[
        bool, typer.Option("--clean", help="Black ink on white paper, without the scanner's flaws.")
    ] = False,
    slant: Annotated[
        float, typer.Option("--slant", metavar="X", min=-1.0, max=1.0,
                            help="A writer's slant on every image: shear of the ink (negative leans left).")
    ] = 0.0,
    pen: Annotated[
        int, typer.Option("--pen", metavar="N", min=0, max=4,
                          help="A broader pen: thicken strokes by this many pixels a side.")
    ] = 0,
    wobble: Annotated[
        float, typer.Option("--wobble", metavar="X", min=0.0, max=8.0,
                            help="A wavy baseline of this amplitude in pixels.")
    ] = 0.0,
    simulate: SimulateOption = 0.0,
    jitter: JitterOption = 0.0,
    pen_range: PenRangeOption = None,
    pressure: PressureOption = 0.0,
    bleed: BleedOption = 0.0,
    breaks: BreaksOption = 0.0,
    warp: WarpOption = 0.0,
    pages: PagesOption = None,
    ruled: RuledOption = 0.5,
    tight: TightOption = 0.3,
    max_skew: MaxSkewOption = 5.0,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an earlier synth output in --out.")
    ] = False,
) -> None:
    """Render synthetic Bangla word images into an imagefolder data set (train/val/test).

    Each image is one word in one font with scan-like flaws (tilt, blur, noise, contrast, JPEG),
    or without them (--clean); --slant, --pen and --wobble write every word in one writer's hand;
    --simulate writes a share of the words in a simulated hand, a new random writer per image.

    The same seed gives byte-identical files; train, val and test share no word.

    --pages N renders N pages instead (plain and ruled paper, skew, uneven light, touching lines) with
    their true word boxes in DIR/layout.json: what `banglaocr segment` is measured on.

    Example: banglaocr synth --out synth-data --n 5000 --seed 1 --holdout-font Lohit-Bengali

    Example: banglaocr synth --out synth-pages --pages 20 --font Galada-Regular --slant -0.35 --pen 1
    --wobble 2.5
    """
    from banglaocr.data.synth import write_synthetic_dataset

    with user_errors():
        hand = _hand(slant=slant, pen=pen, wobble=wobble, simulate=simulate, jitter=jitter,
                     pen_range=list(pen_range) if pen_range else None, pressure=pressure, bleed=bleed,
                     breaks=breaks, warp=warp)
        if pages is not None:
            _refuse_word_options(n=n != 2000, holdout_font=holdout_font, short_fraction=short_fraction, clean=clean)
            _write_pages(out, pages, seed, fonts, words, font, hand, ruled, tight, max_skew, overwrite)
            return
        result = write_synthetic_dataset(
            out, n=n, seed=seed, fonts_dir=fonts, words_file=words, holdout_font=holdout_font, overwrite=overwrite,
            short_fraction=short_fraction, only_fonts=font or None, clean=clean, hand=hand,
        )

    _print_result(result)


def _refuse_word_options(**given) -> None:
    """Options of word images mean nothing for pages: one line naming the first one given."""
    from banglaocr.errors import UserError

    for name, value in given.items():
        if value:
            raise UserError(f"--{name.replace('_', '-')} is for word images; --pages renders pages (leave it out)")


def _write_pages(out, pages, seed, fonts, words, font, hand, ruled, tight, max_skew, overwrite) -> None:
    """`synth --pages`: the pages, their truth, and one summary line."""
    from rich.progress import Progress

    from banglaocr.cli.common import err_console
    from banglaocr.data.synth_pages import write_synthetic_pages

    with Progress(console=err_console, transient=True, disable=pages < 4) as progress:
        task = progress.add_task("pages", total=pages)
        result = write_synthetic_pages(out, pages, seed, fonts_dir=fonts, only_fonts=font or None, words_file=words,
                                       hand=hand, ruled=ruled, tight=tight, max_skew=max_skew, overwrite=overwrite,
                                       on_page=lambda: progress.advance(task))
    pages = f"{result['n']} page{'s' if result['n'] != 1 else ''}"
    console.print(f"{pages}, {result['lines']} lines, {result['words']} words in "
                  f"{result['seconds']:.1f} s (seed {seed}) -> {out}/layout.json, {out}/pages/", highlight=False,
                  soft_wrap=True)


def _hand(**options):
    """The `HandConfig` of the hand options; its own checks become one line naming the option."""
    from banglaocr.config import HandConfig
    from banglaocr.errors import UserError

    try:
        return HandConfig(**options)
    except Exception as err:
        option = getattr(err, "field_name", None)  # the section's checks name the field they reject
        if option is None:
            raise
        raise UserError(f"--{option.replace('_', '-')}: {err}") from None


def _print_result(result: dict) -> None:
    """Images per font and split, and the time it took."""
    from rich.table import Table

    from banglaocr.data.synth import SPLITS

    table = Table(title=f"synthetic word images in {result['out_dir']}")
    table.add_column("font")
    for split in SPLITS:
        table.add_column(split, justify="right")
    table.add_column("total", justify="right")
    for name, per_split in result["fonts"].items():
        label = f"{name} [dim](held out)[/]" if name == result["holdout_font"] else name
        table.add_row(label, *(str(per_split[s]) for s in SPLITS), str(sum(per_split.values())))
    table.add_section()
    table.add_row("all", *(str(result["splits"][s]) for s in SPLITS), str(result["n"]), style="bold")
    console.print(table)
    console.print(
        f"{result['n']} images from {result['words']} words in {result['seconds']:.1f} s "
        f"(seed {result['seed']})",
        highlight=False,
    )
