"""Synthetic Bangla word images: a word, a font, dark ink on light paper, a scanner's flaws.

`write_synthetic_dataset` writes an imagefolder data set that `datasets.load_dataset("imagefolder")`
and `banglaocr.data.sources` read as they are::

    out_dir/synth.json                     the parameters and counts (marks the folder as synth output)
    out_dir/{train,val,test}/NNNNNN.png    one word per image, NNNNNN = global sample index
    out_dir/{train,val,test}/metadata.jsonl  {"file_name", "text", "font"} per image

Everything is seeded: sample i is drawn from (seed, i) alone, so the same seed gives byte-identical
files whatever the number of worker processes. Words are dealt from one shuffled list, so train,
val and test share no word while n is at most the size of the word list. A held-out font appears
only in val and test, which measures how the model does on a style it never saw.

Shaping Bangla needs Pillow's RAQM layout engine (libraqm + libfribidi); without it Pillow
silently draws broken conjuncts and misplaced vowel signs, so rendering refuses instead.

>>> import numpy as np
>>> image = render_word("বাংলা", bundled_fonts()[0], np.random.default_rng(0))
>>> image.mode, image.height < image.width
('RGB', True)
"""

from __future__ import annotations

import dataclasses
import functools
import io
import json
import multiprocessing
import os
import shutil
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont, features

from banglaocr.config import HandConfig
from banglaocr.data.handwriting import simulated_ink
from banglaocr.errors import UserError
from banglaocr.text import _KHANDA_TA, _KHANDA_TA_LEGACY, normalize

ASSETS = Path(__file__).resolve().parent.parent / "assets"
FONT_SUFFIXES = (".ttf", ".otf", ".woff", ".woff2")
SPLITS = ("train", "val", "test")
INFO_FILE = "synth.json"

# Rendering ranges. Font sizes of 28-48 px give word crops 40-80 px high, the range of scanned
# handwritten word crops after the budget resize; wider ranges only waste pixels.
FONT_SIZE = (28, 48)
MAX_ROTATION_DEG = 3.0  # word crops are deskewed by the cropper; only a small residual tilt is realistic
BLUR_PROBABILITY, BLUR_RADIUS = 0.5, (0.3, 1.1)
NOISE_SIGMA = (0.0, 8.0)
JPEG_PROBABILITY, JPEG_QUALITY = 0.3, (35, 90)
# Short items for a curriculum's first stage: every letter alone and every consonant with every
# vowel sign (FACTS: a tiny model learns to read far sooner when it starts on such items).
CONSONANTS = [chr(c) for c in range(0x0995, 0x09BA) if chr(c) not in "\u09a9\u09b1\u09b3\u09b4\u09b5"] + ["ড়", "ঢ়", "য়"]
VOWELS = [chr(c) for c in range(0x0985, 0x0995) if chr(c) not in "\u098d\u098e\u0991\u0992"]
VOWEL_SIGNS = ["া", "ি", "ী", "ু", "ূ", "ৃ", "ে", "ৈ", "ো", "ৌ"]
UNMAPPED = "\ue000"  # a private-use code point: what a font draws for a character it lacks
# Below this many images the start-up of worker processes costs more than it saves.
MIN_IMAGES_PER_WORKER = 200


def require_raqm() -> None:
    """Raise `UserError` unless Pillow can shape complex scripts (RAQM layout).

    >>> require_raqm()  # silent where libraqm and libfribidi are available
    """
    if not features.check("raqm"):
        raise UserError(
            "Pillow has no RAQM text layout, so Bangla would render broken (visible hasanta, "
            "vowel signs on the wrong side). Install libfribidi (Debian/Ubuntu: apt-get install "
            "libfribidi0; macOS: brew install fribidi) or a Pillow built with libraqm, then check "
            "with: python -c \"from PIL import features; print(features.check('raqm'))\""
        )


def font_name(path: Path | str) -> str:
    """The name a font goes by in metadata and `holdout_font`: its file stem.

    >>> font_name("fonts/Lohit-Bengali.ttf")
    'Lohit-Bengali'
    """
    return Path(path).stem


def find_fonts(fonts_dir: Path | str) -> list[Path]:
    """Font files (.ttf .otf .woff .woff2) directly in `fonts_dir`, sorted by name.

    >>> names = [font_name(p) for p in find_fonts(ASSETS / "fonts")]
    >>> "Lohit-Bengali" in names, "Galada-Regular" in names  # .ttf and .woff2 alike
    (True, True)
    """
    folder = Path(fonts_dir)
    if not folder.is_dir():
        raise UserError(f"fonts: no such folder '{folder}'")
    fonts = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in FONT_SUFFIXES)
    if not fonts:
        raise UserError(f"fonts: no font files ({' '.join(FONT_SUFFIXES)}) in '{folder}'")
    names = [font_name(p) for p in fonts]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        # Fonts are named by stem in metadata and --holdout-font; two files with one stem would be ambiguous.
        raise UserError(f"fonts: several files share the name {', '.join(duplicates)} in '{folder}'")
    return fonts


def bundled_fonts() -> list[Path]:
    """The OFL Bengali fonts shipped with the package.

    >>> len(bundled_fonts()) >= 5
    True
    """
    return find_fonts(ASSETS / "fonts")


def read_words(words_file: Path | str) -> list[str]:
    """One word per line, normalised, empty lines and repeats dropped, first-seen order kept.

    >>> import tempfile, pathlib
    >>> f = pathlib.Path(tempfile.mkdtemp()) / "w.txt"
    >>> _ = f.write_text("আমি\\n\\nআমি \\nতুমি\\n", encoding="utf-8")
    >>> read_words(f)
    ['আমি', 'তুমি']
    """
    from banglaocr.files import read_text

    path = Path(words_file)
    lines = read_text(path, f"words file {path}").splitlines()  # a FIFO or a device is refused, not read
    words = list(dict.fromkeys(word for word in map(normalize, lines) if word))
    if not words:
        raise UserError(f"words: '{path}' holds no words")
    return words


def bundled_words() -> list[str]:
    """The bundled Bangla word list (Apache-2.0, about 41k words), normalised and de-duplicated.

    >>> words = bundled_words()
    >>> len(words) > 40_000, len(set(words)) == len(words)
    (True, True)
    """
    return read_words(ASSETS / "words" / "ben_words.txt")


@functools.lru_cache(maxsize=256)
def _font(path: str, size: int) -> ImageFont.FreeTypeFont:
    # Loading a font file costs about as much as rendering a word; each (font, size) is reused.
    return ImageFont.truetype(path, size, layout_engine=ImageFont.Layout.RAQM)


@functools.lru_cache(maxsize=64)
def font_axes(path: Path | str) -> dict[str, tuple[float, float]]:
    """The variation axes of a variable font, name -> (min, max); {} for a static font.

    Synth draws every axis uniformly per image (a weight, a width), so one variable font file
    gives a continuum of styles.

    >>> font_axes(ASSETS / "fonts" / "Lohit-Bengali.ttf")
    {}
    """
    try:
        axes = load_font(path, FONT_SIZE[0]).get_variation_axes()
    except OSError:  # FreeType's answer for a font without variation tables
        return {}
    names = [axis["name"].decode("ascii", "replace") if isinstance(axis["name"], bytes) else str(axis["name"])
             for axis in axes]
    return {name: (float(axis["minimum"]), float(axis["maximum"])) for name, axis in zip(names, axes)}


def _drawn(font: ImageFont.FreeTypeFont, text: str) -> tuple:
    left, top, right, bottom = font.getbbox(text)
    image = Image.new("L", (max(1, right - left), max(1, bottom - top)), 0)
    ImageDraw.Draw(image).text((-left, -top), text, font=font, fill=255)
    return image.size, image.tobytes()


def missing_glyphs(font_path: Path | str, text: str) -> list[str]:
    """The characters of `text` the font has no glyph for: it draws them exactly as it draws a
    private-use code point that no Bengali font maps (its .notdef box).

    >>> missing_glyphs(ASSETS / "fonts" / "LikhanNormal.ttf", "হঠাৎ")
    ['ৎ']
    """
    font = load_font(font_path, FONT_SIZE[0])
    box = _drawn(font, UNMAPPED)
    return [c for c in dict.fromkeys(text) if _drawn(font, c) == box]


@functools.lru_cache(maxsize=64)
def _lacks_khanda_ta(font_path: str) -> bool:
    return bool(missing_glyphs(font_path, _KHANDA_TA))


def spelled_for(word: str, font_path: Path | str) -> str:
    """`word` as the font can draw it: fonts older than Unicode 4.1's ৎ (e.g. Likhan, Jamrul) draw
    khanda ta only from its legacy spelling ত + hasanta + ZWJ, which `normalize` maps back to ৎ -
    so the label stays as it is.

    >>> spelled_for("হঠাৎ", ASSETS / "fonts" / "LikhanNormal.ttf") == "হঠাত\u09cd\u200d"
    True
    >>> spelled_for("হঠাৎ", ASSETS / "fonts" / "Lohit-Bengali.ttf")
    'হঠাৎ'
    """
    if _KHANDA_TA in word and _lacks_khanda_ta(str(font_path)):
        return word.replace(_KHANDA_TA, _KHANDA_TA_LEGACY)
    return word


def load_font(path: Path | str, size: int) -> ImageFont.FreeTypeFont:
    """Open a font with RAQM layout, turning a broken file into a `UserError`.

    >>> load_font(bundled_fonts()[0], 32).size
    32
    """
    try:
        return _font(str(path), int(size))
    except OSError as err:
        raise UserError(f"fonts: cannot load '{path}' ({err})") from None


def render_word(word: str, font_path: Path | str, rng: np.random.Generator, clean: bool = False,
                hand: HandConfig | None = None, size: int | None = None) -> Image.Image:
    """Render one word as a degraded, tightly cropped RGB scan; all randomness comes from `rng`.

    `clean=True` draws black ink on white paper with none of the scanner's flaws (tilt, blur,
    contrast, noise, JPEG): the reference renders that measure reading itself. `hand` writes the
    word in one writer's hand (slant, pen width, wobbly baseline) before the scanner's flaws. `size` (pixels)
    sets the font size, else it is drawn from `FONT_SIZE` (a page's words share one size).

    >>> import numpy as np
    >>> a = render_word("কথা", bundled_fonts()[0], np.random.default_rng(1))
    >>> b = render_word("কথা", bundled_fonts()[0], np.random.default_rng(1))
    >>> a.tobytes() == b.tobytes()
    True
    """
    require_raqm()
    return _render(word, str(font_path), rng, clean, hand, size)


def _render(word: str, font_path: str, rng: np.random.Generator, clean: bool = False,
            hand: HandConfig | None = None, size: int | None = None) -> Image.Image:
    drawn = int(rng.integers(FONT_SIZE[0], FONT_SIZE[1] + 1))  # drawn either way: the stream stays as it was
    size = drawn if size is None else int(size)
    font = load_font(font_path, size)
    word = spelled_for(word, font_path)
    axes = font_axes(font_path)
    if axes:
        # Drawn only for a variable font: a static font's images keep their exact random stream.
        font.set_variation_by_axes([float(rng.uniform(low, high)) for low, high in axes.values()])
    # The simulated hand takes its numbers from a stream of its own (spawning leaves `rng`'s draws
    # as they were), so the paper, ink, margins and scanner flaws of a sample stay the same with it.
    hand_rng = rng.spawn(1)[0] if hand is not None and hand.simulated else None
    simulate = hand_rng is not None and hand_rng.random() < hand.simulate
    # Light, slightly warm or grey paper; ink from black to ballpoint blue, as in scanned forms.
    paper_level, warmth = int(rng.integers(215, 256)), int(rng.integers(0, 18))
    paper = (paper_level, paper_level, paper_level - warmth)
    ink_level = rng.integers(0, 70)
    ink = (int(ink_level), int(ink_level), int(ink_level + rng.integers(0, 90)))
    if clean:
        paper, ink = (255, 255, 255), (0, 0, 0)

    left, top, right, bottom = font.getbbox(word)
    # A small random margin per side: real crops are never exactly tight, and never centred.
    margin = rng.integers(2, max(3, size // 4) + 1, size=4)
    if simulate:
        image = _on_paper(simulated_ink(word, font, hand, hand_rng), paper, ink, margin)
    else:
        width = max(1, right - left) + int(margin[0] + margin[2])
        height = max(1, bottom - top) + int(margin[1] + margin[3])
        image = Image.new("RGB", (width, height), paper)
        ImageDraw.Draw(image).text((int(margin[0]) - left, int(margin[1]) - top), word, font=font, fill=ink)
    if hand is not None and (hand.slant or hand.pen or hand.wobble):
        # Drawn only for a hand: images without one keep their exact random stream.
        image = _write_in_hand(image, paper, hand, rng)

    # Every scalar is drawn whether or not its effect is applied, and the image-sized noise comes
    # last, so tuning one probability or range leaves the other choices of a sample as they were.
    angle = float(rng.uniform(-MAX_ROTATION_DEG, MAX_ROTATION_DEG))
    blur, blur_radius = rng.random() < BLUR_PROBABILITY, float(rng.uniform(*BLUR_RADIUS))
    contrast, brightness = float(rng.uniform(0.75, 1.15)), float(rng.uniform(-20.0, 20.0))
    sigma = float(rng.uniform(*NOISE_SIGMA))
    jpeg, quality = rng.random() < JPEG_PROBABILITY, int(rng.integers(JPEG_QUALITY[0], JPEG_QUALITY[1] + 1))
    if clean:
        return image

    image = image.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=paper)
    if blur:
        image = image.filter(ImageFilter.GaussianBlur(blur_radius))
    pixels = np.asarray(image, dtype=np.float32)
    pixels = (pixels - 128.0) * contrast + 128.0 + brightness
    pixels += rng.normal(0.0, sigma, size=pixels.shape).astype(np.float32)
    image = Image.fromarray(np.clip(pixels + 0.5, 0, 255).astype(np.uint8), "RGB")
    if jpeg:
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=quality)
        image = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
    return image


def _on_paper(coverage: np.ndarray, paper: tuple, ink: tuple, margin: np.ndarray) -> Image.Image:
    """Ink of the given coverage (0..1) on paper, with a margin (left, top, right, bottom) of paper."""
    left, top, right, bottom = (int(m) for m in margin)
    alpha = np.pad(coverage, ((top, bottom), (left, right)))[..., None]
    pixels = np.asarray(paper, np.float32) * (1.0 - alpha) + np.asarray(ink, np.float32) * alpha
    return Image.fromarray(np.clip(pixels + 0.5, 0, 255).astype(np.uint8), "RGB")


def _write_in_hand(image: Image.Image, paper: tuple, hand: HandConfig, rng: np.random.Generator) -> Image.Image:
    """Shear the ink about the middle row, broaden the strokes, and wave the baseline."""
    slant = hand.slant + float(rng.uniform(-0.05, 0.05)) if hand.slant else 0.0
    phase, wavelength = float(rng.uniform(0.0, 2.0 * np.pi)), float(rng.uniform(40.0, 90.0))
    if slant:
        width, height = image.size
        room = int(abs(slant) * height) + 2  # the sheared ink stays inside the wider canvas
        canvas = Image.new("RGB", (width + room, height), paper)
        canvas.paste(image, (room // 2, 0))
        # output (x, y) samples input (x + slant * (y - height / 2), y): no shift at the middle row
        image = canvas.transform(canvas.size, Image.Transform.AFFINE, (1, slant, -slant * height / 2, 0, 1, 0),
                                 resample=Image.Resampling.BICUBIC, fillcolor=paper)
    if hand.pen:
        image = image.filter(ImageFilter.MinFilter(2 * hand.pen + 1))  # dark ink spreads over light paper
    if hand.wobble:
        pad = int(np.ceil(hand.wobble))
        pixels = np.asarray(image)
        padded = np.full((pixels.shape[0] + 2 * pad, pixels.shape[1], 3), paper, dtype=np.uint8)
        padded[pad:pad + pixels.shape[0]] = pixels
        shifts = np.round(hand.wobble * np.sin(np.arange(pixels.shape[1]) * 2 * np.pi / wavelength + phase))
        out = np.empty_like(padded)
        for x, shift in enumerate(shifts.astype(int)):
            out[:, x] = np.roll(padded[:, x], shift, axis=0)
        image = Image.fromarray(out, "RGB")
    return image


def sample_rng(seed: int, index: int) -> np.random.Generator:
    """The random stream of sample `index`: depends on (seed, index) only, never on worker order.

    >>> int(sample_rng(0, 3).integers(1000)) == int(sample_rng(0, 3).integers(1000))
    True
    """
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index,)))


def short_items() -> list[str]:
    """Single letters and consonant + vowel sign syllables, normalised (about 400 items).

    >>> items = short_items()
    >>> "ক" in items and "কি" in items and "অ" in items, len(items) > 350
    (True, True)
    """
    items = CONSONANTS + VOWELS + ["ং", "ঃ", "ৎ"] + [c + sign for c in CONSONANTS for sign in VOWEL_SIGNS]
    return list(dict.fromkeys(normalize(item) for item in items))


def synth_settings(n: int, seed: int, holdout_font: str | None = None, short_fraction: float = 0.0,
                   only_fonts: list[str] | None = None, clean: bool = False, hand: HandConfig | None = None) -> dict:
    """What decides a synthetic data set's images, as `synth.json` records it (compare with `==`).

    >>> synth_settings(100, 1, only_fonts=["Mina-Bold", "Atma-Bold"])["fonts_used"]
    ['Atma-Bold', 'Mina-Bold']
    """
    return {"n": n, "seed": seed, "holdout_font": holdout_font, "short_fraction": short_fraction,
            "fonts_used": sorted(set(only_fonts)) if only_fonts else None, "clean": clean,
            "hand": dataclasses.asdict(hand) if hand is not None and not hand.plain else None}


def recorded_settings(info: dict) -> dict:
    """The `synth_settings` a folder's `synth.json` records; a folder rendered before an option
    existed does not name it and used its default.

    >>> recorded_settings({"n": 10, "seed": 0, "holdout_font": None}) == synth_settings(10, 0)
    True
    >>> old = {"n": 10, "seed": 0, "hand": {"slant": -0.35, "pen": 1, "wobble": 2.5}}
    >>> recorded_settings(old) == synth_settings(10, 0, hand=HandConfig(slant=-0.35, pen=1, wobble=2.5))
    True
    """
    defaults = synth_settings(n=0, seed=0)
    settings = {key: info.get(key, default) for key, default in defaults.items()}
    if settings["fonts_used"]:
        settings["fonts_used"] = sorted(settings["fonts_used"])
    if settings["hand"]:
        # A hand recorded before its simulated-hand keys existed used their defaults.
        settings["hand"] = {**dataclasses.asdict(HandConfig()), **settings["hand"]}
    return settings


def _render_to_file(job: tuple[int, int, str, str, str, bool, HandConfig | None]) -> None:
    seed, index, word, font_path, out_path, clean, hand = job
    # compress_level 1: a third of the time of the default level for about 10% larger files.
    _render(word, font_path, sample_rng(seed, index), clean, hand).save(out_path, format="PNG", compress_level=1)


def _split_sizes(n: int, splits: tuple[float, float, float]) -> dict[str, int]:
    if len(splits) != 3 or any(f < 0 for f in splits) or abs(sum(splits) - 1.0) > 1e-6:
        raise UserError(f"splits: need three fractions >= 0 for train/val/test summing to 1, got {tuple(splits)}")
    n_val, n_test = round(n * splits[1]), round(n * splits[2])
    return {"train": n - n_val - n_test, "val": n_val, "test": n_test}


def _prepare_out_dir(out_dir: Path, overwrite: bool) -> None:
    """Create (or, with `overwrite`, empty an earlier synth output in) `out_dir`; `UserError` when it cannot be."""
    try:
        _create_out_dir(out_dir, overwrite)
    except OSError as err:  # a read-only file system, /proc, a file on the way, no permission
        raise UserError(f"out: cannot create '{out_dir}' ({err.strerror or err}); "
                        "choose a folder you can write to") from None


def _create_out_dir(out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"out: '{out_dir}' exists and is not a folder; choose another folder")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        if not overwrite:
            raise UserError(
                f"out: '{out_dir}' is not empty; pass --overwrite to replace an earlier synth output"
            )
        if not (out_dir / INFO_FILE).is_file():
            # --overwrite deletes files: only ever in a folder this function wrote before.
            raise UserError(
                f"out: '{out_dir}' is not empty and holds no {INFO_FILE}, so it is not a synth output; "
                "refusing to delete it - choose another folder"
            )
        for split in SPLITS:
            shutil.rmtree(out_dir / split, ignore_errors=True)
        (out_dir / INFO_FILE).unlink()
    for split in SPLITS:
        (out_dir / split).mkdir(parents=True, exist_ok=True)


def _default_workers(n: int) -> int:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cpus, n // MIN_IMAGES_PER_WORKER))


def _choose_fonts(fonts_dir: Path | str | None, only_fonts: list[str] | None, holdout_font: str | None,
                  needs_train_font: bool) -> list[Path]:
    """The fonts to render with (`only_fonts` of the folder's, else all), each checked to load."""
    fonts = find_fonts(fonts_dir) if fonts_dir is not None else bundled_fonts()
    names = [font_name(p) for p in fonts]
    if only_fonts:
        unknown = [name for name in only_fonts if name not in names]
        if unknown:
            raise UserError(f"font '{unknown[0]}' is not among the fonts: {', '.join(names)}")
        fonts = [p for p in fonts if font_name(p) in only_fonts]
        names = [font_name(p) for p in fonts]
    if holdout_font is not None and holdout_font not in names:
        raise UserError(f"holdout font '{holdout_font}' is not among the fonts: {', '.join(names)}")
    if needs_train_font and all(name == holdout_font for name in names):
        raise UserError(f"holdout font '{holdout_font}' is the only font; train needs at least one other")
    for path in fonts:
        load_font(path, FONT_SIZE[0])  # fail on a broken font file now, not in a worker halfway through
    return fonts


def _render_all(jobs: list[tuple], workers: int) -> None:
    """Render every job (`_render_to_file`), in `workers` processes; the files do not depend on `workers`."""
    if workers == 1:
        for job in jobs:
            _render_to_file(job)
        return
    with multiprocessing.get_context().Pool(workers) as pool:
        for _ in pool.imap_unordered(_render_to_file, jobs, chunksize=max(1, len(jobs) // (workers * 8))):
            pass


def _plan_jobs(out: Path, n: int, seed: int, words: list[str], fonts: list[Path], holdout_font: str | None,
               sizes: dict[str, int], short_fraction: float, clean: bool, hand: HandConfig | None):
    """Which word, font and split each image gets: (render jobs, metadata rows per split, counts per font)."""
    names = [font_name(p) for p in fonts]
    train_fonts = [p for p in fonts if font_name(p) != holdout_font]
    # The plan (which word, which font, which split) comes from the seed's own stream; the pixels of
    # sample i from (seed, i). Splits take consecutive indices, words are dealt from one permutation.
    plan_rng = np.random.default_rng(np.random.SeedSequence(seed))
    word_order = plan_rng.permutation(len(words))
    # Drawn from a stream of its own, and only when asked for: the word plan stays the same.
    short_rng = np.random.default_rng(np.random.SeedSequence([seed, 1])) if short_fraction > 0 else None
    shorts = short_items()
    digits = max(6, len(str(n - 1)))
    jobs, rows = [], {split: [] for split in SPLITS}
    counts = {name: dict.fromkeys(SPLITS, 0) for name in names}
    index = 0
    for split in SPLITS:
        pool = [train_fonts[i] for i in plan_rng.permutation(len(train_fonts))]
        if split != "train" and holdout_font is not None:
            # First in the deal, so a held-out font is in val and test whenever they hold any image.
            pool.insert(0, fonts[names.index(holdout_font)])
        # Fonts dealt round-robin (balanced counts; which fonts get the remainder is random), then shuffled.
        split_fonts = [pool[i % len(pool)] for i in range(sizes[split])]
        plan_rng.shuffle(split_fonts)
        for font_path in split_fonts:
            word = words[word_order[index % len(words)]]
            if short_rng is not None and short_rng.random() < short_fraction:
                word = shorts[int(short_rng.integers(len(shorts)))]
            file_name = f"{index:0{digits}d}.png"
            jobs.append((seed, index, word, str(font_path), str(out / split / file_name), clean, hand))
            rows[split].append({"file_name": file_name, "text": word, "font": font_name(font_path)})
            counts[font_name(font_path)][split] += 1
            index += 1
    return jobs, rows, counts


def write_synthetic_dataset(
    out_dir: Path | str,
    n: int,
    seed: int,
    fonts_dir: Path | str | None = None,
    words_file: Path | str | None = None,
    holdout_font: str | None = None,
    splits: tuple[float, float, float] = (0.8, 0.1, 0.1),
    overwrite: bool = False,
    workers: int | None = None,
    short_fraction: float = 0.0,
    only_fonts: list[str] | None = None,
    clean: bool = False,
    hand: HandConfig | None = None,
) -> dict:
    """Render `n` word images into an imagefolder data set under `out_dir`; return the counts.

    `fonts_dir`/`words_file` default to the bundled ones. `holdout_font` (a font's file stem) is
    used only in val and test. `workers` defaults to the CPU count (fewer for small `n`); the files
    are the same for any value. `short_fraction` of the samples show a `short_items()` item (a
    letter, or a consonant with a vowel sign) instead of a word; 0 leaves every other sample as it was.
    `only_fonts` (font file stems) renders in those fonts alone; `clean` draws black on white
    without the scanner's flaws, `hand` writes every word in one writer's hand (see `render_word`).

    >>> import tempfile
    >>> out = tempfile.mkdtemp()
    >>> counts = write_synthetic_dataset(out, n=10, seed=0, holdout_font="Lohit-Bengali")
    >>> counts["splits"]
    {'train': 8, 'val': 1, 'test': 1}
    >>> counts["fonts"]["Lohit-Bengali"]["train"]
    0
    """
    started = time.perf_counter()
    require_raqm()
    if n < 1:
        raise UserError(f"n: need at least 1 image, got {n}")
    if seed < 0:
        raise UserError(f"seed: need a number >= 0, got {seed}")
    if not 0.0 <= short_fraction <= 1.0:
        raise UserError(f"short fraction: need a number in [0, 1], got {short_fraction}")
    sizes = _split_sizes(n, splits)
    fonts = _choose_fonts(fonts_dir, only_fonts, holdout_font, needs_train_font=sizes["train"] > 0)
    words = read_words(words_file) if words_file is not None else bundled_words()
    out = Path(out_dir)
    _prepare_out_dir(out, overwrite)

    jobs, rows, counts = _plan_jobs(out, n, seed, words, fonts, holdout_font, sizes, short_fraction, clean, hand)

    _render_all(jobs, _default_workers(n) if workers is None else max(1, workers))
    for split in SPLITS:
        with open(out / split / "metadata.jsonl", "w", encoding="utf-8") as f:
            for row in rows[split]:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
    # No paths in synth.json: the same seed gives the same bytes wherever the folder lives.
    result = {
        **synth_settings(n, seed, holdout_font, short_fraction, only_fonts, clean, hand),
        "words": len(words),
        "splits": sizes,
        "fonts": counts,
        # The weight / width ranges each image of a variable font was drawn from.
        "font_axes": {font_name(p): {axis: list(bounds) for axis, bounds in font_axes(p).items()}
                      for p in fonts if font_axes(p)},
    }
    (out / INFO_FILE).write_text(json.dumps(result, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return {**result, "out_dir": str(out), "seconds": time.perf_counter() - started}
