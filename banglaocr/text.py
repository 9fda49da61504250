"""Bangla text in one canonical form, and its grapheme clusters.

Labels and predictions both go through `normalize` before they are compared, so
that two spellings of the same visible word never count as an error. The
canonical form, step by step:

1. Zero-width space U+200B and BOM U+FEFF are removed.
2. Unicode NFC (composes a decomposed o-kar ে+া -> ো and au-kar ে+ৗ -> ৌ).
3. The legacy khanda-ta sequence ত + ্ + ZWJ (U+09A4 U+09CD U+200D) becomes ৎ (U+09CE).
4. ZWJ U+200D and ZWNJ U+200C are removed: they are invisible in handwriting and
   used inconsistently in labels.
5. The nukta letters are precomposed: য় U+09DF, ড় U+09DC, ঢ় U+09DD. NFC splits
   them into base + nukta U+09BC (they are composition exclusions); we keep one
   code point per visible letter so that CER counts letters, not pieces.
6. ASCII '|' used as a danda becomes '।' (U+0964); '||' and '।।' become '॥' (U+0965).
7. Whitespace runs become one space; both ends are stripped.

Non-Bangla text passes through with only these steps; the result is never None,
and `normalize(normalize(s)) == normalize(s)` for every string.

>>> normalize("  আমি\u200c  গান গাই |  ")
'আমি গান গাই ।'
>>> normalize("বাংলায\u09bc") == "বাংলা\u09df"
True
>>> graphemes("ক্ষমা")
['ক্ষ', 'মা']
"""

from __future__ import annotations

import unicodedata

import regex

_ZERO_WIDTH = ("\u200b", "\ufeff")
_JOINERS = ("\u200c", "\u200d")
_KHANDA_TA_LEGACY = "\u09a4\u09cd\u200d"
_KHANDA_TA = "\u09ce"
_NUKTA = "\u09bc"
# base letter + nukta -> the precomposed letter NFC refuses to produce.
_NUKTA_LETTERS = {
    "\u09af" + _NUKTA: "\u09df",  # য় (ya + nukta)
    "\u09a1" + _NUKTA: "\u09dc",  # ড় (dda + nukta)
    "\u09a2" + _NUKTA: "\u09dd",  # ঢ় (ddha + nukta)
}
_DANDA = "\u0964"
_DOUBLE_DANDA = "\u0965"


def normalize(text: str) -> str:
    """Return `text` in the canonical form described in the module docstring.

    >>> normalize("য\u09bc") == normalize("\u09df") == "\u09df"
    True
    >>> normalize("উৎস") == normalize("উত্\u200dস")
    True
    >>> normalize("Hello   world ")
    'Hello world'
    """
    if not isinstance(text, str):
        # Labels read from CSV/JSON can be None or numbers; one canonical string beats a crash mid-epoch.
        text = "" if text is None else str(text)
    for char in _ZERO_WIDTH:
        text = text.replace(char, "")
    text = unicodedata.normalize("NFC", text)
    # Khanda ta must be mapped before the joiners go: the ZWJ is what marks it.
    text = text.replace(_KHANDA_TA_LEGACY, _KHANDA_TA)
    for char in _JOINERS:
        text = text.replace(char, "")
    # Removing a joiner can bring e-kar and aa-kar together: NFC again so they compose.
    text = unicodedata.normalize("NFC", text)
    # After NFC the nukta sits right after its base (its combining class sorts it before hasanta).
    for pair, letter in _NUKTA_LETTERS.items():
        text = text.replace(pair, letter)
    text = text.replace("|", _DANDA).replace(_DANDA + _DANDA, _DOUBLE_DANDA)
    return " ".join(text.split())


def graphemes(text: str) -> list[str]:
    """Split `text` into extended grapheme clusters; conjuncts stay whole.

    Error rates over these clusters count what a reader sees as one letter.

    >>> graphemes("স্ত্রী ধর্ম")
    ['স্ত্রী', ' ', 'ধ', 'র্ম']
    >>> graphemes("")
    []
    """
    return regex.findall(r"\X", text)
