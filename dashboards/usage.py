"""*Usage and billing*: billable hours per machine and contract, coverage, commitments.

Everything reads the hourly rollups (``usage_hourly``), like the billing export does.
Per-contract panels are generated from the contracts given, one set per contract.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from grafana_foundation_sdk.builders import dashboard as builder
from grafana_foundation_sdk.builders import timeseries

from dashboards.contracts import PERIODS, ContractView
from dashboards.influxql import InfluxQL
from dashboards.layout import new_dashboard
from dashboards.panels import bar_gauge, time_series
from dashboards.thresholds import Level
from dashboards.variables import TIME_FILTER, machine_variables, machine_where
from store.influxql import quote_ident, quote_string
from store.schema import (
    FIELD_COUNTER_S,
    FIELD_KNOWN_S,
    TAG_MACHINE,
    TAG_SITE,
    USAGE_HOURLY,
    state_seconds_field,
)

UID = "runhours-usage"
MACHINE = quote_ident(TAG_MACHINE)
SITE = quote_ident(TAG_SITE)
ROLLUPS = quote_ident(USAGE_HOURLY)
RUNNING_S = quote_ident(state_seconds_field("running"))


def _billable_seconds(contract: ContractView) -> str:
    """``sum("running_s") + sum("idle_s") …`` over the billable states, or the hour meter's
    ``sum("counter_s")`` for contracts billed by ``method = "counter"``."""
    if contract.method == "counter":
        return f"sum({quote_ident(FIELD_COUNTER_S)})"
    return " + ".join(
        f"sum({quote_ident(state_seconds_field(s))})" for s in contract.billable_states
    )


def _contract_where(contract: ContractView) -> str:
    """The contract's machines: bare ids by a regex on the id, ``site/machine`` names by
    site and id (the same id may be another machine at another site)."""
    bare = [m for m in contract.machines if "/" not in m]
    terms = [f"{MACHINE} =~ /^({'|'.join(re.escape(m) for m in bare)})$/"] if bare else []
    for name in contract.machines:
        if "/" in name:
            site, machine = name.split("/")
            terms.append(f"({SITE} = {quote_string(site)} AND {MACHINE} = {quote_string(machine)})")
    which = terms[0] if len(terms) == 1 else "(" + " OR ".join(terms) + ")"
    return f"WHERE {which} AND {TIME_FILTER}"


def _tz(contract: ContractView) -> str:
    return f"tz({quote_string(contract.timezone)})"


def _contract_per_day(contracts: Sequence[ContractView]) -> timeseries.Panel:
    targets = [
        InfluxQL(
            f"SELECT ({_billable_seconds(c)}) / 3600 AS {quote_ident(c.id)} "
            f"FROM {ROLLUPS} {_contract_where(c)} GROUP BY time(1d) fill(none) {_tz(c)}"
        )
        .ref_id(f"C{i}")
        .alias("$col")
        for i, c in enumerate(contracts)
    ]
    return time_series(
        "Billable hours per contract per day",
        "h",
        *targets,
        description="Metered hours in each contract's billable states, days in its time zone. "
        "The billing export (effective dates, rounding, tiers) is the authority.",
        bars=True,
        width=24,
    )


def _commitment(contract: ContractView) -> timeseries.Panel:
    levels: tuple[Level, ...] = ()
    title = f"{contract.id}: billable hours this {contract.period}"
    if contract.minimum_hours is not None:
        minimum = float(contract.minimum_hours)
        levels = (Level(minimum, "minimum commitment", "green"),)
        title += f" vs minimum {contract.minimum_hours} h"
    per_day = (
        f'SELECT {_billable_seconds(contract)} AS "seconds" FROM {ROLLUPS} '
        f"{_contract_where(contract)} GROUP BY time(1d) fill(none) {_tz(contract)}"
    )
    # cumulative_sum() cannot wrap `sum(a) + sum(b)`: add up the daily totals outside.
    query = InfluxQL(
        f'SELECT cumulative_sum("seconds") / 3600 AS "billable" FROM ({per_day})'
    ).alias("$col")
    panel = time_series(
        title,
        "h",
        query,
        description=f"Running total over the {contract.period} so far, days in "
        f"{contract.timezone}; the dashed line "
        "is the contract's minimum hours per period (a true-up is billed below it).",
        levels=levels,
        below_levels="red",  # red until the minimum is reached
        width=12,
    )
    return panel.time_from(PERIODS[contract.period])


def dashboard(contracts: Sequence[ContractView] = ()) -> builder.Dashboard:
    """Build the usage dashboard; ``contracts`` adds per-contract panels."""
    board = new_dashboard(UID, "runhours / Usage and billing", machine_variables())
    board = (
        board.description(
            "Billable hours from the hourly rollups (the same data the billing export reads), "
            "their coverage, and each contract's progress against its minimum commitment."
        )
        .time("now/M", "now")
        .week_start("monday")
    )
    per_machine_query = InfluxQL(
        f'SELECT sum({RUNNING_S}) / 3600 AS "running" FROM {ROLLUPS} {machine_where()} '
        f"GROUP BY time(1d), {MACHINE} fill(none)"
    ).alias("$tag_machine")
    per_day = time_series(
        "Running hours per machine per day",
        "h",
        per_machine_query,
        description="Hours in state `running` per UTC day, from the hourly rollups.",
        bars=True,
        width=16,
    )
    month = bar_gauge(
        "Running hours this month",
        "h",
        InfluxQL(
            f'SELECT sum({RUNNING_S}) / 3600 AS "running" FROM {ROLLUPS} {machine_where()} '
            f"GROUP BY {MACHINE}"
        ).alias("$tag_machine"),
        description="Calendar month so far, per machine.",
        width=8,
    ).time_from("now/M")
    coverage = time_series(
        "Coverage",
        "percentunit",
        InfluxQL(
            f"SELECT mean({quote_ident(FIELD_KNOWN_S)}) / 3600 FROM {ROLLUPS} {machine_where()} "
            f"GROUP BY time($__interval), {MACHINE} fill(none)"
        ).alias("$tag_machine"),
        description="Share of each hour whose state is known (samples no further apart than "
        "max_gap). Below 100 % the hours are incomplete and the bill says so.",
        width=12,
    ).interval("1h")
    fleet_total = time_series(
        "Running hours, selected machines, cumulative",
        "h",
        InfluxQL(
            f'SELECT cumulative_sum(sum({RUNNING_S})) / 3600 AS "running" FROM {ROLLUPS} '
            f"{machine_where()} GROUP BY time(1d) fill(none)"
        ),
        description="Running total over the time range (UTC days).",
        width=12,
    )
    for panel in (per_day, month, coverage, fleet_total):
        board = board.with_panel(panel)
    if contracts:
        board = board.with_panel(_contract_per_day(contracts))
        for contract in contracts:
            board = board.with_panel(_commitment(contract))
    return board
