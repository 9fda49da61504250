"""The shipped tiny base (`tiny`): name resolution, reading, LoRA on top of it, and the wheel carrying it."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

import train_helpers as helpers
from banglaocr.cli import app
from banglaocr.errors import UserError
from banglaocr.infer import load_for_inference, resolve_model
from banglaocr.model.shipped import MODELS_DIR, model_source, shipped_model

ROOT = Path(__file__).resolve().parent.parent
TINY_DIR = MODELS_DIR / "tiny"
EXAMPLES = ROOT / "examples" / "words"
runner = CliRunner()


def test_tiny_names_the_shipped_folder_and_a_path_does_not():
    assert shipped_model("tiny") == TINY_DIR
    assert resolve_model("tiny") == str(TINY_DIR) == model_source("tiny")
    with pytest.raises(UserError, match="model folder not found: ./tiny"):
        resolve_model("./tiny")


def test_shipped_folder_is_complete_small_and_has_a_model_card():
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                 "chat_template.jinja", "generation_config.json", "preprocessor_config.json",
                 "video_preprocessor_config.json", "banglaocr.json", "recipe.yaml", "README.md"):
        assert (TINY_DIR / name).is_file(), name
    assert sum(p.stat().st_size for p in TINY_DIR.iterdir()) <= 20 * 2**20
    card = (TINY_DIR / "README.md").read_text(encoding="utf-8")
    for must in ("license", "Galada-Regular", "tiny_base.yaml", "CER", "OFL"):
        assert must.lower() in card.lower(), must


def test_predict_model_tiny_reads_the_common_word_examples():
    labels = dict(line.split("\t") for line in (EXAMPLES / "labels.tsv").read_text(encoding="utf-8").splitlines())
    with helpers.one_thread():
        result = runner.invoke(app, ["predict", "--model", "tiny", *(str(EXAMPLES / n) for n in labels),
                                     "--format", "jsonl"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert len(rows) == 10
    exact = sum(row["prediction"] == labels[Path(row["file"]).name] for row in rows)
    assert exact >= 9, rows


def test_lora_on_tiny_scores_before_and_after_and_records_the_name(tmp_path):
    from banglaocr.train.loop import run_training

    base = json.loads((TINY_DIR / "banglaocr.json").read_text(encoding="utf-8"))
    recipe = helpers.tiny_recipe(
        "model.name_or_path=tiny", "model.init=pretrained", "lora.r=4", "lora.alpha=8", "lora.dropout=0.0",
        "data.image.max_width=128", "train.max_steps=2", "eval.before_training=true")
    console = Console(file=io.StringIO(), width=200)
    with helpers.one_thread():
        summary = run_training(recipe, tmp_path / "run", console=console)
    # the base read at max_width 384, this recipe at 128: said, not refused
    assert "tiny was trained with image" in console.file.getvalue()
    assert base["image"]["max_width"] == 384
    rows = helpers.metrics(tmp_path / "run")
    assert rows[0]["step"] == 0 and "val_cer" in rows[0]
    assert summary["val_cer_before"] == rows[0]["val_cer"]
    assert summary["val_cer_after"] == [r for r in rows if "val_cer" in r][-1]["val_cer"]
    adapter = json.loads((tmp_path / "run" / "final" / "adapter_config.json").read_text(encoding="utf-8"))
    assert adapter["base_model_name_or_path"] == "tiny"  # portable: no path into site-packages
    assert not (tmp_path / "run" / "final" / "base").exists()
    loaded, settings = load_for_inference(str(tmp_path / "run" / "final"))
    assert loaded.is_peft and settings.image.max_width == 128


def test_a_resumed_run_does_not_score_the_start_again(tmp_path):
    extra = ("model.name_or_path=tiny", "model.init=pretrained", "lora.r=4", "train.max_steps=2",
             "train.save_steps=1", "eval.before_training=true", "data.image.max_width=384",
             "data.image.stretch=2.0", "data.image.tight_crop=true")
    first = helpers.train(tmp_path / "run", *extra)
    again = helpers.train(tmp_path / "run", *extra, "train.max_steps=3", resume="auto")
    assert again["val_cer_before"] == first["val_cer_before"] is not None
    assert [r["step"] for r in helpers.metrics(tmp_path / "run") if "val_cer" in r].count(0) == 1


def test_wheel_carries_the_weights_and_stays_small(tmp_path):
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation",
                            "-w", str(tmp_path), "-q"], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    wheel = next(tmp_path.glob("banglaocr-*.whl"))
    assert wheel.stat().st_size < 30 * 2**20
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in ("model.safetensors", "config.json", "tokenizer.json", "banglaocr.json", "README.md"):
        assert f"banglaocr/models/tiny/{name}" in names, name


def test_a_broken_install_is_one_clear_error(tmp_path, monkeypatch):
    from banglaocr.model import shipped

    monkeypatch.setattr(shipped, "MODELS_DIR", tmp_path)  # no tiny/ folder here
    result = runner.invoke(app, ["predict", "--model", "tiny", str(EXAMPLES / "word01.png")])
    assert result.exit_code == 2
    assert "the shipped model 'tiny' is missing from this installation" in result.output
    assert "Traceback" not in result.output
