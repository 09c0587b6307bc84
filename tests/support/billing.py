"""Billing builders: a one-contract TOML file, the October period, billing it both ways
(rollups and raw, which must agree) and the amounts as exported."""

from __future__ import annotations

import tomllib

from analytics.billing import Statement, build_statements, parse_contracts, to_csv, to_json
from analytics.periods import calendar_period
from analytics.rollups import rebuild_rollups
from store import InfluxClient
from tests.support.telemetry import BERLIN, HOUR

OCTOBER = calendar_period("2026-10", BERLIN)


def contract(machines: str, **terms: str) -> str:
    """A one-contract TOML file in Berlin time; ``terms`` override the defaults."""
    base = {
        "id": '"PBH-001"',
        "customer": '"Acme Metal Works"',
        "currency": '"EUR"',
        "timezone": '"Europe/Berlin"',
        "rate_per_hour": '"42.50"',
    }
    base.update(terms)
    head = "\n".join(f"{k} = {v}" for k, v in base.items() if v)
    return f"[[contract]]\n{head}\n{machines}"


def machine(machine_id: str, extra: str = "") -> str:
    return f'[[contract.machine]]\nid = "{machine_id}"\n{extra}\n'


def bill(influx: InfluxClient, toml_text: str, label: str = "2026-10") -> Statement:
    """Bill the one contract from rollups and from raw; both exports must be identical."""
    contracts = parse_contracts(tomllib.loads(toml_text))
    period = calendar_period(label, BERLIN)
    rebuild_rollups(influx, period.start - HOUR, period.end + HOUR)
    rolled = build_statements(influx, contracts, label)
    raw = build_statements(influx, contracts, label, from_raw=True)
    assert to_json(rolled) == to_json(raw)
    assert to_csv(rolled) == to_csv(raw)
    assert len(rolled) == 1
    return rolled[0]


def amounts(statement: Statement) -> list[tuple[str, str, str, str, str]]:
    """(kind, machine, billable hours, rate, amount) per line, as exported."""
    return [
        (line.kind, line.machine, str(line.billable_hours), str(line.rate), str(line.amount))
        for line in statement.lines
    ]
