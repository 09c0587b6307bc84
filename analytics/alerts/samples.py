"""A ``DataWindow`` from samples held in memory: what InfluxDB would compute, without it.

``source.WindowSource`` asks InfluxDB for the step observations (``GROUP BY
time(step)``: the mean of each value, the last state, whether any sample arrived);
``window_from_samples`` computes the same from samples in memory, in time order, the
way InfluxDB's ``mean()`` does (a running sum over the step's samples divided by their
count). Backtests over simulated fleets use it to replay many fleets through the same
``evaluate`` quickly; ``tests/analytics/alerts/test_alerts_backtest.py`` checks that both sources give
the same alerts for a fleet that went through the real pipeline.

Service-interval inputs (running time) are not built here: a backtest scores
threshold and anomaly rules only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta

from analytics.alerts.rules import RuleSet
from analytics.alerts.window import DataWindow, MachineData
from wire import MachineRef, Sample, to_epoch_ms


def window_from_samples(
    rules: RuleSet,
    start: datetime,
    end: datetime,
    machines: Mapping[MachineRef, Iterable[Sample]],
    records: Mapping[str, Mapping[str, Sequence[datetime]]] | None = None,
    lookback: timedelta = timedelta(days=1),
) -> DataWindow:
    """The window ``[start, end)`` (on the step grid) of ``machines``' samples.

    Each machine's samples must be in time order. ``records``: per machine, maintenance
    record times by kind (``service`` …). Samples up to ``lookback`` before ``start``
    give the state and last-seen time before the window, as ``WindowSource`` does.
    """
    step_ms = int(rules.step / timedelta(milliseconds=1))
    lo, hi = to_epoch_ms(start), to_epoch_ms(end)
    if lo % step_ms or hi % step_ms:
        raise ValueError(f"window [{start}, {end}) is not aligned to the {rules.step} step grid")
    names = rules.value_names()
    since = lo - int(lookback / timedelta(milliseconds=1))
    out: dict[str, MachineData] = {}
    for ref, samples in machines.items():
        sums: dict[str, dict[int, float]] = {name: {} for name in names}
        counts: dict[str, dict[int, int]] = {name: {} for name in names}
        states: dict[int, str] = {}
        seen: set[int] = set()
        state_before: str | None = None
        last_seen_before: int | None = None
        for sample in samples:
            ts = sample.ts_ms
            if ts < lo:
                if ts >= since:
                    last_seen_before = ts
                    state_before = sample.state or state_before
                continue
            if ts >= hi:
                break
            t = ts - ts % step_ms + step_ms  # steps are labelled by their end
            seen.add(t)
            if sample.state is not None:
                states[t] = sample.state
            for name in names:
                value = sample.values.get(name)
                if value is not None:
                    sums[name][t] = sums[name].get(t, 0.0) + value
                    counts[name][t] = counts[name].get(t, 0) + 1
        if not seen and last_seen_before is None:
            continue
        kinds = (records or {}).get(ref.machine, {})
        out[ref.machine] = MachineData(
            ref=ref,
            kind=rules.kind_of(ref.machine),
            values={
                name: {t: total / counts[name][t] for t, total in sums[name].items()}
                for name in names
                if sums[name]
            },
            states=states,
            seen=frozenset(seen),
            state_before=state_before,
            last_seen_before=last_seen_before,
            records={
                kind: tuple(sorted(to_epoch_ms(at) for at in times if at < end))
                for kind, times in kinds.items()
            },
        )
    return DataWindow(start, end, rules.step, out)
