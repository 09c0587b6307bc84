"""What a source hands the edge agent: one sample plus the machine's counters at that instant.

``Reading`` is a protocol, so any object with a ``sample`` and a ``counters`` attribute fits
(the simulators' readings do, without edge importing them). ``EdgeReading`` is the concrete
form the edge's own sources (CSV replay) produce.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple, Protocol

from wire import Sample


class Reading(Protocol):
    """A sample and the monotonic counters read with it (e.g. ``run_seconds_total``)."""

    @property
    def sample(self) -> Sample: ...

    @property
    def counters(self) -> Mapping[str, float]: ...


class EdgeReading(NamedTuple):
    """A concrete ``Reading``."""

    sample: Sample
    counters: Mapping[str, float] = {}
