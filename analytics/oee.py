"""OEE: availability × performance × quality, per machine or line, per shift, day or week.

Definitions (docs/oee.md has a worked example):

- *planned production time*: the shift runs of the machine's schedule, less breaks, less
  holidays (``analytics.shifts``);
- availability = running time / planned production time (both within planned time);
- performance = ideal cycle time × parts made / running time;
- quality = good parts / parts made;
- OEE = availability × performance × quality = ideal cycle time × good parts / planned time.

A figure that cannot be known is ``None`` ("not available"), never a guess: no schedule
for the site (no planned time), no ``parts_total`` counter or no ideal cycle in the plant
file (performance), no ``parts_good_total`` counter (quality); OEE needs all three.
A group (a day, a line) sums its members' exact figures first: performance and quality
over the members that have them, OEE over those that have everything, and it says how many
members that was (``machines``, ``with_parts``).

>>> total = sum((Oee.of(m.key, m.plan, r) for m in floor for r in m.runs), Oee())  # doctest: +SKIP
>>> total.availability                                                         # doctest: +SKIP
0.8123
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

from analytics.floor import MachineFloor, RunCounts
from analytics.machines import MachineKey
from analytics.plant import MachinePlan

Bucket = Literal["shift", "day", "week"]
BUCKETS: tuple[Bucket, ...] = ("shift", "day", "week")


@dataclass(frozen=True)
class Oee:
    """Summed figures of any group of machine-runs (``Oee()`` is the empty group)."""

    planned_ms: int = 0
    running_ms: int = 0
    known_ms: int = 0
    stop_ms: int = 0
    stops: int = 0
    short_stop_ms: int = 0
    parts_total: int | None = None  # over the members with a parts_total counter
    parts_good: int | None = None  # over the members with a parts_good_total counter
    # performance = ideal_run_ms / perf_running_ms, over members with parts and an ideal cycle
    ideal_run_ms: int = 0
    perf_running_ms: int = 0
    # quality = quality_good / quality_total, over members with both counters
    quality_good: int = 0
    quality_total: int = 0
    # OEE = ideal_good_ms / oee_planned_ms, over members with both counters and an ideal cycle
    ideal_good_ms: int = 0
    oee_planned_ms: int = 0
    machines: frozenset[MachineKey] = frozenset()
    with_performance: frozenset[MachineKey] = frozenset()
    with_quality: frozenset[MachineKey] = frozenset()
    with_oee: frozenset[MachineKey] = frozenset()

    @classmethod
    def of(cls, key: MachineKey, plan: MachinePlan, run: RunCounts) -> Oee:
        """One machine's run."""
        ideal = round(plan.ideal_cycle_s * 1000) if plan.ideal_cycle_s is not None else None
        total, good = run.parts_total, run.parts_good
        performance = total is not None and ideal is not None
        quality = total is not None and good is not None
        everything = performance and quality
        only = frozenset({key})
        return cls(
            planned_ms=run.planned_ms,
            running_ms=run.running_ms,
            known_ms=run.known_ms,
            stop_ms=run.stop_ms,
            stops=run.stops,
            short_stop_ms=run.short_stop_ms,
            parts_total=total,
            parts_good=good,
            ideal_run_ms=(ideal or 0) * (total or 0) if performance else 0,
            perf_running_ms=run.running_ms if performance else 0,
            quality_good=(good or 0) if quality else 0,
            quality_total=(total or 0) if quality else 0,
            ideal_good_ms=(ideal or 0) * (good or 0) if everything else 0,
            oee_planned_ms=run.planned_ms if everything else 0,
            machines=only,
            with_performance=only if performance else frozenset(),
            with_quality=only if quality else frozenset(),
            with_oee=only if everything else frozenset(),
        )

    def __add__(self, other: Oee) -> Oee:
        def opt(a: int | None, b: int | None) -> int | None:
            return a if b is None else b if a is None else a + b

        return Oee(
            self.planned_ms + other.planned_ms,
            self.running_ms + other.running_ms,
            self.known_ms + other.known_ms,
            self.stop_ms + other.stop_ms,
            self.stops + other.stops,
            self.short_stop_ms + other.short_stop_ms,
            opt(self.parts_total, other.parts_total),
            opt(self.parts_good, other.parts_good),
            self.ideal_run_ms + other.ideal_run_ms,
            self.perf_running_ms + other.perf_running_ms,
            self.quality_good + other.quality_good,
            self.quality_total + other.quality_total,
            self.ideal_good_ms + other.ideal_good_ms,
            self.oee_planned_ms + other.oee_planned_ms,
            self.machines | other.machines,
            self.with_performance | other.with_performance,
            self.with_quality | other.with_quality,
            self.with_oee | other.with_oee,
        )

    @property
    def availability(self) -> float | None:
        return self.running_ms / self.planned_ms if self.planned_ms else None

    @property
    def performance(self) -> float | None:
        return self.ideal_run_ms / self.perf_running_ms if self.perf_running_ms else None

    @property
    def quality(self) -> float | None:
        return self.quality_good / self.quality_total if self.quality_total else None

    @property
    def oee(self) -> float | None:
        return self.ideal_good_ms / self.oee_planned_ms if self.oee_planned_ms else None

    @property
    def coverage(self) -> float | None:
        """Share of planned time whose state is known (below 1: figures are incomplete)."""
        return self.known_ms / self.planned_ms if self.planned_ms else None

    def missing(self) -> list[str]:
        """Why figures are not available (empty when every figure is)."""
        n = len(self.machines)
        if not self.planned_ms:
            return ["no planned time"]
        if len(self.with_oee) == n:
            return []
        if n > 1:
            return [f"P/Q/OEE of {len(self.with_oee)} of {n}"]
        if self.parts_total is None:
            return ["no part counter"]
        notes = [] if self.with_performance else ["no ideal cycle"]
        if self.parts_good is None:
            notes.append("no good-part counter")
        return notes

    def to_json(self) -> dict[str, Any]:
        """The figures (fractions, not percent; null: not available) and their sums."""
        return {
            "planned_s": self.planned_ms / 1000,
            "running_s": self.running_ms / 1000,
            "known_s": self.known_ms / 1000,
            "stop_s": self.stop_ms / 1000,
            "stops": self.stops,
            "short_stop_s": self.short_stop_ms / 1000,
            "parts_total": self.parts_total,
            "parts_good": self.parts_good,
            "availability": _round(self.availability),
            "performance": _round(self.performance),
            "quality": _round(self.quality),
            "oee": _round(self.oee),
            "coverage": _round(self.coverage),
            "machines": len(self.machines),
            "with_performance": len(self.with_performance),
            "with_quality": len(self.with_quality),
            "with_oee": len(self.with_oee),
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


@dataclass(frozen=True)
class OeeRow:
    """One row of an OEE report: a machine or a line, over one bucket."""

    scope: Literal["machine", "line"]
    site: str
    name: str  # machine id or line id
    bucket: str  # shift "2026-03-02 early", day "2026-03-02", week "2026-W10"
    start_ms: int  # the first run's start
    figures: Oee


def bucket_of(run_day: date, shift: str, by: Bucket) -> str:
    if by == "shift":
        return f"{run_day.isoformat()} {shift}"
    if by == "day":
        return run_day.isoformat()
    iso = run_day.isocalendar()
    return f"{iso.year}-W{iso.week:02d}"


def oee_rows(
    floors: Iterable[MachineFloor], by: Bucket, *, lines: bool = True, machines: bool = True
) -> list[OeeRow]:
    """Per machine (and per line) and bucket, sorted by site, scope, name and time."""
    per_machine: dict[tuple[str, str, str], list[tuple[int, Oee]]] = {}
    per_line: dict[tuple[str, str, str], list[tuple[int, Oee]]] = {}
    for floor in floors:
        for run in floor.runs:
            label = bucket_of(run.run.day, run.run.shift, by)
            item = (run.run.start_ms, Oee.of(floor.key, floor.plan, run))
            per_machine.setdefault((floor.key.site, floor.key.machine, label), []).append(item)
            per_line.setdefault((floor.key.site, floor.line, label), []).append(item)
    rows: list[OeeRow] = []
    groups: list[tuple[Literal["machine", "line"], dict[Any, Any]]] = []
    if machines:
        groups.append(("machine", per_machine))
    if lines:
        groups.append(("line", per_line))
    for scope, table in groups:
        for (site, name, label), items in table.items():
            total = sum((o for _, o in items), Oee())
            rows.append(OeeRow(scope, site, name, label, min(t for t, _ in items), total))
    order = {"machine": 0, "line": 1}
    return sorted(rows, key=lambda r: (r.site, order[r.scope], r.name, r.start_ms, r.bucket))


def fleet_total(floors: Iterable[MachineFloor]) -> Oee:
    """Everything in ``floors`` summed."""
    return sum((Oee.of(f.key, f.plan, r) for f in floors for r in f.runs), Oee())


def per_day(floor: MachineFloor) -> dict[date, Oee]:
    """One machine's figures per production day."""
    out: dict[date, Oee] = {}
    for run in floor.runs:
        out[run.run.day] = out.get(run.run.day, Oee()) + Oee.of(floor.key, floor.plan, run)
    return out
