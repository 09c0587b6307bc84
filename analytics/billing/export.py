"""Billing runs: contracts + stored usage → statements → CSV/JSON, with the ledger.

This is the I/O edge of billing: it reads usage (hourly rollups, or raw samples with
``from_raw``), prices it with the pure rules of ``statements``/``pricing``, reconciles
with the ledger of issued statements, and encodes the export.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from analytics.billing.contracts import Contract, load_contracts
from analytics.billing.formats import ExportFormat, encode
from analytics.billing.ledger import Ledger, Revision
from analytics.billing.statements import MachineMeter, Statement, price, restate
from analytics.counters import CounterRules, anomaly_counts
from analytics.machines import MachineError, MachineKey, resolve_machines
from analytics.periods import Period, calendar_period, custom_period, period_kind
from analytics.rollups import refresh_rollups, usage_series
from analytics.usage import STATE_CODE, UsageSeries, first_events
from common.errors import RunhoursError
from store import InfluxClient


class BillingError(RunhoursError, ValueError):
    """A billing run cannot proceed; the message says why and what to do."""


def machine_windows(contract: Contract, period: Period) -> dict[str, list[tuple[int, int]]]:
    """Per machine name, the parts of ``period`` (epoch ms) it is under the contract."""
    return contract.windows(period.start_ms, period.end_ms)


def meter_from_series(
    contract: Contract, name: str, series: UsageSeries, windows: Sequence[tuple[int, int]]
) -> MachineMeter:
    """Pure: sum the buckets of ``series`` that lie inside the machine's windows."""
    inside = [
        k
        for k in range(len(series))
        if any(a <= series.edges_ms[k] and series.edges_ms[k + 1] <= b for a, b in windows)
    ]
    billable = series.state_total_ms(contract.billable_states)
    defined = any(bool(series.counter_defined[k]) for k in inside)
    counts = series.counter_counts[inside].sum(axis=0)
    return MachineMeter(
        machine=name,
        window_ms=sum(b - a for a, b in windows),
        known_ms=sum(int(series.known_ms[k]) for k in inside),
        billable_state_ms=sum(int(billable[k]) for k in inside),
        running_ms=sum(int(series.state_ms[k, STATE_CODE["running"]]) for k in inside),
        counter_ms=sum(int(series.counter_ms[k]) for k in inside) if defined else None,
        gaps=series.gaps_in(inside),
        counter_anomalies=anomaly_counts(counts),
        counter_events=first_events(series.counter_events[k] for k in inside),
        windows=tuple(windows),
    )


def machine_keys(
    client: InfluxClient, contract: Contract, names: Sequence[str]
) -> dict[str, MachineKey]:
    """The contract's machine names as keys (a bare id must exist at one site)."""
    try:
        return {str(name): key for name, key in resolve_machines(client, names).items()}
    except MachineError as exc:
        raise BillingError(f"contract {contract.id}: {exc}") from None


def meters(
    client: InfluxClient, contract: Contract, period: Period, *, from_raw: bool = False
) -> list[MachineMeter]:
    """Each machine's metered usage in the period (machines outside it are left out)."""
    windows = machine_windows(contract, period)
    keys = machine_keys(client, contract, list(windows))
    groups: dict[tuple[tuple[int, ...], CounterRules], list[str]] = {}
    for name, spans in windows.items():
        edges = tuple(sorted({e for span in spans for e in span}))
        groups.setdefault((edges, contract.counter_rules(name)), []).append(name)
    out: list[MachineMeter] = []
    for (edges, rules), names in groups.items():
        wanted = sorted({keys[n] for n in names})
        found = usage_series(client, wanted, list(edges), from_raw=from_raw, rules=rules)
        out.extend(meter_from_series(contract, n, found[keys[n]], windows[n]) for n in names)
    return sorted(out, key=lambda m: m.machine)


def in_force(contract: Contract, period: Period) -> bool:
    """Whether the contract's term overlaps the period."""
    lo, hi = contract.term_window()
    return lo < period.end_ms and period.start_ms < hi


def contract_periods(contracts: Sequence[Contract], label: str) -> list[tuple[Contract, Period]]:
    """The contracts that bill per the kind of period ``label`` names, with that period."""
    kind = period_kind(label)
    chosen = [(c, calendar_period(label, c.zone)) for c in contracts if c.period == kind]
    if not chosen:
        kinds = ", ".join(sorted({f"{c.id}: {c.period}" for c in contracts}))
        raise BillingError(
            f"no contract bills per {kind} ({label}); the contracts' periods are {kinds}"
        )
    # Contracts whose term does not reach into the period have no statement for it.
    return [(c, p) for c, p in chosen if in_force(c, p)]


def contract_statement(
    client: InfluxClient, contract: Contract, period: Period, *, from_raw: bool = False
) -> tuple[Statement, list[MachineMeter]]:
    """The fresh statement of one contract for one period, and the meters it priced."""
    metered = meters(client, contract, period, from_raw=from_raw)
    return price(contract, period.start, period.end, metered), metered


@dataclass(frozen=True)
class ExportResult:
    """What an export produced: the statements, the encoded file and any new revisions."""

    statements: list[Statement]
    data: bytes
    recorded: list[Revision]


def build_statements(
    client: InfluxClient,
    contracts: Sequence[Contract],
    label: str,
    *,
    ledger: Ledger | None = None,
    from_raw: bool = False,
) -> list[Statement]:
    """The statements of every contract billing per ``label``'s period, sorted by contract.

    With a ledger, a period finalized before comes back as its issued lines plus
    adjustments (see :func:`analytics.billing.statements.restate`).
    """
    out = []
    for contract, period in sorted(contract_periods(contracts, label), key=lambda cp: cp[0].id):
        fresh, _ = contract_statement(client, contract, period, from_raw=from_raw)
        if ledger is not None:
            revisions, issued = ledger.issued(fresh)
            fresh = restate(fresh, issued, revisions)
        out.append(fresh)
    return out


def export_statements(
    client: InfluxClient,
    contracts: Sequence[Contract],
    label: str,
    *,
    fmt: ExportFormat,
    ledger: Ledger | None = None,
    finalize: bool = False,
    from_raw: bool = False,
    now: datetime | None = None,
    deliver: Callable[[bytes], None] | None = None,
) -> ExportResult:
    """Build, encode and (with ``finalize``) record the statements of a period.

    Finalizing needs a ledger and a period that has ended. ``deliver`` (e.g. writing the
    output file) runs on the encoded bytes before anything is recorded, so the ledger
    never holds a revision that was not delivered; the ledger is written in one
    transaction.
    """
    if finalize and ledger is None:
        raise BillingError("finalizing needs a ledger")
    statements = build_statements(client, contracts, label, ledger=ledger, from_raw=from_raw)
    if finalize:
        moment = now or datetime.now(UTC)
        for statement in statements:
            if statement.period_end > moment:
                raise BillingError(
                    f"{statement.contract_id}: period {label} ends "
                    f"{statement.period_end.isoformat()}; finalize it after it has ended"
                )
    data = encode(statements, fmt)
    if deliver is not None:
        deliver(data)
    recorded = ledger.record(statements) if finalize and ledger is not None else []
    return ExportResult(statements, data, recorded)


def billing_summary(
    client: InfluxClient,
    contracts_path: Path,
    period_start: datetime,
    period_end: datetime,
    *,
    from_raw: bool = False,
    rollup_state: Path | None = None,
) -> list[Statement]:
    """Statements of every contract for an arbitrary ``[period_start, period_end)``.

    For the demo (a simulated week): each contract's tiers and minimum apply to the
    range as if it were one period. Rollups are read as stored; pass ``rollup_state``
    (the refresh watermark file) to bring them up to date first, or ``from_raw``.
    Start and end should be whole hours (else raw samples are read).
    """
    contracts = load_contracts(contracts_path)
    if rollup_state is not None and not from_raw:
        refresh_rollups(client, state_file=rollup_state)
    out = []
    for contract in sorted(contracts, key=lambda c: c.id):
        period = custom_period(period_start, period_end, contract.zone)
        if in_force(contract, period):
            out.append(contract_statement(client, contract, period, from_raw=from_raw)[0])
    return out
