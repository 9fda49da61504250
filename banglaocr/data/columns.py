"""Which columns of a table hold the image and the transcription.

A data set made elsewhere names its columns its own way: `file_name,text` (an imagefolder),
`filename,label`, `image_id,text` (GraDeT-HTR), `path,word`, ... A column set in the recipe
(`data.image_column`, `data.text_column`) is used when the table has it; otherwise the table's one
column with a common name (any case) is. Two columns with common names are an error that names
them and the key to set - guessing would train on the wrong column without a word.

>>> find_column(["Filename", "Label"], None, IMAGE_NAMES, "image", "data.image_column", "labels.csv")
'Filename'
>>> find_column(["file_name", "path", "text"], None, IMAGE_NAMES, "image", "data.image_column", "labels.csv")
Traceback (most recent call last):
...
banglaocr.errors.UserError: labels.csv: 2 columns could hold the image (file_name, path); set data.image_column=NAME to one of them
"""

from __future__ import annotations

from banglaocr.errors import UserError

IMAGE_NAMES = ("file_name", "filename", "image", "image_id", "path", "file")
"""Common names of the column holding an image (or its file name), in order of preference for messages."""
TEXT_NAMES = ("text", "label", "word", "transcription")
"""Common names of the column holding the transcription."""


def _common(column: str, names: tuple[str, ...]) -> bool:
    return column.strip().lower() in names


def find_column(columns: list[str], configured: str | None, names: tuple[str, ...], kind: str, key: str,
                where: str) -> str:
    """The column of `columns` that holds the `kind` ("image", "transcription"): `configured` when the table
    has it, else the one column with a name in `names`. A configured name that is not a common one must be
    there (a typo is an error, not a silent fallback); a configured common name that is not there (a recipe
    saying `image`, a table saying `file_name`) falls back to the table's common one. `UserError` naming
    `where`, the candidates and `key` when there is none or more than one."""
    if configured is not None and configured in columns:
        return configured
    shown = ", ".join(columns) or "none"
    if configured is not None and not _common(configured, names):
        raise UserError(f"{where}: no '{configured}' column (columns: {shown}); set {key}=NAME to one of them")
    candidates = [column for column in columns if _common(column, names)]
    if len(candidates) == 1:
        return candidates[0]
    if candidates:
        raise UserError(f"{where}: {len(candidates)} columns could hold the {kind} ({', '.join(candidates)}); "
                        f"set {key}=NAME to one of them")
    raise UserError(f"{where}: no {kind} column (looked for {', '.join(names)}; columns: {shown}); "
                    f"set {key}=NAME")
