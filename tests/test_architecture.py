"""The layer rules of ARCHITECTURE.md, checked by a machine rather than by review.

The import rules (app layers, pure engines and trust, the HTTP client, services that never import the web layer)
are import-linter contracts in pyproject.toml, run by `make lint` and by the tests below. What a contract cannot
say is checked here with the AST: which imports happen at module level, and which names the engines use of trust.
"""

import ast
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ["exports", "governance", "tracking", "evaluations", "compression", "accounts", "ledger", "trust"]
APPS = {"accounts", "ledger", "compression", "evaluations", "tracking", "governance", "exports"}
PACKAGES = [*LAYERS, "safeshrink_client"]


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


def _lint_imports(cwd: Path) -> subprocess.CompletedProcess:
    command = [str(Path(sys.executable).parent / "lint-imports"), "--no-cache"]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300)


def _contracts() -> dict[str, dict]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    return {contract["id"]: contract for contract in config["contracts"]}


def test_import_contracts_are_kept():
    result = _lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(_contracts())} kept, 0 broken" in result.stdout


def test_contracts_say_what_architecture_md_says():
    """The contracts are the rules: the layer order, Django-free engines and trust, services apart from the web."""
    contracts = _contracts()
    assert contracts["app-layers"]["layers"] == LAYERS
    assert set(contracts["pure-no-django"]["source_modules"]) == {"compression.engine", "evaluations.engine", "trust"}
    assert {"django", "rest_framework", "celery"} <= set(contracts["pure-no-django"]["forbidden_modules"])
    assert set(contracts["api-client"]["source_modules"]) == {*LAYERS} - {"governance"}
    assert {"*.api", "*.views"} <= set(contracts["services-not-web"]["forbidden_modules"])
    for contract in contracts.values():  # an exception to a rule is an ignored import, and only this one exists
        ignored = set(contract.get("ignore_imports", ()))
        assert ignored <= {
            "evaluations.engine.** -> compression.engine.**",
            "evaluations.engine -> compression.engine.**",
        }


def test_contracts_catch_each_kind_of_violation(tmp_path):
    """A copy of the code with one bad import per rule breaks the matching contract (the contracts can fail)."""
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("*.pyc", "__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    bad = {
        "compression/__init__.py": "from evaluations import models",  # a lower layer imports a higher one
        "ledger/__init__.py": "from accounts import models",
        "exports/__init__.py": "import safeshrink_client",  # only governance uses the HTTP client
        "safeshrink_client/__init__.py": "import django",
        "trust/__init__.py": "import django",
        "compression/engine/__init__.py": "from compression import models",  # engines import no app code
        "evaluations/engine/__init__.py": "def load():\n    from compression.services import runs",
        "governance/services/__init__.py": "from governance import views",  # services never import the web layer
    }
    for path, line in bad.items():
        with open(tmp_path / path, "a") as f:
            f.write(f"\n{line}\n")
    result = _lint_imports(tmp_path)
    assert result.returncode != 0
    out = " ".join(result.stdout.split())
    for expected in (
        "compression is not allowed to import evaluations",
        "ledger is not allowed to import accounts",
        "exports is not allowed to import safeshrink_client",
        "safeshrink_client is not allowed to import django",
        "trust is not allowed to import django",
        "compression.engine is not allowed to import compression.models",
        "evaluations.engine is not allowed to import compression.services",
        "governance.services is not allowed to import governance.views",
    ):
        assert expected in out, expected
    assert f"0 kept, {len(_contracts())} broken" in out


def test_only_engines_import_torch_at_module_level():
    """Outside the engines, torch may be imported only inside a function (workers only)."""
    violations = []
    for app in [*APPS, "trust", "safeshrink_client", "config"]:
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


def test_trust_is_the_library_at_the_bottom_that_engines_may_use():
    """`trust` (canonical JSON, digests, signatures) is a Django-free library below every app (the contracts
    app-layers, pure-no-django and api-client check that trust imports no app, no engine and no Django). The
    engines may import it, so a digest is defined once, in `trust.canonical`, and use nothing else of it."""
    engine_uses = {
        name
        for path in (ROOT / "compression" / "engine").rglob("*.py")
        for name in _imports(path)
        if name.split(".")[0] == "trust"
    }
    assert engine_uses == {"trust.canonical"}  # the engines use the canonical JSON, nothing else of trust


MAX_MODULE_LINES = 600


def test_no_module_outside_tests_and_migrations_is_over_600_lines():
    """Rooms of one job: a module that grows past this is doing more than one thing; split it by job."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "*.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    files = [
        ROOT / name
        for name in listed.stdout.split()
        if not name.startswith("tests/") and "/migrations/" not in name and (ROOT / name).is_file()
    ]
    assert len(files) > 50, "git ls-files found too few modules"
    too_long = {
        f.relative_to(ROOT).as_posix(): n for f in files if (n := len(f.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert not too_long, f"modules over {MAX_MODULE_LINES} lines: {too_long}"


def test_engines_import_no_signing_libraries():
    """The engines use trust.canonical only: importing them must not load cryptography or pyHanko (a GPU
    worker or a regulator's offline recompute has the engines without the signing stack)."""
    code = (
        "import sys\n"
        "import compression.engine.behaviour_distill, compression.engine.methods, evaluations.engine.generate\n"
        "import evaluations.engine.predict, evaluations.engine.bootstrap\n"
        "loaded = sorted(m for m in ('cryptography', 'pyhanko', 'django') if m in sys.modules)\n"
        "print(','.join(loaded))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert done.stdout.strip() == "", f"the engines loaded {done.stdout.strip()}"
