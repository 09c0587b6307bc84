"""The demo: a simulated plant, end to end on local services, that goes on running live.

Starts (or reuses) a local Mosquitto and InfluxDB, runs an in-process ingest, pushes a
simulated fleet through one edge agent per machine as fast as possible from midnight a
week ago up to now, then checks what arrived against what was produced and against the
simulator's ground truth, bills the week under the sample contracts, computes OEE per
machine against the truth, and stores the week's alerts (the analytics service evaluates
them, as it would have live). Then the plant keeps running in real time: the analytics
service evaluates what arrives and serves the alert console, where a machine whose
bearing wears fast raises a live alert within minutes. Everything it prints is computed
from the stored data.

With a fixed ``start`` (a past week, for reproducible runs and the tests) it simulates
that span only and does not go live.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from analytics.alerts.engine import evaluate
from analytics.alerts.model import Alert
from analytics.alerts.replay import lead_time
from analytics.alerts.rules import RuleSet, ThresholdRule, load_rules
from analytics.alerts.window import DataWindow, MachineData, align
from analytics.billing.export import billing_summary
from analytics.billing.formats import to_csv
from analytics.billing.statements import Statement
from analytics.floor import MachineFloor, floor_runs
from analytics.oee import Oee
from analytics.periods import HOUR_MS, local_midnight
from analytics.plant import DEFAULT_PLANT, Plant, load_plant
from analytics.rollups import default_state_file, fleet_usage
from analytics.service import AnalyticsService, AnalyticsSettings
from analytics.usage import Usage
from common.settings import RunhoursSettings
from edge.config import EdgeSettings
from edge.mqtt import Broker
from ingest import IngestService, IngestSettings
from runhours.fleet import FleetRun, follow_plant, run_fleet
from runhours.security.credentials import Machines, machine_broker
from runhours.security.layout import ROLES_BY_NAME
from runhours.services import LocalServices, free_port
from simulators import Degradation, GroundTruth, MachineSim, MachineSpec, fleet, read_ground_truth
from store import InfluxClient, quote_ident, quote_string, time_literal
from store.schema import (
    ALERTS,
    DOWNTIME,
    FIELD_STATE,
    MACHINE_STATUS,
    MAINTENANCE,
    OEE_SHIFT,
    TAG_SITE,
    TELEMETRY,
    USAGE_HOURLY,
)
from wire import MachineRef, from_epoch_ms, to_epoch_ms

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
DEMO_ZONE = ZoneInfo("Europe/Berlin")
SAMPLE_INTERVAL_S = 10.0
# The live alert should come after the console is up: the first phase takes about a
# second per FIRST_PHASE_PACE samples (measured: 20-33k/s on 2 busy cores), the summary
# about SUMMARY; the alert comes LIVE_LEAD after that.
FIRST_PHASE_PACE = 10_000
SUMMARY = timedelta(seconds=20)
LIVE_LEAD = timedelta(seconds=30)
CONSOLE_PORT = 8642
# What the demo owns at its site from its start on: it re-simulates them.
OWNED = (TELEMETRY, USAGE_HOURLY, ALERTS, OEE_SHIFT, DOWNTIME, MAINTENANCE, MACHINE_STATUS)
STORES = ("alerts.sqlite3", "downtime.sqlite3")


@dataclass(frozen=True)
class MachineFigures:
    """One machine's row of the summary: delivery, hours and OEE, each from its source."""

    machine: str
    kind: str
    published: int  # samples the broker acknowledged to the edge agent
    stored: int  # points in InfluxDB for the span
    true_running_h: float  # simulator ground truth
    metered_running_h: float  # usage engine (rollups)
    coverage: float
    oee: Oee  # metered, over the shifts that started within the span (up to its end)
    true_availability: float | None
    true_oee: float | None


@dataclass(frozen=True)
class LiveStory:
    """The machine whose bearing wears out live, and when its alert should come."""

    machine: str
    rule: str | None  # the threshold rule that should fire (None: no such rule)
    alert_expected: datetime
    failure_at: datetime


@dataclass(frozen=True)
class DemoResult:
    start: datetime
    end: datetime  # the end of the first phase (as fast as possible)
    fleet: FleetRun
    machines: list[MachineFigures]
    statements: list[Statement]
    billing_csv: Path
    alerts: list[Alert]  # raised within the span, as stored
    degrading: str | None
    failure_at: datetime | None
    lead: timedelta | None
    live: LiveStory | None = None
    console: str | None = None  # the alert console's URL while live
    console_logins: bool = False
    set_aside: tuple[Path, ...] = ()


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


@dataclass(frozen=True)
class DemoOptions:
    start: datetime
    end: datetime  # the first phase ends here (now, when live)
    machines: int = 12
    seed: int = 1
    live: bool = False
    progress: bool = True
    contracts: Path = EXAMPLES / "contracts.toml"
    rules: Path = EXAMPLES / "rules.toml"
    plant: Path = DEFAULT_PLANT
    console_port: int | None = CONSOLE_PORT


def days_back(now: datetime, days: int, zone: ZoneInfo = DEMO_ZONE) -> datetime:
    """Local midnight ``days`` days before ``now``'s day, as aware UTC."""
    return local_midnight(now.astimezone(zone).date() - timedelta(days=days), zone).astimezone(UTC)


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


def demo_fleet(
    settings: EdgeSettings, start: datetime, machines: int, seed: int, plant: Plant | None = None
) -> list[MachineSpec]:
    """The simulated plant: ``fleet`` at the edge's site, working the plant file's shifts."""
    specs = fleet(machines, seed=seed, start=start, site=settings.edge.site)
    return follow_plant(specs, plant) if plant is not None else specs


# -- the live story: a bearing that wears out now ----------------------------------------------


def _alarm_rule(rules: RuleSet, spec: MachineSpec) -> ThresholdRule | None:
    """The vibration threshold rule with the highest limit that watches ``spec``."""
    kind = rules.kind_of(spec.machine)
    found = [
        r
        for r in rules.rule
        if isinstance(r, ThresholdRule)
        and r.value == "vibration_mm_s"
        and r.above is not None
        and r.selects(spec.machine, kind)
    ]
    return max(found, key=lambda r: r.above or 0.0, default=None)


def _worn(spec: MachineSpec, crossing: datetime, hold: timedelta, limit: float) -> MachineSpec:
    """``spec`` with a bearing whose vibration reaches ``limit`` at about ``crossing``.

    Severity grows as the cube of the wear's progress (simulators/README.md), so the
    vibration (about 1 mm/s healthy, + 8 mm/s × severity) crosses the limit at a known
    progress; the wear lasts 9 × the rule's ``for`` (at least 3 min): steep enough that
    noise blurs the crossing little, long enough that the bearing fails only well after.
    """
    wear = max(timedelta(minutes=3), 9 * hold)
    progress = min(0.95, max(0.1, (limit - 1.0) / 8.0) ** (1 / 3))
    onset = crossing - progress * wear
    return dataclasses.replace(
        spec, degradation=Degradation(onset=onset, days_to_failure=wear / timedelta(days=1))
    )


def first_alert(
    spec: MachineSpec, start: datetime, until: datetime, rules: RuleSet, rule: ThresholdRule
) -> datetime | None:
    """When ``rule`` fires on ``spec``'s simulated data in the two hours before ``until``:
    the evaluation engine itself, on the step observations the analytics service reads."""
    step = rules.step
    step_ms = int(step / timedelta(milliseconds=1))
    lo, hi = align(until - timedelta(hours=2), step), align(until, step)
    readings = MachineSim(spec, start, sample_interval_s=SAMPLE_INTERVAL_S).advance(hi)
    sums: dict[int, list[float]] = {}
    states: dict[int, str] = {}
    for r in readings:
        t = r.sample.ts_ms
        if t < to_epoch_ms(lo):
            continue
        end = t - t % step_ms + step_ms  # observations are labelled by their step's end
        if r.sample.state is not None:
            states[end] = r.sample.state
        if rule.value in r.sample.values:
            sums.setdefault(end, []).append(r.sample.values[rule.value])
    data = MachineData(
        MachineRef(spec.site, spec.line, spec.machine),
        rules.kind_of(spec.machine),
        values={rule.value: {t: sum(v) / len(v) for t, v in sums.items()}},
        states=states,
        seen=frozenset(sums),
    )
    only = rules.model_copy(update={"rule": [rule]})
    window = DataWindow(lo, hi, step, {spec.machine: data})
    fired = [t.at for t in evaluate(only, window).transitions if t.kind == "firing"]
    return min(fired, default=None)


def with_live_wear(
    specs: list[MachineSpec], start: datetime, now: datetime, rules: RuleSet
) -> tuple[list[MachineSpec], LiveStory | None]:
    """Give a machine that runs around the clock a bearing that wears out so fast that the
    highest vibration rule fires about ``LIVE_LEAD`` after the first phase (now).

    The machine (the first that is not a CNC mill, which work shifts, and has no wear of its
    own) gets a rush order: it runs without a break from a few minutes before the crossing
    until the bearing fails, so no idle spell holds the alert up, whatever the hour. The
    wear is placed by evaluating the rule on the simulated data (``first_alert``), since
    noise around the limit would otherwise make the alert early (before now: not live) or
    late. None when no machine qualifies (the demo then says so).
    """
    samples = len(specs) * (now - start).total_seconds() / SAMPLE_INTERVAL_S
    when = now + timedelta(seconds=samples / FIRST_PHASE_PACE) + SUMMARY + LIVE_LEAD
    for index, plain in enumerate(specs):
        busy = plain.degradation is not None and plain.degradation.failure_at > start
        rule = _alarm_rule(rules, plain)
        if plain.kind == "cnc_mill" or busy or rule is None or rule.above is None:
            continue
        # The alert moves with the wear, in steps (the engine's grid, noise): bisect the
        # wear's shift for the earliest alert at or after ``when``.
        rush_from = when - rule.for_ - timedelta(minutes=8)  # before any crossing tried
        lo, hi = -4 * 60.0, 4 * 60.0
        found: tuple[MachineSpec, datetime] | None = None
        for _ in range(7):
            mid = (lo + hi) / 2
            crossing = when - rule.for_ + timedelta(seconds=mid)
            worn = _worn(plain, crossing, rule.for_, rule.above)
            assert worn.degradation is not None
            spec = dataclasses.replace(worn, rush=(rush_from, worn.degradation.failure_at))
            fired = first_alert(spec, start, when + timedelta(minutes=20), rules, rule)
            if fired is not None and fired >= when:
                hi = mid
                if fired < worn.degradation.failure_at - timedelta(minutes=3):
                    found = (spec, fired)
            else:
                lo = mid
        if found is not None and found[1] < when + timedelta(minutes=3):
            spec, fired = found
            assert spec.degradation is not None
            story = LiveStory(spec.machine, rule.id, fired, spec.degradation.failure_at)
            return [*specs[:index], spec, *specs[index + 1 :]], story
    return specs, None


# -- a clean slate -------------------------------------------------------------------------------


def clear_site(client: InfluxClient, site: str, start: datetime) -> None:
    """Delete what an earlier demo wrote at ``site`` from ``start`` on (it is re-simulated:
    a different run would otherwise mix with it)."""
    for measurement in OWNED:
        client.query(
            f"DELETE FROM {quote_ident(measurement)} WHERE {quote_ident(TAG_SITE)} = "
            f"{quote_string(site)} AND time >= {time_literal(start)}",
            epoch=None,
        )


def set_aside_stores(data_dir: Path) -> tuple[Path, ...]:
    """Move an earlier run's alert and downtime stores aside (renamed, never deleted)."""
    moved = []
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    for name in STORES:
        path = data_dir / name
        if not path.exists():
            continue
        target = path.with_name(f"{name}.{stamp}.bak")
        for suffix in ("", "-wal", "-shm"):
            part = Path(str(path) + suffix)
            if part.exists():
                part.rename(Path(str(target) + suffix))
        moved.append(target)
    return tuple(moved)


# -- figures -----------------------------------------------------------------------------------


def stored_points(client: InfluxClient, machine: str, start: datetime, end: datetime) -> int:
    rows = client.query_rows(
        f'SELECT count("{FIELD_STATE}") FROM "{TELEMETRY}" WHERE machine = '
        f"{quote_string(machine)} AND time >= {time_literal(start)} AND time < {time_literal(end)}"
    )
    return int(rows[0]["count"]) if rows else 0


def true_figures(
    truth: GroundTruth, floor: MachineFloor, end_ms: int
) -> tuple[float | None, float | None]:
    """Availability and OEE from the ground truth over the runs of ``floor`` up to
    ``end_ms`` (where the truth ends too), from its hours: the demo's shifts start and end
    on the hour."""
    running = scheduled = good = 0.0
    for run in floor.runs:
        for ms in range(run.run.start_ms, min(run.run.end_ms, end_ms), HOUR_MS):
            hour = from_epoch_ms(ms)
            running += truth.hours.get(hour, {}).get("running", 0.0)
            scheduled += truth.scheduled.get(hour, 0.0)
            good += truth.parts.get(hour, (0, 0))[1]
    if not scheduled:
        return None, None
    ideal = truth.ideal_cycle_s
    return running / scheduled, (ideal * good / scheduled if ideal is not None else None)


def machine_figures(
    client: InfluxClient,
    run: FleetRun,
    truths: dict[str, GroundTruth],
    usage: dict[str, Usage],
    floors: dict[str, MachineFloor],
) -> list[MachineFigures]:
    end_ms = to_epoch_ms(run.end)
    out = []
    for m in run.machines:
        name = m.spec.machine
        floor = floors[name]
        metered = sum((Oee.of(floor.key, floor.plan, r) for r in floor.runs), Oee())
        availability, oee = true_figures(truths[name], floor, end_ms)
        out.append(
            MachineFigures(
                machine=name,
                kind=m.spec.kind,
                published=m.published,
                stored=stored_points(client, name, run.start, run.end),
                true_running_h=truths[name].seconds("running") / 3600,
                metered_running_h=usage[name].state_seconds.get("running", 0.0) / 3600,
                coverage=usage[name].coverage,
                oee=metered,
                true_availability=availability,
                true_oee=oee,
            )
        )
    return out


# -- the run ------------------------------------------------------------------------------------


def _analytics_settings(
    analysis: RunhoursSettings, options: DemoOptions, port: int | None
) -> AnalyticsSettings:
    span = options.end - options.start + timedelta(hours=1)
    return AnalyticsSettings.model_validate(
        {
            **analysis.model_dump(include=set(RunhoursSettings.model_fields)),
            "analytics": {
                "rules": options.rules,
                "plant": options.plant,
                "interval": 5.0,
                "start_lookback": span,
                "max_catch_up": span,
                "http_port": port,
                "floor_interval": 30.0,
            },
        }
    )


def _console_port(wanted: int | None) -> int:
    """``wanted`` if nothing listens there, else a free port."""
    import socket

    if wanted is not None:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", wanted))
                return wanted
            except OSError:
                pass
    return free_port()


class Demo:
    """One demo run (``run``); ``stop`` ends it (the live phase, or the first early)."""

    def __init__(self, connections: Connections, options: DemoOptions) -> None:
        self.connections = connections
        self.options = options
        self.stop = threading.Event()
        settings = connections.edge
        self.out_dir = settings.data_dir / "demo"
        self.truth_file = self.out_dir / "ground-truth.json"
        self.plant = load_plant(options.plant)
        self.rules = load_rules(options.rules)
        specs = demo_fleet(settings, options.start, options.machines, options.seed, self.plant)
        self.live: LiveStory | None = None
        if options.live:
            specs, self.live = with_live_wear(specs, options.start, options.end, self.rules)
        self.specs = specs
        self.service: AnalyticsService | None = None
        self._service_thread: threading.Thread | None = None

    def run(self, report: Callable[[DemoResult], None]) -> DemoResult | None:
        """Run it; ``report`` gets the summary after the first phase (the plant then runs on
        live until ``stop``). None when stopped before the first phase ended."""
        c, o = self.connections, self.options
        self.out_dir.mkdir(parents=True, exist_ok=True)
        aside = set_aside_stores(c.analysis.data_dir)
        with InfluxClient.from_settings(c.analysis, timeout=120) as client:
            if c.create_database:
                client.ensure_database()
            clear_site(client, c.edge.edge.site, o.start)
            with IngestService(c.ingest) as ingest:
                if not ingest.wait_ready(30):
                    raise RuntimeError("the ingest did not subscribe within 30 s")
                try:
                    result = asyncio.run(self._phases(client, ingest, aside, report))
                finally:
                    self.stop.set()
                    if self._service_thread is not None:
                        self._service_thread.join(60)
                    if self.service is not None:
                        self.service.close()
                ingest.wait_idle(60)
        return result

    async def _phases(
        self,
        client: InfluxClient,
        ingest: IngestService,
        aside: tuple[Path, ...],
        report: Callable[[DemoResult], None],
    ) -> DemoResult | None:
        c, o = self.connections, self.options
        loop = asyncio.get_running_loop()
        fleet_stop = asyncio.Event()
        first: asyncio.Future[FleetRun] = loop.create_future()

        def caught_up(run: FleetRun) -> None:
            if not first.done():
                first.set_result(run)

        fleet_task = asyncio.create_task(
            run_fleet(
                c.edge, self.specs, start=o.start, end=o.end, speed=None,
                sample_interval_s=SAMPLE_INTERVAL_S, ground_truth=self.truth_file,
                progress=o.progress, broker_for=c.broker_for, stop=fleet_stop, live=o.live,
                caught_up=caught_up,
            )
        )  # fmt: skip
        stopped: asyncio.Future[bool] = asyncio.ensure_future(asyncio.to_thread(self.stop.wait))
        try:
            waiting: set[asyncio.Future[Any]] = {fleet_task, first, stopped}
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            if fleet_task.done() and not first.done():
                first.set_result(fleet_task.result())  # not live (or it raised: re-raised here)
            if not first.done():  # stopped during the first phase
                fleet_stop.set()
                await fleet_task
                return None
            result = await asyncio.to_thread(
                self._first_phase_done, client, ingest, first.result(), aside
            )
            report(result)
            if o.live:
                waiting = {fleet_task, stopped}
                await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            fleet_stop.set()
            await fleet_task
            return result
        finally:
            self.stop.set()
            await stopped
            if not fleet_task.done():
                fleet_stop.set()
                with contextlib.suppress(Exception):
                    await fleet_task

    def _first_phase_done(
        self, client: InfluxClient, ingest: IngestService, run: FleetRun, aside: tuple[Path, ...]
    ) -> DemoResult:
        """Everything after the first phase: check, bill, OEE, store the alerts, go live."""
        c, o = self.connections, self.options
        if not ingest.wait_idle(300):
            raise RuntimeError("the ingest did not catch up within 300 s")
        start, end = run.start, run.end
        truths = {t.machine: t for t in read_ground_truth(self.truth_file)}
        names = [m.spec.machine for m in run.machines]
        state_file = default_state_file(c.analysis.data_dir)
        statements = billing_summary(client, o.contracts, start, end, rollup_state=state_file)
        usage = {u.machine: u for u in fleet_usage(client, start, end, machines=names)}
        floors = {
            f.key.machine: f
            for f in floor_runs(
                client, self.plant, [f"{c.edge.edge.site}/{n}" for n in names], start, end, now=end
            )
        }
        figures = machine_figures(client, run, truths, usage, floors)
        billing_csv = self.out_dir / "billing-week.csv"
        billing_csv.write_bytes(to_csv(statements))
        port = _console_port(o.console_port) if o.live and o.console_port is not None else None
        service = AnalyticsService(_analytics_settings(c.analysis, o, port), self.rules, self.plant)
        self.service = service
        service.start_delivery()
        # The span's alerts, evaluated and stored (and its OEE and stop points written).
        service.cycle(now=None if o.live else end)
        alerts = [
            a
            for a in service.store.alerts(limit=100_000)
            if (a.started_at or a.pending_since) < end
        ]
        degrading = next(
            (t for t in truths.values() if t.failure_at is not None and t.failure_at < end), None
        )
        lead = (
            lead_time(alerts, degrading.machine, degrading.failure_at)
            if degrading is not None and degrading.failure_at is not None
            else None
        )
        console = None
        if o.live:
            service.start_http()
            assert service.http is not None
            console = service.http.url + "/"
            self._service_thread = threading.Thread(
                target=service.run, args=(self.stop,), name="analytics", daemon=True
            )
            self._service_thread.start()
        else:
            deadline = time.monotonic() + 60
            while any(service.store.backlog().values()) and time.monotonic() < deadline:
                time.sleep(0.1)
        return DemoResult(
            start=start,
            end=end,
            fleet=run,
            machines=figures,
            statements=statements,
            billing_csv=billing_csv,
            alerts=sorted(alerts, key=lambda a: (a.started_at or a.pending_since, a.machine)),
            degrading=degrading.machine if degrading else None,
            failure_at=degrading.failure_at if degrading else None,
            lead=lead,
            live=self.live,
            console=console,
            console_logins=bool(service.http and service.http.authenticated),
            set_aside=aside,
        )


def write_pid(services: LocalServices) -> Callable[[], None]:
    """Note this process as the running demo (`runhours services down` stops it)."""
    services.state_dir.mkdir(parents=True, exist_ok=True)
    services.demo_pid_file.write_text(f"{os.getpid()}\n")

    def remove() -> None:
        with contextlib.suppress(OSError):
            if services.demo_pid_file.read_text().strip() == str(os.getpid()):
                services.demo_pid_file.unlink()

    return remove
