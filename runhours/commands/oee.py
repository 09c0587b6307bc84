"""`runhours oee`: availability, performance, quality and OEE per machine and line."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from runhours.commands._common import ConfigOption
from runhours.commands._floor import Format, FormatOption, MachinesOption, PlantOption, TzOption
from runhours.commands._oee import show_oee

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
    show_oee(config, plant_file, machine, start, end, tz, by=by.value, lines=lines, fmt=fmt)
