"""How a worn bearing's severity grows from onset to failure: the degradation profiles.

Severity runs from 0 (healthy) to 1 (failed: ``signals.VIB_FAILURE`` of extra vibration).
``accelerating`` is ``p³`` over the whole span (``p`` = share of onset → failure elapsed).
The other profiles have a *slow phase* up to ``knee`` (a share of the span), in which the
severity reaches only ``level``, shaped as the profile says, followed by the *run-away*
every failing bearing ends with (``level`` → 1, quadratic):

- ``linear``: a steady slow rise to ``level``;
- ``exponential``: a rise that accelerates (``e^(4f)``) to ``level``;
- ``step``: a jump to ``level`` at the onset (a spall), flat afterwards;
- ``intermittent``: ``level`` in episodes (hours long) that come more often as wear grows.

``noise`` multiplies the severity by a slow random factor (log-normal, a new draw every
hour, interpolated), so no two bearings wear alike. All of it is drawn at construction
from the machine's own generator: the curve does not depend on how time is stepped.
"""

from __future__ import annotations

import math
from typing import Literal, get_args

import numpy as np
import numpy.typing as npt

WearProfile = Literal["accelerating", "linear", "exponential", "step", "intermittent"]
WEAR_PROFILES: tuple[WearProfile, ...] = get_args(WearProfile)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

_HOUR_MS = 3_600_000
_EXP_RATE = 4.0  # e-foldings of the exponential slow phase
_EPISODE_MEAN_MS = 2 * _HOUR_MS  # mean length of an intermittent episode
_MIN_EPISODE_MS = 20 * 60_000


class WearCurve:
    """The severity of one bearing over time (vectorised over epoch-ms timestamps)."""

    def __init__(
        self,
        onset_ms: int,
        failure_ms: int,
        profile: WearProfile,
        *,
        level: float,
        knee: float,
        noise: float,
        rng: np.random.Generator,
    ) -> None:
        self.onset_ms = onset_ms
        self.failure_ms = failure_ms
        self.profile = profile
        self.level = level
        self.knee = knee
        span = failure_ms - onset_ms
        self._span = span
        hours = math.ceil(span / _HOUR_MS) + 1
        # The slow random factor at hourly nodes from the onset (exp(0) = 1 without noise).
        self._factor = np.exp(noise * rng.standard_normal(hours + 1)) if noise > 0 else None
        self._episodes = self._draw_episodes(rng) if profile == "intermittent" else None

    @property
    def knee_ms(self) -> int | None:
        """When the slow phase turns into the run-away (``accelerating`` has no such turn)."""
        if self.profile == "accelerating":
            return None
        return self.onset_ms + round(self.knee * self._span)

    def _draw_episodes(self, rng: np.random.Generator) -> IntArray:
        """Start/end pairs (ms) of the intermittent episodes within the slow phase."""
        bounds: list[int] = []
        t, end = self.onset_ms, self.onset_ms + round(self.knee * self._span)
        while t < end:
            duty = 0.15 + 0.6 * (t - self.onset_ms) / max(end - self.onset_ms, 1)
            gap = round(rng.exponential(_EPISODE_MEAN_MS * (1 - duty) / duty))
            length = max(_MIN_EPISODE_MS, round(rng.exponential(_EPISODE_MEAN_MS)))
            t += gap
            if t >= end:
                break
            bounds += [t, min(t + length, end)]
            t += length
        return np.asarray(bounds, dtype=np.int64)

    def severity(self, ts: IntArray) -> FloatArray:
        """Severity at each timestamp: 0 before the onset and from the failure on."""
        progress = np.clip((ts - self.onset_ms) / self._span, 0.0, 1.0)
        shape = progress**3 if self.profile == "accelerating" else self._shaped(ts, progress)
        if self._factor is not None:
            hours = np.clip((ts - self.onset_ms) / _HOUR_MS, 0.0, self._factor.size - 1.0)
            shape = shape * np.interp(hours, np.arange(self._factor.size), self._factor)
        inside = (ts >= self.onset_ms) & (ts < self.failure_ms)
        return np.asarray(np.where(inside, np.clip(shape, 0.0, 1.0), 0.0), dtype=np.float64)

    def _shaped(self, ts: IntArray, progress: FloatArray) -> FloatArray:
        level, knee = self.level, self.knee
        f = np.clip(progress / knee, 0.0, 1.0)  # progress through the slow phase
        if self.profile == "linear":
            slow = level * f
        elif self.profile == "exponential":
            slow = level * np.expm1(_EXP_RATE * f) / math.expm1(_EXP_RATE)
        elif self.profile == "step":
            slow = np.full(ts.shape, level)
        else:  # intermittent: level while an episode lasts (ends are exclusive)
            assert self._episodes is not None
            on = np.searchsorted(self._episodes, ts, side="right") % 2 == 1
            slow = np.where(on, level, 0.0)
        q = np.clip((progress - knee) / (1.0 - knee), 0.0, 1.0)
        runaway = level + (1.0 - level) * q**2
        return np.asarray(np.where(progress < knee, slow, runaway), dtype=np.float64)
