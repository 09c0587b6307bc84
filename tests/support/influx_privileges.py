"""What each service account may do in InfluxDB, checked statement by statement.

One matrix for both ways the accounts are made: ``runhours services up --secure``
(runhours/security/influx.py, tests/runhours/test_security_broker.py) and the Docker deployment's
deploy/influxdb/init-users.sh (tests/runhours/test_deploy_influxdb.py). Every check runs against
a real InfluxDB with authentication on.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from store import InfluxClient, Point
from store.client import InfluxAuthError
from store.schema import ingest_state_database

# Only the admin may do these (InfluxDB 1.x: admin rights are global).
ADMIN_ONLY = (
    "DROP DATABASE {db}",
    "DROP MEASUREMENT telemetry",
    "SHOW USERS",
    "CREATE USER x WITH PASSWORD 'y'",
    "CREATE DATABASE other",
)


def _refused(account: InfluxClient, statement: str | Point) -> None:
    """``statement`` (InfluxQL, or a point to write) is refused: authenticated, not allowed."""
    with pytest.raises(InfluxAuthError, match=rf"user '{account.username}' may not do this \(403"):
        if isinstance(statement, Point):
            account.write([statement])
        else:
            account.query(statement)


def assert_least_privilege(url: str, database: str, password: Callable[[str], str]) -> None:
    """Check every role's rights on ``database`` and on the ingest's state database beside
    it. ``password(role)`` is the role's InfluxDB password. Leaves one telemetry point
    (site ``privileges``) in ``database``."""
    state = ingest_state_database(database)

    def client(user: str, db: str = database) -> InfluxClient:
        return InfluxClient(url, db, username=user, password=password(user))

    point = Point("telemetry", {"site": "privileges", "line": "l", "machine": "m"}, {"x": 1.0}, 1)
    bookkeeping = Point("ingest_sequence", {"site": "privileges", "line": "l", "machine": "m"}, {"seq": 1.0}, 1)  # fmt: skip
    select = "SELECT * FROM telemetry WHERE site = 'privileges'"
    own = "SELECT * FROM ingest_sequence WHERE site = 'privileges'"
    with client("ingest") as ingest, client("ingest", state) as ingest_state:
        ingest.write([point])  # the ingest writes telemetry …
        _refused(ingest, select)  # … and cannot read it back
        # InfluxDB 1.x: WRITE includes DELETE (docs/security.md says so; this keeps it true).
        ingest.query("DELETE FROM telemetry WHERE site = 'privileges'")
        ingest_state.write([bookkeeping])  # its own bookkeeping it writes and reads
        assert len(ingest_state.query_rows(own)) == 1
        for statement in ADMIN_ONLY:
            _refused(ingest, statement.format(db=database))
    with client("analytics") as analytics, client("analytics", state) as analytics_state:
        analytics.write([point])  # reads telemetry, writes rollups, alerts, maintenance
        assert len(analytics.query_rows(select)) == 1
        assert len(analytics_state.query_rows(own)) == 1
        _refused(analytics_state, bookkeeping)
        for statement in ADMIN_ONLY:
            _refused(analytics, statement.format(db=database))
    with client("grafana") as grafana, client("grafana", state) as grafana_state:
        assert len(grafana.query_rows(select)) == 1  # Grafana may read both …
        assert len(grafana_state.query_rows(own)) == 1
        for account in (grafana, grafana_state):  # … and change nothing
            _refused(account, point)
            for statement in ("DELETE FROM telemetry", "DROP SERIES FROM telemetry", *ADMIN_ONLY):
                _refused(account, statement.format(db=database))
    anonymous = InfluxClient(url, database)
    with anonymous, pytest.raises(InfluxAuthError, match="401"):
        anonymous.query("SHOW DATABASES")
