"""`runhours usage`'s query and its three forms: JSON and CSV for tools, a table for people."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, tzinfo
from typing import Any, Literal

import typer

from analytics.counters import CounterRules, CounterTolerance, describe_counts, list_anomalies
from analytics.periods import BucketSize
from analytics.rollups import default_state_file, fleet_usage, refresh_rollups
from analytics.usage import Usage
from common.settings import RunhoursSettings
from runhours.commands._common import console
from runhours.commands._tables import Col, duration, fit_table
from store import InfluxClient
from wire import STATES

UsageForm = Literal["table", "csv", "json"]


def usage_json(
    rows: list[Usage], tolerance: CounterTolerance, tz: tzinfo = UTC
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


def usage_csv(rows: list[Usage], tolerance: CounterTolerance, tz: tzinfo = UTC) -> str:
    """The CSV form: the JSON form's fields, one row per machine and bucket."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(
        [
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
        ]
    )
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


_SHORT = {"off": "off", "idle": "idle", "running": "run", "fault": "fault", "maintenance": "maint"}


def print_usage_table(
    rows: list[Usage],
    lo: datetime,
    hi: datetime,
    tz_name: str,
    tolerance: CounterTolerance,
    tz: tzinfo = UTC,
) -> None:
    """The table form, then one line per flagged row and per hour-meter anomaly."""
    sites = sorted({u.site for u in rows})
    several = len(sites) > 1  # one site: named in the title, the rows show bare ids
    title = f"time per state {lo.isoformat()} – {hi.isoformat()} ({tz_name})" + (
        "" if several or not sites or not sites[0] else f", site {sites[0]}"
    )
    cols = [
        Col("machine"),
        Col("from"),
        *(Col(_SHORT[s], right=True) for s in STATES),
        Col("known", right=True),
        Col("gaps", right=True, drop=2),
        Col("meter", right=True, drop=1),
    ]
    cells = []
    flagged = []
    for u in rows:
        name = f"{u.site}/{u.machine}" if several and u.site else u.machine
        flags = []
        if u.counter_anomalies:
            flags.append(f"meter: {describe_counts(u.counter_anomalies)}")
        if u.counter_mismatch(tolerance):
            flags.append("meter ≠ states")
        if flags:
            flagged.append(f"{name} {u.start:%m-%d %H:%M}: {', '.join(flags)}")
        cells.append(
            [
                name,
                u.start.strftime("%m-%d %H:%M"),
                *(duration(u.state_seconds[s]) for s in STATES),
                f"{u.coverage * 100:.1f}%",
                str(u.gaps),
                duration(u.counter_seconds),
            ]
        )
    console.print(fit_table(console, cols, cells, title=title))
    for line in flagged:
        console.print(line, highlight=False)
    for u in rows:
        for text in list_anomalies(u.counter_events, u.counter_anomalies, tz):
            console.print(f"{u.site}/{u.machine}: hour meter {text}", highlight=False)


def show_usage(
    settings: RunhoursSettings,
    lo: datetime,
    hi: datetime,
    *,
    machines: list[str] | None,
    by: BucketSize | None,
    tz_name: str,
    tz: tzinfo,
    form: UsageForm,
    from_raw: bool,
    tolerance: CounterTolerance,
    rules: CounterRules,
) -> None:
    """Bring the rollups up to date (unless ``from_raw``), meter ``[lo, hi)`` and print it
    in ``form``; errors (InfluxDB, machine names, stale rollups) reach the CLI's handler."""
    with InfluxClient.from_settings(settings) as client:
        if not from_raw:
            refresh_rollups(client, state_file=default_state_file(settings.data_dir))
        rows = fleet_usage(
            client, lo, hi, machines=machines, by=by, tz=tz, from_raw=from_raw, rules=rules
        )
    if form == "json":
        typer.echo(json.dumps(usage_json(rows, tolerance, tz), indent=2, ensure_ascii=False))
    elif form == "csv":
        typer.echo(usage_csv(rows, tolerance, tz), nl=False)
    else:
        print_usage_table(rows, lo, hi, tz_name, tolerance, tz)
