"""Terminal tables whose columns line up when cells hold Bangla.

How many cells a terminal gives Bangla text is measured, not guessed: wcwidth carries the widths the
ucs-detect project measured on real terminals, and `display_width` reads them for the terminal this runs
in (`terminal_program`; xterm's where it cannot tell - VTE (GNOME Terminal), xterm.js (VS Code), mintty,
iTerm2 and Apple's Terminal draw Bangla the same). No simple rule gives those widths: a consonant takes
one cell and a spacing vowel sign after it one more (কি: 2), but a conjunct takes two or three (ক্ষ: 2,
স্ত্র: 3) and স্ত্রী only two; the virama, nukta, ZWJ and ZWNJ take none. rich measures code point by code
point (ক্ষমা: 3 where the terminals draw 4), pads each cell by that measure, and the borders of every row
holding Bangla drift;
`AlignedTable` therefore lays out, folds and pads its cells itself, and rich only prints the finished lines
(styles and colours as usual).

>>> display_width("ক্ষমা"), display_width("স্ত্রী"), display_width("র্যাব"), display_width("abc"), display_width("")
(4, 2, 4, 3, 0)
>>> from io import StringIO
>>> from rich.console import Console
>>> table = AlignedTable(terminal="xterm")
>>> table.add_column("unit"); table.add_column("count", justify="right")
>>> table.add_row("ক্ষ", "12"); table.add_row("স্ত্রী", "3"); table.add_row("বাংলা", "7")
>>> console = Console(file=StringIO(), width=40)
>>> console.print(table)
>>> print(console.file.getvalue(), end="")
┏━━━━━━┳━━━━━━━┓
┃ unit ┃ count ┃
┡━━━━━━╇━━━━━━━┩
│ ক্ষ   │    12 │
│ স্ত্রী   │     3 │
│ বাংলা │     7 │
└──────┴───────┘
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from rich import box
from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, RenderResult
from rich.segment import Segment
from rich.text import Text
from wcwidth import list_term_programs
from wcwidth import width as measured_width

from banglaocr.text import graphemes

_ESCAPES = {ord("\t"): "\\t", ord("\n"): "\\n", ord("\r"): "\\r"}
COMMON_TERMINAL = "xterm"
"""Whose widths to use where the terminal cannot be told: xterm's, which VTE, xterm.js, mintty, iTerm2 and
Apple's Terminal share for Bangla (and a file or a pipe read later in one of them)."""


def terminal_program(environ: dict | None = None) -> str:
    """The terminal whose measured widths to use: the one `TERM_PROGRAM` or `TERM` names where wcwidth has
    measurements of it (kitty, WezTerm, foot, Alacritty, iTerm2, VS Code, ...), Konsole or VTE where their
    own variables say so (they name themselves `xterm-256color`), else `COMMON_TERMINAL`.

    >>> terminal_program({"TERM": "xterm-kitty"}), terminal_program({"TERM": "xterm-256color", "VTE_VERSION": "7600"})
    ('xterm-kitty', 'vte')
    >>> terminal_program({"TERM": "xterm-256color", "WT_SESSION": "1"}), terminal_program({})
    ('xterm', 'xterm')
    """
    environ = os.environ if environ is None else environ
    known = list_term_programs()
    for name in (environ.get("TERM_PROGRAM", ""), environ.get("TERM", "")):
        if name.strip().lower() in known:
            return name.strip().lower()
    if environ.get("KONSOLE_VERSION"):
        return "konsole"
    if environ.get("VTE_VERSION"):
        return "vte"
    return COMMON_TERMINAL


def display_width(text: str, terminal: str = COMMON_TERMINAL) -> int:
    """Terminal cells `text` takes on `terminal` (a name of wcwidth's `list_term_programs`); control
    characters take none (rich drops them from what it prints).

    >>> display_width("উজ্জ্বল"), display_width("কি"), display_width("漢字"), display_width("a\x07b")
    (4, 2, 4, 2)
    >>> display_width("কিনি", "kitty")  # kitty draws a spacing vowel sign in its consonant's cell
    2
    """
    return measured_width(text, control_codes="ignore", term_program=terminal)


def fold(text: Text, cells: int, terminal: str = COMMON_TERMINAL) -> list[Text]:
    """`text` cut into lines of at most `cells` cells, only between grapheme clusters (styles kept).

    >>> [line.plain for line in fold(Text("আমার সোনার বাংলা"), 5)]
    ['আমার ', 'সোনার', ' বাংলা']
    """
    offsets, start, line_start = [], 0, 0
    plain = text.plain
    for cluster in graphemes(plain):
        end = start + len(cluster)
        if display_width(plain[line_start:end], terminal) > cells and start > line_start:
            offsets.append(start)
            line_start = start
        start = end
    return list(text.divide(offsets)) if plain else [text]


@dataclass
class _Column:
    header: str
    justify: str = "left"


@dataclass
class AlignedTable:
    """A rich renderable with the look of `rich.table.Table` (heavy head, title above), measured in the cells
    `terminal` draws (default: `terminal_program()` when it is printed). Cells are strings (printed as they
    are, no markup) or `rich.text.Text`."""

    title: str | None = None
    columns: list[_Column] = field(default_factory=list)
    rows: list[list[Text]] = field(default_factory=list)
    terminal: str | None = None

    def add_column(self, header: str, justify: str = "left") -> None:
        self.columns.append(_Column(header, justify))

    def add_row(self, *cells: str | Text) -> None:
        self.rows.append([cell.copy() if isinstance(cell, Text) else Text(str(cell)) for cell in cells])
        for cell in self.rows[-1]:
            cell.plain = cell.plain.translate(_ESCAPES)  # one cell, one line

    @property
    def row_count(self) -> int:
        return len(self.rows)

    def widths(self, available: int, terminal: str = COMMON_TERMINAL) -> list[int]:
        """Column widths (cells, without padding) that fit `available` cells: the widest column gives
        way first, one cell at a time."""
        widths = [display_width(column.header, terminal) for column in self.columns]
        for row in self.rows:
            widths = [max(width, display_width(cell.plain, terminal)) for width, cell in zip(widths, row)]
        while sum(widths) + 3 * len(widths) + 1 > available and max(widths, default=0) > 1:
            widths[widths.index(max(widths))] -= 1
        return widths

    def lines(self, widths: list[int], terminal: str = COMMON_TERMINAL) -> list[Text]:
        """The table's lines below the title, every cell padded to its column's width."""
        padded = [width + 2 for width in widths]
        heavy = box.HEAVY_HEAD
        header = self._row([Text(column.header, style="table.header") for column in self.columns], widths,
                           (heavy.head_left, heavy.head_vertical, heavy.head_right), terminal)
        lines = [Text(heavy.get_top(padded)), *header, Text(heavy.get_row(padded, "head"))]
        for row in self.rows:
            lines += self._row(row, widths, (heavy.mid_left, heavy.mid_vertical, heavy.mid_right), terminal)
        return [*lines, Text(heavy.get_bottom(padded))]

    def _row(self, cells: list[Text], widths: list[int], edges: tuple[str, str, str], terminal: str) -> list[Text]:
        folded = [fold(cell, width, terminal) for cell, width in zip(cells, widths)]
        left, middle, right = edges
        lines = []
        for index in range(max(len(parts) for parts in folded)):
            line = Text(left)
            for column, parts, width in zip(self.columns, folded, widths):
                part = parts[index] if index < len(parts) else Text("")
                gap = " " * (width - display_width(part.plain, terminal))
                line.append(" ")
                line.append_text(Text(gap) + part if column.justify == "right" else part + Text(gap))
                line.append(" " + (middle if column is not self.columns[-1] else right))
            lines.append(line)
        return lines

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        available, terminal = options.max_width, self.terminal or terminal_program()
        widths = self.widths(available, terminal)
        lines = self.lines(widths, terminal)
        # rich crops a printed line by ITS measure, which can exceed ours (a conjunct counts 2): leave room.
        excess = max(cell_len(line.plain) - display_width(line.plain, terminal) for line in lines)
        if excess > 0 and sum(widths) + 3 * len(widths) + 1 + excess > available:
            widths = self.widths(available - excess, terminal)
            lines = self.lines(widths, terminal)
        if self.title:
            title = Text(self.title, style="table.title", justify="center")
            yield from console.render(title, options.update(width=sum(widths) + 3 * len(widths) + 1))
        for line in lines:
            yield from line.render(console)
            yield Segment.line()
