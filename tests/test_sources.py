"""Data sources: every source kind, class selection, seeded splits, and counted (never silent) skips."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from banglaocr.config import DataConfig
from banglaocr.data.sources import (
    Record,
    UnreadableImage,
    image_size,
    load_splits,
    open_image,
    resolve_source,
)
from banglaocr.errors import UserError

WORDS = ["বাংলা", "ভাষা", "কলম", "খাতা", "আকাশ", "নদী", "পাখি", "ফুল", "মাটি", "জল", "গাছ", "ঘর"]


def png_bytes(width=60, height=20) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), "white").save(buffer, format="PNG")
    return buffer.getvalue()


def make_imagefolder(root, rows_per_split, extra_rows=()):
    for split, count in rows_per_split.items():
        folder = root / split
        folder.mkdir(parents=True)
        rows = []
        for i in range(count):
            name = f"{i:03d}.png"
            (folder / name).write_bytes(png_bytes(40 + i, 20))
            rows.append({"file_name": name, "text": WORDS[i % len(WORDS)], "class": "word" if i % 3 else "char"})
        if split == "train":
            rows.extend(extra_rows)
        (folder / "metadata.jsonl").write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows),
                                               encoding="utf-8")
    return root


def test_imagefolder_with_splits_and_counted_skips(tmp_path):
    root = make_imagefolder(tmp_path / "ds", {"train": 12, "val": 3, "test": 2}, extra_rows=[
        {"file_name": "missing.png", "text": "কলম"},
        {"file_name": "000.png", "text": "   "},
    ])
    (root / "train" / "zero.png").write_bytes(b"")
    with (root / "train" / "metadata.jsonl").open("a", encoding="utf-8") as handle:
        handle.write("\n" + json.dumps({"file_name": "zero.png", "text": "ঘর"}))
    splits = load_splits(DataConfig(source=str(root)))
    assert (len(splits.train), len(splits.val), len(splits.test)) == (12, 3, 2)
    assert splits.skipped.total == 3
    assert dict(splits.skipped.counts) == {"missing image file": 1, "empty label": 1, "empty image file": 1}
    assert "skipped 3 sample(s)" in splits.skipped.summary()
    assert open_image(splits.train[0]).mode == "RGB"


def test_class_filter_samples_per_class_and_seeded_split(tmp_path):
    root = make_imagefolder(tmp_path / "ds", {"train": 30})
    (root / "train").rename(root / "all")
    (root / "all" / "metadata.jsonl").rename(root / "metadata.jsonl")
    for png in (root / "all").glob("*.png"):
        png.rename(root / png.name)
    cfg = DataConfig(source=str(root), classes=["word"], samples_per_class=10, val_fraction=0.2,
                     test_fraction=0.1, split_seed=3)
    first, again = load_splits(cfg), load_splits(cfg)
    assert [r.id for r in first.train] == [r.id for r in again.train]
    assert [r.id for r in first.val] == [r.id for r in again.val]
    assert len(first.train) + len(first.val) + len(first.test) == 10
    assert (len(first.val), len(first.test)) == (2, 1)
    assert all(r.cls == "word" for r in first.train + first.val + first.test)
    other = load_splits(DataConfig(source=str(root), classes=["word"], samples_per_class=10, val_fraction=0.2,
                                   test_fraction=0.1, split_seed=4))
    assert {r.id for r in other.val} != {r.id for r in first.val} or {r.id for r in other.train} != {
        r.id for r in first.train}
    with pytest.raises(UserError, match="match no sample"):
        load_splits(DataConfig(source=str(root), classes=["line"]))


def test_manifest_jsonl_and_csv(tmp_path):
    (tmp_path / "img").mkdir()
    lines, csv_lines = [], ["path,label"]
    for i, word in enumerate(WORDS[:6]):
        (tmp_path / "img" / f"{i}.png").write_bytes(png_bytes())
        lines.append(json.dumps({"image": f"img/{i}.png", "text": word}, ensure_ascii=False))
        csv_lines.append(f"img/{i}.png,{word}")
    (tmp_path / "m.jsonl").write_text("\n".join(lines), encoding="utf-8")
    (tmp_path / "m.csv").write_text("\n".join(csv_lines), encoding="utf-8")
    jsonl = load_splits(DataConfig(source=str(tmp_path / "m.jsonl"), val_fraction=0, test_fraction=0))
    assert [r.text for r in jsonl.train] == WORDS[:6]
    csv_splits = load_splits(DataConfig(source=str(tmp_path / "m.csv"), image_column="path", text_column="label",
                                        val_fraction=0, test_fraction=0))
    assert [r.text for r in csv_splits.train] == WORDS[:6]
    recognised = load_splits(DataConfig(source=str(tmp_path / "m.csv"), val_fraction=0, test_fraction=0))
    assert [(r.id, r.text) for r in recognised.train] == [(f"img/{i}.png", w) for i, w in enumerate(WORDS[:6])]
    with pytest.raises(UserError, match=r"m.csv: no 'caption' column \(columns: path, label\); set data.text_column"):
        load_splits(DataConfig(source=str(tmp_path / "m.csv"), text_column="caption"))


def test_bad_manifest_lines_are_counted_a_file_without_rows_is_one_error(tmp_path):
    (tmp_path / "a.png").write_bytes(png_bytes())
    (tmp_path / "m.jsonl").write_text('{"image": "a.png", "text": "ক"}\nnot json\n[1, 2]\n', encoding="utf-8")
    splits = load_splits(DataConfig(source=str(tmp_path / "m.jsonl"), val_fraction=0, test_fraction=0))
    assert len(splits.train) == 1
    assert splits.skipped.examples == {"malformed manifest line": ["m.jsonl:2", "m.jsonl:3"]}
    (tmp_path / "words.jsonl").write_text("file_name,text\na.png,ক\n", encoding="utf-8")  # CSV named .jsonl
    with pytest.raises(UserError, match=r"words.jsonl: no line is a valid row \(line 1: not valid JSON\)"):
        load_splits(DataConfig(source=str(tmp_path / "words.jsonl")))


def test_csv_manifest_bad_lines_bom_and_quoting(tmp_path):
    for name in ("a.png", "b.png", "c.png"):
        (tmp_path / name).write_bytes(png_bytes())
    text = ("\ufefffile_name,text\n"            # a byte-order mark (Excel) before the header
            "a.png,\"কলম, খাতা\"\n"           # a quoted comma
            "b.png,ক,extra\n"                   # one field too many
            "c.png\n"                           # one field too few
            + "x" * 200_000 + ",ক\n"            # a field over csv's size limit: csv refuses the line
            "nul\x00.png,ক\n"                  # a NUL byte in a path
            "c.png,\"দুই\nলাইন\"\n")           # a quoted line break inside the label
    (tmp_path / "m.csv").write_text(text, encoding="utf-8")
    splits = load_splits(DataConfig(source=str(tmp_path / "m.csv"), val_fraction=0, test_fraction=0))
    assert [(r.id, r.text) for r in splits.train] == [("a.png", "কলম, খাতা"), ("c.png", "দুই লাইন")]
    assert splits.skipped.counts == {"malformed manifest line": 3, "invalid image path": 1}
    assert splits.skipped.examples["malformed manifest line"] == ["m.csv:3", "m.csv:4", "m.csv:5"]
    (tmp_path / "latin1.csv").write_bytes("file_name,text\ncafé.png,x\n".encode("latin-1"))
    with pytest.raises(UserError, match="not UTF-8 text"):
        load_splits(DataConfig(source=str(tmp_path / "latin1.csv")))


def test_a_column_missing_from_some_rows_skips_them_from_all_is_one_error(tmp_path):
    (tmp_path / "a.png").write_bytes(png_bytes())
    (tmp_path / "b.png").write_bytes(png_bytes())
    (tmp_path / "m.jsonl").write_text('{"image": "a.png", "text": "ক"}\n{"image": "b.png"}\n', encoding="utf-8")
    splits = load_splits(DataConfig(source=str(tmp_path / "m.jsonl"), val_fraction=0, test_fraction=0))
    assert len(splits.train) == 1 and splits.skipped.counts == {"empty label": 1}
    (tmp_path / "n.jsonl").write_text('{"picture": "a.png", "text": "ক"}\n', encoding="utf-8")
    with pytest.raises(UserError, match=r"n.jsonl: no image column \(looked for file_name, filename, image, image_id, "
                                        r"path, file; columns: picture, text\); set data.image_column=NAME"):
        load_splits(DataConfig(source=str(tmp_path / "n.jsonl")))


def test_root_metadata_of_an_imagefolder_is_confined_too(tmp_path):
    root = tmp_path / "ds"
    root.mkdir()
    (tmp_path / "secret.png").write_bytes(png_bytes())
    (root / "a.png").write_bytes(png_bytes())
    rows = [{"file_name": "a.png", "text": "ক"}, {"file_name": "../secret.png", "text": "খ"}]
    (root / "metadata.csv").write_text("file_name,text\n" + "".join(f"{r['file_name']},{r['text']}\n" for r in rows),
                                       encoding="utf-8")
    splits = load_splits(DataConfig(source=str(root), val_fraction=0, test_fraction=0))
    assert [r.id for r in splits.train] == ["a.png"]
    assert splits.skipped.counts == {"image path outside its folder": 1}


def test_a_test_only_folder_loads_for_evaluation_and_refuses_training(tmp_path):
    root = make_imagefolder(tmp_path / "ds", {"test": 5})
    splits = load_splits(DataConfig(source=str(root)))
    assert len(splits.test) == 5 and splits.val == [] and splits.split("test") == splits.test
    with pytest.raises(UserError, match=r"data.split 'train' not found in .* \(splits: test\)"):
        splits.split("train")
    broken = make_imagefolder(tmp_path / "broken", {"train": 2, "test": 3})
    for png in (broken / "train").glob("*.png"):
        png.write_bytes(b"")
    splits = load_splits(DataConfig(source=str(broken)))
    assert len(splits.test) == 3
    with pytest.raises(UserError, match="no usable training samples"):
        _ = splits.train
    (tmp_path / "nothing" / "test").mkdir(parents=True)
    (tmp_path / "nothing" / "test" / "metadata.jsonl").write_text("", encoding="utf-8")
    with pytest.raises(UserError, match="data.split 'train' not found"):
        load_splits(DataConfig(source=str(tmp_path / "nothing")))


def _arrow_dataset(n=10):
    import datasets

    rows = {"image": [{"bytes": png_bytes(30 + i, 16), "path": None} for i in range(n)],
            "text": [WORDS[i % len(WORDS)] for i in range(n)],
            "class": ["word" if i % 2 else "char" for i in range(n)]}
    rows["image"][1] = {"bytes": b"", "path": None}  # decoded only when used: counted by its reader
    rows["text"][2] = ""
    features = datasets.Features({"image": datasets.Image(), "text": datasets.Value("string"),
                                  "class": datasets.Value("string")})
    return datasets.Dataset.from_dict(rows, features=features)


def test_saved_dataset_keeps_images_lazy(tmp_path):
    _arrow_dataset().save_to_disk(str(tmp_path / "saved"))
    splits = load_splits(DataConfig(source=str(tmp_path / "saved"), classes=["word"], val_fraction=0,
                                    test_fraction=0))
    assert len(splits.train) == 5 and splits.skipped.counts["empty label"] == 1  # counted before filtering
    record = next(r for r in splits.train if r.id == "train#3")
    assert image_size(record) == (33, 16)
    with pytest.raises(UnreadableImage):
        open_image(next(r for r in splits.train if r.id == "train#1"))


def test_load_dataset_path_counts_empty_labels(tmp_path):
    """The same `datasets.load_dataset` call a hub id takes, on a local parquet folder."""
    folder = tmp_path / "parquet"
    folder.mkdir()
    _arrow_dataset().to_parquet(str(folder / "train-00000.parquet"))
    splits = load_splits(DataConfig(source=str(folder), val_fraction=0.2, test_fraction=0.2))
    assert splits.skipped.counts["empty label"] == 1
    assert len(splits.train) + len(splits.val) + len(splits.test) == 9


def test_unreachable_hub_id_is_one_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError, match="cannot load data set 'nobody/no-such-dataset'"):
        load_splits(DataConfig(source="nobody/no-such-dataset"))


def test_missing_local_source(tmp_path, monkeypatch):
    with pytest.raises(UserError, match="not found"):
        load_splits(DataConfig(source="./no/such/folder"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    with pytest.raises(UserError, match="^data source not found: data/words$"):  # a typo, not a hub id
        load_splits(DataConfig(source="data/words"))


@pytest.mark.parametrize(("payload", "reason"), [
    (b"", "empty file"),
    (b"this is text, not an image", "not a readable image"),
    (png_bytes()[:40], "not a readable image"),
])
def test_open_image_rejects_corrupt_files(tmp_path, payload, reason):
    path = tmp_path / "bad.png"
    path.write_bytes(payload)
    with pytest.raises(UnreadableImage, match=reason):
        open_image(Record(id="bad", text="ক", image=str(path)))


def test_synth_source_is_rendered_once_then_reused(tmp_path):
    cfg = DataConfig(source="synth")
    cfg = type(cfg)(source="synth", synth=type(cfg.synth)(n=20, seed=5))
    resolved = resolve_source(cfg, tmp_path)
    assert resolved.source.endswith("synth-20-5")
    marker = (tmp_path / "synth-20-5" / "synth.json").stat().st_mtime_ns
    assert resolve_source(cfg, tmp_path).source == resolved.source
    assert (tmp_path / "synth-20-5" / "synth.json").stat().st_mtime_ns == marker
    splits = load_splits(resolved)
    assert len(splits.train) == 16 and len(splits.val) == 2 and len(splits.test) == 2


def test_synth_source_with_other_fonts_or_clean_is_not_reused(tmp_path):
    from banglaocr.config import SynthConfig

    chosen = DataConfig(source="synth", synth=SynthConfig(n=10, seed=5, fonts=["Mina-Bold", "Lohit-Bengali"]))
    resolved = resolve_source(chosen, tmp_path)
    rows = (Path(resolved.source) / "train" / "metadata.jsonl").read_text(encoding="utf-8").splitlines()
    assert {json.loads(row)["font"] for row in rows} == {"Mina-Bold", "Lohit-Bengali"}
    # the same fonts in another order: the same data set
    reordered = DataConfig(source="synth", synth=SynthConfig(n=10, seed=5, fonts=["Lohit-Bengali", "Mina-Bold"]))
    assert resolve_source(reordered, tmp_path).source == resolved.source
    for other in (SynthConfig(n=10, seed=5), SynthConfig(n=10, seed=5, fonts=["Mina-Bold"]),
                  SynthConfig(n=10, seed=5, fonts=["Mina-Bold", "Lohit-Bengali"], clean=True)):
        with pytest.raises(UserError, match="rendered with other settings"):
            resolve_source(DataConfig(source="synth", synth=other), tmp_path)


def test_synth_source_with_another_hand_is_not_reused(tmp_path):
    from banglaocr.config import HandConfig, SynthConfig

    written = DataConfig(source="synth", synth=SynthConfig(n=10, seed=5, hand=HandConfig(slant=-0.3)))
    assert resolve_source(written, tmp_path).source == resolve_source(written, tmp_path).source
    for other in (SynthConfig(n=10, seed=5), SynthConfig(n=10, seed=5, hand=HandConfig(slant=-0.3, pen=1))):
        with pytest.raises(UserError, match="rendered with other settings"):
            resolve_source(DataConfig(source="synth", synth=other), tmp_path)


# --------------------------------------------------------------------------- a hub data set id, hub unreachable


def _cache_hub_dataset(hf_home: Path, repo: str) -> None:
    """`repo` laid out in `hf_home`'s datasets cache as a download leaves it (what a later offline load reads)."""
    import datasets

    cache = hf_home / "datasets"
    parquet = hf_home / "words.parquet"
    _arrow_dataset(4).to_parquet(str(parquet))
    datasets.load_dataset("parquet", data_files={"train": str(parquet)}, cache_dir=str(cache))
    built = next(p for p in (cache / "parquet").glob("*/*/*") if p.is_dir())
    target = cache / repo.replace("/", "___") / "default" / "0.0.0" / built.name
    target.mkdir(parents=True)
    for path in built.iterdir():
        shutil.copy(path, target / path.name.replace("parquet-", f"{repo.split('/')[1]}-"))


@pytest.mark.parametrize("cached", [False, True], ids=["not cached", "cached"])
def test_a_hub_data_set_id_with_the_hub_unreachable_is_one_line_within_seconds(tmp_path, cached):
    from test_hub import closed_port, online_env

    env = {**online_env(tmp_path, f"http://127.0.0.1:{closed_port()}"), "OMP_NUM_THREADS": "1"}
    if cached:
        _cache_hub_dataset(tmp_path / "hf", "someone/words")
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "banglaocr", "eval", "--model", "tiny", "--dataset",
                             "someone/words", "--split", "all", "--out", str(tmp_path / "e")],
                            capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    seconds = time.perf_counter() - start
    assert "Retry" not in result.stderr and "thrown while requesting" not in result.stderr, result.stderr
    if cached:  # read from the cache without asking the hub
        assert result.returncode == 0, result.stderr
        summary = json.loads((tmp_path / "e" / "summary.json").read_text(encoding="utf-8"))
        assert summary["n"] + summary["unreadable_images"] == 3  # 4 rows, 1 with an empty label
    else:
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert result.returncode == 2 and len(lines) == 1, result.stderr
        assert "cannot load data set 'someone/words'" in lines[0] and "unreachable" in lines[0]
        assert "HF_HUB_OFFLINE=1" in lines[0]
    assert seconds < 15, f"{seconds:.1f} s"
