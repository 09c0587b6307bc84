"""How far past a window its samples reach: the hours a write can change after it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from analytics.machines import MachineKey, key_clause
from analytics.usage import duration_ms
from store import InfluxClient, quote_ident
from store.schema import FIELD_RUN_SECONDS_TOTAL, FIELD_STATE, TELEMETRY


def _first(result: list[Any]) -> int | None:
    for series in result:
        for row in series.values:
            return int(row[0])
    return None


def affected_end(
    client: InfluxClient,
    key: MachineKey,
    end_ms: int,
    max_gap: timedelta,
    carry_horizon: timedelta,
) -> int:
    """The end of what samples before ``end_ms`` can change in the hours after it.

    The last sample's state holds up to ``max_gap`` past it; heartbeats after it carry
    its state until the next stated sample (or the chain breaks); the next meter reading
    after it reports a delta relative to it.
    """
    where = key_clause(key)
    gap_end, horizon_end = end_ms + duration_ms(max_gap), end_ms + duration_ms(carry_horizon)
    telemetry = quote_ident(TELEMETRY)
    results = client.query(
        f"SELECT * FROM {telemetry} WHERE {where} AND time >= {end_ms}ms "
        f"AND time < {gap_end}ms ORDER BY time ASC LIMIT 1; "
        f"SELECT first({quote_ident(FIELD_STATE)}) FROM {telemetry} WHERE {where} "
        f"AND time >= {end_ms}ms AND time < {horizon_end}ms; "
        f"SELECT * FROM {telemetry} WHERE {where} AND time >= {end_ms}ms "
        f"AND time < {horizon_end}ms ORDER BY time DESC LIMIT 1; "
        f"SELECT first({quote_ident(FIELD_RUN_SECONDS_TOTAL)}) FROM {telemetry} "
        f"WHERE {where} AND time >= {end_ms}ms"
    )
    next_sample, next_state, last_sample, next_counter = results
    until = gap_end
    if _is_heartbeat(next_sample):
        # A heartbeat right after the window continues its last state: everything up to
        # the next stated sample (or the end of the heartbeat chain) may change.
        state_at = _first(next_state)
        last_at = _first(last_sample)
        if state_at is not None:
            until = max(until, state_at)
        elif last_at is not None:
            until = max(until, min(last_at + duration_ms(max_gap), horizon_end))
    counter_at = _first(next_counter)
    if counter_at is not None:
        until = max(until, counter_at + 1)
    return until


def _is_heartbeat(result: list[Any]) -> bool:
    """Whether the single row of ``SELECT * … LIMIT 1`` is a sample without a state."""
    for series in result:
        if series.values and FIELD_STATE in series.columns:
            return series.values[0][series.columns.index(FIELD_STATE)] is None
        if series.values:
            return True
    return False
