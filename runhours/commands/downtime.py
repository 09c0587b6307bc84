"""`runhours downtime`: stops, the reasons operators give them, and the Pareto report."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

import typer

from runhours.commands._common import ConfigOption, console, fail
from runhours.commands._downtime import echo_csv, show_pareto, span_label, stops_in_span
from runhours.commands._floor import (
    Format,
    FormatOption,
    MachinesOption,
    PlantOption,
    TzOption,
    instant,
    settings_and_plant,
    zone_of,
)
from runhours.commands._tables import Col, duration, fit_table, moment

app = typer.Typer(
    help="Downtime: the stops of each machine in planned production time (idle, fault, "
    "maintenance or off for at least the plant file's min_stop), the reasons operators give "
    "them (kept with who and when in <data_dir>/downtime.sqlite3), and a Pareto of stop "
    "hours per reason (docs/operators.md, docs/oee.md).",
    no_args_is_help=True,
)

FromOption = Annotated[
    str | None,
    typer.Option(
        "--from",
        help="The stops of the shifts starting from (a date is local midnight; 'today', "
        "'now-24h'); default: 7 days ago.",
    ),
]
ToOption = Annotated[str | None, typer.Option("--to", help="… and before (default: now).")]


@app.command("list")
def list_(
    start: FromOption = None,
    end: ToOption = None,
    machine: MachinesOption = None,
    unassigned: Annotated[
        bool, typer.Option("--unassigned", help="Only stops nobody gave a reason yet.")
    ] = False,
    tz: TzOption = None,
    fmt: FormatOption = Format.table,
    plant_file: PlantOption = None,
    config: ConfigOption = None,
) -> None:
    """List stops (oldest first) with their reasons; `downtime assign` gives one."""
    plant, zone, lo, hi, found = stops_in_span(config, plant_file, machine, start, end, tz)
    if unassigned:
        found = [s for s in found if s.assignment is None]
    data = [s.to_json(plant) for s in found]
    if fmt == Format.json:
        typer.echo(json.dumps(data, indent=2, ensure_ascii=False))
        return
    if fmt == Format.csv:
        echo_csv(data, ["state_seconds"])
        return
    cols = [
        Col("machine"),
        Col("start"),
        Col("lasted", right=True),
        Col("state", drop=2),
        Col("shift", drop=1),
        Col("reason"),
        Col("by", drop=3),
    ]
    rows = [
        [
            s.key.machine,
            moment(datetime.fromisoformat(d["start"]), zone),
            duration(s.stop.ms / 1000) + (" …" if s.stop.open else ""),
            s.stop.main_state,
            d["shift"][5:],
            s.assignment.reason if s.assignment else "—",
            s.assignment.by if s.assignment else "",
        ]
        for s, d in zip(found, data, strict=True)
    ]
    what = "stops without a reason" if unassigned else "stops"
    title = f"{len(found)} {what}, {span_label(lo, hi, zone)}"
    console.print(fit_table(console, cols, rows, title=title))
    if not unassigned and (missing := sum(1 for s in found if s.assignment is None)):
        console.print(
            f"{missing} without a reason: runhours downtime assign --machine SITE/M --at TIME "
            "--reason CODE --by NAME",
            highlight=False,
        )


def _give(
    machine: str,
    at: str,
    reason: str | None,
    by: str,
    note: str,
    tz: str | None,
    config: Any,
    plant_file: Any,
) -> None:
    from analytics.downtime import DowntimeError, DowntimeStore, assign
    from analytics.floor_points import write_run_of
    from analytics.machines import MachineError, resolve_machines
    from store import InfluxClient, InfluxError

    settings, plant = settings_and_plant(config, plant_file)
    zone = zone_of(plant, tz)
    when = instant(at, zone, "--at")
    store = DowntimeStore.in_data_dir(settings.data_dir)
    try:
        with InfluxClient.from_settings(settings, timeout=120) as client:
            key = resolve_machines(client, [machine])[machine]
            if not key.site:
                fail(f"--machine: no telemetry for {machine!r} (`runhours usage` lists machines)")
            stop, made = assign(client, store, plant, key, when, reason, by=by, note=note)
            write_run_of(client, plant, store, key, when)
    except (InfluxError, MachineError, DowntimeError) as exc:
        fail(str(exc))
    shown = f"{moment(datetime.fromtimestamp(stop.start_ms / 1000, zone), zone, year=True)}"
    what = f"the stop of {key} at {shown} ({duration(stop.ms / 1000)}, {stop.main_state})"
    if made is None:
        console.print(f"cleared the reason of {what}", highlight=False)
    else:
        label = plant.reasons[made.reason].label
        console.print(f"{what}: {made.reason} ({label}), by {made.by}", highlight=False)


MachineArg = Annotated[
    str, typer.Option("--machine", "-m", help="The machine: site/machine or a bare id.")
]
AtArg = Annotated[
    str,
    typer.Option(
        "--at",
        help="Any time during the stop: local (2026-03-02 10:45) in --tz, RFC 3339, or 'now-20m'.",
    ),
]
ByArg = Annotated[str, typer.Option("--by", help="Who gives the reason (recorded).")]


@app.command("assign")
def assign_(
    machine: MachineArg,
    at: AtArg,
    reason: Annotated[str, typer.Option("--reason", "-r", help="A reason code of the plant file.")],
    by: ByArg,
    note: Annotated[str, typer.Option("--note", help="Free text, e.g. the work order.")] = "",
    tz: TzOption = None,
    plant_file: PlantOption = None,
    config: ConfigOption = None,
) -> None:
    """Give a stop its reason (a stop that has one gets the new one; both are logged)."""
    _give(machine, at, reason, by, note, tz, config, plant_file)


@app.command("clear")
def clear(
    machine: MachineArg,
    at: AtArg,
    by: ByArg,
    tz: TzOption = None,
    plant_file: PlantOption = None,
    config: ConfigOption = None,
) -> None:
    """Take a stop's reason away (logged)."""
    _give(machine, at, None, by, "", tz, config, plant_file)


@app.command()
def reasons(plant_file: PlantOption = None, config: ConfigOption = None) -> None:
    """The reasons operators pick from (the plant file's [[reason]] entries)."""
    _, plant = settings_and_plant(config, plant_file)
    rows = [[r.code, r.category, r.label] for r in plant.reasons.values()]
    cols = [Col("code"), Col("category"), Col("label", figure=False)]
    console.print(fit_table(console, cols, rows, title=f"downtime reasons ({plant.source})"))


@app.command()
def report(
    start: FromOption = None,
    end: ToOption = None,
    machine: MachinesOption = None,
    tz: TzOption = None,
    fmt: FormatOption = Format.table,
    plant_file: PlantOption = None,
    config: ConfigOption = None,
) -> None:
    """Stop hours and counts per reason, longest first (a Pareto), over the stops of the
    shifts starting in the range (the same shifts as `runhours oee`). The rows add up
    exactly to the stop hours; stops nobody gave a reason are a row of their own (in JSON
    they are listed too)."""
    show_pareto(config, plant_file, machine, start, end, tz, fmt)
