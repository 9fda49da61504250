"""Every file-system error during `banglaocr train` is one line (exit 2) that names the path and says what
to do, and the last good checkpoint resumes exactly: a disk that fills up at any write of a run (a small
tmpfs with all but K bytes taken, K stepped over the run's writes), an output folder made read-only or
removed while the run writes, a permission error, a metrics.jsonl whose last line was cut short.

The full sweep (`slow`) runs real `banglaocr train` processes over 24 write points of a short run (its
synthetic data rendered into the output folder too); the default run takes five of those points in this
process, one per stage of a run: the run folder, metrics.jsonl, TensorBoard, a checkpoint's weights,
final/. Where no tmpfs can be mounted (not root), a full disk is injected instead: the n-th file opened
for writing fails with ENOSPC (`disk.watch_writes`) - never skipped.
"""

from __future__ import annotations

import contextlib
import errno
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from banglaocr.train import loop

import train_helpers as helpers
from banglaocr.cli import app
from hostile_round2 import disk
from test_train_resume import sigterm_after_step

STEPS = 4
RUN = (f"train.max_steps={STEPS}", "train.eval_steps=2", "train.save_steps=2", "train.keep_last=100",
       "train.log_steps=1")
"""A short run with every writer: run.json, recipe.yaml, metrics.jsonl, TensorBoard, best/ (model card and
confusion heatmap) twice, two checkpoints, final/, test_predictions.jsonl, summary.json, curves.png. Every
checkpoint is kept, so the disk in use only grows (but for best/ replaced): each write can be the one that
fills it."""
DISK = 64 << 20
MOUNTABLE = disk.can_mount()
runner = CliRunner()


def run_here(out: Path, *extra: str, resume: bool = False):
    """`banglaocr train` in this process (CliRunner: exit code and output, stderr apart)."""
    args = ["train", "--recipe", "cpu_demo", "-o", str(out), *helpers.overrides(*RUN, *extra)]
    with helpers.one_thread():
        return runner.invoke(app, args + (["--resume", "auto"] if resume else []))


def weights(out: Path) -> dict:
    """The trainable weights of the last checkpoint and of final/."""
    return {"checkpoint": helpers.trainable(out / "checkpoints" / f"step-{STEPS}"),
            "final": helpers.trainable(out / "final")}


def assert_same_weights(out: Path, reference: dict) -> None:
    mine = weights(out)
    for which in ("checkpoint", "final"):
        assert sorted(mine[which]) == sorted(reference[which])
        for name, tensor in reference[which].items():
            assert mine[which][name].equal(tensor), f"{which} {name} differs from the uninterrupted run's"


def assert_one_line(code: int, stdout: str, stderr: str, path: Path, says: str) -> str:
    """Exit 2 with one `error:` line on stderr that names a path under `path` and says `says`; no traceback."""
    assert "Traceback" not in stdout + stderr, stdout + stderr
    assert code == 2, (code, stdout[-2000:], stderr[-2000:])
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr
    assert str(path) in errors[0] and says in errors[0], errors[0]
    return errors[0]


def assert_consistent_metrics(out: Path, steps: int = STEPS) -> None:
    """metrics.jsonl: every line a row, every step logged once."""
    lines = (out / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    rows = [json.loads(line) for line in lines]  # every line parses
    assert [row["step"] for row in rows if "samples_per_s" in row] == list(range(1, steps + 1))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run in this process: its weights, and the trace of where it wrote (on a tmpfs: how
    full the disk was at each file; else just the order of the files)."""
    if MOUNTABLE:
        with disk.small_disk(DISK) as mount:
            out = mount / "run"
            start = disk.used(mount)
            with disk.watch_writes(out, mount) as trace:
                result = run_here(out)
            assert result.exit_code == 0, result.output
            trace.append({"path": "<end>", "used": disk.used(mount)})
            return {"weights": weights(out), "trace": list(trace), "start": start}
    out = tmp_path_factory.mktemp("reference") / "run"
    with disk.watch_writes(out) as trace:
        result = run_here(out)
    assert result.exit_code == 0, result.output
    return {"weights": weights(out), "trace": list(trace), "start": 0}


# --------------------------------------------------------------------------- a full disk at a write point

STAGES = {
    "run folder": lambda kind: kind.endswith((".banglaocr.lock", "run.json")),
    "metrics.jsonl": lambda kind: kind.endswith("metrics.jsonl"),
    "tensorboard": lambda kind: kind.endswith("tensorboard/events"),
    "checkpoint weights": lambda kind: "checkpoints/step/model" in kind,
    "final/": lambda kind: kind.startswith("final/"),
}
"""Write points of the default run, one per stage of a run (the sweep takes them all)."""


def _first_point(reference: dict, stage: str) -> int:
    """The level (bytes left free) - or, without a tmpfs, the number of the open - that stops `stage`'s first
    write."""
    if MOUNTABLE:
        points = disk.write_points(reference["trace"], reference["start"])
        return next(level for level, path in points if STAGES[stage](disk.file_kind(path)))
    opens = [row["path"] for row in reference["trace"]]
    return next(i for i, path in enumerate(opens, start=1) if STAGES[stage](disk.file_kind(path)))


def full_disk_then_resume(reference: dict, stage: str, tmp_path: Path) -> tuple[Path, str]:
    """A run whose disk is full at `stage`'s first write (a filled tmpfs; else ENOSPC injected there): one
    line (returned); then, with the space freed, `--resume auto` ends with the uninterrupted run's weights."""
    point = _first_point(reference, stage)
    with contextlib.ExitStack() as stack:
        if MOUNTABLE:
            mount = stack.enter_context(disk.small_disk(DISK))
            out = mount / "run"
            filler = disk.fill(mount, leave=point)
            failed = run_here(out)
            filler.unlink()
        else:
            out = tmp_path / "run"
            with disk.watch_writes(out, fail_at=point):
                failed = run_here(out)
        line = assert_one_line(failed.exit_code, failed.stdout, failed.stderr, out,
                               "no space left on the device; free some disk space")
        resumed = run_here(out, resume=True)
        assert resumed.exit_code == 0 and "Traceback" not in resumed.output, resumed.output
        assert_same_weights(out, reference["weights"])
        assert_consistent_metrics(out)
        return out, line


@pytest.mark.parametrize("stage", ["run folder", "metrics.jsonl", "checkpoint weights", "final/"])
def test_a_full_disk_at_each_stage_of_a_run_is_one_line_and_resumes_exactly(stage, reference, tmp_path):
    out, line = full_disk_then_resume(reference, stage, tmp_path)
    if stage == "final/":  # after the last checkpoint: the line says where the run continues from
        assert line.endswith(f"then continue with --resume auto (it resumes from checkpoint step-{STEPS}, which "
                             "is intact)"), line


def test_a_full_disk_at_the_tensorboard_log_is_one_line(reference, tmp_path):
    """The TensorBoard event file is written in the run's own thread: a full disk there is the same one line
    naming the file (it was a background thread's traceback)."""
    out, line = full_disk_then_resume(reference, "tensorboard", tmp_path)
    assert f"{out / 'tensorboard'}/events.out.tfevents." in line, line


@pytest.mark.skipif(not MOUNTABLE, reason="needs a tmpfs to fill; the full-disk tests above inject one instead")
def test_tensorboard_rows_on_a_full_disk_fail_in_the_calling_thread():
    """Rows appended until the disk is full: the failing row raises the one line, here and now - no thread
    is left to print a traceback later."""
    import threading

    from banglaocr.errors import FilesystemError
    from banglaocr.train.tensorboard_log import TensorBoardLog

    with disk.small_disk(16 * disk.PAGE) as mount:
        disk.fill(mount, leave=disk.PAGE)
        log = TensorBoardLog(mount / "tensorboard")
        threads = threading.active_count()
        with pytest.raises(FilesystemError, match="events.out.tfevents.* no space left on the device"):
            for step in range(1, 10_000):
                log.write({"loss": 1.0 / step, "lr": 1e-3, "samples_per_s": 20.0}, step=step)
        assert step > 1 and threading.active_count() == threads
        log.close()


# --------------------------------------------------------------------------- permission, read-only, removed


def test_an_output_folder_made_read_only_mid_run_is_one_line_and_resumes(reference, tmp_path):
    out = tmp_path / "run"
    if MOUNTABLE:
        undo = disk.after_step(3, "read-only", out)
        try:
            failed = run_here(out)
        finally:
            undo()
            disk.unmount_all(out)
    else:  # the opens after step 3's log row (metrics.jsonl's 4th: steps 1, 2, the step 2 evaluation, 3) fail
        metrics_opens = [i for i, row in enumerate(reference["trace"], start=1) if row["path"] == "metrics.jsonl"]
        with disk.watch_writes(out, fail_at=metrics_opens[3] + 1, code=errno.EROFS):
            failed = run_here(out)
    line = assert_one_line(failed.exit_code, failed.stdout, failed.stderr, out,
                           "the file system is read-only; make")
    assert "free some disk space" not in line and "--resume auto" in line
    resumed = run_here(out, resume=True)
    assert resumed.exit_code == 0 and "Traceback" not in resumed.output, resumed.output
    assert_same_weights(out, reference["weights"])


def test_a_permission_error_is_not_called_a_full_disk(reference, tmp_path):
    """Root ignores permission bits, so EACCES is injected at a write of the second checkpoint."""
    out = tmp_path / "run"
    step_four = next(i for i, row in enumerate(reference["trace"], start=1) if "step-4" in row["path"])
    with disk.watch_writes(out, fail_at=step_four, code=errno.EACCES):
        failed = run_here(out)
    line = assert_one_line(failed.exit_code, failed.stdout, failed.stderr, out / "checkpoints",
                           "permission denied; fix the permissions of")
    assert line.startswith(f"error: cannot write checkpoint {out / 'checkpoints' / 'step-4'}"), line
    assert "disk space" not in line and "step-2, which is intact" in line
    resumed = run_here(out, resume=True)
    assert resumed.exit_code == 0, resumed.output
    assert_same_weights(out, reference["weights"])


def test_an_output_folder_removed_mid_run_is_one_line(tmp_path):
    """Removed after step 1's log row: the next row stops the run in one line that says the checkpoints went
    with it."""
    out = tmp_path / "run"
    undo = disk.after_step(1, "remove", out)
    try:
        failed = run_here(out)
    finally:
        undo()
    line = assert_one_line(failed.exit_code, failed.stdout, failed.stderr, out,
                           "was removed or replaced while training, and its checkpoints with it")
    assert "recreate it and start the run again" in line
    assert not out.exists()  # nothing was written into a folder created again


def test_an_output_folder_removed_before_a_checkpoint_is_not_created_again(tmp_path):
    """Removed just before the checkpoint of step 2 (no log row in between): the checkpoint would otherwise
    create the folder again and the run would go on writing into a folder that is no longer the run's."""
    out = tmp_path / "run"
    original = loop.TrainingRun.save_checkpoint

    def save_checkpoint(self):
        if self.state.step == 2:
            shutil.rmtree(out)
        return original(self)

    loop.TrainingRun.save_checkpoint = save_checkpoint
    try:
        failed = run_here(out)
    finally:
        loop.TrainingRun.save_checkpoint = original
    assert_one_line(failed.exit_code, failed.stdout, failed.stderr, out, "was removed or replaced while training")
    assert not out.exists()


# --------------------------------------------------------------------------- a torn metrics.jsonl


def test_a_torn_last_line_of_metrics_jsonl_is_dropped_with_a_note_on_resume(reference, tmp_path):
    out = tmp_path / "run"
    with pytest.MonkeyPatch.context() as patch:
        sigterm_after_step(patch, 3)
        stopped = run_here(out)
    assert stopped.exit_code == 143, stopped.output
    torn = disk.tear_last_line(out / "metrics.jsonl")
    resumed = run_here(out, resume=True)
    assert resumed.exit_code == 0 and "Traceback" not in resumed.output, resumed.output
    note = (f"note: dropped the last line of {out / 'metrics.jsonl'} (cut short by an interrupted write: "
            f"{torn.decode()!r})")
    assert "".join(note.split()) in "".join(resumed.stdout.split()), resumed.stdout  # the console wraps lines
    assert_consistent_metrics(out)
    assert_same_weights(out, reference["weights"])


def test_a_bad_line_inside_metrics_jsonl_is_one_line(tmp_path):
    out = tmp_path / "run"
    with pytest.MonkeyPatch.context() as patch:
        sigterm_after_step(patch, 3)
        assert run_here(out).exit_code == 143
    lines = (out / "metrics.jsonl").read_text().splitlines()
    lines[1] = lines[1][:20]
    (out / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    before = (out / "metrics.jsonl").read_bytes()
    resumed = run_here(out, resume=True)
    line = assert_one_line(resumed.exit_code, resumed.stdout, resumed.stderr, out / "metrics.jsonl",
                           "line 2 is not a metrics row")
    assert "delete that line" in line
    assert (out / "metrics.jsonl").read_bytes() == before


# --------------------------------------------------------------------------- the sweep, real processes


@pytest.mark.slow
def test_a_full_disk_at_every_write_point_of_a_real_run(tmp_path):
    """`banglaocr train` processes on a small tmpfs with all but K bytes taken, K at every write point of the
    run (rendering its synthetic data included): 0 tracebacks, exit 0 or one line naming the path, and after
    freeing the space `--resume auto` ends with the uninterrupted run's weights, bit for bit."""
    args = helpers.overrides(*RUN, "data.synth.dir=null")  # cpu_demo renders its data into the output folder
    env = helpers.subprocess_env()
    if not MOUNTABLE:
        _sweep_by_injection(tmp_path, args, env)
        return
    with disk.small_disk(DISK) as mount:
        out, trace = mount / "run", tmp_path / "trace.jsonl"
        start = disk.used(mount)
        hook = f"disk.trace_to_file({str(out)!r}, {str(mount)!r}, {str(trace)!r})"
        first = subprocess.run(disk.train_command(out, args, hook), env=env, capture_output=True, text=True,
                               timeout=600)
        assert first.returncode == 0 and "Traceback" not in first.stdout + first.stderr, first.stderr
        reference = weights(out)
        points = disk.write_points(disk.read_trace(trace), start, limit=24)
        total = disk.read_trace(trace)[-1]["used"] - start
        assert len(points) == 24, points  # the run writes far more than 24 files
        shutil.rmtree(out)
        outcomes = {}
        for level, path in [*points, (total + 16 * disk.PAGE, "<none: the run fits>")]:
            filler = disk.fill(mount, leave=level)
            failed = subprocess.run(disk.train_command(out, args), env=env, capture_output=True, text=True,
                                    timeout=600)
            assert "Traceback" not in failed.stdout + failed.stderr, (level, path, failed.stderr[-3000:])
            assert failed.returncode in (0, 2), (level, path, failed.stderr[-3000:])
            if failed.returncode == 2:
                assert_one_line(2, failed.stdout, failed.stderr, out, "no space left on the device; free some disk")
            filler.unlink()
            resumed = subprocess.run(disk.train_command(out, args, resume=True), env=env, capture_output=True,
                                     text=True, timeout=600)
            assert resumed.returncode == 0 and "Traceback" not in resumed.stdout + resumed.stderr, (
                level, path, resumed.stderr[-3000:])
            assert_same_weights(out, reference)
            assert_consistent_metrics(out)
            outcomes[disk.file_kind(path)] = failed.returncode
            shutil.rmtree(out)
        assert outcomes["<none: the run fits>"] == 0
        assert sum(code == 2 for code in outcomes.values()) >= len(points) // 2, outcomes


def _sweep_by_injection(tmp_path: Path, args: list[str], env: dict) -> None:
    """No tmpfs here: the n-th file the run opens for writing fails with ENOSPC, for every n."""
    out, trace_out = tmp_path / "run", tmp_path / "trace.jsonl"
    hook = f"disk.trace_to_file({str(out)!r}, {str(tmp_path)!r}, {str(trace_out)!r})"
    first = subprocess.run(disk.train_command(out, args, hook), env=env, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr
    reference = weights(out)
    opens = len(disk.read_trace(trace_out)) - 1
    assert opens > 100, opens
    for nth in sorted({round(1 + i * (opens - 1) / 23) for i in range(24)}):
        shutil.rmtree(out, ignore_errors=True)
        failed = subprocess.run(disk.train_command(out, args, f"disk.fail_writes_from({str(out)!r}, {nth})"),
                                env=env, capture_output=True, text=True, timeout=600)
        assert_one_line(failed.returncode, failed.stdout, failed.stderr, out, "no space left on the device")
        resumed = subprocess.run(disk.train_command(out, args, resume=True), env=env, capture_output=True,
                                 text=True, timeout=600)
        assert resumed.returncode == 0 and "Traceback" not in resumed.stdout + resumed.stderr, resumed.stderr
        assert_same_weights(out, reference)
