"""`banglaocr segment`: page images and PDFs -> text lines -> word crops and DIR/layout.json."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from banglaocr.cli.common import OverwriteOption, check_writable, console, err_console, user_errors

SUMMARY_FILE = "segment.json"
"""What marks a folder as segment's: its settings and counts (beside layout.json)."""
PAGE_SUFFIXES = (".pdf",)
PROGRESS_FROM_PAGES = 4
BOXES_FOLDER = "boxes"


def segment(
    inputs: Annotated[list[str], typer.Argument(
        metavar="PAGE_OR_PDF...", help="Page images, PDFs, folders of them, or glob patterns.",
        show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", metavar="DIR",
                                      help="Folder for layout.json, crops/ and pages/ (rendered PDF pages).")],
    dpi: Annotated[int, typer.Option("--dpi", metavar="N", min=50, max=600,
                                     help="Resolution PDF pages are rendered at.")] = 200,
    draw_boxes: Annotated[bool, typer.Option("--draw-boxes",
                                             help="Also write DIR/boxes/NAME.png: each page with its word boxes.")]
    = False,
    overwrite: OverwriteOption = False,
) -> None:
    """Find the text lines and words of page images and PDFs; write the word crops and DIR/layout.json.

    Each page is binarised (its own uneven light divided out), ruled lines are removed, the skew is found
    (up to 15 degrees) and undone, lines are found between the valleys of the ink's projection, words by the
    gaps of each line. DIR/layout.json lists the pages, each with its lines of words: `box` = [x0, y0, x1, y1]
    in the original page's pixels and `crop`, the upright crop's file under DIR. An input that cannot be read
    is reported and the others go on (exit code 1 if any failed).

    Example: banglaocr segment scans/ notes.pdf --out layout

    Example: banglaocr segment 'photos/*.jpg' --out layout --draw-boxes
    """
    with user_errors():
        out = _claim(out, overwrite)
        pairs = expand_page_inputs(inputs)
        summary = segment_inputs(pairs, out, dpi=dpi, draw_boxes=draw_boxes)
    _report(summary, out)
    if summary["failed"]:
        raise typer.Exit(1)


def expand_page_inputs(inputs: list[str]) -> list[tuple[str, str | None]]:
    """Inputs -> `(file, error)` pairs: `predict.expand_inputs`, except that a folder gives its PDFs too."""
    from banglaocr.cli.predict import IMAGE_SUFFIXES, expand_inputs, path_problem

    pairs = []
    for item in inputs:
        folder = Path(item).expanduser() if item else Path(item)
        if not folder.is_dir():
            pairs.extend(expand_inputs([item]))
            continue
        found = sorted(p for p in folder.rglob("*")
                       if p.suffix.lower() in (*IMAGE_SUFFIXES, *PAGE_SUFFIXES) and not p.is_dir())
        if not found:
            pairs.append((item, "no image or PDF files in this folder"))
        pairs.extend((str(p), path_problem(p)) for p in found)
    return pairs


def _claim(out: Path, overwrite: bool) -> Path:
    """--out under the output policy: new, empty, an earlier segment output, or (with --overwrite) any folder."""
    import shutil

    from banglaocr.files import expand_home
    from banglaocr.output_policy import claim_folder
    from banglaocr.pages.layout_file import LAYOUT_FILE

    out = Path(expand_home(out, "--out"))
    state = claim_folder(out, "segment", (LAYOUT_FILE, SUMMARY_FILE), overwrite=overwrite, is_ours=is_segment_folder)
    if state == "ours":  # an earlier run's crops and pages would mix with this run's
        for name in ("crops", "pages", BOXES_FOLDER):
            shutil.rmtree(out / name, ignore_errors=True)
    check_writable(out, "folder")
    out.mkdir(parents=True, exist_ok=True)
    return out


def is_segment_folder(folder: Path) -> bool:
    """A folder `segment` wrote: its segment.json says so."""
    try:
        return json.loads((folder / SUMMARY_FILE).read_text(encoding="utf-8")).get("written_by") == "banglaocr segment"
    except (OSError, ValueError, AttributeError):
        return False


def segment_inputs(pairs: list[tuple[str, str | None]], out: Path, *, dpi: int, draw_boxes: bool) -> dict:
    """Segment every page of every input into `out`; the counts and the failures (input, reason)."""
    from rich.progress import Progress

    from banglaocr.data.decode import UnreadableImage
    from banglaocr.errors import FilesystemError, UserError, first_line
    from banglaocr.files import write_json
    from banglaocr.pages.layout_file import write_layout

    entries, failures, names = [], [], set()
    with Progress(console=err_console, transient=True, disable=len(pairs) < PROGRESS_FROM_PAGES) as progress:
        task = progress.add_task("segmenting", total=len(pairs))
        for source, problem in pairs:
            if problem is None:
                try:
                    _segment_input(source, out, dpi, draw_boxes, names, entries)
                except (UnreadableImage, UserError) as err:  # this input, not the run ...
                    if isinstance(err, FilesystemError):  # ... unless --out cannot be written
                        raise
                    problem = first_line(err)
            if problem is not None:
                failures.append({"input": source, "error": problem})
                err_console.print(f"[yellow]skipped[/] {source}: {problem}", highlight=False, soft_wrap=True)
            progress.advance(task)
    write_layout(out, entries)
    summary = {"written_by": "banglaocr segment", "inputs": len(pairs), "failed": len(failures),
               "pages": len(entries), "lines": sum(len(e["lines"]) for e in entries),
               "words": sum(len(line) for e in entries for line in e["lines"]), "dpi": dpi, "failures": failures}
    write_json(out / SUMMARY_FILE, summary)
    return summary


def _segment_input(source: str, out: Path, dpi: int, draw_boxes: bool, names: set[str], entries: list) -> None:
    """Append the layout.json entries of one input's pages to `entries` (crops written); raises for an
    unreadable input or page (the pages before it stay)."""
    from banglaocr.pages.layout_file import save_page
    from banglaocr.pages.segment import segment_page
    from banglaocr.pages.sources import open_pages

    stem = unique_stem(Path(source).stem or "page", names)
    for page in open_pages(source, dpi=dpi, out_dir=out, name=stem):
        layout = segment_page(page.image)
        folder = stem if page.page is None else f"{stem}-p{page.page:03d}"
        entries.append(save_page(out, page.file, page.source, page.page, layout, folder))
        if draw_boxes:
            _draw(page.image, layout, out / BOXES_FOLDER / f"{folder}.png")


def unique_stem(stem: str, names: set[str]) -> str:
    """`stem`, or `stem-2`, `stem-3`, ... when an earlier input had the same name (crops never collide)."""
    name, k = stem, 1
    while name in names:
        k += 1
        name = f"{stem}-{k}"
    names.add(name)
    return name


def _draw(image, layout, target: Path) -> None:
    """The page with each word's box (red) and each line's first word marked (blue)."""
    from banglaocr.pages.drawing import BLUE, RED, draw_boxes, save_drawing

    boxes = [(word.box, BLUE if k == 0 else RED) for line in layout.lines for k, word in enumerate(line)]
    save_drawing(draw_boxes(image, boxes), target)


def _report(summary: dict, out: Path) -> None:
    pages = f"{summary['pages']} page{'s' if summary['pages'] != 1 else ''}"
    console.print(f"{pages}, {summary['lines']} lines, {summary['words']} words from "
                  f"{summary['inputs'] - summary['failed']} of {summary['inputs']} inputs -> "
                  f"{os.path.join(str(out), 'layout.json')} (crops in {out / 'crops'})", highlight=False,
                  soft_wrap=True)
    if summary["failed"]:
        err_console.print(f"[bold red]{summary['failed']} inputs could not be read[/] (listed above and in "
                          f"{out / SUMMARY_FILE})", highlight=False, soft_wrap=True)
