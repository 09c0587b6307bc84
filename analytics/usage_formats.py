"""The forms of `runhours usage`: JSON and CSV for tools, a table for people.

JSON is documented in docs/billing.md; CSV has the same fields, one column per state, in a
fixed order, ``\\n`` line ends. The table shows hours with three decimals and flags the hour
meter's anomalies and its disagreement with the states.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from datetime import UTC, datetime, tzinfo
from typing import Any

from rich import box
from rich.table import Table

from analytics.counters import CounterTolerance, describe_counts, list_anomalies
from analytics.usage import Usage
from contract import STATES

CSV_COLUMNS = (
    "site",
    "machine",
    "start",
    "end",
    *(f"{s}_s" for s in STATES),
    "known_s",
    "coverage",
    "gaps",
    "counter_s",
    "counter_reset",
    "counter_mismatch",
    "counter_anomalies",
)
_SHORT = {"off": "off", "idle": "idle", "running": "run", "fault": "fault", "maintenance": "maint"}


def usage_json(
    rows: Sequence[Usage], tolerance: CounterTolerance, tz: tzinfo = UTC
) -> list[dict[str, Any]]:
    """The JSON form: one object per machine and bucket (documented in docs/billing.md)."""
    return [
        {
            "site": u.site,
            "machine": u.machine,
            "start": u.start.isoformat(),
            "end": u.end.isoformat(),
            "state_seconds": {state: u.state_seconds[state] for state in STATES},
            "known_seconds": u.known_seconds,
            "coverage": round(u.coverage, 6),
            "gaps": u.gaps,
            "counter_seconds": u.counter_seconds,
            "counter_reset": u.counter_reset,
            "counter_mismatch": u.counter_mismatch(tolerance),
            "counter_anomalies": list(list_anomalies(u.counter_events, u.counter_anomalies, tz)),
        }
        for u in rows
    ]


def usage_csv(rows: Sequence[Usage], tolerance: CounterTolerance, tz: tzinfo = UTC) -> str:
    """The CSV form: the JSON form's fields, one column per state."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for item in usage_json(rows, tolerance, tz):
        writer.writerow(
            [
                item["site"],
                item["machine"],
                item["start"],
                item["end"],
                *(item["state_seconds"][s] for s in STATES),
                item["known_seconds"],
                item["coverage"],
                item["gaps"],
                "" if item["counter_seconds"] is None else item["counter_seconds"],
                item["counter_reset"],
                item["counter_mismatch"],
                "; ".join(item["counter_anomalies"]),
            ]
        )
    return out.getvalue()


def _hours(seconds: float | None) -> str:
    return "" if seconds is None else f"{seconds / 3600:.3f}"


def usage_table(
    rows: Sequence[Usage],
    tolerance: CounterTolerance,
    start: datetime,
    end: datetime,
    zone_name: str,
) -> Table:
    """The table: hours per state, coverage, gaps, the hour meter and its flags per row.
    One site is named in the title and its rows show bare ids; several show site/machine."""
    sites = sorted({u.site for u in rows})
    several = len(sites) > 1
    table = Table(
        title=f"hours per state {start.isoformat()} – {end.isoformat()} ({zone_name})"
        + ("" if several or not sites or not sites[0] else f", site {sites[0]}"),
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )
    for name in ("machine", "from", *(_SHORT[s] for s in STATES), "known", "gaps", "meter"):
        table.add_column(
            name, no_wrap=True, justify="left" if name in ("machine", "from") else "right"
        )
    table.add_column("flags")
    for u in rows:
        flags = []
        if u.counter_anomalies:
            flags.append(f"meter: {describe_counts(u.counter_anomalies)}")
        if u.counter_mismatch(tolerance):
            flags.append("meter ≠ states")
        table.add_row(
            f"{u.site}/{u.machine}" if several and u.site else u.machine,
            u.start.strftime("%m-%d %H:%M"),
            *(_hours(u.state_seconds[s]) for s in STATES),
            f"{u.coverage * 100:.1f}%",
            str(u.gaps),
            _hours(u.counter_seconds),
            ", ".join(flags),
        )
    return table


def anomaly_lines(rows: Sequence[Usage], tz: tzinfo = UTC) -> list[str]:
    """One line per hour-meter anomaly, printed under the table."""
    return [
        f"{u.site}/{u.machine}: hour meter {text}"
        for u in rows
        for text in list_anomalies(u.counter_events, u.counter_anomalies, tz)
    ]
