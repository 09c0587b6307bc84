"""`runhours analytics`: the continuous alert evaluation (and HTTP console)."""

from __future__ import annotations

from typing import Annotated

import typer

from runhours.commands._common import ConfigOption, console, load, log_at, stop_on_signals

app = typer.Typer(no_args_is_help=False)

HELP = (
    "Evaluate the alert rules continuously; runs until SIGTERM or Ctrl-C.\n\n"
    "Every --interval seconds it evaluates the data that arrived since the last cycle in "
    "fixed steps (the rules file's `step`), exactly as `runhours alerts evaluate` would, "
    "and commits alerts, history and its own memory to <data_dir>/alerts.sqlite3 in one "
    "transaction: a restart (even after SIGKILL) continues where it stopped, with no "
    "duplicate alert and acknowledgements kept. Transitions go out in the background: a "
    "retained MQTT message per active alert, a point per transition in InfluxDB "
    "(`alerts`), and a JSON POST to the webhook if configured; failed deliveries are "
    "retried with backoff, in order. Each cycle also refreshes the usage rollups.\n\n"
    "The console serves loopback only unless it has users (\\[analytics] users_file, "
    "`runhours users add`): then every route needs a login, and acknowledging, resolving and "
    "maintenance records need the operator role (docs/security.md).\n\n"
    "Settings: the shared ones and the \\[analytics] section (rules, interval, "
    "http_port, users_file, webhook_url, …; RUNHOURS_ANALYTICS__<FIELD>), see docs/alerts.md."
)


@app.callback(invoke_without_command=True, help=HELP)
def analytics(
    config: ConfigOption = None,
    rules: Annotated[
        str | None, typer.Option("--rules", "-r", help="Rules file; overrides \\[analytics] rules.")
    ] = None,
    interval: Annotated[
        float | None,
        typer.Option("--interval", help="Seconds between evaluation cycles (default 10)."),
    ] = None,
    http_port: Annotated[
        int | None,
        typer.Option("--http-port", help="Serve the HTTP API and alert console on this port."),
    ] = None,
    webhook: Annotated[
        str | None, typer.Option("--webhook", help="POST each transition as JSON to this URL.")
    ] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
) -> None:
    """Run the analytics service in the foreground (see HELP)."""
    from analytics.service import AnalyticsService, AnalyticsSettings

    log_at(log_level)
    settings = load(AnalyticsSettings, config)
    updates = {
        k: v
        for k, v in {
            "rules": rules,
            "interval": interval,
            "http_port": http_port,
            "webhook_url": webhook,
        }.items()
        if v is not None
    }
    if updates:
        merged = {**settings.analytics.model_dump(), **updates}
        settings = load(AnalyticsSettings, config, analytics=merged)

    stop = stop_on_signals()
    service = AnalyticsService(settings)
    try:
        service.start_delivery()
        service.start_http()
        if service.http is not None:
            logins = "logins required" if service.http.authenticated else "no logins: loopback only"
            console.print(f"alert console on {service.http.url}/ ({logins})")
        console.print(
            f"evaluating {len(service.rules.rule)} rules from {settings.rules_file} every "
            f"{settings.analytics.interval:g} s"
        )
        service.run(stop)
    finally:
        service.close()
