"""What a reading's confidence costs: `generate_readings` with and without it, side by side.

Both variants run the same function on the same model and the same images (resized for the model once,
batched alike): greedy `generate` with banglaocr's logits processors. With confidence, the probe
(`confidence.TokenProbabilities`) adds one logsumexp over the vocabulary per step and one gather, and each
reading's tokens are decoded prefix by prefix to find its grapheme clusters. Without it, neither.

Timing: one process, one torch thread, the variants interleaved A B, B A, ... (drift hits both), one
warm-up pass each, then the median over `--reps` passes of images / wall-clock second. Sanity: the texts
of both variants are identical (the probe changes no score). The last line is
`confidence_time_ratio=X.XXX` (time with / time without).

    python benchmarks/confidence_overhead.py
    python benchmarks/confidence_overhead.py --model tiny --n 256 --batch-size 32 --reps 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from banglaocr.data.pixels import model_size, resize_for_model  # noqa: E402
from banglaocr.data.synth import bundled_fonts, bundled_words, render_word  # noqa: E402
from banglaocr.infer import generate_readings, load_for_inference  # noqa: E402


def word_images(n: int, seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    words, fonts = bundled_words(), bundled_fonts()
    return [render_word(words[int(rng.integers(len(words)))], fonts[i % len(fonts)], rng) for i in range(n)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    loaded, settings = load_for_inference(args.model, precision="fp32", device="cpu")
    images = word_images(args.n)
    sizes = [model_size(image.height, image.width, settings.image) for image in images]
    shown = [resize_for_model(image, settings.image) for image in images]

    def run(confidence: bool):
        start = time.perf_counter()
        texts, confidences = generate_readings(loaded.model, loaded.tokenizer, shown, settings,
                                               batch_size=args.batch_size, sizes=sizes, confidence=confidence)
        return time.perf_counter() - start, texts

    times = {True: [], False: []}
    texts = {}
    for variant in (True, False):
        run(variant)  # warm-up
    for rep in range(args.reps):
        for variant in ((True, False) if rep % 2 == 0 else (False, True)):
            seconds, texts[variant] = run(variant)
            times[variant].append(seconds)
    with_s, without_s = statistics.median(times[True]), statistics.median(times[False])
    print(f"model {args.model}, {args.n} word images, batch {args.batch_size}, greedy, CPU, 1 thread, "
          f"median of {args.reps} interleaved passes")
    print(f"without confidence: {args.n / without_s:8.1f} images/s ({without_s:.3f} s)")
    print(f"with confidence:    {args.n / with_s:8.1f} images/s ({with_s:.3f} s)")
    same = sum(a == b for a, b in zip(texts[True], texts[False])) / args.n
    print(f"identical texts: {same:.1%}")
    print(f"confidence_time_ratio={with_s / without_s:.3f}")


if __name__ == "__main__":
    main()
