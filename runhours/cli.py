"""The one command line: ``runhours <command>``. Each command lives in runhours/commands/.

Errors are met here, once: a :class:`common.errors.RunhoursError` from any command ends it
with ``error: <message>`` on standard error and the error's exit code (2); anything else is a
bug and keeps its traceback.
"""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperGroup

from common.errors import RunhoursError
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
from runhours.commands._common import fail


class _Commands(TyperGroup):
    """The root command group: turns a ``RunhoursError`` into a clean exit."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except RunhoursError as exc:
            fail(str(exc), exc.exit_code)


app = typer.Typer(
    cls=_Commands,
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
