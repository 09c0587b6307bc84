"""The continuous analytics service behind ``runhours analytics``.

Every ``interval`` seconds it evaluates the alert rules over the data that arrived
since the last cycle (the same ``evaluate`` a replay runs, carrying the state over),
commits the cycle to the SQLite store, and lets the delivery workers (MQTT, InfluxDB,
webhook) send the new transitions in the background. It also refreshes the usage
rollups each cycle and the plant-floor points (OEE per shift, stops and their reasons)
every ``floor_interval``, and can serve the HTTP API and alert console.

>>> service = AnalyticsService(load_settings(AnalyticsSettings, Path("runhours.toml")))  # doctest: +SKIP
>>> service.run(stop_event)                                                              # doctest: +SKIP
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from analytics.alerts.delivery import (
    InfluxSender,
    MqttSender,
    OutboxWorker,
    Sender,
    WebhookSender,
)
from analytics.alerts.engine import evaluate
from analytics.alerts.model import Transition
from analytics.alerts.rules import DEFAULT_RULES, RuleSet, load_rules
from analytics.alerts.source import WindowSource
from analytics.alerts.store import AlertStore
from analytics.alerts.window import align
from analytics.downtime import DowntimeStore
from analytics.floor_points import default_floor_state, refresh_floor
from analytics.plant import DEFAULT_PLANT, Plant, load_plant
from analytics.rollups import default_state_file, refresh_rollups
from common.errors import RunhoursError
from common.settings import RunhoursSettings
from common.times import Duration
from store import InfluxClient
from wire import from_epoch_ms, to_epoch_ms

if TYPE_CHECKING:
    from analytics.console.server import ConsoleServer

log = logging.getLogger("runhours.analytics")


class AnalyticsOptions(BaseModel):
    """The ``[analytics]`` settings section (``RUNHOURS_ANALYTICS__FIELD`` in the environment)."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    rules: Path | None = None  # rules file; default: examples/rules.toml of this checkout
    interval: float = Field(default=10.0, gt=0)  # seconds between evaluation cycles
    settle: Duration = timedelta(seconds=5)  # how far behind now to evaluate (ingest latency)
    start_lookback: Duration = timedelta(hours=1)  # first start: evaluate this much history
    max_catch_up: Duration = timedelta(days=1)  # after a long stop, skip older data than this
    http_host: str = "127.0.0.1"  # beyond loopback only with users_file (logins)
    http_port: int | None = None  # serve the HTTP API and the alert console on this port
    # Console users (runhours users); default <data_dir>/security/console/users.toml if it
    # exists. With it every route needs a login; without it, loopback only.
    users_file: Path | None = None
    tls_cert_file: Path | None = None  # serve the console over HTTPS with this certificate
    tls_key_file: Path | None = None
    webhook_url: SecretStr | None = None  # JSON POST per transition (may carry a token)
    webhook_timeout: float = Field(default=5.0, gt=0)
    mqtt: bool = True  # retained message per active alert
    influx: bool = True  # a point per transition in the `alerts` measurement
    retry_base: float = Field(default=0.5, gt=0)  # first retry delay of a failed delivery (s)
    retry_max: float = Field(default=30.0, gt=0)  # longest retry delay (s)
    rollups: bool = True  # refresh the usage rollups each cycle
    # The plant-floor file (downtime reasons, shift schedules, ideal cycles); default:
    # examples/plant.toml of this checkout.
    plant: Path | None = None
    floor: bool = True  # write OEE per shift and stops with reasons for the dashboards
    floor_interval: float = Field(default=60.0, gt=0)  # seconds between those refreshes


class AnalyticsSettings(RunhoursSettings):
    """Settings of the analytics service: the shared ones plus ``[analytics]``."""

    analytics: AnalyticsOptions = AnalyticsOptions()

    @property
    def rules_file(self) -> Path:
        return self.analytics.rules or DEFAULT_RULES

    @property
    def plant_file(self) -> Path:
        return self.analytics.plant or DEFAULT_PLANT

    @property
    def users_file(self) -> Path | None:
        """The console's users file: the configured one, else the security directory's."""
        if self.analytics.users_file is not None:
            return self.analytics.users_file
        default = self.data_dir / "security" / "console" / "users.toml"
        return default if default.exists() else None


class ServiceBusy(RunhoursError, RuntimeError):
    """Another analytics service already runs on this data directory."""


@dataclass
class CycleResult:
    """What one evaluation cycle did."""

    start: datetime | None
    end: datetime | None
    transitions: list[Transition] = field(default_factory=list)
    seconds: float = 0.0


class AnalyticsService:
    """Evaluation cycles, delivery workers and (optionally) the HTTP console, in one process."""

    def __init__(
        self, settings: AnalyticsSettings, rules: RuleSet | None = None, plant: Plant | None = None
    ) -> None:
        self.settings = settings
        self.options = settings.analytics
        self.rules = rules if rules is not None else load_rules(settings.rules_file)
        self.plant = plant if plant is not None else load_plant(settings.plant_file)
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self._lock = self._take_lock(settings.data_dir / "analytics.lock")
        self.store = AlertStore.in_data_dir(settings.data_dir)
        self.downtime = DowntimeStore.in_data_dir(settings.data_dir)
        self._floor_due = 0.0  # monotonic time of the next plant-floor refresh
        self.client = InfluxClient.from_settings(settings)
        self.source = WindowSource(self.client, self.rules)
        self.workers: list[OutboxWorker] = []
        self.http: ConsoleServer | None = None
        self._retire_orphans()

    def _retire_orphans(self) -> None:
        """Resolve alerts whose rule is gone or no longer watches their machine.

        Nothing would ever evaluate (and so clear) them: they would stay active, and
        retained on MQTT, forever.
        """
        where = self.settings.rules_file
        for alert in self.store.alerts(active=True):
            rule = self.rules.get(alert.rule)
            if rule is None:
                note = f"rule {alert.rule!r} is no longer in {where}"
            elif not rule.selects(alert.machine, self.rules.kind_of(alert.machine)):
                note = f"rule {alert.rule!r} no longer watches {alert.machine} in {where}"
            else:
                continue
            self.store.resolve(alert.id, by="rules", note=note)
            log.warning("resolved %s: %s", alert.id, note)

    @staticmethod
    def _take_lock(path: Path) -> IO[str]:
        handle = path.open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise ServiceBusy(
                f"another analytics service runs on {path.parent} (lock {path}); stop it first "
                "or give this one another data_dir"
            ) from None
        handle.truncate(0)
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        return handle

    # -- delivery and HTTP ------------------------------------------------------------

    def start_delivery(self) -> None:
        """Start one outbox worker per enabled channel."""
        o = self.options
        senders: list[tuple[str, Sender]] = []
        if o.influx:
            senders.append(("influx", InfluxSender(self.client)))
        if o.mqtt:
            senders.append(("mqtt", MqttSender(self.settings)))
        if o.webhook_url:
            url = o.webhook_url.get_secret_value()
            senders.append(("webhook", WebhookSender(url, o.webhook_timeout)))
        for channel, sender in senders:
            self.workers.append(
                OutboxWorker(
                    self.store, channel, sender, base_delay=o.retry_base, max_delay=o.retry_max
                )
            )
        for worker in self.workers:
            worker.start()

    def start_http(self) -> None:
        if self.options.http_port is None:
            return
        from analytics.console.server import ConsoleServer

        self.http = ConsoleServer(
            self.store,
            self.client,
            self.options.http_host,
            self.options.http_port,
            users_file=self.settings.users_file,
            tls_cert=self.options.tls_cert_file,
            tls_key=self.options.tls_key_file,
            plant=self.plant,
            downtime=self.downtime,
        )
        self.http.start()

    # -- evaluation ----------------------------------------------------------------------

    def cycle(self, now: datetime | None = None) -> CycleResult:
        """Evaluate what became evaluable since the last cycle and commit it.

        No-data rules walk wall-clock time up to ``now - settle``. Data-time rules of a
        machine walk from its cursor up to the step holding its latest stored sample (no
        later than ``now - settle``): data that arrives late (an edge replaying its buffer,
        an ingest catching up) is evaluated in order when it lands, as a replay would.
        """
        began = datetime.now(UTC)
        now = now or began
        rules = self.rules
        if self.options.rollups:
            try:
                refresh_rollups(self.client, state_file=default_state_file(self.settings.data_dir))
            except Exception:  # rollups are another feature's; never stop alerting for them
                log.exception("refreshing the usage rollups failed")
        self.refresh_floor()
        end = align(now - self.options.settle, rules.step)
        state = self.store.load_state()
        stored_origin = self.store.meta("origin")
        origin = (
            from_epoch_ms(int(stored_origin))
            if stored_origin
            else align(end - self.options.start_lookback, rules.step)
        )
        oldest = align(end - self.options.max_catch_up, rules.step)
        silence_from = self._caught_up(state.until or origin, oldest, "no-data rules")
        floor = max(origin, oldest)
        reach: dict[str, datetime] = {}
        for machine, (first_ms, last_ms) in sorted(self.source.extent(floor).items()):
            cursor = state.cursors.get(machine)
            if cursor is None:  # a machine not seen before starts at its first sample
                cursor = max(floor, align(from_epoch_ms(first_ms), rules.step))
            else:
                cursor = self._caught_up(cursor, oldest, f"{machine}'s data-time rules")
            latest = min(align(from_epoch_ms(last_ms), rules.step), end)
            if latest > cursor:
                state.cursors[machine] = cursor
                reach[machine] = latest
                if cursor < silence_from - rules.step:
                    log.info("%s: late data, evaluating %s to %s", machine, cursor, latest)
        starts = [state.cursors[m] for m in reach]
        if silence_from < end:
            starts.append(silence_from)
        if not starts:
            return CycleResult(None, None)
        start = min(starts)
        state.until = silence_from
        window = self.source.load(start, end)
        result = evaluate(rules, window, state, reach=reach)
        result.state.until = max(end, silence_from)  # never backwards (a clock set back)
        meta = {"rules": rules.fingerprint(), "origin": str(to_epoch_ms(origin))}
        applied = self.store.commit(result.state, result.transitions, meta)
        for worker in self.workers:
            worker.wake()
        for transition in applied:
            a = transition.alert
            log.info("%s %s %s %s %s", transition.kind, a.id, a.rule, a.machine, a.summary)
        return CycleResult(start, end, applied, (datetime.now(UTC) - began).total_seconds())

    def refresh_floor(self, force: bool = False) -> None:
        """Write the plant-floor points of what arrived, every ``floor_interval`` seconds."""
        if not self.options.floor or (not force and time.monotonic() < self._floor_due):
            return
        self._floor_due = time.monotonic() + self.options.floor_interval
        try:
            state = default_floor_state(self.settings.data_dir)
            refresh_floor(self.client, self.plant, self.downtime, state_file=state)
        except Exception:  # another feature's; never stop alerting for it
            log.exception("refreshing the plant-floor points (OEE, stops) failed")

    @staticmethod
    def _caught_up(cursor: datetime, oldest: datetime, what: str) -> datetime:
        """``cursor``, or ``oldest`` if it lies before it (the stop outlasted max_catch_up)."""
        if cursor < oldest:
            log.warning("%s: skipping %s to %s (older than max_catch_up)", what, cursor, oldest)
            return oldest
        return cursor

    def run(self, stop: threading.Event, max_cycles: int | None = None) -> None:
        """Run cycles every ``interval`` seconds until ``stop`` is set."""
        cycles = 0
        while not stop.is_set():
            try:
                self.cycle()
            except Exception:  # InfluxDB down, a bad point: log, keep the state, try again
                log.exception("evaluation cycle failed; retrying next interval")
            cycles += 1
            if max_cycles is not None and cycles >= max_cycles:
                break
            stop.wait(self.options.interval)

    def close(self) -> None:
        for worker in self.workers:
            worker.stop()
        self.workers = []
        if self.http is not None:
            self.http.stop()
            self.http = None
        self.client.close()
        self._lock.close()
