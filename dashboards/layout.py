"""What every runhours dashboard shares: tags, time range, links, variables, panel ids."""

from __future__ import annotations

from collections.abc import Iterable

from grafana_foundation_sdk.builders import dashboard as builder
from grafana_foundation_sdk.models import dashboard as model

TAG = "runhours"


def new_dashboard(
    uid: str, title: str, variables: Iterable[builder.QueryVariable] = ()
) -> builder.Dashboard:
    """An empty dashboard with the project's defaults (last 24 h, 1 min refresh)."""
    board = (
        builder.Dashboard(title)
        .uid(uid)
        .tags([TAG])
        .editable()
        .time("now-24h", "now")
        .refresh("1m")
        .timezone("browser")
        .tooltip(model.DashboardCursorSync.CROSSHAIR)
        .link(
            builder.DashboardLink("runhours")
            .type(model.DashboardLinkType.DASHBOARDS)
            .tags([TAG])
            .as_dropdown(True)
            .include_vars(True)
            .keep_time(True)
        )
    )
    for variable in variables:
        board = board.with_variable(variable)
    return board


def number_panels(dashboard: model.Dashboard) -> model.Dashboard:
    """Give every panel a stable id (1, 2, … in layout order), as Grafana expects."""
    next_id = 1
    for panel in dashboard.panels or []:
        panel.id_val = next_id
        next_id += 1
        for child in getattr(panel, "panels", None) or []:
            child.id_val = next_id
            next_id += 1
    return dashboard
