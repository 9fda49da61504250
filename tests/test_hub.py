"""An unreachable hub costs seconds and one line, not a minute of retries (banglaocr.hub, model.factory)."""

from __future__ import annotations

import http.server
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from banglaocr import hub
from banglaocr.model.shipped import MODELS_DIR

ROOT = Path(__file__).resolve().parent.parent
WORD = ROOT / "examples" / "words" / "word01.png"


def closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture()
def answering_endpoint():
    """A local HTTP server that answers every request with 404: a hub that is there."""
    class NotFound(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self):  # noqa: N802 - the http.server naming
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), NotFound)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def online_env(tmp_path: Path, endpoint: str | None) -> dict[str, str]:
    """This process's environment with the hub switched on, an empty cache, and `endpoint` as the hub."""
    env = {key: value for key, value in os.environ.items() if key not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env["HF_HOME"] = str(tmp_path / "hf")
    env.pop("HF_ENDPOINT", None)
    if endpoint is not None:
        env["HF_ENDPOINT"] = endpoint
    return env


def predict(model: str, env: dict[str, str], cwd: Path) -> tuple[subprocess.CompletedProcess, float]:
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "banglaocr", "predict", "--model", model, str(WORD)],
                            capture_output=True, text=True, env=env, cwd=cwd, timeout=300)
    return result, time.perf_counter() - start


def test_unreachable_and_answering_endpoints(monkeypatch, answering_endpoint):
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    hub.unreachable.cache_clear()
    start = time.perf_counter()
    problem = hub.unreachable()
    assert problem is not None and "unreachable" in problem and time.perf_counter() - start < hub.PROBE_TIMEOUT_S + 1
    monkeypatch.setenv("HF_ENDPOINT", answering_endpoint)
    hub.unreachable.cache_clear()
    assert hub.unreachable() is None  # a 404 is an answer
    hub.unreachable.cache_clear()


@pytest.mark.parametrize("endpoint", ["closed port", "huggingface.co"])
def test_an_unreachable_hub_id_fails_in_one_line_within_seconds(tmp_path, endpoint):
    env = online_env(tmp_path, f"http://127.0.0.1:{closed_port()}" if endpoint == "closed port" else None)
    if endpoint == "huggingface.co":
        check = subprocess.run([sys.executable, "-c", "from banglaocr import hub; print(hub.unreachable())"],
                               capture_output=True, text=True, env=env, timeout=60)
        if check.stdout.strip() == "None":
            pytest.skip("this machine reaches huggingface.co")
    result, seconds = predict("banglaocr-test/no-such-model", env, tmp_path)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1, result.stderr  # no "Retrying in 8s [Retry 4/5]" lines
    assert "unreachable" in lines[0] and "HF_HUB_OFFLINE=1" in lines[0] and "local model folder" in lines[0]
    assert seconds < 10, f"{seconds:.1f} s"


def test_a_cached_hub_model_loads_without_asking_an_unreachable_hub(tmp_path):
    """The shipped tiny model, laid out as the hub cache keeps a download, read while the hub is away."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hf" / "hub" / "models--banglaocr-test--tiny"
    shutil.copytree(MODELS_DIR / "tiny", repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    result, seconds = predict("banglaocr-test/tiny", online_env(tmp_path, f"http://127.0.0.1:{closed_port()}"),
                              tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{WORD}\t") and "Retry" not in result.stderr
    assert seconds < 20, f"{seconds:.1f} s"
