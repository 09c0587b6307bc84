"""`runhours ingest`: run the MQTT → InfluxDB ingest until SIGTERM or Ctrl-C."""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType
from typing import Annotated

import typer

from runhours.commands._common import ConfigOption, console, fail, load

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
    "acknowledges it only once written. Invalid messages go to runhours/v1/deadletter/… "
    "with the reason. On SIGTERM it stops taking messages, flushes, acks and disconnects.\n\n"
    "Settings: the shared ones (RUNHOURS_MQTT_URL, RUNHOURS_INFLUX_URL, RUNHOURS_INFLUX_DB, "
    "…) and the \\[ingest] section of the config file, each field overridable as "
    "RUNHOURS_INGEST__<FIELD>; see ingest/example.toml. Creates the database if missing. "
    "Several workers with one share_group and distinct client_ids split the load."
)


@app.callback(invoke_without_command=True, help=HELP)
def ingest(config: ConfigOption = None, log_level: LogLevel = "info") -> None:
    """Run one ingest worker in the foreground (see HELP)."""
    from ingest import IngestService, IngestSettings

    level = getattr(logging, log_level.upper(), None)
    if not isinstance(level, int):
        fail(f"--log-level {log_level!r}: use debug, info, warning or error")
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True
    )
    logging.getLogger("httpx").setLevel(max(level, logging.WARNING))  # one line per request
    settings = load(IngestSettings, config)
    options = settings.ingest

    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)

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
