"""Terminal tables whose columns line up when cells hold Bangla.

A terminal draws a grapheme cluster - a letter with its vowel signs, a conjunct such as ক্ষ or স্ত্রী -
in the cells of its first character. rich measures text code point by code point instead (the
consonants of a conjunct count one each; older rich versions count vowel signs too), pads each
cell by that measure, and the borders of every row holding Bangla drift. `display_width` measures
by grapheme clusters (`banglaocr.text.graphemes`), and `AlignedTable` lays out, folds and pads its
cells itself: rich only prints the finished lines (styles and colours as usual).

>>> display_width("ক্ষমা"), display_width("স্ত্রী"), display_width("abc"), display_width("")
(2, 1, 3, 0)
>>> from io import StringIO
>>> from rich.console import Console
>>> table = AlignedTable()
>>> table.add_column("unit"); table.add_column("count", justify="right")
>>> table.add_row("ক্ষ", "12"); table.add_row("স্ত্রী", "3")
>>> console = Console(file=StringIO(), width=40)
>>> console.print(table)
>>> print(console.file.getvalue(), end="")
┏━━━━━━┳━━━━━━━┓
┃ unit ┃ count ┃
┡━━━━━━╇━━━━━━━┩
│ ক্ষ    │    12 │
│ স্ত্রী    │     3 │
└──────┴───────┘
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rich import box
from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, RenderResult
from rich.segment import Segment
from rich.text import Text

from banglaocr.text import graphemes

_ESCAPES = {ord("\t"): "\\t", ord("\n"): "\\n", ord("\r"): "\\r"}


def cluster_width(cluster: str) -> int:
    """Terminal cells of one grapheme cluster: those of its first character (2 for wide CJK, 0 for a
    control character), and 1 for a cluster that starts with a combining mark (a lone vowel sign).

    >>> cluster_width("ক্ষ"), cluster_width("ি"), cluster_width("漢")
    (1, 1, 2)
    """
    first = cell_len(cluster[0])
    if first == 0 and cluster[0].isprintable():
        return 1
    return first


def display_width(text: str) -> int:
    """Terminal cells `text` takes, counted by grapheme clusters."""
    return sum(cluster_width(cluster) for cluster in graphemes(text))


def fold(text: Text, width: int) -> list[Text]:
    """`text` cut into lines of at most `width` cells, only between grapheme clusters (styles kept).

    >>> [line.plain for line in fold(Text("আমার সোনার বাংলা"), 4)]
    ['আমার ', 'সোনার ', 'বাংলা']
    """
    offsets, used, start = [], 0, 0
    for cluster in graphemes(text.plain):
        size = cluster_width(cluster)
        if used + size > width and used > 0:
            offsets.append(start)
            used = 0
        used += size
        start += len(cluster)
    return list(text.divide(offsets)) if text.plain else [text]


@dataclass
class _Column:
    header: str
    justify: str = "left"


@dataclass
class AlignedTable:
    """A rich renderable with the look of `rich.table.Table` (heavy head, title above), measured by
    grapheme clusters. Cells are strings (printed as they are, no markup) or `rich.text.Text`."""

    title: str | None = None
    columns: list[_Column] = field(default_factory=list)
    rows: list[list[Text]] = field(default_factory=list)

    def add_column(self, header: str, justify: str = "left") -> None:
        self.columns.append(_Column(header, justify))

    def add_row(self, *cells: str | Text) -> None:
        self.rows.append([cell.copy() if isinstance(cell, Text) else Text(str(cell)) for cell in cells])
        for cell in self.rows[-1]:
            cell.plain = cell.plain.translate(_ESCAPES)  # one cell, one line

    @property
    def row_count(self) -> int:
        return len(self.rows)

    def widths(self, available: int) -> list[int]:
        """Column widths (cells, without padding) that fit `available` cells: the widest column gives
        way first, one cell at a time."""
        widths = [display_width(column.header) for column in self.columns]
        for row in self.rows:
            widths = [max(width, display_width(cell.plain)) for width, cell in zip(widths, row)]
        while sum(widths) + 3 * len(widths) + 1 > available and max(widths, default=0) > 1:
            widths[widths.index(max(widths))] -= 1
        return widths

    def lines(self, widths: list[int]) -> list[Text]:
        """The table's lines below the title, every cell padded to its column's width."""
        padded = [width + 2 for width in widths]
        heavy = box.HEAVY_HEAD
        header = self._row([Text(column.header, style="table.header") for column in self.columns], widths,
                           (heavy.head_left, heavy.head_vertical, heavy.head_right))
        lines = [Text(heavy.get_top(padded)), *header, Text(heavy.get_row(padded, "head"))]
        for row in self.rows:
            lines += self._row(row, widths, (heavy.mid_left, heavy.mid_vertical, heavy.mid_right))
        return [*lines, Text(heavy.get_bottom(padded))]

    def _row(self, cells: list[Text], widths: list[int], edges: tuple[str, str, str]) -> list[Text]:
        folded = [fold(cell, width) for cell, width in zip(cells, widths)]
        left, middle, right = edges
        lines = []
        for index in range(max(len(parts) for parts in folded)):
            line = Text(left)
            for column, parts, width in zip(self.columns, folded, widths):
                part = parts[index] if index < len(parts) else Text("")
                gap = " " * (width - display_width(part.plain))
                line.append(" ")
                line.append_text(Text(gap) + part if column.justify == "right" else part + Text(gap))
                line.append(" " + (middle if column is not self.columns[-1] else right))
            lines.append(line)
        return lines

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        available = options.max_width
        widths = self.widths(available)
        lines = self.lines(widths)
        # rich crops a printed line by ITS measure, which can exceed ours (a conjunct counts 2): leave room.
        excess = max(cell_len(line.plain) - display_width(line.plain) for line in lines)
        if excess > 0 and sum(widths) + 3 * len(widths) + 1 + excess > available:
            widths = self.widths(available - excess)
            lines = self.lines(widths)
        if self.title:
            title = Text(self.title, style="table.title", justify="center")
            yield from console.render(title, options.update(width=sum(widths) + 3 * len(widths) + 1))
        for line in lines:
            yield from line.render(console)
            yield Segment.line()
