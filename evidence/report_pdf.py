"""Drawing the court report with fpdf2: fonts, page furniture and a fast wrapping table.

fpdf2's own ``table()`` lays out each cell through its full text engine (about 3 ms a row),
which would take half a minute for a 10,000-event timeline. :class:`Table` here wraps text
itself with cached glyph widths and draws each line with ``FPDF.text``, which is two orders
of magnitude faster, and repeats its heading row on every page it spans.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from fpdf import FPDF

__all__ = ["Column", "ReportPdf", "Table", "key_values"]

SANS: Final = "NotoSansSC"
MARGIN: Final = 12.0
_PT_TO_MM: Final = 25.4 / 72
_BORDER_GREY: Final = (170, 170, 170)
_HEADING_FILL: Final = (225, 231, 240)
_ZEBRA_FILL: Final = (244, 246, 249)
_TEXT: Final = (20, 20, 20)
_MUTED: Final = (90, 90, 90)
_ACCENT: Final = (24, 60, 120)
# One CJK ideograph (or full-width form, or CJK punctuation) is a line-break opportunity
# on either side; everything else breaks at white space, or anywhere if a word is too long.
_TOKENS: Final = re.compile(
    r"[\u2e80-\u2fff\u3000-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef]"
    r"|[^\s\u2e80-\u2fff\u3000-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef]+"
    r"|[ \t]+"
)

#: Closing punctuation never starts a line (a simple kinsoku rule): it may overhang instead.
_NO_LINE_START: Final = frozenset("，。、；：！？）》」』】…,.;:!?)")


class ReportPdf(FPDF):
    """An A4 PDF/A-3B document with the CJK font and the report's header and footer."""

    def __init__(self, *, font: Path, header_left: str, header_right: str, footer: str) -> None:
        super().__init__(orientation="P", unit="mm", format="A4", enforce_compliance="PDF/A-3B")
        self.set_margins(MARGIN, MARGIN + 6, MARGIN)
        self.set_auto_page_break(auto=True, margin=MARGIN + 6)
        self.add_font(SANS, "", str(font))
        self.alias_nb_pages("{nb}")
        self._header_left = header_left
        self._header_right = header_right
        self._footer = footer
        self._widths: dict[tuple[str, float], dict[str, float]] = {}

    # -- page furniture ------------------------------------------------------------------

    def header(self) -> None:
        self.set_font(SANS, size=7)
        self.set_text_color(*_MUTED)
        y = MARGIN - 2
        self.text(MARGIN, y, self._header_left)
        right = self._fit(self._header_right, self.w / 2 - MARGIN)
        self.text(self.w - MARGIN - self.get_string_width(right), y, right)
        self.set_draw_color(*_BORDER_GREY)
        self.set_line_width(0.2)
        self.line(MARGIN, y + 1.5, self.w - MARGIN, y + 1.5)
        self.set_text_color(*_TEXT)
        self.set_xy(MARGIN, MARGIN + 6)

    def footer(self) -> None:
        self.set_font(SANS, size=7)
        self.set_text_color(*_MUTED)
        y = self.h - MARGIN + 2
        self.set_draw_color(*_BORDER_GREY)
        self.set_line_width(0.2)
        self.line(MARGIN, y - 4, self.w - MARGIN, y - 4)
        self.text(MARGIN, y, self._footer)
        n = self.page_no()
        # fpdf2 replaces "{nb}" with the page count at output, in text drawn by cell().
        self.set_xy(MARGIN, y - 2.6)
        self.cell(
            w=self.w - 2 * MARGIN,
            h=3.5,
            text=f"Page {n} of {{nb}} / 第 {n} 页 共 {{nb}} 页",
            align="R",
        )
        self.set_text_color(*_TEXT)

    def new_page(self) -> None:
        """A page break that keeps the current orientation (the timeline is landscape)."""
        self.add_page(orientation=str(self.cur_orientation.value))

    # -- text helpers ----------------------------------------------------------------------

    def width_of(self, text: str) -> float:
        """Width in mm of ``text`` in the current font, from cached per-character widths."""
        key = (self.font_family, self.font_size_pt)
        cache = self._widths.get(key)
        if cache is None:
            cache = self._widths[key] = {}
        total = 0.0
        for ch in text:
            w = cache.get(ch)
            if w is None:
                w = cache[ch] = self.get_string_width(ch)
            total += w
        return total

    def wrap(self, text: str, width: float) -> list[str]:
        """Greedy line breaking of ``text`` to ``width`` mm; explicit newlines are kept."""
        lines: list[str] = []
        for paragraph in text.split("\n"):
            current = ""
            current_w = 0.0
            for token in _TOKENS.findall(paragraph):
                token_w = self.width_of(token)
                if current_w + token_w <= width or (token in _NO_LINE_START and current):
                    current += token
                    current_w += token_w
                    continue
                if token.isspace():
                    lines.append(current.rstrip())
                    current, current_w = "", 0.0
                    continue
                if current.strip():
                    lines.append(current.rstrip())
                current, current_w = "", 0.0
                if token_w <= width:
                    current, current_w = token, token_w
                    continue
                for ch in token:  # a word wider than the column: break anywhere
                    ch_w = self.width_of(ch)
                    if current_w + ch_w > width and current:
                        lines.append(current)
                        current, current_w = "", 0.0
                    current += ch
                    current_w += ch_w
            lines.append(current.rstrip())
        return lines

    def _fit(self, text: str, width: float) -> str:
        if self.width_of(text) <= width:
            return text
        while text and self.width_of(text + "…") > width:
            text = text[:-1]
        return text + "…"

    # -- blocks ------------------------------------------------------------------------------

    def heading(self, english: str, chinese: str, *, level: int = 0) -> None:
        """A bilingual section heading, also an outline entry (bookmark)."""
        size = 15.0 if level == 0 else 11.5
        needed = size * _PT_TO_MM * 1.6 + 12
        if self.get_y() + needed > self.page_break_trigger:
            self.new_page()
        self.start_section(f"{english} {chinese}", level=level)
        self.ln(2 if level == 0 else 1)
        self.set_font(SANS, size=size)
        self.set_text_color(*_ACCENT)
        baseline = self.get_y() + size * _PT_TO_MM
        self.text(self.l_margin, baseline, f"{english}  {chinese}")
        if level == 0:
            self.set_draw_color(*_ACCENT)
            self.set_line_width(0.4)
            self.line(self.l_margin, baseline + 1.6, self.w - self.r_margin, baseline + 1.6)
        self.set_text_color(*_TEXT)
        self.set_y(baseline + (4.0 if level == 0 else 2.5))

    def paragraph(
        self, text: str, *, size: float = 8.5, color: tuple[int, int, int] = _TEXT
    ) -> None:
        """Wrapped body text across the page's width, breaking pages as needed."""
        self.set_font(SANS, size=size)
        self.set_text_color(*color)
        line_h = size * _PT_TO_MM * 1.45
        for line in self.wrap(text, self.epw):
            if self.get_y() + line_h > self.page_break_trigger:
                self.new_page()
                self.set_font(SANS, size=size)
                self.set_text_color(*color)
            self.text(self.l_margin, self.get_y() + size * _PT_TO_MM, line)
            self.set_y(self.get_y() + line_h)
        self.set_text_color(*_TEXT)
        self.ln(1.2)

    def boxed(
        self, text: str, *, fill: tuple[int, int, int], size: float = 9.0, pad: float = 2.5
    ) -> None:
        """Text in a filled box (verdict, command line); kept on one page."""
        self.set_font(SANS, size=size)
        line_h = size * _PT_TO_MM * 1.45
        lines = self.wrap(text, self.epw - 2 * pad)
        height = len(lines) * line_h + 2 * pad
        if self.get_y() + height > self.page_break_trigger:
            self.new_page()
            self.set_font(SANS, size=size)
        top = self.get_y()
        self.set_fill_color(*fill)
        self.set_draw_color(*_BORDER_GREY)
        self.set_line_width(0.2)
        self.rect(self.l_margin, top, self.epw, height, style="DF")
        y = top + pad
        for line in lines:
            self.text(self.l_margin + pad, y + size * _PT_TO_MM, line)
            y += line_h
        self.set_y(top + height + 2)


@dataclass(frozen=True)
class Column:
    title: str
    width: float
    """A share of the usable width; the shares are scaled to fill it."""


class Table:
    """Rows of wrapped text in bordered columns, spanning pages, heading repeated."""

    def __init__(
        self,
        pdf: ReportPdf,
        columns: Sequence[Column],
        *,
        size: float = 7.5,
        pad: float = 1.0,
        heading: bool = True,
        first_column_muted: bool = False,
        max_lines: int = 40,
    ) -> None:
        self.pdf = pdf
        total = sum(c.width for c in columns)
        self.widths = [c.width * pdf.epw / total for c in columns]
        self.titles = [c.title for c in columns]
        self.size = size
        self.pad = pad
        self.line_h = size * _PT_TO_MM * 1.32
        self.heading = heading
        self.first_column_muted = first_column_muted
        self.max_lines = max_lines
        self._row_count = 0

    def draw(self, rows: Iterable[Sequence[str]]) -> None:
        pdf = self.pdf
        pdf.set_font(SANS, size=self.size)
        pdf.set_line_width(0.15)
        if self.heading:
            self._draw_heading(force_room=True)
        for row in rows:
            self._draw_row(row)
        pdf.set_y(pdf.get_y() + 2)

    def _cell_lines(self, row: Sequence[str]) -> list[list[str]]:
        cells = []
        for text, width in zip(row, self.widths, strict=True):
            lines = self.pdf.wrap(text, width - 2 * self.pad)
            if len(lines) > self.max_lines:
                lines = [*lines[: self.max_lines - 1], "… (see events.jsonl / 详见 events.jsonl)"]
            cells.append(lines)
        return cells

    def _draw_heading(self, *, force_room: bool = False) -> None:
        pdf = self.pdf
        cells = [
            pdf.wrap(t, w - 2 * self.pad) for t, w in zip(self.titles, self.widths, strict=True)
        ]
        height = max(len(c) for c in cells) * self.line_h + 2 * self.pad
        if force_room and pdf.get_y() + height + 3 * self.line_h > pdf.page_break_trigger:
            pdf.new_page()
            pdf.set_font(SANS, size=self.size)
            pdf.set_line_width(0.15)
        self._paint(cells, height, fill=_HEADING_FILL)

    def _draw_row(self, row: Sequence[str]) -> None:
        pdf = self.pdf
        cells = self._cell_lines(row)
        height = max(len(c) for c in cells) * self.line_h + 2 * self.pad
        if pdf.get_y() + height > pdf.page_break_trigger:
            pdf.new_page()
            pdf.set_font(SANS, size=self.size)
            pdf.set_line_width(0.15)
            if self.heading:
                self._draw_heading()
        self._row_count += 1
        fill = _ZEBRA_FILL if self._row_count % 2 == 0 else None
        self._paint(cells, height, fill=fill, muted_first=self.first_column_muted)

    def _paint(
        self,
        cells: list[list[str]],
        height: float,
        *,
        fill: tuple[int, int, int] | None,
        muted_first: bool = False,
    ) -> None:
        pdf = self.pdf
        top = pdf.get_y()
        left = pdf.l_margin
        if fill is not None:
            pdf.set_fill_color(*fill)
            pdf.rect(left, top, sum(self.widths), height, style="F")
        pdf.set_draw_color(*_BORDER_GREY)
        x = left
        ascent = self.size * _PT_TO_MM * 0.88
        for index, (lines, width) in enumerate(zip(cells, self.widths, strict=True)):
            if muted_first and index == 0:
                pdf.set_text_color(*_MUTED)
            y = top + self.pad + ascent
            for line in lines:
                if line:
                    pdf.text(x + self.pad, y, line)
                y += self.line_h
            if muted_first and index == 0:
                pdf.set_text_color(*_TEXT)
            x += width
        pdf.line(left, top + height, left + sum(self.widths), top + height)
        pdf.set_y(top + height)


def key_values(
    pdf: ReportPdf, rows: Iterable[tuple[str, str]], *, label_share: float = 0.28
) -> None:
    """A two-column label/value table without a heading row."""
    Table(
        pdf,
        [Column("", label_share), Column("", 1 - label_share)],
        size=8,
        heading=False,
        first_column_muted=True,
    ).draw(rows)
