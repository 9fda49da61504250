"""merge-lora: merged == adapter (logits and transcriptions), plain-transformers loading, safe writes, errors.

One tiny LoRA run per module (r=4 on the tiny test model, 300 steps at lr 1e-2: enough that the
adapter changes the logits by ~100x the check's tolerance and reads different images differently;
greedy top-1/top-2 logit gaps stay above 5e-3, far from float noise). Its `best/` adapter is merged
once through the CLI and compared with adapter mode on 20 synthetic word images.

The AutoProcessor test needs a second virtualenv with torchvision (which torch 2.13's CPU build
cannot have beside it): `scripts/setup_interop_venv.sh`, then
`export BANGLAOCR_INTEROP_PYTHON=$PWD/.venv-interop/bin/python`. Without it the test is skipped,
except under CI (`CI` set), where it fails.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import train_helpers as helpers
from banglaocr.cli import app
from interop.venv import clean_env, interop_python as find_interop_python
from banglaocr.errors import UserError

runner = CliRunner()

INTEROP_SCRIPT = Path(__file__).resolve().parent / "interop" / "transcribe_merged.py"
IMAGE_COUNT = 20


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A training output folder with a LoRA adapter (best/) on a tiny random base (best/base/)."""
    out = tmp_path_factory.mktemp("merge") / "run"
    helpers.train(out, "lora.r=4", "lora.alpha=8", "lora.dropout=0.0", "train.max_steps=300",
                  "train.eval_steps=300", "train.save_steps=0", "train.lr=1e-2")
    assert (out / "best" / "adapter_config.json").is_file() and (out / "best" / "base" / "config.json").is_file()
    return out


@pytest.fixture(scope="module")
def image_paths() -> list[Path]:
    paths = sorted(helpers.synth_dir().glob("*/*.png"))[:IMAGE_COUNT]
    assert len(paths) == IMAGE_COUNT
    return paths


@pytest.fixture(scope="module")
def images(image_paths) -> list[Image.Image]:
    return [Image.open(path).convert("RGB") for path in image_paths]


@pytest.fixture(scope="module")
def adapter(run_dir):
    """The adapter model as banglaocr runs it (base + LoRA, float32)."""
    from banglaocr.config import ModelConfig
    from banglaocr.model.factory import load_model

    return load_model(ModelConfig(name_or_path=str(run_dir / "best"), dtype="float32"), None)


@pytest.fixture(scope="module")
def settings(run_dir):
    from banglaocr.infer import load_read_settings

    return load_read_settings(run_dir / "best")


@pytest.fixture(scope="module")
def adapter_texts(adapter, images, settings) -> list[str]:
    from banglaocr.infer import generate_texts

    with helpers.one_thread():
        return generate_texts(adapter.model, adapter.tokenizer, images, settings)


@pytest.fixture(scope="module")
def merged(run_dir, tmp_path_factory) -> tuple[Path, str]:
    """(merged folder, CLI output): `banglaocr merge-lora` on the training output folder itself."""
    out = tmp_path_factory.mktemp("merged") / "merged"
    with helpers.one_thread():
        result = runner.invoke(app, ["merge-lora", "--adapter", str(run_dir), "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out, result.output


def merge(*args: str):
    with helpers.one_thread():
        return runner.invoke(app, ["merge-lora", *args])


# --------------------------------------------------------------------------- the merged folder


def test_cli_reports_difference_and_writes_a_standard_folder(merged, run_dir):
    out, output = merged
    report = json.loads((out / "merge.json").read_text(encoding="utf-8"))
    assert "max |logits merged - adapter|" in output and str(out) in output.replace("\n", "")
    assert report["adapter_dir"] == str(run_dir / "best")  # a training output folder means its best/
    assert report["dtype"] == "float32" and report["lora_layers"] == 7 and report["read_settings"] == "copied"
    assert 0 <= report["max_abs_diff"] <= report["tolerance"] <= 1e-4 * report["logit_scale"]
    for name in ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
                 "tokenizer_config.json", "chat_template.jinja", "preprocessor_config.json",
                 "video_preprocessor_config.json", "banglaocr.json", "recipe.yaml"):
        assert (out / name).is_file(), name
    assert not (out / "adapter_config.json").exists() and not (out / "base").exists()
    assert json.loads((out / "banglaocr.json").read_text(encoding="utf-8")) == \
        json.loads((run_dir / "best" / "banglaocr.json").read_text(encoding="utf-8"))
    generation = json.loads((out / "generation_config.json").read_text(encoding="utf-8"))
    assert generation["eos_token_id"] == 2 and generation["do_sample"] is False  # <|im_end|> of the char tokenizer
    settings = json.loads((out / "banglaocr.json").read_text(encoding="utf-8"))
    assert generation["max_new_tokens"] == settings["max_new_tokens"] and generation["pad_token_id"] == 0
    assert [p.name for p in out.parent.iterdir()] == ["merged"]  # no temporary folder left beside it


def test_merged_logits_equal_adapter_logits_and_adapter_is_not_trivial(merged, adapter, settings):
    from transformers import AutoModelForImageTextToText

    from banglaocr.merge import masked_logits, probe_batch

    out, _ = merged
    model = AutoModelForImageTextToText.from_pretrained(out)
    inputs, mask = probe_batch(adapter.tokenizer, settings)
    with helpers.one_thread():
        reference = masked_logits(adapter.model, inputs, mask)
        merged_logits = masked_logits(model, inputs, mask)
        with adapter.model.disable_adapter():
            base_logits = masked_logits(adapter.model, inputs, mask)
    assert (merged_logits - reference).abs().max() <= 1e-4
    # The adapter moves the logits by far more than the tolerance: the check above has teeth.
    assert (base_logits - reference).abs().max() > 1e-2


def test_merged_folder_transcribes_like_adapter_in_plain_transformers(merged, adapter, images, settings,
                                                                      adapter_texts):
    from transformers import AutoImageProcessor, AutoModelForImageTextToText, AutoTokenizer

    from banglaocr.data.pixels import images_to_batch, patchify, resize_to_budget
    from banglaocr.infer import generate_texts

    out, _ = merged
    model = AutoModelForImageTextToText.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    processor = AutoImageProcessor.from_pretrained(out)  # no torchvision here: the PIL image processor
    with helpers.one_thread():
        texts = generate_texts(model, tokenizer, images, settings)
        with adapter.model.disable_adapter():
            base_texts = generate_texts(adapter.model, adapter.tokenizer, images, settings)
    assert texts == adapter_texts
    assert len(set(adapter_texts)) >= 3, f"the tiny adapter should read images differently: {adapter_texts}"
    assert base_texts != adapter_texts

    # The saved image processor keeps budget-sized crops as they are: same patches as banglaocr's.
    for image in images[:4]:
        resized = resize_to_budget(image, settings.image)
        expected, grid = patchify(*images_to_batch([resized]))
        produced = processor(images=[resized], return_tensors="pt")
        assert produced["image_grid_thw"].tolist() == grid.tolist()
        assert torch.allclose(produced["pixel_values"].float(), expected, atol=1e-5)


def test_half_precision_merge_and_force(merged, run_dir, tmp_path):
    out = tmp_path / "merged"
    shutil.copytree(merged[0], out)
    before = (out / "merge.json").read_text(encoding="utf-8")

    refused = merge("--adapter", str(run_dir / "best"), "--out", str(out), "--dtype", "bfloat16")
    assert refused.exit_code == 2 and "already exists" in refused.output and "--force" in refused.output
    assert (out / "merge.json").read_text(encoding="utf-8") == before  # untouched

    result = merge("--adapter", str(run_dir / "best"), "--out", str(out), "--dtype", "bfloat16", "--force", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["dtype"] == "bfloat16" and report["max_abs_diff"] <= report["tolerance"]
    assert report["merge_max_abs_diff"] <= 1e-4 * report["logit_scale"]  # the merge itself is float32-exact
    assert json.loads((out / "config.json").read_text(encoding="utf-8"))["dtype"] == "bfloat16"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["merged"]


def test_failed_check_writes_nothing_and_keeps_the_old_folder(run_dir, tmp_path, monkeypatch):
    from banglaocr import merge as merge_module

    monkeypatch.setitem(merge_module.TOLERANCES, "float32", -1.0)  # no difference can pass
    fresh = tmp_path / "fresh"
    with pytest.raises(UserError, match="does not reproduce the adapter"), helpers.one_thread():
        merge_module.merge_lora(run_dir / "best", fresh)
    old = tmp_path / "old"
    old.mkdir()
    (old / "keep.txt").write_text("previous merge")
    with pytest.raises(UserError), helpers.one_thread():
        merge_module.merge_lora(run_dir / "best", old, force=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old"]
    assert (old / "keep.txt").read_text() == "previous merge"


# --------------------------------------------------------------------------- bad input: one line, exit 2


def _wrong_base(folder: Path) -> Path:
    """A tiny full model of another width: the adapter's matrices do not fit it."""
    from banglaocr.config import ModelConfig, TinyModelSpec
    from banglaocr.model.factory import load_model, save_model_folder

    spec = TinyModelSpec(hidden_size=64, num_layers=1, num_heads=2, num_kv_heads=1, intermediate_size=64,
                         vision_depth=1, vision_hidden_size=32, vision_heads=2, vision_intermediate_size=64,
                         tokenizer="char")
    return save_model_folder(load_model(ModelConfig(name_or_path="tiny", init="tiny", tiny=spec), None), folder)


@pytest.mark.parametrize("case", ["missing", "empty", "bad-json", "no-weights", "full-model", "wrong-base",
                                  "out-is-adapter"])
def test_bad_adapter_is_one_line_and_exit_2(case, run_dir, merged, tmp_path):
    adapter = tmp_path / "adapter"
    args: list[str] = []
    expected = {"missing": "not found", "empty": "not an adapter folder", "bad-json": "cannot read",
                "no-weights": "no adapter weights", "full-model": "nothing to merge",
                "wrong-base": "does not fit the base model", "out-is-adapter": "would replace the adapter"}[case]
    if case == "empty":
        adapter.mkdir()
    elif case in ("bad-json", "no-weights", "wrong-base", "out-is-adapter"):
        shutil.copytree(run_dir / "best", adapter)
        if case == "bad-json":
            (adapter / "adapter_config.json").write_text("{not json", encoding="utf-8")
        elif case == "no-weights":
            (adapter / "adapter_model.safetensors").unlink()
        elif case == "wrong-base":
            args = ["--base", str(_wrong_base(tmp_path / "other-base"))]
    elif case == "full-model":
        adapter = merged[0]
    out = tmp_path / "out"
    if case == "out-is-adapter":  # replacing the folder that holds the adapter would delete it
        out, args = tmp_path, ["--force"]
    result = merge("--adapter", str(adapter), "--out", str(out), *args)
    assert result.exit_code == 2, result.output
    assert expected in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- AutoProcessor, no banglaocr


@pytest.fixture(scope="module")
def interop_python() -> str:
    """The interop venv's interpreter. Module scope and first in the test's arguments: decided before
    the training fixtures run, so a skip costs nothing."""
    return find_interop_python()


def test_merged_folder_transcribes_with_autoprocessor_without_banglaocr(interop_python, merged, image_paths, images,
                                                                        settings, adapter_texts, tmp_path):
    from banglaocr.data.pixels import resize_to_budget
    from banglaocr.text import normalize

    python = interop_python
    # A clean environment in a neutral folder: nothing of this venv, this checkout or the user's site.
    env = clean_env(tmp_path)
    probe = subprocess.run([python, "-c", "import banglaocr"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert probe.returncode != 0 and "No module named 'banglaocr'" in probe.stderr

    done = subprocess.run([python, str(INTEROP_SCRIPT), str(merged[0]), *map(str, image_paths)], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert result["banglaocr_imported"] is False
    assert result["processor"] == {"class": "Qwen3VLProcessor", "image_processor": "Qwen2VLImageProcessor",
                                   "video_processor": "Qwen3VLVideoProcessor"}
    budget = [resize_to_budget(image, settings.image) for image in images]
    assert result["grids"] == [[1, image.height // 16, image.width // 16] for image in budget]
    # banglaocr normalises every transcription; the plain script prints the raw decoded text.
    assert [normalize(text) for text in result["texts"]] == adapter_texts


def test_merged_folder_carries_a_hub_ready_model_card(merged, run_dir):
    """merge-lora's folder has a README.md model card (kind merged, library transformers), with the adapter's
    scores and confusion heatmap carried over."""
    import yaml

    from banglaocr.model_card import card_metrics

    out, _ = merged
    text = (out / "README.md").read_text(encoding="utf-8")
    meta = yaml.safe_load(text.split("---")[1])
    assert meta["library_name"] == "transformers" and meta["language"] == ["bn"]
    assert "a merged model" in text
    assert card_metrics(out) == card_metrics(run_dir / "best") != {}
    assert (out / "confusion_heatmap.png").is_file() == (run_dir / "best" / "confusion_heatmap.png").is_file()
