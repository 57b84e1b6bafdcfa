"""The layers point one way: services depend on shared and never on each other or on the CLI;
shared depends on nothing of Koda's; the CLI reaches a service only through its package.

Read from the source with ast, so an import inside a function counts as much as one at the top.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SERVICES = sorted(p.name for p in (ROOT / "services").iterdir() if (p / "service.py").exists())


def _imports(path: Path) -> list[tuple[int, str]]:
    """Absolute `koda...` module names a file imports, with their line numbers."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return [(line, name) for line, name in found if name == "koda" or name.startswith("koda.")]


def _violations(folder: str, allowed: tuple[str, ...]) -> list[str]:
    bad = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        for line, name in _imports(path):
            if not name.startswith(allowed):
                bad.append(f"{path.relative_to(ROOT)}:{line}: imports {name}")
    return bad


def test_the_service_list_is_read_from_the_tree() -> None:
    assert SERVICES == ["actions", "gateway", "scheduler", "scraper", "watchdog", "worker"]


def test_shared_depends_on_nothing_of_kodas_but_itself() -> None:
    assert _violations("shared", ("koda.shared.",)) == []


def test_each_service_depends_on_shared_and_itself_only() -> None:
    bad = []
    for name in SERVICES:
        bad += _violations(f"services/{name}", ("koda.shared.", f"koda.services.{name}."))
    assert bad == []


def test_the_cli_uses_a_service_only_through_its_package() -> None:
    """`from koda.services.scraper import site_admin` is fine; reaching into a module
    (`from koda.services.gateway import controls`) is not."""
    bad = []
    for path in sorted((ROOT / "koda").rglob("*.py")):
        for line, name in _imports(path):
            parts = name.split(".")
            if parts[:2] != ["koda", "services"] or len(parts) < 4:
                continue
            module = ROOT / "services" / parts[2] / parts[3]
            if len(parts) > 4 or module.with_suffix(".py").exists() or module.is_dir():
                bad.append(f"{path.relative_to(ROOT)}:{line}: imports {name}")
    assert bad == []


def test_a_violation_is_reported_with_file_and_line(tmp_path: Path) -> None:
    """The check itself can fail: a planted cross-service import is named."""
    planted = tmp_path / "planted.py"
    planted.write_text("import os\n\ndef f():\n    from koda.services.worker.ledger import Ledger\n")
    assert _imports(planted) == [(4, "koda.services.worker.ledger.Ledger")]


def test_every_exception_koda_raises_on_purpose_is_a_koda_error() -> None:
    """One family (shared/errors.py), so a caller can catch Koda's own errors without strings."""
    builtin = {"Exception", "ValueError", "RuntimeError", "OSError", "LookupError", "KeyError"}
    bad = []
    for folder in ("shared", "services", "koda"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if not isinstance(node, ast.ClassDef) or node.name == "KodaError":
                    continue
                bases = {b.id for b in node.bases if isinstance(b, ast.Name)}
                if bases & builtin and not bases - builtin:
                    bad.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.name}")
    assert bad == []
