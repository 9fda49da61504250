"""`banglaocr predict`: read word images with a trained model; one output row per input image.

Inputs are image files, folders (searched recursively for image files, sorted), glob patterns
(expanded here too, for shells that do not) or `-` (newline-separated paths on stdin). Every
image gets exactly one row, in input order. An image that cannot be read - missing, empty,
truncated, not an image, too large - gets an error row and the rest go on; the exit code is
then 1. A blank image (no ink) gets an empty prediction marked as blank, never an invented word.
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
from pathlib import Path
from typing import Annotated

import typer

from banglaocr.cli.common import (AdapterOption, BatchSizeOption, DeviceOption, ModelOption, NumBeamsOption,
                                  PrecisionOption, check_writable, err_console, load_quietly, progress_bar,
                                  user_errors)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".pbm", ".pgm", ".ppm")
FORMATS = ("text", "jsonl", "csv")
PROGRESS_FROM = 64
"""Show a progress bar from this many inputs on (fewer finish before a bar would help)."""

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


def _open_output(out: Path):
    from banglaocr.errors import UserError

    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        return out.open("w", encoding="utf-8", newline="")
    except OSError as err:
        raise UserError(f"cannot write {out}: {err.strerror or err}") from None


def predict(
    model: ModelOption,
    inputs: Annotated[list[str], typer.Argument(help="Image files, folders, glob patterns, or - (paths on stdin).")],
    adapter: AdapterOption = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write rows to this file (default: stdout).")] = None,
    fmt: Annotated[
        str | None, typer.Option("--format", "-f", help="text, jsonl or csv (default: from --out's suffix, else text).")
    ] = None,
    batch_size: BatchSizeOption = 16,
    num_beams: NumBeamsOption = 1,
    precision: PrecisionOption = "auto",
    device: DeviceOption = None,
) -> None:
    """Read word images with a trained model: one row per image, in input order.

    Example: banglaocr predict --model tiny examples/words/*.png
    Or: banglaocr predict --model runs/cpu_demo scans/ extra/*.png --format jsonl --out predictions.jsonl
    Paths on stdin: find scans -name '*.png' | banglaocr predict --model runs/cpu_demo -
    """
    with user_errors():
        output_format = _choose_format(fmt, out)
        stdin_lines = sys.stdin.read().splitlines() if "-" in inputs else None
        pairs = expand_inputs(inputs, stdin_lines)
        if out is not None:
            check_writable(out, "file")  # before minutes of loading and reading, not after
        loaded, settings = load_quietly(model, adapter, precision, device)
        from banglaocr.infer import read_images

        handle = _open_output(out) if out is not None else None
        failed = blank = 0
        try:
            write = handle.write if handle is not None else sys.stdout.write
            if output_format == "csv":
                write("file,prediction,error,blank\n")
            # The reader yields in input order, so rows are written as each chunk finishes;
            # inputs that already failed (an empty folder, a pattern without matches) skip it.
            readable = [file for file, error in pairs if error is None]
            with progress_bar(len(pairs), "predict", show=len(pairs) >= PROGRESS_FROM) as advance:
                readings = read_images(loaded.model, loaded.tokenizer, readable, settings,
                                       batch_size=batch_size, num_beams=num_beams, on_batch=advance)
                for file, error in pairs:
                    is_blank = False
                    if error is None:
                        reading = next(readings)
                        text, error, is_blank = reading.text, reading.error, reading.blank
                    else:
                        text = None
                        advance(1)
                    failed += error is not None
                    blank += is_blank
                    write(format_row(file, text, error, output_format, blank=is_blank))
        except BrokenPipeError:
            # The reader of stdout went away (`| head`): stop quietly, like other command-line tools.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise typer.Exit(1) from None
        finally:
            if handle is not None:
                handle.close()
    if blank:
        err_console.print(f"{blank} blank image(s) (no ink): empty prediction", highlight=False)
    if out is not None:
        err_console.print(f"wrote {len(pairs)} rows to {out} ({failed} failed)", highlight=False)
    if failed:
        if out is None:
            err_console.print(f"[yellow]{failed} of {len(pairs)} input(s) could not be read[/]", highlight=False)
        raise typer.Exit(1)
