"""`runhours oee`'s run and its three forms: a table per machine and line, CSV, or JSON."""

from __future__ import annotations

import csv
import io
import json
from datetime import tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from runhours.commands._common import console
from runhours.commands._floor import Format, floors_in_span
from runhours.commands._tables import Col, count, duration, fit_table, percent

if TYPE_CHECKING:
    from rich.table import Table

    from analytics.oee import Bucket, OeeRow


def _row_json(row: OeeRow, tz: tzinfo) -> dict[str, Any]:
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


def show_oee(
    config: Path | None,
    plant_file: Path | None,
    machine: list[str] | None,
    start: str | None,
    end: str | None,
    tz: str | None,
    *,
    by: Bucket,
    lines: bool,
    fmt: Format,
) -> None:
    """OEE per ``by`` (shift, day or week) of the machines (and, with ``lines``, per line)
    over the shifts starting from ``start`` (default: today) to ``end``, printed as ``fmt``."""
    from analytics.oee import oee_rows

    _, _, zone, lo, hi, floors = floors_in_span(config, plant_file, machine, start, end, tz, 0)
    rows = oee_rows(floors, by, lines=lines)
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
    title = (
        f"OEE per {by}, shifts starting {lo.astimezone(zone):%Y-%m-%d %H:%M} – "
        f"{hi.astimezone(zone):%Y-%m-%d %H:%M} ({zone})"
    )
    console.print(_table(rows, by, title))


def _table(rows: list[OeeRow], by: Bucket, title: str) -> Table:
    cols = [
        Col("machine"),
        Col(by),
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
        bucket = row.bucket if by != "shift" else row.bucket[5:]  # "03-02 early"
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
    return fit_table(console, cols, cells, title=title, sections=sections)
