"""The alert console with logins: every route guarded, viewer and operator roles, the audit
trail, JSON-only state changes and body limits; the login flow in headless Chromium.

A real uvicorn server, a real users file (argon2 hashes) and the real InfluxDB.
"""

from __future__ import annotations

import subprocess
import sys
import typing
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from playwright.sync_api import expect, sync_playwright
from starlette.routing import Route

from analytics.alerts import Alert, AlertStore
from analytics.console import ConsoleError, ConsoleServer, create_app
from common.settings import RunhoursSettings
from runhours.security.users import add_token, add_user, remove_user, revoke_token
from runhours.services import free_port
from store import InfluxClient, Point
from tests.support.console import CHROMIUM, CHROMIUM_ARGS, firing, logged_in

PASSWORDS = {"olga": "operator-password-1", "vic": "viewer-password-22"}


@dataclass
class Console:
    url: str
    store: AlertStore
    alerts: list[Alert]
    users: Path
    token: str
    token_id: str

    def login(self, user: str) -> AbstractContextManager[httpx.Client]:
        return logged_in(self.url, user, PASSWORDS[user])


@pytest.fixture
def console(settings: RunhoursSettings, influx: InfluxClient, tmp_path: Path) -> Iterator[Console]:
    users = tmp_path / "console-users.toml"
    add_user(users, "olga", "operator", PASSWORDS["olga"])
    add_user(users, "vic", "viewer", PASSWORDS["vic"])
    token_id, token = add_token(users, "olga")
    store = AlertStore.in_data_dir(settings.data_dir)
    transitions = [
        firing("vibration-critical", "comp-03", "critical", 4.76, "vibration_mm_s 4.76 > 4.5"),
        firing("bearing-temp-warning", "pump-02", "warning", 91.5, "bearing_temp_c 91.5 > 90"),
    ]
    store.record(transitions)
    tags = {"site": "plant1", "line": "line-a", "machine": "comp-03"}
    influx.write([Point("telemetry", tags, {"state": "running"}, 1000)])
    server = ConsoleServer(store, influx, "127.0.0.1", free_port(), users_file=users)
    server.start()
    yield Console(server.url, store, [t.alert for t in transitions], users, token, token_id)
    server.stop()


def routes(console: Console) -> list[tuple[str, str]]:
    """Every (method, path) the app serves, path parameters filled in."""
    app = typing.cast(FastAPI, create_app(console.store).app)
    found = []
    for route in app.routes:
        if isinstance(route, APIRoute | Route):
            path = route.path.replace("{alert_id}", console.alerts[0].id)
            found += [(m, path) for m in sorted(route.methods or []) if m != "HEAD"]
    return found


def test_every_route_answers_401_without_a_login(console: Console) -> None:
    table = routes(console)
    assert (
        "POST",
        "/api/alerts/{alert_id}/ack".replace("{alert_id}", console.alerts[0].id),
    ) in table
    assert ("GET", "/openapi.json") in table and ("GET", "/docs") in table
    statuses = {}
    with httpx.Client(base_url=console.url) as http:
        for method, path in table:
            answer = http.request(
                method, path, json={} if method in ("POST", "PUT", "PATCH") else None
            )
            statuses[(method, path)] = answer.status_code
        forged = http.get(
            "/api/alerts", headers={"Authorization": "Bearer rht_abcdefgh_" + "x" * 43}
        )
        page = http.get("/")
    with httpx.Client(base_url=console.url, cookies={"runhours_session": "made-up"}) as made_up:
        cookie = made_up.get("/api/alerts")
    login = ("POST", "/api/session")
    assert statuses.pop(login) == 422  # logging in is open; an empty body is no login
    assert set(statuses.values()) == {401}, statuses
    assert forged.status_code == 401 and cookie.status_code == 401
    # The page itself answers 401 too, with the console whose login form takes over.
    assert page.status_code == 401 and 'id="login"' in page.text
    assert console.store.get(console.alerts[0].id).state == "firing"  # nothing happened


def test_wrong_password_and_unknown_user_are_refused_alike(console: Console) -> None:
    with httpx.Client(base_url=console.url) as http:
        wrong = http.post("/api/session", json={"user": "olga", "password": "guess-guess-1"})
        nobody = http.post("/api/session", json={"user": "mallory", "password": "guess-guess-1"})
    assert wrong.status_code == nobody.status_code == 401
    assert wrong.json() == nobody.json() == {"detail": "wrong user name or password"}
    assert "set-cookie" not in wrong.headers


def test_a_viewer_reads_but_cannot_act(console: Console) -> None:
    vib = console.alerts[0]
    with console.login("vic") as http:
        assert http.get("/api/session").json() == {"user": "vic", "role": "viewer"}
        listed = sorted(a["id"] for a in http.get("/api/alerts").json())
        assert listed == sorted(a.id for a in console.alerts)
        assert http.get(f"/api/alerts/{vib.id}").status_code == 200
        assert http.get("/api/maintenance").status_code == 200
        refused = {
            "ack": http.post(f"/api/alerts/{vib.id}/ack", json={}),
            "resolve": http.post(f"/api/alerts/{vib.id}/resolve", json={}),
            "maintenance": http.post("/api/maintenance", json={"machine": "comp-03"}),
        }
        assert {k: r.status_code for k, r in refused.items()} == dict.fromkeys(refused, 403)
        assert refused["ack"].json()["detail"] == "vic is a viewer; this needs an operator"
        assert http.delete("/api/session").status_code == 200  # logging out is for everyone
        assert http.get("/api/alerts").status_code == 401
    alert = console.store.get(vib.id)
    assert (alert.state, alert.acked) == ("firing", False)
    assert [h["event"] for h in console.store.history(vib.id)] == ["firing"]


def test_an_operator_acts_and_the_audit_trail_names_them(
    console: Console, influx: InfluxClient
) -> None:
    vib, temp = console.alerts
    with console.login("olga") as http:
        posed = http.post(f"/api/alerts/{vib.id}/ack", json={"by": "mallory"})
        assert posed.status_code == 422 and "logged in as olga" in posed.json()["detail"]
        acked = http.post(f"/api/alerts/{vib.id}/ack", json={"note": "bearing ordered"})
        assert acked.status_code == 200 and acked.json()["acked_by"] == "olga"
        resolved = http.post(f"/api/alerts/{vib.id}/resolve", json={})
        assert resolved.json()["resolved_by"] == "olga"
        made = http.post(
            "/api/maintenance",
            json={"machine": "comp-03", "at": "2026-03-05T16:00:00Z", "note": "bearing"},
        )
        assert made.status_code == 200 and made.json()["by"] == "olga"
        shown = http.get("/api/maintenance", params={"machine": "comp-03"}).json()
        assert [(r["at"], r["by"], r["note"]) for r in shown] == [
            ("2026-03-05T16:00:00Z", "olga", "bearing")
        ]
        history = http.get(f"/api/alerts/{vib.id}").json()["history"]
        assert [(h["event"], h["by"]) for h in history] == [
            ("firing", None), ("acked", "olga"), ("resolved", "olga"),
        ]  # fmt: skip
    rows = influx.query_rows('SELECT "by" FROM maintenance')
    assert [r["by"] for r in rows] == ["olga"]
    # The bearer token acts as its user.
    with httpx.Client(
        base_url=console.url, headers={"Authorization": f"Bearer {console.token}"}
    ) as api:
        assert api.post(f"/api/alerts/{temp.id}/ack", json={}).json()["acked_by"] == "olga"


def test_session_cookie_tokens_and_removed_users(console: Console) -> None:
    with httpx.Client(base_url=console.url) as http:
        answer = http.post("/api/session", json={"user": "olga", "password": PASSWORDS["olga"]})
        cookie = answer.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "path=/" in cookie
    bearer = {"Authorization": f"Bearer {console.token}"}
    assert httpx.get(f"{console.url}/api/alerts", headers=bearer).status_code == 200
    revoke_token(console.users, "olga", console.token_id)  # the server re-reads the file
    assert httpx.get(f"{console.url}/api/alerts", headers=bearer).status_code == 401
    with console.login("vic") as http:
        assert http.get("/api/alerts").status_code == 200
        remove_user(console.users, "vic")
        assert http.get("/api/alerts").status_code == 401  # the session ends with the user


def test_state_changes_only_as_json_from_this_site_and_bodies_are_bounded(
    console: Console,
) -> None:
    vib = console.alerts[0]
    with console.login("olga") as http:
        form = http.post(f"/api/alerts/{vib.id}/ack", data={"note": "x"})
        assert form.status_code == 415 and "JSON" in form.json()["detail"]
        bare = http.post(f"/api/alerts/{vib.id}/resolve")  # no body, no content type
        assert bare.status_code == 415
        assert http.get(f"/api/alerts/{vib.id}/ack").status_code == 405
        cross = http.post(
            f"/api/alerts/{vib.id}/ack", json={}, headers={"Origin": "https://evil.example"}
        )
        assert cross.status_code == 403 and "cross-site" in cross.json()["detail"]
        big = http.post("/api/maintenance", json={"machine": "comp-03", "note": "x" * 70_000})
        assert big.status_code == 413
        chunked = http.post(
            "/api/maintenance",
            content=iter([b'{"machine": "comp-03", "note": "', b"x" * 70_000, b'"}']),
            headers={"Content-Type": "application/json"},
        )
        assert chunked.status_code == 413
    assert console.store.get(vib.id).state == "firing" and not console.store.get(vib.id).acked


def test_no_logins_means_loopback_only(settings: RunhoursSettings, tmp_path: Path) -> None:
    store = AlertStore.in_data_dir(settings.data_dir)
    for host in ("0.0.0.0", "::", "192.0.2.10", "console.example"):
        with pytest.raises(ConsoleError, match="beyond loopback it needs logins"):
            ConsoleServer(store, None, host, free_port())
    # The service refuses the same way, before serving anything.
    env = {
        "RUNHOURS_DATA_DIR": str(tmp_path / "var"),
        "RUNHOURS_MQTT_URL": settings.mqtt_url,
        "RUNHOURS_INFLUX_URL": settings.influx_url,
        "RUNHOURS_INFLUX_DB": settings.influx_db,
        "RUNHOURS_ANALYTICS__HTTP_HOST": "0.0.0.0",
        "PATH": "/usr/bin:/bin",
    }
    result = subprocess.run(
        [sys.executable, "-m", "runhours", "analytics", "--http-port", str(free_port())],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "beyond loopback it needs logins" in " ".join(result.stderr.split())


def test_login_flow_in_headless_chromium(console: Console, tmp_path: Path) -> None:
    vib, _temp = console.alerts
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            first = page.goto(console.url + "/")
            assert first is not None and first.status == 401
            expect(page.locator("#login")).to_be_visible()
            expect(page.locator("#main")).to_be_hidden()

            page.fill("#login-user", "olga")
            page.fill("#login-password", "not-her-password")
            page.click("#login-submit")
            expect(page.locator("#login-error")).to_have_text("wrong user name or password")

            page.fill("#login-user", "vic")
            page.fill("#login-password", PASSWORDS["vic"])
            page.click("#login-submit")
            row = page.locator(f'tr[data-id="{vib.id}"]')
            expect(row).to_be_visible()
            expect(page.locator("#me")).to_have_text("vic (viewer)")
            expect(row.locator("button.ack")).to_be_disabled()  # a viewer cannot act
            expect(page.locator("#who-label")).to_be_hidden()
            page.click("#logout")
            expect(page.locator("#login")).to_be_visible()
            assert httpx.get(f"{console.url}/api/alerts").status_code == 401

            page.fill("#login-user", "olga")
            page.fill("#login-password", PASSWORDS["olga"])
            page.click("#login-submit")
            expect(page.locator("#me")).to_have_text("olga (operator)")
            row.locator("button.ack").click()
            expect(row.locator("td.state")).to_have_text("firing · acked by olga")
            page.screenshot(path=str(tmp_path / "console-login.png"), full_page=True)
            page.check("#all")
            row.locator("button.resolve").click()
            expect(row.locator("td.state")).to_have_text(
                "resolved · acked by olga · resolved by olga"
            )
        finally:
            browser.close()
    alert = console.store.get(vib.id)
    assert (alert.acked_by, alert.resolved_by) == ("olga", "olga")
