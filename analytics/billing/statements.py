"""Statements: the priced lines of one contract for one period, and their restatements.

A statement is built from each machine's metered usage (:class:`MachineMeter`) by the
pricing rules; it is pure data with exact decimals. When a finalized (issued) statement
is exported again, :func:`restate` keeps every issued line as it was and appends
*adjustment* lines for what changed since, like a credit note: the adjustments sum to
the change of the total.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, tzinfo
from decimal import Decimal
from fractions import Fraction
from typing import Literal

from analytics.billing.contracts import Contract
from analytics.billing.pricing import (
    METERED_PLACES,
    Allocation,
    Commitment,
    Segment,
    allocate,
    amount_of,
    base_rate,
    commitment,
    coverage_percent,
    currency_places,
    hours_of,
    hours_places,
    round_to_increment,
    segments,
    to_decimal,
)
from analytics.counters import (
    AnomalyKind,
    CounterEvent,
    CounterTolerance,
    counter_mismatch,
    describe_counts,
    list_anomalies,
)

LineKind = Literal["usage", "true_up", "adjustment"]
LINE_KINDS: tuple[LineKind, ...] = ("usage", "true_up", "adjustment")


@dataclass(frozen=True)
class Line:
    """One line of a statement; ``key`` names what it bills (adjustments reuse it).

    ``gaps`` counts the stretches of unknown time in the machine's window (for a true-up:
    of all machines); ``counter_anomalies`` lists its hour meter's resets, wraps,
    glitches and jumps (the first ``EVENT_LIMIT``, then how many more).
    """

    id: str
    kind: LineKind
    machine: str
    metered_hours: Decimal
    billable_hours: Decimal
    rate: Decimal
    amount: Decimal
    coverage: Decimal  # percent
    method: str
    key: str
    gaps: int = 0
    counter_anomalies: tuple[str, ...] = ()


@dataclass(frozen=True)
class Statement:
    """The lines of one contract for one period; ``total`` is the sum of their amounts."""

    contract_id: str
    customer: str
    currency: str
    period_start: datetime
    period_end: datetime
    lines: tuple[Line, ...]
    notes: tuple[str, ...] = ()
    issued_revisions: int = 0  # how many times this period was finalized before
    pending_adjustments: bool = False

    @property
    def total(self) -> Decimal:
        places = currency_places(self.currency)
        return sum((line.amount for line in self.lines), Decimal(0).scaleb(-places))

    @property
    def period_key(self) -> tuple[str, str, str]:
        return (self.contract_id, self.period_start.isoformat(), self.period_end.isoformat())


@dataclass(frozen=True)
class MachineMeter:
    """One machine's metered usage within its effective windows of the period.

    ``machine`` is its name as the contract writes it (``site/machine`` or a bare id).
    """

    machine: str
    window_ms: int  # how long the machine was under contract in the period
    known_ms: int  # of that, time with a known state
    billable_state_ms: int  # time in the contract's billable states
    running_ms: int
    counter_ms: int | None  # billed hour-meter delta; None without readings
    gaps: int = 0  # stretches of unknown time in its windows
    counter_anomalies: dict[AnomalyKind, int] = field(default_factory=dict)
    counter_events: tuple[CounterEvent, ...] = ()  # the first of them
    windows: tuple[tuple[int, int], ...] = ()  # epoch ms [from, to) under contract

    def anomaly_texts(self, tz: tzinfo) -> tuple[str, ...]:
        """The anomalies as listed on the machine's lines."""
        return list_anomalies(
            self.counter_events,
            self.counter_anomalies,
            tz,
            " (runhours billing explain lists them all)",
        )


def line_id(contract_id: str, start: datetime, end: datetime, key: str, revision: int) -> str:
    """A line id that is the same in every run for the same contract, period and line."""
    text = f"{contract_id}|{start.isoformat()}|{end.isoformat()}|{key}|{revision}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _fmt_hours(ms: int) -> str:
    return format(to_decimal(hours_of(ms), 2), "f")


def _line(
    contract: Contract,
    start: datetime,
    end: datetime,
    kind: LineKind,
    key: str,
    machine: str,
    metered: Decimal,
    billable: Decimal,
    rate: Decimal,
    coverage: Decimal,
    method: str,
    gaps: int,
    anomalies: tuple[str, ...] = (),
) -> Line:
    """A line of ``contract``'s statement, its billable hours rounded to the contract's places
    and its amount to the currency's."""
    billable = billable.quantize(Decimal(1).scaleb(-hours_places(contract)))
    return Line(
        line_id(contract.id, start, end, key, 0),
        kind,
        machine,
        metered,
        billable,
        rate,
        amount_of(billable, rate, currency_places(contract.currency)),
        coverage,
        method,
        key,
        gaps,
        anomalies,
    )


def _metered_ms(contract: Contract, meter: MachineMeter) -> int:
    """What the contract's method meters: the hour-meter delta or the billable states' time."""
    if contract.method == "counter":
        return meter.counter_ms or 0
    return meter.billable_state_ms


def _usage_lines(
    contract: Contract,
    start: datetime,
    end: datetime,
    meter: MachineMeter,
    bands: list[Segment],
    coverage: Decimal,
) -> list[tuple[Allocation, Line]]:
    """A machine's usage lines, one per rate band its billable hours fall in."""
    metered = hours_of(_metered_ms(contract, meter))
    billable = round_to_increment(metered, contract.rounding_hours, contract.rounding_mode)
    anomalies = meter.anomaly_texts(contract.zone)
    return [
        (
            part,
            _line(
                contract,
                start,
                end,
                "usage",
                f"usage|{meter.machine}|{part.segment.key}",
                meter.machine,
                to_decimal(part.metered, METERED_PLACES),
                part.billable,
                part.segment.rate,
                coverage,
                contract.method,
                meter.gaps,
                anomalies,
            ),
        )
        for part in allocate(billable, metered, bands)
    ]


def _meter_notes(contract: Contract, meter: MachineMeter, coverage: Decimal) -> list[str]:
    """What the statement says of a machine: no hour meter, its anomalies, a meter that
    disagrees with the states, time without a known state."""
    notes: list[str] = []
    if contract.method == "counter" and meter.counter_ms is None:
        notes.append(
            f"{meter.machine}: no hour-meter readings in the period; its counter-"
            "metered hours are 0"
        )
    if meter.counter_anomalies:
        notes.append(
            f"{meter.machine}: hour meter {describe_counts(meter.counter_anomalies)} in the "
            "period (listed on its line)"
        )
    tolerance = CounterTolerance(
        contract.counter_tolerance_pct / 100, contract.counter_tolerance_seconds
    )
    if counter_mismatch(
        None if meter.counter_ms is None else meter.counter_ms / 1000,
        meter.running_ms / 1000,
        tolerance,
    ):
        notes.append(
            f"{meter.machine}: hour meter {_fmt_hours(meter.counter_ms or 0)} h vs running "
            f"{_fmt_hours(meter.running_ms)} h from states: more apart than "
            f"{contract.counter_tolerance_pct}% + {contract.counter_tolerance_seconds} s"
        )
    if meter.known_ms < meter.window_ms:
        notes.append(
            f"{meter.machine}: coverage {coverage}% (time without a known state is not billed)"
        )
    return notes


def _minimum_notes(contract: Contract, minimum: Commitment | None) -> list[str]:
    if minimum is not None and minimum.hours == 0:
        return ["no machine under contract in the period: no minimum applies"]
    if minimum is not None and minimum.prorated:
        return [
            f"minimum prorated daily: {contract.minimum_hours} h × {minimum.days_covered}/"
            f"{minimum.days} days = {minimum.hours} h"
        ]
    return []


def price(
    contract: Contract, start: datetime, end: datetime, meters: Sequence[MachineMeter]
) -> Statement:
    """Pure: the statement of ``contract`` for ``[start, end)`` from its machines' meters."""
    bands = segments(contract)
    lines: list[Line] = []
    notes: list[str] = []
    billable_total = Decimal(0)
    known_total = window_total = gaps_total = 0
    for meter in sorted(meters, key=lambda m: m.machine):
        coverage = coverage_percent(meter.known_ms, meter.window_ms)
        notes += _meter_notes(contract, meter, coverage)
        known_total += meter.known_ms
        window_total += meter.window_ms
        gaps_total += meter.gaps
        for part, line in _usage_lines(contract, start, end, meter, bands, coverage):
            lines.append(line)
            billable_total += part.billable
    minimum = commitment(contract, start, end, [w for m in meters for w in m.windows])
    notes += _minimum_notes(contract, minimum)
    if minimum is not None and billable_total < minimum.hours:
        lines.append(
            _line(
                contract,
                start,
                end,
                "true_up",
                "true_up",
                "",
                to_decimal(Fraction(0), METERED_PLACES),
                minimum.hours - billable_total,
                base_rate(contract),
                coverage_percent(known_total, window_total),
                "minimum",
                gaps_total,
            )
        )
    return Statement(
        contract.id,
        contract.customer,
        contract.currency,
        start,
        end,
        tuple(lines),
        tuple(notes),
    )


def restate(fresh: Statement, issued: Sequence[Line], revisions: int) -> Statement:
    """Pure: the issued lines unchanged, plus adjustment lines up to ``fresh``.

    ``issued`` are all lines recorded by the ``revisions`` finalizations so far. For each
    key (machine band or true-up) whose hours or amount changed, one adjustment line
    carries the difference; their amounts sum to ``fresh.total`` − the issued total.
    """
    if not revisions:
        return fresh
    totals: dict[str, tuple[Decimal, Decimal, Decimal]] = {}
    last: dict[str, Line] = {}
    for line in issued:
        metered, billable, amount = totals.get(line.key, (Decimal(0), Decimal(0), Decimal(0)))
        totals[line.key] = (
            metered + line.metered_hours,
            billable + line.billable_hours,
            amount + line.amount,
        )
        last[line.key] = line
    current = {line.key: line for line in fresh.lines}
    adjustments = []
    for key in sorted(set(totals) | set(current)):
        now = current.get(key)
        was = totals.get(key, (Decimal(0), Decimal(0), Decimal(0)))
        values = (
            (now.metered_hours, now.billable_hours, now.amount)
            if now is not None
            else (Decimal(0), Decimal(0), Decimal(0))
        )
        delta = [a - b for a, b in zip(values, was, strict=True)]
        if not any(delta):
            continue
        model = now if now is not None else last[key]
        adjustments.append(
            replace(
                model,
                id=line_id(
                    fresh.contract_id, fresh.period_start, fresh.period_end, key, revisions + 1
                ),
                kind="adjustment",
                metered_hours=_no_negative_zero(delta[0]),
                billable_hours=_no_negative_zero(delta[1]),
                amount=_no_negative_zero(delta[2]),
                coverage=model.coverage if now is not None else Decimal("0.00"),
            )
        )
    return replace(
        fresh,
        lines=(*issued, *adjustments),
        issued_revisions=revisions,
        pending_adjustments=bool(adjustments),
    )


def _no_negative_zero(value: Decimal) -> Decimal:
    return value.copy_abs() if value.is_zero() else value
