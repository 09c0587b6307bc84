"""The HTTP API and the alert console, the console driven in a real headless Chromium."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect, sync_playwright

from analytics.alerts import Alert, AlertStore
from analytics.console import ConsoleServer
from common.settings import RunhoursSettings
from runhours.services import free_port
from store import InfluxClient, Point
from tests.support.console import CHROMIUM, CHROMIUM_ARGS, firing
from wire import to_epoch_ms


@pytest.fixture
def console(
    settings: RunhoursSettings, influx: InfluxClient
) -> Iterator[tuple[str, AlertStore, list[Alert]]]:
    store = AlertStore.in_data_dir(settings.data_dir)
    transitions = [
        firing("vibration-critical", "comp-03", "critical", 4.76, "vibration_mm_s 4.76 > 4.5"),
        firing("bearing-temp-warning", "pump-02", "warning", 91.5, "bearing_temp_c 91.5 > 90"),
    ]
    store.record(transitions)
    server = ConsoleServer(store, influx, "127.0.0.1", free_port())
    server.start()
    yield server.url, store, [t.alert for t in transitions]
    server.stop()


def test_api_lists_acks_resolves_and_says_what_was_wrong(
    console: tuple[str, AlertStore, list[Alert]], influx: InfluxClient
) -> None:
    url, _store, (vib, temp) = console
    with httpx.Client(base_url=url) as http:
        active = http.get("/api/alerts", params={"active": "true"}).json()
        assert [a["id"] for a in active] == [temp.id, vib.id]  # same start: by rule id
        only = http.get("/api/alerts", params={"machine": "comp-03"}).json()
        assert [(a["id"], a["severity"], a["value"]) for a in only] == [(vib.id, "critical", 4.76)]

        acked = http.post(
            f"/api/alerts/{vib.id}/ack", json={"by": "jdoe", "note": "bearing ordered"}
        )
        assert acked.status_code == 200 and acked.json()["acked_by"] == "jdoe"
        again = http.post(f"/api/alerts/{vib.id}/ack", json={"by": "ann"})
        assert again.status_code == 409 and "already acknowledged by jdoe" in again.json()["detail"]
        assert http.post(f"/api/alerts/{vib.id}/ack", json={}).status_code == 422
        missing = http.post("/api/alerts/nope/resolve", json={"by": "jdoe"})
        assert missing.status_code == 404 and "no alert with id 'nope'" in missing.json()["detail"]

        resolved = http.post(f"/api/alerts/{vib.id}/resolve", json={"by": "jdoe"})
        assert resolved.json()["state"] == "resolved" and resolved.json()["resolved_by"] == "jdoe"
        assert http.post(f"/api/alerts/{vib.id}/resolve", json={}).status_code == 409
        detail = http.get(f"/api/alerts/{vib.id}").json()
        assert [h["event"] for h in detail["history"]] == ["firing", "acked", "resolved"]

        # Maintenance records go to InfluxDB; the machine must be known from telemetry.
        unknown = http.post("/api/maintenance", json={"machine": "comp-03"})
        assert (
            unknown.status_code == 404 and "no telemetry for 'comp-03'" in unknown.json()["detail"]
        )
        influx.write(
            [
                Point(
                    "telemetry",
                    {"site": "plant1", "line": "line-a", "machine": "comp-03"},
                    {"state": "running"},
                    1000,
                )
            ]
        )
        made = http.post(
            "/api/maintenance",
            json={"machine": "comp-03", "at": "2026-03-05T16:00:00Z", "note": "bearing"},
        )
        assert made.status_code == 200 and made.json()["at"] == "2026-03-05T16:00:00Z"
        rows = influx.query_rows('SELECT "note", "kind" FROM maintenance')
        assert [(r["time"], r["note"], r["kind"]) for r in rows] == [
            (to_epoch_ms(datetime(2026, 3, 5, 16, tzinfo=UTC)), "bearing", "service")
        ]
        naive = http.post(
            "/api/maintenance", json={"machine": "comp-03", "at": "2026-03-05T16:00:00"}
        )
        assert naive.status_code == 422 and "time zone" in naive.json()["detail"]


def test_console_in_headless_chromium_lists_acks_and_resolves(
    console: tuple[str, AlertStore, list[Alert]], tmp_path: Path
) -> None:
    url, store, (vib, temp) = console
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page: Page = browser.new_page()
            page.goto(url + "/")
            row = page.locator(f'tr[data-id="{vib.id}"]')
            expect(row).to_be_visible()
            cells = row.locator("td")
            assert cells.all_inner_texts()[:6] == [
                "comp-03",
                "vibration-critical",
                "critical",
                "2026-03-04 05:31 UTC",
                "4.76",
                "firing · unacked",
            ]
            expect(page.locator("#alerts tbody tr")).to_have_count(2)

            page.fill("#who", "jdoe")
            row.locator("button.ack").click()
            expect(row.locator("td.state")).to_have_text("firing · acked by jdoe")
            expect(row.locator("button.ack")).to_be_disabled()
            api = httpx.get(f"{url}/api/alerts/{vib.id}").json()
            assert (api["acked_by"], api["state"]) == ("jdoe", "firing")

            page.screenshot(path=str(tmp_path / "console.png"), full_page=True)
            row.locator("button.resolve").click()
            expect(page.locator(f'tr[data-id="{vib.id}"]')).to_have_count(0)
            expect(page.locator("#alerts tbody tr")).to_have_count(1)
            active = httpx.get(f"{url}/api/alerts", params={"active": "true"}).json()
            assert [a["id"] for a in active] == [temp.id]
            assert store.get(vib.id).resolved_by == "jdoe"
        finally:
            browser.close()


def test_api_refuses_bad_input_with_422_and_says_why(
    console: tuple[str, AlertStore, list[Alert]], influx: InfluxClient
) -> None:
    url, store, (vib, _temp) = console
    influx.write(
        [
            Point(
                "telemetry",
                {"site": "plant1", "line": "line-a", "machine": "comp-03"},
                {"state": "running"},
                1000,
            )
        ]
    )
    with httpx.Client(base_url=url) as http:
        # A blank name is bad input (422), not a conflict with the alert's state (409).
        blank = http.post(f"/api/alerts/{vib.id}/ack", json={"by": "   "})
        assert blank.status_code == 422 and "by" in blank.text
        assert http.post(f"/api/alerts/{vib.id}/resolve", json={"by": " "}).status_code == 422
        assert not store.get(vib.id).acked and store.get(vib.id).state == "firing"
        assert [h["event"] for h in store.history(vib.id)] == ["firing"]

        # A record beyond what InfluxDB stores (or any time in the future) is refused.
        future = http.post(
            "/api/maintenance", json={"machine": "comp-03", "at": "9999-12-31T23:59:59Z"}
        )
        assert future.status_code == 422, future.text
        assert future.json()["detail"].startswith("at: 9999-12-31T23:59:59Z is in the future")
        assert influx.query_rows('SELECT "note" FROM maintenance') == []


def test_api_says_when_influxdb_is_unreachable(settings: RunhoursSettings) -> None:
    store = AlertStore.in_data_dir(settings.data_dir)
    dead = InfluxClient(f"http://127.0.0.1:{free_port()}", "runhours", timeout=1.0)
    server = ConsoleServer(store, dead, "127.0.0.1", free_port())
    server.start()
    try:
        answer = httpx.post(f"{server.url}/api/maintenance", json={"machine": "comp-03"})
    finally:
        server.stop()
        dead.close()
    assert answer.status_code == 503, answer.text
    assert answer.json()["detail"].startswith("InfluxDB: ")
