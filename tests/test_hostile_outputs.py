"""The user's files are never lost: one output policy for predict, eval and merge-lora, names of any bytes through
every format and `--resume`, outputs that are no regular file refused without blocking.

Cases come from `hostile_round2/outputs.py`. Refusals are checked with the model loader replaced by one that
fails the test (a refusal must come first); real reads use the shipped tiny model on 32 px word images.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

import train_helpers as helpers
from banglaocr.cli import app
from banglaocr.cli.predict_output import format_row, read_rows
from hostile_round2 import outputs as hostile

runner = CliRunner()
FORMATS = ("text", "csv", "jsonl")


def invoke(*args: str, input: bytes | str | None = None, seconds: float = 120.0):
    """The command in this process, one thread; fails the test if it has not finished within `seconds`
    (an output that blocks - a FIFO opened for writing - must be refused, not waited on)."""
    done = {}

    def target():
        with helpers.one_thread():
            done["result"] = runner.invoke(app, list(args), input=input)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"banglaocr {' '.join(args[:1])} blocked for {seconds} s"
    return done["result"]


def one_line_exit_2(result) -> str:
    assert result.exit_code == 2, result.output
    assert result.output.strip().count("\n") == 0 and "Traceback" not in result.output, result.output
    return result.output


@pytest.fixture
def no_model(monkeypatch):
    """Loading a model fails the test: every refusal here must come before it."""
    import banglaocr.cli.eval as eval_cli
    import banglaocr.cli.predict as predict_cli
    import banglaocr.merge as merge_module

    def must_not_load(*args, **kwargs):
        raise AssertionError("a model was loaded before --out was refused")

    monkeypatch.setattr(predict_cli, "load_quietly", must_not_load)
    monkeypatch.setattr(eval_cli, "load_quietly", must_not_load)
    monkeypatch.setattr(merge_module, "_load_adapter_model", must_not_load)


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[str]:
    """Word images under every hostile name, then plain ones: 32 inputs, 8 chunks of 4."""
    names = hostile.hostile_names()
    names += [f"plain{index:02d}.png" for index in range(32 - len(names))]
    return hostile.write_word_images(tmp_path_factory.mktemp("named"), names)


# --------------------------------------------------------------------------- names through every format


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_hostile_name_is_one_line_and_comes_back_byte_for_byte(fmt, tmp_path):
    names = hostile.hostile_names()
    out = tmp_path / f"rows.{fmt}"
    rows = "".join(format_row(name, f"লেখা{name}", None, fmt) if index % 2 else
                   format_row(name, None, f"no such file: {name}", fmt) for index, name in enumerate(names))
    header = "file,prediction,error,blank,confidence,flagged\n" if fmt == "csv" else ""
    out.write_bytes((header + rows).encode("utf-8"))  # strict UTF-8: nothing unencodable was written
    assert len(out.read_text(encoding="utf-8").splitlines()) == len(names) + bool(header)
    found = read_rows(out, fmt)
    assert [os.fsencode(name) for name in found.files] == [os.fsencode(name) for name in names]
    assert found.header == bool(header) and found.keep_bytes == out.stat().st_size


# --------------------------------------------------------------------------- refused before anything is read


@pytest.mark.parametrize("name", [*hostile.USER_FILES, "impostor-marker"])
@pytest.mark.parametrize("resume", [False, True], ids=["new-run", "resume"])
def test_predict_leaves_a_users_file_untouched(name, resume, images, tmp_path, no_model):
    if name == "impostor-marker":
        out = tmp_path / "rows.jsonl"  # no file yet, but the user's file where the marker would go
        hostile.impostor_marker(out)
    else:
        out = hostile.user_file(tmp_path, name)
    before = hostile.snapshot(tmp_path)
    output = one_line_exit_2(invoke("predict", "--model", "tiny", images[0], "--out", str(out),
                                    *(["--resume"] if resume else [])))
    assert "left as it is" in output and hostile.snapshot(tmp_path) == before


@pytest.mark.parametrize("kind", hostile.SPECIAL_OUTPUTS)
@pytest.mark.parametrize("flag", [None, "--resume", "--overwrite"])
def test_predict_refuses_outputs_that_are_no_regular_file_without_blocking(kind, flag, images, tmp_path, no_model):
    out = hostile.special_output(tmp_path, kind)
    before = hostile.snapshot(tmp_path)
    output = one_line_exit_2(invoke("predict", "--model", "tiny", images[0], "--out", str(out),
                                    *([flag] if flag else []), seconds=30))
    assert {"fifo": "FIFO", "symlink loop": "symlink loop", "broken symlink": "broken symlink"}[kind] in output
    assert hostile.snapshot(tmp_path) == before


@pytest.mark.parametrize("blocker", ["predictions.jsonl", "summary.json"])
def test_eval_refuses_a_fifo_where_a_result_file_goes_without_blocking(blocker, tmp_path, no_model):
    out = tmp_path / "eval"
    out.mkdir()
    os.mkfifo(out / blocker)
    for flag in ([], ["--overwrite"]):
        output = one_line_exit_2(invoke("eval", "--model", "tiny", "--dataset", str(tmp_path), "--out", str(out),
                                        *flag, seconds=30))
        assert f"{blocker} is a FIFO" in output
    assert sorted(p.name for p in out.iterdir()) == [blocker]


def test_eval_leaves_a_users_folder_untouched(tmp_path, no_model):
    folder = hostile.user_folder(tmp_path / "mine")
    before = hostile.snapshot(folder)
    output = one_line_exit_2(invoke("eval", "--model", "tiny", "--dataset", str(tmp_path), "--out", str(folder)))
    assert "is not a banglaocr eval folder" in output and "--overwrite" in output
    assert hostile.snapshot(folder) == before
    not_eval = tmp_path / "run"  # a training run's summary.json is not eval's
    not_eval.mkdir()
    (not_eval / "summary.json").write_text(json.dumps({"steps": 4, "val_cer": 0.5}), encoding="utf-8")
    one_line_exit_2(invoke("eval", "--model", "tiny", "--dataset", str(tmp_path), "--out", str(not_eval)))


@pytest.mark.parametrize("case", ["current folder", "holds the adapter", "the adapter", "the base", "home",
                                  "a users folder"])
def test_merge_lora_never_replaces_its_inputs_or_the_users_folders(case, tmp_path, monkeypatch, no_model):
    adapter = hostile.fake_adapter(tmp_path / "project" / "adapter")
    elsewhere = hostile.user_folder(tmp_path / "elsewhere")
    monkeypatch.chdir(elsewhere)
    monkeypatch.setenv("HOME", str(tmp_path / "project"))
    out, flags, expected = {
        "current folder": (".", ["--force"], "current folder"),
        "holds the adapter": (str(tmp_path / "project"), ["--overwrite"], "would replace the adapter folder"),
        "the adapter": (str(adapter), ["--force"], "would replace the adapter folder"),
        "the base": (str(adapter / "base"), ["--force"], "would replace the base folder"),
        "home": (str(tmp_path / "project"), ["--force"], "would replace the adapter folder"),
        "a users folder": (str(hostile.user_folder(tmp_path / "theirs")), [], "is not a banglaocr merge-lora folder"),
    }[case]
    if case == "home":
        hostile.user_folder(tmp_path / "home")
        monkeypatch.setenv("HOME", str(tmp_path / "home"))
        out, expected = str(tmp_path / "home"), "home folder"
    before = hostile.snapshot(tmp_path)
    output = one_line_exit_2(invoke("merge-lora", "--adapter", str(adapter), "--out", out, *flags))
    assert expected in output and hostile.snapshot(tmp_path) == before


def test_merge_lora_help_names_overwrite_and_its_alias_force():
    result = runner.invoke(app, ["merge-lora", "--help"], env={"COLUMNS": "250"})
    assert "--overwrite" in result.output and "--force" in result.output and "earlier name" in result.output


# --------------------------------------------------------------------------- real reads with the tiny model


def test_overwrite_replaces_a_users_file_and_a_rerun_replaces_predicts_own(images, tmp_path):
    out = hostile.user_file(tmp_path, "rows.jsonl")
    replaced = invoke("predict", "--model", "tiny", *images[:3], "--out", str(out), "--overwrite")
    assert replaced.exit_code == 0, replaced.output
    first = out.read_bytes()
    assert [json.loads(line)["file"] for line in first.decode().splitlines()] == images[:3]
    marker = json.loads((tmp_path / "rows.jsonl.banglaocr.json").read_text(encoding="utf-8"))
    assert marker["written_by"] == "banglaocr predict" and marker["format"] == "jsonl"
    again = invoke("predict", "--model", "tiny", *images[:3], "--out", str(out))  # its own file: no flag needed
    assert again.exit_code == 0 and out.read_bytes() == first


def test_resume_refuses_rows_of_another_reader_or_lines_predict_did_not_write(images, tmp_path):
    out = tmp_path / "rows.csv"
    first = invoke("predict", "--model", "tiny", *images[:4], "--out", str(out))
    assert first.exit_code == 0, first.output
    marker = out.with_name("rows.csv.banglaocr.json")
    before = hostile.snapshot(tmp_path)
    for args, expected in ((["--num-beams", "2"], "num beams differ"), (["--format", "jsonl"], "holds csv rows")):
        output = one_line_exit_2(invoke("predict", "--model", "tiny", *images, "--out", str(out), "--resume", *args))
        assert expected in output and hostile.snapshot(tmp_path) == before
    record = json.loads(marker.read_text(encoding="utf-8"))
    record["reader"]["weights"][0][0][1] += 1  # the model's weights changed since
    marker.write_text(json.dumps(record), encoding="utf-8")
    assert "weights differ" in one_line_exit_2(invoke("predict", "--model", "tiny", *images, "--out", str(out),
                                                      "--resume"))
    marker.write_bytes(before[str(marker)][1])  # the marker as predict wrote it
    with out.open("a", encoding="utf-8") as handle:
        handle.write("a line of the user's\n")
    edited = hostile.snapshot(tmp_path)
    assert "line 6" in one_line_exit_2(invoke("predict", "--model", "tiny", *images, "--out", str(out), "--resume"))
    assert hostile.snapshot(tmp_path) == edited


def test_full_disk_special_inputs_and_stdin_of_any_bytes(images, tmp_path):
    if os.path.exists("/dev/full"):
        output = one_line_exit_2(invoke("predict", "--model", "tiny", images[0], "--out", "/dev/full"))
        assert "no space left" in output
    loop = hostile.special_output(tmp_path, "symlink loop")
    broken = hostile.special_output(tmp_path, "broken symlink")
    stdin = b"\0".join(os.fsencode(path) for path in images[:16]) + b"\0"  # find -print0: names with \n too
    result = invoke("predict", "--model", "tiny", "--format", "jsonl", str(loop), str(broken), "-", input=stdin)
    assert result.exit_code == 1 and "Traceback" not in result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [row["file"] for row in rows] == [str(loop), str(broken), *images[:16]]
    assert rows[0]["error"].startswith("symlink loop") and rows[1]["error"].startswith("broken symlink")
    assert all("prediction" in row for row in rows[2:])
    lines = b"".join(os.fsencode(path) + b"\n" for path in images[11:16])  # one per line: not UTF-8, line breaks
    by_line = invoke("predict", "--model", "tiny", "--format", "jsonl", "-", input=lines)
    assert [json.loads(line)["file"] for line in by_line.stdout.splitlines()] == images[11:16]


READING = ("--chunk-size", "4", "--batch-size", "4")


@pytest.fixture(scope="module")
def uninterrupted(images, tmp_path_factory) -> dict[str, tuple[bytes, bytes]]:
    """Each format's rows file and marker from one uninterrupted run over the hostile names."""
    folder = tmp_path_factory.mktemp("whole")
    found = {}
    for fmt in FORMATS:
        out = folder / f"whole.{fmt}"
        result = invoke("predict", "--model", "tiny", "--format", fmt, *READING, "--out", str(out), *images)
        assert result.exit_code == 0, result.output
        found[fmt] = out.read_bytes(), out.with_name(out.name + ".banglaocr.json").read_bytes()
    return found


def _resume(out: Path, fmt: str, images: list[str], whole: bytes) -> None:
    resumed = invoke("predict", "--model", "tiny", "--format", fmt, *READING, "--out", str(out), "--resume", *images)
    assert resumed.exit_code == 0 and "rows were there already (--resume)" in resumed.stderr, resumed.output
    assert out.read_bytes() == whole, fmt
    assert [os.fsencode(name) for name in read_rows(out, fmt).files] == [os.fsencode(name) for name in images]


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_torn_last_line_is_cut_and_resume_equals_an_uninterrupted_run(fmt, images, uninterrupted, tmp_path):
    whole, marker = uninterrupted[fmt]
    lines = whole.splitlines(keepends=True)
    out = tmp_path / f"torn.{fmt}"
    out.write_bytes(b"".join(lines[:13]) + lines[13][:len(lines[13]) // 2])  # killed while writing a row
    out.with_name(out.name + ".banglaocr.json").write_bytes(marker)
    _resume(out, fmt, images, whole)


@pytest.mark.parametrize("fmt", [pytest.param(fmt, marks=[] if fmt == "jsonl" else [pytest.mark.slow])
                                 for fmt in FORMATS])
def test_killed_then_resumed_equals_an_uninterrupted_run(fmt, images, uninterrupted, tmp_path):
    """SIGKILL a real `banglaocr predict` after some rows, then --resume: the file is byte for byte the one an
    uninterrupted run writes, hostile names and all (jsonl in the default run, text and csv with -m slow)."""
    out = tmp_path / f"killed.{fmt}"
    command = [sys.executable, "-m", "banglaocr", "predict", "--model", "tiny", "--format", fmt, *READING,
               "--out", str(out), *images]
    child = subprocess.Popen(command, env=helpers.subprocess_env(), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and child.poll() is None:
        if out.is_file() and out.read_bytes().count(b"\n") >= 9:
            break
        time.sleep(0.01)
    assert child.poll() is None, "the run ended before it could be killed"
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert 9 <= out.read_bytes().count(b"\n") < len(images)
    _resume(out, fmt, images, uninterrupted[fmt][0])


def test_eval_writes_and_shows_ids_of_any_bytes_and_replaces_only_its_own_folder(tmp_path):
    data = tmp_path / "data"
    names = [name for name in hostile.hostile_names() if name.startswith("b")]  # bytes that are not UTF-8
    names += hostile.hostile_names()[:10 - len(names)]  # line breaks; 10 ids: all in the worst-10 table
    hostile.write_word_images(data, names)
    rows = [json.dumps({"file_name": name, "text": "কলম"}) for name in names]  # ASCII JSON: \udcNN for raw bytes
    (data / "metadata.jsonl").write_text("\n".join(rows) + "\n", encoding="utf-8")
    out = hostile.user_folder(tmp_path / "mine")
    command = ["eval", "--model", "tiny", "--dataset", str(data), "--split", "all", "--batch-size", "8",
               "--out", str(out)]
    theirs = hostile.snapshot(out)
    one_line_exit_2(invoke(*command))
    first = invoke(*command, "--overwrite")
    assert first.exit_code == 0 and "Traceback" not in first.output, first.output
    assert {key: value for key, value in hostile.snapshot(out).items() if key in theirs} == theirs
    lines = (out / "predictions.jsonl").read_bytes().decode("utf-8").splitlines()
    assert sorted(os.fsencode(json.loads(line)["id"]) for line in lines) == sorted(map(os.fsencode, names))
    assert "b00\\xff.png" in first.stdout and "w00\\nx.png" in first.stdout  # the table shows escapes
    again = invoke(*command)  # now eval's own folder: replaced without the flag
    assert again.exit_code == 0 and (out / "predictions.jsonl").read_bytes().decode("utf-8").splitlines() == lines
