"""`runhours dashboards build|check`: Grafana dashboards as code."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer

from analytics.billing.contracts import load_contracts
from common.settings import RunhoursSettings
from dashboards import GENERATED_DIR, ContractView, build_all, render, write_all
from dashboards.check import check_all, panel_failures
from runhours.commands._common import ConfigOption, console, load
from runhours.commands._tables import Col, fit_table
from runhours.report import parse_time
from store import InfluxClient

app = typer.Typer(
    help="Grafana dashboards as code: build the provisioned JSON, check every query.",
    no_args_is_help=True,
)

ContractsOption = Annotated[
    Path | None,
    typer.Option(
        "--contracts",
        help="Contracts TOML (the billing format, e.g. examples/contracts.toml): adds "
        "per-contract panels (billable hours per day, progress against the minimum) to the "
        "usage dashboard. Without it the dashboards depend on code alone.",
        dir_okay=False,
    ),
]


def contract_views(path: Path | None) -> list[ContractView]:
    """The contracts of ``path`` as the usage dashboard sees them, in file order.

    The file is read by the billing engine's reader, so a file billing refuses makes no
    dashboards either.
    """
    if path is None:
        return []
    return [
        ContractView(
            id=contract.id,
            machines=tuple(sorted({machine.id for machine in contract.machine})),
            billable_states=tuple(contract.billable_states),
            minimum_hours=contract.minimum_hours,
            timezone=contract.timezone,
            period=contract.period,
            method=contract.method,
        )
        for contract in load_contracts(path, outcome="no dashboards were written")
    ]


def _boards(contracts: Path | None) -> dict[str, str]:
    return {name: render(board) for name, board in build_all(contract_views(contracts)).items()}


@app.command()
def build(
    out: Annotated[
        Path,
        typer.Option(help="Folder for the JSON files (Grafana's dashboard provider reads it)."),
    ] = GENERATED_DIR,
    contracts: ContractsOption = None,
) -> None:
    """Write every dashboard as JSON, byte for byte the same for the same code.

    The files in dashboards/generated/ (built without --contracts) are committed; a test
    fails when they are stale, so run this after changing anything under dashboards/. A
    deployment with contracts builds its own copy: --contracts FILE --out DIR.
    """
    paths = write_all(out, contract_views(contracts))
    for path in paths:
        console.print(f"wrote {path}")


@app.command()
def check(
    config: ConfigOption = None,
    since: Annotated[
        str, typer.Option("--from", help="Start: RFC 3339 time or date (default: 24 h ago).")
    ] = "",
    until: Annotated[
        str, typer.Option("--to", help="End: RFC 3339 time or date (default: now).")
    ] = "",
    contracts: ContractsOption = None,
) -> None:
    """Run every panel's query against InfluxDB the way Grafana would, with "All" selected.

    Exit 1 when a panel returns no data, a query fails, or a query names a measurement,
    field or tag the database does not have. Use it after a deployment or a demo run.
    """
    settings = load(RunhoursSettings, config)
    end = parse_time(until) if until else datetime.now(UTC)
    start = parse_time(since) if since else end - timedelta(hours=24)
    boards = {name: json.loads(text) for name, text in _boards(contracts).items()}
    client = InfluxClient.from_settings(settings)
    with client:
        outcomes = check_all(client, boards, start=start, end=end)
    rows = [
        [
            outcome.query.dashboard.removesuffix(".json"),
            outcome.query.where,
            f"{outcome.rows:,}",
            outcome.error
            or ", ".join(outcome.unknown_names)
            or ("" if outcome.rows else "no data"),
        ]
        for outcome in outcomes
    ]
    cols = [
        Col("dashboard", figure=False),
        Col("query", figure=False),
        Col("rows", right=True),
        Col("problem", figure=False),
    ]
    console.print(fit_table(console, cols, rows))
    problems = panel_failures(outcomes)
    for problem in problems:
        console.print(f"[red]{problem}[/]", highlight=False)
    if problems:
        raise typer.Exit(1)
    console.print(f"all {len(outcomes)} queries answered with data")
