"""`banglaocr predict` and `banglaocr eval` on a tiny trained model, and `load_for_inference`'s model resolution.

One tiny training run (module fixture) gives a training output folder (best/, final/, full
model folders); an untrained LoRA adapter folder over the same tiny base (saved in its
`base/`) covers adapters. Images are small (32 px high) so 300 of them read in a few seconds.
"""

from __future__ import annotations

import csv
import io
import json
import random
import shutil
from pathlib import Path

import jiwer
import pytest
from fake_readers import texts_only
from PIL import Image, ImageDraw
from typer.testing import CliRunner

import train_helpers as helpers
from banglaocr.cli import app
from banglaocr.errors import UserError
from banglaocr.text import normalize

runner = CliRunner()


def invoke(*args: str, input: str | None = None):
    with helpers.one_thread():
        return runner.invoke(app, list(args), input=input)


def _word_image(rng: random.Random) -> Image.Image:
    """A small ink-on-paper image of random width (a few dark strokes), like a word crop."""
    width = rng.choice([40, 64, 96, 128, 160])
    image = Image.new("L", (width, 32), 255)
    draw = ImageDraw.Draw(image)
    for _ in range(rng.randint(2, 5)):
        x = rng.randint(2, width - 10)
        draw.rectangle([x, rng.randint(4, 12), x + rng.randint(3, 8), rng.randint(18, 28)], fill=0)
    return image


def write_images(folder: Path, count: int, seed: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    paths = []
    for index in range(count):
        path = folder / f"img{index:03d}.png"
        _word_image(rng).save(path)
        paths.append(path)
    return paths


def corrupt(paths: list[Path]) -> None:
    """Three ways an image file is broken: truncated PNG, zero bytes, a text file named .png."""
    truncated, empty, text = paths
    data = truncated.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    empty.write_bytes(b"")
    text.write_text("this is not an image\n", encoding="utf-8")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A finished tiny training run: recipe.yaml, best/, final/ (full model folders)."""
    out = tmp_path_factory.mktemp("infer") / "run"
    summary = helpers.train(out, "train.max_steps=4")
    assert (out / "best" / "config.json").is_file() and summary["steps"] == 4
    return out


@pytest.fixture(scope="module")
def adapter_dir(run_dir):
    """An (untrained) LoRA adapter folder over the tiny base, with the run's read settings."""
    import torch

    from banglaocr.config import LoraConfig
    from banglaocr.infer import load_read_settings, save_read_settings
    from banglaocr.model.factory import load_model, save_model_folder

    torch.manual_seed(0)
    loaded = load_model(helpers.tiny_recipe().model, LoraConfig(r=4, dropout=0.0))
    folder = run_dir.parent / "adapter"
    save_model_folder(loaded, folder)
    save_read_settings(folder, load_read_settings(run_dir / "best"))
    assert (folder / "adapter_config.json").is_file() and (folder / "base" / "config.json").is_file()
    return folder


@pytest.fixture(scope="module")
def dataset_dir(run_dir):
    return helpers.synth_dir()


# --------------------------------------------------------------------------- model resolution


def test_resolve_model_finds_the_folder_to_load(run_dir, tmp_path):
    from banglaocr.infer import resolve_model

    assert resolve_model(str(run_dir)) == str(run_dir / "best")
    assert resolve_model(str(run_dir / "final")) == str(run_dir / "final")
    # a run without best/ (no validation split) means its final/
    no_best = tmp_path / "no-best"
    no_best.mkdir()
    shutil.copy(run_dir / "recipe.yaml", no_best / "recipe.yaml")
    (no_best / "final").symlink_to(run_dir / "final")
    assert resolve_model(str(no_best)) == str(no_best / "final")
    # a checkpoint folder means its model/
    step = next((run_dir / "checkpoints").glob("step-*"))
    assert resolve_model(str(step)) == str(step / "model")
    assert resolve_model("Qwen/Qwen3-VL-2B-Instruct") == "Qwen/Qwen3-VL-2B-Instruct"


def test_not_a_model_folder_and_unfinished_runs_are_user_errors(run_dir, tmp_path):
    from banglaocr.infer import load_for_inference, resolve_model

    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="not a model folder"):
        resolve_model(str(tmp_path / "empty"))
    unfinished = tmp_path / "unfinished"
    shutil.copytree(run_dir / "checkpoints", unfinished / "checkpoints")
    shutil.copy(run_dir / "recipe.yaml", unfinished / "recipe.yaml")
    with pytest.raises(UserError, match="no best/ or final/ model yet; the newest checkpoint"):
        resolve_model(str(unfinished))
    with pytest.raises(UserError, match="model folder not found"):
        resolve_model(str(tmp_path / "missing"))
    with pytest.raises(UserError, match="is a file"):
        resolve_model(str(run_dir / "recipe.yaml"))
    with pytest.raises(UserError, match="not an adapter folder"):
        load_for_inference(str(run_dir), adapter=str(run_dir / "final"))
    with pytest.raises(UserError, match="precision must be one of"):
        load_for_inference(str(run_dir), precision="fp8")


def test_load_for_inference_reads_settings_and_freezes(run_dir, adapter_dir):
    import torch

    from banglaocr.infer import load_for_inference, load_read_settings

    loaded, settings = load_for_inference(str(run_dir))
    assert settings == load_read_settings(run_dir / "best")
    assert not loaded.model.training and not any(p.requires_grad for p in loaded.model.parameters())
    assert next(loaded.model.parameters()).dtype == torch.float32  # CPU, precision auto

    on_base, settings = load_for_inference(str(adapter_dir / "base"), adapter=str(adapter_dir), precision="bf16")
    assert on_base.is_peft and settings == load_read_settings(adapter_dir)
    assert next(on_base.model.parameters()).dtype == torch.bfloat16


def test_read_images_keeps_input_order_across_chunks_and_errors(monkeypatch, tmp_path):
    """Readings come back in input order whatever the chunking; failed images sit in their place."""
    import banglaocr.infer as infer

    paths = write_images(tmp_path, 9)
    corrupt([paths[1], paths[4], paths[8]])
    # Stand-in for the model: "reads" each image as its width, in whatever order it is given.
    monkeypatch.setattr(infer, "generate_readings", texts_only(
                        lambda model, tokenizer, images, settings, **kw: [str(im.width) for im in images]))
    done = []
    readings = list(infer.read_images(None, None, paths, infer.default_read_settings(), chunk_size=4,
                                      on_batch=done.append))
    assert [r.source for r in readings] == paths
    assert [r.error is not None for r in readings] == [i in (1, 4, 8) for i in range(9)]
    geometry = infer.default_read_settings().image
    for reading in readings:
        if reading.error is None:  # the model is shown each image resized for it
            assert reading.text == str(infer.resize_for_model(Image.open(reading.source), geometry).width)
    assert sum(done) == 3  # the fake never reports batches: only the failed images were counted


def test_read_images_marks_blank_images_without_asking_the_model(monkeypatch):
    """No ink -> an empty, blank Reading; light ink on dark paper is not blank; the model sees only the rest."""
    import banglaocr.infer as infer

    word = _word_image(random.Random(0))
    inverted = Image.eval(word, lambda v: 255 - v)
    sources = [Image.new("RGB", (64, 32), "white"), word, Image.new("L", (1, 1), 0), inverted,
               Image.new("RGB", (200, 40), (90, 90, 90))]
    shown = []
    monkeypatch.setattr(infer, "generate_readings", texts_only(
                        lambda model, tokenizer, images, settings, **kw: shown.extend(images) or ["ক"] * len(images)))
    done = []
    readings = list(infer.read_images(None, None, sources, infer.default_read_settings(), on_batch=done.append))
    assert [(r.text, r.blank) for r in readings] == [("", True), ("ক", False), ("", True), ("ক", False), ("", True)]
    assert len(shown) == 2 and sum(done) == 3  # the fake reports no batches: only the three blanks were counted


# --------------------------------------------------------------------------- predict


def test_predict_300_images_3_corrupt(run_dir, tmp_path):
    """300 inputs in a shuffled order -> 300 rows in that order, exactly the 3 corrupt ones as errors."""
    paths = write_images(tmp_path / "imgs", 300)
    broken = [paths[7], paths[150], paths[299]]
    corrupt(broken)
    order = list(paths)
    random.Random(1).shuffle(order)  # input order is neither file-name nor width order
    result = invoke("predict", "--model", str(run_dir), "--format", "jsonl", "--batch-size", "32",
                    *map(str, order))
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [row["file"] for row in rows] == [str(p) for p in order]
    errors = {row["file"] for row in rows if "error" in row}
    assert errors == {str(p) for p in broken}
    assert all(isinstance(row.get("prediction"), str) for row in rows if "error" not in row)
    assert "3 of 300" in result.stderr


def test_predict_formats_and_out_file(run_dir, tmp_path):
    paths = write_images(tmp_path / "imgs", 4)
    corrupt_file = tmp_path / "imgs" / "bad.png"
    corrupt_file.write_bytes(b"")
    inputs = [str(p) for p in paths] + [str(corrupt_file)]

    text = invoke("predict", "--model", str(run_dir), *inputs)
    assert text.exit_code == 1
    lines = text.stdout.splitlines()
    # file, prediction, confidence; an error row has no confidence
    assert len(lines) == 5 and all(line.count("\t") == 2 for line in lines[:4])
    assert all(0.0 <= float(line.split("\t")[2]) <= 1.0 for line in lines[:4])
    assert lines[-1] == f"{corrupt_file}\tERROR: empty file"

    out = tmp_path / "out" / "rows.csv"  # format from the suffix
    result = invoke("predict", "--model", str(run_dir), *inputs, "--out", str(out))
    assert result.exit_code == 1 and result.stdout == ""
    table = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert [row["file"] for row in table] == inputs
    assert [bool(row["error"]) for row in table] == [False] * 4 + [True]
    assert [row["prediction"] for row in table[:4]] == [line.split("\t")[1] for line in lines[:4]]
    assert [row["confidence"] for row in table[:4]] == [line.split("\t")[2] for line in lines[:4]]
    assert table[4]["confidence"] == "" and all(row["flagged"] == "" for row in table)
    # --out and its marker (banglaocr wrote it: a rerun may replace it, --resume may continue it) are all.
    assert sorted(p.name for p in out.parent.iterdir()) == ["rows.csv", "rows.csv.banglaocr.json"]

    good = invoke("predict", "--model", str(run_dir), "--format", "jsonl", *inputs[:2])
    assert good.exit_code == 0
    assert [json.loads(line)["file"] for line in good.stdout.splitlines()] == inputs[:2]


def test_predict_folder_glob_and_stdin_inputs(run_dir, tmp_path):
    paths = write_images(tmp_path / "scans" / "a", 3, seed=1) + write_images(tmp_path / "scans" / "b", 2, seed=2)
    (tmp_path / "scans" / "notes.txt").write_text("not an image", encoding="utf-8")  # skipped: not an image suffix
    (tmp_path / "empty").mkdir()
    stdin = f"{paths[0]}\n\n{paths[4]}\n"
    result = invoke("predict", "--model", str(run_dir), "--format", "jsonl", str(tmp_path / "scans"),
                    str(tmp_path / "scans" / "*" / "img00[01].png"), "-", str(tmp_path / "nope.png"),
                    str(tmp_path / "empty"), input=stdin)
    assert result.exit_code == 1 and "Traceback" not in result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    folder = sorted(str(p) for p in paths)
    globbed = sorted(str(p) for p in paths if p.name in ("img000.png", "img001.png"))
    assert [row["file"] for row in rows] == folder + globbed + [str(paths[0]), str(paths[4]),
                                                             str(tmp_path / "nope.png"), str(tmp_path / "empty")]
    assert [row["file"] for row in rows if "error" in row] == [str(tmp_path / "nope.png"), str(tmp_path / "empty")]


def test_predict_user_errors_are_one_line(run_dir, tmp_path):
    image = write_images(tmp_path, 1)[0]
    for args in (["--model", str(tmp_path / "missing-model"), str(image)],
                 ["--model", str(run_dir), str(image), "--format", "xml"],
                 ["--model", str(run_dir), str(image), "--out", str(tmp_path)]):
        result = invoke("predict", *args)
        assert result.exit_code == 2, result.output
        assert result.output.strip().count("\n") == 0 and "Traceback" not in result.output


# --------------------------------------------------------------------------- eval


def test_eval_corpus_cer_equals_jiwer(run_dir, dataset_dir, tmp_path):
    out = tmp_path / "eval"
    result = invoke("eval", "--model", str(run_dir), "--dataset", str(dataset_dir), "--split", "all",
                    "--batch-size", "32", "--out", str(out), "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary == json.loads((out / "summary.json").read_text(encoding="utf-8"))
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(rows) == summary["n"] == 64 and set(rows[0]) == {"id", "reference", "prediction", "cer", "confidence"}
    assert rows[0]["id"].endswith(".png")  # image folders: the file name
    references = [normalize(r["reference"]) for r in rows]
    predictions = [normalize(r["prediction"]) for r in rows]
    assert summary["cer"] == pytest.approx(jiwer.cer(references, predictions), abs=1e-12)
    assert summary["wer"] == pytest.approx(jiwer.wer(references, predictions), abs=1e-12)
    assert summary["mean_cer"] == pytest.approx(sum(r["cer"] for r in rows) / len(rows))
    assert summary["unreadable_images"] == 0 and summary["images_per_s"] > 0


@pytest.mark.parametrize("kind", ["training output", "full folder", "adapter folder", "base + --adapter"])
def test_eval_loads_every_kind_of_model_folder(kind, run_dir, adapter_dir, dataset_dir):
    model, extra = {
        "training output": (run_dir, []),
        "full folder": (run_dir / "final", []),
        "adapter folder": (adapter_dir, []),
        "base + --adapter": (adapter_dir / "base", ["--adapter", str(adapter_dir)]),
    }[kind]
    result = invoke("eval", "--model", str(model), *extra, "--dataset", str(dataset_dir), "--max-samples", "4")
    assert result.exit_code == 0, result.output
    assert "CER (corpus" in result.stdout and "worst 4 samples" in result.stdout
    # default output folder: eval-test inside the folder evaluated (the adapter's with --adapter)
    out = (adapter_dir if extra else model) / "eval-test"
    assert json.loads((out / "summary.json").read_text(encoding="utf-8"))["n"] == 4


def test_eval_counts_unreadable_images_and_uses_a_recipe(run_dir, dataset_dir, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(dataset_dir / "test", data / "test")
    shutil.copytree(dataset_dir / "train", data / "train")
    names = sorted(p.name for p in (data / "test").glob("*.png"))
    corrupt([data / "test" / names[0], data / "test" / names[1], data / "test" / names[2]])
    result = invoke("eval", "--model", str(run_dir), "--dataset", str(data), "--out", str(tmp_path / "e"))
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "e" / "summary.json").read_text(encoding="utf-8"))
    # the zero-byte file is skipped (and counted) by the loader, the other two when decoded
    assert summary["unreadable_images"] == 2 and summary["skipped_at_load"] == 1
    assert summary["n"] == len(names) - 3
    assert "skipped 2 sample(s)" in result.stderr

    recipe = invoke("eval", "--model", str(run_dir), "--recipe", str(run_dir / "recipe.yaml"), "--split", "val",
                    "--out", str(tmp_path / "r"), "--json")
    assert recipe.exit_code == 0, recipe.output
    assert json.loads(recipe.stdout)["batch_size"] == 8  # the recipe's eval.batch_size


def test_eval_user_errors_are_one_line_exit_2(run_dir, dataset_dir, tmp_path):
    for args in (["--model", str(tmp_path / "no-such-model"), "--dataset", str(dataset_dir)],
                 ["--model", str(run_dir)],
                 ["--model", str(run_dir), "--dataset", str(dataset_dir), "--split", "dev"]):
        result = invoke("eval", *args)
        assert result.exit_code == 2, result.output
        assert result.output.strip().count("\n") == 0 and "Traceback" not in result.output
    missing = invoke("eval", "--model", str(tmp_path / "no-such-model"), "--dataset", str(dataset_dir))
    assert "model folder not found" in missing.output


def test_eval_classes_filter_with_dataset(run_dir, dataset_dir, tmp_path):
    """--classes keeps only those classes of a --dataset (as a recipe's data.classes does)."""
    train_rows = [json.loads(line) for line in (dataset_dir / "train" / "metadata.jsonl").read_text(
        encoding="utf-8").splitlines()][:6]
    manifest = tmp_path / "classes.jsonl"
    manifest.write_text("".join(json.dumps({"image": str(dataset_dir / "train" / row["file_name"]),
                                            "text": row["text"], "class": "word" if i % 3 else "char"},
                                           ensure_ascii=False) + "\n" for i, row in enumerate(train_rows)),
                        encoding="utf-8")
    result = invoke("eval", "--model", str(run_dir), "--dataset", str(manifest), "--classes", "word",
                    "--split", "all", "--out", str(tmp_path / "out"), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["n"] == 4
    result = invoke("eval", "--model", str(run_dir), "--recipe", str(run_dir / "recipe.yaml"), "--classes", "word")
    assert result.exit_code == 2 and "--classes goes with --dataset" in result.output


# --------------------------------------------------------------------------- what other readers need


def test_adapter_folder_carries_a_greedy_generation_config(adapter_dir):
    """save_read_settings writes generation_config.json into adapter folders too (from the folder's own
    tokenizer when none is passed): peft would otherwise use the base's, which may sample."""
    from transformers import AutoTokenizer, GenerationConfig

    from banglaocr.infer import generation_config, load_read_settings

    saved = GenerationConfig.from_pretrained(adapter_dir)
    tokenizer = AutoTokenizer.from_pretrained(str(adapter_dir))
    expected = generation_config(tokenizer, load_read_settings(adapter_dir).max_new_tokens)
    assert saved.to_diff_dict() == expected.to_diff_dict()
    assert (saved.do_sample, saved.num_beams, saved.eos_token_id) == (False, 1, tokenizer.convert_tokens_to_ids(
        "<|im_end|>"))


def test_prepare_image_gives_the_pixels_and_chat_banglaocr_reads_with(run_dir, tmp_path):
    import banglaocr
    from banglaocr.config import ModelConfig
    from banglaocr.data.pixels import resize_to_budget
    from banglaocr.data.sources import open_image
    from banglaocr.infer import load_read_settings
    from banglaocr.model.factory import load_model

    path = write_images(tmp_path, 1)[0]
    prepared = banglaocr.prepare_image(path, str(run_dir))  # a training output folder: its best/
    settings = load_read_settings(run_dir / "best")
    expected = resize_to_budget(open_image(str(path)), settings.image)
    assert prepared.image.tobytes() == expected.tobytes() and prepared.image.size == expected.size
    assert (prepared.prompt, prepared.max_new_tokens, prepared.blank) == (settings.prompt, settings.max_new_tokens,
                                                                          False)
    # The chat messages, through the folder's own chat template, are banglaocr's generation prompt.
    tokenizer = load_model(ModelConfig(name_or_path=str(run_dir / "best")), None).tokenizer
    templated = tokenizer.apply_chat_template(prepared.messages, add_generation_prompt=True, tokenize=False)
    assert templated == prepared.chat_text(tokenizer)
    assert banglaocr.prepare_image(Image.new("RGB", (50, 20), "white"), "tiny").blank
    with pytest.raises(UserError, match="cannot read .*no such file"):
        banglaocr.prepare_image(tmp_path / "missing.png", "tiny")


@pytest.fixture(scope="module")
def foreign_base(run_dir) -> Path:
    """A tiny model folder banglaocr did not train: no banglaocr.json, its own preprocessor_config.json
    (pixel limits 2048..16384, as a hub base states its own)."""
    import torch

    from banglaocr.model.factory import load_model, save_model_folder

    torch.manual_seed(0)
    folder = run_dir.parent / "foreign-base"
    save_model_folder(load_model(helpers.tiny_recipe().model, None), folder)
    (folder / "preprocessor_config.json").write_text(json.dumps(
        {"image_processor_type": "Qwen2VLImageProcessor", "patch_size": 16, "merge_size": 2,
         "temporal_patch_size": 2, "size": {"shortest_edge": 2048, "longest_edge": 16384}}), encoding="utf-8")
    assert not (folder / "banglaocr.json").exists()
    return folder


def test_eval_reads_a_base_without_banglaocr_json_by_its_own_preprocessing(foreign_base, dataset_dir, tmp_path,
                                                                          monkeypatch):
    import banglaocr.infer as infer
    from banglaocr.data.pixels import QwenResize

    shown, original = [], infer.resize_for_model
    monkeypatch.setattr(infer, "resize_for_model",
                        lambda image, geometry: shown.append((image.size, original(image, geometry).size))
                        or original(image, geometry))
    result = invoke("eval", "--model", str(foreign_base), "--dataset", str(dataset_dir), "--split", "all",
                    "--max-samples", "12", "--out", str(tmp_path / "own"))
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "own" / "summary.json").read_text(encoding="utf-8"))
    assert summary["geometry"]["kind"] == "qwen_smart_resize"
    assert (summary["geometry"]["min_pixels"], summary["geometry"]["max_pixels"]) == (2048, 16384)
    assert "preprocessor_config.json of" in summary["geometry"]["from"]
    assert result.stdout.startswith("images: Qwen's own smart_resize, 2,048 to 16,384 pixels")
    # every image was shown at smart_resize's size of the raw crop: heights vary, batches still work
    geometry = QwenResize(2048, 16384)
    assert len(shown) == 12 and all(size == geometry.size(raw[1], raw[0])[::-1] for raw, size in shown)
    assert len({size[1] for _, size in shown}) > 1


def test_eval_of_a_base_takes_a_budget_when_the_user_sets_one(foreign_base, run_dir, dataset_dir, tmp_path):
    with_recipe = invoke("eval", "--model", str(foreign_base), "--recipe", str(run_dir / "recipe.yaml"),
                         "--max-samples", "4", "--out", str(tmp_path / "r"), "--json")
    assert with_recipe.exit_code == 0, with_recipe.output
    geometry = json.loads(with_recipe.stdout)["geometry"]
    assert (geometry["kind"], geometry["height"], geometry["max_width"]) == ("budget", 32, 128)
    assert geometry["from"] == f"the budget of the recipe {run_dir / 'recipe.yaml'}"

    overridden = invoke("eval", "--model", str(foreign_base), "--dataset", str(dataset_dir), "--max-samples", "4",
                        "--image", "height=64", "--image", "max_width=256", "--out", str(tmp_path / "o"), "--json")
    assert overridden.exit_code == 0, overridden.output
    geometry = json.loads(overridden.stdout)["geometry"]
    assert (geometry["kind"], geometry["height"], geometry["max_width"]) == ("budget", 64, 256)
    assert "--image height=64 max_width=256" in geometry["from"]

    # a trained model keeps its banglaocr.json over a recipe; and a folder with neither file says so
    trained = invoke("eval", "--model", str(run_dir), "--recipe", str(run_dir / "recipe.yaml"), "--max-samples", "2",
                     "--out", str(tmp_path / "t"), "--json")
    assert json.loads(trained.stdout)["geometry"]["from"] == f"banglaocr.json in {run_dir / 'best'}"
    bare = tmp_path / "bare"
    shutil.copytree(foreign_base, bare)
    (bare / "preprocessor_config.json").unlink()
    default = invoke("eval", "--model", str(bare), "--dataset", str(dataset_dir), "--max-samples", "2",
                     "--out", str(tmp_path / "d"), "--json")
    assert "default budget: no banglaocr.json nor preprocessor_config.json" in json.loads(default.stdout)[
        "geometry"]["from"]

    bad = invoke("eval", "--model", str(foreign_base), "--dataset", str(dataset_dir), "--image", "hieght=64")
    assert bad.exit_code == 2 and "did you mean 'height'" in bad.output and bad.output.strip().count("\n") == 0


# --------------------------------------------------------------------------- non-finite logits


def _poison_first_row(monkeypatch, module):
    """Make `module.load_quietly` return a model whose logits turn NaN for batch row 0 at the 2nd step."""
    original = module.load_quietly

    def loading(*args, **kwargs):
        loaded, settings = original(*args, **kwargs)
        calls = {"n": 0}

        def hook(_, __, output):
            calls["n"] += 1
            if calls["n"] == 2:  # the first batch's second generation step
                output = output.clone()
                output[0, -1, 7] = float("nan")
            return output

        loaded.model.get_output_embeddings().register_forward_hook(hook)
        return loaded, settings

    monkeypatch.setattr(module, "load_quietly", loading)


def _same_width_images(folder: Path, count: int) -> list[Path]:
    """Word-like images of one size, so batch row 0 is the first input (ties keep input order)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        image = Image.new("L", (96, 32), 255)
        ImageDraw.Draw(image).rectangle([6 + 9 * index, 6, 20 + 9 * index, 26], fill=0)
        paths.append(folder / f"w{index}.png")
        image.save(paths[-1])
    return paths


def test_predict_marks_rows_with_non_finite_logits_instead_of_printing_garbage(run_dir, tmp_path, monkeypatch):
    import banglaocr.cli.predict as predict_module
    from banglaocr.infer import NONFINITE_ERROR

    paths = _same_width_images(tmp_path / "imgs", 3)
    clean = invoke("predict", "--model", str(run_dir), *map(str, paths))
    assert clean.exit_code == 0, clean.output
    _poison_first_row(monkeypatch, predict_module)
    result = invoke("predict", "--model", str(run_dir), *map(str, paths))
    assert result.exit_code == 1, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == f"{paths[0]}\tERROR: {NONFINITE_ERROR}"
    assert lines[1:] == clean.stdout.splitlines()[1:]  # the other rows read as before
    assert "1 image(s): non-finite logits" in result.stderr and "Traceback" not in result.output


def test_eval_scores_non_finite_rows_as_empty_and_says_so(run_dir, dataset_dir, tmp_path, monkeypatch):
    import banglaocr.cli.eval as eval_module

    _poison_first_row(monkeypatch, eval_module)
    result = invoke("eval", "--model", str(run_dir), "--dataset", str(dataset_dir), "--split", "all",
                    "--max-samples", "6", "--out", str(tmp_path / "e"))
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "e" / "summary.json").read_text(encoding="utf-8"))
    rows = [json.loads(line) for line in (tmp_path / "e" / "predictions.jsonl").read_text(encoding="utf-8")
            .splitlines()]
    flagged = [row for row in rows if row.get("nonfinite")]
    assert summary["nonfinite_logits"] == len(flagged) == 1 and summary["n"] == 6
    assert flagged[0]["prediction"] == "" and flagged[0]["cer"] == 1.0  # every character a deletion
    assert "1 sample(s): non-finite logits" in result.stderr
    assert "non-finite logits (scored empty)" in result.stdout


def test_reading_batches_have_one_height_and_shares_of_processes_cut_the_same():
    """Under Qwen's own geometry heights vary: each batch holds one height (patchify needs it), widest first;
    a process's share of the batches, given to generate_texts, is cut into exactly those batches again."""
    from banglaocr.data.pixels import QwenResize, model_size
    from banglaocr.infer import reading_batches

    rng = random.Random(5)
    images = [Image.new("RGB", (rng.randint(20, 400), rng.randint(15, 120))) for _ in range(61)]
    geometry = QwenResize(2048, 16384)
    batches = reading_batches(images, geometry, batch_size=4)
    assert sorted(i for batch in batches for i in batch) == list(range(61))
    sizes = [model_size(image.height, image.width, geometry) for image in images]
    assert all(len(batch) <= 4 and len({sizes[i][0] for i in batch}) == 1 for batch in batches)
    assert len({sizes[batch[0]][0] for batch in batches}) > 1
    for world in (2, 3):
        for rank in range(world):
            share = batches[rank::world]
            mine = [i for batch in share for i in batch]
            again = reading_batches([images[i] for i in mine], geometry, batch_size=4)
            assert [[mine[j] for j in batch] for batch in again] == share
