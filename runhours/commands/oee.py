"""`runhours oee`: availability, performance, quality and OEE per machine and line."""

from __future__ import annotations

import csv
import io
import json
from datetime import tzinfo
from enum import StrEnum
from typing import Annotated, Any

import typer

from runhours.commands._common import ConfigOption, console
from runhours.commands._floor import (
    Format,
    FormatOption,
    MachinesOption,
    PlantOption,
    TzOption,
    floors_in_span,
)
from runhours.commands._tables import Col, count, duration, fit_table, percent

app = typer.Typer(no_args_is_help=False)


class By(StrEnum):
    shift = "shift"
    day = "day"
    week = "week"


HELP = (
    "OEE per machine and per line: availability (running / planned production time), "
    "performance (ideal cycle × parts / running time), quality (good / all parts) and OEE "
    "(their product), per shift, production day or ISO week.\n\n"
    "Planned production time comes from the site's shift schedule in the plant file (shifts "
    "less breaks and holidays); parts from the machine's `parts_total` and "
    "`parts_good_total` counters, its ideal cycle from the plant file. A figure that cannot "
    "be known is n/a (null in JSON), never guessed. A shift counts for the day it starts "
    "on; a shift under way counts up to now. Computed from raw telemetry (docs/oee.md)."
)


def _row_json(row: Any, tz: tzinfo) -> dict[str, Any]:
    from wire import from_epoch_ms

    return {
        "scope": row.scope,
        "site": row.site,
        "name": row.name,
        "bucket": row.bucket,
        "start": from_epoch_ms(row.start_ms).astimezone(tz).isoformat(),
        **row.figures.to_json(),
        "missing": row.figures.missing(),
    }


@app.callback(invoke_without_command=True, help=HELP)
def oee(
    start: Annotated[
        str | None,
        typer.Option(
            "--from",
            help="Shifts starting from (a date is local midnight; 'today', 'now-7d'); "
            "default: today.",
        ),
    ] = None,
    end: Annotated[str | None, typer.Option("--to", help="… and before (default: now).")] = None,
    machine: MachinesOption = None,
    by: Annotated[By, typer.Option("--by", help="One row per shift, day or week.")] = By.day,
    lines: Annotated[
        bool, typer.Option("--lines/--no-lines", help="Add a row per line (sum of its machines).")
    ] = True,
    tz: TzOption = None,
    fmt: FormatOption = Format.table,
    plant_file: PlantOption = None,
    config: ConfigOption = None,
) -> None:
    from analytics.oee import oee_rows

    _, _, zone, lo, hi, floors = floors_in_span(config, plant_file, machine, start, end, tz, 0)
    rows = oee_rows(floors, by.value, lines=lines)
    data = [_row_json(r, zone) for r in rows]
    if fmt == Format.json:
        typer.echo(json.dumps(data, indent=2, ensure_ascii=False))
        return
    if fmt == Format.csv:
        out = io.StringIO()
        columns = [k for k in data[0] if k != "missing"] if data else []
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow([*columns, "missing"])
        for item in data:
            writer.writerow(
                [*("" if item[c] is None else item[c] for c in columns), "; ".join(item["missing"])]
            )
        typer.echo(out.getvalue(), nl=False)
        return
    if not rows:
        console.print(
            f"no shifts start between {lo.astimezone(zone):%Y-%m-%d %H:%M} and "
            f"{hi.astimezone(zone):%Y-%m-%d %H:%M} ({zone}) for the machines asked "
            "(is there a schedule for their site in the plant file?)",
            highlight=False,
        )
        return
    cols = [
        Col("machine"),
        Col(by.value),
        Col("planned", right=True, drop=3),
        Col("running", right=True, drop=2),
        Col("avail", right=True),
        Col("perf", right=True),
        Col("qual", right=True),
        Col("OEE", right=True),
        Col("good/parts", right=True, drop=4),
        Col("stops", right=True, drop=1),
        Col("note", figure=False, drop=5),
    ]
    cells = []
    sections = []
    for i, row in enumerate(rows):
        f = row.figures
        if row.scope == "line" and (i == 0 or rows[i - 1].scope != "line"):
            sections.append(i)
        name = row.name if row.scope == "machine" else f"{row.name} ({len(f.machines)})"
        bucket = row.bucket if by != By.shift else row.bucket[5:]  # "03-02 early"
        parts = "" if f.parts_total is None else f"{count(f.parts_good)}/{count(f.parts_total)}"
        note = row.figures.missing()
        if f.coverage is not None and f.coverage < 0.9995:
            note.insert(0, f"known {percent(f.coverage)}")
        cells.append(
            [
                name,
                bucket,
                duration(f.planned_ms / 1000),
                duration(f.running_ms / 1000),
                percent(f.availability),
                percent(f.performance),
                percent(f.quality),
                percent(f.oee),
                parts,
                f"{f.stops} {duration(f.stop_ms / 1000)}" if f.stops else "0",
                "; ".join(note),
            ]
        )
    title = (
        f"OEE per {by.value}, shifts starting {lo.astimezone(zone):%Y-%m-%d %H:%M} – "
        f"{hi.astimezone(zone):%Y-%m-%d %H:%M} ({zone})"
    )
    console.print(fit_table(console, cols, cells, title=title, sections=sections))
