"""Hostile PDFs written byte by byte: bombs, loops and lies, each small on disk.

A real PDF writer will not produce these, so they are assembled here from objects with a
correct classic cross-reference table (ISO 32000-1 section 7.5.4), which is all a reader
needs to reach the trap.
"""

from __future__ import annotations

import io
import zlib

from pypdf import PdfWriter

_CATALOG = b"<< /Type /Catalog /Pages 2 0 R >>"
_PAGE = b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] >>"


def build(objects: dict[int, bytes]) -> bytes:
    """A PDF of ``objects`` (number -> body), object 1 being the catalog."""
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets: dict[int, int] = {}
    for number in sorted(objects):
        offsets[number] = len(out)
        out += b"%d 0 obj\n%s\nendobj\n" % (number, objects[number])
    xref = len(out)
    size = max(objects) + 1
    out += b"xref\n0 %d\n0000000000 65535 f \n" % size
    for number in range(1, size):
        out += (
            b"%010d 00000 n \n" % offsets[number]
            if number in offsets
            else b"0" * 10 + b" 65535 f \n"
        )
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (size, xref)
    return bytes(out)


def _stream(data: bytes, extra: bytes = b"") -> bytes:
    return b"<< /Length %d %s>>\nstream\n%s\nendstream" % (len(data), extra, data)


def one_page(content: bytes = b"BT ET", extra: bytes = b"") -> bytes:
    """A valid one-page PDF whose page content stream is ``content``."""
    page = b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R >>"
    return build(
        {
            1: _CATALOG,
            2: b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            3: page,
            4: _stream(content, extra),
        }
    )


def content_bomb(inflated: int) -> bytes:
    """A one-page PDF whose content stream inflates (FlateDecode) to ``inflated`` bytes."""
    return one_page(zlib.compress(b"\0" * inflated, 9), b"/Filter /FlateDecode ")


def xref_stream_bomb(inflated: int) -> bytes:
    """A PDF whose cross-reference stream, read to open the file, inflates past ``inflated``."""
    objects = [_CATALOG, b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>", _PAGE]
    out = bytearray(b"%PDF-1.7\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    rows = b"\0\0\0\0\xff\xff" + b"".join(b"\1" + o.to_bytes(4, "big") + b"\0" for o in offsets)
    rows += b"\1" + xref.to_bytes(4, "big") + b"\0"
    data = zlib.compress(rows + b"\0" * inflated, 9)
    out += (
        b"4 0 obj\n<< /Type /XRef /Size 5 /W [1 4 1] /Root 1 0 R /Filter /FlateDecode "
        b"/Length %d >>\nstream\n%s\nendstream\nendobj\nstartxref\n%d\n%%%%EOF\n"
        % (len(data), data, xref)
    )
    return bytes(out)


def nested_arrays(depth: int) -> bytes:
    return build(
        {
            1: b"<< /Type /Catalog /Pages 2 0 R /X " + b"[" * depth + b"]" * depth + b" >>",
            2: b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            3: _PAGE,
        }
    )


def self_reference() -> bytes:
    """The page tree root is an indirect reference to itself."""
    return build({1: _CATALOG, 2: b"2 0 R"})


def page_tree_loop() -> bytes:
    """A /Pages node whose only kid is its own parent."""
    return build(
        {
            1: _CATALOG,
            2: b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            3: b"<< /Type /Pages /Kids [2 0 R] /Parent 2 0 R /Count 1 >>",
        }
    )


def lying_page_count(claimed: int) -> bytes:
    """One page under a root that claims ``claimed``."""
    return build(
        {1: _CATALOG, 2: b"<< /Type /Pages /Kids [3 0 R] /Count %d >>" % claimed, 3: _PAGE}
    )


def deep_page_tree(depth: int) -> bytes:
    objects = {1: _CATALOG}
    for number in range(2, depth + 2):
        objects[number] = b"<< /Type /Pages /Kids [%d 0 R] /Count 1 >>" % (number + 1)
    objects[depth + 2] = b"<< /Type /Page /MediaBox [0 0 595 842] >>"
    return build(objects)


def encrypted() -> bytes:
    writer = PdfWriter()
    writer.add_blank_page(595, 842)
    writer.encrypt("secret", algorithm="AES-256")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()
