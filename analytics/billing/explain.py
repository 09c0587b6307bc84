"""Explain a statement line: how one machine's billed hours arise, day by day, from raw data.

``runhours billing explain`` prices the contract's period exactly as the export does,
then recomputes the machine's figures from its raw samples per local day: the seconds in
each state, the unknown time with each gap's start and end, the hour meter against the
state hours with every anomaly, and which raw samples they came from. Then it shows the
rounding, the bands (tiers, allowance) with their rates and the true-up. The day figures
are exact milliseconds and add up exactly to the statement's; :attr:`Explanation.checks`
compares them (a difference means the rollups are stale: rebuild them).

>>> explanation = explain_line(client, contract, period, "plant1/cnc-01")  # doctest: +SKIP
>>> explanation_json(explanation)["checks"]                               # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta, tzinfo
from decimal import Decimal
from fractions import Fraction
from typing import Any

from analytics.billing.contracts import Contract
from analytics.billing.export import BillingError, contract_statement, machine_keys
from analytics.billing.formats import dec, line_json
from analytics.billing.pricing import (
    METERED_PLACES,
    Commitment,
    Segment,
    allocate,
    amount_of,
    commitment,
    currency_places,
    hours_of,
    hours_places,
    round_to_increment,
    segments,
    to_decimal,
)
from analytics.billing.statements import Line, MachineMeter, Statement
from analytics.counters import ANOMALY_KINDS, CounterEvent, judge_readings, seconds_text
from analytics.machines import MachineKey, key_clause
from analytics.periods import Period, as_datetime, bucket_edges, to_ms
from analytics.usage import (
    CARRY_HORIZON,
    DEFAULT_MAX_GAP,
    STATE_CODE,
    Samples,
    duration_ms,
    load_samples,
    series_from_samples,
    unknown_spans,
)
from store import InfluxClient
from store.schema import TELEMETRY
from wire import STATES


@dataclass(frozen=True)
class Day:
    """One local day (cut to the machine's windows), exact milliseconds."""

    start_ms: int
    end_ms: int
    state_ms: dict[str, int]
    billable_ms: int  # in the contract's billable states
    known_ms: int
    gaps: tuple[tuple[int, int], ...]  # the parts of gaps inside the day
    counter_ms: int | None  # billed hour-meter time; None without readings
    counter_events: tuple[CounterEvent, ...]
    samples: int
    first_sample_ms: int | None
    last_sample_ms: int | None
    counter_readings: int

    @property
    def unknown_ms(self) -> int:
        return self.end_ms - self.start_ms - self.known_ms


@dataclass(frozen=True)
class Check:
    """One figure, as the day rows add it up and as the statement has it."""

    figure: str
    explained: str
    statement: str

    @property
    def equal(self) -> bool:
        return self.explained == self.statement


@dataclass(frozen=True)
class Explanation:
    """Everything that makes up one machine's lines of one statement."""

    contract: Contract
    statement: Statement
    meter: MachineMeter
    key: MachineKey
    windows: tuple[tuple[int, int], ...]
    days: tuple[Day, ...]
    gaps: tuple[tuple[int, int], ...]  # whole gaps, within the windows
    counter_events: tuple[CounterEvent, ...]  # every anomaly, none left out
    counter_before: tuple[int, int] | None  # the meter reading before the first window
    loaded: tuple[int, int] | None  # first and last raw sample read
    metered_ms: int
    billable_hours: Decimal
    bands: tuple[tuple[Segment, Decimal, Fraction, Decimal], ...]  # band, billable, metered, amount
    lines: tuple[Line, ...]  # the statement's lines for the machine
    minimum: Commitment | None
    true_up: Line | None

    @property
    def checks(self) -> list[Check]:
        """The day rows (raw samples) against the statement (rollups, or raw with
        ``--from-raw``): every figure must be equal."""
        m = self.meter
        counter = [d.counter_ms for d in self.days if d.counter_ms is not None]
        statement_metered = (
            m.billable_state_ms if self.contract.method == "state" else m.counter_ms or 0
        )

        def total(values: Sequence[Decimal]) -> str:
            return dec(sum(values, Decimal(0)))

        return [
            Check("metered ms", str(self.metered_ms), str(statement_metered)),
            Check("known ms", str(sum(d.known_ms for d in self.days)), str(m.known_ms)),
            Check("gaps", str(len(self.gaps)), str(m.gaps)),
            Check(
                "counter ms",
                str(sum(counter)) if counter else "none",
                "none" if m.counter_ms is None else str(m.counter_ms),
            ),
            Check(
                "counter anomalies",
                str(len(self.counter_events)),
                str(sum(m.counter_anomalies.values())),
            ),
            Check(
                "lines",
                "; ".join(
                    f"{s.key} {dec(b)} h × {dec(s.rate)} = {dec(a)}" for s, b, _, a in self.bands
                ),
                "; ".join(
                    f"{line.key.rsplit('|', 1)[-1]} {dec(line.billable_hours)} h × "
                    f"{dec(line.rate)} = {dec(line.amount)}"
                    for line in self.lines
                ),
            ),
            Check(
                "metered hours",
                total([to_decimal(metered, METERED_PLACES) for _, _, metered, _ in self.bands]),
                total([line.metered_hours for line in self.lines]),
            ),
            Check(
                "amount",
                total([amount for *_, amount in self.bands]),
                total([line.amount for line in self.lines]),
            ),
        ]


def explain(
    contract: Contract,
    statement: Statement,
    meters: Sequence[MachineMeter],
    name: str,
    key: MachineKey,
    samples: Samples,
    *,
    max_gap: timedelta = DEFAULT_MAX_GAP,
    carry_horizon: timedelta = CARRY_HORIZON,
) -> Explanation:
    """Pure: the explanation of ``name``'s lines in ``statement``, from its raw ``samples``."""
    meter = next(m for m in meters if m.machine == name)
    windows = meter.windows
    start, end = statement.period_start, statement.period_end
    day_edges = {to_ms(e) for e in bucket_edges(start, end, "day", contract.zone)}
    edges = sorted(day_edges | {e for w in windows for e in w})
    series = series_from_samples(
        key,
        samples,
        edges,
        max_gap=max_gap,
        carry_horizon=carry_horizon,
        rules=contract.counter_rules(name),
    )
    gap_ms, horizon_ms = duration_ms(max_gap), duration_ms(carry_horizon)
    gaps = tuple(
        (int(a), int(b))
        for lo, hi in windows
        for a, b in unknown_spans(samples.ts_ms, samples.codes, lo, hi, gap_ms, horizon_ms)
    )
    judged = judge_readings(
        samples.counter_ts_ms,
        samples.counter_ms,
        samples.counter_previous,
        contract.counter_rules(name),
    )
    events = tuple(
        CounterEvent(
            ANOMALY_KINDS[int(k)],
            int(samples.counter_ts_ms[i]),
            int(judged.before_ms[i]),
            int(samples.counter_ms[i]),
            int(judged.billed_ms[i]),
        )
        for i, k in enumerate(judged.kind.tolist())
        if k >= 0 and any(lo <= samples.counter_ts_ms[i] < hi for lo, hi in windows)
    )
    billable_codes = sorted(STATE_CODE[s] for s in contract.billable_states)
    days = []
    for k in range(len(series)):
        lo, hi = int(edges[k]), int(edges[k + 1])
        if not any(a <= lo and hi <= b for a, b in windows):
            continue
        in_day = (samples.ts_ms >= lo) & (samples.ts_ms < hi)
        readings = (samples.counter_ts_ms >= lo) & (samples.counter_ts_ms < hi)
        days.append(
            Day(
                lo,
                hi,
                {s: int(series.state_ms[k, STATE_CODE[s]]) for s in STATES},
                int(series.state_ms[k, billable_codes].sum()),
                int(series.known_ms[k]),
                tuple((max(a, lo), min(b, hi)) for a, b in gaps if a < hi and lo < b),
                int(series.counter_ms[k]) if series.counter_defined[k] else None,
                tuple(e for e in events if lo <= e.ts_ms < hi),
                int(in_day.sum()),
                int(samples.ts_ms[in_day][0]) if in_day.any() else None,
                int(samples.ts_ms[in_day][-1]) if in_day.any() else None,
                int(readings.sum()),
            )
        )
    if contract.method == "counter":
        metered_ms = sum(d.counter_ms or 0 for d in days)
    else:
        metered_ms = sum(d.billable_ms for d in days)
    metered = hours_of(metered_ms)
    billable = round_to_increment(metered, contract.rounding_hours, contract.rounding_mode)
    places = currency_places(contract.currency)
    shown = Decimal(1).scaleb(-hours_places(contract))  # as the statement shows hours
    bands = tuple(
        (part.segment, b, part.metered, amount_of(b, part.segment.rate, places))
        for part in allocate(billable, metered, segments(contract))
        for b in [part.billable.quantize(shown)]
    )
    lines = tuple(ln for ln in statement.lines if ln.kind == "usage" and ln.machine == name)
    true_up = next((ln for ln in statement.lines if ln.kind == "true_up"), None)
    minimum = commitment(contract, start, end, [w for m in meters for w in m.windows])
    return Explanation(
        contract,
        statement,
        meter,
        key,
        windows,
        tuple(days),
        gaps,
        events,
        samples.counter_previous,
        (int(samples.ts_ms[0]), int(samples.ts_ms[-1])) if samples.ts_ms.size else None,
        metered_ms,
        billable,
        bands,
        lines,
        minimum,
        true_up,
    )


def explain_line(
    client: InfluxClient,
    contract: Contract,
    period: Period,
    machine: str,
    *,
    from_raw: bool = False,
) -> Explanation:
    """Price the period as the export does, and explain ``machine``'s lines from raw data.

    ``machine`` is the name the contract gives it, or its ``site/machine`` key.
    """
    statement, meters = contract_statement(client, contract, period, from_raw=from_raw)
    names = [m.machine for m in meters]
    keys = machine_keys(client, contract, names)
    name = (
        machine
        if machine in keys
        else next((n for n, k in keys.items() if str(k) == machine), None)
    )
    if name is None:
        listed = ", ".join(names) or "none"
        raise BillingError(
            f"{contract.id} has no machine {machine!r} under contract in {period.label} "
            f"(its machines then: {listed})"
        )
    meter = next(m for m in meters if m.machine == name)
    lo, hi = meter.windows[0][0], meter.windows[-1][1]
    samples = load_samples(client, keys[name], lo, hi)
    return explain(contract, statement, meters, name, keys[name], samples)


# -- output ---------------------------------------------------------------------------------


def _at(ms: int | None, tz: tzinfo) -> str | None:
    return (
        None
        if ms is None
        else as_datetime(ms)
        .astimezone(tz)
        .isoformat(timespec="milliseconds" if ms % 1000 else "seconds")
    )


def _event_json(event: CounterEvent, tz: tzinfo) -> dict[str, Any]:
    return {
        "kind": event.kind,
        "at": _at(event.ts_ms, tz),
        "before_seconds": seconds_text(event.before_ms),
        "after_seconds": seconds_text(event.after_ms),
        "billed_seconds": seconds_text(event.billed_ms),
    }


def _gap_json(gap: tuple[int, int], tz: tzinfo) -> dict[str, Any]:
    return {
        "start": _at(gap[0], tz),
        "end": _at(gap[1], tz),
        "seconds": seconds_text(gap[1] - gap[0]),
    }


def explanation_json(x: Explanation) -> dict[str, Any]:
    """The ``--format json`` form (documented in docs/billing.md); exact decimal strings."""
    tz = x.contract.zone
    c = x.contract
    days = [
        {
            "start": _at(d.start_ms, tz),
            "end": _at(d.end_ms, tz),
            "state_seconds": {s: seconds_text(v) for s, v in d.state_ms.items()},
            "billable_seconds": seconds_text(d.billable_ms),
            "known_seconds": seconds_text(d.known_ms),
            "unknown_seconds": seconds_text(d.unknown_ms),
            "gaps": [_gap_json(g, tz) for g in d.gaps],
            "running_hours": dec(to_decimal(hours_of(d.state_ms["running"]), METERED_PLACES)),
            "counter_hours": None
            if d.counter_ms is None
            else dec(to_decimal(hours_of(d.counter_ms), METERED_PLACES)),
            "counter_seconds": None if d.counter_ms is None else seconds_text(d.counter_ms),
            "counter_anomalies": [_event_json(e, tz) for e in d.counter_events],
            "raw_samples": d.samples,
            "first_sample": _at(d.first_sample_ms, tz),
            "last_sample": _at(d.last_sample_ms, tz),
            "counter_readings": d.counter_readings,
        }
        for d in x.days
    ]
    minimum = x.minimum
    true_up = None
    if minimum is not None:
        true_up = {
            "minimum_hours": dec(c.minimum_hours or Decimal(0)),
            "proration": c.proration,
            "days_covered": minimum.days_covered,
            "days": minimum.days,
            "applies_hours": dec(minimum.hours),
            "contract_billable_hours": dec(
                sum(
                    (ln.billable_hours for ln in x.statement.lines if ln.kind == "usage"),
                    Decimal(0),
                )
            ),
            "line": None if x.true_up is None else line_json(x.true_up),
        }
    return {
        "contract_id": c.id,
        "customer": c.customer,
        "currency": c.currency,
        "period_start": x.statement.period_start.isoformat(),
        "period_end": x.statement.period_end.isoformat(),
        "machine": x.meter.machine,
        "site": x.key.site,
        "method": c.method,
        "billable_states": list(c.billable_states),
        "windows": [{"start": _at(a, tz), "end": _at(b, tz)} for a, b in x.windows],
        "days": days,
        "gaps": [_gap_json(g, tz) for g in x.gaps],
        "counter_anomalies": [_event_json(e, tz) for e in x.counter_events],
        "metered": {
            "milliseconds": x.metered_ms,
            "hours": dec(to_decimal(hours_of(x.metered_ms), METERED_PLACES)),
        },
        "rounding": {
            "increment_hours": dec(c.rounding_hours),
            "mode": c.rounding_mode,
            "billable_hours": dec(x.billable_hours),
        },
        "bands": [
            {
                "band": segment.key,
                "rate": dec(segment.rate),
                "overuse": segment.overuse,
                "billable_hours": dec(billable),
                "metered_hours": dec(to_decimal(metered, METERED_PLACES)),
                "amount": dec(amount),
            }
            for segment, billable, metered, amount in x.bands
        ],
        "true_up": true_up,
        "raw_data": {
            "measurement": TELEMETRY,
            "where": key_clause(x.key),
            "first_sample": _at(x.loaded[0], tz) if x.loaded else None,
            "last_sample": _at(x.loaded[1], tz) if x.loaded else None,
            "samples": sum(d.samples for d in x.days),
            "counter_readings": sum(d.counter_readings for d in x.days),
            "counter_before": None
            if x.counter_before is None
            else {"at": _at(x.counter_before[0], tz), "seconds": seconds_text(x.counter_before[1])},
        },
        "lines": [line_json(line) for line in x.lines],
        "checks": [
            {
                "figure": k.figure,
                "explained": k.explained,
                "statement": k.statement,
                "equal": k.equal,
            }
            for k in x.checks
        ],
    }


__all__ = ["Check", "Day", "Explanation", "explain", "explain_line", "explanation_json"]
