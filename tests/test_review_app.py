"""The review web app through HTTP: only the input's images, limits on what is sent, broken crops, two tabs."""

from __future__ import annotations

import json
import threading

import pytest
from starlette.testclient import TestClient

from banglaocr.review.app import MAX_BODY_BYTES, create_app, new_session
from banglaocr.review.inputs import load_input
from review_fixtures import write_predictions


@pytest.fixture
def review(tmp_path):
    predictions = write_predictions(tmp_path / "in")
    (tmp_path / "in" / "crops" / "w01.png").write_bytes(b"not an image")  # a crop that cannot be decoded
    (tmp_path / "secret.txt").write_text("secret", encoding="utf-8")
    session = new_session(load_input(predictions), tmp_path / "ds", "banglaocr train --recipe adapt_reviewed")
    return session, TestClient(create_app(session, allowed_hosts=["testserver"])), tmp_path


def _metadata(folder) -> list[dict]:
    """The rows of both splits (each word row of predict is a page of its own: the second goes to val)."""
    rows = []
    for split in ("train", "val"):
        path = folder / "ds" / split / "metadata.jsonl"
        rows += [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] if path.exists() else []
    return rows


def test_the_page_and_its_items_least_confident_first(review):
    session, client, _ = review
    page = client.get("/")
    assert page.status_code == 200 and "/page.js" in page.text
    assert client.get("/page.js").headers["content-type"].startswith("text/javascript")
    assert client.get("/bangla.ttf").content[:4] == b"\x00\x01\x00\x00"  # a TrueType font
    data = client.get("/api/items").json()
    confidences = [item["confidence"] for item in data["items"]]
    assert confidences == sorted(confidences) and data["items"][0]["state"] == "pending"
    assert data["progress"] == {"total": 10, "reviewed": 0, "saved": 0, "changed": 0, "illegible": 0,
                                "skipped": 0, "pending": 10}
    assert data["train_command"].startswith("banglaocr train")
    assert client.get("/image/0").headers["content-type"] == "image/png"


@pytest.mark.parametrize("path", ["/image/../../secret.txt", "/image/..%2f..%2fsecret.txt", "/image/%2e%2e",
                                  "/image//etc/passwd", "/image/%2Fetc%2Fpasswd", "/image/10", "/image/-1",
                                  "/image/0x1", "/image/١", "/crops/w00.png", "/../secret.txt",
                                  "/etc/passwd"])
def test_nothing_but_the_items_images_is_served(review, path):
    _, client, _ = review
    response = client.get(path)
    assert response.status_code in (400, 404), (path, response.status_code)
    assert "secret" not in response.text


def test_a_request_for_another_host_is_refused(review):
    _, client, _ = review
    assert client.get("/api/items", headers={"host": "evil.example"}).status_code == 400


def test_saves_are_validated_and_limited(review):
    _, client, folder = review
    assert client.post("/api/items/0", json={"action": "save", "text": "   "}).status_code == 400
    assert client.post("/api/items/0", json={"action": "erase"}).status_code == 400
    assert client.post("/api/items/0", content=b"action=save", headers={"content-type": "text/plain"}).status_code == 415
    big = json.dumps({"action": "save", "text": "ক" * MAX_BODY_BYTES})
    assert client.post("/api/items/0", content=big, headers={"content-type": "application/json"}).status_code == 413
    assert client.post("/api/items/0", content=b"{not json", headers={"content-type": "application/json"}).status_code == 400
    assert client.post("/api/items/99", json={"action": "skip"}).status_code == 404
    assert _metadata(folder) == []
    saved = client.post("/api/items/0", json={"action": "save", "text": "  কলম\u200c  "})
    assert saved.status_code == 200 and saved.json()["item"]["correction"] == "কলম"
    assert [row["text"] for row in _metadata(folder)] == ["কলম"]


def test_a_broken_crop_shows_as_such_and_can_be_marked_illegible(review):
    _, client, folder = review
    assert client.get("/image/1").status_code == 422
    assert "cannot show this image" in client.get("/image/1").json()["error"]
    refused = client.post("/api/items/1", json={"action": "save", "text": "খাতা"})
    assert refused.status_code == 422 and "illegible" in refused.json()["error"]
    marked = client.post("/api/items/1", json={"action": "illegible"})
    assert marked.json()["progress"]["illegible"] == 1 and _metadata(folder) == []


def test_two_tabs_never_lose_each_others_saves(review):
    """Two clients save different words at the same time, then the same word: every different word is
    kept, the last save of the shared one wins, and the journal holds every save."""
    session, _, folder = review
    tabs = [TestClient(create_app(session, allowed_hosts=["testserver"])) for _ in range(2)]
    words = {2: "বই", 3: "আমার", 4: "সোনার", 5: "বাংলা", 6: "ভালো", 7: "নদী"}

    def save(tab, ids):
        for item_id in ids:
            assert tabs[tab].post(f"/api/items/{item_id}", json={"action": "save", "text": words[item_id],
                                                                 "tab": f"t{tab}"}).status_code == 200

    threads = [threading.Thread(target=save, args=(0, [2, 4, 6])), threading.Thread(target=save, args=(1, [3, 5, 7]))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(row["text"] for row in _metadata(folder)) == sorted(words.values())
    tabs[0].post("/api/items/8", json={"action": "save", "text": "পাখি", "tab": "t0"})
    tabs[1].post("/api/items/8", json={"action": "save", "text": "পাখী", "tab": "t1"})
    rows = _metadata(folder)
    assert [row["text"] for row in rows if row["source"] == "crops/w08.png"] == ["পাখী"]
    journal = [json.loads(line) for line in (folder / "ds" / "review-journal.jsonl").read_text("utf-8").splitlines()]
    assert [(line["tab"], line["text"]) for line in journal if line["key"] == "crops/w08.png"] == [
        ("t0", "পাখি"), ("t1", "পাখী")]
    progress = tabs[0].get("/api/items").json()["progress"]
    assert (progress["saved"], progress["changed"]) == (7, 7)
