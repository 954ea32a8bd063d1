"""The layer rules of ARCHITECTURE.md, checked by a machine rather than by review."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# app -> the apps it may import (besides itself). Lower layers never import higher ones.
ALLOWED = {
    "ledger": set(),
    "accounts": {"ledger"},
    "compression": {"accounts", "ledger"},
    "evaluations": {"accounts", "ledger", "compression"},
    "governance": {"accounts", "ledger", "compression", "evaluations", "safeshrink_client"},
    "exports": {"accounts", "ledger", "compression", "evaluations", "governance"},
}
APPS = set(ALLOWED)


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _sources(app: str):
    return [p for p in (ROOT / app).rglob("*.py") if "migrations" not in p.parts]


def test_apps_import_only_lower_layers():
    violations = []
    for app, allowed in ALLOWED.items():
        for path in _sources(app):
            for name in _imports(path):
                top = name.split(".")[0]
                if top in APPS | {"safeshrink_client"} and top != app and top not in allowed:
                    violations.append(f"{path.relative_to(ROOT)} imports {name}")
    assert violations == []


def test_engines_import_no_django_and_no_app_code():
    violations = []
    for engine in (ROOT / "compression" / "engine", ROOT / "evaluations" / "engine", ROOT / "trust"):
        for path in engine.rglob("*.py"):
            for name in _imports(path):
                top = name.split(".")[0]
                if top in ("django", "rest_framework", "celery") or (
                    top in APPS and not name.startswith(("compression.engine", "evaluations.engine"))
                ):
                    violations.append(f"{path.relative_to(ROOT)} imports {name}")
    assert violations == []


def test_only_engines_import_torch_at_module_level():
    """Outside the engines, torch may be imported only inside a function (workers only)."""
    violations = []
    for app in APPS:
        for path in _sources(app):
            if "engine" in path.parts:
                continue
            tree = ast.parse(path.read_text())
            for node in tree.body:
                if isinstance(node, ast.Import | ast.ImportFrom):
                    names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                    if any(n.split(".")[0] in ("torch", "transformers") for n in names):
                        violations.append(str(path.relative_to(ROOT)))
    assert violations == []
