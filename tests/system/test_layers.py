"""The layers of docs/design.md, enforced: ``common`` imports none of ours; ``wire`` and
``store`` import only ``common``; services never import each other, only those three; only the
CLI (``runhours``) wires them together.

Every import statement of every module is read (``ast``), top-level and inside functions
alike, so a lazy import cannot slip past.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator

from tests.support.paths import REPO

# package → the runhours packages it may import (besides itself); docs/design.md "Layers".
ALLOWED: dict[str, frozenset[str]] = {
    "common": frozenset(),
    "wire": frozenset({"common"}),
    "store": frozenset({"common"}),
    "simulators": frozenset({"common", "wire"}),
    "edge": frozenset({"common", "wire"}),
    "ingest": frozenset({"common", "wire", "store"}),
    "analytics": frozenset({"common", "wire", "store"}),
    "dashboards": frozenset({"common", "wire", "store"}),
    "runhours": frozenset(
        {"common", "wire", "store", "simulators", "edge", "ingest", "analytics", "dashboards"}
    ),
}


def imported(source: str) -> Iterator[tuple[int, str]]:
    """(line, module) of every absolute import in ``source``."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module


def violations(package: str, path: str, source: str) -> list[str]:
    """``path:line imports module`` for each import ``package`` may not make."""
    out = []
    for line, module in imported(source):
        top = module.split(".")[0]
        if top in ALLOWED and top != package and top not in ALLOWED[package]:
            out.append(f"{path}:{line} imports {module} ({package} may import "
                       f"{', '.join(sorted(ALLOWED[package])) or 'none of ours'})")  # fmt: skip
    return out


def test_every_package_keeps_to_its_layer() -> None:
    found = []
    checked = 0
    for package in ALLOWED:
        for path in sorted((REPO / package).rglob("*.py")):
            checked += 1
            found += violations(package, str(path.relative_to(REPO)), path.read_text())
    assert checked > 100  # the whole tree was read
    assert found == []


def test_a_cross_service_import_is_caught() -> None:
    """The check itself: an ingest module importing the edge, lazily, inside a function."""
    source = "from wire import MachineRef\n\ndef f():\n    from edge.buffer import SampleBuffer\n"
    assert violations("ingest", "ingest/x.py", source) == [
        "ingest/x.py:4 imports edge.buffer (ingest may import common, store, wire)"
    ]
    assert violations("wire", "wire/x.py", "import store\n") == [
        "wire/x.py:1 imports store (wire may import common)"
    ]
    assert violations("common", "common/x.py", "from wire import WireError\n") == [
        "common/x.py:1 imports wire (common may import none of ours)"
    ]
    assert violations("runhours", "runhours/x.py", "import edge, ingest\n") == []
