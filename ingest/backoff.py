"""Retry delays: exponential backoff with jitter (pure)."""

from __future__ import annotations

import random


def backoff_delay(
    attempt: int, initial: float, maximum: float, rng: random.Random | None = None
) -> float:
    """Delay before retry number ``attempt`` (0-based): ``initial·2^attempt`` capped at
    ``maximum``, then "equal jitter" — uniformly in [half, full] of that — so that many
    workers failing together do not retry in lockstep, yet never retry at once."""
    ceiling = min(maximum, initial * 2.0 ** min(attempt, 62))
    return ceiling / 2 + (rng or random).uniform(0, ceiling / 2)
