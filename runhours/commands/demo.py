"""`runhours demo`: the whole system on one machine, a simulated plant that runs on live."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer

from edge.config import EdgeSettings
from runhours.commands._common import ConfigOption, fail, load
from runhours.commands._demo import run_demo
from runhours.demo import CONSOLE_PORT, DEMO_ZONE, days_back

app = typer.Typer(
    help="The demo: start a local Mosquitto and InfluxDB (or use the ones configured), "
    "simulate a plant from midnight a week ago up to now through edge agents as fast as "
    "possible, ingest it, and print what arrived against what was produced and the "
    "simulator's ground truth, the week's billing under examples/contracts.toml (also "
    "written as CSV), OEE per machine against the truth, and the alerts examples/rules.toml "
    "raises (stored: the console and `runhours alerts list` show them). Then the plant keeps "
    "running in real time with the analytics service and the alert console (its URL is "
    "printed): a machine's bearing wears fast and raises a live alert within minutes, and "
    "stops wait for their reasons. Ctrl-C or `runhours services down` stops it; the "
    "services keep running after Ctrl-C. With --start it simulates that past span only. "
    "With --secure it runs on `runhours services up --secure`: TLS, one broker identity per "
    "simulated machine, each service with its own least-privilege account, console logins "
    "(docs/security.md).",
)


def _seconds(text: str) -> float:
    from common.times import parse_duration

    try:
        return parse_duration(text).total_seconds()
    except ValueError as exc:
        fail(f"--live-for: {exc}")


@app.callback(invoke_without_command=True)
def demo(
    config: ConfigOption = None,
    machines: Annotated[int, typer.Option(min=1, max=200, help="Fleet size.")] = 12,
    days: Annotated[
        int, typer.Option(min=1, max=31, help="Simulated days before today (or from --start).")
    ] = 7,
    seed: Annotated[int, typer.Option(help="Random seed: same seed, same plant.")] = 1,
    start: Annotated[
        str | None,
        typer.Option(
            help="Simulate --days from this day instead, YYYY-MM-DD (midnight Europe/Berlin), "
            "and do not go live: a reproducible past span."
        ),
    ] = None,
    live: Annotated[
        bool | None,
        typer.Option(
            "--live/--no-live",
            help="After the first phase keep the plant running in real time with the "
            "analytics service and the alert console (default: yes, unless --start).",
        ),
    ] = None,
    live_for: Annotated[
        str | None,
        typer.Option(help="Stop the live phase after this long (e.g. 10m); default: at Ctrl-C."),
    ] = None,
    console_port: Annotated[
        int, typer.Option(help="The alert console's port (a free one if it is taken).")
    ] = CONSOLE_PORT,
    rules: Annotated[
        Path | None,
        typer.Option(help="Alert rules (default: examples/rules.toml).", dir_okay=False),
    ] = None,
    plant: Annotated[
        Path | None,
        typer.Option(
            help="Plant-floor file: shifts, reasons, ideal cycles (default: examples/plant.toml).",
            dir_okay=False,
        ),
    ] = None,
    progress: Annotated[
        bool | None, typer.Option(help="Progress bars (default: on a terminal).")
    ] = None,
    secure: Annotated[
        bool,
        typer.Option(
            "--secure",
            help="Run on the secure local services (started if needed, like `runhours "
            "services up --secure`).",
        ),
    ] = False,
) -> None:
    """Run the demo."""
    settings = load(EdgeSettings, config)
    now = datetime.now(UTC)
    if start is None:
        begin, end = days_back(now, days), now.replace(microsecond=0)
        going_live = True if live is None else live
    else:
        try:
            day = datetime.strptime(start, "%Y-%m-%d")
        except ValueError:
            fail(f"--start: {start!r} is not a date (YYYY-MM-DD)")
        if live:
            fail("--live needs the simulation to reach now: leave out --start")
        begin = day.replace(tzinfo=DEMO_ZONE).astimezone(UTC)
        end, going_live = begin + timedelta(days=days), False
        if end > now:
            fail(f"--start {start} with --days {days} reaches into the future: pick an earlier day")
    run_demo(
        settings,
        begin=begin,
        end=end,
        going_live=going_live,
        machines=machines,
        seed=seed,
        progress=progress,
        rules=rules,
        plant=plant,
        console_port=console_port,
        secure=secure,
        limit=_seconds(live_for) if live_for else None,
    )
