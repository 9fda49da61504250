"""scripts/install.sh, the README's one install command: it parses, refuses bad input in one line before it
installs anything, and (slow: a real pip run into a temporary venv) a second run is a no-op."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "install.sh"


def _install(*args: str, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout,
                          env=env, stdin=subprocess.DEVNULL)


def _fake_python(folder: Path, name: str, body: str) -> Path:
    """A stand-in interpreter: answers the script's version question with `body`'s shell code."""
    path = folder / name
    path.write_text("#!/bin/sh\n" + body + "\n", encoding="utf-8")
    path.chmod(0o755)
    return path


def test_the_script_parses_as_bash():
    result = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_help_names_every_option():
    result = _install("--help")
    assert result.returncode == 0
    for option in ("--gpu", "--no-dev", "--python PY", "--venv DIR"):
        assert option in result.stdout


def _bad_arguments(case: str, tmp_path: Path, venv: Path) -> list[str]:
    if case == "unknown option":
        return ["--venv", str(venv), "--cpu"]
    if case == "option without value":
        return ["--venv", str(venv), "--python"]
    if case == "no such python":
        return ["--venv", str(venv), "--python", str(tmp_path / "python3.99")]
    if case == "python 3.9":
        return ["--venv", str(venv), "--python", str(_fake_python(tmp_path, "py39", "echo 3.9.2"))]
    if case == "python without venv":
        body = 'case "$2" in *ensurepip*) exit 1;; esac\necho 3.11.7'
        return ["--venv", str(venv), "--python", str(_fake_python(tmp_path, "py311", body))]
    assert case == "venv folder that is not a venv"
    (tmp_path / "notes.txt").write_text("mine\n", encoding="utf-8")
    return ["--venv", str(tmp_path), "--python", sys.executable]


BAD_INPUT = {
    "unknown option": "unknown option '--cpu'",
    "option without value": "--python needs a value",
    "no such python": "no Python",
    "python 3.9": "needs Python 3.10 or newer and",
    "python without venv": "cannot create virtual environments (no venv/ensurepip module): on Debian/Ubuntu "
                           "run apt-get install python3.11-venv",
    "venv folder that is not a venv": "exists and is not a virtual environment",
}


@pytest.mark.parametrize("case", sorted(BAD_INPUT))
def test_bad_input_is_one_line_and_nothing_is_installed(tmp_path, case):
    venv = tmp_path / "venv"
    result = _install(*_bad_arguments(case, tmp_path, venv))
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stdout == ""  # refused before the first step
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and BAD_INPUT[case] in lines[0], result.stderr
    assert not venv.exists()
    assert not (tmp_path / "pyvenv.cfg").exists()


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every path below `folder` with its size and modification time: what "changes nothing" compares."""
    found = {}
    for parent, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = Path(parent, name)
            info = path.lstat()
            found[str(path.relative_to(folder))] = (info.st_size, info.st_mtime_ns)
    return found


@pytest.mark.slow
def test_a_second_run_is_a_fast_no_op(tmp_path):
    venv = tmp_path / "venv"
    first_start = time.monotonic()
    first = _install("--venv", str(venv), "--python", sys.executable, timeout=1200)
    first_took = time.monotonic() - first_start
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "torch: 2.13.0" in first.stdout and "(CPU build)" in first.stdout
    assert f"{venv}/bin/banglaocr train --recipe recipes/cpu_demo.yaml" in first.stdout
    assert f"source {venv}/bin/activate" in first.stdout
    before = _snapshot(venv)

    second_start = time.monotonic()
    second = _install("--venv", str(venv), timeout=300)
    second_took = time.monotonic() - second_start
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "nothing changed" in second.stdout
    assert "pip install" not in second.stdout and "installing" not in second.stdout
    assert _snapshot(venv) == before
    assert second_took < 60, f"second run took {second_took:.0f} s (first {first_took:.0f} s)"

    # Not root and no libfribidi: the one line to run, and the install goes on (still a no-op here).
    fake = tmp_path / "fakebin"
    fake.mkdir()
    _fake_python(fake, "id", "echo 1000")
    _fake_python(fake, "ldconfig", "exit 0")
    third = _install("--venv", str(venv), env={**os.environ, "PATH": f"{fake}:{os.environ['PATH']}"}, timeout=300)
    assert third.returncode == 0, third.stdout[-3000:] + third.stderr[-3000:]
    assert "libfribidi is missing" in third.stdout and "sudo apt-get install -y libfribidi0" in third.stdout
    assert "nothing changed" in third.stdout
    assert _snapshot(venv) == before
