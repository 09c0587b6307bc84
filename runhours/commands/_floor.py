"""What `runhours oee` and `runhours downtime` share: the plant file, times, the client."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, tzinfo
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from runhours.commands._common import fail, load

if TYPE_CHECKING:
    from analytics.floor import MachineFloor
    from analytics.plant import Plant
    from analytics.service import AnalyticsSettings

PlantOption = Annotated[
    Path | None,
    typer.Option(
        "--plant",
        help="Plant-floor file (reasons, shift schedules, ideal cycles; docs/oee.md); default: "
        "\\[analytics] plant in the config, else examples/plant.toml.",
        dir_okay=False,
    ),
]
MachinesOption = Annotated[
    list[str] | None,
    typer.Option(
        "--machine",
        "-m",
        help="Only this machine: site/machine, or a bare id that exists at one site (repeat "
        "for several).",
    ),
]
TzOption = Annotated[
    str | None,
    typer.Option(
        "--tz",
        help="Time zone of dates and times without an offset, and of the times shown "
        "(default: the first site's in the plant file).",
    ),
]


class Format(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


FormatOption = Annotated[
    Format, typer.Option("--format", "-f", help="table (for people), csv or json (all figures).")
]


def settings_and_plant(
    config: Path | None, plant_file: Path | None
) -> tuple[AnalyticsSettings, Plant]:
    from analytics.plant import PlantError, load_plant
    from analytics.service import AnalyticsSettings

    settings = load(AnalyticsSettings, config)
    try:
        return settings, load_plant(plant_file or settings.plant_file)
    except PlantError as exc:
        fail(str(exc))


def zone_of(plant: Plant, tz: str | None) -> tzinfo:
    from analytics.periods import PeriodError, zone

    name = tz or next(
        (s.timezone for sites in plant.schedules.values() for s in sites.values()), "UTC"
    )
    try:
        return zone(name)
    except PeriodError as exc:
        fail(f"--tz: {exc}")


def instant(text: str, tz: tzinfo, what: str) -> datetime:
    """A date (local midnight), a local or RFC 3339 time, ``now``, ``today`` or ``now-7d``."""
    from analytics.periods import PeriodError, local_midnight, parse_instant
    from common.times import parse_duration

    text = text.strip()
    now = datetime.now(UTC)
    if text == "today":
        return local_midnight(now.astimezone(tz).date(), tz)
    if text == "now":
        return now
    if text.startswith("now-"):
        try:
            return now - parse_duration(text[4:])
        except ValueError as exc:
            fail(f"{what}: {exc}")
    try:
        return parse_instant(text, tz)
    except PeriodError as exc:
        fail(f"{what}: {exc}")


def span(
    start: str | None, end: str | None, tz: tzinfo, default_days: int
) -> tuple[datetime, datetime]:
    """``--from``/``--to`` (defaults: local midnight ``default_days`` ago, and now)."""
    from analytics.periods import local_midnight

    now = datetime.now(UTC)
    lo = (
        instant(start, tz, "--from")
        if start
        else local_midnight(now.astimezone(tz).date() - timedelta(days=default_days), tz)
    )
    hi = instant(end, tz, "--to") if end else now
    if hi <= lo:
        fail(f"--to ({hi.isoformat()}) must be after --from ({lo.isoformat()})")
    return lo, hi


def floors_in_span(
    config: Path | None,
    plant_file: Path | None,
    machine: list[str] | None,
    start: str | None,
    end: str | None,
    tz: str | None,
    default_days: int,
) -> tuple[AnalyticsSettings, Plant, tzinfo, datetime, datetime, list[MachineFloor]]:
    """The settings, plant, zone and span of a command, and the machines' runs in that span."""
    from analytics.floor import floor_runs
    from analytics.machines import MachineError
    from store import InfluxClient, InfluxError

    settings, plant = settings_and_plant(config, plant_file)
    zone = zone_of(plant, tz)
    lo, hi = span(start, end, zone, default_days)
    try:
        with InfluxClient.from_settings(settings, timeout=120) as client:
            floors = floor_runs(client, plant, machine or None, lo, hi)
    except (InfluxError, MachineError) as exc:
        fail(str(exc))
    return settings, plant, zone, lo, hi, floors
