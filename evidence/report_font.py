"""A TrueType subset of the CJK font for the report, made from the OpenType (CFF) original.

fpdf2 embeds a CID-keyed CFF font (Noto Sans SC is one) with a custom encoding CMap stream.
The PDF is valid and renders everywhere, but pypdf and pdfminer.six cannot map that encoding
back to text, so names such as 陈小明 would not be searchable with them. A TrueType font is
embedded the standard way instead (CIDFontType2, ``/Identity-H``, a ``/ToUnicode`` map).

So the report first cuts the font down to the characters it can draw (everything in the
report's own source text, the input's strings, ASCII and Latin-1) with fontTools, converts the
few hundred CFF outlines to quadratic TrueType outlines (fontTools' cu2qu, within 1 font
unit), and hands that file to fpdf2, which subsets it again to the glyphs actually used.
The OFL allows modified versions to be embedded in documents (decision 0007).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any, Final

from fontTools import subset as ft_subset
from fontTools.pens.cu2quPen import Cu2QuPen
from fontTools.pens.ttGlyphPen import TTGlyphPen
from fontTools.ttLib import TTFont, newTable

__all__ = ["characters_of", "font_coverage", "truetype_subset"]

_MAX_ERROR: Final = 1.0  # font units: far below a device pixel at any print size
_BASE_CHARACTERS: Final = frozenset(chr(c) for c in (*range(0x20, 0x7F), *range(0xA0, 0x180)))
_DROP_TABLES: Final = ("GSUB", "GPOS", "GDEF", "BASE", "VORG", "vhea", "vmtx", "DSIG")


def characters_of(*values: Any) -> set[str]:
    """Every character in the strings inside ``values`` (dataclasses, tuples, mappings)."""
    found: set[str] = set()
    stack: list[Any] = list(values)
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            found.update(value)
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            stack.extend(getattr(value, f.name) for f in dataclasses.fields(value))
        elif isinstance(value, dict):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, (list, tuple, set, frozenset)):
            stack.extend(value)
    return found


@lru_cache(maxsize=4)
def font_coverage(source: Path) -> frozenset[str]:
    """The characters ``source`` has glyphs for."""
    font = TTFont(source, lazy=True)
    try:
        return frozenset(chr(c) for c in font.getBestCmap())
    finally:
        font.close()


def truetype_subset(source: Path, characters: Iterable[str], target: Path) -> Path:
    """Write to ``target`` a TrueType font with ``source``'s glyphs for ``characters``."""
    wanted = (set(characters) | _BASE_CHARACTERS) & font_coverage(source)
    font = TTFont(source)
    try:
        options = ft_subset.Options()
        options.notdef_outline = True
        options.recommended_glyphs = True
        options.layout_features = []
        options.name_IDs = ["*"]
        options.name_languages = ["*"]
        options.desubroutinize = True
        options.drop_tables += list(_DROP_TABLES)
        subsetter = ft_subset.Subsetter(options)
        subsetter.populate(unicodes={ord(c) for c in wanted})
        subsetter.subset(font)
        if "CFF " in font:
            _cff_to_glyf(font)
        font.save(str(target))
    finally:
        font.close()
    return target


def _cff_to_glyf(font: TTFont) -> None:
    """Replace the CFF outlines with quadratic ``glyf`` outlines (fontTools' otf2ttf recipe)."""
    order = font.getGlyphOrder()
    glyph_set = font.getGlyphSet()
    glyf = newTable("glyf")
    glyf.glyphOrder = order
    glyf.glyphs = {}
    for name in order:
        pen = TTGlyphPen(glyph_set)
        glyph_set[name].draw(Cu2QuPen(pen, _MAX_ERROR, reverse_direction=True))
        glyf[name] = pen.glyph()
    font["loca"] = newTable("loca")
    font["glyf"] = glyf
    for tag in ("CFF ", "VORG"):
        if tag in font:
            del font[tag]
    maxp = newTable("maxp")
    maxp.tableVersion = 0x00010000
    for attribute in (
        "maxTwilightPoints",
        "maxStorage",
        "maxFunctionDefs",
        "maxInstructionDefs",
        "maxStackElements",
        "maxSizeOfInstructions",
        "maxComponentElements",
    ):
        setattr(maxp, attribute, 0)
    maxp.maxZones = 1
    font["maxp"] = maxp
    font["head"].indexToLocFormat = 0
    font["head"].glyphDataFormat = 0
    post = font["post"]
    post.formatType = 3.0  # no glyph names: a CID-keyed font's are only "cidNNNNN"
    post.extraNames = []
    post.mapping = {}
    font.sfntVersion = "\x00\x01\x00\x00"
