"""`runhours demo`: the whole system on one machine, a simulated plant for a week."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.table import Table

from analytics.alerts.model import Alert
from contract.settings import RunhoursSettings
from edge.config import EdgeSettings
from runhours.commands._common import ConfigOption, console, fail, load
from runhours.commands.billing import render_summary
from runhours.demo import (
    DEMO_ZONE,
    Connections,
    DemoResult,
    demo_fleet,
    ensure_services,
    last_full_week,
)
from runhours.demo import run_demo as run
from runhours.fleet import FleetError
from runhours.security import SecurityError
from runhours.services import LocalServices

app = typer.Typer(
    help="The demo: start a local Mosquitto and InfluxDB (or use the ones configured), "
    "simulate a plant of machines for a week through edge agents as fast as possible, "
    "ingest it, and print what arrived against what was produced and the simulator's "
    "ground truth, the week's billing under examples/contracts.toml (also written as CSV), "
    "and the alerts examples/rules.toml raises. The services keep running afterwards "
    "(`runhours services down` stops them). With --secure it runs on `runhours services up "
    "--secure`: TLS, one broker identity per simulated machine, each service with its own "
    "least-privilege account (docs/security.md).",
)


@app.callback(invoke_without_command=True)
def demo(
    config: ConfigOption = None,
    machines: Annotated[int, typer.Option(min=1, max=200, help="Fleet size.")] = 12,
    days: Annotated[int, typer.Option(min=1, max=31, help="Simulated days.")] = 7,
    seed: Annotated[int, typer.Option(help="Random seed: same seed, same plant.")] = 1,
    start: Annotated[
        str | None,
        typer.Option(
            help="First simulated day, YYYY-MM-DD (midnight Europe/Berlin); default: the "
            "Monday of last week, so Grafana's 'last 14 days' shows it."
        ),
    ] = None,
    progress: Annotated[
        bool | None, typer.Option(help="Progress bars (default: on a terminal).")
    ] = None,
    secure: Annotated[
        bool,
        typer.Option(
            "--secure",
            help="Run on the secure local services (started if needed, like `runhours "
            "services up --secure`).",
        ),
    ] = False,
) -> None:
    """Run the demo."""
    settings = load(EdgeSettings, config)
    if start is None:
        begin = last_full_week(datetime.now(UTC))
    else:
        try:
            day = datetime.strptime(start, "%Y-%m-%d")
        except ValueError:
            fail(f"--start: {start!r} is not a date (YYYY-MM-DD)")
        begin = day.replace(tzinfo=DEMO_ZONE).astimezone(UTC)
    services = LocalServices.from_settings(settings, secure=secure)
    console.rule("[bold]runhours demo")
    if secure:
        for line in services.up(timeout=60):
            console.print(f"created {line}", markup=False, highlight=False)
        connections = Connections.secure(
            settings, services, demo_fleet(settings, begin, machines, seed)
        )
    else:
        for note in ensure_services(services):
            console.print(note)
        connections = Connections.open(settings)
    analysis = connections.analysis
    broker = services.mqtt_url if secure else settings.mqtt_url
    identities = " (one identity per machine)" if secure else ""
    console.print(
        f"broker   {broker}{identities}\n"
        f"influxdb {analysis.influx_url} (database {analysis.influx_db})",
        highlight=False,
    )
    console.print(
        f"simulating {machines} machines from {begin.astimezone(DEMO_ZONE):%a %Y-%m-%d %H:%M %Z} "
        f"for {days} days, seed {seed}, as fast as possible"
    )
    show = sys.stdout.isatty() if progress is None else progress
    try:
        result = run(
            connections, start=begin, days=days, machines=machines, seed=seed, progress=show
        )
    except (FleetError, SecurityError, RuntimeError) as exc:
        fail(str(exc))
    _print(result, analysis)


def _print(result: DemoResult, settings: RunhoursSettings) -> None:
    table = Table(
        "machine", "kind", "published", "stored", "run h (truth)", "run h (metered)", "coverage",
        title="delivery and hours: samples the edge published vs points in InfluxDB; "
        "running hours from the simulator's ground truth vs the usage engine",
    )  # fmt: skip
    for m in result.machines:
        mark = "" if m.published == m.stored else " [red]≠[/]"
        table.add_row(
            m.machine, m.kind, f"{m.published:,}", f"{m.stored:,}{mark}",
            f"{m.true_running_h:.2f}", f"{m.metered_running_h:.2f}", f"{m.coverage:.2%}",
        )  # fmt: skip
    table.add_section()
    published = sum(m.published for m in result.machines)
    stored = sum(m.stored for m in result.machines)
    table.add_row(
        "total", "", f"{published:,}", f"{stored:,}",
        f"{sum(m.true_running_h for m in result.machines):.2f}",
        f"{sum(m.metered_running_h for m in result.machines):.2f}", "",
    )  # fmt: skip
    console.print(table)
    rate = published / result.fleet.wall_seconds if result.fleet.wall_seconds else 0.0
    console.print(
        f"{published:,} samples through MQTT in {result.fleet.wall_seconds:.1f} s "
        f"({rate:,.0f} samples/s); lost: {published - stored:,}"
    )
    console.print(render_summary(result.statements, title="billing, simulated week"))
    console.print(_alerts_table(result.alerts))
    if result.degrading and result.failure_at:
        lead = (
            f"{result.lead.total_seconds() / 3600:.1f} h before it"
            if result.lead
            else "no condition alert before it"
        )
        console.print(
            f"{result.degrading}'s bearing failed at {result.failure_at:%Y-%m-%d %H:%M} UTC; "
            f"first condition alert: {lead}"
        )
    console.rule("where the data lives")
    console.print(
        f"telemetry, rollups, alerts  InfluxDB {settings.influx_url}, database {settings.influx_db}\n"
        f"billing CSV                 {result.billing_csv}\n"
        f"ground truth                {result.billing_csv.parent / 'ground-truth.json'}\n"
        f"edge buffers, alert state   {settings.data_dir}\n"
        "next: runhours usage --from "
        f"{result.start:%Y-%m-%dT%H:%MZ} --to {result.end:%Y-%m-%dT%H:%MZ} --by day; "
        "runhours services down"
    )


def _alerts_table(alerts: list[Alert]) -> Table:
    table = Table(
        "machine", "rule", "severity", "fired (UTC)", "resolved (UTC)", "value",
        title=f"alerts raised over the week: {len(alerts)}",
    )  # fmt: skip
    for a in sorted(alerts, key=lambda a: (a.started_at or a.pending_since, a.machine)):
        table.add_row(
            a.machine, a.rule, a.severity,
            f"{a.started_at:%m-%d %H:%M}" if a.started_at else "pending",
            f"{a.resolved_at:%m-%d %H:%M}" if a.resolved_at else "active",
            f"{a.value:.2f}" if a.value is not None else "",
        )  # fmt: skip
    return table
