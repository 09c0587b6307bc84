"""`runhours ingest`: run the MQTT → InfluxDB ingest until SIGTERM or Ctrl-C."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer

from runhours.commands._common import ConfigOption, console, fail, load, log_at, stop_on_signals
from runhours.commands._tables import Col, fit_table

if TYPE_CHECKING:
    from ingest.status import MachineDelivery, WorkerHealth

app = typer.Typer(no_args_is_help=False)

LogLevel = Annotated[
    str,
    typer.Option(help="Log level on stderr: debug, info, warning or error."),
]


HELP = (
    "Store MQTT telemetry in InfluxDB, at least once and without duplicates; runs until "
    "SIGTERM or Ctrl-C.\n\n"
    "Subscribes to telemetry and status over MQTT 5 with a persistent session, validates "
    "each message against the v1 contract, writes its points to InfluxDB in batches and "
    "acknowledges it only once written. Invalid messages are stored under "
    "<data_dir>/deadletters/ (see `runhours deadletters`) and published on "
    "runhours/v1/deadletter/… with the reason. It follows each machine's seq and reports "
    "messages lost in transit as gaps (`runhours ingest status`). While subscribed it keeps "
    "a retained online state on runhours/v1/ingest/<client_id>/state (edges hold their "
    "telemetry while no worker is online). On SIGTERM it announces itself offline, stops "
    "taking messages, flushes, acks and disconnects.\n\n"
    "Settings: the shared ones (RUNHOURS_MQTT_URL, RUNHOURS_INFLUX_URL, RUNHOURS_INFLUX_DB, "
    "…) and the \\[ingest] section of the config file, each field overridable as "
    "RUNHOURS_INGEST__<FIELD>; see ingest/example.toml. Creates the database if missing. "
    "Several workers with one share_group and distinct client_ids split the load."
)


@app.callback(invoke_without_command=True, help=HELP)
def ingest(ctx: typer.Context, config: ConfigOption = None, log_level: LogLevel = "info") -> None:
    """Run one ingest worker in the foreground (see HELP)."""
    if ctx.invoked_subcommand is not None:
        return
    from ingest import IngestService, IngestSettings

    log_at(log_level)
    settings = load(IngestSettings, config)
    options = settings.ingest

    stop = stop_on_signals()

    service = IngestService(settings)
    service.start()
    log = logging.getLogger("runhours.ingest")
    announced = False
    while not stop.wait(0.2):
        if service.failure is not None:
            break
        if not announced and service.wait_ready(0):
            announced = True
            log.info(
                "ready: worker %s, %s → %s/%s%s",
                options.client_id,
                settings.mqtt_url,
                settings.influx_url,
                settings.influx_db,
                f", metrics on :{service.metrics_port}" if service.metrics_port else "",
            )
    log.info("stopping: flushing and acknowledging what we hold")
    stats = service.stop()
    console.print(
        f"ingest stopped: {stats.messages_received} messages received, "
        f"{stats.points_written} points written, {stats.messages_invalid} dead letters, "
        f"{stats.held} left for redelivery",
        highlight=False,
    )
    if service.failure is not None:
        fail(f"ingest failed: {service.failure!r}", code=1)


class StatusFormat(StrEnum):
    table = "table"
    json = "json"


@app.command()
def status(
    since: Annotated[
        str, typer.Option("--since", help="Window start: RFC 3339 with a zone, or 'now-24h'.")
    ] = "now-24h",
    site: Annotated[str | None, typer.Option("--site", help="Only this site.")] = None,
    show_all: Annotated[
        bool, typer.Option("--all", help="Every machine, not only those that lost data.")
    ] = False,
    fmt: Annotated[
        StatusFormat, typer.Option("--format", "-f", help="table (for people) or json.")
    ] = StatusFormat.table,
    config: ConfigOption = None,
) -> None:
    """What was lost on the way, per machine, read from InfluxDB: messages and samples lost
    in transit (sequence gaps the ingest reported, minus what arrived late) and samples the
    edge dropped itself (buffer full or too old); and each worker's last health point with
    the broker's own drop count. Exit code 1 when anything was lost in the window."""
    from common.times import parse_time
    from ingest import IngestSettings
    from ingest.status import delivery_status
    from store import InfluxClient

    settings = load(IngestSettings, config)
    start = parse_time(since, "--since")
    with InfluxClient.from_settings(settings) as client:
        machines, workers = delivery_status(client, start, site)
    troubled = [m for m in machines if m.troubled]
    shown = machines if show_all else troubled
    if fmt == StatusFormat.json:
        out = {
            "since": start.isoformat(),
            "machines": [
                {
                    **asdict(m),
                    "ref": "/".join(m.ref),
                    "lost_messages": m.lost_messages,
                    "lost_samples": m.lost_samples,
                }
                for m in shown
            ],
            "workers": [asdict(w) for w in workers],
        }
        console.print_json(json.dumps(out, default=_json_default))
    else:
        _render_status(start, shown, workers, len(machines))
    if troubled:
        raise typer.Exit(1)


def _json_default(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(type(value).__name__)


def _render_status(
    start: datetime, machines: list[MachineDelivery], workers: list[WorkerHealth], total: int
) -> None:
    lost_m = sum(m.lost_messages for m in machines)
    lost_s = sum(m.lost_samples or 0 for m in machines)
    dropped = sum(m.edge_dropped for m in machines)
    console.print(
        f"since {start:%Y-%m-%d %H:%M}Z: {total} machines; lost in transit {lost_m} messages "
        f"({lost_s} samples); dropped at the edge {dropped} samples",
        highlight=False,
    )
    if machines:
        cols = [
            Col("machine"),
            Col("lost msgs", right=True),
            Col("lost samples", right=True),
            Col("late", right=True, drop=2),
            Col("edge drops", right=True),
            Col("cause", figure=False, drop=1),
        ]
        rows = [
            [
                "/".join(m.ref),
                f"{m.lost_messages:,}",
                "?" if m.lost_samples is None else f"{m.lost_samples:,}",
                f"{m.recovered_messages:,}",
                f"{m.edge_dropped:,}",
                (m.last_cause or "").split(":")[0],
            ]
            for m in machines
        ]
        console.print(fit_table(console, cols, rows))
    for w in workers:
        broker = "" if w.broker_dropped is None else f", broker dropped {w.broker_dropped}"
        console.print(
            f"worker {w.worker}: last seen {w.at:%Y-%m-%d %H:%M:%S}Z, {w.messages_received} "
            f"messages, {w.points_written} points, holding {w.held}{broker}",
            highlight=False,
        )
