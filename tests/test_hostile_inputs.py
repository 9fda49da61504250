"""The hostile-input corpus (`hostile_corpus.py`) through decoding, the loader, `predict`, `eval`,
`scan-dims` and a short `train`: no traceback, every bad row counted with its reason, images
decoded as a viewer shows them (checked pixel by pixel), exit codes as documented.

Also: output locations that cannot be written are one line (exit 2) - for `eval` / `predict`
before the model is loaded, for `synth` before anything is rendered.
"""

from __future__ import annotations

import json
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import hostile_corpus as hc
import train_helpers as helpers
from banglaocr.cli import app
from banglaocr.config import DataConfig
from banglaocr.data.sources import image_size, load_splits, open_image
from banglaocr.errors import UserError

runner = CliRunner()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> hc.Corpus:
    return hc.write_corpus(tmp_path_factory.mktemp("hostile"), split="test")


def invoke(*args: str):
    """The CLI in this process, recording every warning (none may escape to the user)."""
    with helpers.one_thread(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = runner.invoke(app, list(args))
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    pillow = [w for w in caught if "PIL" in w.filename or issubclass(w.category, Image.DecompressionBombWarning)]
    assert pillow == [], [str(w.message) for w in pillow]
    assert "DecompressionBomb" not in result.output
    return result


def gray(name: str, corpus: hc.Corpus) -> np.ndarray:
    return np.asarray(open_image(str(corpus.data / name)).convert("L"), dtype=np.float64)


# --------------------------------------------------------------------------- decoding, pixel by pixel


@pytest.mark.parametrize("name", ["plain.png", "rgba_transparent.png", "la_transparent.png", "palette_transparent.png",
                                  "palette.gif", "exif_rotated.jpg", "exif_rotated.png", "cmyk.jpg", "cmyk.tif",
                                  "rgb16.png", "float.tif", "lossless.webp", "transparent.webp", "lzw.tif"])
def test_unusual_images_decode_to_the_word_a_viewer_shows(corpus, name):
    decoded = gray(name, corpus)
    assert decoded.shape == (hc.HEIGHT, hc.WIDTH)  # EXIF-rotated ones are upright, not 32 wide and 96 high
    assert np.abs(decoded - hc.word_array()).mean() < 6, name  # JPEG leaves a little noise, nothing more


def test_transparency_is_white_paper_not_black(corpus):
    # What the test guards against: dropping alpha without compositing turns the paper black.
    naive = np.asarray(Image.open(corpus.data / "rgba_transparent.png").convert("L"))
    assert naive[:, hc.PAPER_COLUMNS].max() == 0
    for name in ("rgba_transparent.png", "la_transparent.png", "palette_transparent.png", "transparent.webp"):
        decoded = gray(name, corpus)
        assert decoded[:, hc.PAPER_COLUMNS].min() == 255 and decoded[hc.word_array() == 0].max() == 0, name


def test_exif_orientation_is_applied_to_pixels_and_sizes(corpus):
    stored = Image.open(corpus.data / "exif_rotated.jpg")
    assert stored.size == (hc.HEIGHT, hc.WIDTH)  # kept sideways in the file
    for name in ("exif_rotated.jpg", "exif_rotated.png"):  # 90 degrees clockwise, 180 degrees
        decoded = gray(name, corpus)
        assert decoded[:, hc.INK_COLUMNS].mean() < 200 < decoded[:, hc.PAPER_COLUMNS].min(), name  # ink on the left
    record = next(r for r in load_splits(DataConfig(source=str(corpus.root / "data"))).test
                  if r.id == "exif_rotated.jpg")
    assert image_size(record) == (hc.WIDTH, hc.HEIGHT)  # scan-dims measures the upright image


def test_sixteen_bit_grey_is_scaled_not_clipped(corpus):
    naive = np.asarray(Image.open(corpus.data / "gray16.png").convert("L"))
    assert naive[:, hc.PAPER_COLUMNS].min() == 255  # Pillow clips 16-bit mid-grey to white
    decoded = gray("gray16.png", corpus)
    assert np.all(decoded[:, hc.PAPER_COLUMNS] == 128)
    assert decoded[hc.word_array() == 0].max() == 0


def test_damaged_variants_of_every_image_are_unreadable_or_read_never_a_crash():
    """Seeded random damage (flipped bytes, cuts, insertions) to the corpus's images: whatever Pillow
    raises becomes `UnreadableImage`, and no warning escapes."""
    from banglaocr.data.sources import Record, UnreadableImage

    rng = np.random.default_rng(0)
    originals = [data for data, _ in hc.image_files().values() if 0 < len(data) < 200_000]
    outcomes = Counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(600):
            data = bytearray(originals[rng.integers(len(originals))])
            for _ in range(rng.integers(1, 6)):
                at = int(rng.integers(len(data)))
                if rng.random() < 0.6:
                    data[at] = int(rng.integers(256))
                elif rng.random() < 0.5:
                    del data[max(at, 8):]
                else:
                    data[at:at] = rng.bytes(int(rng.integers(1, 16)))
            try:
                image = open_image(Record(id="x", text="ক", image=bytes(data)))
                outcomes["read"] += image.mode == "RGB"
            except UnreadableImage:
                outcomes["unreadable"] += 1
    assert sum(outcomes.values()) == 600 and outcomes["read"] and outcomes["unreadable"]
    assert [str(w.message) for w in caught] == []


# --------------------------------------------------------------------------- the loader


def test_loader_counts_every_bad_row_with_its_reason(corpus):
    splits = load_splits(DataConfig(source=str(corpus.root / "data")))
    assert Counter(splits.skipped.counts) == corpus.load_skips
    expected = {name for name, case in corpus.images.items() if case.outcome != "empty file"}
    assert {r.id for r in splits.test} == expected
    labels = {r.id: r.text for r in splits.test}
    assert {name: labels[name] for name in corpus.label_rows} == corpus.label_rows
    assert labels["escaped.png"] == "কলম"  # JSON escapes in names and labels are decoded
    outside = str((corpus.root / "outside.png").resolve())
    assert all(r.image != outside for r in splits.test)  # nothing outside the folder is read
    with pytest.raises(UserError, match="data.split 'train' not found"):  # a test-only folder: nothing to train on
        _ = splits.train


def test_a_manifest_may_name_absolute_and_parent_paths(corpus):
    splits = load_splits(DataConfig(source=str(corpus.root / "manifest.jsonl"), val_fraction=0, test_fraction=0))
    assert [Path(r.image).name for r in splits.train] == ["plain.png", "outside.png"]
    assert dict(splits.skipped.counts) == {"duplicate row (image or id listed before)": 1}


# --------------------------------------------------------------------------- the commands


def test_predict_gives_one_row_per_file_errors_and_blanks_marked(corpus):
    files = corpus.files()
    result = invoke("predict", "--model", "tiny", "--format", "jsonl", *map(str, files))
    assert result.exit_code == 1  # some inputs could not be read
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [row["file"] for row in rows] == [str(f) for f in files]
    for row, name in zip(rows, corpus.images):
        case = corpus.images[name]
        if case.outcome == "read":
            assert "error" not in row and "blank" not in row and isinstance(row["prediction"], str), row
        elif case.outcome == "blank":
            assert row == {"file": row["file"], "prediction": "", "blank": True}
        else:
            assert (case.reason or "empty file") in row["error"], row
            assert "\n" not in row["error"]
    unreadable = len(corpus.with_outcome("unreadable", "empty file"))
    assert f"{unreadable} of {len(files)} input(s) could not be read" in result.stderr
    assert f"{len(corpus.with_outcome('blank'))} blank image(s)" in result.stderr


def test_eval_on_a_test_only_folder_scores_and_counts_everything(corpus, tmp_path):
    result = invoke("eval", "--model", "tiny", "--dataset", str(corpus.root / "data"), "--split", "test",
                    "--out", str(tmp_path / "e"), "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    scored = corpus.with_outcome("read", "blank")
    assert summary["n"] == len(scored)
    assert Counter(summary["unreadable"]["by_reason"]) == corpus.decode_failures()
    assert Counter(summary["skipped_at_load_detail"]["by_reason"]) == corpus.load_skips
    rows = {json.loads(line)["id"]: json.loads(line)
            for line in (tmp_path / "e" / "predictions.jsonl").read_text(encoding="utf-8").splitlines()}
    for name in corpus.with_outcome("blank"):
        assert rows[name]["prediction"] == "" and rows[name]["cer"] == 1.0  # scored as an empty prediction
    assert summary["empty_predictions"] >= len(corpus.with_outcome("blank"))


def test_scan_dims_counts_what_headers_cannot_tell(corpus):
    result = invoke("scan-dims", "--dataset", str(corpus.root / "data"), "--split", "test", "--tokenizer", "char",
                    "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    header_failures = Counter(f"unreadable image ({case.reason})" for case in corpus.images.values()
                              if case.outcome == "unreadable" and (not case.header_ok or "large" in case.reason))
    assert Counter(report["skipped"]["by_reason"]) == corpus.load_skips + header_failures
    assert report["percentiles"]["aspect"]["max"] == pytest.approx(310.0)
    assert report["budget"]["processor_refuses"] == 2  # aspect 310 and 1/310: Qwen's processor rejects > 200
    table = invoke("scan-dims", "--dataset", str(corpus.root / "data"), "--split", "test", "--tokenizer", "char")
    assert table.exit_code == 0 and "2 image(s) have an aspect ratio over 200" in table.stdout


def test_train_on_the_corpus_counts_every_bad_row(tmp_path):
    train_corpus = hc.write_corpus(tmp_path / "corpus", split="train")
    loaded = [name for name, case in train_corpus.images.items() if case.outcome != "empty file"]
    steps = -(-len(loaded) // 4)  # one epoch at batch size 4: every image is decoded once
    out = tmp_path / "run"
    result = invoke("train", "--recipe", "cpu_demo", "-o", str(out),
                    *helpers.overrides(f"data.source={train_corpus.root / 'data'}", "data.val_fraction=0",
                                       "data.test_fraction=0", f"train.max_steps={steps}", "train.log_steps=1",
                                       "train.group_by_length=false"))
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert Counter(summary["skipped"]["by_reason"]) == train_corpus.load_skips + train_corpus.decode_failures()


def test_train_on_a_test_only_folder_is_one_line_exit_2(corpus, tmp_path):
    result = invoke("train", "--recipe", "cpu_demo", "-o", str(tmp_path / "run"),
                    *helpers.overrides(f"data.source={corpus.root / 'data'}"))
    assert result.exit_code == 2, result.output
    assert result.output.strip().count("\n") == 0 and "data.split 'train' not found" in result.output


# --------------------------------------------------------------------------- manifests given as data.source


def test_manifest_without_a_label_column_is_one_line_exit_2(tmp_path):
    manifest = tmp_path / "words.jsonl"
    manifest.write_text('{"image": "a.png", "caption": "কলম"}\n', encoding="utf-8")  # no common name of a label
    result = invoke("eval", "--model", "tiny", "--dataset", str(manifest), "--out", str(tmp_path / "e"))
    assert result.exit_code == 2
    assert result.output.strip().count("\n") == 0
    assert ("no transcription column (looked for text, label, word, transcription; columns: image, caption); "
            "set data.text_column=NAME") in result.output


# --------------------------------------------------------------------------- outputs that cannot be written


@pytest.mark.parametrize("where", ["/proc/banglaocr-out", "a-file", "a-file/below"])
def test_unwritable_out_is_refused_before_the_model_loads(where, tmp_path, monkeypatch, corpus):
    import banglaocr.cli.eval as eval_cli
    import banglaocr.cli.predict as predict_cli

    (tmp_path / "a-file").write_text("mine", encoding="utf-8")
    target = where if where.startswith("/") else str(tmp_path / where)

    def must_not_load(*args, **kwargs):
        raise AssertionError("the model was loaded before --out was checked")

    monkeypatch.setattr(predict_cli, "load_quietly", must_not_load)
    monkeypatch.setattr(eval_cli, "load_quietly", must_not_load)
    image = str(corpus.data / "plain.png")
    for args in (["predict", "--model", "tiny", image, "--out", target + "/rows.jsonl"],
                 ["eval", "--model", "tiny", "--dataset", str(corpus.root / "data"), "--out", target]):
        result = invoke(*args)
        assert result.exit_code == 2, result.output
        assert result.output.strip().count("\n") == 0 and "--out" in result.output, result.output
    assert (tmp_path / "a-file").read_text(encoding="utf-8") == "mine"


@pytest.mark.parametrize("where", ["/proc/banglaocr-synth", "a-file", "a-file/below"])
def test_synth_out_that_cannot_be_created_is_one_line_exit_2(where, tmp_path):
    (tmp_path / "a-file").write_text("mine", encoding="utf-8")
    target = where if where.startswith("/") else str(tmp_path / where)
    result = invoke("synth", "--out", target, "--n", "10")
    assert result.exit_code == 2, result.output
    assert result.output.strip().count("\n") == 0 and "choose" in result.output
    assert (tmp_path / "a-file").read_text(encoding="utf-8") == "mine"
