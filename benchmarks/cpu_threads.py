"""CPU threads under load: banglaocr's thread choice vs torch's default (one thread per core), quiet and
with one competing busy process, side by side in one run.

    python benchmarks/cpu_threads.py [--steps 200]

Each case trains `--steps` steps of recipes/cpu_demo.yaml (no evaluation) in a fresh `python -m banglaocr
train` process and reads the training time from its summary.json:

- `auto`: banglaocr's choice (`train.threads: null`: the process's CPUs less those busy at the start);
- `torch default`: `train.threads` = the machine's CPU count, what torch would take by itself.

The busy cases start a pure-Python busy loop (one core) first and give the load average time to see it.
The last line is `busy_auto/quiet=X.XX busy_default/quiet=Y.YY` (training time over the quiet auto run).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def train_seconds(out: Path, steps: int, data: Path, threads: int | None) -> tuple[float, str]:
    overrides = [f"train.max_steps={steps}", "train.eval_steps=0", "train.save_steps=0", "eval.before_training=false",
                 f"data.synth.dir={data}", "data.split_seed=42"]
    if threads is not None:
        overrides.append(f"train.threads={threads}")
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    result = subprocess.run([sys.executable, "-m", "banglaocr", "train", "--recipe", "recipes/cpu_demo.yaml",
                             "-o", str(out), *overrides], cwd=ROOT, env={**env, "HF_HUB_OFFLINE": "1"},
                            capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(result.stdout[-2000:] + result.stderr[-2000:])
    chosen = next((line for line in result.stdout.splitlines() if line.startswith("torch threads")), "")
    return json.loads((out / "summary.json").read_text())["train_time_s"], chosen


def wait_for_load(below: float | None = None, above: float | None = None, limit: float = 120.0) -> None:
    """Let the 1-minute load average settle (it is what the thread choice reads)."""
    deadline = time.time() + limit
    while time.time() < deadline:
        load = os.getloadavg()[0]
        if (below is None or load < below) and (above is None or load > above):
            return
        time.sleep(2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    cpus = len(os.sched_getaffinity(0))
    root = Path(tempfile.mkdtemp(prefix="banglaocr-threads-"))
    data = root / "synth"
    results = {}
    wait_for_load(below=0.5)
    for name, threads in (("quiet auto", None), ("quiet torch default", cpus)):
        results[name] = train_seconds(root / name.replace(" ", "-"), args.steps, data, threads)
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        wait_for_load(above=0.9)
        for name, threads in (("busy auto", None), ("busy torch default", cpus)):
            results[name] = train_seconds(root / name.replace(" ", "-"), args.steps, data, threads)
    finally:
        busy.kill()
    print(f"{args.steps} steps of recipes/cpu_demo.yaml on {cpus} CPUs; training time (summary.json train_time_s)")
    for name, (seconds, chosen) in results.items():
        print(f"{name:<22}{seconds:>8.1f} s   {chosen}")
    quiet = results["quiet auto"][0]
    print(f"busy_auto/quiet={results['busy auto'][0] / quiet:.2f} "
          f"busy_default/quiet={results['busy torch default'][0] / quiet:.2f}")


if __name__ == "__main__":
    main()
