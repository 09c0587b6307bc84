"""`runhours usage`: seconds per state per machine over a time range, for engineers and checks."""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from typing import Annotated

import typer

from analytics.counters import CounterRules, CounterTolerance
from analytics.periods import PeriodError, parse_instant, zone
from common.settings import RunhoursSettings
from runhours.commands._common import ConfigOption, fail, load
from runhours.commands._usage import show_usage


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
    show_usage(
        settings,
        lo,
        hi,
        machines=machine or None,
        by=by.value if by else None,
        tz_name=tz,
        tz=zone_info,
        form=fmt.value,
        from_raw=from_raw,
        tolerance=tolerance,
        rules=rules,
    )
