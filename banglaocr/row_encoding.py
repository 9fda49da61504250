"""Rows that stay one physical line and give back the very name they were written with.

A file name is whatever bytes the OS holds. Python gives bytes that are not UTF-8 as lone surrogates
(U+DC80-U+DCFF, `os.fsdecode`'s surrogateescape), and a name may hold a tab or any character that
`str.splitlines` breaks a line at (\\n \\r \\v \\f \\x1c \\x1d \\x1e \\x85 \\u2028 \\u2029). Written raw,
such a name splits its row in two, or cannot be written at all (UTF-8 has no surrogates). So:

- text and CSV fields (`escape_field`, `unescape_field`): a backslash is written `\\\\`, a tab `\\t`, a
  newline `\\n`, a carriage return `\\r`, every other control character and U+2028 / U+2029 `\\uXXXX`,
  and a byte that is not UTF-8 `\\xNN`. The field is then UTF-8 without a line break or a tab;
  `unescape_field` gives the name back, byte for byte (`os.fsencode`).
- JSON (`json_line`, `json_text`): standard JSON, with `\\uXXXX` also for the C1 controls (U+0085
  among them), U+2028, U+2029 (JSON allows them raw; `str.splitlines` breaks there) and the
  surrogates (so the file stays UTF-8; `json.loads` gives the surrogate back, `os.fsencode` the byte).

>>> name = os.fsdecode(b"scan\\xff\\n1.png")
>>> escape_field(name)
'scan\\\\xff\\\\n1.png'
>>> unescape_field(escape_field(name)) == name, os.fsencode(json.loads(json_text(name))) == b"scan\\xff\\n1.png"
(True, True)
"""

from __future__ import annotations

import json
import os
import re

_SHORT_ESCAPES = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}
_SHORT_UNESCAPES = {"\\": "\\", "t": "\t", "n": "\n", "r": "\r"}
_FIELD_UNSAFE = re.compile("[\\\\\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_JSON_UNSAFE = re.compile("[\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_ESCAPE = re.compile(r"\\(x[0-9a-f]{2}|u[0-9a-f]{4}|[\\tnr])")
_ESCAPED_FIELD = re.compile(r"(?:[^\\]|\\(?:x[89a-f][0-9a-f]|u[0-9a-f]{4}|[\\tnr]))*")


def _escape_char(match: re.Match) -> str:
    char = match.group()
    if char in _SHORT_ESCAPES:
        return _SHORT_ESCAPES[char]
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # a byte that is not UTF-8, as surrogateescape holds it
        return f"\\x{code - 0xDC00:02x}"
    return f"\\u{code:04x}"


def escape_field(text: str) -> str:
    """`text` as one line of UTF-8 without tabs (see the module docstring); `unescape_field` undoes it.

    >>> escape_field("a\\tb\\\\c\\u2028d")
    'a\\\\tb\\\\\\\\c\\\\u2028d'
    """
    return _FIELD_UNSAFE.sub(_escape_char, text)


def _unescape_char(match: re.Match) -> str:
    code = match.group(1)
    if code in _SHORT_UNESCAPES:
        return _SHORT_UNESCAPES[code]
    if code[0] == "x":
        return chr(0xDC00 + int(code[1:], 16))
    return chr(int(code[1:], 16))


def unescape_field(text: str) -> str:
    """The text `escape_field` was given; `ValueError` for what it never writes (a raw tab or line break,
    an unknown escape).

    >>> unescape_field("a\\\\tb"), unescape_field("x\\\\xfe") == os.fsdecode(b"x\\xfe")
    ('a\\tb', True)
    """
    if _FIELD_UNSAFE.search(text.replace("\\", "")) or not _ESCAPED_FIELD.fullmatch(text):
        raise ValueError("not a field banglaocr writes (a raw control character, an unknown escape)")
    return _ESCAPE.sub(_unescape_char, text)


def json_text(value, indent: int | None = None) -> str:
    """`value` as JSON text that is valid UTF-8 and that `str.splitlines` keeps whole (but for `indent`'s
    own line breaks); non-ASCII letters stay readable.

    >>> json_text({"file": "a\\u2028b"})
    '{"file": "a\\\\u2028b"}'
    """
    text = json.dumps(value, ensure_ascii=False, indent=indent)
    # These characters can only stand inside JSON strings, where \\uXXXX means the same character.
    return _JSON_UNSAFE.sub(lambda match: f"\\u{ord(match.group()):04x}", text)


def json_line(value) -> str:
    """One row of a .jsonl file: `json_text(value)` and its newline."""
    return json_text(value) + "\n"
