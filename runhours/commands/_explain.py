"""`runhours billing explain`'s run and its table form (the JSON form is
analytics.billing.explain)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Group, RenderableType
from rich.text import Text

from analytics.billing.explain import Explanation, explain_line, explanation_json
from analytics.rollups import default_state_file, refresh_rollups
from runhours.commands._common import console, fail
from runhours.commands._tables import Col, fit_table
from store import InfluxClient
from wire import STATES

if TYPE_CHECKING:
    from analytics.billing import Contract
    from analytics.periods import Period
    from common.settings import RunhoursSettings

_SHORT = {"off": "off", "idle": "idle", "running": "run", "fault": "fault", "maintenance": "maint"}


def show_explanation(
    settings: RunhoursSettings,
    contract: Contract,
    span: Period,
    machine: str,
    *,
    output: str,
    from_raw: bool,
) -> None:
    """Explain ``machine``'s lines of ``contract``'s statement for ``span`` (from the rollups,
    refreshed first, or with ``from_raw`` from raw samples), printed as a table or (``output``
    "json") as JSON; exit 1 if the days do not add up to the statement line."""
    with InfluxClient.from_settings(settings) as client:
        if not from_raw:
            refresh_rollups(client, state_file=default_state_file(settings.data_dir))
        explanation = explain_line(client, contract, span, machine, from_raw=from_raw)
    if output == "json":
        text = json.dumps(explanation_json(explanation), indent=2, ensure_ascii=False)
        typer.echo(text)
    else:
        console.print(render_explanation(explanation), highlight=False, soft_wrap=True)
    different = [c.figure for c in explanation.checks if not c.equal]
    if different:
        fail(
            f"the raw samples and the statement differ in {', '.join(different)}: the rollups "
            "are stale; run `runhours billing rebuild-rollups` for the period",
            code=1,
        )


def _hours(seconds: str) -> str:
    """For the eye only: the JSON form has the exact figures."""
    return f"{float(seconds) / 3600:.2f}"


def _day(start: str, end: str) -> str:
    """``10-25 (25 h)``: the local day, and its length when it is not 24 h (DST, a window)."""
    length = (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()
    hours = length / 3600
    clock = "" if start[11:16] == "00:00" else f" {start[11:16]}"
    return start[5:10] + clock + ("" if hours == 24 else f" ({hours:g} h)")


def _band(key: str) -> str:
    """``0-100`` → ``hours 0-100``, ``200-`` → ``hours above 200``, ``0-`` → ``all hours``."""
    lo, hi = key.removesuffix("*over").split("-")
    if not hi:
        return "all hours" if lo == "0" else f"hours above {lo}"
    return f"hours {lo}-{hi}"


def render_explanation(x: Explanation) -> RenderableType:
    """Days, gaps, anomalies, the way from milliseconds to money, the raw data, the checks."""
    data: dict[str, Any] = explanation_json(x)
    name = data["machine"]
    key = f"{data['site']}/{name.split('/')[-1]}" if data["site"] else name
    head = Text(
        f"{data['contract_id']} ({data['customer']}) · {name}"
        + ("" if key == name else f" = {key}")
        + f" · {data['period_start']} – {data['period_end']}\n"
        f"metered by {data['method']}"
        + (
            f" (billable states: {', '.join(data['billable_states'])})"
            if data["method"] == "state"
            else ""
        )
        + "; under contract "
        + ", ".join(f"{w['start']} – {w['end']}" for w in data["windows"])
    )
    states = [s for s in STATES if any(float(d["state_seconds"][s]) for d in data["days"])]
    cols = [
        Col("day"),
        *(Col(_SHORT[s], right=True) for s in states),
        Col("bill", right=True),
        Col("unkn", right=True),
        Col("gaps", right=True, drop=2),
        Col("meter", right=True, drop=3),
        Col("samples", right=True, drop=1),
    ]
    rows = [
        [
            _day(d["start"], d["end"]),
            *(_hours(d["state_seconds"][s]) for s in states),
            _hours(d["billable_seconds"]),
            _hours(d["unknown_seconds"]),
            str(len(d["gaps"])),
            "" if d["counter_seconds"] is None else _hours(d["counter_seconds"]),
            f"{d['raw_samples']:,}",
        ]
        for d in data["days"]
    ]
    days = fit_table(console, cols, rows, title="hours per local day")
    parts: list[RenderableType] = [head, days]
    if data["gaps"]:
        parts.append(
            Text(
                "gaps (unknown time, never billed):\n"
                + "\n".join(
                    f"  {g['start']} – {g['end']}  ({g['seconds']} s)" for g in data["gaps"]
                )
            )
        )
    if data["counter_anomalies"]:
        parts.append(
            Text(
                "hour-meter anomalies:\n"
                + "\n".join(
                    f"  {e['at']} {e['kind']}: {e['before_seconds']} s → {e['after_seconds']} s, "
                    f"billed {e['billed_seconds']} s"
                    for e in data["counter_anomalies"]
                )
            )
        )
    metered, rounding = data["metered"], data["rounding"]
    money = [
        f"metered: {metered['milliseconds']} ms = {metered['hours']} h",
        f"rounded to {rounding['increment_hours']} h ({rounding['mode']}): "
        f"{rounding['billable_hours']} h billable",
        *(
            f"  {_band(b['band'])}{' (over-use)' if b['overuse'] else ''}: {b['billable_hours']} h "
            f"× {b['rate']} = {b['amount']} {data['currency']}"
            for b in data["bands"]
        ),
    ]
    true_up = data["true_up"]
    if true_up is not None:
        line = true_up["line"]
        prorated = (
            f", prorated {true_up['proration']} {true_up['days_covered']}/{true_up['days']} days"
            if true_up["proration"] != "none"
            else ""
        )
        money.append(
            f"minimum {true_up['minimum_hours']} h per contract{prorated}: {true_up['applies_hours']} h "
            f"apply; the contract's machines bill {true_up['contract_billable_hours']} h → "
            + (
                "no true-up"
                if line is None
                else f"true-up {line['billable_hours']} h × {line['rate']} = {line['amount']} (its own line)"
            )
        )
    parts.append(Text("\n".join(money)))
    raw = data["raw_data"]
    before = raw["counter_before"]
    parts.append(
        Text(
            f"raw data: {raw['measurement']} WHERE {raw['where']}: {raw['samples']} samples in the "
            f"windows ({raw['first_sample']} – {raw['last_sample']} read, with the samples around "
            f"them), {raw['counter_readings']} meter readings"
            + (
                ""
                if before is None
                else f"; the reading before: {before['seconds']} s at {before['at']}"
            )
        )
    )
    checks = "\n".join(
        f"  {'✓' if c['equal'] else '✗'} {c['figure']}: {c['explained']}"
        + ("" if c["equal"] else f" ≠ statement {c['statement']}")
        for c in data["checks"]
    )
    parts.append(Text(f"the days add up to the statement line:\n{checks}"))
    return Group(*parts)
