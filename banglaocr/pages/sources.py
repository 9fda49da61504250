"""Page inputs -> page images: an image file is one page, a PDF gives each of its pages rendered (pypdfium2).

`file` is how layout.json names the page: an image's path as given; a PDF page's rendered image, written as
`out_dir/pages/NAME-pNNN.png` and named relative to `out_dir` (`pages/NAME-pNNN.png`) when `out_dir` is given,
else (nothing written: `predict` reads the pixels in memory) `SOURCE#page=N`, the way PDF viewers address
a page. Any input that cannot be read - not an image, not a PDF, a broken or truncated PDF, a PDF without
pages - raises `UnreadableImage` with a one-line reason; the caller counts it and goes on with the others.

>>> import tempfile, pathlib
>>> from PIL import Image
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> Image.new("RGB", (72, 36), "white").save(folder / "doc.pdf", "PDF", save_all=True,
...     append_images=[Image.new("RGB", (72, 36), "white")], resolution=72)
>>> [(p.file, p.page, p.image.size) for p in open_pages(folder / "doc.pdf", dpi=144, out_dir=folder)]
[('pages/doc-p001.png', 1, (144, 72)), ('pages/doc-p002.png', 2, (144, 72))]
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from banglaocr.data.decode import MAX_PIXELS, UnreadableImage
from banglaocr.errors import first_line

PDF_MAGIC = b"%PDF-"
PDF_DPI = 200
"""Default resolution PDF pages are rendered at: handwriting at 200 dpi is ~40-80 px per text line."""
PAGES_FOLDER = "pages"
"""Where, under `out_dir`, rendered PDF pages are written."""


@dataclass(frozen=True)
class PageImage:
    """One page: `file` as layout.json names it, `source` the input as given, `page` 1-based in a PDF (None
    for an image), `image` RGB."""

    file: str
    source: str
    page: int | None
    image: Image.Image


def is_pdf(path: str | Path) -> bool:
    """A PDF by its name (`.pdf`, any case) or by its first bytes (`%PDF-`).

    >>> is_pdf("scan.PDF"), is_pdf("scan.png")
    (True, False)
    """
    path = Path(path)
    if path.suffix.lower() == ".pdf":
        return True
    if not path.is_file():  # a FIFO would block the read
        return False
    try:
        with open(path, "rb") as handle:
            return handle.read(len(PDF_MAGIC)) == PDF_MAGIC
    except OSError:
        return False


def open_pages(path: str | Path, *, dpi: int = PDF_DPI, out_dir: Path | None = None,
               name: str | None = None) -> Iterator[PageImage]:
    """The pages of `path` one by one (an image: one page; a PDF: each page rendered at `dpi`).

    With `out_dir`, a PDF's pages are also written to `out_dir/pages/NAME-pNNN.png` (`name` defaults to
    the PDF's stem; the caller makes it unique among its inputs). `UnreadableImage` for an input that
    cannot be read."""
    source = str(path)
    if not is_pdf(path):
        from banglaocr.data.sources import open_image

        # predict's own checks first: a missing file, a FIFO (which would block), an empty file
        yield PageImage(file=source, source=source, page=None, image=open_image(source))
        return
    yield from _pdf_pages(Path(path), source, dpi, out_dir, name or Path(path).stem)


def _pdf_pages(path: Path, source: str, dpi: int, out_dir: Path | None, name: str) -> Iterator[PageImage]:
    document = _open_pdf(path)
    try:
        if len(document) == 0:
            raise UnreadableImage("a PDF without pages")
        for index in range(len(document)):
            image = _render(document, index, dpi)
            file = f"{source}#page={index + 1}"
            if out_dir is not None:
                relative = f"{PAGES_FOLDER}/{name}-p{index + 1:03d}.png"
                target = Path(out_dir) / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                from banglaocr.files import atomic_write

                atomic_write(target, lambda tmp: image.save(tmp, format="PNG"))
                file = relative
            yield PageImage(file=file, source=source, page=index + 1, image=image)
    finally:
        document.close()


def render_pdf_page(path: str | Path, page: int, width: int) -> Image.Image:
    """Page `page` (1-based) of a PDF, rendered `width` pixels wide: the page `open_pages` gave when it
    rendered it that wide, so boxes found on it cut the same words. The last few pages rendered are kept
    (a review cuts many words from one page). `UnreadableImage` for a PDF or page that cannot be read.

    >>> render_pdf_page("missing.pdf", 1, 800)
    Traceback (most recent call last):
    ...
    banglaocr.data.decode.UnreadableImage: cannot read the PDF (No such file or directory)
    """
    path = Path(path)
    try:
        stamp = path.stat().st_mtime_ns
    except OSError as err:
        raise UnreadableImage(f"cannot read the PDF ({err.strerror or first_line(err)})") from None
    return _rendered_page(str(path), stamp, page, width).copy()


@functools.lru_cache(maxsize=4)
def _rendered_page(path: str, stamp: int, page: int, width: int) -> Image.Image:
    import pypdfium2 as pdfium

    document = _open_pdf(Path(path))
    try:
        if not 1 <= page <= len(document):
            raise UnreadableImage(f"the PDF has no page {page} (it has {len(document)})")
        points = document[page - 1].get_size()[0]
        # The whole dpi that gives this width: the very scale `open_pages` rendered at, so the very pixels.
        image = _render(document, page - 1, max(1, round(72 * width / points)))
        if image.width != width:  # rounding in the renderer: the boxes are in `width` pixels
            image = image.resize((width, round(image.height * width / image.width)))
        return image
    except pdfium.PdfiumError as err:
        raise UnreadableImage(f"page {page} cannot be rendered ({first_line(err)})") from None
    finally:
        document.close()


def _open_pdf(path: Path):
    """The PDF as a pypdfium2 document (the caller closes it); `UnreadableImage` when it is none."""
    import pypdfium2 as pdfium

    if not path.is_file():  # a FIFO would block the read below
        raise UnreadableImage(f"not a regular file: {path}" if path.exists() else f"no such file: {path}")
    try:
        with open(path, "rb") as handle:
            head = handle.read(1024)
    except OSError as err:
        raise UnreadableImage(f"cannot read the PDF ({err.strerror or first_line(err)})") from None
    if PDF_MAGIC not in head:
        raise UnreadableImage("not a PDF (no %PDF- header)")
    try:
        return pdfium.PdfDocument(str(path))
    except pdfium.PdfiumError as err:
        raise UnreadableImage(f"not a readable PDF ({first_line(err)})") from None


def _render(document, index: int, dpi: float) -> Image.Image:
    """Page `index` as RGB at `dpi`, at a lower resolution when `dpi` would exceed the pixel limit."""
    import pypdfium2 as pdfium

    try:
        page = document[index]
        width, height = page.get_size()  # in points, 1/72 inch
        scale = dpi / 72
        if width * height * scale * scale > MAX_PIXELS:
            scale = math.sqrt(MAX_PIXELS / (width * height)) * 0.99
        image = page.render(scale=scale).to_pil().convert("RGB")
        page.close()
        return image
    except pdfium.PdfiumError as err:
        raise UnreadableImage(f"page {index + 1} cannot be rendered ({first_line(err)})") from None
