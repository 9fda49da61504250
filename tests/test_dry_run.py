"""`train --dry-run` prints the sections of a recipe that apply; a run's recipe.yaml keeps every section."""

from __future__ import annotations

import yaml
from typer.testing import CliRunner

from banglaocr.cli import app
from banglaocr.config import load_recipe, recipe_from_dict, recipe_to_dict, save_recipe


def dry_run(*args: str) -> dict:
    result = CliRunner().invoke(app, ["train", *args, "--dry-run"])
    assert result.exit_code == 0, result.output
    return yaml.safe_load(result.stdout)


def test_the_kaggle_recipe_shows_no_tiny_model_and_no_synthetic_data():
    printed = dry_run("--recipe", "recipes/kaggle_t4x2.yaml")
    assert "tiny" not in printed["model"] and "synth" not in printed["data"] and "curriculum" not in printed["data"]
    assert printed["lora"]["r"] == 256 and printed["train"]["precision"] == "fp16"
    assert recipe_from_dict(printed) == load_recipe("kaggle_t4x2")


def test_sections_that_apply_or_were_set_are_shown():
    assert "synth" in dry_run("--recipe", "cpu_demo")["data"]  # data.source: synth
    tiny = dry_run("--recipe", "cpu_demo", "model.init=tiny")
    assert "tiny" in tiny["model"]
    # set although unused: shown, so that the printed recipe is still the one that runs
    changed = dry_run("--recipe", "kaggle_t4x2", "model.tiny.hidden_size=64", "data.synth.n=10")
    assert changed["model"]["tiny"]["hidden_size"] == 64 and changed["data"]["synth"]["n"] == 10
    assert recipe_from_dict(changed) == load_recipe("kaggle_t4x2", ["model.tiny.hidden_size=64", "data.synth.n=10"])


def test_a_saved_recipe_keeps_every_section(tmp_path):
    recipe = load_recipe("kaggle_t4x2")
    saved = yaml.safe_load(save_recipe(recipe, tmp_path / "recipe.yaml").read_text(encoding="utf-8"))
    assert saved == recipe_to_dict(recipe)
    assert "tiny" in saved["model"] and "synth" in saved["data"] and saved["data"]["curriculum"] is None


def test_the_dry_run_prints_the_expected_disk_use_next_to_the_free_space(tmp_path, qwen_tokenizer):
    result = CliRunner().invoke(app, ["train", "--recipe", "kaggle_t4x2", "-o", str(tmp_path), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert recipe_from_dict(yaml.safe_load(result.stdout)) == load_recipe("kaggle_t4x2")  # stdout: the recipe alone
    lines = result.stderr.splitlines()
    assert lines[0].startswith("expected disk use, counted on the meta device") and "qwen3-vl-2b-arch" in lines[0]
    for start in ("model/adapter_model.safetensors", "model/tokenizer files", "training_state.safetensors",
                  "x 4 checkpoints", "best/ + final/", "peak", "free"):
        assert any(line.strip().startswith(start) for line in lines), start
    assert "train.keep_last 3 + the one being written (12 saves in the run)" in result.stderr
    assert f"at {tmp_path}: fits" in result.stderr and "trainable.safetensors" not in result.stderr


def test_a_dry_run_that_does_not_fit_warns_with_the_fix(monkeypatch, tmp_path):
    import shutil

    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda path: real(path)._replace(free=1000))
    result = CliRunner().invoke(app, ["train", "--recipe", "cpu_demo", "-o", str(tmp_path), "--dry-run"])
    assert result.exit_code == 0, result.output
    warning = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1 and "1000 B are free" in warning[0] and "choose an output folder with" in warning[0]


def test_a_dry_run_without_an_estimate_says_why_in_one_line():
    result = CliRunner().invoke(app, ["train", "--recipe", "kaggle_t4x2", "model.name_or_path=someone/not-cached-model",
                                      "--dry-run"])
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [
        "expected disk use: unavailable (the architecture of someone/not-cached-model is not in the local cache "
        "(hf download someone/not-cached-model config.json, then run again))"]


def test_a_dry_run_with_the_original_epochs_flag_says_it_loads_the_data_and_writes_nothing(tmp_path):
    """`--num_train_epochs` needs the number of training samples: the dry run says it loads the data set and
    why, first; synthetic data not rendered yet is rendered into a scratch folder, not the output folder."""
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", "--recipe", "cpu_demo", "--num_train_epochs", "1", "-o", str(out),
                                      "data.synth.n=40", "--dry-run"])
    assert result.exit_code == 0, result.output
    said = result.stderr.splitlines()
    assert "original flags -> recipe overrides:" in said
    loading = [line for line in said if line.startswith("dry run: ")]
    assert loading == ["dry run: loading the data set synth (--num_train_epochs 1 needs the number of training "
                       "samples (train.max_steps)); no model weights are loaded and nothing is written"]
    printed = yaml.safe_load(result.stdout)
    assert printed["train"]["max_steps"] == -(-32 // load_recipe("cpu_demo").train.samples_per_step())  # 32 train
    assert not out.exists()


def test_a_dry_run_without_such_flags_loads_no_data(monkeypatch):
    from banglaocr.data import sources

    def no_data(*args, **kwargs):
        raise AssertionError("a dry run loaded the data")

    monkeypatch.setattr(sources, "load_splits", no_data)
    monkeypatch.setattr(sources, "resolve_source", no_data)
    result = CliRunner().invoke(app, ["train", "--recipe", "cpu_demo", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "dry run: loading" not in result.stderr
