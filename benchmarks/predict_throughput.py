"""Images per second of `banglaocr predict`'s reading path: batched vs one image at a time.

Both variants run the SAME function `predict` runs - `banglaocr.infer.read_images` over image
file paths: decode, resize to the model's image budget, left-padded prompts, greedy
`generate`, decode + normalise - on the same model and the same images; only `batch_size`
differs (1 vs `--batch-size`, default 32). The batched variant also gets `generate_texts`'
width ordering (similar widths share a batch, less padding); at batch 1 it has nothing to do.

Timing: one process, the variants interleaved A B, B A, ... (drift hits both), one warm-up pass
each, then the median over `--reps` passes of images / wall-clock second. Model loading is not
timed. Sanity: the fraction of images both variants read identically (greedy decoding; left
padding should not change the result, up to float noise in near-ties).

The model defaults to the CPU demo run (`runs/cpu_demo`: its best/ model, trained by
`banglaocr train --recipe cpu_demo`); the images to the first `--n` of its synthetic test split
(held-out font), else `--n` freshly rendered words. The last line is `batched_speedup=X.XX`.

    python benchmarks/predict_throughput.py
    python benchmarks/predict_throughput.py --model runs/cpu_demo --batch-size 16 --n 256 --reps 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from banglaocr.infer import load_for_inference, read_images  # noqa: E402


def benchmark_images(model: str, n: int, work: Path) -> list[Path]:
    """The first `n` test images of the run's synthetic data, else `n` freshly rendered words."""
    run = Path(model)
    found = sorted(run.glob("synth-*/test/*.png")) if run.is_dir() else []
    if len(found) >= n:
        return found[:n]
    from banglaocr.data.synth import write_synthetic_dataset

    folder = work / "words"
    write_synthetic_dataset(folder, n=max(n * 2, 10), seed=123)
    return sorted(folder.rglob("*.png"))[:n]


def timed_pass(loaded, settings, paths: list[Path], batch_size: int) -> tuple[float, list[str | None]]:
    """(images per second, texts) of one `read_images` pass over `paths`."""
    start = time.perf_counter()
    texts = [r.text for r in read_images(loaded.model, loaded.tokenizer, paths, settings, batch_size=batch_size)]
    return len(paths) / (time.perf_counter() - start), texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="runs/cpu_demo", help="Model folder or training output folder.")
    parser.add_argument("--batch-size", type=int, default=32, help="Batch size of the batched variant.")
    parser.add_argument("--n", type=int, default=128, help="Images per pass.")
    parser.add_argument("--reps", type=int, default=3, help="Timed passes per variant (median reported).")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    loaded, settings = load_for_inference(args.model, device=args.device)
    with tempfile.TemporaryDirectory() as tmp:
        paths = benchmark_images(args.model, args.n, Path(tmp))
        variants = {"batch 1": 1, f"batch {args.batch_size}": args.batch_size}
        for name, size in variants.items():  # warm-up: allocator, kernels, file cache
            timed_pass(loaded, settings, paths[: max(size, 8)], size)
        speeds: dict[str, list[float]] = {name: [] for name in variants}
        texts: dict[str, list] = {}
        for rep in range(args.reps):
            order = list(variants) if rep % 2 == 0 else list(reversed(variants))
            for name in order:
                speed, texts[name] = timed_pass(loaded, settings, paths, variants[name])
                speeds[name].append(speed)

    single, batched = (statistics.median(speeds[name]) for name in variants)
    a, b = (texts[name] for name in variants)
    agreement = sum(x == y for x, y in zip(a, b)) / len(a)
    print(f"model {args.model} ({sum(p.numel() for p in loaded.model.parameters()) / 1e6:.2f} M parameters), "
          f"{len(paths)} images, max_new_tokens {settings.max_new_tokens}, device {args.device}, "
          f"torch threads {torch.get_num_threads()}, CPUs usable {len(os.sched_getaffinity(0))}")
    for name in variants:
        runs = ", ".join(f"{s:.1f}" for s in speeds[name])
        print(f"{name:>10}: {statistics.median(speeds[name]):8.1f} images/s (median of {args.reps}: {runs})")
    print(f"identical predictions: {agreement:.1%}")
    print(f"batched_speedup={batched / single:.2f}")


if __name__ == "__main__":
    main()
