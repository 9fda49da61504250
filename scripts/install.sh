#!/usr/bin/env bash
# One command installs banglaocr from a checkout:
#   1. the system library Pillow's RAQM layout engine needs to shape Bangla (libfribidi), with apt-get
#      when run as root, otherwise the one line to run;
#   2. a virtual environment (.venv by default);
#   3. torch first, alone: on Linux the CPU build from PyTorch's CPU index (plain pip on Linux pulls the
#      CUDA build, several GB), or with --gpu the default (CUDA) build;
#   4. the package, editable, with its dev extras (tests), under constraints/cpu.txt, which keeps that torch;
#   5. pip check, then `banglaocr doctor --recipe cpu_demo`, then the next two commands.
# A second run finds the stamp it wrote into the venv (the hash of pyproject.toml and the constraints, the
# options, the installed torch and banglaocr), runs no pip install and changes nothing.
set -euo pipefail

USAGE="usage: bash scripts/install.sh [--gpu] [--no-dev] [--python PY] [--venv DIR]

  --gpu          CUDA machines: torch from pip's default index (PyPI's CUDA build) instead of
                 PyTorch's CPU index
  --no-dev       the package without its dev extras (no pytest: the tests will not run)
  --python PY    the Python that creates the venv (3.10 or newer; default python3)
  --venv DIR     the virtual environment to create or update (default .venv in the checkout)

Environment: BANGLAOCR_TORCH_CPU_INDEX replaces PyTorch's CPU index URL (a mirror of it)."

die() { echo "error: $*" >&2; exit 2; }   # something the user has to change first
fail() { echo "error: $*" >&2; exit 1; }  # a step that did not work
note() { echo "  $*"; }

CALLER="$PWD"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
GPU=0
DEV=1
PYTHON_ARG=""
VENV_ARG=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --gpu) GPU=1 ;;
        --no-dev) DEV=0 ;;
        --python|--venv)
            [[ $# -ge 2 && -n "$2" ]] || die "$1 needs a value (see: bash scripts/install.sh --help)"
            if [[ "$1" == --python ]]; then PYTHON_ARG="$2"; else VENV_ARG="$2"; fi
            shift ;;
        --python=*) PYTHON_ARG="${1#*=}" ;;
        --venv=*) VENV_ARG="${1#*=}" ;;
        -h|--help) echo "$USAGE"; exit 0 ;;
        *) die "unknown option '$1' (see: bash scripts/install.sh --help)" ;;
    esac
    shift
done

# Paths the user gives are relative to where they called the script from; the work happens in the checkout.
absolute() { case "$1" in /*) echo "$1" ;; *) echo "$CALLER/$1" ;; esac; }
VENV="$(absolute "${VENV_ARG:-$ROOT/.venv}")"
VENV="${VENV%/}"
PY="${PYTHON_ARG:-python3}"
[[ "$PY" == */* ]] && PY="$(absolute "$PY")"
cd "$ROOT"
# How the summary names the venv: relative to the checkout when it lies inside it.
SHOWN="${VENV#"$ROOT"/}"
STAMP="$VENV/.banglaocr-install"
TORCH_VERSION="$(sed -n 's/^torch==\([^[:space:]#]*\).*/\1/p' constraints/cpu.txt)"
[[ -n "$TORCH_VERSION" ]] || fail "constraints/cpu.txt pins no torch==VERSION"
TORCH_CPU_INDEX="${BANGLAOCR_TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}"
OS="$(uname -s)"
LATER=()  # what the user still has to do, repeated at the end

python_version() { "$1" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])' 2>/dev/null; }
new_enough() { local major minor; IFS=. read -r major minor _ <<<"$1"; (( major > 3 || (major == 3 && minor >= 10) )); }

# --- 1. the Python that builds the venv (checked before anything is installed) ----------------------------
if [[ -f "$VENV/pyvenv.cfg" ]]; then
    VENV_PY_VERSION="$(python_version "$VENV/bin/python")" \
        || die "$VENV is a broken virtual environment (its python does not run): remove it (rm -rf $VENV) and run this again"
    new_enough "$VENV_PY_VERSION" \
        || die "$VENV has Python $VENV_PY_VERSION; banglaocr needs 3.10 or newer: remove it (rm -rf $VENV) and run this again with --python python3.12 (or another 3.10+)"
    if [[ -n "$PYTHON_ARG" ]]; then
        command -v "$PY" >/dev/null 2>&1 || die "no Python '$PYTHON_ARG' here (--python)"
        ASKED="$(python_version "$PY")" || die "'$PYTHON_ARG' does not run as Python (--python)"
        [[ "$ASKED" == "$VENV_PY_VERSION" ]] \
            || die "$VENV was made with Python $VENV_PY_VERSION, not $PYTHON_ARG ($ASKED): remove it (rm -rf $VENV) or give another --venv"
    fi
elif [[ -e "$VENV" && ( ! -d "$VENV" || -n "$(ls -A "$VENV" 2>/dev/null)" ) ]]; then
    die "$VENV exists and is not a virtual environment: give another --venv DIR"
else
    command -v "$PY" >/dev/null 2>&1 \
        || die "no Python '$PY' here: install Python 3.10 or newer (Debian/Ubuntu: apt-get install python3 python3-venv) or name one with --python PY"
    HOST_VERSION="$(python_version "$PY")" || die "'$PY' does not run as Python (--python)"
    new_enough "$HOST_VERSION" \
        || die "banglaocr needs Python 3.10 or newer and $PY is $HOST_VERSION: install a newer one and pass it, e.g. bash scripts/install.sh --python python3.12"
    if ! "$PY" -c 'import venv, ensurepip' >/dev/null 2>&1; then
        IFS=. read -r major minor _ <<<"$HOST_VERSION"
        die "$PY ($HOST_VERSION) cannot create virtual environments (no venv/ensurepip module): on Debian/Ubuntu run apt-get install python$major.$minor-venv (or python3-venv), then run this again"
    fi
fi

START=$SECONDS
echo "banglaocr install into $SHOWN ($([[ $GPU == 1 ]] && echo "torch from pip's default index" || echo "CPU build of torch")$([[ $DEV == 1 ]] && echo ", dev extras"))"

# --- 2. system packages --------------------------------------------------------------------------------
have_fribidi() {
    local ldconfig
    for ldconfig in ldconfig /sbin/ldconfig /usr/sbin/ldconfig; do
        if command -v "$ldconfig" >/dev/null 2>&1; then
            "$ldconfig" -p 2>/dev/null | grep -q 'libfribidi\.so' && return 0
            return 1
        fi
    done
    compgen -G "/usr/lib*/libfribidi.so*" >/dev/null || compgen -G "/usr/lib/*/libfribidi.so*" >/dev/null
}
if [[ "$OS" == Linux ]]; then
    if have_fribidi; then
        echo "system: libfribidi found (Pillow's RAQM shapes Bangla with it)"
    elif command -v apt-get >/dev/null 2>&1 && [[ "$(id -u)" == 0 ]]; then
        echo "system: installing libfribidi0 (Pillow's RAQM shapes Bangla with it) ..."
        if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libfribidi0 >/dev/null; }; then
            note "apt-get could not install libfribidi0 (its message is above); going on without it"
            LATER+=("apt-get install -y libfribidi0   (then Bangla renders: synth, the CPU demo)")
        fi
    elif command -v apt-get >/dev/null 2>&1; then
        echo "system: libfribidi is missing (Pillow's RAQM needs it to shape Bangla); going on - install it with:"
        note "sudo apt-get install -y libfribidi0"
        LATER+=("sudo apt-get install -y libfribidi0   (then Bangla renders: synth, the CPU demo)")
    else
        echo "system: libfribidi is missing (Pillow's RAQM needs it to shape Bangla); going on - install your"
        note "distribution's FriBiDi library (Fedora: sudo dnf install fribidi; Arch: sudo pacman -S fribidi)"
        LATER+=("install the FriBiDi library (package fribidi or libfribidi0)")
    fi
elif [[ "$OS" == Darwin ]]; then
    if command -v brew >/dev/null 2>&1 && brew list fribidi >/dev/null 2>&1; then
        echo "system: fribidi found (Homebrew)"
    else
        echo "system: Pillow's RAQM needs fribidi to shape Bangla; going on - install it with: brew install fribidi"
        LATER+=("brew install fribidi   (then Bangla renders: synth, the CPU demo)")
    fi
fi

# --- 3. the virtual environment ------------------------------------------------------------------------
if [[ -f "$VENV/pyvenv.cfg" ]]; then
    echo "venv: $SHOWN (Python $VENV_PY_VERSION) is there already"
else
    echo "venv: creating $SHOWN with $PY (Python $HOST_VERSION) ..."
    "$PY" -m venv "$VENV" || fail "$PY -m venv $VENV failed (its message is above)"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip \
        || note "pip could not upgrade itself; going on with $("$VENV/bin/python" -m pip --version | cut -d' ' -f1-2)"
fi
VPY="$VENV/bin/python"

# What is installed, read from package metadata without importing torch (python -I: the checkout, which
# holds banglaocr.egg-info, is not on sys.path). One line each: "torch VERSION cpu|gpu" or "torch none",
# "banglaocr VERSION URL editable" or "banglaocr none".
installed_state() {
    "$VPY" -I - <<'PY'
from importlib import metadata
from pathlib import Path
import json

try:
    torch = metadata.distribution("torch")
    lib = Path(torch.locate_file("torch/lib"))
    gpu = any(any(lib.glob(pattern)) for pattern in ("libtorch_cuda*", "libtorch_hip*", "torch_cuda*.dll"))
    print("torch", torch.version, "gpu" if gpu else "cpu")
except metadata.PackageNotFoundError:
    print("torch none")
try:
    own = metadata.distribution("banglaocr")
    url = json.loads(own.read_text("direct_url.json") or "{}")
    editable = "editable" if url.get("dir_info", {}).get("editable") else "not-editable"
    print("banglaocr", own.version, url.get("url", "-"), editable)
except metadata.PackageNotFoundError:
    print("banglaocr none")
PY
}
# The stamp: what this script installs from (hashes of the files that decide it, the options, the Python)
# and what it found installed afterwards.
expected_stamp() {
    local inputs
    inputs="$(cat pyproject.toml constraints/cpu.txt; grep -h '^__version__' banglaocr/__init__.py)"
    echo "python $VENV_PY_VERSION"
    echo "checkout $ROOT"
    echo "options gpu=$GPU dev=$DEV"
    echo "inputs $(printf '%s' "$inputs" | "$VPY" -I -c 'import hashlib, sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())')"
    installed_state
}
VENV_PY_VERSION="$(python_version "$VPY")"

pip_check() {
    local out
    if out="$("$VPY" -m pip check 2>&1)"; then echo "pip check: $out"; return 0; fi
    echo "$out"
    return 1
}

UP_TO_DATE=0
if [[ -f "$STAMP" && -x "$VENV/bin/banglaocr" && "$(cat "$STAMP")" == "$(expected_stamp)" ]]; then
    if pip_check >/dev/null 2>&1; then
        UP_TO_DATE=1
    else
        echo "packages: the stamp matches but pip check finds broken requirements; installing again"
    fi
fi

build_name() { if [[ "$1" == gpu ]]; then echo GPU; else echo CPU; fi; }
torch_field() { installed_state | awk -v field="$1" '$1 == "torch" { print $field }'; }
pip_install() { "$VPY" -m pip install --quiet "$@"; }
index_unreachable() {  # prints why PyTorch's CPU index cannot be reached; succeeds when it cannot
    "$VPY" -I - "$TORCH_CPU_INDEX/torch/" <<'PY'
import sys
import urllib.request

try:
    with urllib.request.urlopen(sys.argv[1], timeout=10) as answer:
        answer.read(1)
except Exception as error:
    print(getattr(error, "reason", None) or error)
    sys.exit(0)
sys.exit(1)
PY
}

if [[ $UP_TO_DATE == 1 ]]; then
    echo "packages: up to date (torch $(torch_field 2), $(build_name "$(torch_field 3)") build; banglaocr editable from $ROOT) - nothing changed"
    echo "pip check: no broken requirements"
else
    # --- 4. torch, alone and first: whatever comes later must not pick a torch of its own -----------------
    have_version="$(torch_field 2)"
    have_build="$(torch_field 3)"
    want_build=cpu
    [[ $GPU == 1 ]] && want_build=gpu
    if [[ "${have_version%%+*}" == "$TORCH_VERSION" && "$have_build" == "$want_build" ]]; then
        echo "torch: $have_version ($(build_name "$have_build") build) is installed already"
    else
        if [[ "$have_version" != none && "$have_version" != "" ]]; then
            # pip counts 2.13.0+cpu as satisfying torch==2.13.0: a build of the other kind must go first.
            echo "torch: replacing torch $have_version ($(build_name "$have_build") build)"
            "$VPY" -m pip uninstall --quiet -y torch
        fi
        if [[ $GPU == 0 && "$OS" == Linux ]]; then
            if reason="$(index_unreachable)"; then
                echo "torch: PyTorch's CPU index ($TORCH_CPU_INDEX) is unreachable ($reason);"
                note "installing torch==$TORCH_VERSION from pip's own index instead ..."
                pip_install "torch==$TORCH_VERSION" || fail "pip could not install torch==$TORCH_VERSION (its message is above)"
            else
                echo "torch: installing torch==$TORCH_VERSION, CPU build, from $TORCH_CPU_INDEX ..."
                pip_install "torch==$TORCH_VERSION" --index-url "$TORCH_CPU_INDEX" \
                    || fail "pip could not install torch==$TORCH_VERSION from $TORCH_CPU_INDEX (its message is above)"
            fi
        else
            # --gpu, or macOS / Windows, where pip's default torch is the build wanted.
            echo "torch: installing torch==$TORCH_VERSION from pip's default index ..."
            pip_install "torch==$TORCH_VERSION" || fail "pip could not install torch==$TORCH_VERSION (its message is above)"
        fi
        got="$(torch_field 3)"
        if [[ $GPU == 0 && "$OS" == Linux && "$got" != cpu ]]; then
            note "pip served a CUDA build of torch (several GB; it runs on the CPU too). For the CPU build:"
            note "$SHOWN/bin/pip install --force-reinstall torch==$TORCH_VERSION --index-url $TORCH_CPU_INDEX"
        elif [[ $GPU == 1 && "$got" == cpu ]]; then
            note "pip served a CPU build of torch ($(torch_field 2)): this machine's package index has no CUDA build of it"
        fi
        echo "torch: $(torch_field 2) ($(build_name "$(torch_field 3)") build)"
    fi

    # --- 5. the package, under the constraint that keeps that torch --------------------------------------
    target="."
    [[ $DEV == 1 ]] && target=".[dev]"
    echo "packages: pip install -c constraints/cpu.txt -e \"$target\" ..."
    pip_install -c constraints/cpu.txt -e "$target" || fail "pip could not install banglaocr (its message is above)"
    pip_check || fail "pip check found broken requirements (above)"
    expected_stamp > "$STAMP"
fi

# --- 6. is this machine ready for the main job? ------------------------------------------------------------
echo "doctor: $SHOWN/bin/banglaocr doctor --recipe cpu_demo"
DOCTOR=0
"$VENV/bin/banglaocr" doctor --recipe cpu_demo || DOCTOR=$?

echo
if [[ $UP_TO_DATE == 1 ]]; then
    echo "nothing changed (done in $((SECONDS - START)) s). Next, from $ROOT:"
else
    echo "installed in $((SECONDS - START)) s. Next, from $ROOT:"
fi
echo "  $SHOWN/bin/banglaocr train --recipe recipes/cpu_demo.yaml     # the main job (about 2.5 minutes on 2 CPU cores)"
if [[ $DEV == 1 ]]; then
    echo "  $SHOWN/bin/python -m pytest                                   # the tests"
else
    echo "  (the tests need the dev extras: run this again without --no-dev, then $SHOWN/bin/python -m pytest)"
fi
echo "Or activate the venv first - source $SHOWN/bin/activate - and type banglaocr, accelerate, python -m pytest."
if [[ ${#LATER[@]} -gt 0 ]]; then
    echo "Still to do:"
    for item in "${LATER[@]}"; do note "$item"; done
fi
if [[ $DOCTOR != 0 ]]; then
    echo "doctor found something recipe cpu_demo needs missing (its table above says what to do)." >&2
    exit "$DOCTOR"
fi
