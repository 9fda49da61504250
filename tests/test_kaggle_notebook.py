"""examples/kaggle_t4x2.ipynb: short cells a Kaggle user runs one by one, and the same cells rehearsed top to
bottom on this CPU with `BANGLAOCR_CPU_REHEARSAL=1 jupyter nbconvert --to notebook --execute`."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "examples" / "kaggle_t4x2.ipynb"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def cells() -> list[dict]:
    return json.loads(NOTEBOOK.read_text(encoding="utf-8"))["cells"]


def source(cell: dict) -> str:
    return "".join(cell["source"])


def test_every_code_cell_is_short_and_says_why_first():
    notebook = cells()
    codes = [index for index, cell in enumerate(notebook) if cell["cell_type"] == "code"]
    assert len(codes) >= 9
    for index in codes:
        assert notebook[index - 1]["cell_type"] == "markdown", f"cell {index} has no line of why before it"
        assert len(source(notebook[index]).splitlines()) <= 40, f"cell {index} is long"
        assert not notebook[index]["outputs"] and notebook[index]["execution_count"] is None  # shipped clean
    assert json.loads(NOTEBOOK.read_text(encoding="utf-8"))["metadata"]["kernelspec"]["name"] == "python3"


def test_the_kaggle_cells_install_train_resume_evaluate_merge_and_predict():
    code = "\n".join(source(cell) for cell in cells() if cell["cell_type"] == "code")
    # The repository address is a variable the user sets, said plainly.
    assert re.search(r'^REPO_URL = "https://github.com/<you>/banglaocr"  # EDIT', code, re.MULTILINE)
    assert "!git clone --depth 1 {REPO_URL} {REPO}" in code
    assert '!pip install -q {REPO} "transformers>=5"' in code and "torch" not in code.split("!pip install")[1][:60]
    assert "%cd {REPO}" in code
    assert 'LAUNCH = "accelerate launch --multi_gpu --num_processes 2 -m banglaocr"' in code
    assert 'RECIPE = "recipes/kaggle_t4x2.yaml"' in code and 'WORK = "/kaggle/working"' in code
    for command in ("!banglaocr doctor --recipe {RECIPE}",
                    "!{LAUNCH} train --recipe {RECIPE} --output-dir {RUN} {OVERRIDES} train.time_limit={TIME_LIMIT}",
                    "--resume auto", "!banglaocr eval --model {RUN}", "!banglaocr confusion-report",
                    "!banglaocr merge-lora --adapter {RUN}/best --out {RUN}/merged", "!banglaocr predict --model {RUN}/merged"):
        assert command in code, command
    # One piece of merge dtype advice for a T4: the default float32 (no --dtype on the merge line).
    assert "--dtype" not in code


def _outputs(notebook: dict) -> list[str]:
    """Each code cell's printed output, colours and cursor moves removed."""
    texts = []
    for cell in notebook["cells"]:
        if cell["cell_type"] != "code":
            continue
        parts = [out.get("text", "") if out["output_type"] == "stream" else "".join(out.get("data", {}).get(
            "text/plain", "")) for out in cell["outputs"]]
        texts.append(ANSI.sub("", "".join("".join(part) for part in parts)))
    return texts


@pytest.mark.slow
def test_the_cpu_rehearsal_runs_top_to_bottom(tmp_path):
    jupyter = Path(sys.executable).parent / "jupyter"
    executed = tmp_path / "executed.ipynb"
    work = tmp_path / "work"
    environ = {**os.environ, "BANGLAOCR_CPU_REHEARSAL": "1", "BANGLAOCR_REHEARSAL_DIR": str(work),
               "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
               # the venv's own python3 kernel (ipykernel installed there) before any user-wide kernel spec
               "JUPYTER_PREFER_ENV_PATH": "1"}
    result = subprocess.run([str(jupyter), "nbconvert", "--to", "notebook", "--execute", str(NOTEBOOK),
                             "--output", str(executed), "--ExecutePreprocessor.timeout=900"],
                            env=environ, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    outputs = _outputs(json.loads(executed.read_text(encoding="utf-8")))
    said = "\n".join(outputs)
    assert "Traceback" not in said and not re.search(r"^error:", said, re.MULTILINE), said[-5000:]
    # The kernel is this Python (the one banglaocr is installed in), and nothing was fetched.
    assert f"CPU rehearsal: Python {sys.executable}," in outputs[0]
    assert "no git clone, no pip install from the internet" in outputs[1]
    run = work / "runs" / "cpu_demo"
    # train stopped at its time limit with a checkpoint; the resume finished the run from it.
    assert "stopped before the time limit after step 0" in said and "resumed from" in said
    assert re.search(r"^step 30: val CER \d\.\d{4}", said, re.MULTILINE)  # a validation CER
    # A `!` cell is no terminal: plain progress lines come between the validation lines, not only at the end.
    between = said[said.index("\nstep 15: val CER"):said.index("\nstep 30: val CER")]
    assert re.search(r"^step 2\d/30  loss [\d.]+  lr \S+  [\d.]+ samples/s  .*ETA", between, re.MULTILINE), between
    assert json.loads((run / "summary.json").read_text())["steps"] == 30
    assert re.search(r"CER \(corpus: edits / reference chars\) +│ +\d\.\d{4}", said)  # eval
    assert (run / "eval" / "predictions.jsonl").is_file() and (run / "confusions" / "confusion_heatmap.png").is_file()
    # (rich folds a long path at the cell's 80 columns: compare without the line breaks)
    assert f"mergedmodel:{run / 'merged'}" in re.sub(r"\s+", "", said)
    assert (run / "merged" / "model.safetensors").is_file()
    with (work / "predictions.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 10 and all(row["prediction"] and not row["error"] for row in rows)
    assert "file,prediction,error,blank" in said and "word01.png," in said  # shown in the notebook
