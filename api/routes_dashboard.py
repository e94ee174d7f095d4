"""The compliance dashboard: one page, its script and its styles, served from the package.

``GET /dashboard`` is the page and ``GET /dashboard/assets/{name}`` its files (both public:
they hold no data). The page asks for a ``compliance`` API key and reads ``/v1/kpis``,
``/v1/compliance`` and the task routes with it, in the browser. Nothing is fetched from
anywhere else: no CDN, no web fonts; the charts are inline SVG drawn by ``dashboard.js``.
Mounted without the ``/v1`` prefix.
"""

from __future__ import annotations

import re
from importlib import resources

from fastapi import APIRouter
from fastapi.responses import FileResponse, Response

from api.problems import Problem

router = APIRouter(tags=["dashboard"])

_SAFE_NAME = re.compile(r"[a-z][a-z0-9_-]{0,63}\.(?:js|css)")
# Chinese text needs a CJK font; a browser that has none of its own (a bare Linux, a
# headless test) gets Noto Sans SC (OFL-1.1) from the package the court report uses too.
# The styles name it last, for CJK code points only, so most browsers never fetch it.
_FONTS = {"noto-sans-sc.otf": ("pylopdf_fonts_zh_cn", "NotoSansSC-Regular.otf")}
_MEDIA_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".html": "text/html; charset=utf-8",
}
# The page runs only its own script and styles, and talks only to this origin.
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; font-src 'self'; "
    "img-src 'self' data: blob:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_HEADERS = {
    "Content-Security-Policy": _CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def _asset(name: str) -> bytes | None:
    """The packaged file ``name``, or ``None`` if the package has no such file."""
    entry = resources.files("api").joinpath("dashboard", name)
    if not entry.is_file():
        return None
    return entry.read_bytes()


def _serve(name: str) -> Response:
    data = _asset(name)
    if data is None:
        raise Problem(404, "not-found", f"the dashboard has no file {name!r}")
    media_type = _MEDIA_TYPES[name[name.rindex(".") :]]
    return Response(data, media_type=media_type, headers=_HEADERS)


@router.get("/dashboard", include_in_schema=False)
async def dashboard_page() -> Response:
    """The compliance dashboard (English and Chinese); it asks for an API key itself."""
    return _serve("index.html")


@router.get("/dashboard/assets/{name}", include_in_schema=False)
async def dashboard_asset(name: str) -> Response:
    """The page's script, styles and fallback CJK font, from the installed packages."""
    if name in _FONTS:
        package, file_name = _FONTS[name]
        font = resources.files(package).joinpath(file_name)
        return FileResponse(
            str(font),
            media_type="font/otf",
            headers={
                "Cache-Control": "public, max-age=604800",
                "X-Content-Type-Options": "nosniff",
            },
        )
    if not _SAFE_NAME.fullmatch(name):
        raise Problem(404, "not-found", f"the dashboard has no file {name!r}")
    return _serve(name)
