"""Model folders from others: code planted in one never runs, and every file that lies is one line, exit 2.

The planted folder (an unknown model_type whose `auto_map` points into the folder's own module, which writes
a marker file when imported) is named as `--model` of predict and eval, as `--tokenizer` of scan-dims and as
`model.name_or_path` of train - each in its own process on a real pseudo-terminal with "y" typed, as a user
answering transformers' "Do you wish to run the custom code? [y/N]" would - and with every command (also
merge-lora's --base and an adapter's base, train --dry-run) in this process with "y" on stdin. The crafted
folders (`hostile_round2.model_folders.CASES`: config, weights, shards, tokenizer, generation config, processor
config, read settings, adapter config, adapter weights, the adapter's base) go through every command in this
process (predict, eval, merge-lora, train and its dry run): most refusals come before any weights load, so all
of them take seconds.
"""

from __future__ import annotations

import os
import re
import select
import shutil
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

import train_helpers as helpers
from banglaocr.cli import app
from hostile_round2 import model_folders as crafted

runner = CliRunner()
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")
CASES = {case.name: case for case in crafted.CASES}
COMMANDS = ("predict", "eval", "merge-lora", "train --dry-run", "train")


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("model-folders")


@pytest.fixture(scope="module")
def good(root) -> dict[str, Path]:
    with helpers.one_thread():
        return {"full": crafted.good_full_folder(root / "good-full"),
                "adapter": crafted.good_adapter_folder(root / "good-adapter")}


@pytest.fixture(scope="module")
def image(root) -> Path:
    from PIL import Image, ImageDraw

    image = Image.new("L", (96, 32), 255)
    ImageDraw.Draw(image).rectangle([10, 8, 40, 24], fill=0)
    image.save(root / "word.png")
    return root / "word.png"


@pytest.fixture(scope="module")
def dataset() -> Path:
    return helpers.synth_dir()


def command_line(command: str, model: Path, *, good: dict[str, Path], image: Path, dataset: Path, out: Path,
                 kind: str = "full") -> list[str]:
    """`command` with `model` where it names a model: predict/eval --model, merge-lora --adapter (an adapter)
    or --base (a full model, under the good adapter), train's model.name_or_path."""
    if command == "predict":
        return ["predict", "--model", str(model), str(image)]
    if command == "eval":
        return ["eval", "--model", str(model), "--dataset", str(dataset), "--split", "all", "-n", "2",
                "--out", str(out)]
    if command == "merge-lora":
        if kind == "adapter":
            return ["merge-lora", "--adapter", str(model), "--out", str(out)]
        return ["merge-lora", "--adapter", str(good["adapter"]), "--base", str(model), "--out", str(out)]
    lora = ["lora.r=2"] if kind == "adapter" else []
    line = ["train", "--recipe", "cpu_demo", "-o", str(out),
            *helpers.overrides("model.init=pretrained", f"model.name_or_path={model}", *lora)]
    return [*line, "--dry-run"] if command == "train --dry-run" else line


def invoke(args: list[str]):
    with helpers.one_thread():
        return runner.invoke(app, args)


def assert_one_line(result, *names: str) -> str:
    """Exit 2, no traceback, exactly one line, naming each of `names`; the line."""
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    for name in names:
        assert name in lines[0], (name, lines[0])
    return lines[0]


def _crafted(case_name: str, root: Path, good: dict[str, Path], command: str) -> Path:
    case = CASES[case_name]
    return crafted.craft(case, good[case.base], root / f"{command.replace(' ', '_')}-{case.name}")


# --------------------------------------------------------------------------- code planted in a folder


def _run_in_terminals(commands: dict[str, list[str]], timeout: float = 420.0) -> dict[str, tuple[int, str]]:
    """Each command in its own process on its own pseudo-terminal (stdin, stdout and stderr), "y" typed at
    once and again at every "[y/N]"; name -> (exit code, output). The processes run side by side."""
    running = {}
    for name, args in commands.items():
        master, slave = os.openpty()
        attrs = termios.tcgetattr(slave)
        attrs[3] &= ~termios.ECHO  # what is typed is not program output
        termios.tcsetattr(slave, termios.TCSANOW, attrs)
        process = subprocess.Popen([sys.executable, "-m", "banglaocr", *args], stdin=slave, stdout=slave,
                                   stderr=slave, env={**helpers.subprocess_env(), "TERM": "xterm"}, close_fds=True)
        os.close(slave)
        os.write(master, b"y\n")
        running[master] = (name, process, bytearray())
    deadline = time.monotonic() + timeout
    open_masters = set(running)
    while open_masters and time.monotonic() < deadline:
        ready, _, _ = select.select(list(open_masters), [], [], 1.0)
        for master in ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the process closed its terminal
                chunk = b""
            if not chunk:
                open_masters.discard(master)
                continue
            running[master][2].extend(chunk)
            if b"[y/N]" in chunk:
                os.write(master, b"y\n")
    results = {}
    for master, (name, process, output) in running.items():
        try:
            code = process.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            code = process.wait()
        os.close(master)
        results[name] = (code, ANSI.sub("", output.decode("utf-8", "replace")).replace("\r", ""))
    return results


def test_planted_code_never_runs_even_when_y_is_typed_in_a_terminal(root, good, image, dataset):
    marker = root / "planted-code-ran"
    planted = crafted.planted_folder(root / "planted", marker)
    where = {"good": good, "image": image, "dataset": dataset}
    commands = {
        "predict --model": command_line("predict", planted, out=root / "o1", **where),
        "eval --model": command_line("eval", planted, out=root / "o2", **where),
        "scan-dims --tokenizer": ["scan-dims", "--dataset", str(dataset), "--tokenizer", str(planted)],
        "train model.name_or_path": command_line("train", planted, out=root / "o3", **where),
    }
    results = _run_in_terminals(commands)
    assert not marker.exists(), marker.read_text()
    for name, (code, output) in results.items():
        lines = [line for line in output.splitlines() if line.strip()]
        assert code == 2, (name, output)
        assert len(lines) == 1 and "Traceback" not in output, (name, output)
        assert "trust_remote_code" in lines[0] and str(planted) in lines[0], (name, lines[0])
    assert not any((root / f"o{n}").exists() for n in range(1, 4))  # refused before anything was written


@pytest.mark.parametrize("command", [*COMMANDS, "scan-dims", "merge-lora --adapter"])
def test_planted_code_never_runs_with_y_on_stdin(command, root, good, image, dataset):
    """Every command that takes a model, in this process, with "y" waiting on stdin (the merge-lora cases:
    the planted folder as --base under a good adapter, and as the base an adapter names)."""
    import json

    marker = root / f"planted-ran-{command.replace(' ', '_')}"
    planted = crafted.planted_folder(root / f"planted-{command.replace(' ', '_')}", marker)
    out = root / f"planted-out-{command.replace(' ', '_')}"
    if command == "scan-dims":
        args = ["scan-dims", "--dataset", str(dataset), "--tokenizer", str(planted)]
    elif command == "merge-lora --adapter":
        adapter = root / "adapter-on-planted"
        if not adapter.exists():
            shutil.copytree(good["adapter"], adapter)
            config = json.loads((adapter / "adapter_config.json").read_text(encoding="utf-8"))
            config["base_model_name_or_path"] = str(planted)
            (adapter / "adapter_config.json").write_text(json.dumps(config), encoding="utf-8")
        args = ["merge-lora", "--adapter", str(adapter), "--out", str(out)]
    else:
        args = command_line(command, planted, good=good, image=image, dataset=dataset, out=out)
    with helpers.one_thread():
        result = runner.invoke(app, args, input="y\n")
    assert_one_line(result, "trust_remote_code", str(planted))
    assert not marker.exists() and not out.exists()


def test_transformers_cannot_prompt_where_a_caller_forgets_trust_remote_code(root, monkeypatch):
    """Defence in depth: once banglaocr's loaders are imported, transformers' own prompt raises instead of
    reading stdin (here: AutoConfig called with trust_remote_code unset)."""
    import builtins

    import banglaocr.model.factory  # noqa: F401 - importing the loaders applies the guard
    from transformers import AutoConfig

    marker = root / "planted-code-ran-directly"
    planted = crafted.planted_folder(root / "planted-direct", marker)
    asked = []
    monkeypatch.setattr(builtins, "input", lambda *args: asked.append(args) or "y")
    with pytest.raises(ValueError, match="trust_remote_code"):
        AutoConfig.from_pretrained(str(planted))
    assert not asked and not marker.exists()


# --------------------------------------------------------------------------- crafted folders


@pytest.mark.parametrize("case_name", list(CASES))
def test_crafted_folder_as_predict_model_is_one_line(case_name, root, good, image, dataset):
    folder = _crafted(case_name, root, good, "predict")
    result = invoke(command_line("predict", folder, good=good, image=image, dataset=dataset, out=root / "unused"))
    assert_one_line(result, *CASES[case_name].names)


@pytest.mark.parametrize("case_name", list(CASES))
def test_crafted_folder_in_a_dry_run_is_one_line(case_name, root, good, image, dataset):
    folder = _crafted(case_name, root, good, "dry")
    out = root / f"dry-out-{case_name}"
    result = invoke(command_line("train --dry-run", folder, good=good, image=image, dataset=dataset, out=out,
                                 kind=CASES[case_name].base))
    assert_one_line(result, *CASES[case_name].names)
    assert not out.exists()


def _other_commands(case_names) -> list:
    return [pytest.param(name, command, id=f"{command.replace(' ', '_')}-{name}")
            for name in case_names for command in ("eval", "merge-lora", "train")]


@pytest.mark.parametrize(("case_name", "command"), _other_commands(CASES))
def test_crafted_folder_with_eval_merge_and_train_is_one_line(case_name, command, root, good, image, dataset):
    folder = _crafted(case_name, root, good, command)
    out = root / f"out-{command}-{case_name}"
    result = invoke(command_line(command, folder, good=good, image=image, dataset=dataset, out=out,
                                 kind=CASES[case_name].base))
    assert_one_line(result, *CASES[case_name].names)
    assert not out.exists()


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("kind", ["a file", "an empty folder"])
def test_a_file_or_an_empty_folder_as_the_model_is_one_line(kind, command, root, good, image, dataset):
    place = root / f"{kind.replace(' ', '-')}-{command.replace(' ', '_')}"
    place.mkdir()
    model = crafted.folder_is_a_file(place) if kind == "a file" else crafted.empty_folder(place)
    out = root / f"out-{kind}-{command}"
    result = invoke(command_line(command, model, good=good, image=image, dataset=dataset, out=out,
                                 kind="adapter" if command == "merge-lora" else "full"))
    assert_one_line(result, str(model))
    assert not out.exists()


def test_the_good_folders_still_read_and_train(root, good, image, dataset):
    """The checks refuse lies, not folders banglaocr writes: the untouched folders read and dry-run."""
    from banglaocr.model.folder_check import check_config, check_model_folder
    from banglaocr.model.shipped import MODELS_DIR

    for kind, folder in good.items():
        result = invoke(command_line("predict", folder, good=good, image=image, dataset=dataset, out=root / "x"))
        assert result.exit_code == 0 and str(image) in result.output, result.output
        result = invoke(command_line("train --dry-run", folder, good=good, image=image, dataset=dataset,
                                     out=root / f"dry-good-{kind}", kind=kind))
        assert result.exit_code == 0, result.output
    assert check_model_folder(MODELS_DIR / "tiny").model_type == "qwen3_vl"
    assert check_config(MODELS_DIR / "qwen3-vl-2b-arch", False).text_config.num_hidden_layers == 28
