"""review's inputs and its data set: the three INPUT kinds, the order, the page split, refusals, and that
train's loader reads what review wrote."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from PIL import Image

from banglaocr.config import DataConfig
from banglaocr.data.sources import load_splits
from banglaocr.errors import UserError
from banglaocr.review.dataset import STATE_FILE, open_dataset, split_of_page
from banglaocr.review.inputs import ReviewItem, in_review_order, load_input, open_item_image
from review_fixtures import write_crops, write_predictions


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] if path.exists() else []


def test_predictions_rows_in_review_order_with_the_markers_model(tmp_path):
    review = load_input(write_predictions(tmp_path))
    assert review.kind == "predictions" and review.model == "tiny"
    ordered = in_review_order(review.items)
    assert [item.confidence for item in ordered] == sorted(item.confidence for item in review.items)
    assert ordered[0].source == "crops/w09.png" and ordered[0].image == tmp_path / "crops" / "w09.png"


def test_unknown_confidence_first_then_ties_in_input_order():
    items = [ReviewItem(key=k, image=Path(k), source=k, page=k, confidence=c, order=i)
             for i, (k, c) in enumerate([("a", 0.5), ("b", None), ("c", 0.2), ("d", 0.5), ("e", None)])]
    assert [item.key for item in in_review_order(items)] == ["b", "e", "c", "a", "d"]


def test_page_rows_are_cut_from_their_page_by_box(tmp_path):
    page = Image.new("RGB", (200, 100), "white")
    page.paste(Image.new("RGB", (40, 20), "black"), (10, 30))
    page.save(tmp_path / "page.png")
    row = {"file": "page.png", "page": None, "text": "কলম বই",
           "lines": [[{"box": [10, 30, 50, 50], "prediction": "কলম", "confidence": 0.7},
                      {"box": [60, 30, 120, 50], "prediction": "বই", "confidence": 0.3}]]}
    (tmp_path / "p.jsonl").write_text(json.dumps(row, ensure_ascii=False) + "\n", encoding="utf-8")
    items = load_input(tmp_path / "p.jsonl").items
    assert [(item.page, item.box, item.reading) for item in items] == [
        ("page.png", (10, 30, 50, 50), "কলম"), ("page.png", (60, 30, 120, 50), "বই")]
    crop = open_item_image(items[0])
    assert crop.size == (40, 20) and crop.getpixel((5, 5)) == (0, 0, 0)


def test_a_segment_output_and_a_crop_folder(tmp_path):
    write_crops(tmp_path / "seg" / "crops" / "p1", ["কলম", "বই"])
    layout = [{"file": "p1.png", "source": "scan.pdf", "page": 1, "width": 300, "height": 100, "skew_degrees": 0.0,
               "lines": [[{"box": [1, 2, 30, 40], "crop": "crops/p1/w00.png"},
                          {"box": [40, 2, 90, 40], "crop": "crops/p1/w01.png"}]]}]
    (tmp_path / "seg" / "layout.json").write_text(json.dumps(layout), encoding="utf-8")
    segment = load_input(tmp_path / "seg")
    assert segment.kind == "segment" and [(i.source, i.page, i.box) for i in segment.items] == [
        ("scan.pdf", "p1.png", (1, 2, 30, 40)), ("scan.pdf", "p1.png", (40, 2, 90, 40))]
    assert open_item_image(segment.items[0]).size == Image.open(tmp_path / "seg/crops/p1/w00.png").size

    crops = tmp_path / "crops"
    write_crops(crops, ["কলম"])
    write_crops(crops / "page2", ["বই", "নদী"])
    outside = tmp_path / "secret.png"
    Image.new("RGB", (9, 9)).save(outside)
    os.symlink(outside, crops / "link.png")
    folder = load_input(crops)
    assert [(i.key, i.page, i.outside) for i in folder.items] == [
        ("link.png", "link.png", True), ("w00.png", "w00.png", False),
        ("page2/w00.png", "page2/", False), ("page2/w01.png", "page2/", False)]


def test_a_layout_crop_that_leads_out_of_its_folder_is_never_opened(tmp_path):
    (tmp_path / "seg").mkdir()
    Image.new("RGB", (9, 9)).save(tmp_path / "secret.png")
    layout = [{"file": "p.png", "source": "p.png", "page": None, "width": 9, "height": 9, "skew_degrees": 0.0,
               "lines": [[{"box": [0, 0, 9, 9], "crop": "../secret.png"}]]}]
    (tmp_path / "seg" / "layout.json").write_text(json.dumps(layout), encoding="utf-8")
    item = load_input(tmp_path / "seg").items[0]
    assert item.outside and "outside" in item.error
    with pytest.raises(Exception, match="outside"):
        open_item_image(item)


def test_the_page_split_rule():
    assert [split_of_page(k) for k in range(12)] == ["train", "val"] + ["train"] * 9 + ["val"]


def test_saves_make_an_imagefolder_that_load_splits_reads_split_by_page(tmp_path):
    crops = write_crops(tmp_path / "crops", ["কলম", "বই", "নদী", "পাখি"])
    pages = ["p1", "p1", "p2", "p3"]
    items = [ReviewItem(key=p.name, image=p, source=p.name, page=page, reading="x", confidence=0.5, order=i)
             for i, (p, page) in enumerate(zip(crops, pages))]
    dataset = open_dataset(tmp_path / "ds", "test:input")
    for item, text in zip(items, ["কলম", "বই", "নদী"]):
        dataset.record(item, "save", text)
    dataset.record(items[3], "illegible")
    train, val = _rows(tmp_path / "ds/train/metadata.jsonl"), _rows(tmp_path / "ds/val/metadata.jsonl")
    assert [(r["text"], r["page"]) for r in train] == [("কলম", "p1"), ("বই", "p1")]
    assert [(r["text"], r["page"]) for r in val] == [("নদী", "p2")]
    assert set(train[0]) == {"file_name", "text", "source", "page", "box", "model_reading", "confidence", "reviewed"}
    state = json.loads((tmp_path / "ds" / STATE_FILE).read_text(encoding="utf-8"))
    assert state["items"]["w03.png"]["state"] == "illegible" and state["pages"] == {"p1": "train", "p2": "val"}
    splits = load_splits(DataConfig(source=str(tmp_path / "ds"), test_fraction=0.0))
    assert [r.text for r in splits.train] == ["কলম", "বই"] and [r.text for r in splits.val] == ["নদী"]
    assert splits.skipped.total == 0
    # a word saved, then found illegible: out of metadata and its crop gone; the page keeps its split
    dataset.record(items[2], "illegible")
    assert not (tmp_path / "ds/val/metadata.jsonl").exists() and not list((tmp_path / "ds/val").glob("*.png"))


def test_resume_repairs_metadata_from_the_state_and_refuses_foreign_folders(tmp_path):
    crop = write_crops(tmp_path / "crops", ["কলম"])[0]
    item = ReviewItem(key="w00.png", image=crop, source="w00.png", page="w00.png", reading="কল")
    open_dataset(tmp_path / "ds", "test:input").record(item, "save", "কলম")
    (tmp_path / "ds/train/metadata.jsonl").unlink()  # a kill after the state, before the metadata
    resumed = open_dataset(tmp_path / "ds", "test:input")
    assert resumed.entry("w00.png")["changed"] is True
    assert [r["text"] for r in _rows(tmp_path / "ds/train/metadata.jsonl")] == ["কলম"]
    with pytest.raises(UserError, match="holds the review of test:input"):
        open_dataset(tmp_path / "ds", "test:another")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(UserError, match="not a banglaocr review folder"):
        open_dataset(tmp_path / "mine", "test:input")
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["notes.txt"]
