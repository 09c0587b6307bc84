"""`runhours alerts backtest`'s run and its two forms: a table per rule, or JSON."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from rich.table import Column, Table

from runhours.commands._common import console

if TYPE_CHECKING:
    from analytics.alerts.backtest import Failure, Scoreboard
    from analytics.alerts.rules import RuleSet
    from analytics.service import AnalyticsSettings


def _hours(delta: timedelta | None) -> str:
    return "" if delta is None else f"{delta / timedelta(hours=1):.1f} h"


def show_backtest(
    settings: AnalyticsSettings,
    ruleset: RuleSet,
    begin: datetime,
    end: datetime,
    *,
    seeds: list[int] | None,
    known: list[Failure],
    horizon: timedelta,
    after: timedelta,
    output: str,
) -> None:
    """Score ``ruleset`` from ``begin`` to ``end``: over simulated fleets, one per seed of
    ``seeds``, or (None) over the stored data against the ``known`` failures; print the
    scoreboard as a table or (``output`` "json") as JSON."""
    from analytics.alerts.backtest import backtest as run_backtest
    from analytics.alerts.backtest import score
    from runhours.backtest import SimulatedFleet, simulated_runs
    from store import InfluxClient

    board: Scoreboard
    if seeds is not None:
        setup = SimulatedFleet(start=begin, days=(end - begin) / timedelta(days=1))
        runs = simulated_runs(ruleset, seeds, setup)
        board = score(runs, ruleset, horizon=horizon, after=after)
    else:
        with InfluxClient.from_settings(settings) as client:
            board = run_backtest(client, ruleset, begin, end, known, horizon=horizon, after=after)
    if output == "json":
        print(json.dumps(board.to_json(), indent=2))
        return
    console.print(_table(board))
    total = board.rules[-1]
    console.print(
        f"{len(total.warnings)} failures, {total.machine_days:.1f} machine-days, "
        f"{board.runs} run{'s' if board.runs != 1 else ''}"
    )


def _table(board: Scoreboard) -> Table:
    table = Table(
        Column("rule", no_wrap=True),
        "failures",
        "warned",
        "missed",
        "median lead",
        "min lead",
        "false alarms",
        "per 100 machine-days",
    )
    for index, r in enumerate(board.rules):
        if index == len(board.rules) - 1:
            table.add_section()
        rate = r.false_alarm_rate
        table.add_row(
            r.rule,
            str(len(r.warnings)),
            str(len(r.warnings) - r.missed),
            str(r.missed),
            _hours(r.median_lead),
            _hours(r.min_lead),
            str(len(r.false_alarms)),
            "" if rate is None else f"{rate:.2f}",
        )
    return table
