"""Does a code change leave training unchanged? Run a short cpu_demo with two checkouts and compare.

    python scripts/behaviour_check.py run OUT            # train with the code of the current folder
    python scripts/behaviour_check.py compare OUT_A OUT_B

`run` trains 40 steps of recipes/cpu_demo.yaml (evaluation by generation every 20 steps and before
training, a checkpoint every 20 steps, log every 5) on ONE thread, with `python -m banglaocr` started
in the current folder - so `cd /other/checkout && python /this/script.py run OUT` runs the other
checkout's code. `compare` checks that both metrics.jsonl files hold the same rows (timing fields
aside), that summary.json agrees (timings aside), that test_predictions.jsonl is byte-identical and
that final/ and best/ weights are equal; exit 1
when anything differs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

OVERRIDES = ["train.max_steps=40", "train.eval_steps=20", "train.save_steps=20", "train.log_steps=5"]
TIMING_KEYS = {"samples_per_s", "elapsed_s", "train_time_s", "images_per_s", "seconds", "output_dir"}


def run(out: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "banglaocr", "train", "--recipe", "recipes/cpu_demo.yaml",
               "--output-dir", str(out), *OVERRIDES]
    subprocess.run(command, check=True, env=env)


def _rows(folder: Path) -> list[dict]:
    lines = (folder / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING_KEYS} for line in lines]


def _summary(folder: Path) -> dict:
    summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    if summary.get("test"):
        summary["test"] = {k: v for k, v in summary["test"].items() if k not in TIMING_KEYS}
    return {k: v for k, v in summary.items() if k not in TIMING_KEYS}


def _weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return {f.relative_to(folder).as_posix(): load_file(str(f)) for f in sorted(folder.rglob("*.safetensors"))}


def compare(a: Path, b: Path) -> bool:
    same = True
    rows_a, rows_b = _rows(a), _rows(b)
    if rows_a != rows_b:
        same = False
        print(f"metrics.jsonl differs ({len(rows_a)} vs {len(rows_b)} rows)")
        for row_a, row_b in zip(rows_a, rows_b):
            if row_a != row_b:
                print(f"  {row_a}\n  {row_b}")
                break
    else:
        print(f"metrics.jsonl: {len(rows_a)} rows identical (timing fields aside)")
    if _summary(a) != _summary(b):
        same = False
        print(f"summary.json differs:\n  {_summary(a)}\n  {_summary(b)}")
    else:
        print("summary.json identical (timing fields aside)")
    for name in ("test_predictions.jsonl",):
        if (a / name).read_bytes() != (b / name).read_bytes():
            same = False
            print(f"{name} differs")
        else:
            print(f"{name}: identical")
    for name in ("final", "best"):
        wa, wb = _weights(a / name), _weights(b / name)
        if wa.keys() != wb.keys():
            same = False
            print(f"{name}/: different weight files {sorted(wa)} vs {sorted(wb)}")
            continue
        diff = max(float((wa[f][k] - wb[f][k]).abs().max()) for f in wa for k in wa[f])
        print(f"{name}/ weights: max abs diff {diff:.3g}")
        same = same and diff == 0.0
    print("SAME" if same else "DIFFERENT")
    return same


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "run":
        run(Path(sys.argv[2]).resolve())
    elif len(sys.argv) == 4 and sys.argv[1] == "compare":
        sys.exit(0 if compare(Path(sys.argv[2]), Path(sys.argv[3])) else 1)
    else:
        sys.exit(__doc__)
