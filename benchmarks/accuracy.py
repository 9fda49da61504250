"""Held-out-style accuracy: a banglaocr model and Tesseract 5 read the SAME word images.

Words that are NOT in the bundled training word list (`benchmarks/words/held_out_words.txt`,
from Debian's Bengali hunspell dictionary) are rendered in font families that no training recipe
can draw - they live in `benchmarks/fonts/`, not among the bundled fonts (a test checks both) -
with a scanner's flaws (tilt, blur, contrast, noise, JPEG: `banglaocr.data.synth.render_word`,
seeded). Then:

- the model reads them through banglaocr's own inference path (`banglaocr.infer.load_for_inference`
  + `read_images`, what `banglaocr predict` runs);
- Tesseract 5 reads each one as a single word: `tesseract IMG - -l ben --psm 8` (Debian packages
  `tesseract-ocr`, `tesseract-ocr-ben`), one subprocess per image.

Both readers' outputs go through the same normaliser and metrics as every banglaocr evaluation
(`banglaocr.metrics.corpus_scores`: CER = edits / reference characters; word accuracy = exact match
after normalisation). One table: CER and word accuracy per family and overall, for both readers.

    python benchmarks/accuracy.py                       # --model tiny, 400 words x 3 families
    python benchmarks/accuracy.py --model runs/tiny_base_v2 --out benchmarks/results/accuracy_v2
    python benchmarks/accuracy.py --no-tesseract --n 100

It writes OUT.md (the table), OUT.json (the numbers and settings) and OUT.jsonl (every image's
reference and both readings); the rendered images stay in --work (default: a temporary folder).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from banglaocr.errors import UserError  # noqa: E402

HERE = Path(__file__).resolve().parent
FONTS_DIR = HERE / "fonts"
WORDS_FILE = HERE / "words" / "held_out_words.txt"
RESULTS_DIR = HERE / "results"
TESSERACT_ARGS = ["-l", "ben", "--psm", "8"]
FAMILY_SEED_STRIDE = 1_000_000  # sample i of family k is drawn from (seed, k * stride + i)


@dataclass(frozen=True)
class Family:
    """A held-out font family: its name, the style it stands for, and its file in benchmarks/fonts."""

    name: str
    style: str
    font: str


FAMILIES = [
    Family("Ani", "handwriting-like (calligraphic pen)", "Ani.ttf"),
    Family("Alkatra", "heavy pen (brush)", "Alkatra-Bold.woff2"),
    Family("Mukti", "print", "Mukti.ttf"),
]


def benchmark_words(n: int) -> list[str]:
    """The first `n` held-out words; an error if any of them is in the bundled word list."""
    from banglaocr.data.synth import bundled_words, read_words

    words = read_words(WORDS_FILE)
    leaked = sorted(set(words) & set(bundled_words()))
    if leaked:
        raise UserError(f"{WORDS_FILE.name}: {len(leaked)} words are in the bundled word list, e.g. {leaked[0]}")
    if n > len(words):
        raise UserError(f"--n: {WORDS_FILE.name} holds {len(words)} words, asked for {n}")
    return words[:n]


def render(words: list[str], work: Path, seed: int) -> list[dict]:
    """Render every word in every family (scan flaws on); one row per image."""
    from banglaocr.data.synth import missing_glyphs, render_word, sample_rng

    rows = []
    for k, family in enumerate(FAMILIES):
        font = FONTS_DIR / family.font
        gaps = set(missing_glyphs(font, "".join(words)))
        if gaps:
            raise UserError(f"{family.font} has no glyph for {' '.join(sorted(gaps))}: choose other words")
        folder = work / family.name
        folder.mkdir(parents=True, exist_ok=True)
        for i, word in enumerate(words):
            path = folder / f"{i:04d}.png"
            render_word(word, font, sample_rng(seed, k * FAMILY_SEED_STRIDE + i)).save(path)
            rows.append({"family": family.name, "file": str(path.relative_to(work)), "reference": word})
    return rows


def read_with_model(model: str, paths: list[Path], batch_size: int) -> tuple[list[str], float]:
    """The model's readings (banglaocr's inference path) and images per second."""
    from banglaocr.infer import load_for_inference, read_images

    loaded, settings = load_for_inference(model, device="cpu")
    started = time.perf_counter()
    readings = list(read_images(loaded.model, loaded.tokenizer, paths, settings, batch_size=batch_size))
    seconds = time.perf_counter() - started
    failed = [r for r in readings if r.error]
    if failed:
        raise UserError(f"the model could not open {failed[0].source}: {failed[0].error}")
    return [r.text for r in readings], len(paths) / seconds


def tesseract_version() -> str:
    """`tesseract --version`'s first line; an error when Tesseract or its Bengali data is missing."""
    if shutil.which("tesseract") is None:
        raise UserError("tesseract not found: install tesseract-ocr and tesseract-ocr-ben (or pass --no-tesseract)")
    langs = subprocess.run(["tesseract", "--list-langs"], capture_output=True, text=True).stdout.split()
    if "ben" not in langs:
        raise UserError("tesseract has no 'ben' data: install tesseract-ocr-ben (or pass --no-tesseract)")
    return subprocess.run(["tesseract", "--version"], capture_output=True, text=True).stdout.splitlines()[0]


def read_with_tesseract(paths: list[Path], jobs: int) -> tuple[list[str], float]:
    """Tesseract's reading of each image as one word (--psm 8), `jobs` processes at a time."""
    env = {**os.environ, "OMP_THREAD_LIMIT": "1"}  # one core per process; parallelism comes from `jobs`

    def one(path: Path) -> str:
        result = subprocess.run(["tesseract", str(path), "-", *TESSERACT_ARGS], capture_output=True, text=True,
                                env=env)
        if result.returncode != 0:
            raise UserError(f"tesseract failed on {path}: {result.stderr.strip().splitlines()[-1:]}")
        return " ".join(result.stdout.split())

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        texts = list(pool.map(one, paths))
    return texts, len(paths) / (time.perf_counter() - started)


def score(rows: list[dict], reader: str) -> dict:
    """Corpus scores of one reader per family and overall (banglaocr.metrics, normalised)."""
    from banglaocr.metrics import corpus_scores

    table = {}
    for name in [f.name for f in FAMILIES] + ["overall"]:
        chosen = [r for r in rows if name == "overall" or r["family"] == name]
        scores = corpus_scores([r["reference"] for r in chosen], [r[reader] for r in chosen])
        table[name] = {"n": scores["n"], "cer": scores["cer"], "word_accuracy": scores["exact_match"]}
    return table


def markdown(results: dict) -> str:
    """The one table: per family and overall, CER and word accuracy of every reader."""
    readers = list(results["scores"])
    head = "| family | style | images | " + " | ".join(f"{r} CER | {r} word acc." for r in readers) + " |"
    lines = [head, "| --- | --- | ---: | " + " | ".join("---: | ---:" for _ in readers) + " |"]
    styles = {f.name: f.style for f in FAMILIES}
    for name in [f.name for f in FAMILIES] + ["overall"]:
        cells = []
        for reader in readers:
            s = results["scores"][reader][name]
            cells.append(f"{s['cer']:.3f} | {s['word_accuracy']:.3f}")
        label = f"**{name}**" if name == "overall" else name
        n = results["scores"][readers[0]][name]["n"]
        lines.append(f"| {label} | {styles.get(name, 'all families')} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def run(model: str, n: int, seed: int, out: Path, work: Path, tesseract: bool, jobs: int, batch_size: int) -> dict:
    words = benchmark_words(n)
    version = tesseract_version() if tesseract else None
    rows = render(words, work, seed)
    paths = [work / r["file"] for r in rows]
    model_key = f"banglaocr {model}"
    texts, model_speed = read_with_model(model, paths, batch_size)
    for row, text in zip(rows, texts):
        row[model_key] = text
    speeds = {model_key: model_speed}
    if tesseract:
        texts, speeds["Tesseract ben"] = read_with_tesseract(paths, jobs)
        for row, text in zip(rows, texts):
            row["Tesseract ben"] = text
    readers = [model_key] + (["Tesseract ben"] if tesseract else [])
    results = {
        "model": model, "words": len(words), "seed": seed, "tesseract": version,
        "tesseract_args": TESSERACT_ARGS, "families": [vars(f) for f in FAMILIES],
        "images_per_second": speeds, "scores": {reader: score(rows, reader) for reader in readers},
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(results, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    with out.with_suffix(".jsonl").open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    out.with_suffix(".md").write_text(markdown(results), encoding="utf-8")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny", help="a model name or folder, as for banglaocr predict")
    parser.add_argument("--n", type=int, default=400, help="words per family (held_out_words.txt holds 400)")
    parser.add_argument("--seed", type=int, default=0, help="rendering seed")
    parser.add_argument("--out", type=Path, default=None,
                        help="results path without suffix (default benchmarks/results/accuracy_<model>)")
    parser.add_argument("--work", type=Path, default=None, help="keep the rendered images here")
    parser.add_argument("--no-tesseract", action="store_true", help="score the model alone")
    parser.add_argument("--jobs", type=int, default=2, help="Tesseract processes at a time")
    parser.add_argument("--batch-size", type=int, default=64, help="the model's reading batch")
    args = parser.parse_args(argv)
    out = args.out or RESULTS_DIR / f"accuracy_{Path(args.model).name or 'model'}"
    work = args.work or Path(tempfile.mkdtemp(prefix="banglaocr-accuracy-"))
    try:
        results = run(args.model, args.n, args.seed, out, work, not args.no_tesseract, args.jobs, args.batch_size)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    print(markdown(results))
    speeds = ", ".join(f"{reader} {speed:.1f}" for reader, speed in results["images_per_second"].items())
    print(f"images/s: {speeds}; wrote {out.with_suffix('.md')}, .json, .jsonl")
    return 0


if __name__ == "__main__":
    sys.exit(main())
