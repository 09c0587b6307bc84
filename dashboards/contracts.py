"""The few contract facts the usage dashboard needs, read from the contracts TOML file.

The file is the billing engine's public format (``[[contract]]`` with ``id``,
``timezone``, ``billable_states``, ``minimum_hours`` and ``[[contract.machine]]`` ids,
``site/machine`` or bare); dashboards may not import the billing code, so this reads
just those keys, through the same reader (``common.settings.read_toml``, numbers as
exact decimals). Effective dates, terms, tiers and rounding are the billing export's
business: the dashboard shows metered hours, the statement is the authority.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from common.errors import RunhoursError
from common.settings import read_toml

# Billing period → Grafana's relative range for "this period so far".
PERIODS = {"month": "now/M", "quarter": "now/fQ", "week": "now/w"}


class ContractsFileError(RunhoursError, ValueError):
    """The contracts file is missing, not TOML, or lacks a key the dashboards need."""


_MACHINE = re.compile(r"(?:[A-Za-z0-9_.-]{1,64}/)?[A-Za-z0-9_.-]{1,64}")


@dataclass(frozen=True)
class ContractView:
    id: str
    machines: tuple[str, ...]  # as written: site/machine or a bare id
    billable_states: tuple[str, ...] = ("running",)
    minimum_hours: Decimal | None = None
    timezone: str = "UTC"
    period: str = "month"  # month | quarter | week: what minimum_hours is per
    method: str = "state"  # state: time in billable states; counter: the hour meter


def _contract(index: int, raw: dict[str, Any], path: Path) -> ContractView:
    where = f"{path}: contract[{index}]"
    if not isinstance(raw.get("id"), str) or not raw["id"]:
        raise ContractsFileError(f"{where}.id: missing (every contract needs an id)")
    where = f"{path}: contract {raw['id']!r}"
    machines = raw.get("machine", [])
    if not isinstance(machines, list) or not all(
        isinstance(m, dict) and isinstance(m.get("id"), str) for m in machines
    ):
        raise ContractsFileError(f'{where}: each [[contract.machine]] needs an id = "…"')
    for m in machines:
        if not _MACHINE.fullmatch(m["id"]):
            raise ContractsFileError(
                f"{where}: machine {m['id']!r} is not site/machine or a machine id"
            )
    states = raw.get("billable_states", ["running"])
    if not isinstance(states, list) or not states or not all(isinstance(s, str) for s in states):
        raise ContractsFileError(f"{where}.billable_states: a non-empty list of states")
    minimum = raw.get("minimum_hours")
    minimum_hours = None
    if minimum is not None:
        try:  # a string, an integer, or a TOML float read as an exact Decimal
            if isinstance(minimum, bool) or not isinstance(minimum, (str, int, Decimal)):
                raise InvalidOperation
            minimum_hours = Decimal(minimum)
        except InvalidOperation:
            raise ContractsFileError(
                f"{where}.minimum_hours: {minimum!r} is not a number"
            ) from None
    period = raw.get("period", "month")
    if period not in PERIODS:
        raise ContractsFileError(f"{where}.period: {period!r} is not one of {', '.join(PERIODS)}")
    method = raw.get("method", "state")
    if method not in ("state", "counter"):
        raise ContractsFileError(f"{where}.method: {method!r} is not 'state' or 'counter'")
    return ContractView(
        id=raw["id"],
        machines=tuple(sorted({m["id"] for m in machines})),
        billable_states=tuple(states),
        minimum_hours=minimum_hours,
        timezone=str(raw.get("timezone", "UTC")),
        period=period,
        method=method,
    )


def read_contracts(path: Path) -> list[ContractView]:
    """The contracts of ``path``, in file order."""
    data = read_toml(Path(path), ContractsFileError, parse_float=Decimal)
    contracts = data.get("contract", [])
    if not isinstance(contracts, list):
        raise ContractsFileError(f"{path}: expected [[contract]] tables")
    return [_contract(i, raw, path) for i, raw in enumerate(contracts)]
