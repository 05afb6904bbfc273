"""The layering docs/architecture.md draws, held against the imports of the code.

The domain packages at the core never import the layers above them (the composition root, the
HTTP edges, the CLI), and ``keys`` does not import ``routing`` (routing reads a key's policy; a key's
explanation, which needs both, lives above them in ``glasskey.explanation``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "glasskey"
CORE = ("keys", "ledger", "routing", "pricing", "providers", "receipts", "store", "orgs")
ABOVE_THE_CORE = ("services", "app", "gateway", "admin", "dashboard", "cli", "demo", "research", "explanation")


def imported_packages(package: str) -> dict[str, set[str]]:
    """Each glasskey package (or top-level module) a package imports, with the files that do it."""
    found: dict[str, set[str]] = {}
    for path in (SRC / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            for name in names:
                parts = name.split(".")
                if _assembles_the_schema(path) and parts[-1] == "tables":
                    continue
                if parts[0] == "glasskey" and len(parts) > 1:
                    found.setdefault(parts[1], set()).add(str(path.relative_to(SRC)))
    return found


def _assembles_the_schema(path: Path) -> bool:
    # The migrations need every table, whichever package defines it: the one import allowed upward.
    return path.relative_to(SRC).parts[:2] == ("store", "migrations")


@pytest.mark.parametrize("package", CORE)
def test_a_core_package_never_imports_the_layers_above_it(package: str) -> None:
    imports = imported_packages(package)
    upward = {name: files for name, files in imports.items() if name in ABOVE_THE_CORE}
    assert upward == {}


def test_keys_and_routing_do_not_import_each_other() -> None:
    assert "routing" not in imported_packages("keys")
