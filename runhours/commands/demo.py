"""`runhours demo`: the whole system on one machine, a simulated plant that runs on live."""

from __future__ import annotations

import signal
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

from analytics.alerts.model import Alert
from common.settings import RunhoursSettings
from edge.config import EdgeSettings
from runhours.commands._billing import render_summary
from runhours.commands._common import ConfigOption, console, fail, load
from runhours.commands._tables import Col, duration, fit_table, moment, number, percent
from runhours.demo import (
    CONSOLE_PORT,
    DEMO_ZONE,
    EXAMPLES,
    Connections,
    Demo,
    DemoOptions,
    DemoResult,
    days_back,
    demo_fleet,
    ensure_services,
    write_pid,
)
from runhours.fleet import FleetError
from runhours.security import SecurityError
from runhours.services import LocalServices

app = typer.Typer(
    help="The demo: start a local Mosquitto and InfluxDB (or use the ones configured), "
    "simulate a plant from midnight a week ago up to now through edge agents as fast as "
    "possible, ingest it, and print what arrived against what was produced and the "
    "simulator's ground truth, the week's billing under examples/contracts.toml (also "
    "written as CSV), OEE per machine against the truth, and the alerts examples/rules.toml "
    "raises (stored: the console and `runhours alerts list` show them). Then the plant keeps "
    "running in real time with the analytics service and the alert console (its URL is "
    "printed): a machine's bearing wears fast and raises a live alert within minutes, and "
    "stops wait for their reasons. Ctrl-C or `runhours services down` stops it; the "
    "services keep running after Ctrl-C. With --start it simulates that past span only. "
    "With --secure it runs on `runhours services up --secure`: TLS, one broker identity per "
    "simulated machine, each service with its own least-privilege account, console logins "
    "(docs/security.md).",
)


def _seconds(text: str) -> float:
    from common.times import parse_duration

    try:
        return parse_duration(text).total_seconds()
    except ValueError as exc:
        fail(f"--live-for: {exc}")


@app.callback(invoke_without_command=True)
def demo(
    config: ConfigOption = None,
    machines: Annotated[int, typer.Option(min=1, max=200, help="Fleet size.")] = 12,
    days: Annotated[
        int, typer.Option(min=1, max=31, help="Simulated days before today (or from --start).")
    ] = 7,
    seed: Annotated[int, typer.Option(help="Random seed: same seed, same plant.")] = 1,
    start: Annotated[
        str | None,
        typer.Option(
            help="Simulate --days from this day instead, YYYY-MM-DD (midnight Europe/Berlin), "
            "and do not go live: a reproducible past span."
        ),
    ] = None,
    live: Annotated[
        bool | None,
        typer.Option(
            "--live/--no-live",
            help="After the first phase keep the plant running in real time with the "
            "analytics service and the alert console (default: yes, unless --start).",
        ),
    ] = None,
    live_for: Annotated[
        str | None,
        typer.Option(help="Stop the live phase after this long (e.g. 10m); default: at Ctrl-C."),
    ] = None,
    console_port: Annotated[
        int, typer.Option(help="The alert console's port (a free one if it is taken).")
    ] = CONSOLE_PORT,
    rules: Annotated[
        Path | None,
        typer.Option(help="Alert rules (default: examples/rules.toml).", dir_okay=False),
    ] = None,
    plant: Annotated[
        Path | None,
        typer.Option(
            help="Plant-floor file: shifts, reasons, ideal cycles (default: examples/plant.toml).",
            dir_okay=False,
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
    now = datetime.now(UTC)
    if start is None:
        begin, end = days_back(now, days), now.replace(microsecond=0)
        going_live = True if live is None else live
    else:
        try:
            day = datetime.strptime(start, "%Y-%m-%d")
        except ValueError:
            fail(f"--start: {start!r} is not a date (YYYY-MM-DD)")
        if live:
            fail("--live needs the simulation to reach now: leave out --start")
        begin = day.replace(tzinfo=DEMO_ZONE).astimezone(UTC)
        end, going_live = begin + timedelta(days=days), False
        if end > now:
            fail(f"--start {start} with --days {days} reaches into the future: pick an earlier day")
    limit = _seconds(live_for) if live_for else None
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
    options = DemoOptions(
        start=begin,
        end=end,
        machines=machines,
        seed=seed,
        live=going_live,
        progress=sys.stdout.isatty() if progress is None else progress,
        rules=rules or EXAMPLES / "rules.toml",
        plant=plant or EXAMPLES / "plant.toml",
        console_port=console_port,
    )
    try:
        run = Demo(connections, options)
    except ValueError as exc:  # a rules or plant file
        fail(str(exc))
    until = "now, then live" if going_live else f"{end.astimezone(DEMO_ZONE):%a %Y-%m-%d %H:%M}"
    console.print(
        f"simulating {machines} machines from {begin.astimezone(DEMO_ZONE):%a %Y-%m-%d %H:%M %Z} "
        f"to {until}, seed {seed}, as fast as possible",
        highlight=False,
    )
    remove_pid = write_pid(services)
    _on_signals(run.stop)
    timer = threading.Timer(limit, run.stop.set) if limit is not None else None

    def report(summary: DemoResult) -> None:
        _print(summary, analysis, services)
        if timer is not None:
            timer.start()  # --live-for counts from the start of the live phase

    try:
        result = run.run(report)
    except (FleetError, SecurityError, RuntimeError) as exc:
        fail(str(exc))
    finally:
        if timer is not None:
            timer.cancel()
        remove_pid()
    if result is None:
        console.print("stopped before the first phase ended")
    elif going_live:
        console.print(f"stopped: the live plant ran until {datetime.now(UTC):%H:%M:%S} UTC")


def _on_signals(stop: threading.Event) -> None:
    """Ctrl-C and SIGTERM (`runhours services down`) end the demo cleanly; a second one aborts."""

    def handler(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        print("stopping: publishing and storing what was simulated (again to abort)", flush=True)

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def _print(result: DemoResult, settings: RunhoursSettings, services: LocalServices) -> None:
    rows = []
    for m in result.machines:
        mark = "" if m.published == m.stored else " [red]≠[/]"
        rows.append(
            [
                m.machine,
                f"{m.published:,}",
                f"{m.stored:,}{mark}",
                f"{m.true_running_h:.2f}",
                f"{m.metered_running_h:.2f}",
                percent(m.coverage, 2),
            ]
        )
    published = sum(m.published for m in result.machines)
    stored = sum(m.stored for m in result.machines)
    rows.append(
        [
            "total",
            f"{published:,}",
            f"{stored:,}",
            f"{sum(m.true_running_h for m in result.machines):.2f}",
            f"{sum(m.metered_running_h for m in result.machines):.2f}",
            "",
        ]
    )
    cols = [
        Col("machine"),
        Col("published", right=True),
        Col("stored", right=True),
        Col("run h truth", right=True),
        Col("run h", right=True),
        Col("known", right=True),
    ]
    console.print(
        fit_table(
            console, cols, rows, sections=[len(rows) - 1],
            title="delivery and hours: samples the edge published vs points in InfluxDB; "
            "running hours from the simulator's ground truth vs the usage engine",
        )
    )  # fmt: skip
    rate = published / result.fleet.wall_seconds if result.fleet.wall_seconds else 0.0
    console.print(
        f"{published:,} samples through MQTT in {result.fleet.wall_seconds:.1f} s "
        f"({rate:,.0f} samples/s); lost: {published - stored:,}"
    )
    console.print(render_summary(result.statements, title="billing, simulated week"))
    _print_oee(result)
    console.print(_alerts_table(result.alerts))
    if result.degrading and result.failure_at:
        lead = (
            f"{result.lead.total_seconds() / 3600:.1f} h before it"
            if result.lead
            else "no condition alert before it"
        )
        console.print(
            f"{result.degrading}'s bearing failed at {moment(result.failure_at, DEMO_ZONE, year=True)} "
            f"(Europe/Berlin); first condition alert: {lead}",
            highlight=False,
        )
    console.rule("where the data lives")
    console.print(
        f"telemetry, rollups, OEE  InfluxDB {settings.influx_url}, database {settings.influx_db}\n"
        f"alerts, stop reasons     {settings.data_dir}/alerts.sqlite3, downtime.sqlite3\n"
        f"billing CSV              {result.billing_csv}\n"
        f"ground truth             {result.billing_csv.parent / 'ground-truth.json'}",
        highlight=False,
    )
    for path in result.set_aside:
        console.print(f"an earlier run's store was set aside as {path}", highlight=False)
    span = f"--from {result.start:%Y-%m-%dT%H:%MZ} --to {result.end:%Y-%m-%dT%H:%MZ}"
    console.print(
        f"next: runhours usage {span} --by day; runhours oee {span} --by day; "
        f"runhours downtime report {span}; runhours alerts list",
        highlight=False,
    )
    if result.console is None:
        console.print("stop the services: runhours services down", highlight=False)
        return
    console.rule("[bold]live")
    login = "no logins: loopback only"
    if result.console_logins and services.security is not None:
        login = f"log in as admin, password in {services.security.secrets_file} [console] admin"
    console.print(f"alert console  {result.console} ({login})", highlight=False, markup=False)
    if result.live is not None:
        story = result.live
        rule = f"a {story.rule} alert" if story.rule else "a vibration alert"
        console.print(
            f"{story.machine}'s bearing is wearing out fast: expect {rule} in the console "
            f"around {moment(story.alert_expected, DEMO_ZONE)} and the bearing to fail around "
            f"{moment(story.failure_at, DEMO_ZONE)} (Europe/Berlin). Acknowledge it, resolve "
            "it; give stops their reasons (docs/operators.md).",
            highlight=False,
        )
    console.print(
        f"live from {result.end.isoformat().replace('+00:00', 'Z')}: the plant runs in real "
        "time; Ctrl-C stops it (the services stay up), `runhours services down` stops all",
        highlight=False,
    )


def _print_oee(result: DemoResult) -> None:
    rows = []
    for m in result.machines:
        o = m.oee
        rows.append(
            [
                m.machine,
                percent(m.true_availability, 2),
                percent(o.availability, 2),
                percent(m.true_oee, 2),
                percent(o.oee, 2),
                f"{o.parts_good:,}/{o.parts_total:,}" if o.parts_total is not None else "",
                f"{o.stops} {duration(o.stop_ms / 1000)}" if o.stops else "0",
            ]
        )
    cols = [
        Col("machine"),
        Col("avail truth", right=True),
        Col("avail", right=True),
        Col("OEE truth", right=True),
        Col("OEE", right=True),
        Col("good/parts", right=True, drop=2),
        Col("stops", right=True, drop=1),
    ]
    console.print(
        fit_table(
            console, cols, rows,
            title="OEE over the shifts so far: the simulator's ground truth vs the OEE engine "
            "(docs/oee.md); n/a: a pump or compressor counts no parts",
        )
    )  # fmt: skip


def _alerts_table(alerts: list[Alert]) -> object:
    rows = [
        [
            a.machine,
            a.rule,
            a.severity,
            moment(a.started_at, DEMO_ZONE) if a.started_at else "pending",
            moment(a.resolved_at, DEMO_ZONE) if a.resolved_at else "active",
            number(a.value),
        ]
        for a in alerts
    ]
    cols = [
        Col("machine"),
        Col("rule"),
        Col("severity", drop=2),
        Col("fired", right=True),
        Col("resolved", right=True),
        Col("value", right=True, drop=1),
    ]
    return fit_table(
        console, cols, rows,
        title=f"alerts raised over the week: {len(alerts)} (Europe/Berlin; stored)",
    )  # fmt: skip
