"""`runhours usage`: seconds per state per machine over a time range, for engineers and checks."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, tzinfo
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any

import typer

from analytics.counters import CounterRules, CounterTolerance, describe_counts, list_anomalies
from analytics.machines import MachineError
from analytics.periods import PeriodError, parse_instant, zone
from analytics.rollups import StaleRollupsError, default_state_file, fleet_usage, refresh_rollups
from analytics.usage import Usage
from common.settings import RunhoursSettings
from runhours.commands._common import ConfigOption, console, fail, load
from runhours.commands._tables import Col, duration, fit_table
from store import InfluxClient, InfluxError
from wire import STATES


class By(StrEnum):
    hour = "hour"
    day = "day"
    month = "month"


class UsageFormat(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


app = typer.Typer(
    help="Seconds per state per machine over a time range (from the hourly rollups).",
    no_args_is_help=True,
)


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


_SHORT = {"off": "off", "idle": "idle", "running": "run", "fault": "fault", "maintenance": "maint"}


@app.callback(invoke_without_command=True)
def usage(
    start: Annotated[
        str,
        typer.Option(
            "--from",
            help="Start (inclusive): RFC 3339 (2026-10-01T06:00:00Z) or a date (2026-10-01, "
            "local midnight in --tz).",
        ),
    ],
    end: Annotated[str, typer.Option("--to", help="End (exclusive), written like --from.")],
    machine: Annotated[
        list[str] | None,
        typer.Option(
            "--machine",
            "-m",
            help="Only this machine: site/machine, or a bare id that exists at one site "
            "(repeat for several).",
        ),
    ] = None,
    tz: Annotated[
        str,
        typer.Option(
            "--tz",
            help="IANA time zone for dates without an offset and for hour/day/month buckets "
            "(e.g. Europe/Berlin).",
        ),
    ] = "UTC",
    by: Annotated[
        By | None,
        typer.Option(
            "--by",
            help="One row per machine and local hour, day or month; default: one row per "
            "machine for the whole range.",
        ),
    ] = None,
    fmt: Annotated[
        UsageFormat,
        typer.Option("--format", "-f", help="table (for people), csv or json (for tools)."),
    ] = UsageFormat.table,
    from_raw: Annotated[
        bool,
        typer.Option(
            "--from-raw",
            help="Compute from raw samples instead of the hourly rollups (slower; a check).",
        ),
    ] = False,
    tolerance_pct: Annotated[
        float,
        typer.Option(help="Flag hour-meter vs state disagreement beyond this percentage ..."),
    ] = 1.0,
    tolerance_s: Annotated[float, typer.Option(help="... plus this many seconds.")] = 60.0,
    counter_reset_below: Annotated[
        float,
        typer.Option(
            help="Hour meter: a drop to at most this many seconds is a reset; any other drop "
            "is a glitch (not billed). Other than 600 reads raw samples."
        ),
    ] = 600.0,
    counter_modulus: Annotated[
        float | None,
        typer.Option(
            help="Hour meter: the register wraps around at this many seconds (e.g. 65536 for "
            "a 16-bit register of seconds). Reads raw samples."
        ),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Seconds per state, known time (coverage), gaps and hour-meter time per machine and site.

    A sample's state holds until the next sample, at most 5 minutes; time past that is unknown (a gap). The hour meter's resets, wraps, glitches and jumps are listed (docs/billing.md). The hourly rollups are first brought up to date with what the ingest wrote.
    """
    settings = load(RunhoursSettings, config)
    try:
        zone_info = zone(tz)
        lo, hi = parse_instant(start, zone_info), parse_instant(end, zone_info)
        if hi <= lo:
            fail(f"--to ({hi.isoformat()}) must be after --from ({lo.isoformat()})")
    except PeriodError as exc:
        fail(str(exc))
    tolerance = CounterTolerance(Decimal(str(tolerance_pct)) / 100, Decimal(str(tolerance_s)))
    rules = CounterRules(
        reset_below_ms=round(counter_reset_below * 1000),
        modulus_ms=round(counter_modulus * 1000) if counter_modulus else None,
    )
    try:
        with InfluxClient.from_settings(settings) as client:
            if not from_raw:
                refresh_rollups(client, state_file=default_state_file(settings.data_dir))
            rows = fleet_usage(
                client,
                lo,
                hi,
                machines=machine or None,
                by=by.value if by else None,
                tz=zone_info,
                from_raw=from_raw,
                rules=rules,
            )
    except (InfluxError, MachineError, StaleRollupsError) as exc:
        fail(str(exc))
    if fmt == UsageFormat.json:
        typer.echo(json.dumps(usage_json(rows, tolerance, zone_info), indent=2, ensure_ascii=False))
    elif fmt == UsageFormat.csv:
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
        for item in usage_json(rows, tolerance, zone_info):
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
        typer.echo(out.getvalue(), nl=False)
    else:
        sites = sorted({u.site for u in rows})
        several = len(sites) > 1  # one site: named in the title, the rows show bare ids
        title = f"time per state {lo.isoformat()} – {hi.isoformat()} ({tz})" + (
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
            for text in list_anomalies(u.counter_events, u.counter_anomalies, zone_info):
                console.print(f"{u.site}/{u.machine}: hour meter {text}", highlight=False)
