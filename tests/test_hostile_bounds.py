"""Bounded everything: YAML that explodes when built, numbers no recipe key takes, homes of users that do not
exist, FIFOs where a file is read, and images large only once decoded - each one line and exit 2 (or, for
images, a bounded memory), never a hang, never a traceback. The cases come from `hostile_round2.bounds`."""

from __future__ import annotations

import os
import pickle
import select
import signal
import subprocess
import sys
import time
import weakref
from pathlib import Path

import pytest
from fake_readers import texts_only
from typer.testing import CliRunner

from banglaocr.cli import app
from banglaocr.config import load_recipe, recipe_from_dict
from banglaocr.errors import UserError
from hostile_round2 import bounds

ROOT = Path(__file__).resolve().parents[1]
TINY = {"model": {"name_or_path": "bounds", "init": "tiny"}, "data": {"source": "synth"}}
runner = CliRunner()


@pytest.fixture(scope="module", autouse=True)
def imported_once():
    """What the commands import, imported here once: every forked child (`in_child`) starts with it."""
    import banglaocr.cli.eval  # noqa: F401
    import banglaocr.cli.predict  # noqa: F401
    import banglaocr.data.scan  # noqa: F401
    import banglaocr.data.synth  # noqa: F401
    import banglaocr.evaluation  # noqa: F401
    import banglaocr.infer  # noqa: F401
    import banglaocr.model.factory  # noqa: F401
    import datasets  # noqa: F401
    import peft  # noqa: F401
    import transformers  # noqa: F401


def in_child(call, timeout: float = 60.0):
    """`call()` in a forked child (this process's imports, no interpreter start-up); returns (what it returned
    or raised, seconds the call took). A child still at work after `timeout` s is killed and the test fails:
    a hang - the reason these inputs are here - never blocks the suite."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: run, send the outcome back, leave without pytest's exit handlers
        os.close(read)
        started = time.perf_counter()
        try:
            outcome = ("returned", call())
        except BaseException as err:  # noqa: BLE001 - whatever it is, the parent judges it
            outcome = ("raised", (type(err).__name__, str(err)))
        payload = pickle.dumps((outcome, time.perf_counter() - started))
        with os.fdopen(write, "wb") as pipe:
            pipe.write(payload)
        os._exit(0)
    os.close(write)
    data, deadline = b"", time.monotonic() + timeout
    with os.fdopen(read, "rb", buffering=0) as pipe:
        while True:
            ready, _, _ = select.select([pipe], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                pytest.fail(f"still running after {timeout} s (a hang)")
            chunk = pipe.read(1 << 16)
            if not chunk:
                break
            data += chunk
    os.waitpid(pid, 0)
    return pickle.loads(data)


def error_line(call, seconds: float = 5.0) -> str:
    """The message of the `UserError` that `call()` raises within `seconds`: one line, and short whatever the
    input was."""
    (how, value), took = in_child(call)
    assert how == "raised" and value[0] == "UserError", value
    message = value[1]
    assert took < seconds, f"took {took:.2f} s"
    assert "\n" not in message and len(message) < 400, message[:500]
    return message


def command(*args: str, timeout: float = 60.0) -> tuple[int, str, float]:
    """`banglaocr ARGS` through typer's runner in a forked child: (exit code, output, seconds). An exception
    that escaped the command (a traceback for the user) fails the test."""
    def run():
        result = runner.invoke(app, list(args))
        escaped = result.exception if not isinstance(result.exception, SystemExit) else None
        return result.exit_code, result.output, repr(escaped) if escaped is not None else None

    (how, value), took = in_child(run, timeout)
    assert how == "returned", value
    code, output, escaped = value
    assert escaped is None, (escaped, output[-2000:])
    return code, output, took


def assert_one_error_line(output: str, *pieces: str) -> None:
    """One line `error: ...` holding `pieces`, last (lines before it may say what original flags became)."""
    lines = [line for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], output[-2000:]
    assert "Traceback" not in output
    for piece in pieces:
        assert piece in errors[0], (piece, errors[0])


# --------------------------------------------------------------------------- YAML that explodes


def test_alias_bomb_in_a_recipe_file_is_refused_at_once(tmp_path):
    path = tmp_path / "laughs.yaml"
    path.write_text(bounds.bomb_recipe(levels=9), encoding="utf-8")
    message = error_line(lambda: load_recipe(path), seconds=1.0)
    assert f"recipe {path}" in message and "expands to more than 100000 values" in message
    # The command as a user runs it, in a fresh process: one line, exit 2.
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    result = subprocess.run([sys.executable, "-m", "banglaocr", "train", "--recipe", str(path), "--dry-run"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert_one_error_line(result.stderr, str(path), "aliases")


@pytest.mark.parametrize("key", ["data.prompt", "train.lr", "data.classes", "lora"])
def test_alias_bomb_in_an_override_is_refused_at_once(key):
    override = f"{key}={bounds.bomb_value(levels=9)}"
    message = error_line(lambda: recipe_from_dict(dict(TINY), [override]), seconds=1.0)
    assert message.startswith(f"override '{key}=") and "expands to more than" in message


@pytest.mark.parametrize("args", [
    ("train", "--recipe", "cpu_demo", "--dry-run", "data.prompt={bomb}"),
    ("train", "--dry-run", "--learning_rate", "{bomb}"),       # the original script's flags become overrides
    ("train", "--dry-run", "--dataset_classes", "{bomb}"),
    ("eval", "--model", "tiny", "--dataset", "x", "--image", "height={bomb}"),
    ("doctor", "--recipe", "cpu_demo", "train.lr={bomb}"),
], ids=["override", "original-flag", "original-classes", "eval-image", "doctor"])
def test_alias_bomb_through_every_command_that_takes_overrides(args):
    code, output, _ = command(*(arg.format(bomb=bounds.bomb_value(levels=9)) for arg in args))
    assert code == 2
    assert_one_error_line(output, "override '", "expands to more than")


def test_alias_bomb_is_refused_wherever_it_hides(tmp_path):
    """A bomb under an unknown key, in a merge key, or referenced twice: refused before any copy or repr."""
    laughs = "\n".join(bounds.alias_bomb(9, "  ")) + "\n"
    for text in (bounds.TINY_RECIPE + "laughs:\n" + laughs, "base: &b\n" + laughs + bounds.TINY_RECIPE + "eval:\n  <<: *b\n"):
        path = tmp_path / "r.yaml"
        path.write_text(text, encoding="utf-8")
        assert "expands to more than" in error_line(lambda: load_recipe(path), seconds=1.0)
    # A few aliases of a small anchor are fine (YAML's own way to say a thing twice).
    path.write_text(bounds.TINY_RECIPE.replace("synth}", "synth, classes: &c [word]}")
                    + "eval: {batch_size: 4}\nlora: {train_modules: *c}\n", encoding="utf-8")
    assert load_recipe(path).lora.train_modules == ["word"]


def test_deep_nesting_is_one_line(tmp_path):
    deep = bounds.deep_nesting(10_000)
    path = tmp_path / "deep.yaml"
    path.write_text(bounds.TINY_RECIPE + f"eval: {{batch_size: {deep}}}\n", encoding="utf-8")
    assert "nested more than 32 levels deep at line 3" in error_line(lambda: load_recipe(path), seconds=1.0)
    assert "nested more than 32 levels deep" in error_line(
        lambda: recipe_from_dict(dict(TINY), [f"eval.batch_size={deep}"]), seconds=1.0)
    # A Python mapping nested deeper than any recipe (no YAML on the way) is refused by the copy itself.
    nested: dict = {}
    for _ in range(2000):
        nested = {"x": nested}
    assert "nests at most 32 levels" in error_line(lambda: recipe_from_dict({**TINY, "eval": nested}))


def test_huge_scalars_are_cut_short_in_messages(tmp_path):
    huge = bounds.huge_scalar(1_000_000)
    for override in (f"train.lr={huge}", f"train.{huge}=1", f"data.classes={huge}=x", f"{huge}"):
        message = error_line(lambda: recipe_from_dict(dict(TINY), [override]))
        assert "xxx..." in message or "..." in message
    path = tmp_path / "huge.yaml"
    path.write_text(bounds.TINY_RECIPE + f"train: {{lr: {huge}}}\n", encoding="utf-8")
    assert "recipe key 'train.lr': expected float, got 'xxxx" in error_line(lambda: load_recipe(path))
    path.write_text(bounds.TINY_RECIPE + "x" * (2 << 20) + ": 1\n", encoding="utf-8")
    assert "more than the 1 MiB" in error_line(lambda: load_recipe(path))


def test_python_tags_stay_inert(tmp_path):
    marker = tmp_path / "ran"
    tag = bounds.PYTHON_TAG.format(marker=marker)
    path = tmp_path / "tagged.yaml"
    path.write_text(bounds.TINY_RECIPE + f"train: {{lr: {tag}}}\n", encoding="utf-8")
    assert "is not valid YAML at line 3" in error_line(lambda: load_recipe(path))
    assert "expected float" in error_line(lambda: recipe_from_dict(dict(TINY), [f"train.lr={tag}"]))
    assert not marker.exists()


# --------------------------------------------------------------------------- numbers


@pytest.mark.parametrize("case", bounds.NUMBERS, ids=[case.override[:40] for case in bounds.NUMBERS])
def test_numbers_no_key_takes_are_one_line_naming_the_key(case):
    message = error_line(lambda: recipe_from_dict(dict(TINY), [case.override]))
    assert f"recipe key '{case.key}'" in message and case.says in message, message


@pytest.mark.parametrize("override, value", bounds.ACCEPTED_NUMBERS)
def test_yaml_number_spellings_still_read(override, value):
    section, key = override.split("=")[0].split(".")
    assert getattr(getattr(recipe_from_dict(dict(TINY), [override]), section), key) == value


def test_a_number_yaml_cannot_convert_in_a_file_names_its_line(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(bounds.TINY_RECIPE + "train:\n  max_steps: " + "9" * 5000 + "\n", encoding="utf-8")
    message = error_line(lambda: load_recipe(path))
    assert "not valid YAML at line 4 (cannot convert the value" in message
    path.write_text(bounds.TINY_RECIPE + "train:\n  seed: 2024-13-45\n", encoding="utf-8")
    assert "at line 4 (cannot convert the value (month must be in 1..12))" in error_line(lambda: load_recipe(path))


@pytest.mark.parametrize("args, says", [
    (("--num_train_epochs", "abc"), "option '--num_train_epochs' takes a finite number > 0, got 'abc'"),
    (("--num_train_epochs", "inf"), "option '--num_train_epochs' takes a finite number > 0, got 'inf'"),
    (("--scan_dataset_dimensions", "--dimension_scan_samples", "x"), "'--dimension_scan_samples' takes a whole number"),
    (("--scan_dataset_dimensions", "--padding_buffer", "nan"), "'--padding_buffer' takes a finite number >= 0"),
    (("--learning_rate", "nan"), "recipe key 'train.lr': must be a finite number"),
    (("--max_steps", "9" * 400), "recipe key 'train.max_steps': <a number of 400 digits> does not fit 64 bits"),
])
def test_original_flags_with_numbers_no_key_takes(args, says):
    code, output, _ = command("train", "--dry-run", *args)
    assert code == 2
    assert_one_error_line(output, says)


# --------------------------------------------------------------------------- ~user


@pytest.mark.parametrize("name, args, names", bounds.HOME_PATHS,
                         ids=[f"{c}:{' '.join(a)[:50]}" for c, a, _ in bounds.HOME_PATHS])
def test_home_of_a_user_that_does_not_exist_is_one_line(name, args, names):
    home = f"~{bounds.missing_user()}"
    code, output, _ = command(name, *(arg.format(home=home) for arg in args))
    assert code == 2, output
    assert_one_error_line(output, names.format(home=home), f"no such user for {home}")


# --------------------------------------------------------------------------- files that are no files


@pytest.fixture(scope="module")
def special(tmp_path_factory):
    return {case.name: case for case in bounds.special_files(tmp_path_factory.mktemp("special"))}


@pytest.mark.parametrize("name", ["manifest as --dataset", "csv manifest to scan", "split metadata", "root metadata",
                                  "metadata folder", "recipe", "word list"])
def test_fifos_and_folders_as_input_files_are_refused_without_blocking(special, name):
    case = special[name]
    code, output, _ = command(*case.command, timeout=60)  # reading a FIFO would block: the timeout fails the test
    assert code == 2
    assert_one_error_line(output, f"{case.path} is a {case.kind}")


# --------------------------------------------------------------------------- images large once decoded


def _track_decoded(monkeypatch):
    """Patch `open_image` to note how many decoded images are alive each time one more is decoded."""
    from banglaocr.data import sources

    decoded: list[weakref.ref] = []
    counts: list[int] = []
    original = sources.open_image

    def tracking(source):
        image = original(source)
        decoded.append(weakref.ref(image))
        counts.append(sum(ref() is not None for ref in decoded))
        return image

    monkeypatch.setattr(sources, "open_image", tracking)
    return counts


def test_a_chunk_holds_model_inputs_not_decoded_images(tmp_path, monkeypatch):
    """Each image is resized for the model as soon as it is decoded: however many large images a chunk has,
    at most one decoded image is alive at a time (before: the whole chunk, decoded)."""
    from banglaocr import infer

    paths = bounds.large_images(tmp_path, count=6, side=1200)
    counts = _track_decoded(monkeypatch)
    shown = []
    monkeypatch.setattr(infer, "generate_readings", texts_only(lambda model, tokenizer, images, settings, **kw:
                        [shown.append(image.size) or "ক" for image in images]))
    readings = list(infer.read_images(None, None, paths, infer.default_read_settings()))
    assert [r.text for r in readings] == ["ক"] * 6 and len(counts) == 6
    assert max(counts) == 1, counts
    assert all(height == infer.default_read_settings().image.height for _, height in shown)


def test_images_beyond_the_held_budget_are_decoded_again_with_the_same_pixels(tmp_path, monkeypatch):
    """A chunk whose model inputs exceed HELD_MEGAPIXELS (here: a geometry that keeps large images large)
    holds what fits and decodes the rest again when its batch comes: the same pixels, the same batches."""
    import dataclasses

    from banglaocr import infer
    from banglaocr.data.pixels import QwenResize

    paths = bounds.large_images(tmp_path, count=5, side=640)
    settings = dataclasses.replace(infer.default_read_settings(), image=QwenResize(1024, 1 << 20))

    def read(budget):
        monkeypatch.setattr(infer, "HELD_MEGAPIXELS", budget)
        seen = []

        def fake(model, tokenizer, images, settings, **kw):
            seen.append((images.held_pixels, kw["sizes"]))
            return [str(list(image.getdata())[::997][:50]) for image in images]  # "reads" the pixels

        monkeypatch.setattr(infer, "generate_readings", texts_only(fake))
        return [r.text for r in infer.read_images(None, None, paths, settings)], seen

    counts = _track_decoded(monkeypatch)
    whole, seen_whole = read(1000.0)
    assert len(counts) == 5
    counts.clear()
    bounded, seen_bounded = read(0.9)  # holds 2 of the 5 model inputs (640x640 = 0.41 MP each)
    assert bounded == whole and seen_bounded[0][1] == seen_whole[0][1]
    assert seen_bounded[0][0] <= 0.9e6 < seen_whole[0][0]
    assert len(counts) == 5 + 3  # the three that did not fit, decoded again


def test_an_image_that_changed_before_its_batch_is_an_error_row(tmp_path, monkeypatch):
    from banglaocr import infer

    paths = bounds.large_images(tmp_path, count=3, side=64)
    monkeypatch.setattr(infer, "HELD_MEGAPIXELS", 0.0)  # hold nothing: every image is decoded again

    def fake(model, tokenizer, images, settings, **kw):
        paths[1].write_bytes(b"gone")
        return [str(image.size) for image in images]

    monkeypatch.setattr(infer, "generate_readings", texts_only(fake))
    readings = list(infer.read_images(None, None, paths, infer.default_read_settings()))
    assert [r.error is None for r in readings] == [True, False, True]
    assert "when read again" in readings[1].error and readings[1].text is None


@pytest.mark.slow  # the fake reader above shows the same pixels in the same batches; this, the same texts
def test_the_held_budget_changes_no_reading_of_a_real_model(tmp_path, monkeypatch):
    import torch

    from banglaocr import infer
    from banglaocr.config import ModelConfig
    from banglaocr.model.factory import load_model

    torch.manual_seed(0)
    tiny = load_model(ModelConfig(name_or_path="t", init="tiny"), None)
    paths = bounds.large_images(tmp_path, count=4, side=300)
    settings = infer.default_read_settings()
    whole = list(infer.read_images(tiny.model, tiny.tokenizer, paths, settings, batch_size=2))
    monkeypatch.setattr(infer, "HELD_MEGAPIXELS", 0.002)  # holds 2 of the 4 (32x32 each)
    bounded = list(infer.read_images(tiny.model, tiny.tokenizer, paths, settings, batch_size=2))
    assert [r.text for r in bounded] == [r.text for r in whole] and all(r.error is None for r in whole)


PEAKS_OF_PREDICT = """
import json, sys
from pathlib import Path
from typer.testing import CliRunner
from banglaocr.cli import app

def peak_mib():
    status = Path("/proc/self/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))) / 1024

peaks = []
for paths in json.loads(sys.argv[1]):
    Path("/proc/self/clear_refs").write_text("5")  # the peak starts again from what is resident now
    result = CliRunner().invoke(app, ["predict", "--model", "tiny", *paths])
    assert result.exit_code == 0, result.output
    peaks.append(peak_mib())
print(json.dumps(peaks))
"""
"""Runs `banglaocr predict --model tiny` on each list of paths in turn, in one process; prints each run's peak
RSS in MiB (the kernel's high-water mark, reset before each run)."""


def test_predict_peak_memory_does_not_grow_with_large_images(tmp_path):
    """The stated bound: predict on six 3000x3000 images peaks at most 69 MiB (two decoded images) above
    predict on one of them. Before, the chunk held all six decoded: 5 x 34 MiB more."""
    import json

    side = 3000
    paths = [str(path) for path in bounds.large_images(tmp_path / "images", count=6, side=side)]
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    result = subprocess.run([sys.executable, "-c", PEAKS_OF_PREDICT, json.dumps([paths[:1], paths])], cwd=tmp_path,
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    one, six = json.loads(result.stdout.splitlines()[-1])
    assert six <= one + 2 * bounds.decoded_bytes(side) / 2**20, (one, six)
