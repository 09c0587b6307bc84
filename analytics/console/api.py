"""The HTTP API: list, acknowledge and resolve alerts; record maintenance.

=====================================  ===============================================
``GET  /``                             the alert console (one HTML page)
``GET  /api/alerts?active=&machine=``  alerts, newest first
``GET  /api/alerts/{id}``              one alert and its history
``POST /api/alerts/{id}/ack``          ``{"by": "…", "note": "…"}``
``POST /api/alerts/{id}/resolve``      ``{"by": "…", "note": "…"}`` (both optional)
``POST /api/maintenance``              ``{"machine", "kind", "at", "note", "by"}``
=====================================  ===============================================

Errors answer ``{"detail": "what was wrong and how to fix it"}`` with 404 (unknown
alert or machine), 409 (already acknowledged or resolved), 422 (invalid body) or 503
(InfluxDB unreachable).
"""

from __future__ import annotations

from datetime import datetime
from importlib import resources
from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Query
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field, StringConstraints

from analytics.alerts.maintenance import MaintenanceError, record_maintenance
from analytics.alerts.store import AlertError, AlertNotFound, AlertStore
from store import InfluxClient, InfluxError

# A name: surrounding blanks are dropped, and a blank name is bad input (422).
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]


class AckBody(BaseModel):
    by: Name = Field(description="who acknowledges")
    note: str | None = Field(default=None, max_length=2000)


class ResolveBody(BaseModel):
    by: Name = "operator"
    note: str | None = Field(default=None, max_length=2000)


class MaintenanceBody(BaseModel):
    machine: str
    kind: str = "service"
    at: datetime | None = Field(default=None, description="RFC 3339 with a zone; default now")
    note: str = ""
    by: str = ""


def _console_html() -> str:
    return (
        resources.files("analytics.console")
        .joinpath("static/console.html")
        .read_text(encoding="utf-8")
    )


def create_app(store: AlertStore, influx: InfluxClient | None = None) -> FastAPI:
    """The API over ``store``; maintenance records need ``influx``."""
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
    def ack(alert_id: str, body: AckBody) -> dict[str, Any]:
        try:
            return store.ack(alert_id, body.by, body.note).to_json()
        except AlertError as exc:
            raise conflict(exc) from None

    @app.post("/api/alerts/{alert_id}/resolve")
    def resolve(alert_id: str, body: ResolveBody | None = None) -> dict[str, Any]:
        body = body or ResolveBody()
        try:
            return store.resolve(alert_id, body.by, body.note).to_json()
        except AlertError as exc:
            raise conflict(exc) from None

    @app.post("/api/maintenance")
    def maintenance(body: MaintenanceBody) -> dict[str, str]:
        if influx is None:
            raise HTTPException(
                503, "this server has no InfluxDB connection for maintenance records"
            )
        if body.at is not None and body.at.tzinfo is None:
            raise HTTPException(422, "at: add a time zone, e.g. 2026-03-02T08:00:00Z")
        try:
            record = record_maintenance(
                influx, body.machine, body.kind, body.at, body.note, body.by
            )
        except MaintenanceError as exc:
            raise HTTPException(404 if str(exc).startswith("machine") else 422, str(exc)) from None
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
        except InfluxError as exc:
            raise HTTPException(503, f"InfluxDB: {exc}; try again once it is back") from None
        return record.to_json()

    return app
