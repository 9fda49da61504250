#!/usr/bin/env bash
# Create .venv-interop: a second virtualenv that holds plain transformers WITH torchvision and
# nothing of banglaocr. tests/test_merge.py runs tests/interop/transcribe_merged.py there to prove
# that a merged model folder loads with AutoModelForImageTextToText + AutoProcessor alone.
#
# Why a second venv: the project's own venv uses the CPU build torch 2.13.0, beside which
# torchvision cannot be installed, and AutoProcessor for Qwen3-VL needs torchvision (its video
# processor). torch 2.14.1 + torchvision 0.29.1 is a pair that imports together here (a CUDA build
# of torch, ~5.5 GB, run on the CPU).
#
# Usage:   scripts/setup_interop_venv.sh [VENV_DIR]        (default: .venv-interop in the repository)
#          export BANGLAOCR_INTEROP_PYTHON="$PWD/.venv-interop/bin/python"
# VENV_DIR may be absolute or relative (to the folder the script is called from).
# Re-running is cheap: an existing venv with the same pins is kept.
set -euo pipefail
CALLER="$PWD"
cd "$(dirname "$0")/.."

VENV="${1:-$PWD/.venv-interop}"
case "$VENV" in
    /*) ;;
    *) VENV="$CALLER/$VENV" ;;
esac
VENV="${VENV%/}"
PYTHON="${PYTHON:-python3}"
if [[ -e "$VENV" && ! -f "$VENV/pyvenv.cfg" && -n "$(ls -A "$VENV" 2>/dev/null)" ]]; then
    echo "error: $VENV exists and is not a virtual environment; give another VENV_DIR" >&2
    exit 2
fi
# Exact pins: the same transformers / peft / pillow / safetensors / numpy as the project's CI venv, so the
# two processes compute the same floats for the same weights.
TORCH_PINS=("torch==2.14.1" "torchvision==0.29.1")
OTHER_PINS=("transformers==5.24.0" "peft==0.21.2" "pillow==13.0.0" "safetensors==0.8.0" "numpy==2.4.6")
MARKER="$VENV/.interop-pins"
EXPECTED="$("$PYTHON" --version 2>&1) ${TORCH_PINS[*]} ${OTHER_PINS[*]}"

if [[ -f "$MARKER" && "$(cat "$MARKER")" == "$EXPECTED" && -x "$VENV/bin/python" ]]; then
    echo "interop venv up to date: $VENV"
    echo "export BANGLAOCR_INTEROP_PYTHON=$VENV/bin/python"
    exit 0
fi

rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
# torch and torchvision first, alone: installing transformers first would let pip choose a torch.
"$VENV/bin/python" -m pip install --quiet "${TORCH_PINS[@]}"
CONSTRAINTS="$(mktemp)"
trap 'rm -f "$CONSTRAINTS"' EXIT
printf '%s\n' "${TORCH_PINS[@]}" > "$CONSTRAINTS"
"$VENV/bin/python" -m pip install --quiet -c "$CONSTRAINTS" "${OTHER_PINS[@]}"
"$VENV/bin/python" -m pip check

# Smoke test, offline, from a neutral folder (a script read from stdin has the working directory
# on sys.path, and the repository root holds the banglaocr package): the processor classes that
# need torchvision import, banglaocr does not.
(cd / && env -i PATH="/usr/bin:/bin" HF_HUB_OFFLINE=1 "$VENV/bin/python" - <<'PY'
import importlib.util

import torchvision  # noqa: F401
from transformers import Qwen3VLProcessor, Qwen3VLVideoProcessor  # noqa: F401

assert importlib.util.find_spec("banglaocr") is None, "banglaocr must not be importable in the interop venv"
PY
)
echo "$EXPECTED" > "$MARKER"
echo "interop venv ready: $VENV ($(du -sh "$VENV" | cut -f1))"
echo "export BANGLAOCR_INTEROP_PYTHON=$VENV/bin/python"
