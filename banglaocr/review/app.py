"""The review page's web app (Starlette): the page, the items, their images, and saving.

Routes:
- `GET /` the page; `GET /page.js`, `GET /page.css` its two files and `GET /bangla.ttf` a bundled Bangla font
  (package data; no other file is served);
- `GET /api/items` every item in review order (`id`, `reading`, `confidence`, `state`, `correction`, ...),
  the progress and the `train` command that adapts the model to the reviewed words;
- `GET /image/{id}` the PNG of item `id` (a number: the item's place in the input) - only the items' own
  images, decoded and encoded again; a crop that cannot be decoded is a 422 the page shows as such;
- `POST /api/items/{id}` a JSON object `{"action": "save" | "skip" | "illegible", "text": ...}` (at most
  `MAX_BODY_BYTES`: 413 beyond; `application/json` only: 415; the text is normalised, empty: 400). It
  answers once the action is on disk, with the item and the progress.

Requests naming another host than the server's (DNS rebinding) are refused by the host check.

>>> from starlette.testclient import TestClient
>>> import tempfile, pathlib
>>> from PIL import Image
>>> from banglaocr.review.inputs import load_input
>>> crops = pathlib.Path(tempfile.mkdtemp()); Image.new("RGB", (40, 20), "white").save(crops / "a.png")
>>> review = load_input(crops)
>>> review = review.__class__(review.path, review.kind, review.items, model="tiny")
>>> session = new_session(review, crops.parent / (crops.name + "-reviewed"), "banglaocr train ...")
>>> client = TestClient(create_app(session, allowed_hosts=["testserver"]))
>>> client.post("/api/items/0", json={"action": "save", "text": "কলম"}).json()["progress"]["reviewed"]
1
>>> client.get("/image/..%2f..%2fetc%2fpasswd").status_code
404
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from banglaocr.review.dataset import ACTIONS, ReviewDataset, open_dataset
from banglaocr.review.inputs import ReviewInput, ReviewItem, in_review_order, open_item_image

MAX_BODY_BYTES = 16 * 1024
"""A save is one word: a body larger than this is refused (413) before it is read whole."""
MAX_WORD_CHARS = 1000
"""A longer correction is a paste gone wrong, not a word (400)."""
PAGE_FILES = {"/": ("review/page.html", "text/html; charset=utf-8"),
              "/page.js": ("review/page.js", "text/javascript; charset=utf-8"),
              "/page.css": ("review/page.css", "text/css; charset=utf-8"),
              "/bangla.ttf": ("assets/fonts/NotoSansBengali-Regular.ttf", "font/ttf")}
"""Everything the page needs: its files and a bundled Bangla font (a browser without one shows boxes)."""


@dataclass
class ReviewSession:
    """One review: its input, its data set, its items in review order, and the train command to print."""

    review: ReviewInput
    dataset: ReviewDataset
    order: list[ReviewItem]
    train_command: str

    def item(self, item_id: str) -> ReviewItem | None:
        """Item `item_id` (its number as text), or None for anything else."""
        if not (item_id.isascii() and item_id.isdigit()) or len(item_id) > 9:
            return None
        number = int(item_id)
        return self.review.items[number] if number < len(self.review.items) else None

    def progress(self) -> dict:
        keys = [item.key for item in self.review.items]
        counts = self.dataset.counts(keys)
        reviewed = counts["saved"] + counts["illegible"]
        return {"total": len(keys), "reviewed": reviewed, **counts,
                "pending": len(keys) - reviewed - counts["skipped"]}


def input_id(review: ReviewInput) -> str:
    """What names an input in its data set's state: a data set resumes the review of this input only."""
    return f"{review.kind}:{Path(review.path).expanduser().resolve()}"


def new_session(review: ReviewInput, out: str | Path | ReviewDataset, train_command: str) -> ReviewSession:
    """The session of `review` writing into the data set `out` (a folder: new or resumed; or one opened)."""
    dataset = out if isinstance(out, ReviewDataset) else open_dataset(out, input_id(review))
    return ReviewSession(review, dataset, in_review_order(review.items), train_command)


def item_json(session: ReviewSession, item: ReviewItem) -> dict:
    entry = session.dataset.entry(item.key) or {}
    return {"id": item.order, "source": item.source, "page": item.page, "reading": item.reading,
            "confidence": item.confidence, "error": item.error, "state": entry.get("state", "pending"),
            "correction": entry.get("text")}


def create_app(session: ReviewSession, allowed_hosts: list[str]) -> Starlette:
    """The web app over `session`, answering requests for `allowed_hosts` only ("*": any)."""

    async def page_file(request: Request) -> Response:
        name, media_type = PAGE_FILES[request.url.path]
        return Response(resources.files("banglaocr").joinpath(name).read_bytes(), media_type=media_type)

    async def items(request: Request) -> Response:
        return JSONResponse({"items": [item_json(session, item) for item in session.order],
                             "progress": session.progress(), "train_command": session.train_command})

    async def image(request: Request) -> Response:
        item = session.item(request.path_params["item_id"])
        if item is None:
            return JSONResponse({"error": "no such item"}, status_code=404)
        try:
            png = await run_in_threadpool(_png, item)
        except Exception as err:  # UnreadableImage, or anything else the decoder meets: the page says so
            return JSONResponse({"error": f"cannot show this image: {err}"}, status_code=422)
        return Response(png, media_type="image/png", headers={"Cache-Control": "no-store"})

    async def act(request: Request) -> Response:
        item = session.item(request.path_params["item_id"])
        if item is None:
            return JSONResponse({"error": "no such item"}, status_code=404)
        body, problem = await _json_body(request)
        if problem is not None:
            return problem
        action, text, problem = _action(body)
        if problem is not None:
            return problem
        try:
            tab = body["tab"][:64] if isinstance(body.get("tab"), str) else None  # which tab, for the journal
            await run_in_threadpool(session.dataset.record, item, action, text, tab)
        except Exception as err:  # the crop cannot be decoded: it cannot be training data
            from banglaocr.data.decode import UnreadableImage

            if not isinstance(err, UnreadableImage):
                raise
            return JSONResponse({"error": f"cannot read this image ({err}): mark it illegible or skip it"},
                                status_code=422)
        return JSONResponse({"item": item_json(session, item), "progress": session.progress()})

    routes = [*(Route(path, page_file) for path in PAGE_FILES), Route("/api/items", items),
              Route("/image/{item_id}", image), Route("/api/items/{item_id}", act, methods=["POST"])]
    return Starlette(routes=routes, middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts)])


def _png(item: ReviewItem) -> bytes:
    buffer = io.BytesIO()
    open_item_image(item).save(buffer, format="PNG")
    return buffer.getvalue()


async def _json_body(request: Request) -> tuple[dict, Response | None]:
    """The request's JSON object, read up to `MAX_BODY_BYTES`; or the error response."""
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
        return {}, JSONResponse({"error": "send application/json"}, status_code=415)
    declared = request.headers.get("content-length")
    too_large = JSONResponse({"error": f"request body over {MAX_BODY_BYTES} bytes"}, status_code=413)
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY_BYTES):
        return {}, too_large
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            return {}, too_large
    try:
        parsed = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return {}, JSONResponse({"error": "the body is not JSON"}, status_code=400)
    if not isinstance(parsed, dict):
        return {}, JSONResponse({"error": "the body must be a JSON object"}, status_code=400)
    return parsed, None


def _action(body: dict) -> tuple[str, str | None, Response | None]:
    """(action, normalised text or None, error response or None) of a save request."""
    from banglaocr.text import normalize

    action = body.get("action")
    if action not in ACTIONS:
        return "", None, JSONResponse({"error": f"action must be one of {', '.join(ACTIONS)}"}, status_code=400)
    if action != "save":
        return action, None, None
    text = body.get("text")
    if not isinstance(text, str):
        return action, None, JSONResponse({"error": "text must be a string"}, status_code=400)
    text = normalize(text)
    if not text:
        return action, None, JSONResponse({"error": "the text is empty: type the word, or mark it illegible"},
                                          status_code=400)
    if len(text) > MAX_WORD_CHARS:
        return action, None, JSONResponse({"error": f"the text is over {MAX_WORD_CHARS} characters"},
                                          status_code=400)
    return action, text, None
