"""Retry delays: exponential backoff with jitter (pure). The one helper every retry loop
uses: the edge's reconnects (MQTT, Modbus, OPC UA), the ingest's writes to InfluxDB and the
alert outbox's deliveries."""

from __future__ import annotations

import random


def backoff_delay(
    attempt: int,
    initial: float,
    maximum: float,
    rng: random.Random | None = None,
    *,
    jitter: bool = True,
) -> float:
    """Delay before retry number ``attempt`` (0-based): ``initial·2^attempt`` capped at
    ``maximum``, then "equal jitter" — uniformly in [half, full] of that — so that many
    workers failing together do not retry in lockstep, yet never retry at once.
    ``jitter=False`` gives the ceiling itself (one worker per channel: nothing to spread)."""
    ceiling = float(min(maximum, initial * 2.0 ** min(max(attempt, 0), 62)))
    if not jitter:
        return ceiling
    return ceiling / 2 + (rng or random).uniform(0, ceiling / 2)
