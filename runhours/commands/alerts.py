"""`runhours alerts`: replay rules over history, list, acknowledge and resolve alerts."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from runhours.commands._backtest import show_backtest
from runhours.commands._common import ConfigOption, console, fail, load
from runhours.commands._tables import Col, fit_table, number

if TYPE_CHECKING:
    from analytics.alerts.backtest import Failure

app = typer.Typer(
    help="Maintenance and condition alerts: replay rules over history (evaluate), score them "
    "against known failures (backtest), list, acknowledge and resolve alerts, or serve the "
    "HTTP API and alert console. Alert state lives in <data_dir>/alerts.sqlite3; rules in a "
    "TOML file (docs/alerts.md).",
    no_args_is_help=True,
)

RulesOption = Annotated[
    Path | None,
    typer.Option(
        "--rules",
        "-r",
        help="Rules file (TOML, see docs/alerts.md); default: [analytics] rules in the config, "
        "else examples/rules.toml.",
        dir_okay=False,
    ),
]


def _settings(config: Path | None):  # type: ignore[no-untyped-def]
    from analytics.service import AnalyticsSettings

    return load(AnalyticsSettings, config)


def _rules(path: Path):  # type: ignore[no-untyped-def]
    from analytics.alerts import load_rules

    return load_rules(path)


def _time(text: str, what: str) -> datetime:
    from common.times import parse_time

    return parse_time(text, what)


def _fmt(ts: datetime | None) -> str:
    return ts.strftime("%Y-%m-%d %H:%M:%SZ") if ts else ""


def _short(ts: datetime | None) -> str:
    """``11-30 10:42Z`` (UTC): the year is in the JSON and CSV."""
    return ts.strftime("%m-%d %H:%MZ") if ts else ""


SEVERITY = {"critical": "crit", "warning": "warn", "info": "info"}


def _csv(rows: list[dict[str, object]]) -> None:
    import csv
    import io

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    columns = list(rows[0]) if rows else []
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if row[c] is None else row[c] for c in columns])
    typer.echo(out.getvalue(), nl=False)


@app.command()
def evaluate(
    start: Annotated[
        str,
        typer.Option("--from", help="Start: RFC 3339 with a zone (2026-03-02T00:00Z), 'now-7d'."),
    ],
    end: Annotated[str, typer.Option("--to", help="End (exclusive), same forms; e.g. 'now'.")],
    rules: RulesOption = None,
    output: Annotated[
        str, typer.Option("--format", "-f", help="table, json (a list of alerts) or csv.")
    ] = "table",
    config: ConfigOption = None,
) -> None:
    """Replay the rules over stored telemetry between --from and --to.

    Deterministic: the same data and rules give the same alerts (ids included). The
    window is walked in fixed steps of data time (the rules file's `step`, 1 min by
    default, on an epoch-aligned grid); each step sees the samples of the step before
    it. Starts from an empty state, so anomaly baselines need their warm-up inside the
    window. Nothing is stored or sent. JSON output is a list of
    {"id", "rule", "machine", "severity", "started_at", "resolved_at", "value"}.
    """
    from analytics.alerts import replay
    from store import InfluxClient

    if output not in ("table", "json", "csv"):
        fail(f"--format {output!r}: use table, json or csv")
    settings = _settings(config)
    ruleset = _rules(rules or settings.rules_file)
    lo, hi = _time(start, "--from"), _time(end, "--to")
    with InfluxClient.from_settings(settings) as client:
        result = replay(client, ruleset, lo, hi)
    if output == "json":
        print(json.dumps([a.summary_json() for a in result.alerts], indent=2))
        return
    if output == "csv":
        _csv([a.summary_json() for a in result.alerts])
        return
    cols = [
        Col("id"),
        Col("machine"),
        Col("rule"),
        Col("sev", drop=3),
        Col("started", right=True),
        Col("resolved", right=True, drop=2),
        Col("value", right=True),
        Col("summary", figure=False, drop=1),
    ]
    rows = [
        [
            a.id,
            a.machine,
            a.rule,
            SEVERITY.get(a.severity, a.severity),
            _short(a.started_at),
            _short(a.resolved_at),
            number(a.value),
            a.summary,
        ]
        for a in result.alerts
    ]
    console.print(fit_table(console, cols, rows))
    console.print(f"{len(result.alerts)} alerts from {_fmt(result.start)} to {_fmt(result.end)}")


def _seeds(text: str) -> list[int]:
    """``"1-20"``, ``"3,5,9"`` or a mix → the seeds."""
    seeds: list[int] = []
    try:
        for part in text.split(","):
            lo, _, hi = part.strip().partition("-")
            seeds += range(int(lo), int(hi or lo) + 1)
    except ValueError:
        fail(f"--simulate {text!r}: give seeds as 1-20 or 3,5,9")
    if not seeds:
        fail(f"--simulate {text!r}: no seeds")
    return seeds


def _failures(path: Path):  # type: ignore[no-untyped-def]
    """A failures file: the simulator's ground truth (JSON) or CSV machine,failed_at[,onset]."""
    from analytics.alerts.backtest import FailuresError, read_failures_csv
    from runhours.backtest import read_failures_truth

    try:
        if path.suffix.lower() == ".json":
            return read_failures_truth(path)
        return read_failures_csv(path)
    except (FailuresError, OSError, ValueError, KeyError) as exc:
        fail(f"--failures: {exc}")


@app.command()
def backtest(
    start: Annotated[
        str | None,
        typer.Option(
            "--from",
            help="Start: RFC 3339 with a zone, 'now-30d'. With --simulate: the simulated start "
            "(default 2026-03-02T00:00Z, a Monday).",
        ),
    ] = None,
    end: Annotated[
        str | None,
        typer.Option("--to", help="End (exclusive). With --simulate: default --from + 7 days."),
    ] = None,
    rules: RulesOption = None,
    failures: Annotated[
        Path | None,
        typer.Option(
            help="Known failures: a ground-truth JSON file (`runhours simulate` writes one) or "
            "CSV with a header machine,failed_at[,onset]. Without it every alert counts as "
            "a false alarm.",
            dir_okay=False,
        ),
    ] = None,
    simulate: Annotated[
        str | None,
        typer.Option(
            help="Instead of stored data, replay simulated fleets in process, one per seed "
            "(e.g. 1-20): 12 machines, one wearing out with a random wear profile, a sample "
            "a minute; their ground truth gives the failures.",
        ),
    ] = None,
    horizon: Annotated[
        str,
        typer.Option(
            help="Without a known onset, alerts up to this long before a failure warned of it."
        ),
    ] = "7d",
    after: Annotated[
        str,
        typer.Option(
            help="Alerts up to this long after a failure (or until its repair) belong to it."
        ),
    ] = "1d",
    output: Annotated[
        str, typer.Option("--format", "-f", help="table, or json (every warning and alarm).")
    ] = "table",
    config: ConfigOption = None,
) -> None:
    """Score the threshold and anomaly rules against known failures.

    Replays the data through the rules (the same evaluation as `evaluate` and the live
    service, from an empty state) and reports per rule and for the rule set as a whole:
    the lead time of the first alert before each failure (median, minimum), missed
    failures, and false alarms per 100 machine-days of data. An alert is a warning when
    it fires after the wear began (the ground truth's onset, else within --horizon before
    the failure), belongs to the failure while the machine is down and repaired (until
    --after past it), and is a false alarm otherwise. Service-interval and no-data rules
    are not scored (they predict no failure).
    """
    from common.times import TimeError, parse_duration
    from runhours.backtest import BACKTEST_START

    if output not in ("table", "json"):
        fail(f"--format {output!r}: use table or json")
    try:
        window, grace = parse_duration(horizon), parse_duration(after)
    except TimeError as exc:
        fail(f"--horizon/--after: {exc}")
    settings = _settings(config)
    ruleset = _rules(rules or settings.rules_file)
    seeds: list[int] | None = None
    known: list[Failure] = []
    if simulate is not None:
        if failures is not None:
            fail("--failures: not with --simulate (the simulator's ground truth gives them)")
        begin = _time(start, "--from") if start else BACKTEST_START
        stop = _time(end, "--to") if end else begin + timedelta(days=7)
        if stop <= begin:
            fail("--to must be after --from")
        seeds = _seeds(simulate)
    else:
        if start is None or end is None:
            fail("--from and --to are required (or --simulate SEEDS)")
        known = _failures(failures) if failures is not None else []
        begin, stop = _time(start, "--from"), _time(end, "--to")
    show_backtest(
        settings,
        ruleset,
        begin,
        stop,
        seeds=seeds,
        known=known,
        horizon=window,
        after=grace,
        output=output,
    )


@app.command("list")
def list_(
    active: Annotated[bool, typer.Option("--active", help="Only alerts still firing.")] = False,
    machine: Annotated[
        str | None, typer.Option("--machine", "-m", help="Only this machine.")
    ] = None,
    output: Annotated[
        str, typer.Option("--format", "-f", help="table, json or csv (every field).")
    ] = "table",
    limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 200,
    config: ConfigOption = None,
) -> None:
    """List alerts from the analytics service's store (newest first).

    The table shows times in UTC without the year and severity shortened (crit, warn,
    info); columns that do not fit the terminal are left out. JSON and CSV have everything.
    """
    from analytics.alerts import AlertStore

    if output not in ("table", "json", "csv"):
        fail(f"--format {output!r}: use table, json or csv")
    settings = _settings(config)
    alerts = AlertStore.in_data_dir(settings.data_dir).alerts(
        active=True if active else None, machine=machine, limit=limit
    )
    if output == "json":
        print(json.dumps([a.to_json() for a in alerts], indent=2))
        return
    if output == "csv":
        _csv([a.to_json() for a in alerts])
        return
    cols = [
        Col("id"),
        Col("machine"),
        Col("rule"),
        Col("sev"),
        Col("since", right=True),
        Col("value", right=True, drop=3),
        Col("state"),
        Col("acked by", drop=2),
        Col("summary", figure=False, drop=1),
    ]
    rows = [
        [
            a.id,
            a.machine,
            a.rule,
            SEVERITY.get(a.severity, a.severity),
            _short(a.started_at or a.pending_since),
            number(a.last_value if a.last_value is not None else a.value),
            a.state,
            a.acked_by or "",
            a.summary,
        ]
        for a in alerts
    ]
    console.print(fit_table(console, cols, rows))


@app.command()
def ack(
    alert_id: Annotated[
        str, typer.Argument(metavar="ID", help="Alert id (see `runhours alerts list`).")
    ],
    by: Annotated[str, typer.Option("--by", help="Who acknowledges.")],
    note: Annotated[str | None, typer.Option("--note", help="Why, or what is being done.")] = None,
    config: ConfigOption = None,
) -> None:
    """Acknowledge an alert: reminders stop, the alert stays until it clears.

    The acknowledgement is kept across restarts and delivered to the alert's channels.
    """
    from analytics.alerts import AlertStore

    settings = _settings(config)
    alert = AlertStore.in_data_dir(settings.data_dir).ack(alert_id, by, note)
    console.print(f"acknowledged {alert.id} ({alert.rule} on {alert.machine}) by {alert.acked_by}")


@app.command()
def resolve(
    alert_id: Annotated[
        str, typer.Argument(metavar="ID", help="Alert id (see `runhours alerts list`).")
    ],
    by: Annotated[str, typer.Option("--by", help="Who resolves.")] = "operator",
    note: Annotated[str | None, typer.Option("--note", help="What was done.")] = None,
    config: ConfigOption = None,
) -> None:
    """Resolve a firing alert by hand.

    If its condition still holds, a new alert is raised once it has held for the
    rule's `for` again.
    """
    from analytics.alerts import AlertStore

    settings = _settings(config)
    alert = AlertStore.in_data_dir(settings.data_dir).resolve(alert_id, by, note)
    console.print(f"resolved {alert.id} ({alert.rule} on {alert.machine})")


@app.command()
def serve(
    port: Annotated[int, typer.Option("--port", "-p", help="HTTP port.")] = 8642,
    host: Annotated[
        str,
        typer.Option(
            help="Address to listen on; beyond loopback only with console users "
            "([analytics] users_file)."
        ),
    ] = "127.0.0.1",
    config: ConfigOption = None,
) -> None:
    """Serve the HTTP API and the alert console (without evaluating rules).

    Open http://HOST:PORT/ for the console; the API is under /api (docs at /docs). With
    console users (`runhours users add`) every route needs a login (docs/security.md).
    """
    from analytics.alerts import AlertStore
    from analytics.console import ConsoleServer
    from store import InfluxClient

    settings = _settings(config)
    server = ConsoleServer(
        AlertStore.in_data_dir(settings.data_dir),
        InfluxClient.from_settings(settings),
        host,
        port,
        users_file=settings.users_file,
        tls_cert=settings.analytics.tls_cert_file,
        tls_key=settings.analytics.tls_key_file,
    )
    logins = "logins required" if server.authenticated else "no logins: loopback only"
    console.print(f"alert console on {server.url}/ ({logins})")
    server.serve()
