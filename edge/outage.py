"""A polled device's outage: when it began and the failures since (Modbus, OPC UA).

An outage is logged once as it starts and once as it ends, and reconnects back off by the
number of failures in it.
"""

from __future__ import annotations

import time

from common.backoff import backoff_delay


class Outage:
    def __init__(self) -> None:
        self.since: float | None = None  # time.monotonic() of the first failure
        self.failures = 0

    @property
    def down(self) -> bool:
        return self.since is not None

    def failed(self) -> bool:
        """Count a failure; True if it starts an outage (the caller logs it then)."""
        self.failures += 1
        if self.since is not None:
            return False
        self.since = time.monotonic()
        return True

    def recovered(self) -> float | None:
        """End the outage: the seconds it lasted, or None if there was none."""
        lasted = None if self.since is None else time.monotonic() - self.since
        self.since = None
        self.failures = 0
        return lasted

    def delay(self, low: float, high: float) -> float:
        """How long to wait before the next try."""
        return backoff_delay(self.failures - 1, low, high)
