"""The real `banglaocr review` server in a subprocess: SIGKILL after a save loses nothing, a restart resumes,
raw `../` and absolute paths are refused, Ctrl-C prints the train command - which runs as printed."""

from __future__ import annotations

import http.client
import json
import shlex
import subprocess
import sys
import urllib.request
from urllib.parse import urlparse

import pytest

from review_fixtures import dataset_rows, interrupt, start_server, write_predictions


def _post(url: str, item_id: int, body: dict) -> dict:
    request = urllib.request.Request(f"{url}api/items/{item_id}", data=json.dumps(body).encode("utf-8"),
                                     headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def _get(url: str, path: str) -> dict:
    with urllib.request.urlopen(f"{url}{path}", timeout=30) as response:
        return json.loads(response.read())


def _raw_status(url: str, path: str) -> int:
    """The status of GET `path` sent exactly as written (http.client does not normalise `..`)."""
    parsed = urlparse(url)
    connection = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=30)
    connection.request("GET", path)
    status = connection.getresponse().status
    connection.close()
    return status


def test_sigkill_after_a_save_loses_nothing_and_a_restart_resumes(tmp_path):
    predictions = write_predictions(tmp_path)
    (tmp_path / "secret.txt").write_text("secret", encoding="utf-8")
    process, url = start_server(str(predictions), "--out", "ds", cwd=tmp_path)
    try:
        assert url.startswith("http://127.0.0.1:")
        first = _get(url, "api/items")["items"][0]
        saved = _post(url, first["id"], {"action": "save", "text": "গাছে"})
        assert saved["progress"]["reviewed"] == 1
        for path in ("/image/../../secret.txt", "/image/%2e%2e/%2e%2e/secret.txt", "/../secret.txt",
                     f"/image/{tmp_path / 'secret.txt'}", "/image//etc/passwd", "/image/..%2F..%2Fsecret.txt"):
            assert _raw_status(url, path) in (400, 404), path
    finally:
        process.kill()  # SIGKILL: no handler runs, nothing is flushed on the way out
        process.communicate()
    assert [(row["text"], row["model_reading"]) for row in dataset_rows(tmp_path / "ds")] == [("গাছে", "গা")]
    state = json.loads((tmp_path / "ds" / "review-state.json").read_text(encoding="utf-8"))
    assert state["items"]["crops/w09.png"]["state"] == "saved"

    process, url = start_server(str(predictions), "--out", "ds", cwd=tmp_path)
    data = _get(url, "api/items")
    assert data["progress"]["reviewed"] == 1 and data["items"][0]["state"] == "saved"
    _post(url, data["items"][1]["id"], {"action": "illegible"})
    out = interrupt(process)
    assert "reviewed 2 of 10 words: 1 saved (1 changed), 1 illegible, 0 skipped" in out
    assert f"data.source={(tmp_path / 'ds').resolve()}" in out


def test_a_folder_review_did_not_write_is_refused(tmp_path):
    predictions = write_predictions(tmp_path)
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "notes.txt").write_text("mine", encoding="utf-8")
    result = subprocess.run([sys.executable, "-m", "banglaocr", "review", str(predictions), "--out", "ds"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "not a banglaocr review folder" in result.stderr
    assert "Traceback" not in result.stderr and sorted(p.name for p in (tmp_path / "ds").iterdir()) == ["notes.txt"]


@pytest.mark.slow
def test_the_printed_train_command_trains_on_the_reviewed_words(tmp_path):
    predictions = write_predictions(tmp_path)
    process, url = start_server(str(predictions), "--out", "ds", cwd=tmp_path)
    words = ["কলম", "খাতা", "বই", "আমার", "সোনার", "বাংলা"]
    for item, word in zip(reversed(_get(url, "api/items")["items"]), words):  # most confident = w00 first
        _post(url, item["id"], {"action": "save", "text": word})
    out = interrupt(process)
    command = out.strip().splitlines()[-1]
    assert command.startswith("banglaocr train --recipe adapt_reviewed model.name_or_path=tiny ")
    args = shlex.split(command)[2:] + ["train.max_steps=2", "train.eval_steps=2", "train.save_steps=2"]
    result = subprocess.run([sys.executable, "-m", "banglaocr", "train", *args], cwd=tmp_path,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    run = tmp_path / "runs" / "ds-adapted"
    assert (run / "final").is_dir() or (run / "best").is_dir(), sorted(p.name for p in run.iterdir())
    evaluated = subprocess.run([sys.executable, "-m", "banglaocr", "eval", "--model", str(run), "--dataset",
                                str(tmp_path / "ds"), "--split", "val", "--out", str(tmp_path / "eval")],
                               cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert evaluated.returncode == 0, evaluated.stdout[-3000:] + evaluated.stderr[-3000:]
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text(encoding="utf-8"))
    assert summary, summary
