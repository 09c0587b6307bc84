"""*OEE and downtime*: availability, performance, quality and OEE per machine and line, and
why machines stopped (a Pareto of downtime reasons, and the stops still without one).

Reads what the analytics service writes per machine and shift run (``oee_shift``) and per
stop (``downtime``): InfluxQL cannot cut telemetry at shift changes and breaks. Every
figure is a ratio of sums, so any group of runs (a day, a line, the range) adds up the
way ``runhours oee`` does. Performance, quality and OEE count only the runs that have
the figures behind them (a pump counts no parts: it has none), never a guess.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as builder

from dashboards.influxql import InfluxQL
from dashboards.layout import new_dashboard
from dashboards.panels import bar_gauge, single_stat, table_panel, time_series
from dashboards.thresholds import OEE
from dashboards.variables import machine_variables, machine_where
from store.influxql import quote_ident, quote_string
from store.schema import (
    DOWNTIME,
    FIELD_BY,
    FIELD_IDEAL_GOOD_S,
    FIELD_IDEAL_RUN_S,
    FIELD_PARTS_GOOD,
    FIELD_PARTS_TOTAL,
    FIELD_PLANNED_S,
    FIELD_RUNNING_S,
    FIELD_SECONDS,
    FIELD_STATE,
    OEE_SHIFT,
    TAG_CATEGORY,
    TAG_LINE,
    TAG_MACHINE,
    TAG_REASON,
    UNASSIGNED,
)

UID = "runhours-oee"
RUNS = quote_ident(OEE_SHIFT)
STOPS = quote_ident(DOWNTIME)
MACHINE = quote_ident(TAG_MACHINE)
LINE = quote_ident(TAG_LINE)


def _sum(field: str) -> str:
    return f"sum({quote_ident(field)})"


def _has(field: str) -> str:
    """The runs that report ``field`` (a condition on a field selects the rows that have it)."""
    return f"{quote_ident(field)} >= 0"


# Each figure: (title, numerator, denominator, the runs it counts).
FIGURES = {
    "Availability": (FIELD_RUNNING_S, FIELD_PLANNED_S, FIELD_PLANNED_S),
    "Performance": (FIELD_IDEAL_RUN_S, FIELD_RUNNING_S, FIELD_IDEAL_RUN_S),
    "Quality": (FIELD_PARTS_GOOD, FIELD_PARTS_TOTAL, FIELD_PARTS_GOOD),
    "OEE": (FIELD_IDEAL_GOOD_S, FIELD_PLANNED_S, FIELD_IDEAL_GOOD_S),
}


def _figure(name: str, group_by: str = "") -> InfluxQL:
    num, den, has = FIGURES[name]
    query = (
        f"SELECT {_sum(num)} / {_sum(den)} AS {quote_ident(name)} FROM {RUNS} "
        f"{machine_where(_has(has))}"
    )
    return InfluxQL(query + (f" GROUP BY {group_by}" if group_by else "")).ref_id(name[0])


def dashboard() -> builder.Dashboard:
    """Build the OEE and downtime dashboard."""
    board = new_dashboard(UID, "runhours / OEE and downtime", machine_variables())
    board = (
        board.description(
            "OEE per machine and line from the shift schedules of the plant file, and the "
            "downtime Pareto from the reasons operators give stops (docs/oee.md). Days are "
            "UTC days of the shift starts; `runhours oee` gives production days."
        )
        .time("now-7d", "now")
        .week_start("monday")
    )
    stats = [
        single_stat(
            name,
            "percentunit",
            _figure(name).alias(name),
            description={
                "Availability": "Running time / planned production time (shifts less breaks).",
                "Performance": "Ideal cycle × parts / running time, over the machines that "
                "count parts and have an ideal cycle.",
                "Quality": "Good parts / parts, over the machines that count both.",
                "OEE": "Availability × performance × quality = ideal cycle × good parts / "
                "planned time, over the machines that have all three.",
            }[name],
        )
        for name in FIGURES
    ]
    per_day = time_series(
        "OEE per machine per day",
        "percentunit",
        _figure("OEE", f"time(1d), {MACHINE} fill(none)").alias("$tag_machine"),
        description="OEE of each machine that counts parts, per UTC day of its shift starts.",
        bars=True,
        levels=OEE,
        below_levels="red",
    )
    availability = time_series(
        "Availability per machine per day",
        "percentunit",
        _figure("Availability", f"time(1d), {MACHINE} fill(none)").alias("$tag_machine"),
        description="Running / planned time per machine, per UTC day of its shift starts.",
        bars=True,
    )
    lines = time_series(
        "OEE per line per day",
        "percentunit",
        _figure("OEE", f"time(1d), {LINE} fill(none)").alias("$tag_line"),
        description="Summed over the line's machines that count parts.",
        bars=True,
        width=8,
    )
    machines = bar_gauge(
        "Availability per machine",
        "percentunit",
        _figure("Availability", MACHINE).alias("$tag_machine"),
        description="Over the time range.",
        width=8,
    )
    oee = bar_gauge(
        "OEE per machine",
        "percentunit",
        _figure("OEE", MACHINE).alias("$tag_machine"),
        description="Over the time range; machines without part counters have none.",
        levels=OEE,
        width=8,
    )
    pareto = bar_gauge(
        "Downtime by reason (hours)",
        "h",
        InfluxQL(
            f'SELECT {_sum(FIELD_SECONDS)} / 3600 AS "hours" FROM {STOPS} {machine_where()} '
            f"GROUP BY {quote_ident(TAG_REASON)}"
        ).alias("$tag_reason"),
        description="Stop time (stops of at least the plant file's min_stop, in planned "
        "time) per reason operators gave; `unassigned`: no reason yet. `runhours downtime "
        "report` is the same Pareto, sorted.",
        width=12,
    )
    categories = bar_gauge(
        "Downtime by category (hours)",
        "h",
        InfluxQL(
            f'SELECT {_sum(FIELD_SECONDS)} / 3600 AS "hours" FROM {STOPS} {machine_where()} '
            f"GROUP BY {quote_ident(TAG_CATEGORY)}"
        ).alias("$tag_category"),
        description="Planned stops (changeovers, planned maintenance), unplanned ones, and "
        "those without a reason.",
        width=6,
    )
    unassigned = single_stat(
        "Stop hours without a reason",
        "h",
        InfluxQL(
            f'SELECT {_sum(FIELD_SECONDS)} / 3600 AS "hours" FROM {STOPS} '
            f"{machine_where(f'{quote_ident(TAG_REASON)} = {quote_string(UNASSIGNED)}')}"
        ).alias("without a reason"),
        description="Give them a reason in the alert console or with `runhours downtime "
        "assign` (docs/operators.md).",
        width=6,
    )
    open_stops = table_panel(
        "Stops without a reason",
        "s",
        InfluxQL(
            f"SELECT {quote_ident(FIELD_SECONDS)}, {quote_ident(FIELD_STATE)}, "
            f"{quote_ident(FIELD_BY)} FROM {STOPS} "
            f"{machine_where(f'{quote_ident(TAG_REASON)} = {quote_string(UNASSIGNED)}')} "
            f"GROUP BY {MACHINE}"
        ).table(),
        description="One row per stop (its start, how long, where it spent most time).",
        height=8,
    )
    for panel in (
        *stats, per_day, availability, lines, machines, oee, pareto, categories, unassigned,
        open_stops,
    ):  # fmt: skip
        board = board.with_panel(panel)
    return board
