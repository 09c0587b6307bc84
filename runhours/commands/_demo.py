"""`runhours demo`'s run and what it prints: delivery, hours, billing, OEE, alerts, live."""

from __future__ import annotations

import signal
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

from analytics.alerts.model import Alert
from common.settings import RunhoursSettings
from edge.config import EdgeSettings
from runhours.commands._billing import render_summary
from runhours.commands._common import console, fail
from runhours.commands._tables import Col, duration, fit_table, moment, number, percent
from runhours.demo import (
    DEMO_ZONE,
    EXAMPLES,
    Connections,
    Demo,
    DemoOptions,
    DemoResult,
    demo_fleet,
    ensure_services,
    write_pid,
)
from runhours.fleet import FleetError
from runhours.security import SecurityError
from runhours.services import LocalServices


def run_demo(
    settings: EdgeSettings,
    *,
    begin: datetime,
    end: datetime,
    going_live: bool,
    machines: int,
    seed: int,
    progress: bool | None,
    rules: Path | None,
    plant: Path | None,
    console_port: int,
    secure: bool,
    limit: float | None,
) -> None:
    """Bring up (or reuse) the local services, simulate ``machines`` from ``begin`` to
    ``end`` through them, print what arrived, the billing, OEE and alerts, then with
    ``going_live`` run on in real time (stopped by a signal or after ``limit`` seconds)."""
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
