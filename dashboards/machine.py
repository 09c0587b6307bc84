"""*Machine detail*: every signal with its alert thresholds, states, run-hours, hour meter."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as builder
from grafana_foundation_sdk.builders import timeseries

from dashboards.influxql import Annotation, InfluxQL
from dashboards.layout import new_dashboard
from dashboards.panels import ONLINE_MAPPINGS, single_stat, state_timeline, time_series
from dashboards.signals import SIGNALS, STATE_COLORS, Signal
from dashboards.thresholds import THRESHOLDS
from dashboards.variables import machine_variables, machine_where
from store.influxql import quote_ident
from store.schema import (
    ALERTS,
    FIELD_ONLINE,
    FIELD_RUN_SECONDS_TOTAL,
    FIELD_STATE,
    FIELD_STATUS,
    FIELD_VALUE,
    MACHINE_STATUS,
    TAG_MACHINE,
    TAG_RULE,
    TAG_SEVERITY,
    TELEMETRY,
    USAGE_HOURLY,
    state_seconds_field,
)

UID = "runhours-machine"
MACHINE = quote_ident(TAG_MACHINE)


def _signal_panel(signal: Signal) -> timeseries.Panel:
    levels = THRESHOLDS.get(signal.name, ())
    query = InfluxQL(
        f"SELECT mean({quote_ident(signal.name)}) FROM {quote_ident(TELEMETRY)} "
        f"{machine_where()} GROUP BY time($__interval), {MACHINE} fill(null)"
    ).alias("$tag_machine")
    description = f"`{signal.name}`, mean per interval."
    if levels:
        description += " Dashed lines: " + ", ".join(
            f"{level.value:g} ({level.label})" for level in levels
        )
    return time_series(signal.title, signal.unit, query, description=description, levels=levels)


def _hours_by_state() -> InfluxQL:
    columns = ", ".join(
        f"sum({quote_ident(state_seconds_field(state))}) / 3600 AS {quote_ident(state)}"
        for state in STATE_COLORS
    )
    # Per machine: the board allows several machines, and their hours must not add up.
    return InfluxQL(
        f"SELECT {columns} FROM {quote_ident(USAGE_HOURLY)} {machine_where()} "
        f"GROUP BY time(1d), {MACHINE} fill(none)"
    ).alias("$tag_machine $col")


def _alert_annotation() -> Annotation:
    fields = ", ".join(
        quote_ident(name)
        for name in (FIELD_STATUS, FIELD_VALUE, TAG_MACHINE, TAG_RULE, TAG_SEVERITY)
    )
    return (
        Annotation("Alerts", f"SELECT {fields} FROM {quote_ident(ALERTS)} {machine_where()}")
        .text(FIELD_STATUS)
        .tags(f"{TAG_MACHINE},{TAG_RULE},{TAG_SEVERITY}")
        .color("red")
    )


def dashboard() -> builder.Dashboard:
    """Build the machine detail dashboard (first machine preselected, several allowed)."""
    board = new_dashboard(UID, "runhours / Machine detail", machine_variables(all_machines=False))
    board = board.description(
        "One machine (or a few, to compare): signals with alert thresholds, states, "
        "run-hours per day and the machine's own hour meter. Alert transitions are "
        "annotations."
    ).annotation(_alert_annotation())
    timeline = state_timeline(
        "State",
        InfluxQL(
            f"SELECT last({quote_ident(FIELD_STATE)}) FROM {quote_ident(TELEMETRY)} "
            f"{machine_where()} GROUP BY time($__interval), {MACHINE} fill(null)"
        ).alias("$tag_machine"),
        description="Gaps are time without samples (unknown, never billed).",
        width=16,
        height=6,
    ).interval("1m")
    hour_meter = single_stat(
        "Hour meter",
        "h",
        InfluxQL(
            f"SELECT last({quote_ident(FIELD_RUN_SECONDS_TOTAL)}) / 3600 "
            f"FROM {quote_ident(TELEMETRY)} {machine_where()} GROUP BY {MACHINE}"
        ).alias("$tag_machine"),
        description="The machine's own run-hour counter (`run_seconds_total`), last reading.",
        width=4,
        height=6,
    )
    online = single_stat(
        "Presence",
        "none",
        InfluxQL(
            f"SELECT last({quote_ident(FIELD_ONLINE)}) FROM {quote_ident(MACHINE_STATUS)} "
            f"{machine_where()} GROUP BY {MACHINE}"
        ).alias("$tag_machine"),
        description="Online/offline from the edge agent's retained status and will.",
        mappings=ONLINE_MAPPINGS,
        width=4,
        height=6,
    )
    per_day = time_series(
        "Hours per day by state",
        "h",
        _hours_by_state(),
        description="From the hourly rollups, one bar per machine and state; days are UTC days.",
        bars=True,
        width=24,
    )
    for panel in (timeline, hour_meter, online):
        board = board.with_panel(panel)
    for signal in SIGNALS:
        board = board.with_panel(_signal_panel(signal))
    return board.with_panel(per_day)
