"""The HTTP API: list, acknowledge and resolve alerts; record maintenance; log in.

=====================================  ===============================================
``GET  /``                             the alert console (one HTML page)
``POST /api/session``                  log in: ``{"user", "password"}`` → session cookie
``GET  /api/session``                  who is logged in (``{"user", "role"}``)
``DELETE /api/session``                log out
``GET  /api/alerts?active=&machine=``  alerts, newest first
``GET  /api/alerts/{id}``              one alert and its history (who did what, when)
``POST /api/alerts/{id}/ack``          ``{"note": "…"}`` (operator)
``POST /api/alerts/{id}/resolve``      ``{"note": "…"}`` (operator)
``GET  /api/maintenance?machine=``     maintenance records, newest first, with who made them
``POST /api/maintenance``              ``{"machine", "kind", "at", "note"}`` (operator)
``GET  /api/downtime/reasons``         the reasons operators pick from (the plant file)
``GET  /api/downtime/stops?hours=&…``  stops of the last ``hours`` (24), newest first;
                                       ``unassigned=true``, ``machine=site/machine``
``POST /api/downtime/assign``          ``{"machine", "start", "reason", "note"}`` (operator);
                                       ``reason`` null takes a reason away
=====================================  ===============================================

With authentication (a users file; see ``analytics.console.auth``), every route but
logging in needs a session or a bearer token, changes need the operator role, and the
acting user is recorded as ``by`` (the audit trail); a ``by`` in the body must name that
user. Without authentication (loopback only) ``by`` comes from the body as given.

Errors answer ``{"detail": "what was wrong and how to fix it"}`` with 401 (not logged
in), 403 (a viewer, or a cross-site request), 404 (unknown alert, machine or stop), 409
(already acknowledged or resolved), 413 (body too large), 415 (not JSON), 422 (invalid
body) or 503 (InfluxDB unreachable).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Query, Request, Response
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field, StringConstraints

from analytics.alerts.history import AlertError, AlertNotFound
from analytics.alerts.maintenance import (
    MaintenanceError,
    maintenance_records,
    record_maintenance,
)
from analytics.alerts.store import AlertStore
from analytics.console.auth import Authenticator, Principal
from analytics.console.guard import SESSION_COOKIE, Guard, session_id
from analytics.downtime import DowntimeError, DowntimeStore, assign, listed_stops
from analytics.floor import floor_runs
from analytics.floor_points import write_run_of
from analytics.machines import MachineError, MachineKey, parse_machine
from analytics.plant import Plant
from store import InfluxClient, InfluxError

# A name: surrounding blanks are dropped, and a blank name is bad input (422).
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Note = Annotated[str, Field(max_length=2000)]


class AckBody(BaseModel):
    by: Name | None = Field(default=None, description="who acknowledges (default: you)")
    note: Note | None = None


class ResolveBody(BaseModel):
    by: Name | None = None
    note: Note | None = None


class MaintenanceBody(BaseModel):
    machine: Annotated[str, Field(max_length=64)]
    kind: Annotated[str, Field(max_length=64)] = "service"
    at: datetime | None = Field(default=None, description="RFC 3339 with a zone; default now")
    note: Note = ""
    by: Annotated[str, Field(max_length=100)] = ""


class AssignBody(BaseModel):
    machine: Annotated[str, Field(max_length=130, description="site/machine")]
    start: datetime = Field(description="the stop's start (RFC 3339 with a zone)")
    reason: Annotated[str, Field(max_length=32)] | None = Field(
        description="a reason code of the plant file; null takes the reason away"
    )
    note: Note = ""
    by: Name | None = None


class LoginBody(BaseModel):
    user: Annotated[str, Field(min_length=1, max_length=64)]
    password: Annotated[str, Field(min_length=1, max_length=1024)]


def _console_html() -> str:
    return (
        resources.files("analytics.console")
        .joinpath("static/console.html")
        .read_text(encoding="utf-8")
    )


def _actor(request: Request, given: str | None, default: str | None) -> str | None:
    """Who acts: the logged-in user (a different ``by`` is refused), else ``given``."""
    principal: Principal | None = request.state.principal
    if principal is None:
        return given if given is not None else default
    if given not in (None, "", principal.name):
        raise HTTPException(
            422, f"by: you are logged in as {principal.name}; omit by (it is recorded for you)"
        )
    return principal.name


def create_app(
    store: AlertStore,
    influx: InfluxClient | None = None,
    auth: Authenticator | None = None,
    *,
    secure_cookie: bool = False,
    plant: Plant | None = None,
    downtime: DowntimeStore | None = None,
) -> Guard:
    """The API over ``store``; maintenance records need ``influx``; stops and their reasons
    need ``influx``, ``plant`` and ``downtime``; ``auth`` turns on logins (see the module
    docstring). ``secure_cookie``: the session cookie is sent over HTTPS only."""
    app = FastAPI(
        title="runhours alerts",
        description="Maintenance and condition alerts: list, acknowledge, resolve; record maintenance.",
        version="1",
    )
    page = _console_html()

    def conflict(exc: AlertError) -> HTTPException:
        status = 404 if isinstance(exc, AlertNotFound) else 409
        return HTTPException(status, str(exc))

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def console() -> str:
        return page

    @app.post("/api/session")
    def login(body: LoginBody, response: Response) -> dict[str, str]:
        if auth is None:
            raise HTTPException(404, "this server has no logins (authentication is off)")
        principal = auth.check_password(body.user, body.password)
        if principal is None:
            raise HTTPException(401, "wrong user name or password")
        response.set_cookie(
            SESSION_COOKIE,
            auth.open_session(principal),
            max_age=int(auth.session_seconds),
            httponly=True,
            samesite="strict",
            secure=secure_cookie,
            path="/",
        )
        return {"user": principal.name, "role": principal.role}

    @app.get("/api/session")
    def whoami(request: Request) -> dict[str, str | None]:
        principal: Principal | None = request.state.principal
        if principal is None:
            return {"user": None, "role": "operator"}  # no authentication: all may act
        return {"user": principal.name, "role": principal.role}

    @app.delete("/api/session")
    def logout(request: Request, response: Response) -> dict[str, str]:
        session = session_id({"cookie": request.headers.get("cookie", "")})
        if auth is not None and session:
            auth.close_session(session)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return {"detail": "logged out"}

    @app.get("/api/alerts")
    def list_alerts(
        active: bool | None = Query(
            default=None, description="true: firing only; false: resolved only"
        ),
        machine: str | None = Query(default=None),
        limit: int = Query(default=500, ge=1, le=10000),
    ) -> list[dict[str, Any]]:
        return [a.to_json() for a in store.alerts(active=active, machine=machine, limit=limit)]

    @app.get("/api/alerts/{alert_id}")
    def get_alert(alert_id: str) -> dict[str, Any]:
        try:
            alert = store.get(alert_id)
        except AlertError as exc:
            raise conflict(exc) from None
        return {**alert.to_json(), "history": store.history(alert_id)}

    @app.post("/api/alerts/{alert_id}/ack")
    def ack(alert_id: str, body: AckBody, request: Request) -> dict[str, Any]:
        by = _actor(request, body.by, None)
        if by is None:
            raise HTTPException(422, "by: say who acknowledges (a name or initials)")
        try:
            return store.ack(alert_id, by, body.note).to_json()
        except AlertError as exc:
            raise conflict(exc) from None

    @app.post("/api/alerts/{alert_id}/resolve")
    def resolve(alert_id: str, request: Request, body: ResolveBody | None = None) -> dict[str, Any]:
        body = body or ResolveBody()
        by = _actor(request, body.by, "operator") or "operator"
        try:
            return store.resolve(alert_id, by, body.note).to_json()
        except AlertError as exc:
            raise conflict(exc) from None

    def need_influx() -> InfluxClient:
        if influx is None:
            raise HTTPException(
                503, "this server has no InfluxDB connection for maintenance records"
            )
        return influx

    @app.get("/api/maintenance")
    def list_maintenance(
        machine: str | None = Query(default=None), limit: int = Query(default=100, ge=1, le=10000)
    ) -> list[dict[str, str]]:
        client = need_influx()
        try:
            records = maintenance_records(
                client, datetime.now(UTC) + timedelta(days=1), {machine} if machine else None
            )
        except InfluxError as exc:
            raise HTTPException(503, f"InfluxDB: {exc}; try again once it is back") from None
        return [r.to_json() for r in reversed(records[-limit:])]

    @app.post("/api/maintenance")
    def maintenance(body: MaintenanceBody, request: Request) -> dict[str, str]:
        client = need_influx()
        if body.at is not None and body.at.tzinfo is None:
            raise HTTPException(422, "at: add a time zone, e.g. 2026-03-02T08:00:00Z")
        by = _actor(request, body.by, "") or ""
        try:
            record = record_maintenance(client, body.machine, body.kind, body.at, body.note, by)
        except MaintenanceError as exc:
            raise HTTPException(404 if str(exc).startswith("machine") else 422, str(exc)) from None
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
        except InfluxError as exc:
            raise HTTPException(503, f"InfluxDB: {exc}; try again once it is back") from None
        return record.to_json()

    def need_floor() -> tuple[InfluxClient, Plant, DowntimeStore]:
        if influx is None or plant is None or downtime is None:
            raise HTTPException(
                503, "this server has no plant-floor file or InfluxDB connection for stops"
            )
        return influx, plant, downtime

    @app.get("/api/downtime/reasons")
    def reasons() -> list[dict[str, str]]:
        _, known, _ = need_floor()
        return [
            {"code": r.code, "label": r.label, "category": r.category}
            for r in known.reasons.values()
        ]

    @app.get("/api/downtime/stops")
    def stops(
        hours: float = Query(default=24, gt=0, le=24 * 31),
        unassigned: bool = Query(default=False, description="only stops without a reason"),
        machine: str | None = Query(default=None, description="site/machine"),
    ) -> list[dict[str, Any]]:
        client, known, given = need_floor()
        now = datetime.now(UTC)
        try:
            floors = floor_runs(
                client, known, [machine] if machine else None, now - timedelta(hours=hours), now
            )
        except MachineError as exc:
            raise HTTPException(422, f"machine: {exc}") from None
        except InfluxError as exc:
            raise HTTPException(503, f"InfluxDB: {exc}; try again once it is back") from None
        found = listed_stops(floors, given)
        if unassigned:
            found = [s for s in found if s.assignment is None]
        return [s.to_json(known) for s in reversed(found)]

    @app.post("/api/downtime/assign")
    def assign_reason(body: AssignBody, request: Request) -> dict[str, Any]:
        client, known, given = need_floor()
        if body.start.tzinfo is None:
            raise HTTPException(422, "start: add a time zone, e.g. 2026-03-02T08:00:00Z")
        by = _actor(request, body.by, None)
        if not by:
            raise HTTPException(422, "by: say who gives the reason (a name or initials)")
        try:
            site, machine_id = parse_machine(body.machine)
            if site is None:
                raise MachineError(f"{body.machine!r}: write site/machine (e.g. plant1/cnc-01)")
            key = MachineKey(site, machine_id)
            stop, made = assign(
                client, given, known, key, body.start, body.reason, by=by, note=body.note
            )
            write_run_of(client, known, given, key, body.start)
        except MachineError as exc:
            raise HTTPException(422, f"machine: {exc}") from None
        except DowntimeError as exc:
            status = 404 if str(exc).startswith("no stop") else 422
            raise HTTPException(status, str(exc)) from None
        except InfluxError as exc:
            raise HTTPException(503, f"InfluxDB: {exc}; try again once it is back") from None
        return {
            "machine": str(key),
            "start": body.start.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "seconds": stop.ms / 1000,
            "reason": made.reason if made else None,
            "by": by,
            "at": made.at.isoformat().replace("+00:00", "Z") if made else None,
        }

    return Guard(app, auth, lambda: page.encode())
