"""`banglaocr predict`: read word images with a trained model; one output row per input image.

`--layout page` reads pages and PDFs instead, one row per page (`cli/predict_pages`).

Inputs are image files, folders (searched recursively for image files, sorted), glob patterns
(expanded here too, for shells that do not) or `-` (paths on stdin, one per line, or NUL-separated
as `find -print0` writes them; bytes that are not UTF-8 are fine). Every image gets exactly one row,
in input order. An image that cannot be read - missing, empty, truncated, not an image, too large,
a symlink loop - gets an error row and the rest go on; the exit code is then 1 (0 under
`accelerate launch`, which would answer any other with a traceback of its own). A blank image (no
ink) gets an empty prediction marked as blank, never an invented word. An image whose logits turned
non-finite while it was read (an fp16 overflow) gets an error row too (`infer.NONFINITE_ERROR`),
never the garbage the model wrote, and stderr says how many.

Rows go to stdout (progress to stderr) or to `--out` (`predict_output`: a marker beside it says
banglaocr wrote it). `--out` is checked before the model is loaded, under the output policy
(`banglaocr.output_policy`): a file banglaocr did not write is replaced only with `--overwrite`.

Every reading carries the model's confidence (`banglaocr.confidence`: the probability of the whole
reading; in JSON also the lowest token probability and one per grapheme cluster); `--flag-below P` marks
the readings under P to check. Formats: `text` (`file<TAB>prediction<TAB>confidence`, `<TAB>flagged`
after a flagged one; `file<TAB>ERROR: reason`; a blank image's prediction is empty and has no
confidence), `jsonl` (`{"file": ..., "prediction": ..., "confidence": ..., "lowest_token_confidence": ...,
"clusters": [[cluster, p], ...]}`, plus `"flagged": true`, `"blank": true` for a blank image, or
`{"file": ..., "error": ...}`), `csv` (columns `file,prediction,error,blank,confidence,flagged`). Every row is one line
and gives its file name back byte for byte (`banglaocr.row_encoding`). The default follows the
`--out` suffix (.jsonl, .csv), else text.

This module also holds the options `predict` and `eval` share (model, adapter, precision, ...).

>>> expand_inputs(["/no/such/file.png"])
[('/no/such/file.png', None)]
"""

from __future__ import annotations

import errno
import glob
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from banglaocr.cli.common import (AdapterOption, BatchSizeOption, DeviceOption, ModelOption, NumBeamsOption,
                                  OverwriteOption, PrecisionOption, check_writable, err_console, launched_processes,
                                  leave_launched_processes, load_quietly, progress_bar, user_errors)
from banglaocr.cli.conventions import one_of
from banglaocr.cli.overrides import split_inputs, with_reading_overrides
from banglaocr.cli.predict_output import (CSV_COLUMNS, FORMATS, OutputPlan, format_row, marker_record, open_rows,
                                         plan_output, reader_record, resume_plan)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".pbm", ".pgm", ".ppm")
PROGRESS_FROM = 64
"""Show a progress bar from this many inputs on (fewer finish before a bar would help)."""
PREDICT_LAYOUTS = ("word", "page")
PAGES_PROGRESS_FROM = 4
"""--layout page: show a progress bar from this many inputs on."""
CHUNK_INPUTS = 1024
"""Default of --chunk-size: inputs decoded and read at a time (several processes share a chunk's batches)."""


def _is_glob(text: str) -> bool:
    return any(char in text for char in "*?[")


def path_problem(path: Path) -> str | None:
    """Why `path`, which is no folder, cannot be an image file - a symlink loop, a broken symlink - or None
    (reading it says the rest: missing, not a regular file, not an image)."""
    try:
        os.stat(path)
    except OSError as err:
        if err.errno == errno.ELOOP:
            return f"symlink loop: {path}"
        if os.path.islink(path):
            return f"broken symlink: {path} -> {os.readlink(path)}, which does not exist"
    return None


def _folder_images(folder: Path) -> list[Path]:
    """Image-named entries below `folder`, sorted; entries that are no folder and no regular file (a FIFO,
    a broken symlink) too - they become error rows, never silently left out."""
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and not p.is_dir())


def stdin_names(data: bytes) -> list[str]:
    """The paths `predict -` reads on stdin: NUL-separated when the data holds a NUL (`find -print0`, the
    only way to pass a name holding a newline), else one per line. A line is taken as it is when such a
    path exists, else without the spaces and carriage return around it; blank lines are skipped.

    >>> stdin_names(b"a.png\\r\\n\\n b.png \\n"), stdin_names(b"x\\ny.png\\0z.png\\0")
    (['a.png', 'b.png'], ['x\\ny.png', 'z.png'])
    """
    parts = data.split(b"\0") if b"\0" in data else data.split(b"\n")
    names = []
    for part in parts:
        name = os.fsdecode(part)  # bytes that are not UTF-8 kept as surrogates, as the OS gives argv
        if not os.path.lexists(name):
            name = name.strip()
        if name and name != "-":
            names.append(name)
    return names


def _read_stdin() -> bytes:
    stream = getattr(sys.stdin, "buffer", None)
    return stream.read() if stream is not None else os.fsencode(sys.stdin.read())


def _expand_one(item: str) -> list[tuple[str, str | None]]:
    try:
        path = Path(item).expanduser()
    except RuntimeError:  # ~user of a user that does not exist: the literal name, which does not exist
        path = Path(item)
    if path.is_dir():
        found = _folder_images(path)
        if not found:
            return [(item, f"no image files ({', '.join(IMAGE_SUFFIXES[:4])}, ...) in this folder")]
        return [(str(p), path_problem(p)) for p in found]
    if not os.path.lexists(path) and _is_glob(item):
        matches = sorted(glob.glob(str(path), recursive=True))
        files = [m for m in matches if not Path(m).is_dir()]
        for match in matches:
            if Path(match).is_dir():
                files.extend(str(p) for p in _folder_images(Path(match)))
        return [(f, path_problem(Path(f))) for f in files] or [(item, "no file matches this pattern")]
    return [(item, path_problem(path))]


def expand_inputs(inputs: list[str], stdin_lines: list[str] | None = None) -> list[tuple[str, str | None]]:
    """Inputs -> `(file, error)` pairs in order; error is None for a file to read.

    A folder gives its image files (recursive, sorted); a pattern that is not an existing path is
    globbed (sorted); `-` stands for `stdin_lines` (`stdin_names`; each expanded the same way). An
    input that gives nothing - a folder without images, a pattern that matches nothing - is one error
    row, never silently dropped; so is a symlink loop or a broken symlink. A path that does not exist
    is kept: reading it fails into an error row.
    """
    pairs: list[tuple[str, str | None]] = []
    for item in inputs:
        if item == "-":
            pairs.extend(expand_inputs([line for line in (stdin_lines or []) if line and line != "-"]))
        else:
            pairs.extend(_expand_one(item))
    return pairs


def _choose_format(fmt: str | None, out: Path | None) -> str:
    from banglaocr.errors import UserError

    if fmt is None:
        suffix = out.suffix.lower() if out is not None else ""
        return {".jsonl": "jsonl", ".csv": "csv"}.get(suffix, "text")
    if fmt not in FORMATS:
        raise UserError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    return fmt


def _predict_rows(loaded, settings, pairs, reading: tuple[int, int, int], rank: int, world: int, on_batch):
    """Yield (file, prediction, error, blank, nonfinite, confidence) for `pairs`, in order, on every process
    (several processes share the generation, `read_images`). `reading` = (batch size, beams, chunk size)."""
    from banglaocr.infer import read_images

    batch_size, num_beams, chunk_size = reading
    readable = [file for file, error in pairs if error is None]
    readings = read_images(loaded.model, loaded.tokenizer, readable, settings, batch_size=batch_size,
                           num_beams=num_beams, chunk_size=chunk_size, process_index=rank, num_processes=world,
                           on_batch=on_batch if world == 1 else None)
    for file, error in pairs:
        if error is not None:
            yield file, None, error, False, False, None
        else:
            found = next(readings)
            yield file, found.text, found.error, found.blank, found.nonfinite, found.confidence


def predict(
    ctx: typer.Context,
    model: ModelOption,
    inputs: Annotated[
        list[str], typer.Argument(metavar="INPUT...",
                                  help="Image files, folders, glob patterns, or - (paths on stdin); and recipe "
                                       "overrides of how images are read, as train takes them: data.image.height=64 "
                                       "data.prompt=... eval.max_new_tokens=40 eval.num_beams=2.")
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
                                            "none (after a killed job); new rows are appended. The file is "
                                            "checked whole first: rows of another model or format are refused.")
    ] = False,
    overwrite: OverwriteOption = False,
    flag_below: Annotated[
        float | None, typer.Option("--flag-below", min=0.0, max=1.0, metavar="P",
                                   help="Mark readings whose confidence is below P (0-1) as flagged: the ones to "
                                        "check; stderr says how many.")
    ] = None,
    layout: Annotated[
        str, typer.Option("--layout", metavar=one_of(PREDICT_LAYOUTS),
                          help="word: every input is one word crop, one row each. page: every input is a page "
                               "image or a PDF, cut into lines and words as segment does; one row per page, with "
                               "its text line by line and a box and confidence per word.")
    ] = "word",
    dpi: Annotated[
        int, typer.Option("--dpi", min=50, max=600, metavar="N",
                          help="--layout page: the resolution PDF pages are rendered at.")
    ] = 200,
    draw_boxes: Annotated[
        Path | None, typer.Option("--draw-boxes", metavar="DIR",
                                  help="--layout page: also write every page with its word boxes to DIR/NAME.png "
                                       "(red below --flag-below, or 0.5 without it; green above; grey blank).")
    ] = None,
) -> None:
    """Read word images with a trained model: one row per image, in input order (--layout page: pages and
    PDFs, one row per page with its text line by line and a box and confidence per word).

    Example: banglaocr predict --model tiny examples/words/*.png

    Or: banglaocr predict --model runs/cpu_demo scans/ extra/*.png --format jsonl --out predictions.jsonl

    Paths on stdin: find scans -name '*.png' | banglaocr predict --model runs/cpu_demo -

    Millions of scans, 4 GPUs, resumable: accelerate launch --multi_gpu --num_processes 4 -m banglaocr
    predict --model runs/kaggle_t4x2 scans/ --out rows.jsonl --resume

    Pages and PDFs: banglaocr predict --model runs/cpu_demo --layout page notes.pdf --out pages.jsonl
    --draw-boxes boxes/
    """
    with user_errors():
        counts, total, kept, out, rank, world = _run(
            ctx, (model, adapter, precision, device), inputs, (out, fmt, resume, overwrite),
            (batch_size, num_beams, chunk_size), flag_below, (layout, dpi, draw_boxes))
    if layout == "page":
        _report_pages(counts, out, rank == 0, world)
    else:
        _report(counts, total, kept, out, rank == 0, world)


def _run(ctx: typer.Context, reader_options: tuple, inputs: list[str], output: tuple, reading: tuple,
         flag_below: float | None, pages: tuple) -> tuple[dict, int, int, Path | None, int, int]:
    """predict's whole job but the report: (counts, inputs, rows kept by --resume, --out, rank, processes).
    `reader_options` = (model, adapter, precision, device); `output` = (--out, --format, --resume,
    --overwrite); `reading` = (batch size, beams, chunk size); `pages` = (--layout, --dpi, --draw-boxes)."""
    from banglaocr.files import expand_home

    model, adapter, precision, device = reader_options
    out, fmt, resume, overwrite = output
    batch_size, num_beams, chunk_size = reading
    layout, dpi, draw_dir = pages
    model, adapter = expand_home(model, "--model"), adapter and expand_home(adapter, "--adapter")
    output_format = _choose_format(fmt, out)
    _check_flags(out, resume, overwrite, layout, draw_dir)
    out = expand_home(out, "--out") if out is not None else None
    inputs, overrides, batch_size, num_beams = _split_overrides(ctx, inputs, batch_size, num_beams)
    stdin_lines = stdin_names(_read_stdin()) if "-" in inputs else None
    pairs = _page_inputs(inputs, stdin_lines) if layout == "page" else expand_inputs(inputs, stdin_lines)
    rank, world, launched_device = launched_processes()
    device = device or launched_device
    claim_boxes = None
    if draw_dir is not None:
        from functools import partial

        from banglaocr.cli.predict_pages import claim_boxes_folder

        draw_dir = Path(expand_home(draw_dir, "--draw-boxes"))
        claim_boxes = partial(claim_boxes_folder, draw_dir, overwrite)
    plan = _plan(out, output_format, resume, overwrite,
                 lambda: _reader(model, adapter, num_beams, precision, device, overrides), rank, world, claim_boxes)
    todo, skip = resume_plan(pairs, plan.existing.files, chunk_size)
    loaded, settings = load_quietly(model, adapter, precision, device)
    settings = with_reading_overrides(settings, overrides)
    marker = None
    if out is not None and rank == 0 and plan.state not in ("stdout", "stream"):
        told = {"batch_size": batch_size, "chunk_size": chunk_size, "flag_below": flag_below}
        marker = marker_record(output_format, _reader(model, adapter, num_beams, precision, device, overrides),
                               told if layout == "word" else {**told, "dpi": dpi}, layout)
    if layout == "page":
        counts = _write_page_rows(loaded, settings, pairs, (out, plan, marker), (output_format, flag_below),
                                  (batch_size, num_beams, dpi), draw_dir, rank, world)
    else:
        counts = _write_rows(loaded, settings, todo, skip, (out, plan, marker), (output_format, flag_below),
                             (batch_size, num_beams, chunk_size), rank, world)
    leave_launched_processes(world)
    return counts, len(pairs), len(plan.existing.files), out, rank, world


def _page_inputs(inputs: list[str], stdin_lines: list[str] | None) -> list[tuple[str, str | None]]:
    """--layout page: `segment.expand_page_inputs` (folders give their PDFs too), `-` as the paths on stdin."""
    from banglaocr.cli.segment import expand_page_inputs

    items = []
    for item in inputs:
        items.extend(stdin_lines or [] if item == "-" else [item])
    return expand_page_inputs(items)


def _check_flags(out: Path | None, resume: bool, overwrite: bool, layout: str = "word",
                 draw_dir: Path | None = None) -> None:
    from banglaocr.errors import UserError

    if layout not in PREDICT_LAYOUTS:
        raise UserError(f"--layout must be one of {', '.join(PREDICT_LAYOUTS)}, got {layout!r}")
    if draw_dir is not None and layout != "page":
        raise UserError("--draw-boxes draws the word boxes of pages: give it with --layout page")
    if resume and layout == "page":
        raise UserError("--resume keeps word rows: with --layout page, read the pages again into a new --out "
                        "(or read fewer pages at a time)")

    if resume and out is None:
        raise UserError("--resume needs --out (the file whose rows are kept)")
    if resume and overwrite:
        raise UserError("--resume keeps the rows in --out and --overwrite replaces them: give one of the two")


def _split_overrides(ctx: typer.Context, inputs: list[str], batch_size: int,
                     num_beams: int) -> tuple[list[str], list[str], int, int]:
    """(inputs, reading overrides, batch size, beams): the `section.key=value` arguments taken out of the
    inputs (`overrides.split_inputs`); `eval.batch_size` / `eval.num_beams` count where --batch-size /
    --num-beams are not given."""
    from click.core import ParameterSource

    from banglaocr.cli.overrides import READING_KEYS, check_overrides, reading_recipe

    inputs, overrides = split_inputs(inputs)
    check_overrides(overrides, READING_KEYS, "predict")
    if not inputs:
        from banglaocr.errors import UserError

        raise UserError("give at least one image, folder, pattern or - (overrides alone read nothing)")
    read = reading_recipe({"source": "-"}, [item for item in overrides if item.startswith("eval.")]).eval

    def chosen(name: str, option: int) -> int:
        overridden = any(item.startswith(f"eval.{name}=") for item in overrides)
        given = ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE
        return getattr(read, name) if overridden and not given else option

    return inputs, overrides, chosen("batch_size", batch_size), chosen("num_beams", num_beams)


def _reader(model: str, adapter: str | None, num_beams: int, precision: str, device: str | None,
            overrides: list[str] | None = None) -> dict:
    from banglaocr.infer import read_settings

    settings = with_reading_overrides(read_settings(model, adapter), overrides or [])
    return reader_record(model, adapter, settings, num_beams, precision, device)


def _plan(out: Path | None, fmt: str, resume: bool, overwrite: bool, reader, rank: int, world: int,
          also=None) -> OutputPlan:
    """The output policy's verdict on `--out`, before the model loads: the main process decides (and reads
    what --resume keeps), every process gets the same plan - or the same one-line refusal. `also`: a
    further claim the main process makes (--draw-boxes), refused the same way."""
    from banglaocr.errors import UserError

    plan = OutputPlan("stdout")
    if rank == 0 and out is not None:
        try:
            plan = plan_output(out, fmt, resume=resume, overwrite=overwrite, reader=reader() if resume else None)
            if plan.state != "stream":
                check_writable(out, "file")  # a folder no new file can be made in, read-only media, ...
        except UserError as err:
            plan = OutputPlan("refused", error=str(err))
    if rank == 0 and also is not None and plan.error is None:
        try:
            also()
        except UserError as err:
            plan = OutputPlan("refused", error=str(err))
    if world > 1:
        from accelerate.utils import broadcast_object_list

        plan = broadcast_object_list([plan])[0]
    if plan.error is not None:
        raise UserError(plan.error)
    return plan


def _row_writer(out: Path | None, plan: OutputPlan, handle, main: bool):
    """(write, finish): write one row to --out or stdout (the main process only), and flush it all at the end.
    A write that fails (a full disk, /dev/full) is one `UserError` naming the file, never a traceback."""
    from banglaocr.errors import UserError
    from banglaocr.output_policy import write_error_line

    def guarded(action):
        def run(*args):
            try:
                return action(*args)
            except BrokenPipeError:
                raise
            except OSError as err:
                if handle is None:  # nothing more can reach stdout; exit must not try again
                    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                    raise UserError(write_error_line("stdout", err)) from None
                kept = "; the rows written so far are kept: --resume goes on from them" if plan.state != "stream" \
                    else ""
                raise UserError(write_error_line(out, err) + kept) from None
        return run

    if not main:
        return (lambda text: None), (lambda: None)
    if handle is None:
        return guarded(sys.stdout.write), guarded(sys.stdout.flush)
    return guarded(handle.write), guarded(handle.close)  # close: the last bytes reach the disk here


@contextmanager
def _rows_output(out: Path | None, plan: OutputPlan, marker: dict | None, main: bool) -> Iterator:
    """Yields `write(text)`: rows to --out (opened as `plan` says, the marker beside it) or stdout, by the main
    process only; flushed and closed at the end. A reader of stdout that went away (`| head`) ends the run
    quietly with exit code 1, like other command-line tools."""
    handle = open_rows(out, plan, marker) if out is not None and main else None
    write, finish = _row_writer(out, plan, handle, main)
    try:
        yield write
        finish()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise typer.Exit(1) from None
    finally:
        if handle is not None and not handle.closed:
            try:
                handle.close()
            except OSError:
                pass  # a write failed before and said so in its line


def _write_rows(loaded, settings, todo, skip: int, target, shape: tuple, reading: tuple[int, int, int], rank,
                world) -> dict:
    """Read `todo` and write its rows in input order, but for the first `skip` (written already); the main
    process writes, to `target` = (--out, its `OutputPlan`, the marker) or stdout. Returns the counts.
    `shape` = (format, --flag-below); `reading` = (batch size, beams, chunk size)."""
    out, plan, marker = target
    output_format, flag_below = shape
    main = rank == 0
    counts = {"failed": 0, "blank": 0, "nonfinite": 0, "written": 0, "flagged": 0}
    with _rows_output(out, plan, marker, main) as write:
        if output_format == "csv" and not plan.existing.header:
            write(",".join(CSV_COLUMNS) + "\n")
        with progress_bar(len(todo), "predict", show=main and len(todo) >= PROGRESS_FROM) as advance:
            for index, (file, text, error, blank, nonfinite, confidence) in enumerate(
                    _predict_rows(loaded, settings, todo, reading, rank, world, advance)):
                if world > 1:
                    advance(1)
                if index < skip:
                    continue
                counts["failed"] += error is not None
                counts["blank"] += blank
                counts["nonfinite"] += nonfinite
                counts["written"] += 1
                flagged = flag_below is not None and confidence is not None and confidence.sequence < flag_below
                counts["flagged"] += flagged
                write(format_row(file, text, error, output_format, blank=blank, confidence=confidence, flagged=flagged))
    return counts


def _write_page_rows(loaded, settings, pairs, target, shape: tuple, reading: tuple[int, int, int],
                     draw_dir: Path | None, rank: int, world: int) -> dict:
    """--layout page: segment and read every page of `pairs`, one row per page in input order (the main
    process writes, and draws the boxes into `draw_dir`). `reading` = (batch size, beams, dpi)."""
    from banglaocr.cli.predict_pages import PAGE_CSV_COLUMNS, draw_page, error_row, page_counts, page_row
    from banglaocr.pages.reading import read_pages

    out, plan, marker = target
    output_format, flag_below = shape
    batch_size, num_beams, dpi = reading
    main = rank == 0
    counts = {"inputs": len(pairs), "pages": 0, "failed": 0, "words": 0, "blank": 0, "nonfinite": 0, "flagged": 0}
    names: dict[str, str] = {}
    with _rows_output(out, plan, marker, main) as write:
        if output_format == "csv":
            write(",".join(PAGE_CSV_COLUMNS) + "\n")
        with progress_bar(len(pairs), "predict", show=main and len(pairs) >= PAGES_PROGRESS_FROM) as advance:
            for source, problem in pairs:
                if problem is not None:
                    counts["failed"] += 1
                    write(error_row(source, problem, output_format))
                for page in [] if problem is not None else read_pages(
                        loaded.model, loaded.tokenizer, [source], settings, dpi=dpi, batch_size=batch_size,
                        num_beams=num_beams, process_index=rank, num_processes=world):
                    for key, value in page_counts(page, flag_below).items():
                        counts[key] += value
                    write(page_row(page, output_format, flag_below))
                    if main and draw_dir is not None and page.error is None:
                        draw_page(page, draw_dir, names, flag_below)
                advance(1)
    return counts


def _report(counts: dict, total: int, kept: int, out: Path | None, main: bool, world: int) -> None:
    if not main:
        return
    if counts["blank"]:
        err_console.print(f"{counts['blank']} blank image(s) (no ink): empty prediction", highlight=False)
    if counts["flagged"]:
        err_console.print(f"{counts['flagged']} reading(s) flagged (confidence below --flag-below): check them",
                          highlight=False)
    if counts["nonfinite"]:
        from banglaocr.infer import NONFINITE_ERROR

        err_console.print(f"[yellow]{counts['nonfinite']} image(s): {NONFINITE_ERROR} (their rows are errors)[/]",
                          highlight=False)
    if out is not None:
        resumed = f"; {kept} rows were there already (--resume)" if kept else ""
        err_console.print(f"wrote {counts['written']} rows to {out} ({counts['failed']} failed){resumed}",
                          highlight=False)
    if counts["failed"]:
        if out is None or world > 1:
            err_console.print(f"[yellow]{counts['failed']} of {total} input(s) could not be read[/]", highlight=False)
        _exit_failed(world)


def _exit_failed(world: int) -> None:
    """Exit code 1 after error rows - but for `accelerate launch`, where a non-zero exit of any process makes
    the launcher print a traceback of its own: there the error rows and the lines before say what failed."""
    if world == 1:
        raise typer.Exit(1)
    err_console.print("exit code 0 under accelerate launch: count the error rows to know what failed",
                      highlight=False)


def _report_pages(counts: dict, out: Path | None, main: bool, world: int) -> None:
    if not main:
        return
    summary = f"{counts['pages']} page(s) of {counts['inputs']} input(s), {counts['words']} word(s)"
    if counts["blank"]:
        summary += f", {counts['blank']} blank crop(s)"
    if counts["flagged"]:
        summary += f", {counts['flagged']} reading(s) flagged (confidence below --flag-below)"
    err_console.print(summary + (f": wrote them to {out}" if out is not None else ""), highlight=False,
                      soft_wrap=True)
    if counts["nonfinite"]:
        from banglaocr.infer import NONFINITE_ERROR

        err_console.print(f"[yellow]{counts['nonfinite']} word(s): {NONFINITE_ERROR} (their words are errors)[/]",
                          highlight=False)
    if counts["failed"]:
        err_console.print(f"[yellow]{counts['failed']} input(s) or page(s) could not be read (their rows are "
                          "errors)[/]", highlight=False)
        _exit_failed(world)
