"""What a simulated machine is: its kind, identity, seed, calendar and injected faults.

``fleet`` builds the mixed fleet the demo and the end-to-end tests run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np

from simulators.calendar import WorkCalendar
from simulators.wear import WEAR_PROFILES, WearProfile
from wire import validate_id

MachineKind = Literal["cnc_mill", "pump", "compressor"]
MACHINE_KINDS: tuple[MachineKind, ...] = get_args(MachineKind)

# Id prefix per kind, as the fleet names machines ("cnc-01", "pump-02", "comp-03").
_PREFIX: dict[MachineKind, str] = {"cnc_mill": "cnc", "pump": "pump", "compressor": "comp"}
# Ideal cycle times (s) of the fleet's CNC mills, by their number: each runs its own part.
# Pumps and compressors make no parts (they report no part counters).
CNC_IDEAL_CYCLE_S = (90.0, 120.0, 75.0, 150.0)


MACHINES_PER_LINE = 4


def line_id(index: int) -> str:
    """The ``index``-th line's id: ``line-a`` … ``line-z``, ``line-aa`` … ``line-zz``,
    ``line-aaa`` …, as spreadsheet columns count (bijective base 26): distinct and valid for
    any index (``line-`` plus 59 letters covers 26**59 lines)."""
    if index < 0:
        raise ValueError(f"line index must be >= 0, got {index}")
    letters = ""
    n = index + 1
    while n:
        n, digit = divmod(n - 1, 26)
        letters = chr(ord("a") + digit) + letters
    return f"line-{letters}"


def _require_aware(value: datetime, what: str) -> None:
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be a timezone-aware datetime, got {value!r}")


@dataclass(frozen=True)
class Degradation:
    """A bearing that wears out: vibration and temperature rise from ``onset`` until failure.

    The machine fails at ``onset + days_to_failure`` (whatever it is doing then), stands in
    ``fault`` for a short while, is repaired (``maintenance`` for ``repair_hours``) and is
    healthy afterwards. ``profile`` shapes the wear (``simulators/wear.py``): all but
    ``accelerating`` reach only ``level`` of the failure severity in a slow phase that
    lasts ``knee`` of the span, then run away; ``noise`` is the spread of a slow random
    factor on the severity.
    """

    onset: datetime
    days_to_failure: float
    repair_hours: float = 8.0
    profile: WearProfile = "accelerating"
    level: float = 0.05
    knee: float = 0.6
    noise: float = 0.0

    def __post_init__(self) -> None:
        _require_aware(self.onset, "Degradation.onset")
        if not self.days_to_failure > 0:
            raise ValueError(f"Degradation.days_to_failure must be > 0, got {self.days_to_failure}")
        if not self.repair_hours > 0:
            raise ValueError(f"Degradation.repair_hours must be > 0, got {self.repair_hours}")
        if self.profile not in WEAR_PROFILES:
            raise ValueError(
                f"Degradation.profile must be one of {', '.join(WEAR_PROFILES)}, "
                f"got {self.profile!r}"
            )
        if not 0 < self.level < 1:
            raise ValueError(f"Degradation.level must be between 0 and 1, got {self.level}")
        if not 0 < self.knee < 1:
            raise ValueError(f"Degradation.knee must be between 0 and 1, got {self.knee}")
        if not 0 <= self.noise <= 1:
            raise ValueError(f"Degradation.noise must be between 0 and 1, got {self.noise}")

    @property
    def failure_at(self) -> datetime:
        """The instant the bearing fails (``onset + days_to_failure``)."""
        return self.onset + timedelta(days=self.days_to_failure)


@dataclass(frozen=True)
class MachineSpec:
    """One simulated machine: identity, kind, seed, shift-calendar zone and injected faults."""

    machine: str
    kind: MachineKind
    site: str = "plant1"
    line: str = "line-a"
    seed: int = 0
    timezone: str = "Europe/Berlin"
    degradation: Degradation | None = None
    # Fault injection for coverage tests: windows where the machine's sensor gateway is off,
    # so no samples at all are taken (the machine itself keeps its true state).
    blackouts: tuple[tuple[datetime, datetime], ...] = ()
    # Part counters (`parts_total`, `parts_good_total`): the ideal (fastest) cycle time of
    # the part it makes, or None for a machine that makes no parts.
    ideal_cycle_s: float | None = None
    # When it is staffed; None: two shifts Mon-Fri in `timezone` (ShiftCalendar).
    calendar: WorkCalendar | None = field(default=None, compare=False)
    # A rush order: from the first instant to the second the machine runs without a break
    # (shift or not, no random stop); only a bearing failure cuts in. The live demo gives
    # one to the machine whose alert it announces, so no idle spell delays the alert.
    rush: tuple[datetime, datetime] | None = None

    def __post_init__(self) -> None:
        validate_id(self.machine, "machine")
        validate_id(self.site, "site")
        validate_id(self.line, "line")
        if self.kind not in MACHINE_KINDS:
            raise ValueError(
                f"MachineSpec.kind must be one of {', '.join(MACHINE_KINDS)}, got {self.kind!r}"
            )
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"MachineSpec.timezone: unknown IANA time zone {self.timezone!r} "
                "(use a name like 'Europe/Berlin' or 'UTC')"
            ) from None
        if self.ideal_cycle_s is not None and not 0.1 <= self.ideal_cycle_s <= 86_400:
            raise ValueError(
                f"MachineSpec.ideal_cycle_s must be 0.1 s to 1 day, got {self.ideal_cycle_s}"
            )
        for begin, end in self.blackouts:
            _require_aware(begin, "blackout start")
            _require_aware(end, "blackout end")
            if not begin < end:
                raise ValueError(f"blackout ({begin.isoformat()}, {end.isoformat()}) is empty")
        if self.rush is not None:
            begin, end = self.rush
            _require_aware(begin, "rush start")
            _require_aware(end, "rush end")
            if not begin < end:
                raise ValueError(f"rush ({begin.isoformat()}, {end.isoformat()}) is empty")


def fleet(
    n: int = 12,
    *,
    seed: int = 1,
    start: datetime,
    site: str = "plant1",
    degrading: int = 1,
    timezone: str = "Europe/Berlin",
    profiles: Sequence[WearProfile] = ("accelerating",),
) -> list[MachineSpec]:
    """``n`` machines of mixed kinds over a few lines, ``degrading`` of them wearing out.

    Kinds rotate CNC mill, pump, compressor; four machines share a line (``line-a``,
    ``line-b``, ... ``line-z``, ``line-aa``, ...: ``line_id``), machines are numbered per kind
    (``cnc-01`` … ``cnc-99``, ``cnc-100`` …), so every id stays valid at any size. CNC mills
    count parts (ideal cycles ``CNC_IDEAL_CYCLE_S`` in turn). Each degrading machine fails on
    a weekday 3-5 days after ``start``
    (always within the first 6 days), between 09:00 and 19:00 local time so the failure
    happens in a shift while the machine is observable; its wear starts 2.5-4 days before.
    Its wear profile is drawn from ``profiles``; for all but ``accelerating`` the slow
    phase reaches 3-7 % of the failure severity (about +0.2 to +0.6 mm/s) over 55-70 % of
    the span, with noise 0.2. These draws use a generator of their own, so the default
    fleet is the same as before profiles existed.
    """
    _require_aware(start, "fleet start")
    if n < 0:
        raise ValueError(f"fleet size must be >= 0, got {n}")
    for profile in profiles:
        if profile not in WEAR_PROFILES:
            raise ValueError(
                f"fleet profiles: {profile!r} is not one of {', '.join(WEAR_PROFILES)}"
            )
    if not profiles:
        raise ValueError("fleet profiles: give at least one wear profile")
    rng = np.random.default_rng([seed, 0xF1EE7])
    wear_rng = np.random.default_rng([seed, 0x3EA2])
    picks = min(max(degrading, 0), n)
    chosen = set(rng.choice(n, size=picks, replace=False).tolist()) if picks else set()
    zone = ZoneInfo(timezone)
    specs: list[MachineSpec] = []
    counts: dict[MachineKind, int] = {}
    for index in range(n):
        kind = MACHINE_KINDS[index % len(MACHINE_KINDS)]
        counts[kind] = counts.get(kind, 0) + 1
        degradation = None
        if index in chosen:
            degradation = _degradation(rng, start, zone)
            profile = profiles[int(wear_rng.integers(len(profiles)))]
            if profile != "accelerating":
                degradation = replace(
                    degradation,
                    profile=profile,
                    level=float(np.round(wear_rng.uniform(0.03, 0.07), 3)),
                    knee=float(np.round(wear_rng.uniform(0.55, 0.7), 3)),
                    noise=0.2,
                )
        specs.append(
            MachineSpec(
                machine=f"{_PREFIX[kind]}-{counts[kind]:02d}",
                kind=kind,
                site=site,
                line=line_id(index // MACHINES_PER_LINE),
                seed=seed * 1000 + index,
                timezone=timezone,
                degradation=degradation,
                ideal_cycle_s=(
                    CNC_IDEAL_CYCLE_S[(counts[kind] - 1) % len(CNC_IDEAL_CYCLE_S)]
                    if kind == "cnc_mill"
                    else None
                ),
            )
        )
    return specs


def _degradation(rng: np.random.Generator, start: datetime, zone: ZoneInfo) -> Degradation:
    local_start = start.astimezone(zone)
    weekdays = [
        day
        for offset in (3, 4, 5)
        if (day := (local_start + timedelta(days=offset)).date()).weekday() < 5
    ]
    day = weekdays[int(rng.integers(len(weekdays)))]
    minute = int(rng.integers(9 * 60, 19 * 60))
    failure = datetime(day.year, day.month, day.day, minute // 60, minute % 60, tzinfo=zone)
    days = float(np.round(rng.uniform(2.5, 4.0), 3))
    failure_utc = failure.astimezone(UTC)
    return Degradation(onset=failure_utc - timedelta(days=days), days_to_failure=days)
