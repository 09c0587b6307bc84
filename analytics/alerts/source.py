"""Reading a ``DataWindow`` from InfluxDB: the I/O edge of the evaluation.

Step observations are computed by InfluxDB itself (``GROUP BY time(step)``): the mean
of each rule value and the last state per step, and which steps had any telemetry.
Presence comes from ``machine_status`` (the retained status and the agent's will).
Service-interval inputs come from maintenance records and the machine's running time
(counted by the usage engine, as billing counts it: ``run_hours``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from analytics.alerts.maintenance import maintenance_records
from analytics.alerts.rules import NoDataRule, RuleSet, ServiceIntervalRule
from analytics.alerts.run_hours import running_intervals, running_seconds_since
from analytics.alerts.window import DataWindow, MachineData, RunningTime, ServiceData
from analytics.usage import DEFAULT_MAX_GAP
from store import InfluxClient, Series, quote_ident, time_literal
from store.schema import (
    FIELD_ONLINE,
    FIELD_STATE,
    MACHINE_STATUS,
    TAG_LINE,
    TAG_MACHINE,
    TAG_SITE,
    TELEMETRY,
)
from wire import MachineRef, to_epoch_ms

_CHUNK_STEPS = 1440  # steps per query: a day at the default 1-minute step
_BY_MACHINE = f"{quote_ident(TAG_SITE)}, {quote_ident(TAG_LINE)}, {quote_ident(TAG_MACHINE)}"


@dataclass
class _Acc:
    """One machine's data as it is being collected."""

    ref: MachineRef
    ref_ts: int = -1
    values: dict[str, dict[int, float]] = field(default_factory=dict)
    states: dict[int, str] = field(default_factory=dict)
    seen: set[int] = field(default_factory=set)
    state_before: tuple[int, str] | None = None
    last_seen_before: int | None = None
    status_before: tuple[int, bool] | None = None
    status: list[tuple[int, bool]] = field(default_factory=list)

    def place(self, series: Series, ts: int) -> None:
        """Keep the site/line of the latest series that mentions the machine."""
        if ts >= self.ref_ts:
            self.ref_ts = ts
            self.ref = MachineRef(
                series.tags.get(TAG_SITE, self.ref.site),
                series.tags.get(TAG_LINE, self.ref.line),
                self.ref.machine,
            )


class WindowSource:
    """Builds data windows for a rule set from one InfluxDB database.

    Keeps a small cache of run-hours already counted (for service-interval rules), so
    the live service, which reads contiguous windows, does not recount months of history
    every cycle. A fresh ``WindowSource`` (a replay) counts from scratch.
    """

    def __init__(
        self, client: InfluxClient, rules: RuleSet, max_gap: timedelta = DEFAULT_MAX_GAP
    ) -> None:
        self.client = client
        self.rules = rules
        self.max_gap = max_gap
        # (machine, maintenance kind) → (anchor ms or None, window start ms, run seconds)
        self._run_cache: dict[tuple[str, str], tuple[int | None, int, float]] = {}
        self._first_seen_ms: dict[str, int] = {}  # machine → its first sample (ms)

    @property
    def lookback(self) -> timedelta:
        """How far before a window machines are looked for (the longest no-data lookback)."""
        spans = [r.lookback for r in self.rules.rule if isinstance(r, NoDataRule)]
        return max([timedelta(days=1), *spans])

    def load(self, start: datetime, end: datetime) -> DataWindow:
        """The window ``[start, end)``; both must lie on the step grid."""
        step = self.rules.step
        step_ms = int(step / timedelta(milliseconds=1))
        if to_epoch_ms(start) % step_ms or to_epoch_ms(end) % step_ms:
            raise ValueError(f"window [{start}, {end}) is not aligned to the {step} step grid")
        acc: dict[str, _Acc] = {}
        if end > start:
            self._before(acc, start)
            lo = start
            while lo < end:
                hi = min(lo + step * _CHUNK_STEPS, end)
                self._steps(acc, lo, hi, step_ms)
                lo = hi
            self._status(acc, start, end)
        machines: dict[str, MachineData] = {}
        records = self._records(acc, end)
        service_inputs = self._service(acc, start, end, records)
        for name, a in acc.items():
            machines[name] = MachineData(
                ref=a.ref,
                kind=self.rules.kind_of(name),
                values=a.values,
                states=a.states,
                seen=frozenset(a.seen),
                state_before=a.state_before[1] if a.state_before else None,
                last_seen_before=a.last_seen_before,
                status_before=a.status_before,
                status=tuple(sorted(a.status)),
                service=service_inputs.get(name, {}),
                records=records.get(name, {}),
            )
        return DataWindow(start, end, step, machines)

    def extent(self, since: datetime) -> dict[str, tuple[int, int]]:
        """Per machine, its first and latest sample at or after ``since`` (epoch ms).

        Only the fields rules read (``state`` and the rule values) count. The latest
        sample tells the live service how far a machine's data has arrived: samples of a
        machine are stored in time order (the edge replays its buffer oldest first), so
        every step that ended before it is complete.
        """
        fields = [FIELD_STATE, *self.rules.value_names()]
        where = f"WHERE time >= {time_literal(since)}"
        statements = [
            f"SELECT {selector}({quote_ident(f)}) FROM {quote_ident(TELEMETRY)} {where} "
            f"GROUP BY {_BY_MACHINE}"
            for f in fields
            for selector in ("first", "last")
        ]
        out: dict[str, tuple[int, int]] = {}
        for index, result in enumerate(self.client.query("; ".join(statements))):
            for series in result:
                if not series.values:
                    continue
                machine = series.tags.get(TAG_MACHINE, "")
                ts = int(series.values[0][0])
                first, last = out.get(machine, (ts, ts))
                out[machine] = (min(first, ts), last) if index % 2 == 0 else (first, max(last, ts))
        return out

    def _acc(self, acc: dict[str, _Acc], series: Series) -> _Acc:
        machine = series.tags.get(TAG_MACHINE, "")
        if machine not in acc:
            acc[machine] = _Acc(
                MachineRef(series.tags.get(TAG_SITE, ""), series.tags.get(TAG_LINE, ""), machine)
            )
        return acc[machine]

    def _before(self, acc: dict[str, _Acc], start: datetime) -> None:
        """Who was reporting before the window, their last state and last sample time."""
        since = time_literal(start - self.lookback)
        until = time_literal(start)
        fields = [FIELD_STATE, *self.rules.value_names()]
        statements = [
            f"SELECT last({quote_ident(f)}) FROM {quote_ident(TELEMETRY)} "
            f"WHERE time >= {since} AND time < {until} GROUP BY {_BY_MACHINE}"
            for f in fields
        ]
        statements.append(
            f"SELECT last({quote_ident(FIELD_ONLINE)}) FROM {quote_ident(MACHINE_STATUS)} "
            f"WHERE time >= {since} AND time < {until} GROUP BY {_BY_MACHINE}"
        )
        results = self.client.query("; ".join(statements))
        for index, result in enumerate(results):
            for series in result:
                if not series.values:
                    continue
                ts, value = int(series.values[0][0]), series.values[0][1]
                a = self._acc(acc, series)
                a.place(series, ts)
                if index == len(statements) - 1:
                    a.status_before = (ts, bool(value))
                    continue
                a.last_seen_before = max(a.last_seen_before or ts, ts)
                if index == 0 and value is not None:
                    a.state_before = (ts, str(value))

    def _steps(self, acc: dict[str, _Acc], lo: datetime, hi: datetime, step_ms: int) -> None:
        names = self.rules.value_names()
        aggregates = [f"mean({quote_ident(n)}) AS {quote_ident(n)}" for n in names]
        aggregates.append(f"last({quote_ident(FIELD_STATE)}) AS {quote_ident(FIELD_STATE)}")
        where = f"WHERE time >= {time_literal(lo)} AND time < {time_literal(hi)}"
        group = f"GROUP BY time({step_ms}ms), {_BY_MACHINE} fill(none)"
        results = self.client.query(
            f"SELECT {', '.join(aggregates)} FROM {quote_ident(TELEMETRY)} {where} {group}; "
            f"SELECT count(*) FROM {quote_ident(TELEMETRY)} {where} {group}"
        )
        for series in results[0]:
            a = self._acc(acc, series)
            columns = series.columns
            for row in series.values:
                t = int(row[0]) + step_ms  # label steps by their end
                for name, value in zip(columns[1:], row[1:], strict=True):
                    if value is None:
                        continue
                    if name == FIELD_STATE:
                        a.states[t] = str(value)
                    else:
                        a.values.setdefault(name, {})[t] = float(value)
            if series.values:
                a.place(series, int(series.values[-1][0]))
        for series in results[1]:
            a = self._acc(acc, series)
            for row in series.values:
                if any(isinstance(v, int | float) and v > 0 for v in row[1:]):
                    a.seen.add(int(row[0]) + step_ms)

    def _status(self, acc: dict[str, _Acc], start: datetime, end: datetime) -> None:
        for series in self.client.query_series(
            f"SELECT {quote_ident(FIELD_ONLINE)} FROM {quote_ident(MACHINE_STATUS)} "
            f"WHERE time >= {time_literal(start)} AND time < {time_literal(end)} GROUP BY {_BY_MACHINE}"
        ):
            a = self._acc(acc, series)
            a.status.extend((int(ts), bool(online)) for ts, online in series.values)

    def _records(
        self, acc: dict[str, _Acc], end: datetime
    ) -> dict[str, dict[str, tuple[int, ...]]]:
        """Per machine and kind, the maintenance records before ``end`` its rules need (ms)."""
        wanted = {m: kinds for m in acc if (kinds := self.rules.maintenance_kinds(m))}
        if not wanted:
            return {}
        out: dict[str, dict[str, list[int]]] = {}
        for record in maintenance_records(self.client, end, set(wanted)):
            if record.kind in wanted[record.ref.machine]:
                times = out.setdefault(record.ref.machine, {}).setdefault(record.kind, [])
                times.append(to_epoch_ms(record.at))
        return {m: {k: tuple(sorted(t)) for k, t in kinds.items()} for m, kinds in out.items()}

    def _service(
        self,
        acc: dict[str, _Acc],
        start: datetime,
        end: datetime,
        records: dict[str, dict[str, tuple[int, ...]]],
    ) -> dict[str, dict[str, ServiceData]]:
        """Per machine and maintenance kind: run seconds before the window, records, running time."""
        wanted: dict[str, set[str]] = {}
        for machine in acc:
            kind = self.rules.kind_of(machine)
            for rule in self.rules.rule:
                if isinstance(rule, ServiceIntervalRule) and rule.selects(machine, kind):
                    wanted.setdefault(machine, set()).add(rule.maintenance_kind)
        if not wanted or end <= start:
            return {}
        start_ms, end_ms = to_epoch_ms(start), to_epoch_ms(end)
        running = running_intervals(self.client, set(wanted), start, end, self.max_gap)
        out: dict[str, dict[str, ServiceData]] = {}
        anchors = {
            (machine, kind): max(
                (t for t in records.get(machine, {}).get(kind, ()) if t < start_ms), default=None
            )
            for machine, kinds in wanted.items()
            for kind in kinds
        }
        before = self._runs_before(anchors, start_ms)
        for machine, kinds in wanted.items():
            timeline = RunningTime(tuple(running.get(machine, [])))
            for kind in sorted(kinds):
                times = records.get(machine, {}).get(kind, ())
                inside = tuple(t for t in times if start_ms <= t < end_ms)
                out.setdefault(machine, {})[kind] = ServiceData(
                    before[(machine, kind)], inside, timeline
                )
        return out

    def _runs_before(
        self, anchors: dict[tuple[str, str], int | None], start_ms: int
    ) -> dict[tuple[str, str], float]:
        """Per (machine, kind): run seconds from its anchor (the last service, else the
        machine's first data) to the window start: carried from the previous cycle and
        grown by what ran since, or counted afresh when the anchor changed (and on the
        first cycle); read for the whole fleet at once."""
        base: dict[tuple[str, str], float] = {}
        since: dict[tuple[str, str], int] = {}
        for key, anchor in anchors.items():
            cached = self._run_cache.get(key)
            if cached is not None and cached[0] == anchor and cached[1] <= start_ms:
                base[key], since[key] = cached[2], cached[1]
                continue
            begin = anchor if anchor is not None else self._first_seen(key[0])
            base[key] = 0.0
            if begin is not None and begin < start_ms:
                since[key] = begin
        out = dict(base)
        pending = dict(since)
        while pending:  # one fleet read per round; a machine appears once in a round
            round_: dict[str, int] = {}
            keys: list[tuple[str, str]] = []
            for key, lo in list(pending.items()):
                if key[0] not in round_:
                    round_[key[0]] = lo
                    keys.append(key)
                    del pending[key]
            added = running_seconds_since(self.client, round_, start_ms, self.max_gap)
            for key in keys:
                out[key] = base[key] + added[key[0]]
        for key, anchor in anchors.items():
            self._run_cache[key] = (anchor, start_ms, out[key])
        return out

    def _first_seen(self, machine: str) -> int | None:
        """When the machine's first sample was stored; read for every machine at once
        (again when an unknown one turns up)."""
        if machine not in self._first_seen_ms:
            series = self.client.query_series(
                f"SELECT first({quote_ident(FIELD_STATE)}) FROM {quote_ident(TELEMETRY)} "
                f"GROUP BY {quote_ident(TAG_MACHINE)}"
            )
            for one in series:
                if one.values:
                    self._first_seen_ms[one.tags[TAG_MACHINE]] = int(one.values[0][0])
        return self._first_seen_ms.get(machine)


def load_window(client: InfluxClient, rules: RuleSet, start: datetime, end: datetime) -> DataWindow:
    """A one-off window (replays); the live service keeps a ``WindowSource``."""
    return WindowSource(client, rules).load(start, end)
