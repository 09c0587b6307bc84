"""*Fleet overview*: machines by state, presence, run-hours, active alerts, data lost on the way
(sequence gaps and edge drops), state timeline."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as builder

from dashboards.influxql import InfluxQL
from dashboards.layout import new_dashboard
from dashboards.panels import (
    bar_gauge,
    single_stat,
    state_timeline,
    table_panel,
)
from dashboards.signals import STATE_COLORS
from dashboards.variables import UNTIL_RANGE_END, machine_variables, machine_where
from store.influxql import quote_ident, quote_string
from store.schema import (
    ALERTS,
    FIELD_ALERT_ID,
    FIELD_CAUSE,
    FIELD_DROPPED_TOTAL,
    FIELD_FIRST_SEQ,
    FIELD_LAST_SEQ,
    FIELD_MESSAGES,
    FIELD_ONLINE,
    FIELD_RECOVERED_MESSAGES,
    FIELD_RECOVERED_SAMPLES,
    FIELD_SAMPLES,
    FIELD_STATE,
    FIELD_STATUS,
    FIELD_VALUE,
    INGEST_GAPS,
    MACHINE_STATUS,
    TAG_LINE,
    TAG_MACHINE,
    TAG_RULE,
    TAG_SEVERITY,
    TAG_SITE,
    TELEMETRY,
    USAGE_HOURLY,
    state_seconds_field,
)

UID = "runhours-fleet"

STATE = quote_ident(FIELD_STATE)
MACHINE = quote_ident(TAG_MACHINE)
ONLINE = quote_ident(FIELD_ONLINE)
RUNNING_S = quote_ident(state_seconds_field("running"))
ACKED = "acked"  # the `status` of an acknowledgement transition


def _last_state_per_machine() -> str:
    return (
        f"SELECT last({STATE}) AS {STATE} FROM {quote_ident(TELEMETRY)} "
        f"{machine_where()} GROUP BY {MACHINE}"
    )


def _machines_in_state(state: str) -> InfluxQL:
    return (
        InfluxQL(
            f"SELECT count({STATE}) AS {quote_ident(state)} FROM ({_last_state_per_machine()}) "
            f"WHERE {STATE} = {quote_string(state)}"
        )
        .ref_id(state)
        .alias(state)
    )


def _presence() -> InfluxQL:
    last_online = (
        f"SELECT last({ONLINE}) AS {ONLINE} FROM {quote_ident(MACHINE_STATUS)} "
        f"{machine_where()} GROUP BY {MACHINE}"
    )
    return InfluxQL(
        f'SELECT sum({ONLINE}) AS "online", count({ONLINE}) - sum({ONLINE}) AS "offline" '
        f"FROM ({last_online})"
    ).alias("$col")


def _run_hours_per_machine() -> InfluxQL:
    return InfluxQL(
        f'SELECT sum({RUNNING_S}) / 3600 AS "run-hours" FROM {quote_ident(USAGE_HOURLY)} '
        f"{machine_where()} GROUP BY {MACHINE}"
    ).alias("$tag_machine")


def _active_alerts() -> InfluxQL:
    status, value, alert_id = (quote_ident(f) for f in (FIELD_STATUS, FIELD_VALUE, FIELD_ALERT_ID))
    tags = ", ".join(
        quote_ident(t) for t in (TAG_SITE, TAG_LINE, TAG_MACHINE, TAG_RULE, TAG_SEVERITY)
    )
    # The newest firing/resolved transition per (machine, rule); active unless resolved.
    # Acknowledgements are skipped: an ack of a resolved alert must not revive it. No
    # start time: an alert raised before the range and not resolved is still active.
    where = machine_where(f"{status} <> {quote_string(ACKED)}", time=UNTIL_RANGE_END)
    latest = (
        f"SELECT last({status}) AS {status}, {value}, {alert_id} FROM {quote_ident(ALERTS)} "
        f"{where} GROUP BY {tags}"
    )
    return InfluxQL(
        f"SELECT {tags}, {status}, {value}, {alert_id} FROM ({latest}) "
        f"WHERE {status} <> {quote_string('resolved')}"
    ).table()


def _lost_in_transit() -> InfluxQL:
    samples, recovered = quote_ident(FIELD_SAMPLES), quote_ident(FIELD_RECOVERED_SAMPLES)
    return InfluxQL(
        f'SELECT sum({samples}) - sum({recovered}) AS "lost in transit" '
        f"FROM {quote_ident(INGEST_GAPS)} {machine_where()}"
    ).alias("lost in transit")


def _dropped_at_the_edge() -> InfluxQL:
    per_machine = (
        f'SELECT spread({quote_ident(FIELD_DROPPED_TOTAL)}) AS "dropped" '
        f"FROM {quote_ident(MACHINE_STATUS)} {machine_where()} GROUP BY {MACHINE}"
    )
    return (
        InfluxQL(f'SELECT sum("dropped") AS "dropped at the edge" FROM ({per_machine})')
        .ref_id("B")
        .alias("dropped at the edge")
    )


def _gaps() -> InfluxQL:
    fields = ", ".join(
        quote_ident(f)
        for f in (
            FIELD_FIRST_SEQ,
            FIELD_LAST_SEQ,
            FIELD_MESSAGES,
            FIELD_SAMPLES,
            FIELD_RECOVERED_MESSAGES,
            FIELD_RECOVERED_SAMPLES,
            FIELD_CAUSE,
        )
    )
    tags = ", ".join(quote_ident(t) for t in (TAG_SITE, TAG_LINE, TAG_MACHINE))
    return InfluxQL(
        f"SELECT {fields} FROM {quote_ident(INGEST_GAPS)} {machine_where()} GROUP BY {tags}"
    ).table()


def _state_timeline_query() -> InfluxQL:
    return InfluxQL(
        f"SELECT last({STATE}) FROM {quote_ident(TELEMETRY)} {machine_where()} "
        f"GROUP BY time($__interval), {MACHINE} fill(null)"
    ).alias("$tag_machine")


def dashboard() -> builder.Dashboard:
    """Build the fleet overview."""
    board = new_dashboard(UID, "runhours / Fleet overview", machine_variables())
    board = board.description(
        "Every machine at a glance: state, presence, run-hours and what needs attention."
    )
    by_state = single_stat(
        "Machines by state",
        "none",
        *(_machines_in_state(state) for state in STATE_COLORS),
        description="Machines whose most recent state in the time range is each state.",
        width=10,
    )
    presence = single_stat(
        "Online / offline",
        "none",
        _presence(),
        description="From the retained status topic and the agents' MQTT will.",
        width=6,
    )
    today = bar_gauge(
        "Run-hours today",
        "h",
        _run_hours_per_machine(),
        description="Hours in state `running` since local midnight, from the hourly rollups.",
        width=4,
        height=5,
    ).time_from("now/d")
    month = bar_gauge(
        "Run-hours this month",
        "h",
        _run_hours_per_machine(),
        description="Hours in state `running` this calendar month, from the hourly rollups.",
        width=4,
        height=5,
    ).time_from("now/M")
    alerts = table_panel(
        "Active alerts",
        "none",
        _active_alerts(),
        description="Alerts not resolved by the end of the time range, acknowledged or not, "
        "however long ago they were raised; `since` is the time of their newest transition.",
        height=7,
    )
    lost = single_stat(
        "Samples lost on the way",
        "none",
        _lost_in_transit(),
        _dropped_at_the_edge(),
        description="Lost in transit: samples in messages the broker acknowledged to an edge "
        "and never delivered (the ingest's sequence gaps, minus late arrivals). Dropped at "
        "the edge: samples an agent dropped itself (buffer full or too old, disk full). Both "
        "0 is the promise; docs/reliability.md says when they are not.",
        calc="sum",
        width=6,
        height=7,
    )
    gaps = table_panel(
        "Delivery gaps",
        "none",
        _gaps(),
        description="One row per gap in a machine's message sequence, when it was found: "
        "the missing seq range, its samples, what arrived late, and the likely cause "
        "(`runhours ingest status` sums them).",
        width=18,
        height=7,
    )
    timeline = (
        state_timeline(
            "State timeline",
            _state_timeline_query(),
            description="One band per machine; gaps are time without samples (unknown).",
            height=10,
        ).interval("1m")  # heartbeats come at least every 60 s: no false gaps
    )
    for panel in (by_state, presence, today, month, alerts, lost, gaps, timeline):
        board = board.with_panel(panel)
    return board
