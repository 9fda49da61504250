"""predict's rows file: its three formats, the marker beside it, what `--resume` may keep of it.

Every row is one physical line in every format, and a file name comes back from it byte for byte
(`banglaocr.row_encoding`: text and CSV fields escaped, JSON with escapes for what `splitlines` breaks at).
`--out FILE` gets a sidecar `FILE.banglaocr.json` (`banglaocr.output_policy`) that names the format
and the reader: the model folders and their weight files (name, size, time), the read settings, the
beam width and the precision. `--resume` reads the whole file first, without changing it: the marker
must be predict's, of the same format and reader, and every complete line a row predict writes; only
then is a torn last line (a job killed while writing it) cut off and the rest appended.

>>> format_row("a.png", "আমি", None, "text")
'a.png\\tআমি\\n'
>>> from banglaocr.confidence import Confidence
>>> format_row("a.png", "আমি", None, "text", confidence=Confidence(0.41, 0.5, (("আ", 0.9), ("মি", 0.5))), flagged=True)
'a.png\\tআমি\\t0.41\\tflagged\\n'
>>> format_row("b.png", None, "empty file", "jsonl")
'{"file": "b.png", "error": "empty file"}\\n'
>>> format_row("c.png", "", None, "jsonl", blank=True)
'{"file": "c.png", "prediction": "", "blank": true}\\n'
>>> parse_row(format_row("a\\u2028\\n.png", "ক", None, "csv").rstrip("\\n"), "csv")
'a\\u2028\\n.png'
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from banglaocr.errors import UserError
from banglaocr.output_policy import (claim_file, marker_path, path_kind, read_marker, refuse_special,
                                     write_error_line)
from banglaocr.row_encoding import escape_field, json_line, json_text, unescape_field

FORMATS = ("text", "jsonl", "csv")
CSV_COLUMNS = ["file", "prediction", "error", "blank", "confidence", "flagged"]
JSON_KEYS = {"file", "prediction", "error", "blank", "confidence", "lowest_token_confidence", "clusters", "flagged"}
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


def format_row(file: str, prediction: str | None, error: str | None, fmt: str, blank: bool = False,
               confidence=None, flagged: bool = False) -> str:
    """One output line (with its newline) in `fmt`; `blank`: the image holds no ink (empty prediction);
    `confidence`: the reading's `banglaocr.confidence.Confidence` (None for errors and blanks); `flagged`:
    below `--flag-below`. Text rows add the sequence confidence (and `flagged`) as tab-separated fields."""
    if fmt == "jsonl":
        return json_line({"file": file, **reading_fields(prediction, error, blank, confidence, flagged)})
    shown = shown_confidence(confidence)
    if fmt == "csv":
        return csv_line([escape_field(file), escape_field(prediction or ""), escape_field(error or ""),
                         "true" if blank else "", shown, "true" if flagged else ""])
    value = f"ERROR: {error}" if error is not None else prediction
    extra = (f"\t{shown}" if shown else "") + ("\tflagged" if flagged else "")
    return f"{escape_field(file)}\t{escape_field(value or '')}{extra}\n"


def reading_fields(prediction: str | None, error: str | None, blank: bool = False, confidence=None,
                   flagged: bool = False) -> dict:
    """A reading's JSON keys (a word row of predict, a word of a page row): `prediction` or `error`, then
    `blank`, the confidence's keys and `flagged` where they apply."""
    row = {"error": error} if error is not None else {"prediction": prediction}
    if blank:
        row["blank"] = True
    if confidence is not None:
        row.update(confidence.to_row())
    if flagged:
        row["flagged"] = True
    return row


def shown_confidence(confidence) -> str:
    """The sequence confidence as text and CSV rows show it (4 decimal places, trailing zeros dropped)."""
    return "" if confidence is None else f"{round(confidence.sequence, 4):g}"


def csv_line(fields: list[str]) -> str:
    """One CSV row (quoted as needed) with its newline."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(fields)
    return buffer.getvalue()


def parse_row(line: str, fmt: str) -> str:
    """The input file of one row `format_row` wrote (`line` without its newline); `ValueError` for a line
    it would never write."""
    if fmt == "jsonl":
        row = json.loads(line)
        if not (isinstance(row, dict) and isinstance(row.get("file"), str) and set(row) <= JSON_KEYS
                and ("prediction" in row) != ("error" in row) and row.get("blank", True) is True):
            raise ValueError("not a row of predict's jsonl")
        return row["file"]
    if fmt == "csv":
        rows = list(csv.reader([line]))
        if len(rows) != 1 or len(rows[0]) != len(CSV_COLUMNS) or rows[0][3] not in ("", "true") \
                or rows[0][5] not in ("", "true"):
            raise ValueError(f"not a row of predict's csv ({','.join(CSV_COLUMNS)})")
        for value in rows[0][1:3]:
            unescape_field(value)
        return unescape_field(rows[0][0])
    file, tab, value = line.partition("\t")
    if not tab:
        raise ValueError("no tab between the file and its prediction")
    value, _, extra = value.partition("\t")
    unescape_field(value)
    if extra and not all(_is_text_extra(field) for field in extra.split("\t")):
        raise ValueError("not a confidence (or flagged) after the prediction")
    return unescape_field(file)


def _is_text_extra(field: str) -> bool:
    if field == "flagged":
        return True
    try:
        return 0.0 <= float(field) <= 1.0
    except ValueError:
        return False


@dataclass
class ExistingRows:
    """What `read_rows` found: the input file of every complete row, whether the csv header is there,
    and how many bytes of the file are whole rows (a torn last line lies beyond)."""

    files: list[str] = field(default_factory=list)
    header: bool = False
    keep_bytes: int = 0
    size: int = 0


def read_rows(path: Path, fmt: str) -> ExistingRows:
    """Parse every complete row of `path` (read-only). `ValueError` naming the first line that is not one."""
    data = path.read_bytes()
    keep = data.rfind(b"\n") + 1
    lines = data[:keep].split(b"\n")[:-1]
    found = ExistingRows(keep_bytes=keep, size=len(data))
    for number, raw in enumerate(lines, start=1):
        try:
            line = raw.decode("utf-8")
            if fmt == "csv" and number == 1:
                if line != ",".join(CSV_COLUMNS):
                    raise ValueError(f"the first line is not the header {','.join(CSV_COLUMNS)}")
                found.header = True
                continue
            found.files.append(parse_row(line, fmt))
        except ValueError as err:  # UnicodeDecodeError and JSONDecodeError are ValueErrors too
            raise ValueError(f"line {number}: {str(err).splitlines()[0]}") from None
    return found


def _folder_weights(folder: str) -> list:
    path = Path(folder)
    if not path.is_dir():
        return []  # a hub id: its name is all there is
    files = [item for item in path.iterdir() if item.suffix in WEIGHT_SUFFIXES and item.is_file()]
    return sorted([item.name, item.stat().st_size, item.stat().st_mtime_ns] for item in files)


def reader_record(model: str, adapter: str | None, settings, num_beams: int, precision: str,
                  device: str | None) -> dict:
    """Who reads: the model folders (model, adapter, an adapter's base) with their weight files, the read
    settings, beams and the precision on this device. Two runs with equal records write the same rows."""
    import torch

    from banglaocr.infer import default_device, inference_precision, resolve_adapter_folder, resolve_model
    from banglaocr.model.factory import adapter_base

    folders = [resolve_model(model)]
    if adapter is not None:
        folders.append(str(resolve_adapter_folder(adapter)))
    if (Path(folders[0]) / "adapter_config.json").is_file():
        folders.append(adapter_base(Path(folders[0])))
    try:
        precision = inference_precision(precision, torch.device(device) if device else default_device())
    except (RuntimeError, UserError):
        pass  # loading the model says what is wrong with it, in one line
    record = {"models": [str(Path(f).resolve()) if Path(f).is_dir() else f for f in folders],
              "weights": [_folder_weights(f) for f in folders], "read_settings": settings.to_dict(),
              "num_beams": num_beams, "precision": precision}
    return json.loads(json_text(record))  # as it reads back from the marker (lists, not tuples)


@dataclass
class OutputPlan:
    """Where predict's rows go: `state` 'stdout' | 'new' | 'ours' | 'overwrite' | 'stream' | 'resume';
    for 'resume' the rows already there (`existing`); `error`: the one line that refused it."""

    state: str
    existing: ExistingRows = field(default_factory=ExistingRows)
    error: str | None = None


def plan_output(out: Path | None, fmt: str, *, resume: bool, overwrite: bool, reader: dict | None) -> OutputPlan:
    """Check `--out` under the output policy before any work (nothing is written). `UserError` if refused."""
    if out is None:
        return OutputPlan("stdout")
    if resume:
        return _plan_resume(out, fmt, reader)

    def ours(path: Path, marker: dict) -> bool:  # predict's marker, and rows that parse in its format
        if marker.get("layout") == "page":  # page rows: predict's marker is all there is to check
            return marker.get("format") in FORMATS
        try:
            read_rows(path, str(marker.get("format")))
        except (ValueError, OSError):
            return False
        return marker.get("format") in FORMATS

    return OutputPlan(claim_file(out, "predict", overwrite=overwrite, is_ours=ours)[0])


def _plan_resume(out: Path, fmt: str, reader: dict | None) -> OutputPlan:
    kind = path_kind(out)
    if kind == "character device":
        raise UserError(f"--resume keeps the rows in --out: {out} is a character device, not a file")
    if kind == "folder":
        raise UserError(f"--out {out} is a folder; give a file name")
    if kind not in (None, "file"):
        refuse_special(out, kind)
    sidecar = marker_path(out)
    marker = read_marker(sidecar, "predict")
    if marker is False:
        raise UserError(f"--resume: {sidecar} is not banglaocr predict's marker; {out} is left as it is: choose "
                        "another --out")
    if kind is None or out.stat().st_size == 0:
        return OutputPlan("resume")  # nothing to keep: the run starts from the first input
    if marker is None:
        raise UserError(f"--resume: {out} is not {fmt} output of predict (no {sidecar.name} beside it, which "
                        "predict writes with its rows); it is left as it is: choose another --out, or start over "
                        "with --overwrite instead of --resume")
    if marker.get("format") != fmt:
        raise UserError(f"--resume: {out} holds {marker.get('format')} rows, not {fmt}; give --format "
                        f"{marker.get('format')} as the first run did, or choose another --out")
    if reader is not None and marker.get("reader") != reader:
        differ = [key.replace("_", " ") for key in reader if (marker.get("reader") or {}).get(key) != reader[key]]
        raise UserError(f"--resume: {out} holds rows of another reader (its {', '.join(differ) or 'record'} "
                        f"differ from this run's, see {sidecar.name}); it is left as it is: resume with the "
                        "same --model, --adapter, --num-beams and --precision, or choose another --out")
    try:
        return OutputPlan("resume", read_rows(out, fmt))
    except ValueError as err:
        raise UserError(f"--resume: {out} is not {fmt} output of predict ({err}); it is left as it is: choose "
                        "another --out") from None
    except OSError as err:
        raise UserError(f"cannot read --out {out}: {err.strerror or err}") from None


def marker_record(fmt: str, reader: dict, reading: dict, layout: str = "word") -> dict:
    """The sidecar's content: written by predict, in `fmt`, by `reader`; `reading` (batch and chunk size) is
    told, not checked; `layout` 'page' for the page rows of `--layout page` (word rows say nothing)."""
    from banglaocr import __version__

    record = {"written_by": "banglaocr predict", "version": __version__, "format": fmt, "reader": reader,
              "reading": reading}
    return record if layout == "word" else {**record, "layout": layout}


def open_rows(out: Path, plan: OutputPlan, marker: dict | None):
    """Open `out` to write rows as `plan` says: a new file (truncated; the marker written beside it), or
    the validated file with its torn last line cut off (resume). Line-buffered: every row reaches the
    file as it is written, so a killed job loses no finished row."""
    from banglaocr.files import write_json

    try:
        if plan.state == "resume" and plan.existing.size:
            if path_kind(out) != "file" or out.stat().st_size != plan.existing.size:
                raise UserError(f"--resume: {out} changed while the model loaded; run the command again")
            if plan.existing.keep_bytes < plan.existing.size:
                os.truncate(out, plan.existing.keep_bytes)
            return out.open("a", encoding="utf-8", newline="", buffering=1)
        if plan.state != "stream":
            out.parent.mkdir(parents=True, exist_ok=True)
        handle = out.open("w", encoding="utf-8", newline="", buffering=1)
        if plan.state != "stream" and marker is not None:
            write_json(marker_path(out), marker)
        return handle
    except OSError as err:
        raise UserError(write_error_line(out, err)) from None


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
