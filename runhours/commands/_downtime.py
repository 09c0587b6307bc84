"""`runhours downtime`'s stops in a span, and the Pareto report's table, CSV and JSON forms."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from runhours.commands._common import console
from runhours.commands._floor import Format, floors_in_span
from runhours.commands._tables import Col, count, duration, fit_table, percent

if TYPE_CHECKING:
    from rich.table import Table

    from analytics.downtime import ListedStop, ParetoRow
    from analytics.plant import Plant


def stops_in_span(
    config: Path | None,
    plant_file: Path | None,
    machine: list[str] | None,
    start: str | None,
    end: str | None,
    tz: str | None,
) -> tuple[Plant, tzinfo, datetime, datetime, list[ListedStop]]:
    """The plant, zone and span of a command, and the stops (with their reasons) in it."""
    from analytics.downtime import DowntimeStore, listed_stops

    settings, plant, zone, lo, hi, floors = floors_in_span(
        config, plant_file, machine, start, end, tz, 7
    )
    found = listed_stops(floors, DowntimeStore.in_data_dir(settings.data_dir))
    return plant, zone, lo, hi, found


def span_label(lo: datetime, hi: datetime, zone: tzinfo) -> str:
    return f"{lo.astimezone(zone):%Y-%m-%d %H:%M} – {hi.astimezone(zone):%Y-%m-%d %H:%M} ({zone})"


def echo_csv(data: list[dict[str, Any]], skip: list[str]) -> None:
    """``data`` as CSV on standard output, its keys but ``skip`` the columns."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    columns = [k for k in data[0] if k not in skip] if data else []
    writer.writerow(columns)
    for item in data:
        writer.writerow(["" if item[c] is None else item[c] for c in columns])
    typer.echo(out.getvalue(), nl=False)


def show_pareto(
    config: Path | None,
    plant_file: Path | None,
    machine: list[str] | None,
    start: str | None,
    end: str | None,
    tz: str | None,
    fmt: Format,
) -> None:
    """Stop hours and counts per reason over the stops of the shifts starting from ``start``
    (default: 7 days ago) to ``end``, longest first, printed as ``fmt``."""
    from analytics.downtime import pareto

    plant, zone, lo, hi, found = stops_in_span(config, plant_file, machine, start, end, tz)
    rows = pareto(found, plant)
    total_ms = sum(r.ms for r in rows)
    stops = sum(r.count for r in rows)
    listing = [
        {
            "reason": r.reason,
            "label": r.label,
            "category": r.category,
            "seconds": r.ms / 1000,
            "stops": r.count,
            "share": round(r.ms / total_ms, 6) if total_ms else None,
        }
        for r in rows
    ]
    data: dict[str, Any] = {
        "from": lo.astimezone(zone).isoformat(),
        "to": hi.astimezone(zone).isoformat(),
        "stop_seconds": total_ms / 1000,
        "stops": stops,
        "reasons": listing,
        "unassigned": [s.to_json(plant) for s in found if s.assignment is None],
    }
    if fmt == Format.json:
        typer.echo(json.dumps(data, indent=2, ensure_ascii=False))
        return
    if fmt == Format.csv:
        echo_csv(listing, [])
        return
    title = f"downtime per reason, {span_label(lo, hi, zone)}"
    console.print(_table(rows, total_ms, stops, title))
    missing = [s for s in found if s.assignment is None]
    if missing:
        console.print(
            f"{len(missing)} stops have no reason yet ({duration(sum(s.stop.ms for s in missing) / 1000)}):"
            " runhours downtime list --unassigned",
            highlight=False,
        )


def _table(rows: list[ParetoRow], total_ms: int, stops: int, title: str) -> Table:
    cumulative = 0
    cells = []
    for r in rows:
        cumulative += r.ms
        cells.append(
            [
                r.reason or "—",
                r.category,
                duration(r.ms / 1000),
                count(r.count),
                percent(r.ms / total_ms if total_ms else None),
                percent(cumulative / total_ms if total_ms else None),
                r.label,
            ]
        )
    cells.append(
        [
            "total",
            "",
            duration(total_ms / 1000),
            count(stops),
            percent(1.0 if total_ms else None),
            "",
            "",
        ]
    )
    cols = [
        Col("reason"),
        Col("category", drop=2),
        Col("stopped", right=True),
        Col("stops", right=True),
        Col("share", right=True),
        Col("cum.", right=True, drop=1),
        Col("label", figure=False, drop=3),
    ]
    return fit_table(console, cols, cells, title=title, sections=[len(cells) - 1])
