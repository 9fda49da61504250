"""The original training script's Kaggle command, pasted as it was (data set swapped for a local folder,
the shipped tiny reader as the model), trains; --dry-run shows the mapping; unknown flags are one line."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import train_helpers as helpers

ORIGINAL = ("--lora_r 256 --lora_alpha 512 --batch_size 16 --learning_rate 1e-4 --num_train_epochs 3 --fp16 "
            "--dataset_classes word --samples_per_class all --scan_dataset_dimensions True "
            "--dimension_scan_samples 50000 --padding_buffer 1.1 --focal_alpha 0.25 --focal_gamma 2.0 "
            "--label_smoothing 0.1 --logging_steps 5 --eval_steps 1000 --save_steps 200 "
            "--compute_train_metrics True").split()


@pytest.fixture(scope="module")
def word_folder(tmp_path_factory) -> Path:
    """The session's synthetic words as an imagefolder whose rows have class `word`, like the real data set."""
    folder = tmp_path_factory.mktemp("data") / "words"
    shutil.copytree(helpers.synth_dir(), folder)
    for metadata in folder.glob("*/metadata.jsonl"):
        rows = [json.loads(line) for line in metadata.read_text(encoding="utf-8").splitlines()]
        metadata.write_text("".join(json.dumps({**row, "class": "word"}, ensure_ascii=False) + "\n" for row in rows),
                            encoding="utf-8")
    (folder / "synth.json").unlink()  # a plain data folder, not banglaocr's synth output
    return folder


def command(out: Path, data: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "banglaocr", "train", *ORIGINAL, "--output_dir", str(out), "--dataset_name",
            str(data), "--model_name", "tiny", *extra]


@pytest.mark.slow  # over 15 s on 2 cores: in .ci/run's second step, with the other long runs
def test_the_original_kaggle_command_trains(word_folder, tmp_path):
    out = tmp_path / "run"
    # Overrides only for a quick CPU check: no evaluation sample limit changes what the flags say.
    result = subprocess.run(command(out, word_folder, "eval.max_samples=8", "data.num_workers=0"),
                            env=helpers.subprocess_env(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    said = result.stderr
    assert "original flags -> recipe overrides:" in said and "lora.r=256" in said
    assert "note: --focal_alpha:" in said and "note: --compute_train_metrics:" in said
    assert "note: --fp16: no CUDA GPU here" in said
    recipe = yaml.safe_load((out / "recipe.yaml").read_text(encoding="utf-8"))
    assert recipe["lora"]["r"] == 256 and recipe["lora"]["alpha"] == 512
    assert recipe["train"]["lr"] == 1e-4 and recipe["train"]["batch_size"] == 16
    assert recipe["train"]["log_steps"] == 5 and recipe["train"]["save_steps"] == 200
    assert recipe["loss"]["focal_gamma"] == 2.0 and recipe["loss"]["label_smoothing"] == 0.1
    assert recipe["data"]["source"] == str(word_folder) and recipe["data"]["classes"] == ["word"]
    assert recipe["model"]["name_or_path"] == "tiny" and recipe["train"]["precision"] == "fp32"
    # 3 epochs of the training split at 16 x 2 (kaggle_t4x2's accumulation) samples per step.
    summary = json.loads((out / "summary.json").read_text())
    train_samples = 64 - summary["test"]["n"] - 6  # 6 validation words
    assert recipe["train"]["max_steps"] == summary["steps"] == -(-3 * train_samples // 32)
    assert "data.image.height=" in said and "eval.max_new_tokens=" in said  # the scanned budget


def test_dry_run_shows_the_mapping_and_trains_nothing(word_folder, tmp_path):
    out = tmp_path / "run"
    result = subprocess.run([*command(out, word_folder), "--dry-run"], env=helpers.subprocess_env(),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "--num_train_epochs 3" in result.stderr and "train.max_steps from the data size" in result.stderr
    printed = yaml.safe_load(result.stdout)
    assert printed["lora"]["r"] == 256
    assert not (out / "checkpoints").exists()


def documented_command() -> list[str]:
    """The original Kaggle command as docs/migrating.md shows it (its first bash block), split into arguments."""
    text = (Path(__file__).parents[1] / "docs" / "migrating.md").read_text(encoding="utf-8")
    block = text.split("```bash\n", 1)[1].split("```", 1)[0]
    return shlex.split(block.replace("\\\n", " "))


def test_the_documented_command_dry_runs_offline(word_folder, tmp_path):
    # As in docs/migrating.md - the Qwen3-VL-2B model, the dimension scan, 3 epochs - with the hub off (the
    # test session is offline, its hub cache empty) and the data set as a local copy.
    arguments = documented_command()
    assert arguments[:2] == ["banglaocr", "train"] and "--model_name" not in arguments
    arguments[arguments.index("--dataset_name") + 1] = str(word_folder)
    arguments[arguments.index("--output_dir") + 1] = str(tmp_path / "run")
    result = subprocess.run([sys.executable, "-m", "banglaocr", *arguments[1:], "--dry-run"],
                            env=helpers.subprocess_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    said = result.stderr
    assert "original flags -> recipe overrides:" in said and "lora.r=256" in said
    assert "note: --scan_dataset_dimensions: the tokenizer of Qwen/Qwen3-VL-2B-Instruct cannot be fetched" in said
    assert "(from the data) data.image.height=" in said and "train.max_steps=" in said
    printed = yaml.safe_load(result.stdout)
    assert printed["model"]["name_or_path"] == "Qwen/Qwen3-VL-2B-Instruct"
    # The budget was counted with the real Qwen vocabulary: the same as scan-dims with the bundled tokenizer.
    scan = subprocess.run([sys.executable, "-m", "banglaocr", "scan-dims", "-d", str(word_folder), "--tokenizer",
                           "qwen", "--samples", "50000", "--padding-buffer", "0.1", "--json"],
                          env=helpers.subprocess_env(), capture_output=True, text=True, timeout=300)
    budget = json.loads(scan.stdout)["budget"]
    assert printed["eval"]["max_new_tokens"] == budget["max_new_tokens"]
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_an_unknown_flag_is_one_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "banglaocr", "train", "--lora_rank", "8"],
                            env=helpers.subprocess_env(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "unknown option '--lora_rank'" in result.stderr and "docs/migrating.md" in result.stderr
    assert "Traceback" not in result.stderr
