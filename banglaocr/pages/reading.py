"""Read whole pages: each page of each input segmented (`segment.segment_page`) and its word crops read.

`read_pages` yields one `PageReading` per page, in input order (a PDF gives one per page); an input that
cannot be opened - not an image, a broken PDF, a page that does not render - gives a `PageReading` with
`error` set (the pages of a PDF before it stay), and the others go on. Words are read as `predict` reads
word crops (`infer.read_images`: the same batching, blank crops never shown to the model, non-finite
readings marked), so a word on a page reads as its crop would on its own.

A page's `text` is its lines top to bottom, each line its words left to right joined by one space
(words the model could not read, and blank crops, left out).

>>> from types import SimpleNamespace
>>> from banglaocr.confidence import Confidence
>>> word = lambda text, p: ((0, 0, 9, 9), SimpleNamespace(text=text, confidence=p and Confidence(p, p)))
>>> page = PageReading("p.png", "p.png", None, 100, 50, 0.0, [[word("আমি", 0.9), word("", None)], [word("যাই", 0.5)]])
>>> page.text, round(page.confidence, 2)
('আমি\\nযাই', 0.7)
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from PIL import Image


@dataclass(frozen=True)
class PageReading:
    """One page read: where it came from, its size and skew, and its lines of (box, `infer.Reading`)."""

    file: str
    """The page as rows name it: the image's path as given, or `SOURCE#page=N` for a PDF page."""
    source: str
    """The input as given."""
    page: int | None
    """1-based page number in a PDF; None for an image."""
    width: int
    height: int
    skew_degrees: float
    lines: list[list[tuple[tuple[int, int, int, int], Any]]] = field(default_factory=list)
    """Top to bottom; each line's words left to right, as (box in the page's pixels, its `infer.Reading`)."""
    error: str | None = None
    """Why this input (or this PDF page) could not be read, one line; None when it was."""
    image: Image.Image | None = field(default=None, repr=False, compare=False)
    """The page's pixels (for drawing its boxes); None for an error."""

    @property
    def text(self) -> str:
        return "\n".join(" ".join(r.text for _, r in line if r.text) for line in self.lines)

    @property
    def confidence(self) -> float | None:
        """The mean confidence of the page's words that have one; None when none has."""
        values = [r.confidence.sequence for line in self.lines for _, r in line if r.confidence is not None]
        return sum(values) / len(values) if values else None

    @property
    def words(self) -> int:
        return sum(len(line) for line in self.lines)


def read_pages(model: Any, tokenizer: Any, sources: list[str], settings, *, dpi: int, batch_size: int = 16,
               num_beams: int = 1, process_index: int = 0, num_processes: int = 1) -> Iterator[PageReading]:
    """Segment and read every page of `sources` (image files and PDFs); see the module docstring.

    Several processes (`accelerate launch`): every process segments every page, the page's batches are dealt
    out by `read_images`, and every process yields every `PageReading`."""
    from banglaocr.data.decode import UnreadableImage
    from banglaocr.errors import first_line
    from banglaocr.infer import read_images
    from banglaocr.pages.segment import segment_page
    from banglaocr.pages.sources import open_pages

    for source in sources:
        pages = open_pages(source, dpi=dpi)
        while True:
            try:
                page = next(pages)
            except StopIteration:
                break
            except (UnreadableImage, OSError) as err:
                yield PageReading(source, source, None, 0, 0, 0.0, error=first_line(err))
                break
            layout = segment_page(page.image)
            boxes = [[word.box for word in line] for line in layout.lines]
            crops = [word.image for line in layout.lines for word in line]
            readings = iter(read_images(model, tokenizer, crops, settings, batch_size=batch_size,
                                        num_beams=num_beams, chunk_size=max(1, len(crops)),
                                        process_index=process_index, num_processes=num_processes))
            lines = [[(tuple(int(v) for v in box), next(readings)) for box in line] for line in boxes]
            yield PageReading(page.file, page.source, page.page, layout.width, layout.height,
                              layout.skew_degrees, lines, image=page.image)
