"""Running time of machines, for service-interval rules.

``run_seconds`` (hours since the last service, up to a window's start) asks the usage
engine (``analytics.usage.machine_usage``), so alerts count run-hours exactly as
billing does. Inside an evaluation window the running *intervals* are needed step by
step; ``running_intervals`` derives them from the raw state samples with the same
rule (a state holds until the next sample, never longer than ``max_gap``).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from analytics.usage import machine_usage
from contract import to_epoch_ms
from store import InfluxClient, quote_ident, quote_string, time_literal
from store.schema import FIELD_STATE, TAG_MACHINE, TELEMETRY

DEFAULT_MAX_GAP = timedelta(minutes=5)
_CHUNK = timedelta(days=1)  # one query per day of raw states keeps responses small


def intervals_from_samples(
    samples: Iterable[tuple[int, str]],
    start: int,
    end: int,
    max_gap_ms: int,
    state: str = "running",
) -> list[tuple[int, int]]:
    """Intervals ``[a, b)`` (ms) in ``[start, end)`` where the held state equals ``state``.

    ``samples`` are (ts ms, state) sorted by time; each state holds until the next
    sample but at most ``max_gap_ms``.
    """
    out: list[tuple[int, int]] = []
    items = list(samples)
    for i, (ts, value) in enumerate(items):
        if value != state:
            continue
        stop = ts + max_gap_ms
        if i + 1 < len(items):
            stop = min(stop, items[i + 1][0])
        a, b = max(ts, start), min(stop, end)
        if b <= a:
            continue
        if out and out[-1][1] >= a:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def running_intervals(
    client: InfluxClient,
    machines: Iterable[str] | None,
    start: datetime,
    end: datetime,
    max_gap: timedelta = DEFAULT_MAX_GAP,
) -> dict[str, list[tuple[int, int]]]:
    """Running intervals per machine within ``[start, end)``, from raw state samples."""
    wanted = set(machines) if machines is not None else None
    samples: dict[str, list[tuple[int, str]]] = {}
    lo = start - max_gap
    while lo < end:
        hi = min(lo + _CHUNK, end)
        where = ""
        if wanted is not None:
            if not wanted:
                return {}
            where = (
                " AND ("
                + " OR ".join(
                    f"{quote_ident(TAG_MACHINE)} = {quote_string(m)}" for m in sorted(wanted)
                )
                + ")"
            )
        series = client.query_series(
            f"SELECT {quote_ident(FIELD_STATE)} FROM {quote_ident(TELEMETRY)} "
            f"WHERE time >= {time_literal(lo)} AND time < {time_literal(hi)}{where} "
            f"GROUP BY {quote_ident(TAG_MACHINE)}"
        )
        for s in series:
            bucket = samples.setdefault(s.tags.get(TAG_MACHINE, ""), [])
            bucket.extend((int(row[0]), row[1]) for row in s.values if row[1] is not None)
        lo = hi
    gap_ms = int(max_gap.total_seconds() * 1000)
    return {
        machine: intervals_from_samples(sorted(rows), to_epoch_ms(start), to_epoch_ms(end), gap_ms)
        for machine, rows in samples.items()
    }


def run_seconds(
    client: InfluxClient,
    machine: str,
    start: datetime,
    end: datetime,
    max_gap: timedelta = DEFAULT_MAX_GAP,
) -> float:
    """Seconds ``machine`` spent running within ``[start, end)`` (the usage engine's count)."""
    if end <= start:
        return 0.0
    return machine_usage(client, machine, start, end, max_gap=max_gap).state_seconds.get(
        "running", 0.0
    )
