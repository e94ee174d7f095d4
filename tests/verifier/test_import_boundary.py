"""Invariant 5: ``verifier/`` imports nothing from ``ledger``, ``projections``, ``evidence``
or ``api``, statically (every import statement) and at run time (``sys.modules``).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import verifier.errors

FORBIDDEN = frozenset({"ledger", "projections", "evidence", "api"})
VERIFIER_DIR = Path(verifier.errors.__file__).resolve().parent
PROJECT_ROOT = VERIFIER_DIR.parent


def _module_name(path: Path) -> str:
    """The dotted name of a source file under the project root."""
    parts = list(path.relative_to(PROJECT_ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _join(*parts: str) -> str:
    return ".".join(part for part in parts if part)


def imported_modules(source: str, module: str, is_package: bool) -> set[str]:
    """Every module an import statement in ``source`` names, relative imports resolved.

    A relative import is resolved against the package of ``module``; one that climbs past
    the top level (an ImportError at run time anyway) keeps just its own names. Calls of
    ``importlib.import_module`` and ``__import__`` with a literal name count too.
    """
    package = (module if is_package else module.rpartition(".")[0]).split(".")
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            keep = len(package) - (node.level - 1) if node.level else 0
            base = _join(*package[: max(keep, 0)], node.module or "")
            found.add(base)
            found.update(_join(base, alias.name) for alias in node.names)
        elif isinstance(node, ast.Call) and node.args:
            func, first = node.func, node.args[0]
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in {"import_module", "__import__"} and isinstance(first, ast.Constant):
                found.add(str(first.value))
    return found


def _forbidden(modules: set[str]) -> set[str]:
    return {name for name in modules if name.split(".")[0] in FORBIDDEN}


def test_the_scanner_resolves_absolute_relative_and_dynamic_imports() -> None:
    source = (
        "import ledger.merkle\n"
        "from evidence.pack import build\n"
        "from ..errors import ProofError\n"
        "from . import note\n"
        "from ... import api\n"
        "importlib.import_module('projections.kpi')\n"
    )
    found = imported_modules(source, "verifier._internal.merkle", is_package=False)
    assert {"verifier.errors.ProofError", "verifier._internal.note"} <= found
    assert _forbidden(found) == {
        "ledger.merkle",
        "evidence.pack",
        "evidence.pack.build",
        "api",
        "projections.kpi",
    }
    in_package = imported_modules("from .models import X\n", "verifier", is_package=True)
    assert "verifier.models.X" in in_package


SOURCES = sorted(VERIFIER_DIR.rglob("*.py"))


def test_there_are_verifier_sources_to_scan() -> None:
    assert len(SOURCES) >= 7


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PROJECT_ROOT)))
def test_verifier_module_imports_nothing_from_the_ledger_side(path: Path) -> None:
    found = imported_modules(
        path.read_text(encoding="utf-8"), _module_name(path), path.name == "__init__.py"
    )
    assert not _forbidden(found), f"{path} imports {sorted(_forbidden(found))}"


def test_importing_the_cli_loads_none_of_the_ledger_packages() -> None:
    probe = (
        "import sys, verifier.cli, verifier\n"
        "print(verifier.__file__)\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {sorted(FORBIDDEN)!r}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        check=True,
        cwd=PROJECT_ROOT,
    )
    loaded_from, loaded = done.stdout.splitlines()
    assert Path(loaded_from).resolve() == VERIFIER_DIR / "__init__.py"
    assert loaded == "[]"
