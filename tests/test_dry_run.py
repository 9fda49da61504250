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
