"""Build every dashboard and write it as deterministic JSON (what Grafana provisions).

Same code and contracts → byte-identical files: keys sorted, fixed indentation, panel
ids in layout order, no timestamps or versions that change between runs.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as model

from dashboards import fleet, ingest_health, machine, usage
from dashboards.contracts import ContractView, read_contracts
from dashboards.layout import number_panels

REPO_ROOT = Path(__file__).resolve().parent.parent
GENERATED_DIR = Path(__file__).resolve().parent / "generated"
# The per-contract panels of the committed usage dashboard come from this file.
DEFAULT_CONTRACTS = REPO_ROOT / "examples" / "contracts.toml"


def default_contracts() -> list[ContractView]:
    """The contracts of ``examples/contracts.toml``, or none while it does not exist."""
    return read_contracts(DEFAULT_CONTRACTS) if DEFAULT_CONTRACTS.exists() else []


def build_all(contracts: Sequence[ContractView] | None = None) -> dict[str, model.Dashboard]:
    """Every dashboard, keyed by its file name (``None``: the default contracts)."""
    if contracts is None:
        contracts = default_contracts()
    builders = {
        "fleet-overview.json": fleet.dashboard(),
        "machine-detail.json": machine.dashboard(),
        "usage-billing.json": usage.dashboard(contracts),
        "ingest-health.json": ingest_health.dashboard(),
    }
    return {name: number_panels(b.build()) for name, b in builders.items()}


def render(dashboard: model.Dashboard) -> str:
    """The dashboard as Grafana JSON text (stable: sorted keys, trailing newline)."""
    return (
        json.dumps(dashboard, cls=JSONEncoder, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    )


def write_all(out: Path, contracts: Sequence[ContractView] | None = None) -> list[Path]:
    """Write every dashboard into ``out`` (created if missing); returns the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, dashboard in build_all(contracts).items():
        path = out / name
        path.write_text(render(dashboard), encoding="utf-8")
        written.append(path)
    return written
