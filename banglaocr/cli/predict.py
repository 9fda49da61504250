"""`banglaocr predict`: read word images with a trained model; one output row per input image.

Inputs are image files, folders (searched recursively for image files, sorted), glob patterns
(expanded here too, for shells that do not) or `-` (newline-separated paths on stdin). Every
image gets exactly one row, in input order. An image that cannot be read - missing, empty,
truncated, not an image, too large - gets an error row and the rest go on; the exit code is
then 1. A blank image (no ink) gets an empty prediction marked as blank, never an invented word. An
image whose logits turned non-finite while it was read (an fp16 overflow) gets an error row too
(`infer.NONFINITE_ERROR`), never the garbage the model wrote, and stderr says how many.
Rows go to stdout (progress to stderr) or to `--out`, the only file this command writes; `--out`
is checked before the model is loaded.

Formats: `text` (`file<TAB>prediction`, or `file<TAB>ERROR: reason`; a blank image's prediction
is empty), `jsonl` (`{"file": ..., "prediction": ...}`, plus `"blank": true` for a blank image, or
`{"file": ..., "error": ...}`), `csv` (columns `file,prediction,error,blank`). The default follows
the `--out` suffix (.jsonl, .csv), else text.

This module also holds the options `predict` and `eval` share (model, adapter, precision, ...).

>>> expand_inputs(["/no/such/file.png"])
[('/no/such/file.png', None)]
"""

from __future__ import annotations

import csv
import glob
import io
import json
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Annotated

import typer

from banglaocr.cli.common import (AdapterOption, BatchSizeOption, DeviceOption, ModelOption, NumBeamsOption,
                                  PrecisionOption, check_writable, err_console, launched_processes, load_quietly,
                                  progress_bar, user_errors)
from banglaocr.cli.conventions import one_of

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".pbm", ".pgm", ".ppm")
FORMATS = ("text", "jsonl", "csv")
PROGRESS_FROM = 64
"""Show a progress bar from this many inputs on (fewer finish before a bar would help)."""
CHUNK_INPUTS = 1024
"""Default of --chunk-size: inputs decoded and read at a time (several processes share a chunk's batches)."""


def _is_glob(text: str) -> bool:
    return any(char in text for char in "*?[")


def _folder_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def expand_inputs(inputs: list[str], stdin_lines: list[str] | None = None) -> list[tuple[str, str | None]]:
    """Inputs -> `(file, error)` pairs in order; error is None for a file to read.

    A folder gives its image files (recursive, sorted); a pattern that is not an existing path is
    globbed (sorted); `-` stands for `stdin_lines` (each expanded the same way). An input that
    gives nothing - a folder without images, a pattern that matches nothing - is one error row,
    never silently dropped. A path that does not exist is kept: reading it fails into an error row.
    """
    pairs: list[tuple[str, str | None]] = []
    for item in inputs:
        if item == "-":
            lines = [line.strip() for line in (stdin_lines or [])]
            pairs.extend(expand_inputs([line for line in lines if line and line != "-"]))
            continue
        path = Path(item).expanduser()
        if path.is_dir():
            found = _folder_images(path)
            pairs.extend((str(p), None) for p in found)
            if not found:
                pairs.append((item, f"no image files ({', '.join(IMAGE_SUFFIXES[:4])}, ...) in this folder"))
        elif not path.exists() and _is_glob(item):
            matches = sorted(glob.glob(str(path), recursive=True))
            files = [m for m in matches if Path(m).is_file()]
            for match in matches:
                if Path(match).is_dir():
                    files.extend(str(p) for p in _folder_images(Path(match)))
            pairs.extend((f, None) for f in files)
            if not files:
                pairs.append((item, "no file matches this pattern"))
        else:
            pairs.append((item, None))
    return pairs


def _one_line(text: str) -> str:
    """Tabs and line breaks escaped, so a row of text output stays one line of two fields."""
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def format_row(file: str, prediction: str | None, error: str | None, fmt: str, blank: bool = False) -> str:
    """One output line (with its newline) in `fmt`; `blank`: the image holds no ink (empty prediction).

    >>> format_row("a.png", "আমি", None, "text")
    'a.png\\tআমি\\n'
    >>> format_row("b.png", None, "empty file", "jsonl")
    '{"file": "b.png", "error": "empty file"}\\n'
    >>> format_row("c.png", "", None, "jsonl", blank=True)
    '{"file": "c.png", "prediction": "", "blank": true}\\n'
    """
    if fmt == "jsonl":
        row = {"file": file, "error": error} if error is not None else {"file": file, "prediction": prediction}
        if blank:
            row["blank"] = True
        return json.dumps(row, ensure_ascii=False) + "\n"
    if fmt == "csv":
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerow([file, prediction or "", error or "",
                                                          "true" if blank else ""])
        return buffer.getvalue()
    value = f"ERROR: {error}" if error is not None else prediction
    return f"{_one_line(file)}\t{_one_line(value or '')}\n"


def _choose_format(fmt: str | None, out: Path | None) -> str:
    from banglaocr.errors import UserError

    if fmt is None:
        suffix = out.suffix.lower() if out is not None else ""
        return {".jsonl": "jsonl", ".csv": "csv"}.get(suffix, "text")
    if fmt not in FORMATS:
        raise UserError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    return fmt


def _open_output(out: Path, append: bool):
    from banglaocr.errors import UserError

    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        # Line-buffered: every row reaches the file as it is written, so a killed job loses no finished row.
        return out.open("a" if append else "w", encoding="utf-8", newline="", buffering=1)
    except OSError as err:
        raise UserError(f"cannot write {out}: {err.strerror or err}") from None


def _unescape(text: str) -> str:
    """Undo `_one_line`."""
    out, chars = [], iter(text)
    for char in chars:
        if char == "\\":
            nxt = next(chars, "")
            out.append({"t": "\t", "n": "\n", "r": "\r", "\\": "\\"}.get(nxt, "\\" + nxt))
        else:
            out.append(char)
    return "".join(out)


def rows_already_written(out: Path, fmt: str) -> tuple[list[str], bool]:
    """For `--resume`: the input file of every row already in `out`, in order, and whether the file has a
    header (csv). A last line without its newline (the job was killed while writing it) is cut off.

    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "p.jsonl"
    >>> _ = out.write_text('{"file": "a.png", "prediction": "ক"}\\n{"file": "b.p')
    >>> rows_already_written(out, "jsonl")[0], out.read_text()
    (['a.png'], '{"file": "a.png", "prediction": "ক"}\\n')
    """
    from banglaocr.errors import UserError

    if not out.is_file():
        return [], False
    data = out.read_bytes()
    if data and not data.endswith(b"\n"):
        with out.open("r+b") as handle:
            handle.truncate(data.rfind(b"\n") + 1)
        data = data[:data.rfind(b"\n") + 1]
    lines = data.decode("utf-8", errors="replace").splitlines()
    if fmt == "csv":
        rows = list(csv.reader(lines))
        header = bool(rows) and rows[0] == ["file", "prediction", "error", "blank"]
        return [row[0] for row in rows[1 if header else 0:] if row], header
    try:
        files = [json.loads(line)["file"] if fmt == "jsonl" else _unescape(line.split("\t", 1)[0])
                 for line in lines if line.strip()]
    except (ValueError, KeyError, TypeError):
        raise UserError(f"--resume: {out} is not {fmt} output of predict; give the same --format as the "
                        "first run, or another --out") from None
    return files, False


def resume_plan(pairs: list[tuple[str, str | None]], written: list[str], chunk_size: int):
    """(inputs to read, how many of their rows are already written): a killed job of the SAME inputs wrote a
    prefix of them; reading again from the start of its unfinished chunk gives the very batches - and so
    the very rows - of an uninterrupted run. Other inputs: read those without a row.

    >>> pairs = [(f"{i}.png", None) for i in range(5)]
    >>> todo, skip = resume_plan(pairs, ["0.png", "1.png", "2.png"], chunk_size=2)
    >>> [f for f, _ in todo], skip
    (['2.png', '3.png', '4.png'], 1)
    """
    if [file for file, _ in pairs[:len(written)]] == written:
        start = len(written) // chunk_size * chunk_size
        return pairs[start:], len(written) - start
    left, remaining = Counter(written), []
    for pair in pairs:
        if left[pair[0]] > 0:
            left[pair[0]] -= 1
        else:
            remaining.append(pair)
    return remaining, 0


def _predict_rows(loaded, settings, pairs, reading: tuple[int, int, int], rank: int, world: int, on_batch):
    """Yield (file, prediction, error, blank, nonfinite) for `pairs`, in order, on every process (several processes
    share the generation, `read_images`). `reading` = (batch size, beams, chunk size)."""
    from banglaocr.infer import read_images

    batch_size, num_beams, chunk_size = reading
    readable = [file for file, error in pairs if error is None]
    readings = read_images(loaded.model, loaded.tokenizer, readable, settings, batch_size=batch_size,
                           num_beams=num_beams, chunk_size=chunk_size, process_index=rank, num_processes=world,
                           on_batch=on_batch if world == 1 else None)
    for file, error in pairs:
        if error is not None:
            yield file, None, error, False, False
        else:
            found = next(readings)
            yield file, found.text, found.error, found.blank, found.nonfinite


def predict(
    model: ModelOption,
    inputs: Annotated[
        list[str], typer.Argument(metavar="INPUT...",
                                  help="Image files, folders, glob patterns, or - (paths on stdin).")
    ],
    adapter: AdapterOption = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", metavar="FILE", help="Write rows to this file (default: stdout).")
    ] = None,
    fmt: Annotated[
        str | None, typer.Option("--format", "-f", metavar=one_of(FORMATS),
                                 help="Output format (default: from --out's suffix, else text).")
    ] = None,
    batch_size: BatchSizeOption = 16,
    num_beams: NumBeamsOption = 1,
    precision: PrecisionOption = "auto",
    device: DeviceOption = None,
    chunk_size: Annotated[
        int, typer.Option("--chunk-size", min=1, metavar="N",
                          help="Inputs decoded and read at a time before their rows are written (memory "
                               "held, and at most what a killed job reads again).")
    ] = CHUNK_INPUTS,
    resume: Annotated[
        bool, typer.Option("--resume", help="Keep the rows already in --out and read only the inputs that have "
                                            "none (after a killed job); new rows are appended.")
    ] = False,
) -> None:
    """Read word images with a trained model: one row per image, in input order.

    Example: banglaocr predict --model tiny examples/words/*.png
    Or: banglaocr predict --model runs/cpu_demo scans/ extra/*.png --format jsonl --out predictions.jsonl
    Paths on stdin: find scans -name '*.png' | banglaocr predict --model runs/cpu_demo -
    Millions of scans, 4 GPUs, resumable: accelerate launch --num_processes 4 -m banglaocr predict --model
    runs/kaggle_t4x2 scans/ --out rows.jsonl --resume
    """
    with user_errors():
        output_format = _choose_format(fmt, out)
        stdin_lines = sys.stdin.read().splitlines() if "-" in inputs else None
        pairs = expand_inputs(inputs, stdin_lines)
        rank, world, launched_device = launched_processes()
        main = rank == 0
        if resume and out is None:
            from banglaocr.errors import UserError

            raise UserError("--resume needs --out (the file whose rows are kept)")
        if out is not None and main:
            check_writable(out, "file")  # before minutes of loading and reading, not after
        written, has_header = rows_already_written(out, output_format) if resume and main else ([], False)
        if resume and world > 1:  # the main process read (and mended) the file: everyone plans from that
            from accelerate.utils import broadcast_object_list

            written, has_header = broadcast_object_list([written, has_header])
        todo, skip = resume_plan(pairs, written, chunk_size)
        loaded, settings = load_quietly(model, adapter, precision, device or launched_device)
        counts = _write_rows(loaded, settings, todo, skip, out, output_format, resume, has_header,
                             (batch_size, num_beams, chunk_size), rank, world)
    _report(counts, len(pairs), len(written), out, main)


def _write_rows(loaded, settings, todo, skip: int, out, output_format, resume, has_header,
                reading: tuple[int, int, int], rank, world) -> dict:
    """Read `todo` and write its rows in input order, but for the first `skip` (written already); the main
    process writes. Returns the counts. `reading` = (batch size, beams, chunk size)."""
    main = rank == 0
    handle = _open_output(out, append=resume) if out is not None and main else None
    counts = {"failed": 0, "blank": 0, "nonfinite": 0, "written": 0}
    try:
        write = handle.write if handle is not None else (sys.stdout.write if main else (lambda text: None))
        if output_format == "csv" and not has_header:
            write("file,prediction,error,blank\n")
        with progress_bar(len(todo), "predict", show=main and len(todo) >= PROGRESS_FROM) as advance:
            for index, (file, text, error, blank, nonfinite) in enumerate(
                    _predict_rows(loaded, settings, todo, reading, rank, world, advance)):
                if world > 1:
                    advance(1)
                if index < skip:
                    continue
                counts["failed"] += error is not None
                counts["blank"] += blank
                counts["nonfinite"] += nonfinite
                counts["written"] += 1
                write(format_row(file, text, error, output_format, blank=blank))
    except BrokenPipeError:
        # The reader of stdout went away (`| head`): stop quietly, like other command-line tools.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise typer.Exit(1) from None
    finally:
        if handle is not None:
            handle.close()
    return counts


def _report(counts: dict, total: int, kept: int, out: Path | None, main: bool) -> None:
    if not main:
        return
    if counts["blank"]:
        err_console.print(f"{counts['blank']} blank image(s) (no ink): empty prediction", highlight=False)
    if counts["nonfinite"]:
        from banglaocr.infer import NONFINITE_ERROR

        err_console.print(f"[yellow]{counts['nonfinite']} image(s): {NONFINITE_ERROR} (their rows are errors)[/]",
                          highlight=False)
    if out is not None:
        resumed = f"; {kept} rows were there already (--resume)" if kept else ""
        err_console.print(f"wrote {counts['written']} rows to {out} ({counts['failed']} failed){resumed}",
                          highlight=False)
    if counts["failed"]:
        if out is None:
            err_console.print(f"[yellow]{counts['failed']} of {total} input(s) could not be read[/]", highlight=False)
        raise typer.Exit(1)
