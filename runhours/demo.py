"""The demo: a simulated plant for a week, end to end on local services.

Starts (or reuses) a local Mosquitto and InfluxDB, runs an in-process ingest, pushes a
simulated fleet through one edge agent per machine as fast as possible, then checks
what arrived against what was produced and against the simulator's ground truth,
bills the week under the sample contracts and replays the alert rules over it.
Everything it prints is computed from the stored data.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from analytics.alerts.model import Alert
from analytics.alerts.replay import demo_alerts, lead_time
from analytics.billing.export import billing_summary
from analytics.billing.formats import to_csv
from analytics.billing.statements import Statement
from analytics.rollups import default_state_file, fleet_usage
from analytics.usage import Usage
from contract import MachineRef
from contract.settings import RunhoursSettings
from edge.config import EdgeSettings
from edge.mqtt import Broker
from ingest import IngestService, IngestSettings
from runhours.fleet import FleetRun, run_fleet
from runhours.security.credentials import Machines, machine_broker
from runhours.security.layout import ROLES_BY_NAME
from runhours.services import LocalServices
from simulators import GroundTruth, MachineSpec, fleet, read_ground_truth
from store import InfluxClient, quote_string, time_literal
from store.schema import FIELD_STATE, TELEMETRY

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
DEMO_ZONE = ZoneInfo("Europe/Berlin")


@dataclass(frozen=True)
class MachineFigures:
    """One machine's row of the summary: delivery and hours, each from its own source."""

    machine: str
    kind: str
    published: int  # samples the broker acknowledged to the edge agent
    stored: int  # points in InfluxDB for the week
    true_running_h: float  # simulator ground truth
    metered_running_h: float  # usage engine (rollups)
    coverage: float


@dataclass(frozen=True)
class DemoResult:
    start: datetime
    end: datetime
    fleet: FleetRun
    machines: list[MachineFigures]
    statements: list[Statement]
    billing_csv: Path
    alerts: list[Alert]
    degrading: str | None
    failure_at: datetime | None
    lead: timedelta | None


@dataclass(frozen=True)
class Connections:
    """Who the demo is at each boundary: the edge agents (one identity each when
    ``broker_for`` is set), the ingest, and the analysis (billing, rollups, alerts)."""

    edge: EdgeSettings
    ingest: IngestSettings
    analysis: RunhoursSettings
    broker_for: Callable[[MachineRef], Broker] | None = None
    create_database: bool = True  # False: an admin made it (secure: nobody else may)

    @classmethod
    def open(cls, settings: EdgeSettings) -> Connections:
        """Everything through ``settings`` (the open local services)."""
        ingest = IngestSettings.from_base(
            settings, client_id="runhours-demo-ingest", site=settings.edge.site
        )
        return cls(settings, ingest, settings)

    @classmethod
    def secure(
        cls, settings: EdgeSettings, pair: LocalServices, specs: list[MachineSpec]
    ) -> Connections:
        """Each role with its own account from ``pair``'s security directory, and each
        simulated machine with its own broker identity (made on first use)."""
        security = pair.security
        assert security is not None, "a secure pair"
        machines = Machines(security)
        refs = [MachineRef(s.site, s.line, s.machine) for s in specs]
        if missing := [ref for ref in refs if machines.get(ref) is None]:
            for ref in missing:
                machines.add(ref)
            machines.reload()
        # The roles' own settings, not the environment's: the demo plays each of them.
        ingest = IngestSettings.model_validate(
            {
                **security.role_settings(ROLES_BY_NAME["ingest"]),
                "ingest": {"client_id": "runhours-demo-ingest", "site": settings.edge.site},
            }
        )
        analysis = RunhoursSettings.model_validate(
            security.role_settings(ROLES_BY_NAME["analytics"])
        )
        url = pair.mosquitto
        base = Broker(url.host, url.port, tls=True, ca_file=security.ca.cert_file)
        broker_for = functools.partial(machine_broker, security.edge_dir, base=base)
        return cls(settings, ingest, analysis, broker_for, create_database=False)


def last_full_week(now: datetime, zone: ZoneInfo = DEMO_ZONE) -> datetime:
    """Monday 00:00 local of the last full week before ``now``, as aware UTC."""
    local = now.astimezone(zone)
    monday = local.date() - timedelta(days=local.weekday() + 7)
    return datetime(monday.year, monday.month, monday.day, tzinfo=zone).astimezone(UTC)


def ensure_services(services: LocalServices) -> list[str]:
    """Start whichever service does not answer yet; say which were already there."""
    services.check_mode()
    reused = []
    for service in services.services:
        if service.pid() is None and service.ready():
            reused.append(f"{service.name} already answers on port {service.port}: using it")
            continue
        service.start(timeout=60)
    return reused


def stored_points(client: InfluxClient, machine: str, start: datetime, end: datetime) -> int:
    rows = client.query_rows(
        f'SELECT count("{FIELD_STATE}") FROM "{TELEMETRY}" WHERE machine = '
        f"{quote_string(machine)} AND time >= {time_literal(start)} AND time < {time_literal(end)}"
    )
    return int(rows[0]["count"]) if rows else 0


def machine_figures(
    client: InfluxClient,
    run: FleetRun,
    truths: dict[str, GroundTruth],
    usage: dict[str, Usage],
) -> list[MachineFigures]:
    return [
        MachineFigures(
            machine=m.spec.machine,
            kind=m.spec.kind,
            published=m.published,
            stored=stored_points(client, m.spec.machine, run.start, run.end),
            true_running_h=truths[m.spec.machine].seconds("running") / 3600,
            metered_running_h=usage[m.spec.machine].state_seconds.get("running", 0.0) / 3600,
            coverage=usage[m.spec.machine].coverage,
        )
        for m in run.machines
    ]


def demo_fleet(
    settings: EdgeSettings, start: datetime, machines: int, seed: int
) -> list[MachineSpec]:
    return fleet(machines, seed=seed, start=start, site=settings.edge.site)


def run_demo(
    connections: Connections,
    *,
    start: datetime,
    days: int = 7,
    machines: int = 12,
    seed: int = 1,
    progress: bool = True,
    contracts: Path = EXAMPLES / "contracts.toml",
    rules: Path = EXAMPLES / "rules.toml",
) -> DemoResult:
    """Run the whole demo against services that already answer at ``connections``."""
    settings = connections.edge
    end = start + timedelta(days=days)
    out_dir = settings.data_dir / "demo"
    out_dir.mkdir(parents=True, exist_ok=True)
    truth_file = out_dir / "ground-truth.json"
    specs = demo_fleet(settings, start, machines, seed)
    with InfluxClient.from_settings(connections.analysis, timeout=120) as client:
        if connections.create_database:
            client.ensure_database()
        with IngestService(connections.ingest) as ingest:
            if not ingest.wait_ready(30):
                raise RuntimeError("the ingest did not subscribe within 30 s")
            run = asyncio.run(
                run_fleet(
                    settings, specs, start=start, end=end, speed=None, ground_truth=truth_file,
                    progress=progress, broker_for=connections.broker_for,
                )
            )  # fmt: skip
            if not ingest.wait_idle(300):
                raise RuntimeError("the ingest did not catch up within 300 s")
        truths = {t.machine: t for t in read_ground_truth(truth_file)}
        names = [m.spec.machine for m in run.machines]
        state_file = default_state_file(connections.analysis.data_dir)
        statements = billing_summary(client, contracts, start, end, rollup_state=state_file)
        usage = {u.machine: u for u in fleet_usage(client, start, end, machines=names)}
        figures = machine_figures(client, run, truths, usage)
        billing_csv = out_dir / "billing-week.csv"
        billing_csv.write_bytes(to_csv(statements))
        alerts = demo_alerts(client, rules, start, end)
    degrading = next((t for t in truths.values() if t.failure_at is not None), None)
    lead = (
        lead_time(alerts, degrading.machine, degrading.failure_at)
        if degrading is not None and degrading.failure_at is not None
        else None
    )
    return DemoResult(
        start=start,
        end=end,
        fleet=run,
        machines=figures,
        statements=statements,
        billing_csv=billing_csv,
        alerts=alerts,
        degrading=degrading.machine if degrading else None,
        failure_at=degrading.failure_at if degrading else None,
        lead=lead,
    )
