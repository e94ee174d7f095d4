"""Where the CJK font for signature stamps (and the court report) comes from.

The default is Noto Sans SC from the ``pylopdf-fonts-zh-cn`` package, a main dependency, so a
plain ``pip install`` gives every machine a font that draws Chinese names (decision 0006).
An operator can name another font with ``EVIDENCE_LEDGER_CJK_FONT``; Debian's
``fonts-droid-fallback`` is tried last.

pyHanko's OpenType engine opens the file with fontTools as a single font, so only ``.otf`` and
``.ttf`` files work: a collection (``.ttc``, e.g. Debian's ``fonts-noto-cjk`` and
``fonts-wqy-microhei``) is refused with an error that says so.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

__all__ = [
    "CJK_FONT_ENV",
    "LEGACY_CJK_FONT_ENV",
    "CjkFontError",
    "CjkFontNotFound",
    "bundled_cjk_font",
    "cjk_font_path",
]

#: Environment variable naming an OpenType/TrueType font file with CJK glyphs.
CJK_FONT_ENV: Final = "EVIDENCE_LEDGER_CJK_FONT"
#: The variable's earlier name (decision 0005); still honoured when the new one is unset.
LEGACY_CJK_FONT_ENV: Final = "EVIDENCE_LEDGER_STAMP_FONT"

_SUPPORTED_SUFFIXES: Final = frozenset({".otf", ".ttf"})
# Single-font files from Debian packages, tried only when the bundled font is missing
# (Debian's Noto CJK and WenQuanYi packages ship only .ttc collections).
_SYSTEM_CANDIDATES: Final = (
    "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",  # fonts-droid-fallback
)


class CjkFontError(Exception):
    """The configured CJK font cannot be used."""


class CjkFontNotFound(CjkFontError):
    """No CJK font is configured, bundled or installed on this machine."""


def cjk_font_path() -> Path:
    """The OpenType/TrueType file to draw Chinese text with.

    Order: ``EVIDENCE_LEDGER_CJK_FONT`` (or its legacy name ``EVIDENCE_LEDGER_STAMP_FONT``),
    then the bundled Noto Sans SC, then Debian's Droid Sans Fallback. A configured path that
    does not exist or is not an ``.otf``/``.ttf`` file raises :class:`CjkFontError` rather
    than being silently replaced; finding nothing at all raises :class:`CjkFontNotFound`.
    """
    for variable in (CJK_FONT_ENV, LEGACY_CJK_FONT_ENV):
        configured = os.environ.get(variable)
        if configured:
            return _checked(Path(configured), f"${variable}")
    bundled = bundled_cjk_font()
    if bundled is not None:
        return bundled
    for candidate in _SYSTEM_CANDIDATES:
        path = Path(candidate)
        if path.is_file():
            return path
    raise CjkFontNotFound(
        "no CJK font found: install the project's dependencies (pylopdf-fonts-zh-cn ships "
        f"Noto Sans SC) or set {CJK_FONT_ENV} to an .otf/.ttf font with Chinese glyphs"
    )


def bundled_cjk_font() -> Path | None:
    """Noto Sans SC from the ``pylopdf-fonts-zh-cn`` package, or ``None`` if not installed."""
    try:
        import pylopdf_fonts_zh_cn
    except ImportError:
        return None
    path = Path(pylopdf_fonts_zh_cn.sans_path())
    return path if path.is_file() else None


def _checked(path: Path, source: str) -> Path:
    if not path.is_file():
        raise CjkFontError(f"{source} names {path}, which is not a file")
    if path.suffix.lower() not in _SUPPORTED_SUFFIXES:
        raise CjkFontError(
            f"{source} names {path}: only single-font .otf/.ttf files can be embedded "
            "(pyHanko cannot read font collections such as .ttc)"
        )
    return path
