"""Commissioning references, CUSUM, load bands, services, and the forecast an alert carries.

Hand-made telemetry with figures computed by hand. Most cases build the evaluation
window in memory (``window_from_samples``, what InfluxDB's ``GROUP BY time`` computes);
the last one runs the live service on InfluxDB and receives the alert on a webhook.
One sample a minute at the start of each minute: the step ending at minute m + 1 sees
the sample of minute m.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import tomllib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from analytics.alerts import AlertStore, evaluate, parse_rules
from analytics.alerts.model import Alert, EngineState, Transition, alert_id
from analytics.alerts.samples import window_from_samples
from analytics.alerts.store import wait_for
from analytics.service import AnalyticsOptions, AnalyticsService, AnalyticsSettings
from common.settings import RunhoursSettings
from runhours.services import free_port
from store import InfluxClient, Point
from wire import MachineRef, Sample

T0 = datetime(2026, 3, 2, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


Signal = Callable[[int], tuple[str, dict[str, float]]]  # minute → (state, values)


def run(
    rules_text: str,
    signal: Signal,
    minutes: int,
    machine: str = "comp-01",
    records: dict[str, list[datetime]] | None = None,
) -> tuple[list[Transition], EngineState]:
    """Evaluate ``rules_text`` over ``minutes`` of one machine's signal (in memory)."""
    rules = parse_rules(tomllib.loads(rules_text))
    samples = []
    for minute in range(minutes):
        state, values = signal(minute)
        samples.append(Sample(ts=at(minute), state=state, values=values))  # type: ignore[arg-type]
    ref = MachineRef("plant1", "line-a", machine)
    window = window_from_samples(
        rules, T0, at(minutes), {ref: samples}, {machine: records} if records else None
    )
    result = evaluate(rules, window)
    return result.transitions, result.state


def fired(transitions: list[Transition], rule: str) -> list[tuple[str, datetime]]:
    return [(t.kind, t.at) for t in transitions if t.alert.rule == rule]


STEP_RULES = """
step = "1m"
[[rule]]
id = "adaptive"
kind = "anomaly"
value = "vibration_mm_s"
warmup = "1h"
window = "1h"
for = "0s"
[[rule]]
id = "cusum"
kind = "anomaly"
value = "vibration_mm_s"
reference = "commissioning"
commissioning = "1h"
detector = "cusum"
k = 0.05
h = 0.255
for = "0s"
[[rule]]
id = "rise"
kind = "anomaly"
value = "vibration_mm_s"
reference = "commissioning"
commissioning = "1h"
rise = 0.2
window = "1h"
for = "0s"
"""


def test_a_step_of_plus_25_percent_fires_the_reference_rules_at_the_computed_minute() -> None:
    # 1.0 mm/s for two hours (the first is the commissioning), then 1.25: +25 %.
    transitions, state = run(
        STEP_RULES, lambda m: ("running", {"vibration_mm_s": 1.0 if m < 120 else 1.25}), 360
    )
    # CUSUM: (0.25 - k 0.05) × 1/60 h per step reaches h = 0.255 at the 77th step of 1.25
    # (76.5 steps), which ends at minute 120 + 77.
    assert fired(transitions, "cusum") == [("firing", at(197))]
    # The level (an EWMA of +25 %, half-life 1 h) passes +20 % after 60·log2(5) = 139.3
    # steps: at the 140th.
    assert fired(transitions, "rise") == [("firing", at(260))]
    # The adaptive baseline has no spread (std floor 0.1 mm/s): +0.25 is 2.5σ, under 4σ.
    assert fired(transitions, "adaptive") == []
    (alert,) = [t.alert for t in transitions if t.alert.rule == "cusum"]
    assert alert.summary == (
        "vibration_mm_s 1.25 vs reference 1 (running): +25%, CUSUM 0.26 of 0.255"
    )
    # The reference is frozen: four hours of 1.25 did not move it.
    memory = state.trackers[("cusum", "comp-01")].memory
    assert memory["ref"] == {"running": [60, 1.0, 0.0]} and memory["cusum"] == 0.255


BAND_RULES = """
step = "1m"
[[rule]]
id = "banded"
kind = "anomaly"
value = "vibration_mm_s"
reference = "commissioning"
commissioning = "4h"
bands = { value = "flow_m3_h", edges = [80.0] }
detector = "cusum"
k = 0.05
h = 0.25
for = "0s"
states = ["running", "idle"]
[[rule]]
id = "unbanded"
kind = "anomaly"
value = "vibration_mm_s"
reference = "commissioning"
commissioning = "4h"
detector = "cusum"
k = 0.05
h = 0.25
for = "0s"
states = ["running", "idle"]
"""


def pump(raise_from: int | None = None) -> Signal:
    """A pump: 2 h at 60 m³/h (1.0 mm/s), 2 h at 100 m³/h (0.6 mm/s), each then 20 min idle
    (0.5 mm/s at 8 m³/h). From ``raise_from`` the 100 m³/h band vibrates 30 % more."""

    def signal(minute: int) -> tuple[str, dict[str, float]]:
        phase = minute % 280
        if phase >= 260 or 120 <= phase < 140:
            return "idle", {"vibration_mm_s": 0.5, "flow_m3_h": 8.0}
        if phase < 120:
            return "running", {"vibration_mm_s": 1.0, "flow_m3_h": 60.0}
        worn = raise_from is not None and minute >= raise_from
        return "running", {"vibration_mm_s": 0.78 if worn else 0.6, "flow_m3_h": 100.0}

    return signal


def test_load_bands_and_states_compare_like_with_like_and_a_service_learns_anew() -> None:
    # Healthy for a day: per band and state nothing moves; one reference for both bands
    # sees the heavy band +25 % for two hours at a time and raises false alarms.
    transitions, _ = run(BAND_RULES, pump(), 24 * 60, machine="pump-01")
    assert fired(transitions, "banded") == []
    assert len([k for k, _ in fired(transitions, "unbanded") if k == "firing"]) == 4

    # From hour 14 (minute 840, in a 100 m³/h stretch: phase 0 at 840) the high-flow band
    # vibrates +30 %: the banded rule fires in that band. At 20:00 a service is recorded:
    # the alert resolves there and the new level is learnt as the new normal.
    service = at(20 * 60)
    transitions, state = run(
        BAND_RULES, pump(raise_from=840), 36 * 60, machine="pump-01", records={"service": [service]}
    )
    banded = [t for t in transitions if t.alert.rule == "banded"]
    assert [t.kind for t in banded] == ["firing", "resolved"]
    firing, resolved = banded
    # The band runs 0.78 vs 0.6 from minute 980 (phase 140): +30 %, so the CUSUM gains
    # 0.25 × 1/60 per step and reaches 0.25 at the 60th step: minute 980 + 60.
    assert firing.at == at(1040)
    assert "(running band 1): +30%" in firing.alert.summary
    assert resolved.at == service + timedelta(minutes=1)
    memory = state.trackers[("banded", "pump-01")].memory
    assert memory["since"] == int(service.timestamp() * 1000)
    assert memory["ref"]["running band 1"][1] == pytest.approx(0.78)  # the new normal


FORECAST_RULES = """
step = "1m"
[[rule]]
id = "vibration-warning"
kind = "threshold"
value = "vibration_mm_s"
above = 2.8
clear_below = 2.5
states = ["running"]
forecast = { limit = 4.5, label = "zone D" }
"""


def ramp(minute: int) -> tuple[str, dict[str, float]]:
    """Vibration rising 0.1 mm/s per hour from 2.0."""
    return "running", {"vibration_mm_s": 2.0 + 0.1 * minute / 60}


def hours_left(minute: int) -> float:
    """Hours from the step that sees the ramp's sample of ``minute`` until it reaches 4.5."""
    return (4.5 - (2.0 + 0.1 * minute / 60)) / 0.1


def test_the_alert_says_when_the_limit_comes_at_this_rate() -> None:
    transitions, state = run(FORECAST_RULES, ramp, 10 * 60)
    ((kind, when),) = fired(transitions, "vibration-warning")
    # 2.0 + 0.1 × 481/60 > 2.8 first: the sample of minute 481, in the step ending at 482.
    assert (kind, when) == ("firing", at(482))
    alert = transitions[0].alert
    # The trend line through the hourly means of that ramp is the ramp itself: at 0.1 per
    # hour from 2.0 + 0.1 × 481/60 it reaches 4.5 in 16.98 h.
    hours = hours_left(481)
    assert alert.time_to_limit_h == round(hours, 1) == 17.0
    assert alert.limit_eta is not None
    assert abs((alert.limit_eta - (when + timedelta(hours=hours))).total_seconds()) < 1
    assert alert.forecast == "at this rate zone D (4.5) in about 17 h"
    assert alert.summary == "vibration_mm_s 2.8 > 2.8; at this rate zone D (4.5) in about 17 h"
    # While it fires the forecast follows the data: two hours later, 15 h to go.
    latest = state.trackers[("vibration-warning", "comp-01")].alert
    assert latest is not None and latest.time_to_limit_h == round(hours - 118 / 60, 1)
    assert latest.forecast == "at this rate zone D (4.5) in about 15 h"


def test_a_store_from_before_forecasts_gains_the_columns(tmp_path: Path) -> None:
    store = AlertStore(tmp_path / "alerts.sqlite3")
    with sqlite3.connect(store.path) as db:
        for column in ("forecast", "limit_eta", "time_to_limit_h"):
            db.execute(f"ALTER TABLE alerts DROP COLUMN {column}")
        db.execute("PRAGMA user_version = 2")
    store = AlertStore(tmp_path / "alerts.sqlite3")
    alert = Alert(
        id=alert_id("r", "m", at(0)),
        rule="r",
        rule_kind="threshold",
        machine="m",
        site="s",
        line="l",
        severity="warning",
        state="firing",
        pending_since=at(0),
        started_at=at(1),
        forecast="at this rate zone D (4.5) in about 3 h",
        limit_eta=at(181),
        time_to_limit_h=3.0,
    )
    store.record([Transition("firing", at(1), alert)])
    assert store.get(alert.id) == alert
    with sqlite3.connect(store.path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 3


class Receiver:
    """A webhook receiver on a local port."""

    def __init__(self, port: int) -> None:
        self.bodies: list[dict[str, Any]] = []
        bodies = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver(free_port())
    yield server
    server.close()


def test_the_webhook_carries_the_forecast(
    influx: InfluxClient, settings: RunhoursSettings, tmp_path: Path, receiver: Receiver
) -> None:
    tags = {"site": "plant1", "line": "line-a", "machine": "comp-01"}
    influx.write(
        Point("telemetry", tags, {**ramp(m)[1], "state": "running"}, int(at(m).timestamp() * 1000))
        for m in range(9 * 60)
    )
    rules = tmp_path / "rules.toml"
    rules.write_text(FORECAST_RULES)
    options = AnalyticsOptions(
        rules=rules,
        settle=timedelta(seconds=1),
        start_lookback=timedelta(days=1),
        webhook_url=SecretStr(f"http://127.0.0.1:{receiver.server.server_port}/hook"),
        mqtt=False,
        influx=False,
        rollups=False,
    )
    service = AnalyticsService(AnalyticsSettings(**{**settings.model_dump(), "analytics": options}))
    try:
        service.start_delivery()
        service.cycle(now=at(9 * 60) + timedelta(seconds=1))
        assert wait_for(lambda: len(receiver.bodies) == 1, 10), receiver.bodies
    finally:
        service.close()
    (body,) = receiver.bodies
    assert body["event"] == "firing" and body["at"] == "2026-03-02T08:02:00Z"
    alert = body["alert"]
    assert alert["forecast"] == "at this rate zone D (4.5) in about 17 h"
    assert alert["time_to_limit_h"] == round(hours_left(481), 1) == 17.0
    assert alert["limit_eta"] == "2026-03-03T01:01:00Z"  # 08:02 + 16 h 59 min
    # The store keeps the latest forecast of the firing alert (the console shows it), as of
    # the last step walked: the one before the step holding the latest sample (minute 538).
    (stored,) = service.store.alerts(active=True)
    assert stored.last_value == pytest.approx(2.0 + 0.1 * 538 / 60)
    assert stored.forecast == "at this rate zone D (4.5) in about 16 h"
    assert stored.time_to_limit_h == round(hours_left(538), 1) == 16.0
