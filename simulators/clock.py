"""Simulated time for the fleet runner: real time, a speed factor, or as fast as possible."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta


class SimClock:
    """Simulated time: `speed=None` means as fast as possible, else sim seconds per wall second
    (1.0 = real time).

    A paced clock starts counting when it is created: ``now()`` is
    ``start + elapsed_wall * speed``. An unpaced clock stands at the latest time it was
    asked to reach with ``sleep_until`` (``start`` at first).
    """

    def __init__(self, start: datetime, speed: float | None) -> None:
        if start.tzinfo is None or start.utcoffset() is None:
            raise ValueError(f"SimClock start must be timezone-aware, got {start!r}")
        if speed is not None and not speed > 0:
            raise ValueError(
                f"SimClock speed must be > 0 or None (as fast as possible), got {speed}"
            )
        self.start = start
        self.speed = speed
        self._wall0 = time.monotonic()
        self._reached = start

    @property
    def paced(self) -> bool:
        return self.speed is not None

    def now(self) -> datetime:
        """The current simulated time."""
        if self.speed is None:
            return self._reached
        return self.start + timedelta(seconds=(time.monotonic() - self._wall0) * self.speed)

    async def sleep_until(self, t: datetime) -> None:
        """Wait until simulated time ``t``; returns at once for an unpaced clock."""
        if self.speed is None:
            self._reached = max(self._reached, t)
            await asyncio.sleep(0)  # still yield, so an as-fast-as-possible loop stays fair
            return
        delay = (t - self.now()).total_seconds() / self.speed
        if delay > 0:
            await asyncio.sleep(delay)
