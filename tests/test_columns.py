"""Columns that explain themselves: common names recognised, ambiguity named, a folder's own table read,
messages that say what to set, and `eval` / `predict` taking `section.key=value` overrides like `train`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import layout_fixtures as fixtures
import train_helpers as helpers
from banglaocr.cli import app
from banglaocr.config import DataConfig
from banglaocr.data.sources import load_splits
from banglaocr.errors import UserError

WORD_PNG = Path(__file__).resolve().parent.parent / "examples" / "words" / "word01.png"


def invoke(*args: str):
    return CliRunner().invoke(app, list(args))


def one_line_error(result) -> str:
    """The output of a command that failed as a user error: exit code 2, one line."""
    assert result.exit_code == 2, result.output
    assert result.output.strip().count("\n") == 0, result.output
    return result.output


def manifest(folder: Path, header: str, n: int = 3, name: str = "words.csv") -> Path:
    """A CSV manifest with `header` (image column first, text second) over `n` images beside it."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = [header]
    for index in range(n):
        fixtures.word_image(fixtures.word_of(index), index).save(folder / f"w{index}.png")
        lines.append(f"w{index}.png,{fixtures.word_of(index)}")
    (folder / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder / name


@pytest.mark.parametrize("header", ["filename,label", "image_id,text", "Image,Word", "path,transcription",
                                    "FILE_NAME,TEXT", "file_name,text"])
def test_common_column_names_are_recognised_and_rows_named_by_their_file(tmp_path, header):
    path = manifest(tmp_path, header)
    splits = load_splits(DataConfig(source=str(path), val_fraction=0, test_fraction=0))
    assert [(r.id, r.text) for r in splits.train] == [(f"w{i}.png", fixtures.word_of(i)) for i in range(3)]


@pytest.mark.parametrize(("header", "named"), [
    ("file_name,path,text", "2 columns could hold the image (file_name, path); set data.image_column=NAME"),
    ("filename,text,label", "2 columns could hold the transcription (text, label); set data.text_column=NAME"),
])
def test_two_candidate_columns_are_one_error_naming_both(tmp_path, header, named):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "words.csv").write_text(header + "\na.png,a.png,কলম\n", encoding="utf-8")
    with pytest.raises(UserError) as caught:
        load_splits(DataConfig(source=str(folder / "words.csv")))
    assert str(caught.value) == f"words.csv: {named} to one of them"


def test_a_set_column_wins_and_a_misspelled_one_is_an_error(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    fixtures.word_image("কলম", 1).save(folder / "a.png")
    (folder / "words.csv").write_text("file_name,text,label\na.png,কলম,word\n", encoding="utf-8")
    splits = load_splits(DataConfig(source=str(folder / "words.csv"), text_column="text", val_fraction=0,
                                    test_fraction=0))
    assert [r.text for r in splits.train] == ["কলম"]
    with pytest.raises(UserError, match=r"words.csv: no 'txet' column \(columns: file_name, text, label\); "
                                        r"set data.text_column=NAME to one of them"):
        load_splits(DataConfig(source=str(folder / "words.csv"), text_column="txet"))


def test_a_folder_with_labels_csv_and_a_gradet_folder_load_without_any_setting(tmp_path):
    for built in (fixtures.labels_csv_folder(tmp_path / "jpgs"), fixtures.gradet_folder(tmp_path / "gradet")):
        for source in (built.root, *([built.root / "labels" / "label.csv"] if "gradet" in built.root.name else [])):
            splits = load_splits(DataConfig(source=str(source), val_fraction=0, test_fraction=0))
            assert {r.id: r.text for r in splits.train} == built.samples, source
            assert dict(splits.skipped.counts) == dict(built.skips), source
    gradet = load_splits(DataConfig(source=str(tmp_path / "gradet"), val_fraction=0, test_fraction=0))
    images = {Path(r.image).name for r in gradet.train}
    assert "1_1_1_1.jpg" in images and "1_1_2_1.jpg" in images  # ids without and with the extension


def test_a_folder_of_images_without_metadata_names_metadata_files(tmp_path):
    folder = tmp_path / "scans"
    folder.mkdir()
    for index in range(3):
        fixtures.word_image("কলম", index).save(folder / f"{index}.jpg")
    output = one_line_error(invoke("eval", "--model", "tiny", "--dataset", str(folder), "--out", str(tmp_path / "e")))
    assert f"no metadata.jsonl or metadata.csv in {folder}: its 3 image(s) need a table" in output
    assert "file_name,text" in output and "manifest" in output


def test_several_tables_without_split_names_are_one_error(tmp_path):
    folder = tmp_path / "two"
    manifest(folder, "filename,label", name="a.csv")
    manifest(folder, "filename,label", name="b.csv")
    with pytest.raises(UserError, match=r"several tables \(a.csv, b.csv\); name one as the data source"):
        load_splits(DataConfig(source=str(folder)))
    (folder / "a.csv").rename(folder / "train.csv")
    (folder / "b.csv").rename(folder / "test.csv")
    splits = load_splits(DataConfig(source=str(folder)))
    assert (len(splits.train), len(splits.val), len(splits.test)) == (3, 0, 3)


def test_a_few_rows_and_an_empty_test_split_say_split_all(tmp_path):
    path = manifest(tmp_path / "few", "filename,label", n=6)
    output = one_line_error(invoke("eval", "--model", "tiny", "--dataset", str(path), "--out", str(tmp_path / "e")))
    assert ("data.test_fraction 0.05 of its 6 samples holds out none; evaluate every sample with --split all"
            in output)
    result = invoke("eval", "--model", "tiny", "--dataset", str(path), "--split", "all", "--out", str(tmp_path / "e"),
                    "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output[result.output.index("{"):])["n"] == 6


def test_eval_takes_data_and_eval_overrides_and_refuses_others(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    fixtures.word_image("কলম", 1).save(folder / "a.png")
    (folder / "words.jsonl").write_text('{"picture": "a.png", "caption": "কলম"}\n', encoding="utf-8")
    base = ["eval", "--model", "tiny", "--dataset", str(folder / "words.jsonl"), "--split", "all"]
    result = invoke(*base, "data.image_column=picture", "data.text_column=caption", "eval.batch_size=1",
                    "--out", str(tmp_path / "e"), "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output[result.output.index("{"):])
    assert (summary["n"], summary["batch_size"]) == (1, 1)
    assert "set data.text_column=NAME" in one_line_error(invoke(*base, "data.image_column=picture"))
    assert "eval takes the recipe overrides data.*, eval.*; not 'train.lr'" in one_line_error(
        invoke(*base, "train.lr=1"))
    assert "unknown recipe key 'data.text_colum' (did you mean 'text_column'?)" in one_line_error(
        invoke(*base, "data.text_colum=caption"))


def test_predict_takes_reading_overrides(tmp_path):
    plain = invoke("predict", "--model", "tiny", str(WORD_PNG), "--format", "jsonl")
    short = invoke("predict", "--model", "tiny", str(WORD_PNG), "eval.max_new_tokens=1", "--format", "jsonl")
    assert plain.exit_code == 0 and short.exit_code == 0, (plain.output, short.output)
    read, cut = (json.loads(result.output.strip().splitlines()[-1])["prediction"] for result in (plain, short))
    assert len(read) > 1 and len(cut) == 1 and read.startswith(cut)  # one character token: the first letter
    assert "predict takes the recipe overrides" in one_line_error(
        invoke("predict", "--model", "tiny", str(WORD_PNG), "data.text_column=x"))


@pytest.mark.parametrize("layout", ["labels_csv_folder", "gradet_folder"])
def test_own_folders_train_and_evaluate_without_overrides(tmp_path, layout):
    built = getattr(fixtures, layout)(tmp_path / layout)
    out = tmp_path / "run"
    summary = helpers.train(out, f"data.source={built.root}", "train.max_steps=2", "data.val_fraction=0.2",
                            "data.test_fraction=0.2")
    assert summary["skipped_samples"] == sum(built.skips.values())
    tested = [json.loads(line)["id"] for line in (out / "test_predictions.jsonl").read_text(encoding="utf-8")
              .splitlines()]
    assert tested and set(tested) <= set(built.samples)
    result = invoke("eval", "--model", str(out), "--dataset", str(built.root), "data.val_fraction=0.2",
                    "data.test_fraction=0.2", "--out", str(tmp_path / "e"), "--json")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line)
            for line in (tmp_path / "e" / "predictions.jsonl").read_text(encoding="utf-8").splitlines()]
    assert sorted(row["id"] for row in rows) == sorted(tested)  # the same seeded test split training held out
