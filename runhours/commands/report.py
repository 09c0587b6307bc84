"""`runhours report`: one machine's signals, states and alerts as a PNG or HTML file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from common.settings import RunhoursSettings
from runhours.commands._common import ConfigOption, console, load
from runhours.report import ReportError, fetch_report, parse_time, write_report
from store import InfluxClient

app = typer.Typer(
    help="Plot a machine's signals, states and alerts into a PNG or a self-contained HTML "
    "page, for e-mails and contract reviews where no Grafana is at hand.",
)


@app.callback(invoke_without_command=True)
def report(
    machine: Annotated[str, typer.Option("--machine", "-m", help="Machine id, e.g. cnc-01.")],
    since: Annotated[
        str, typer.Option("--from", help="Start: RFC 3339 time (2026-03-02T06:00:00Z) or a date.")
    ],
    until: Annotated[str, typer.Option("--to", help="End (exclusive): RFC 3339 time or a date.")],
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            "-o",
            help="report.png (the plot) or report.html (plot + tables).",
            dir_okay=False,
        ),
    ],
    site: Annotated[
        str | None,
        typer.Option(
            help="Site id, when machine ids repeat across sites: narrows the signals, the "
            "hour meter and the alerts. The time per state is the machine id's, counted "
            "exactly as billing counts it."
        ),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Write a report of one machine over a time range (reads InfluxDB)."""
    settings = load(RunhoursSettings, config)
    start, end = parse_time(since), parse_time(until)
    if out.suffix.lower() not in (".png", ".html", ".htm"):
        raise ReportError(f"{out}: use a .png or .html file name")
    with InfluxClient.from_settings(settings) as client:
        data = fetch_report(client, machine, start, end, site=site)
    write_report(data, out)
    known = sum(s for state, s in data.seconds_by_state().items() if state != "unknown")
    console.print(
        f"wrote {out}: {len(data.signals)} signals, {len(data.alerts)} alert transitions, "
        f"{known / 3600:.2f} h with a known state"
    )
