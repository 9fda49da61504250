"""Peak memory of `banglaocr predict` on large images: this version (each image resized for the model as soon as
it is decoded, a chunk holding at most `infer.HELD_MEGAPIXELS` of model inputs) next to an earlier commit (a
chunk of up to 1,024 images held decoded until it was read), side by side.

    python benchmarks/predict_memory.py [--before 740c4fa] [--count 8] [--side 6000] [--repeat 1] [--out FILE]

- The images: `--count` PNGs of `--side` x `--side` pixels, white paper with a black bar and a stroke (a few
  KB each on disk; decoded to RGB, 4 bytes a pixel in Pillow: 137 MiB each at 6000 x 6000), all in one chunk.
- Each variant is `python -m banglaocr predict --model tiny IMAGES` in a fresh process, the package taken from
  this checkout or from `git archive BEFORE` unpacked in a temporary folder (same interpreter, same packages).
  Peak memory is that process's peak RSS (`os.wait4`'s `ru_maxrss`); the runs alternate (this, before, this, ...)
  and the smallest peak of each variant is reported. A third run of this version on ONE of the images gives
  the cost of a single image (start-up, model, one decode): the peak should not grow with the image count.
- The rows both variants print must be identical (the same pixels reach the model).

Writes benchmarks/results/predict_memory.md (and prints it). The last line is `peak_ratio=X.XX` (before / this
version).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULT = ROOT / "benchmarks" / "results" / "predict_memory.md"
BEFORE = "740c4fa"
"""The last commit whose predict held a chunk of images decoded."""


def write_images(folder: Path, count: int, side: int) -> list[Path]:
    from PIL import Image, ImageDraw

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        image = Image.new("L", (side, side), 255)
        draw = ImageDraw.Draw(image)
        top = side // 3 + 7 * index
        draw.rectangle((side // 4, top, side // 2, top + side // 20), fill=0)
        draw.line((side // 3, side // 2, 2 * side // 3, side // 2 + 40 * index), fill=0, width=max(1, side // 100))
        path = folder / f"large{index}.png"
        image.save(path)
        paths.append(path)
    return paths


def unpack(revision: str, into: Path) -> Path:
    """The package as it was at `revision` (`git archive`: no worktree, nothing in .git changes)."""
    archive = subprocess.run(["git", "archive", revision], cwd=ROOT, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def predict_peak(package_root: Path, images: list[Path], work: Path) -> tuple[float, float, str]:
    """(peak RSS in MiB, wall seconds, stdout) of `predict --model tiny IMAGES` with the package at
    `package_root`."""
    env = dict(os.environ, PYTHONPATH=str(package_root), HF_HUB_OFFLINE="1")
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen([sys.executable, "-m", "banglaocr", "predict", "--model", "tiny",
                                    *map(str, images)], cwd=work, env=env, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(process.pid, 0)  # the resources of this child alone
        out.seek(0)
        err.seek(0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"predict failed under {package_root}: {err.read()[-2000:]}")
        return usage.ru_maxrss / 1024, time.perf_counter() - started, out.read()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", default=BEFORE, help="git revision to compare with (default %(default)s)")
    parser.add_argument("--count", type=int, default=8, help="images (default %(default)s)")
    parser.add_argument("--side", type=int, default=6000, help="pixels a side (default %(default)s)")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each variant (default %(default)s)")
    parser.add_argument("--out", type=Path, default=RESULT)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        images = write_images(scratch / "images", args.count, args.side)
        before_root = unpack(args.before, Path(tempfile.mkdtemp(dir=scratch)))
        peaks: dict[str, list[float]] = {"this version": [], f"before ({args.before})": []}
        walls: dict[str, list[float]] = {name: [] for name in peaks}
        rows: dict[str, str] = {}
        for _ in range(args.repeat):
            for name, root in zip(peaks, (ROOT, before_root)):
                peak, wall, out = predict_peak(root, images, scratch)
                peaks[name].append(peak)
                walls[name].append(wall)
                rows[name] = out
        one, _, _ = predict_peak(ROOT, images[:1], scratch)
    this, before = (min(values) for values in peaks.values())
    decoded = args.side * args.side * 4 / 2**20
    same = len(set(rows.values())) == 1
    lines = [
        "# Peak memory of `banglaocr predict` on large images",
        "",
        f"`python benchmarks/predict_memory.py --before {args.before} --count {args.count} --side {args.side} "
        f"--repeat {args.repeat}`: `predict --model tiny` on {args.count} PNGs of {args.side} x {args.side} pixels "
        f"({decoded:.0f} MiB each decoded to RGB), one chunk, each variant in a fresh process; peak RSS "
        "(`ru_maxrss`), the smallest of the runs.",
        "",
        "| variant | peak RSS, MiB | wall, s |",
        "| --- | ---: | ---: |",
        *(f"| {name} | {min(peaks[name]):.0f} | {min(walls[name]):.1f} |" for name in peaks),
        f"| this version, 1 of the images | {one:.0f} | |",
        "",
        f"- Before, the chunk held every image decoded: {before - one:.0f} MiB above the one-image run "
        f"(~{args.count - 1} x {decoded:.0f} MiB). This version holds the images resized for the model "
        f"(32 pixels high for the shipped tiny model): {this - one:+.0f} MiB against one image.",
        f"- Rows printed by both variants identical: {'yes' if same else 'NO'}.",
        "",
        f"peak_ratio={before / this:.2f}",
    ]
    text = "\n".join(lines) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(text, end="")


if __name__ == "__main__":
    main()
