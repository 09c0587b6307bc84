"""The tests' own layout: tests/ mirrors the package tree, and shared helpers live in
tests/support/, so no test module imports another."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.support.paths import REPO

TESTS = REPO / "tests"


def _python_files() -> list[Path]:
    return sorted(p for p in TESTS.rglob("*.py") if "__pycache__" not in p.parts)


def _imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, ``from a import b`` counted as both ``a`` and ``a.b``."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _is_test_module(module: str) -> bool:
    parts = module.split(".")
    return parts[0] == "tests" and parts[-1].startswith("test_")


def test_no_test_module_imports_another() -> None:
    files = _python_files()
    assert len(files) > 50  # the walk found the suite
    offenders = {
        str(path.relative_to(REPO)): sorted(filter(_is_test_module, _imported_modules(path)))
        for path in files
    }
    assert {path: found for path, found in offenders.items() if found} == {}, (
        "move what is shared into tests/support/ and import it from there"
    )


def test_test_files_sit_in_folders_that_mirror_the_packages() -> None:
    at_root = sorted(p.name for p in TESTS.glob("*.py"))
    assert at_root == ["__init__.py", "conftest.py"], "put test files in the package's folder"
    folders = {p.parent for p in _python_files()}
    missing = sorted(str(d.relative_to(REPO)) for d in folders if not (d / "__init__.py").exists())
    assert missing == [], "every test folder is a package (unique module names)"
    tested = {d.relative_to(TESTS).parts[0] for d in folders if d != TESTS} - {"support", "system"}
    packages = {p.parent.name for p in REPO.glob("*/__init__.py")}
    assert tested <= packages, f"test folders without a package: {sorted(tested - packages)}"


def test_the_check_sees_a_test_module_import() -> None:
    assert _is_test_module("tests.edge.test_edge")
    assert _is_test_module("tests.test_edge")
    assert not _is_test_module("tests.support.edge")
    assert not _is_test_module("wire.test_vectors")
