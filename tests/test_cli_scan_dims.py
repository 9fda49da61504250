"""`banglaocr scan-dims` and the CLI as a whole: help, version, one-line errors with exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
import yaml
from typer.testing import CliRunner

from banglaocr.cli import app
from banglaocr.config import recipe_from_dict
from banglaocr.data.synth import write_synthetic_dataset

runner = CliRunner()


@pytest.fixture(scope="module")
def synth_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("scan") / "synth"
    write_synthetic_dataset(folder, n=120, seed=2)
    return folder


def test_scan_dims_budget_beats_processor_default(synth_folder, tmp_path):
    fragment_path = tmp_path / "budget.yaml"
    result = runner.invoke(app, ["scan-dims", "--dataset", str(synth_folder), "--samples", "80", "--seed", "1",
                                 "--tokenizer", "char", "--json", "--write", str(fragment_path)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["sampled"] == 80 and report["population"] == 96
    percentiles = report["percentiles"]
    assert set(percentiles["height"]) == {"p5", "p50", "p95", "p99", "max"}
    assert percentiles["visual_tokens_budget"]["p50"] <= 16
    assert percentiles["visual_tokens_default"]["p50"] >= 64
    budget = report["budget"]
    assert budget["height"] % 32 == 0 and budget["max_width"] % 32 == 0
    assert budget["max_new_tokens"] > percentiles["tokens"]["max"]
    # The fragment is a valid part of a recipe.
    fragment = yaml.safe_load(fragment_path.read_text(encoding="utf-8"))
    recipe = recipe_from_dict({"model": {"name_or_path": "x"}, "data": {"source": "synth", **fragment["data"]},
                               "eval": fragment["eval"]})
    assert recipe.data.image.max_width == budget["max_width"]


def test_scan_dims_sample_is_seeded_not_first_rows(synth_folder):
    def sampled_widths(seed):
        result = runner.invoke(app, ["scan-dims", "-d", str(synth_folder), "-n", "10", "--seed", str(seed),
                                     "--tokenizer", "char", "--json"])
        return json.loads(result.output)["percentiles"]["width"]

    assert sampled_widths(1) == sampled_widths(1)
    assert sampled_widths(1) != sampled_widths(2)


def test_scan_dims_table_output(synth_folder):
    result = runner.invoke(app, ["scan-dims", "-d", str(synth_folder), "-n", "30", "--tokenizer", "char"])
    assert result.exit_code == 0
    assert "visual tokens (processor default)" in result.output and "budget" in result.output


QWEN_HUB_ID = "Qwen/Qwen3-VL-2B-Instruct"


def _scan_json(*args: str):
    result = runner.invoke(app, ["scan-dims", *args, "-n", "60", "--seed", "3", "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout), result.stderr


def test_offline_a_qwen_vl_id_counts_with_the_bundled_tokenizer(synth_folder):
    # The tests run offline with an empty hub cache: the hub cannot give Qwen3-VL's tokenizer.
    offline, said = _scan_json("-d", str(synth_folder), "--tokenizer", QWEN_HUB_ID)
    bundled, quiet = _scan_json("-d", str(synth_folder), "--tokenizer", "qwen")
    assert offline["tokenizer_fallback"] is True and bundled["tokenizer_fallback"] is False
    assert offline["percentiles"]["tokens"] == bundled["percentiles"]["tokens"]
    assert offline["budget"] == bundled["budget"]
    notes = [line for line in said.splitlines() if line.strip()]
    assert len(notes) == 1 and notes[0].startswith("note: the tokenizer of Qwen/Qwen3-VL-2B-Instruct cannot be "
                                                   "fetched") and "bundled Qwen tokenizer" in notes[0]
    assert quiet == ""


def test_a_recipe_names_the_tokenizer_through_its_model(synth_folder, tmp_path):
    def recipe(model: str):
        path = tmp_path / f"{model.replace('/', '_')}.yaml"
        path.write_text(yaml.safe_dump({"model": {"name_or_path": model},
                                        "data": {"source": str(synth_folder), "val_fraction": 0.0,
                                                 "test_fraction": 0.0}}), encoding="utf-8")
        return str(path)

    qwen, said = _scan_json("--recipe", recipe(QWEN_HUB_ID))
    assert qwen["tokenizer"] == QWEN_HUB_ID and qwen["tokenizer_fallback"] and "note: " in said
    # A shipped model's name means its folder, which holds its own tokenizer (one token per letter).
    tiny, said = _scan_json("--recipe", recipe("tiny"))
    assert tiny["tokenizer"] == "tiny" and not tiny["tokenizer_fallback"] and said == ""
    char, _ = _scan_json("--recipe", recipe("tiny"), "--tokenizer", "char")
    assert tiny["percentiles"]["tokens"] == char["percentiles"]["tokens"] != qwen["percentiles"]["tokens"]


def test_other_unfetchable_tokenizers_fail_as_before(synth_folder):
    result = runner.invoke(app, ["scan-dims", "-d", str(synth_folder), "--tokenizer", "google/gemma-3-4b-it"])
    assert result.exit_code == 2 and "cannot load tokenizer 'google/gemma-3-4b-it'" in result.output


def test_scan_dims_needs_exactly_one_source(synth_folder):
    result = runner.invoke(app, ["scan-dims"])
    assert result.exit_code == 2 and "exactly one of --dataset or --recipe" in result.output


def test_misspelled_recipe_key_exits_2_with_one_line(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model: {name_or_path: x}\ndata: {source: synth}\ntrain: {lerning_rate: 0.1}\n",
                      encoding="utf-8")
    result = subprocess.run([sys.executable, "-m", "banglaocr", "scan-dims", "--recipe", str(recipe)],
                            capture_output=True, text=True)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == ["error: unknown recipe key 'train.lerning_rate' (did you mean 'lr'?)"] or \
        len(lines) == 1 and "train.lerning_rate" in lines[0]
    assert "Traceback" not in result.stderr


def test_help_lists_commands_quickly():
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "banglaocr", "--help"], capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    assert result.returncode == 0
    for command in ("synth", "scan-dims"):
        assert command in result.stdout
    # Not a benchmark: a guard that nothing heavy (torch, transformers) is imported for --help.
    assert elapsed < 5.0
    modules = subprocess.run([sys.executable, "-c",
                              "import sys; from banglaocr.cli import app; "
                              "print('torch' in sys.modules, 'transformers' in sys.modules)"],
                             capture_output=True, text=True).stdout.split()
    assert modules == ["False", "False"]


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.startswith("banglaocr ")
