"""Template variables ``$site``, ``$line``, ``$machine`` and the WHERE clause that uses them.

Each variable lists the tag values of ``telemetry``, narrowed by the ones before it.
Queries match them as regexes (``"machine" =~ /^$machine$/``) because that is how
Grafana's InfluxDB data source expands multi-value and "All" selections: it writes the
regex-escaped values as ``(a|b|c)``.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as builder
from grafana_foundation_sdk.models import dashboard as model

from dashboards.influxql import DATASOURCE
from store.influxql import quote_ident
from store.schema import TAG_LINE, TAG_MACHINE, TAG_SITE, TELEMETRY

# Grafana's InfluxDB time-range condition; expanded to `time >= …ms and time <= …ms`.
TIME_FILTER = "$timeFilter"
# Up to the range's end with no start: for state that lasts until something ends it
# (an alert raised days before the range is still active). `${__to}` is epoch ms.
UNTIL_RANGE_END = "time <= ${__to}ms"


def tag_match(tag: str, variable: str | None = None) -> str:
    """``"tag" =~ /^$variable$/`` (the variable is named like the tag by default)."""
    return f"{quote_ident(tag)} =~ /^${variable or tag}$/"


def machine_where(
    *extra: str, site: bool = True, line: bool = True, time: str = TIME_FILTER
) -> str:
    """``WHERE`` over the machine variables, ``extra`` conditions and ``time`` (the
    dashboard's range by default)."""
    parts = [tag_match(TAG_SITE)] if site else []
    if line:
        parts.append(tag_match(TAG_LINE))
    parts += [tag_match(TAG_MACHINE), *extra, time]
    return "WHERE " + " AND ".join(parts)


def _tag_values(tag: str, narrowed_by: tuple[str, ...]) -> str:
    query = f"SHOW TAG VALUES FROM {quote_ident(TELEMETRY)} WITH KEY = {quote_ident(tag)}"
    if narrowed_by:
        query += " WHERE " + " AND ".join(tag_match(t) for t in narrowed_by)
    return query


def tag_variable(
    tag: str,
    label: str,
    narrowed_by: tuple[str, ...] = (),
    *,
    multi: bool = True,
    include_all: bool = True,
) -> builder.QueryVariable:
    """A query variable over the values of ``tag``; "All" selected by default."""
    variable = (
        builder.QueryVariable(tag)
        .label(label)
        .datasource(DATASOURCE)
        .query(_tag_values(tag, narrowed_by))
        .refresh(model.VariableRefresh.ON_DASHBOARD_LOAD)
        .sort(model.VariableSort.ALPHABETICAL_ASC)
        .multi(multi)
        .include_all(include_all)
    )
    if include_all:
        variable = variable.current(model.VariableOption(selected=True, text="All", value="$__all"))
    return variable


def machine_variables(*, all_machines: bool = True) -> list[builder.QueryVariable]:
    """``$site`` → ``$line`` → ``$machine``, each narrowed by the ones before.

    With ``all_machines=False`` the machine list has no "All" entry and Grafana
    preselects the first machine (the detail dashboard); several can still be picked.
    """
    return [
        tag_variable(TAG_SITE, "Site"),
        tag_variable(TAG_LINE, "Line", (TAG_SITE,)),
        tag_variable(TAG_MACHINE, "Machine", (TAG_SITE, TAG_LINE), include_all=all_machines),
    ]
