"""The alert console's test kit: the headless Chromium it runs in and a firing alert."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import httpx

from analytics.alerts import Alert, Transition
from analytics.alerts.model import alert_id

CHROMIUM = "/usr/bin/chromium"


CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


SINCE = datetime(2026, 3, 4, 5, 31, tzinfo=UTC)


def firing(rule: str, machine: str, severity: str, value: float, summary: str) -> Transition:
    alert = Alert(
        id=alert_id(rule, machine, SINCE),
        rule=rule,
        rule_kind="threshold",
        machine=machine,
        site="plant1",
        line="line-a",
        severity=severity,  # type: ignore[arg-type]
        state="firing",
        pending_since=SINCE - timedelta(minutes=10),
        started_at=SINCE,
        value=value,
        last_value=value,
        summary=summary,
        notified_at=SINCE,
    )
    return Transition("firing", SINCE, alert)


@contextmanager
def logged_in(url: str, user: str, password: str) -> Iterator[httpx.Client]:
    """A client of the console at ``url`` logged in as ``user`` (a session cookie)."""
    with httpx.Client(base_url=url) as http:
        answer = http.post("/api/session", json={"user": user, "password": password})
        assert answer.status_code == 200, answer.text
        yield http
