"""Checks on an uploaded PDF's structure that pyHanko does not make when it opens a file.

pyHanko reads a page tree lazily and trusts its ``/Count``. An uploaded file whose tree
loops (a ``/Kids`` entry pointing back up), nests without end, or claims more pages than
it holds opens fine, and only fails later, when a signature is placed on a page. The
upload is the place to refuse it: :func:`count_pages` walks the tree once (ISO 32000-1
section 7.7.3), with a bound on the number of nodes and the depth, and returns the number
of pages actually found, which must equal the root's ``/Count``.
"""

from __future__ import annotations

from typing import Any, Final

from pyhanko.pdf_utils import generic

__all__ = ["MAX_PAGE_TREE_DEPTH", "MAX_PAGE_TREE_NODES", "PageTreeError", "count_pages"]

#: More page-tree nodes than any document a task signs (pages and intermediate nodes).
MAX_PAGE_TREE_NODES: Final = 100_000
#: Deeper than any page tree a PDF writer makes (they balance trees of a few levels).
MAX_PAGE_TREE_DEPTH: Final = 64


class PageTreeError(ValueError):
    """The page tree is broken; the message says how."""


def count_pages(pages_ref: Any) -> int:
    """The number of ``/Page`` leaves under the root ``/Pages`` node, checked against its
    ``/Count``. Raises :class:`PageTreeError` for a loop, a node seen twice, a tree too big
    or too deep, a node that is neither ``/Pages`` nor ``/Page``, or a wrong count."""
    root = _resolve(pages_ref)
    if not isinstance(root, generic.DictionaryObject):
        raise PageTreeError("the catalog's /Pages is not a dictionary")
    seen: set[tuple[int, int]] = set()
    _mark(pages_ref, seen)
    stack: list[tuple[generic.DictionaryObject, int]] = [(root, 0)]
    pages = nodes = 0
    while stack:
        node, depth = stack.pop()
        nodes += 1
        if nodes > MAX_PAGE_TREE_NODES:
            raise PageTreeError(f"the page tree has more than {MAX_PAGE_TREE_NODES} nodes")
        kind = node.get("/Type")
        if kind == "/Page" or (kind is None and "/Kids" not in node):
            pages += 1
            continue
        if kind not in ("/Pages", None):
            raise PageTreeError(f"a page tree node has /Type {kind}")
        if depth >= MAX_PAGE_TREE_DEPTH:
            raise PageTreeError(f"the page tree is deeper than {MAX_PAGE_TREE_DEPTH} levels")
        kids = _resolve(node.raw_get("/Kids")) if "/Kids" in node else None
        if not isinstance(kids, generic.ArrayObject):
            raise PageTreeError("a /Pages node has no /Kids array")
        for index in range(len(kids)):
            raw = kids.raw_get(index)
            _mark(raw, seen)
            kid = _resolve(raw)
            if not isinstance(kid, generic.DictionaryObject):
                raise PageTreeError("a /Kids entry is not a dictionary")
            stack.append((kid, depth + 1))
    declared = root.get("/Count")
    if not isinstance(declared, int) or declared != pages:
        raise PageTreeError(f"the page tree declares /Count {declared} but holds {pages} pages")
    return pages


def _mark(raw: Any, seen: set[tuple[int, int]]) -> None:
    """Remember an indirect node; a second visit means a loop or a shared node."""
    if isinstance(raw, generic.IndirectObject):
        key = (raw.idnum, raw.generation)
        if key in seen:
            raise PageTreeError(
                f"the page tree reaches object {raw.idnum} twice (a loop or a shared node)"
            )
        seen.add(key)


def _resolve(raw: Any) -> Any:
    return raw.get_object() if isinstance(raw, generic.IndirectObject) else raw
