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

from dashboards import fleet, ingest_health, machine, oee, usage
from dashboards.contracts import ContractView
from dashboards.layout import number_panels

GENERATED_DIR = Path(__file__).resolve().parent / "generated"


def build_all(contracts: Sequence[ContractView] = ()) -> dict[str, model.Dashboard]:
    """Every dashboard, keyed by its file name.

    The committed files are built without contracts, so they depend on code alone; a
    deployment adds its per-contract panels with ``--contracts`` (docs/deploy.md).
    """
    builders = {
        "fleet-overview.json": fleet.dashboard(),
        "machine-detail.json": machine.dashboard(),
        "usage-billing.json": usage.dashboard(contracts),
        "ingest-health.json": ingest_health.dashboard(),
        "oee-downtime.json": oee.dashboard(),
    }
    return {name: number_panels(b.build()) for name, b in builders.items()}


def render(dashboard: model.Dashboard) -> str:
    """The dashboard as Grafana JSON text (stable: sorted keys, trailing newline)."""
    return (
        json.dumps(dashboard, cls=JSONEncoder, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    )


def write_all(out: Path, contracts: Sequence[ContractView] = ()) -> list[Path]:
    """Write every dashboard into ``out`` (created if missing); returns the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, dashboard in build_all(contracts).items():
        path = out / name
        path.write_text(render(dashboard), encoding="utf-8")
        written.append(path)
    return written
