"""The export formats (CSV and JSON), byte-identical for the same statements.

Fixed column and key order, decimal strings (never floats or exponents), ``\\n`` line
ends, UTF-8, no generation timestamps. Both are documented in docs/billing.md.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from decimal import Decimal
from typing import Any, Literal

from analytics.billing.pricing import METERED_PLACES
from analytics.billing.statements import Line, Statement

ExportFormat = Literal["csv", "json"]

CSV_COLUMNS = (
    "contract_id",
    "customer",
    "currency",
    "period_start",
    "period_end",
    "line_id",
    "kind",
    "machine",
    "metered_hours",
    "billable_hours",
    "rate",
    "amount",
    "coverage_pct",
    "method",
    "gaps",
    "counter_anomalies",
)


def dec(value: Decimal) -> str:
    """A decimal as plain text: no exponent, no negative zero."""
    if value.is_zero():
        value = value.copy_abs()
    return format(value, "f")


def line_json(line: Line) -> dict[str, Any]:
    """One line as the JSON object of the export (key order is part of the format)."""
    return {
        "id": line.id,
        "kind": line.kind,
        "machine": line.machine,
        "metered_hours": dec(line.metered_hours),
        "billable_hours": dec(line.billable_hours),
        "rate": dec(line.rate),
        "amount": dec(line.amount),
        "coverage": dec(line.coverage),
        "method": line.method,
        "gaps": line.gaps,
        "counter_anomalies": list(line.counter_anomalies),
    }


def statement_json(statement: Statement) -> dict[str, Any]:
    """One statement as the JSON object of the export (key order is part of the format)."""
    return {
        "contract_id": statement.contract_id,
        "customer": statement.customer,
        "currency": statement.currency,
        "period_start": statement.period_start.isoformat(),
        "period_end": statement.period_end.isoformat(),
        "lines": [line_json(line) for line in statement.lines],
        "total": dec(statement.total),
    }


def to_json(statements: Sequence[Statement]) -> bytes:
    """A JSON list of statements, one per contract, indented, ending in a newline."""
    body = [statement_json(s) for s in statements]
    return (json.dumps(body, indent=2, ensure_ascii=False) + "\n").encode()


def to_csv(statements: Sequence[Statement]) -> bytes:
    """CSV line items of every statement, each followed by its total line."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for s in statements:
        head = [
            s.contract_id,
            s.customer,
            s.currency,
            s.period_start.isoformat(),
            s.period_end.isoformat(),
        ]
        for line in s.lines:
            row = line_json(line)
            writer.writerow(
                [
                    *head,
                    row["id"],
                    row["kind"],
                    row["machine"],
                    row["metered_hours"],
                    row["billable_hours"],
                    row["rate"],
                    row["amount"],
                    row["coverage"],
                    row["method"],
                    line.gaps,
                    "; ".join(line.counter_anomalies),
                ]
            )
        usage = [line for line in s.lines if line.kind != "true_up"]
        metered = sum((line.metered_hours for line in usage), Decimal(0).scaleb(-METERED_PLACES))
        billable = sum((line.billable_hours for line in s.lines), Decimal(0))
        writer.writerow(
            [*head, "", "total", "", dec(metered), dec(billable), "", dec(s.total), "", "", "", ""]
        )
    return out.getvalue().encode()


def encode(statements: Sequence[Statement], fmt: ExportFormat) -> bytes:
    if fmt == "csv":
        return to_csv(statements)
    if fmt == "json":
        return to_json(statements)
    raise ValueError(f"unknown export format {fmt!r}: use csv or json")
