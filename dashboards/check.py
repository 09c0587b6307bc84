"""Run every query of the dashboards against a real InfluxDB, as Grafana would.

``runhours dashboards check`` uses this after a deployment (or a demo run) to prove
that each panel returns data and names only measurements, fields and tags that exist;
the tests use it against a simulated fleet.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from dashboards.macros import Variable, expand, grafana_interval, panel_range
from store import InfluxClient, InfluxError
from store.influxql import quote_ident
from store.schema import TAG_LINE, TAG_MACHINE, TAG_SITE, TELEMETRY


@dataclass(frozen=True)
class DashboardQuery:
    """One InfluxQL query of a dashboard and where it sits."""

    dashboard: str
    where: str  # "panel 'Title' A", "annotation 'Alerts'", "variable machine"
    query: str
    min_interval: str | None = None
    time_from: str | None = None


@dataclass
class QueryOutcome:
    query: DashboardQuery
    expanded: str
    rows: int = 0
    error: str | None = None
    unknown_names: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None and not self.unknown_names and self.rows > 0


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def dashboard_queries(name: str, board: Mapping[str, Any]) -> list[DashboardQuery]:
    """Every query of a dashboard's JSON: panel targets, annotations, variables."""
    found = []
    for panel in _panels(board.get("panels", [])):
        for target in panel.get("targets", []):
            found.append(
                DashboardQuery(
                    name,
                    f"panel {panel.get('title')!r} {target.get('refId', '')}".rstrip(),
                    target["query"],
                    panel.get("interval"),
                    panel.get("timeFrom"),
                )
            )
    for annotation in board.get("annotations", {}).get("list", []):
        if annotation.get("query"):
            found.append(
                DashboardQuery(name, f"annotation {annotation['name']!r}", annotation["query"])
            )
    for variable in board.get("templating", {}).get("list", []):
        if isinstance(variable.get("query"), str) and variable["query"]:
            found.append(DashboardQuery(name, f"variable {variable['name']}", variable["query"]))
    return found


_FROM = re.compile(r'\bFROM\s+"((?:[^"\\]|\\.)+)"', re.IGNORECASE)
_IDENT = re.compile(r'"((?:[^"\\]|\\.)+)"')
_ALIAS = re.compile(r'\bAS\s+"((?:[^"\\]|\\.)+)"', re.IGNORECASE)


def referenced_names(query: str) -> tuple[set[str], set[str]]:
    """(measurements after FROM, other double-quoted identifiers that are not only aliases).

    A name that appears only after ``AS`` is an output column we made up; one that also
    appears elsewhere (``last("online") AS "online"``) must exist in the database.
    """
    measurements = set(_FROM.findall(query))
    uses = Counter(_IDENT.findall(query))
    uses.subtract(_ALIAS.findall(query))
    idents = {name for name, n in uses.items() if n > 0} - measurements
    return measurements, idents


class SchemaCatalog:
    """Measurements, field keys and tag keys that exist in a database (cached)."""

    def __init__(self, client: InfluxClient) -> None:
        self.client = client
        self._keys: dict[str, set[str]] = {}
        rows = client.query_rows("SHOW MEASUREMENTS")
        self.measurements = {str(row["name"]) for row in rows}

    def keys(self, measurement: str) -> set[str]:
        if measurement not in self._keys:
            m = quote_ident(measurement)
            fields = self.client.query_rows(f"SHOW FIELD KEYS FROM {m}")
            tags = self.client.query_rows(f"SHOW TAG KEYS FROM {m}")
            self._keys[measurement] = {str(r["fieldKey"]) for r in fields} | {
                str(r["tagKey"]) for r in tags
            }
        return self._keys[measurement]

    def unknown(self, query: str) -> list[str]:
        """Names the query uses that the database does not have.

        In ``SELECT … FROM (subquery)`` the outer names refer to the subquery's columns:
        its aliases, and the fields and tags of the measurements it reads.
        """
        outer, inner = split_subquery(query)
        if inner is not None:
            missing = self.unknown(inner)
            measurements = set(_FROM.findall(inner)) & self.measurements
            columns = set(_ALIAS.findall(inner)).union(*(self.keys(m) for m in measurements))
            _, idents = referenced_names(outer)
            return missing + sorted(f"column {i!r}" for i in idents - columns)
        measurements, idents = referenced_names(query)
        missing = sorted(f"measurement {m!r}" for m in measurements - self.measurements)
        known = set().union(*(self.keys(m) for m in measurements & self.measurements))
        if measurements and not missing:  # fields of an unknown measurement: moot
            missing += sorted(f"field or tag {i!r}" for i in idents - known)
        return missing


def split_subquery(query: str) -> tuple[str, str | None]:
    """(the query with its ``FROM (…)`` emptied, the subquery), or (query, None)."""
    match = re.search(r"\bFROM\s*\(", query, re.IGNORECASE)
    if not match:
        return query, None
    start = match.end() - 1
    depth = 0
    for i in range(start, len(query)):
        depth += {"(": 1, ")": -1}.get(query[i], 0)
        if depth == 0:
            return query[:start] + "()" + query[i + 1 :], query[start + 1 : i]
    raise ValueError(f"unbalanced parentheses in {query!r}")


def run_query(
    client: InfluxClient,
    catalog: SchemaCatalog,
    query: DashboardQuery,
    *,
    start: datetime,
    end: datetime,
    variables: Mapping[str, Variable],
) -> QueryOutcome:
    """Expand one query for [start, end] and run it; count the rows it returns."""
    q_start, q_end = panel_range(query.time_from, start, end)
    interval = grafana_interval(q_start, q_end, min_interval=query.min_interval)
    text = expand(query.query, start=q_start, end=q_end, interval=interval, variables=variables)
    outcome = QueryOutcome(query, text, unknown_names=catalog.unknown(text))
    try:
        series = client.query_series(text)
    except InfluxError as exc:
        outcome.error = str(exc)
        return outcome
    # A null-only series (an empty bucket grid) is no data either.
    outcome.rows = sum(1 for s in series for row in s.values if any(v is not None for v in row[1:]))
    return outcome


def tag_values(client: InfluxClient, measurement: str, tag: str) -> list[str]:
    rows = client.query_rows(
        f"SHOW TAG VALUES FROM {quote_ident(measurement)} WITH KEY = {quote_ident(tag)}"
    )
    return sorted(str(row["value"]) for row in rows)


def default_variables(client: InfluxClient) -> dict[str, Variable]:
    """``$site``, ``$line``, ``$machine`` with "All" selected (every value in telemetry)."""
    return {
        tag: Variable(tuple(tag_values(client, TELEMETRY, tag)))
        for tag in (TAG_SITE, TAG_LINE, TAG_MACHINE)
    }


def check_all(
    client: InfluxClient,
    boards: Mapping[str, Mapping[str, Any]],
    *,
    start: datetime,
    end: datetime,
    variables: Mapping[str, Variable] | None = None,
) -> list[QueryOutcome]:
    """Run every query of ``boards`` (name → dashboard JSON) for [start, end]."""
    catalog = SchemaCatalog(client)
    variables = default_variables(client) if variables is None else variables
    return [
        run_query(client, catalog, query, start=start, end=end, variables=variables)
        for name, board in boards.items()
        for query in dashboard_queries(name, board)
    ]


def panel_failures(outcomes: list[QueryOutcome]) -> list[str]:
    """Why panels fail: an error or unknown name in any query, or no rows from any."""
    problems = []
    by_place: dict[tuple[str, str], list[QueryOutcome]] = {}
    for outcome in outcomes:
        # A panel's targets count together: "panel 'Title' A" and "… B" are one place.
        where = outcome.query.where
        place = where[: where.rfind("'") + 1] if where.startswith("panel ") else where
        by_place.setdefault((outcome.query.dashboard, place), []).append(outcome)
        if outcome.error:
            problems.append(f"{outcome.query.dashboard}: {outcome.query.where}: {outcome.error}")
        if outcome.unknown_names:
            problems.append(
                f"{outcome.query.dashboard}: {outcome.query.where}: unknown "
                + ", ".join(outcome.unknown_names)
            )
    for (dashboard, place), group in by_place.items():
        if all(o.rows == 0 for o in group) and not any(o.error for o in group):
            problems.append(f"{dashboard}: {place}: no data")
    return problems
