"""A tiny generator of real multi-page PDFs, for tests and the demo (no external binaries).

The pages use the standard Helvetica font, so their text is Latin-1 only; characters outside
it are drawn as ``?``. That is enough for documents whose only job is to be signed.
"""

from __future__ import annotations

import io
import textwrap
from typing import Final

from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.writer import PageObject, PdfFileWriter

__all__ = ["A4", "make_test_pdf"]

#: A4 portrait in PDF points.
A4: Final = (0, 0, 595, 842)

_MARGIN: Final = 72
_WRAP_COLUMNS: Final = 85


def make_test_pdf(
    title: str = "Supply contract",
    paragraph: str = (
        "The supplier delivers the goods listed in the annex; the buyer pays the agreed "
        "price within thirty days of delivery."
    ),
    *,
    pages: int = 2,
) -> bytes:
    """A fresh PDF with ``pages`` A4 pages, each with the title, the paragraph and 'Page i of n'."""
    if pages < 1:
        raise ValueError("a PDF needs at least one page")
    writer = PdfFileWriter(stream_xrefs=False)
    font = writer.add_object(
        generic.DictionaryObject(
            {
                generic.NameObject("/Type"): generic.NameObject("/Font"),
                generic.NameObject("/Subtype"): generic.NameObject("/Type1"),
                generic.NameObject("/BaseFont"): generic.NameObject("/Helvetica"),
                generic.NameObject("/Encoding"): generic.NameObject("/WinAnsiEncoding"),
            }
        )
    )
    resources = generic.DictionaryObject(
        {generic.NameObject("/Font"): generic.DictionaryObject({generic.NameObject("/F1"): font})}
    )
    for number in range(1, pages + 1):
        stream = generic.StreamObject(stream_data=_page_content(title, paragraph, number, pages))
        page = PageObject(contents=writer.add_object(stream), media_box=A4, resources=resources)
        writer.insert_page(page)
    output = io.BytesIO()
    writer.write(output)
    return output.getvalue()


def _page_content(title: str, paragraph: str, number: int, pages: int) -> bytes:
    top = A4[3] - _MARGIN
    lines = [f"BT /F1 20 Tf {_MARGIN} {top} Td ({_pdf_text(title)}) Tj ET"]
    y = top - 36
    for line in textwrap.wrap(paragraph, _WRAP_COLUMNS):
        lines.append(f"BT /F1 11 Tf {_MARGIN} {y} Td ({_pdf_text(line)}) Tj ET")
        y -= 15
    lines.append(f"BT /F1 9 Tf {A4[2] / 2 - 25} 40 Td (Page {number} of {pages}) Tj ET")
    return "\n".join(lines).encode("latin-1")


def _pdf_text(text: str) -> str:
    """``text`` as the inside of a PDF literal string in WinAnsi (Latin-1) encoding."""
    safe = text.encode("latin-1", errors="replace").decode("latin-1")
    return safe.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
