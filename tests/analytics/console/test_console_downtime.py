"""Stop reasons through the console's API, with logins: viewers read, operators give reasons,
and the record names who did it and when (the audit trail of the alert console).

A real uvicorn server with a real users file, the real InfluxDB holding a pump's last
completed shift (one 20-minute stop in it), and the example plant at the test's site.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
import pytest

from analytics.alerts import AlertStore
from analytics.console import ConsoleServer
from analytics.downtime import DowntimeStore
from analytics.machines import MachineKey
from analytics.shifts import ShiftRun
from common.settings import RunhoursSettings
from runhours.security.users import add_user
from runhours.services import free_port
from store import InfluxClient, Point
from tests.support.console import logged_in
from tests.support.plantfloor import plant_for
from wire import from_epoch_ms, to_epoch_ms

PASSWORDS = {"olga": "operator-password-1", "vic": "viewer-password-22"}
MIN = 60_000


@dataclass
class Floor:
    url: str
    key: MachineKey
    run: ShiftRun
    stop_start: int
    downtime: DowntimeStore

    def login(self, user: str) -> AbstractContextManager[httpx.Client]:
        return logged_in(self.url, user, PASSWORDS[user])


@pytest.fixture
def floor(
    settings: RunhoursSettings, influx: InfluxClient, test_id: str, tmp_path: object
) -> Iterator[Floor]:
    plant = plant_for(test_id)
    key = MachineKey(test_id, "pump-01")
    now = to_epoch_ms(datetime.now(UTC))
    schedule = plant.plan(key).schedule
    assert schedule is not None and schedule.name == "continuous"
    run = [r for r in schedule.runs(now - 24 * 3_600_000, now) if r.end_ms <= now][-1]
    stop = run.start_ms + 120 * MIN  # 20 min idle, two hours into the shift
    tags = {"site": test_id, "line": "line-a", "machine": key.machine}
    points = [
        Point(
            "telemetry",
            tags,
            {"state": "idle" if stop <= t < stop + 20 * MIN else "running", "flow_m3_h": 90.0},
            t,
        )
        for t in range(run.start_ms - MIN, run.end_ms + MIN, MIN)
    ]
    influx.write(points)
    users = settings.data_dir / "users.toml"
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    add_user(users, "olga", "operator", PASSWORDS["olga"])
    add_user(users, "vic", "viewer", PASSWORDS["vic"])
    downtime = DowntimeStore.in_data_dir(settings.data_dir)
    server = ConsoleServer(
        AlertStore.in_data_dir(settings.data_dir),
        influx,
        "127.0.0.1",
        free_port(),
        users_file=users,
        plant=plant,
        downtime=downtime,
    )
    server.start()
    yield Floor(server.url, key, run, stop, downtime)
    server.stop()


def _iso(ms: int) -> str:
    return from_epoch_ms(ms).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def test_operators_give_stops_reasons_and_the_record_names_them(
    floor: Floor, influx: InfluxClient
) -> None:
    machine = f"{floor.key.site}/{floor.key.machine}"
    body = {"machine": machine, "start": _iso(floor.stop_start), "reason": "PM"}
    with floor.login("vic") as viewer:
        reasons = viewer.get("/api/downtime/reasons").json()
        assert {"code": "PM", "label": "Planned maintenance", "category": "planned"} in reasons
        [stop] = viewer.get("/api/downtime/stops", params={"unassigned": "true"}).json()
        assert (stop["machine"], stop["start"], stop["seconds"], stop["state"]) == (
            floor.key.machine, _iso(floor.stop_start), 1200.0, "idle",
        )  # fmt: skip
        assert stop["shift"] == f"{floor.run.day.isoformat()} {floor.run.shift}"
        refused = viewer.post("/api/downtime/assign", json=body)
        assert refused.status_code == 403, refused.text
    assert floor.downtime.assignments() == {}

    with floor.login("olga") as operator:
        posing = operator.post("/api/downtime/assign", json={**body, "by": "mallory"})
        assert posing.status_code == 422 and "logged in as olga" in posing.json()["detail"]
        unknown = operator.post("/api/downtime/assign", json={**body, "reason": "NAP"})
        assert unknown.status_code == 422 and "unknown code 'NAP'" in unknown.json()["detail"]
        running = {**body, "start": _iso(floor.stop_start - 60 * MIN)}
        missing = operator.post("/api/downtime/assign", json=running)
        assert missing.status_code == 404 and "no stop of" in missing.json()["detail"]
        bare = operator.post("/api/downtime/assign", json={**body, "machine": "pump-01"})
        assert bare.status_code == 422 and "site/machine" in bare.json()["detail"]
        # Any instant inside the stop finds it.
        inside = {**body, "start": _iso(floor.stop_start + 7 * MIN)}
        given = operator.post("/api/downtime/assign", json=inside)
        assert given.status_code == 200, given.text
        assert (given.json()["reason"], given.json()["by"], given.json()["seconds"]) == (
            "PM", "olga", 1200.0,
        )  # fmt: skip
        assert operator.get("/api/downtime/stops", params={"unassigned": "true"}).json() == []
        [shown] = operator.get("/api/downtime/stops").json()
        assert (shown["reason"], shown["category"], shown["by"]) == ("PM", "planned", "olga")
        cleared = operator.post("/api/downtime/assign", json={**body, "reason": None})
        assert cleared.status_code == 200 and cleared.json()["reason"] is None
        again = operator.post("/api/downtime/assign", json={**body, "reason": "BREAKDOWN"})
        assert again.status_code == 200
    log = floor.downtime.history(floor.key, floor.stop_start)
    assert [(e["reason"], e["previous"], e["by"]) for e in log] == [
        ("PM", None, "olga"), (None, "PM", "olga"), ("BREAKDOWN", None, "olga"),
    ]  # fmt: skip
    assert all(e["at"].endswith("Z") for e in log)
    # The dashboards' copy was rewritten at once: the stop under its new reason only.
    rows = influx.query_rows(
        'SELECT "seconds", "by", "reason", "category" FROM "downtime" GROUP BY "reason", "category"'
    )
    assert [(r["reason"], r["category"], r["seconds"], r["by"]) for r in rows] == [
        ("BREAKDOWN", "unplanned", 1200.0, "olga")
    ]
    # The shift's OEE point for the dashboards is there too (a pump: availability only).
    [point] = influx.query_rows('SELECT "planned_s", "running_s", "stop_s" FROM "oee_shift"')
    assert (point["planned_s"], point["stop_s"]) == (8 * 3600.0, 1200.0)
    assert point["running_s"] == 8 * 3600.0 - 1200.0
