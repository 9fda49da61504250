"""`banglaocr train` end to end on a tiny Qwen3-VL (litgpt style): the exact output files, falling
loss, loadable model folders, and the user errors (existing run, corrupted images)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

import train_helpers as helpers
from banglaocr.cli import app

runner = CliRunner()

STEPS, EVERY = 30, 10  # 30 optimizer steps; evaluate and save every 10 (keep_last=2 -> step-20, step-30)
RUN_ARGS = (f"train.max_steps={STEPS}", f"train.eval_steps={EVERY}", f"train.save_steps={EVERY}",
            "train.keep_last=2", "train.lr=2e-3", "train.scheduler=constant")


def invoke_train(output_dir: Path, *extra: str, options: tuple[str, ...] = ()):
    args = ["train", "--recipe", "cpu_demo", "-o", str(output_dir), *options, *helpers.overrides(*extra)]
    with helpers.one_thread():
        return runner.invoke(app, args)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """One complete CLI run of the tiny recipe; the tests below read what it left behind."""
    out = tmp_path_factory.mktemp("e2e") / "run"
    result = invoke_train(out, *RUN_ARGS)
    assert result.exit_code == 0, result.output
    return out, result


def _tensorboard_available() -> bool:
    from banglaocr.train.loop import _tensorboard_available

    return _tensorboard_available()


def _weights_of_folder(folder: Path) -> dict:
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(str(folder))
    return {name: param.detach() for name, param in model.named_parameters()}


def test_writes_exactly_the_expected_output_layout(finished_run):
    """The output folder holds exactly the documented files; rotation kept the newest two checkpoints."""
    out, result = finished_run
    expected = {"run.json", ".banglaocr.lock", "recipe.yaml", "metrics.jsonl", "checkpoints", "best", "final",
                "summary.json", "curves.png", "test_predictions.jsonl"}
    if _tensorboard_available():
        expected.add("tensorboard")
    assert {p.name for p in out.iterdir()} == expected
    assert {p.name for p in (out / "checkpoints").iterdir()} == {"step-20", "step-30"}
    for step in (20, 30):
        checkpoint = out / "checkpoints" / f"step-{step}"
        assert {p.name for p in checkpoint.iterdir()} == {
            "model", "recipe.yaml", "rng-rank0.json", "rng-rank0.safetensors", "state.json",
            "training_state.json", "training_state.safetensors"}
        assert json.loads((checkpoint / "state.json").read_text())["step"] == step
    for folder in (out / "best", out / "final", out / "checkpoints" / "step-30" / "model"):
        names = {p.name for p in folder.iterdir()}
        assert {"banglaocr.json", "config.json", "model.safetensors", "tokenizer.json",
                "chat_template.jinja"} <= names, folder
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "done:" in result.stdout


def test_a_lora_checkpoint_stores_every_tensor_once(tmp_path):
    """cpu_demo as shipped (LoRA on the shipped base), a few steps: no two tensors of more than 1 KB with
    identical bytes across a checkpoint's files (the adapter is the one copy of the trainable weights);
    best/ and final/ hold the adapter once, with no copy beside them."""
    import hashlib
    import io

    from rich.console import Console
    from safetensors import safe_open

    from banglaocr.config import load_recipe
    from banglaocr.train.loop import run_training

    out = tmp_path / "lora"
    same_data = [o for o in helpers.overrides() if o.startswith("data.synth.")]  # the session's rendered words
    recipe = load_recipe("cpu_demo", [*same_data,
                                      "train.max_steps=3", "train.save_steps=3", "train.eval_steps=3",
                                      "train.batch_size=4", "train.threads=1", "eval.max_samples=4",
                                      "eval.before_training=false", "train.warmup_steps=0"])
    with helpers.one_thread():
        run_training(recipe, out, console=Console(file=io.StringIO()))
    checkpoint = out / "checkpoints" / "step-3"
    seen: dict[str, str] = {}
    for path in sorted(checkpoint.rglob("*.safetensors")):
        with safe_open(str(path), framework="pt") as handle:
            for key in handle.keys():
                tensor = handle.get_tensor(key)
                if tensor.numel() * tensor.element_size() <= 1024:
                    continue
                digest = hashlib.sha256(tensor.contiguous().view(-1).view(torch.uint8).numpy().tobytes()).hexdigest()
                where = f"{path.relative_to(checkpoint)}:{key}"
                assert digest not in seen, f"{where} repeats {seen[digest]}"
                seen[digest] = where
    assert any(name.startswith("model/adapter_model.safetensors") for name in seen.values())
    assert len(seen) > 10  # the adapter and the optimizer's two moments were looked at
    for folder in (out / "best", out / "final"):
        assert [p.name for p in folder.rglob("*.safetensors")] == ["adapter_model.safetensors"], folder


def test_recipe_yaml_is_the_resolved_recipe(finished_run):
    """recipe.yaml reloads to the very recipe the run used (every default filled in)."""
    from banglaocr.config import load_recipe

    out, _ = finished_run
    # ... with train.output_dir naming the folder the run really wrote to (-o), not the recipe's default.
    assert load_recipe(out / "recipe.yaml") == helpers.tiny_recipe(*RUN_ARGS, f"train.output_dir={out}")


def test_metrics_have_log_and_eval_rows(finished_run):
    """One log row per step (step, loss, lr, samples/s) and eval rows with val_cer at every eval step."""
    out, _ = finished_run
    logs = helpers.log_rows(out)
    assert [row["step"] for row in logs] == list(range(1, STEPS + 1))
    for row in logs:
        assert row["loss"] > 0 and row["lr"] == pytest.approx(2e-3) and row["samples_per_s"] > 0
    evals = helpers.eval_rows(out)
    assert [row["step"] for row in evals] == [10, 20, 30]
    assert all(0.0 <= row["val_cer"] and row["val_n"] == 4 for row in evals)


def test_loss_falls(finished_run):
    """Training learns: the mean of the last five logged losses is clearly below that of the first five."""
    out, _ = finished_run
    losses = [row["loss"] for row in helpers.log_rows(out)]
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < first - 0.5, losses


def test_summary_best_and_test_predictions_agree(finished_run):
    """summary.json matches the metrics (best = first lowest val CER), and test predictions are all there."""
    out, _ = finished_run
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == STEPS and summary["processes"] == 1
    assert summary["skipped_samples"] == 0 and summary["nonfinite_steps"] == 0
    evals = helpers.eval_rows(out)
    best = min(row["val_cer"] for row in evals)
    assert summary["best_val_cer"] == pytest.approx(best)
    assert summary["best_step"] == next(row["step"] for row in evals if row["val_cer"] == best)
    assert summary["final_loss"] == pytest.approx(helpers.log_rows(out)[-1]["loss"])
    rows = [json.loads(line) for line in (out / "test_predictions.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(rows) == summary["test"]["n"] > 0
    assert all(set(row) == {"id", "reference", "prediction", "cer"} for row in rows)


def test_final_and_best_folders_load_in_plain_transformers(finished_run):
    """final/ holds the last step's weights and best/ the best step's, loadable without this package."""
    out, _ = finished_run
    final = _weights_of_folder(out / "final")
    assert helpers.max_abs_diff(final, helpers.trainable(out / "checkpoints" / "step-30")) == 0.0
    best = _weights_of_folder(out / "best")
    best_step = json.loads((out / "best" / "best_step.json").read_text())["step"]
    assert best_step == json.loads((out / "summary.json").read_text())["best_step"]
    kept = out / "checkpoints" / f"step-{best_step}"
    if kept.is_dir():  # not rotated out: the very weights of that step
        assert helpers.max_abs_diff(best, helpers.trainable(kept)) == 0.0
    else:  # an earlier step's weights, not the final ones
        assert helpers.max_abs_diff(best, final) > 0.0


def test_final_folder_loads_through_the_factory(finished_run):
    """The model factory reads final/ back as a model folder (with its tokenizer)."""
    from banglaocr.config import ModelConfig
    from banglaocr.infer import load_read_settings
    from banglaocr.model.factory import load_model

    out, _ = finished_run
    loaded = load_model(ModelConfig(name_or_path=str(out / "final")), None)
    assert not loaded.is_peft and len(loaded.tokenizer) > 0
    assert load_read_settings(out / "final").image.height == 32


def test_second_run_into_the_same_folder_is_refused(finished_run):
    """Without --resume a finished run's folder is not overwritten: exit 2 and a hint to --resume."""
    out, _ = finished_run
    before = (out / "metrics.jsonl").read_bytes()
    result = invoke_train(out, *RUN_ARGS)
    assert result.exit_code == 2
    assert "already holds a training run" in result.stderr and "--resume" in result.stderr
    assert "Traceback" not in result.output
    assert (out / "metrics.jsonl").read_bytes() == before


def test_dry_run_prints_the_resolved_recipe_and_writes_nothing(tmp_path):
    """--dry-run prints YAML that reads back as the resolved recipe and creates no output folder."""
    from banglaocr.config import recipe_from_dict

    out = tmp_path / "dry"
    result = invoke_train(out, "train.max_steps=7", options=("--dry-run",))
    assert result.exit_code == 0, result.output
    assert recipe_from_dict(yaml.safe_load(result.stdout)) == helpers.tiny_recipe("train.max_steps=7")
    assert not out.exists()


def _broken_imagefolder(root: Path) -> Path:
    """An imagefolder of 14 good training images, a truncated PNG, a zero-byte PNG and a text file
    named .png, with the tiny synthetic val/test splits next to it."""
    source = helpers.synth_dir()
    (root / "train").mkdir(parents=True)
    rows = []
    for line in (source / "train" / "metadata.jsonl").read_text(encoding="utf-8").splitlines()[:14]:
        row = json.loads(line)
        shutil.copy(source / "train" / row["file_name"], root / "train" / row["file_name"])
        rows.append(row)
    good = (root / "train" / rows[0]["file_name"]).read_bytes()
    (root / "train" / "truncated.png").write_bytes(good[: len(good) // 2])
    (root / "train" / "zero.png").write_bytes(b"")
    (root / "train" / "notes.png").write_text("not an image\n", encoding="utf-8")
    rows += [{"file_name": name, "text": rows[0]["text"]} for name in ("truncated.png", "zero.png", "notes.png")]
    (root / "train" / "metadata.jsonl").write_text(
        "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    for split in ("val", "test"):
        shutil.copytree(source / split, root / split)
    return root


def test_corrupted_images_are_skipped_counted_once_and_the_run_completes(tmp_path):
    """Unreadable training images never crash a run: each is skipped and counted ONCE in summary.json,
    although two epochs show the truncated and the text file to the loader twice."""
    data = _broken_imagefolder(tmp_path / "data")
    out = tmp_path / "run"
    # 16 loadable records (the zero-byte file is dropped at load time) = 4 batches of 4 = one epoch.
    result = invoke_train(out, f"data.source={data}", "train.max_steps=8")
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 8 and (out / "final" / "model.safetensors").is_file()
    assert summary["skipped_samples"] == 3
    assert summary["skipped"]["total"] == 3
    assert summary["skipped"]["by_reason"] == {"empty image file": 1, "unreadable image (not a readable image)": 2}
    examples = [sample_id for ids in summary["skipped"]["examples"].values() for sample_id in ids]
    assert sorted(examples) == ["notes.png", "truncated.png", "zero.png"]

    # Continued for one more step, the run still reports what it skipped before the restart.
    resumed = invoke_train(out, f"data.source={data}", "train.max_steps=9", options=("--resume", "auto"))
    assert resumed.exit_code == 0, resumed.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 9 and summary["skipped"]["total"] == 3


def test_a_run_stopped_before_its_first_checkpoint_is_not_silently_reused(tmp_path):
    """A run killed before any checkpoint (run.json, recipe.yaml, metrics.jsonl): a fresh run refuses,
    --resume auto starts over."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "run.json").write_text('{"tool": "banglaocr"}', encoding="utf-8")
    (out / "recipe.yaml").write_text("{}", encoding="utf-8")
    (out / "metrics.jsonl").write_text('{"step": 1, "loss": 5.0, "lr": 0.001}\n', encoding="utf-8")
    result = invoke_train(out, "train.max_steps=2")
    assert result.exit_code == 2 and "already holds a training run" in result.output
    result = invoke_train(out, "train.max_steps=2", options=("--resume", "auto"))
    assert result.exit_code == 0, result.output
    assert [row["step"] for row in helpers.log_rows(out)] == [1, 2]


def test_best_and_final_are_hub_ready_with_a_model_card(finished_run):
    """README.md with the hub's YAML metadata (language, pipeline tag, base model, results), the recipe and
    the confusion heatmap; best/'s card carries the test scores (the test split is scored with best/)."""
    from banglaocr.model_card import card_metrics

    out, _ = finished_run
    for name in ("best", "final"):
        text = (out / name / "README.md").read_text(encoding="utf-8")
        meta = yaml.safe_load(text.split("---")[1])
        assert meta["language"] == ["bn"] and meta["pipeline_tag"] == "image-text-to-text"
        assert "## Training recipe" in text and "max_steps: 30" in text
        assert (out / name / "confusion_heatmap.png").read_bytes()[:4] == b"\x89PNG"
    summary = json.loads((out / "summary.json").read_text())
    best = card_metrics(out / "best")
    assert best["test_cer"] == pytest.approx(summary["test"]["cer"], abs=1e-4)
    assert best["val_cer"] == pytest.approx(summary["best_val_cer"], abs=1e-4)


def test_lora_inputs_are_left_to_autocast_only_under_mixed_precision_and_runs_can_follow_each_other(
        tmp_path, monkeypatch):
    # bf16 then fp32 in ONE process (a notebook): accelerate's precision state must not leak into the next run.
    from banglaocr.train import loop

    real, seen = loop.skip_lora_input_casts, []

    def recording(model, skip=True):
        seen.append(skip)
        return real(model, skip)

    monkeypatch.setattr(loop, "skip_lora_input_casts", recording)
    lora = ("lora.r=4", "lora.alpha=8", "lora.dropout=0.0", "train.max_steps=2", "eval.max_samples=2")
    assert helpers.train(tmp_path / "bf16", *lora, "train.precision=bf16")["steps"] == 2
    assert seen == [True]
    assert helpers.train(tmp_path / "fp32", *lora, "train.precision=fp32")["steps"] == 2
    assert seen == [True]  # no autocast under fp32: peft's casts stay
