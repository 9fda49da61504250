"""The review loop end to end on a hand the shipped reader never saw: pages -> predict -> review -> train -> read.

A person writes pages in a hand of their own; the shipped tiny reader reads it badly. Here that hand is the
CPU demo's (Galada, slant -0.35, pen 1, wobble 2.5: `benchmarks/segmentation.py`'s "unseen hand"), on pages
`synth --pages` renders (plain and ruled paper, skew, uneven light), with their true words and boxes.

1. `--review-pages` pages go into one PDF (a scanned notebook); `banglaocr predict --layout page` reads it
   with `tiny` (segmented, every word read, with its confidence).
2. The review, as `banglaocr review` would record it: the words in review order (least confident first),
   each corrected to its true text - the person - until `--words` are saved. A box that matches no true
   word (IoU < 0.5: a split or merged word) is marked illegible, as a person would, and not counted.
   The saves go through the review data set's own writer (`review.dataset`: crops, train/ val/ split by
   page, metadata.jsonl), and the train command is the one `review` prints (`review.command.adapt_command`).
3. That command runs: `banglaocr train --recipe adapt_reviewed ...` (LoRA on tiny, on the CPU).
4. `--heldout-pages` other pages of the same hand are read by `predict --layout page`, before (tiny) and
   after (the adapted run): page CER (page text = lines joined by a newline, words by a space;
   `metrics.corpus_scores`) against the true text, and the word CER of the words whose box matches a true one.

    python benchmarks/review_loop.py           # ~6 min on 2 busy CPU cores
    python benchmarks/review_loop.py --save    # also writes benchmarks/results/review_loop.txt
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

RESULTS = Path(__file__).resolve().parent / "results" / "review_loop.txt"
HELDOUT_SEED_OFFSET = 500
"""Held-out pages are pages of the same hand and seed from this index on: other words, other lines."""


def render_pages(seed: int, first: int, n: int):
    """Pages in recipes/cpu_demo.yaml's new style: its fonts, in its hand."""
    from banglaocr.config import load_recipe
    from banglaocr.data.synth import bundled_fonts, bundled_words, font_name
    from banglaocr.data.synth_pages import render_page

    style = load_recipe("cpu_demo").data.synth
    fonts = [p for p in bundled_fonts() if font_name(p) in style.fonts]
    return [render_page(seed, first + k, words=bundled_words(), fonts=fonts, hand=style.hand, ruled=0.5, tight=0.3)
            for k in range(n)]


def banglaocr(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """One banglaocr command, as a user runs it (this checkout's package, this Python)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-m", "banglaocr", *args], cwd=cwd, env=env, capture_output=True,
                          text=True)
    if done.returncode not in (0, 1):
        raise SystemExit(f"banglaocr {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return done


def read_page_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def truth_of_box(box, page) -> str | None:
    """The true text of the word whose true box overlaps `box` at IoU >= 0.5 most, or None."""
    from banglaocr.pages.scoring import iou

    best = max(((iou(box, word.box), word.text) for line in page.lines for word in line), default=(0.0, None))
    return best[1] if best[0] >= 0.5 else None


def review(rows_file: Path, pages: list, out: Path, words: int) -> tuple[str, dict]:
    """Correct the least confident words of `rows_file` to their truth until `words` are saved; the train
    command `review` prints and the counts."""
    from banglaocr.review.app import new_session
    from banglaocr.review.command import adapt_command
    from banglaocr.review.inputs import load_input
    from banglaocr.text import normalize

    review_input = load_input(rows_file)
    page_of = {row["file"]: pages[row["page"] - 1] for row in read_page_rows(rows_file) if "lines" in row}
    session = new_session(review_input, out, "")
    counts = {"saved": 0, "changed": 0, "illegible": 0}
    for item in session.order:
        if counts["saved"] >= words:
            break
        truth = truth_of_box(item.box, page_of[item.page])
        if truth is None:
            session.dataset.record(item, "illegible")
            counts["illegible"] += 1
            continue
        entry = session.dataset.record(item, "save", normalize(truth))
        counts["saved"] += 1
        counts["changed"] += entry["changed"]
    splits = {split: len((out / split / "metadata.jsonl").read_text(encoding="utf-8").splitlines())
              for split in ("train", "val") if (out / split / "metadata.jsonl").exists()}
    counts |= {f"{split} words": n for split, n in splits.items()}
    return adapt_command(review_input.model, out.resolve()), counts


def heldout_scores(rows_file: Path, pages: list) -> dict:
    """Page CER and matched-word CER of `predict --layout page` rows against the pages' truth."""
    from banglaocr.metrics import corpus_scores
    from banglaocr.text import normalize

    rows = read_page_rows(rows_file)
    references = [normalize(page.text) for page in pages]
    texts = [row.get("text", "") for row in rows]
    word_refs, word_hyps = [], []
    for row, page in zip(rows, pages):
        for word in (w for line in row.get("lines", []) for w in line):
            truth = truth_of_box(word["box"], page)
            if truth is not None:
                word_refs.append(normalize(truth))
                word_hyps.append(word.get("prediction") or "")
    page_scores = corpus_scores(references, texts)
    word_scores = corpus_scores(word_refs, word_hyps)
    return {"page_cer": page_scores["cer"], "word_cer": word_scores["cer"], "words": len(word_refs),
            "exact": sum(r == h for r, h in zip(word_refs, word_hyps)) / max(1, len(word_refs))}


def run(work: Path, seed: int, review_pages: int, heldout_pages: int, words: int, overrides: list[str]) -> str:
    lines, started = [], time.perf_counter()
    say = lambda text: (lines.append(text), print(text, file=sys.stderr, flush=True))  # noqa: E731
    pages = render_pages(seed, 0, review_pages)
    images = [page.image for page in pages]
    images[0].save(work / "notebook.pdf", "PDF", save_all=True, append_images=images[1:], resolution=200)
    heldout = render_pages(seed, HELDOUT_SEED_OFFSET, heldout_pages)
    (work / "heldout").mkdir()
    for k, page in enumerate(heldout):
        page.image.save(work / "heldout" / f"page{k:02d}.png")
    say(f"review loop: unseen hand (Galada, slant -0.35, pen 1, wobble 2.5), seed {seed}: {review_pages} pages "
        f"({sum(len(l) for p in pages for l in p.lines)} words) to review in notebook.pdf, {heldout_pages} held-out "
        f"pages ({sum(len(l) for p in heldout for l in p.lines)} words)")

    t = time.perf_counter()
    banglaocr("predict", "--model", "tiny", "--layout", "page", "notebook.pdf", "--out", "notebook.jsonl", cwd=work)
    say(f"1. predict --layout page notebook.pdf: {time.perf_counter() - t:.0f} s")
    t = time.perf_counter()
    command, counts = review(work / "notebook.jsonl", pages, work / "reviewed", words)
    say(f"2. review, least confident first: {counts} ({time.perf_counter() - t:.0f} s)")
    say(f"   the train command review prints: {command}")
    argv = shlex.split(command)[1:] + overrides
    if overrides:
        say(f"   with the overrides {' '.join(overrides)}")
    t = time.perf_counter()
    banglaocr(*argv, cwd=work)
    run_dir = next(a.split("=", 1)[1] for a in argv if a.startswith("train.output_dir="))
    say(f"3. train (LoRA on tiny, CPU): {time.perf_counter() - t:.0f} s")
    t = time.perf_counter()
    banglaocr("predict", "--model", "tiny", "--layout", "page", "heldout", "--out", "before.jsonl", cwd=work)
    banglaocr("predict", "--model", run_dir, "--layout", "page", "heldout", "--out", "after.jsonl", cwd=work)
    before, after = heldout_scores(work / "before.jsonl", heldout), heldout_scores(work / "after.jsonl", heldout)
    say(f"4. read the held-out pages before and after: {time.perf_counter() - t:.0f} s")
    say(f"{'held-out pages':<22} {'page CER':>9} {'word CER':>9} {'exact':>7} {'words':>6}")
    for name, scores in (("before: tiny", before), ("after: tiny + LoRA", after)):
        say(f"{name:<22} {scores['page_cer']:>9.3f} {scores['word_cer']:>9.3f} {scores['exact']:>7.3f} "
            f"{scores['words']:>6}")
    say(f"page CER after / before: {after['page_cer'] / before['page_cer']:.2f} "
        f"({time.perf_counter() - started:.0f} s in all)")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--review-pages", type=int, default=3)
    parser.add_argument("--heldout-pages", type=int, default=4)
    parser.add_argument("--words", type=int, default=100, help="words the person corrects")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="recipe overrides added to the train command (e.g. train.max_steps=600)")
    parser.add_argument("--save", action="store_true", help=f"also write {RESULTS.relative_to(ROOT)}")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="review-loop-") as folder:
        text = run(Path(folder), args.seed, args.review_pages, args.heldout_pages, args.words, args.overrides)
    print(text, end="")
    if args.save:
        RESULTS.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
