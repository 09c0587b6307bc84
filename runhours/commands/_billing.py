"""`runhours billing export`'s run and its summary table: export, deliver, report."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path

from rich.console import Console
from rich.table import Table

from analytics.billing import (
    BillingError,
    Ledger,
    LedgerError,
    Statement,
    default_ledger,
    export_statements,
    load_contracts,
)
from analytics.billing.formats import ExportFormat, dec
from analytics.periods import PeriodError
from analytics.rollups import StaleRollupsError, default_state_file, refresh_rollups
from common.settings import RunhoursSettings
from runhours.commands._common import console, err_console, fail
from runhours.commands._tables import Col, fit_table
from store import InfluxClient, InfluxError


def _span(statement: Statement) -> str:
    return (
        f"{statement.period_start.isoformat(timespec='minutes')} – "
        f"{statement.period_end.isoformat(timespec='minutes')}"
    )


def render_summary(
    statements: Sequence[Statement], title: str = "billing summary", out: Console = console
) -> Table:
    """A table of statements for people: machines, billable hours, amount, lowest coverage
    (fitted to ``out``'s width)."""
    spans = {(s.period_start.timestamp(), s.period_end.timestamp()) for s in statements}
    shared = len(spans) == 1
    cols = [
        Col("contract"),
        Col("customer", figure=False),
        *([] if shared else [Col("period", figure=False)]),
        Col("machines", right=True, drop=1),
        Col("billable h", right=True),
        Col("amount", right=True),
        Col("min known", right=True, drop=2),
    ]
    rows = []
    for s in statements:
        usage = [line for line in s.lines if line.kind == "usage"]
        billable = sum((line.billable_hours for line in s.lines), Decimal(0))
        lowest = min((line.coverage for line in usage), default=None)
        rows.append(
            [
                s.contract_id,
                s.customer,
                *([] if shared else [_span(s)]),
                str(len({line.machine for line in usage})),
                dec(billable),
                f"{dec(s.total)} {s.currency}",
                "" if lowest is None else f"{dec(lowest)}%",
            ]
        )
    heading = f"{title}: {_span(statements[0])}" if shared and statements else title
    return fit_table(out, cols, rows, title=heading)


def _write_atomically(target: Path, data: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def export_period(
    settings: RunhoursSettings,
    contracts: Path,
    period: str,
    *,
    only: list[str] | None,
    fmt: ExportFormat,
    out: Path | None,
    finalize: bool,
    from_raw: bool,
) -> None:
    """Export (and with ``finalize`` record) the statements of ``period`` for the contracts
    of the file (``only`` these ids), to ``out`` or standard output; notes, finalized
    revisions and a summary table go to standard error."""
    chosen = load_contracts(contracts)
    if only:
        unknown = sorted(set(only) - {c.id for c in chosen})
        if unknown:
            fail(f"--contract {', '.join(unknown)}: not in {contracts}")
        chosen = [c for c in chosen if c.id in set(only)]
    ledger = Ledger(default_ledger(settings.data_dir))
    delivered: list[Path] = []

    def deliver(data: bytes) -> None:
        if out is not None:
            _write_atomically(out, data)
            delivered.append(out)

    try:
        with InfluxClient.from_settings(settings) as client:
            if not from_raw:
                refresh_rollups(client, state_file=default_state_file(settings.data_dir))
            # The file is written before anything is recorded (the ledger holds exactly
            # what was delivered); if recording fails, the file is removed again.
            result = export_statements(
                client,
                chosen,
                period,
                fmt=fmt,
                ledger=ledger,
                finalize=finalize,
                from_raw=from_raw,
                deliver=deliver,
            )
    except (BillingError, PeriodError, LedgerError, InfluxError, StaleRollupsError, OSError) as exc:
        for path in delivered:
            path.unlink(missing_ok=True)
        fail(str(exc))
    for revision in result.recorded:
        err_console.print(
            f"finalized {revision.contract_id} revision {revision.revision}: "
            f"{revision.lines} line(s), {dec(revision.total)} {revision.currency}",
            highlight=False,
        )
    if out is None:
        sys.stdout.buffer.write(result.data)
        sys.stdout.flush()
    for statement in result.statements:
        for note in statement.notes:
            err_console.print(f"note: {statement.contract_id}: {note}", highlight=False)
        if statement.pending_adjustments:
            err_console.print(
                f"note: {statement.contract_id}: finalized before; late data changed it — "
                "see the adjustment lines (finalize again to issue them)",
                highlight=False,
            )
    err_console.print(render_summary(result.statements, f"billing {period}", err_console))
