"""What the review tests share: word crops on disk, a predictions file as predict writes it, the real server."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

WORDS = ["কলম", "খাতা", "বই", "আমার", "সোনার", "বাংলা", "ভালো", "নদী", "পাখি", "গাছ"]
ROOT = Path(__file__).resolve().parent.parent


def write_crops(folder: Path, words=WORDS) -> list[Path]:
    """One clean rendered crop per word: `w00.png`, `w01.png`, ... in `folder`."""
    from banglaocr.data.synth import bundled_fonts, render_word

    font = next(f for f in bundled_fonts() if f.name.startswith("NotoSansBengali-Regular"))
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, word in enumerate(words):
        path = folder / f"w{index:02d}.png"
        render_word(word, font, np.random.default_rng(index), clean=True).save(path)
        paths.append(path)
    return paths


def write_predictions(folder: Path, words=WORDS, marker_model: str | None = "tiny") -> Path:
    """`folder/predictions.jsonl` over crops in `folder/crops`: the readings are the words with their last
    letter dropped (wrong, so corrections change them), confidence falling with the index; predict's marker
    naming `marker_model` beside it."""
    crops = write_crops(folder / "crops", words)
    rows = [{"file": f"crops/{path.name}", "prediction": word[:-1] or word, "confidence": round(0.9 - 0.05 * i, 3)}
            for i, (path, word) in enumerate(zip(crops, words))]
    out = folder / "predictions.jsonl"
    out.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    if marker_model is not None:
        from banglaocr.model.shipped import model_source

        marker = {"written_by": "banglaocr predict", "format": "jsonl",
                  "reader": {"models": [str(Path(model_source(marker_model)).resolve())]}}
        (folder / "predictions.jsonl.banglaocr.json").write_text(json.dumps(marker), encoding="utf-8")
    return out


def dataset_rows(folder: Path) -> list[dict]:
    """Every metadata.jsonl row of a review data set, train/ then val/."""
    rows = []
    for split in ("train", "val"):
        path = folder / split / "metadata.jsonl"
        if path.exists():
            rows += [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return rows


def start_server(*args: str, cwd: Path) -> tuple[subprocess.Popen, str]:
    """`banglaocr review ARGS --port 0` in a subprocess; (process, its URL) once it listens."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "250"}
    process = subprocess.Popen([sys.executable, "-m", "banglaocr", "review", *args, "--port", "0"], cwd=cwd,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        found = re.search(r"http://\S+/", line)
        if found:
            return process, found.group(0)
    process.kill()
    out, err = process.communicate()
    raise AssertionError(f"the review server did not start: {out}\n{err}")


def interrupt(process: subprocess.Popen) -> str:
    """Ctrl-C the server; its stdout after the URL line."""
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    return out
