"""The interop virtualenv: plain transformers + torchvision + peft, no banglaocr (scripts/setup_interop_venv.sh).

Tests that prove a model folder works without banglaocr run their scripts there: its interpreter comes
from `BANGLAOCR_INTEROP_PYTHON`; without it such a test is skipped, except under CI (`CI` set), where it
fails. `clean_env` is the environment they run in: nothing of banglaocr's venv, checkout or user site.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

HINT = ("BANGLAOCR_INTEROP_PYTHON is not set: run scripts/setup_interop_venv.sh, then "
        "export BANGLAOCR_INTEROP_PYTHON=$PWD/.venv-interop/bin/python")


def interop_python() -> str:
    """The interop venv's interpreter; skips the test (fails it under CI) when there is none."""
    python = os.environ.get("BANGLAOCR_INTEROP_PYTHON")
    if python:
        if not Path(python).is_file():
            pytest.fail(f"BANGLAOCR_INTEROP_PYTHON={python} does not exist: run scripts/setup_interop_venv.sh")
        return python
    if os.environ.get("CI"):
        pytest.fail(f"CI must provide the interop venv. {HINT}")
    pytest.skip(HINT)


def clean_env(home: Path) -> dict[str, str]:
    """A minimal offline, one-thread environment with `home` as HOME (no user site, no banglaocr on the path)."""
    return {"PATH": "/usr/bin:/bin", "HOME": str(home), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
            "OMP_NUM_THREADS": "1", "PYTHONNOUSERSITE": "1", "PYTHONIOENCODING": "utf-8"}
