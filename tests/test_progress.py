"""Training progress: the live bar on a terminal, plain lines when the output is piped (a Kaggle `!` cell)."""

from __future__ import annotations

import io
import re
import subprocess

import pytest
from rich.console import Console

import train_helpers as helpers
from banglaocr.train.progress import (
    PLAIN_LINES,
    PlainProgress,
    TrainProgress,
    live_bar,
    make_progress,
    plain_line,
    wants_live_display,
)

LINE = re.compile(r"^step (\d+)/(\d+)  loss \S+  lr \S+  \S+ samples/s  val CER \S+  .*elapsed \d+:\d\d:\d\d  "
                  r"ETA (-|\d+:\d\d:\d\d)")


class Clock:
    """A fake time source: each step takes `seconds`."""

    def __init__(self, seconds: float):
        self.now, self.seconds = 0.0, seconds

    def __call__(self) -> float:
        return self.now

    def tick(self) -> None:
        self.now += self.seconds


def piped_console() -> Console:
    return Console(file=io.StringIO(), width=80)  # a StringIO is not a terminal, as a pipe is not


def run_steps(progress: PlainProgress, clock: Clock, total: int, steps: int, **fields) -> list[str]:
    with progress:
        task = progress.add_task("train", total=total, loss="-", lr="-", speed="-", val_cer="-", left="")
        for step in range(1, steps + 1):
            clock.tick()
            progress.update(task, loss=f"{2 / step:.4f}", lr="1.00e-03", speed="8.0", **fields)
            progress.update(task, completed=step, left="")
    return progress.console.file.getvalue().splitlines()


def steps_of(lines: list[str]) -> list[int]:
    return [int(LINE.match(line).group(1)) for line in lines]


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_only_a_terminal_someone_watches_gets_a_live_bar(monkeypatch):
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "JPY_PARENT_PID", "KAGGLE_KERNEL_RUN_TYPE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TERM", "xterm")
    assert not isinstance(make_progress(Console(file=Tty(), width=80)), PlainProgress)
    assert isinstance(make_progress(piped_console()), PlainProgress)
    # Piped, with FORCE_COLOR=1 (as a Jupyter kernel sets it for its `!` commands): rich calls it a terminal.
    monkeypatch.setenv("FORCE_COLOR", "1")
    assert piped_console().is_terminal and isinstance(make_progress(piped_console()), PlainProgress)
    monkeypatch.delenv("FORCE_COLOR")
    # A `!` cell: IPython gives the command a pseudo-terminal, but the notebook keeps every redraw.
    assert not wants_live_display(Console(file=Tty(), width=80), environ={"JPY_PARENT_PID": "123"})
    assert not wants_live_display(Console(file=Tty(), width=80), environ={"KAGGLE_KERNEL_RUN_TYPE": "Batch"})
    monkeypatch.setenv("TERM", "dumb")  # a terminal that cannot redraw a line
    assert not wants_live_display(Console(file=Tty(), width=80))


def test_plain_lines_at_the_first_step_every_twentieth_of_the_run_and_the_last():
    clock = Clock(seconds=0.1)
    lines = run_steps(PlainProgress(console=piped_console(), get_time=clock), clock, total=100, steps=100)
    assert all(LINE.match(line) for line in lines), lines
    every = 100 // PLAIN_LINES
    assert steps_of(lines) == [1, *range(every, 101, every)]
    assert "loss 0.0200  lr 1.00e-03  8.0 samples/s" in lines[-1]
    # 0.1 s a step: the ETA of the line at step 50 is the 50 steps left.
    assert re.search(r"ETA 0:00:0[45]", lines[10]), lines[10]


def test_a_slow_run_prints_a_line_at_least_every_minute():
    clock = Clock(seconds=40.0)
    lines = run_steps(PlainProgress(console=piped_console(), get_time=clock, every_s=60.0), clock,
                      total=1000, steps=9)
    assert steps_of(lines) == [1, 3, 5, 7, 9]  # 80 s apart: the 50-step interval is never reached


def test_a_progress_that_is_never_started_prints_nothing():
    # Processes other than the main one update the progress but never start it.
    progress = PlainProgress(console=piped_console())
    task = progress.add_task("train", total=10)
    for step in range(1, 11):
        progress.update(task, completed=step)
    assert progress.console.file.getvalue() == ""


def test_health_fields_appear_in_the_plain_line_only_when_in_use():
    clock = Clock(seconds=1.0)
    lines = run_steps(PlainProgress(console=piped_console(), get_time=clock), clock, total=4, steps=1,
                      grad_norm="8.40e-01", scale="-", skipped="0")
    assert "grad_norm 8.40e-01  skipped 0" in lines[0] and "scale" not in lines[0]
    lines = run_steps(PlainProgress(console=piped_console(), get_time=clock), clock, total=4, steps=1,
                      grad_norm="inf", scale="32768", skipped="3")
    assert "grad_norm inf  scale 32768  skipped 3" in lines[0]


def test_calls_without_the_new_fields_still_render():
    progress = TrainProgress()
    progress.add_task("train", total=10, completed=2, loss="0.5", lr="1e-3", speed="3.0", val_cer="-", left="")
    assert plain_line(progress.tasks[0]).startswith("step 2/10  loss 0.5  lr 1e-3  3.0 samples/s  val CER -  elapsed")
    for width in (80, 120, 200):
        console = Console(file=io.StringIO(), width=width, force_terminal=True, color_system=None)
        bar = live_bar(console, time_limited=True)
        bar.add_task("train", total=10, completed=2, loss="0.5", lr="1e-3", speed="3.0", val_cer="-", left="1:00:00")
        console.print(bar.get_renderable())
        assert "2/10" in console.file.getvalue() and "left 1:00:00" in console.file.getvalue()


def render_bar(width: int, time_limited: bool = False) -> str:
    console = Console(file=io.StringIO(), width=width, force_terminal=True, color_system=None)
    bar = live_bar(console, time_limited=time_limited)
    bar.add_task("train", total=8000, completed=1200, loss="0.5829", lr="1.83e-03", speed="25.5", val_cer="0.225",
                 left="11:20:00", grad_norm="3.41e+00", scale="65536", skipped="12")
    console.print(bar.get_renderable())
    return console.file.getvalue()


def test_the_live_bar_shows_what_fits_on_one_line():
    """Every width shows step, loss, lr, samples/s, val CER, elapsed and ETA on one line, nothing cut off: at 80
    columns abbreviated (`25.5/s`, `CER`, elapsed<ETA), spelled out from about 105, health fields from 145."""
    for width in (80, 110, 150, 200):
        for time_limited in (False, True):
            text = render_bar(width, time_limited)
            assert text.count("\n") == 1 and "…" not in text, (width, time_limited, text)
            assert len(text.rstrip("\n")) <= width, (width, time_limited, text)
            for shown in ("1200/8000", "loss 0.5829", "lr 1.83e-03", "25.5", "CER 0.225", "0:00:00"):
                assert shown in text, (width, time_limited, shown, text)
            assert re.search(r"25\.5(/s| samples/s)", text) and re.search(r"0:00:00(<| ETA )-:--:--", text), text
            assert ("left 11:20:00" in text) == time_limited
    narrow = render_bar(80)
    assert "25.5/s" in narrow and "0:00:00<-:--:--" in narrow and "━" in narrow  # and a short bar
    assert "lr 1.83e-03  25.5 samples/s  val CER 0.225" in render_bar(110) and "grad" not in render_bar(110)
    wide = render_bar(150)
    assert "lr 1.83e-03  25.5 samples/s" in wide and "grad 3.41e+00  scale 65536  skipped 12" in wide


def run_in_a_pseudo_terminal(command: list[str], environ: dict) -> tuple[int, str]:
    """Run `command` with its stdout and stderr on a pseudo-terminal, as IPython runs a `!` command."""
    import os
    import pty
    import threading

    master, slave = pty.openpty()
    process = subprocess.Popen(command, env=environ, stdout=slave, stderr=slave, stdin=subprocess.DEVNULL)
    os.close(slave)
    chunks: list[bytes] = []

    def drain() -> None:  # read while it runs: a full pty buffer would block the child
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed its side
                return
            if not chunk:
                return
            chunks.append(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    code = process.wait(timeout=600)
    reader.join(timeout=30)
    os.close(master)
    return code, b"".join(chunks).decode("utf-8", errors="replace").replace("\r\n", "\n")


@pytest.mark.parametrize("output", ["pipe", "notebook cell"])
def test_piped_training_prints_progress_lines_between_evaluations(tmp_path, output):
    out = tmp_path / "run"
    command = helpers.cli_command(out, "train.max_steps=40", "train.eval_steps=20", "train.log_steps=5")
    # FORCE_COLOR=1, as a Jupyter kernel sets it for its `!` commands: still plain lines.
    environ = {**helpers.subprocess_env(), "COLUMNS": "200", "FORCE_COLOR": "1"}
    environ.pop("JPY_PARENT_PID", None)
    if output == "pipe":
        result = subprocess.run(command, env=environ, capture_output=True, text=True, timeout=600)
        code, said = result.returncode, result.stdout + result.stderr
    else:  # what a Jupyter or Kaggle `!` cell gives the command: a pseudo-terminal, the kernel's variables
        code, said = run_in_a_pseudo_terminal(command, {**environ, "JPY_PARENT_PID": "1", "TERM": "xterm-color"})
    assert code == 0, said[-3000:]
    lines = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", said).splitlines()  # FORCE_COLOR colours the other lines
    assert not any("\r" in line or "━" in line for line in lines), said[-3000:]  # no live bar redraws
    evaluations = [index for index, line in enumerate(lines) if re.match(r"step (20|40): val CER", line)]
    assert len(evaluations) == 2, said
    progress = {index: int(LINE.match(line).group(1)) for index, line in enumerate(lines) if LINE.match(line)}
    before = [step for index, step in progress.items() if index < evaluations[0]]
    between = [step for index, step in progress.items() if evaluations[0] < index < evaluations[1]]
    assert before and max(before) == 20 and between and 20 < min(between) and max(between) == 40, said
    assert all(line.count("/40") == 1 for index, line in enumerate(lines) if index in progress)
    # Once the first log row is in, the lines carry its loss and speed.
    late = lines[max(i for i, step in progress.items() if step == 40)]
    assert re.search(r"loss \d+\.\d{4}  lr \d\.\d\de-\d\d  \d+\.\d samples/s  val CER \d\.\d{3}", late), late
