"""BN-HTRd and BanglaWriting read as they are unpacked: recognised or named, unusable rows counted with
their reasons, words cut from BanglaWriting's pages, and held-out splits that share no writer or page -
through training and evaluation."""

from __future__ import annotations

import json
import os
import shutil

import openpyxl
import pytest
from typer.testing import CliRunner

import layout_fixtures as fixtures
import train_helpers as helpers
from banglaocr.cli import app
from banglaocr.config import DataConfig
from banglaocr.data.sources import load_splits, open_image
from banglaocr.errors import UserError

BUILDERS = {"bn-htrd": fixtures.bn_htrd_folder, "banglawriting": fixtures.banglawriting_folder}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict:
    """One data set of each layout for the module (they are only read)."""
    root = tmp_path_factory.mktemp("layouts")
    return {name: build(root / name) for name, build in BUILDERS.items()}


def every(splits) -> list:
    return splits.train_records + splits.val + splits.test


def test_bn_htrd_is_read_as_unpacked(built):
    data = built["bn-htrd"]
    splits = load_splits(DataConfig(source=str(data.root), val_fraction=0, test_fraction=0))
    assert {r.id: r.text for r in splits.train} == data.samples  # named by the crop's path
    assert {r.id: r.meta["writer"] for r in splits.train} == data.writers  # the document folder
    assert dict(splits.skipped.counts) == dict(data.skips)
    assert [cell.value for cell in openpyxl.load_workbook(data.root / "2" / "2.xlsx").active[1]] == ["ID", "word"]
    assert any(r.meta["writer"] == "2" for r in splits.train)  # the sheet spelling ID / word is read too
    assert {r.meta["page"] for r in splits.train if r.meta["writer"] == "3"} == {"3/3_1", "3/3_2"}
    named = load_splits(DataConfig(source=f"bn-htrd:{data.root}", val_fraction=0, test_fraction=0))
    assert [r.id for r in named.train] == [r.id for r in splits.train]


def test_banglawriting_words_are_cut_from_their_pages(built, monkeypatch, tmp_path):
    monkeypatch.setenv("BANGLAOCR_CACHE", str(tmp_path / "cache"))
    data = built["banglawriting"]
    splits = load_splits(DataConfig(source=str(data.root), val_fraction=0, test_fraction=0))
    assert {r.id: r.text for r in splits.train} == data.samples  # PAGE#INDEX
    assert {r.id: r.meta["writer"] for r in splits.train} == data.writers  # WRITER_AGE_GENDER.jpg
    assert dict(splits.skipped.counts) == dict(data.skips)
    first = next(r for r in splits.train if r.id == "7_19_1.jpg#1")
    word = fixtures.word_image(fixtures.word_of(1), 301)
    assert open_image(first).size == word.size  # the box, corners in either order
    crops = sorted((tmp_path / "cache" / "crops" / "banglawriting").rglob("*.png"))
    assert len(crops) == len(data.samples)
    stamps = [path.stat().st_mtime_ns for path in crops]
    again = load_splits(DataConfig(source=f"banglawriting:{data.root}", val_fraction=0, test_fraction=0))
    assert [r.image for r in again.train] == [r.image for r in splits.train]
    assert [path.stat().st_mtime_ns for path in crops] == stamps  # cut once, then read from the cache
    by_age = load_splits(DataConfig(source=str(data.root), writer_pattern=r"^\d+_(\d+)", val_fraction=0,
                                    test_fraction=0))
    assert {r.meta["writer"] for r in by_age.train if r.id.startswith("7_19_1.jpg")} == {"19"}  # configurable


def test_an_unpacked_top_folder_is_looked_through_and_a_wrong_name_is_one_error(built, tmp_path):
    top = tmp_path / "BN-HTRd"
    top.mkdir()
    os.symlink(built["bn-htrd"].root, top / "Dataset")
    splits = load_splits(DataConfig(source=str(top), val_fraction=0, test_fraction=0))
    assert len(splits.train) == len(built["bn-htrd"].samples)
    with pytest.raises(UserError, match="is not a BanglaWriting folder"):
        load_splits(DataConfig(source=f"banglawriting:{built['bn-htrd'].root}"))
    with pytest.raises(UserError, match="no such folder"):
        load_splits(DataConfig(source=f"bn-htrd:{tmp_path / 'nowhere'}"))


def test_a_sheet_without_id_and_word_columns_is_one_error(tmp_path):
    data = fixtures.bn_htrd_folder(tmp_path / "bn", documents=2)
    workbook = openpyxl.Workbook()
    workbook.active.append(["Name", "Text"])
    workbook.save(data.root / "2" / "2.xlsx")
    with pytest.raises(UserError, match=r"2/2.xlsx: no Id and Word columns in its first row \(found: Name, Text\)"):
        load_splits(DataConfig(source=str(data.root)))


@pytest.mark.parametrize("layout", sorted(BUILDERS))
@pytest.mark.parametrize("split_by", ["writer", "page", None])
def test_no_writer_or_page_is_in_two_splits(built, layout, split_by):
    data = built[layout]
    for seed in range(5):
        cfg = DataConfig(source=str(data.root), val_fraction=0.2, test_fraction=0.2, split_by=split_by, split_seed=seed)
        splits = load_splits(cfg)
        assert sorted(r.id for r in every(splits)) == sorted(data.samples)  # nothing lost, nothing twice
        assert splits.val and splits.test
        for key in ("writer", "page") if split_by != "page" else ("page",):
            train, val, test = ({r.meta[key] for r in part} for part in (splits.train, splits.val, splits.test))
            assert not (train & val or train & test or val & test), (key, seed)
        assert [r.id for r in load_splits(cfg).test] == [r.id for r in splits.test]  # seeded


def test_split_by_writer_on_a_table_needs_its_writer_column(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    lines = ["file_name,text,writer"]
    for index in range(20):
        fixtures.word_image("কলম", index).save(folder / f"{index}.png")
        lines.append(f"{index}.png,কলম,w{index % 5}")
    (folder / "words.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    splits = load_splits(DataConfig(source=str(folder / "words.csv"), split_by="writer", val_fraction=0.2,
                                    test_fraction=0.2))
    writers = [{r.meta["writer"] for r in part} for part in (splits.train, splits.val, splits.test)]
    assert all(writers) and not (writers[0] & writers[1] or writers[0] & writers[2] or writers[1] & writers[2])
    (folder / "words.csv").write_text("\n".join(line.rsplit(",", 1)[0] for line in lines) + "\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"data.split_by 'writer' needs the writer of every sample .* and 0.png "
                                        r"has none; set data.split_by=sample"):
        load_splits(DataConfig(source=str(folder / "words.csv"), split_by="writer"))


@pytest.mark.parametrize("layout", sorted(BUILDERS))
def test_a_layout_trains_and_evaluates_on_unseen_writers(built, tmp_path, layout):
    data = built[layout]
    out = tmp_path / "run"
    fractions = ["data.val_fraction=0.2", "data.test_fraction=0.2"]
    summary = helpers.train(out, f"data.source={data.root}", "train.max_steps=2", *fractions)
    assert summary["skipped"]["by_reason"] == dict(data.skips)  # reported like any skipped sample
    trained = {data.writers[r.id] for r in load_splits(DataConfig(source=str(data.root), val_fraction=0.2,
                                                                   test_fraction=0.2)).train}
    tested = [json.loads(line)["id"] for line in (out / "test_predictions.jsonl").read_text(encoding="utf-8")
              .splitlines()]
    assert tested and not {data.writers[sample] for sample in tested} & trained
    result = CliRunner().invoke(app, ["eval", "--model", str(out), "--dataset", f"{layout}:{data.root}", *fractions,
                                      "--out", str(tmp_path / "eval")])
    assert result.exit_code == 0, result.output
    rows = (tmp_path / "eval" / "predictions.jsonl").read_text(encoding="utf-8").splitlines()
    assert sorted(json.loads(row)["id"] for row in rows) == sorted(tested)  # the writers training never saw
    shutil.rmtree(out)


def test_archive_leftovers_and_a_page_inside_its_json_are_handled(built, tmp_path):
    import base64

    bn = tmp_path / "bn"
    shutil.copytree(built["bn-htrd"].root, bn)
    (bn / "__MACOSX" / "1").mkdir(parents=True)
    (bn / "__MACOSX" / "1" / "._1.xlsx").write_bytes(b"\0\5\26\7 not a workbook")  # macOS resource forks
    (bn / "1" / "Words" / "1_1" / "._1_1_1_1.jpg").write_bytes(b"\0\5\26\7")
    (bn / "3" / "Words").rename(bn / "3" / "words")
    splits = load_splits(DataConfig(source=str(bn), val_fraction=0, test_fraction=0))
    assert sorted(r.text for r in splits.train) == sorted(built["bn-htrd"].samples.values())
    assert dict(splits.skipped.counts) == dict(built["bn-htrd"].skips)
    bw = tmp_path / "bw"
    shutil.copytree(built["banglawriting"].root, bw)
    page = json.loads((bw / "14_20_0.json").read_text(encoding="utf-8"))
    page["imageData"] = base64.b64encode((bw / "14_20_0.jpg").read_bytes()).decode("ascii")  # LabelMe's default
    (bw / "14_20_0.json").write_text(json.dumps(page), encoding="utf-8")
    (bw / "14_20_0.jpg").unlink()
    splits = load_splits(DataConfig(source=str(bw), val_fraction=0, test_fraction=0))
    assert {r.id: r.text for r in splits.train} == built["banglawriting"].samples
