"""The one command line: ``runhours <command>``. Each command lives in runhours/commands/."""

from __future__ import annotations

import typer

from runhours.commands import (
    alerts,
    analytics,
    billing,
    credentials,
    dashboards,
    deadletters,
    demo,
    doctor,
    downtime,
    edge,
    ingest,
    maintenance,
    oee,
    report,
    services,
    simulate,
    usage,
    users,
)

app = typer.Typer(
    help="runhours: meter machine run-hours, bill them per hour, warn before machines fail.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

for name, module in [
    ("demo", demo),
    ("services", services),
    ("credentials", credentials),
    ("users", users),
    ("simulate", simulate),
    ("edge", edge),
    ("ingest", ingest),
    ("deadletters", deadletters),
    ("doctor", doctor),
    ("analytics", analytics),
    ("usage", usage),
    ("oee", oee),
    ("downtime", downtime),
    ("billing", billing),
    ("alerts", alerts),
    ("maintenance", maintenance),
    ("dashboards", dashboards),
    ("report", report),
]:
    app.add_typer(module.app, name=name)


if __name__ == "__main__":
    app()
