"""`runhours maintenance record`: note work done on a machine (resets service intervals)."""

from __future__ import annotations

from typing import Annotated

import typer

from runhours.commands._common import ConfigOption, console, load

app = typer.Typer(
    help="Maintenance records: work done on a machine, stored in InfluxDB (measurement "
    "`maintenance`). A record of a service-interval rule's kind resets its run-hour counter.",
    no_args_is_help=True,
)


@app.command()
def record(
    machine: Annotated[str, typer.Option("--machine", "-m", help="Machine id, e.g. cnc-01.")],
    kind: Annotated[
        str,
        typer.Option(
            "--kind", "-k", help="What was done; `service` resets service-interval alerts."
        ),
    ] = "service",
    at: Annotated[
        str | None,
        typer.Option("--at", help="When (RFC 3339 with a zone, or 'now-2h'); default now."),
    ] = None,
    note: Annotated[str, typer.Option("--note", help="Free text, e.g. the work order.")] = "",
    by: Annotated[str, typer.Option("--by", help="Who did it.")] = "",
    config: ConfigOption = None,
) -> None:
    """Record maintenance on a machine. The machine must have sent telemetry (its site and
    line are taken from there). Service-interval alerts of that kind clear at the next
    evaluation, and replays see the record too."""
    from analytics.alerts import record_maintenance
    from analytics.service import AnalyticsSettings
    from common.times import parse_time
    from store import InfluxClient

    settings = load(AnalyticsSettings, config)
    when = parse_time(at, "--at") if at else None
    with InfluxClient.from_settings(settings) as client:
        entry = record_maintenance(client, machine, kind, when, note, by)
    console.print(
        f"recorded {entry.kind} on {entry.ref.machine} ({entry.ref.site}/{entry.ref.line}) "
        f"at {entry.at.isoformat()}"
    )
