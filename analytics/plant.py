"""The plant-floor file: downtime reasons, shift schedules per site, machines' cycle times.

One TOML file (``examples/plant.toml`` is the demo plant's; docs/oee.md documents every
key) holds what the OEE and downtime figures need beyond telemetry::

    [downtime]
    min_stop = "5m"                     # shorter stops are not listed for a reason
    stop_states = ["idle", "fault", "maintenance", "off"]

    [[reason]]
    code = "TOOL"                       # [A-Za-z0-9_.-]{1,32}
    label = "Tool change or breakage"
    category = "unplanned"              # or "planned"

    [site.plant1]
    timezone = "Europe/Berlin"
    holidays = ["2026-12-24", "2026-12-25"]
    default_schedule = "two-shift"      # default: the first schedule

    [site.plant1.schedule.two-shift]
    days = ["Mon", "Tue", "Wed", "Thu", "Fri"]
    shifts = [
      { name = "early", start = "06:00", end = "14:00", breaks = ["10:00-10:30"] },
      { name = "late", start = "14:00", end = "22:00", breaks = ["18:00-18:30"] },
    ]

    [machine."plant1/cnc-01"]           # site/machine; * and ? match like a shell
    ideal_cycle_s = 90                  # the fastest possible cycle of its part
    schedule = "two-shift"              # a schedule of its site (default: the site's)

Every machine entry whose pattern matches applies, in file order; a later one overrides
what an earlier one set. Errors name the key and what is wrong.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from analytics.machines import MachineKey
from analytics.shifts import Schedule, ScheduleError, Shift, parse_clock, parse_span, weekday
from common.settings import describe_validation_error, read_toml
from common.times import Duration
from wire import STATES, State

DEFAULT_PLANT = Path(__file__).resolve().parents[1] / "examples" / "plant.toml"
REASON_CODE = re.compile(r"[A-Za-z0-9_.-]{1,32}")
Category = Literal["planned", "unplanned"]
CATEGORIES: tuple[Category, ...] = ("planned", "unplanned")
STOP_STATES: tuple[State, ...] = ("idle", "fault", "maintenance", "off")


class PlantError(ValueError):
    """The plant-floor file is missing or invalid; the message names the key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)


class ReasonEntry(_Strict):
    code: str
    label: Annotated[str, Field(min_length=1, max_length=100)]
    category: Category

    @field_validator("code")
    @classmethod
    def _code(cls, value: str) -> str:
        if not REASON_CODE.fullmatch(value):
            raise ValueError(f"{value!r} must match [A-Za-z0-9_.-]{{1,32}} (e.g. TOOL, NO-ORDER)")
        return value


def _stop_states() -> list[State]:
    return list(STOP_STATES)


class DowntimeEntry(_Strict):
    min_stop: Duration = timedelta(minutes=5)
    stop_states: list[State] = Field(default_factory=_stop_states)

    @field_validator("stop_states")
    @classmethod
    def _states(cls, value: list[State]) -> list[State]:
        if "running" in value:
            raise ValueError("running is production, not a stop")
        if not value:
            raise ValueError(f"name at least one state ({', '.join(STATES)})")
        return value


class ShiftEntry(_Strict):
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,32}$")]
    start: str
    end: str
    breaks: list[str] = []


class ScheduleEntry(_Strict):
    days: list[str] = ["Mon", "Tue", "Wed", "Thu", "Fri"]
    holidays: bool = True  # closed on the site's holidays
    shifts: Annotated[list[ShiftEntry], Field(min_length=1)]


class SiteEntry(_Strict):
    timezone: str
    holidays: list[date] = []
    default_schedule: str | None = None
    schedule: Annotated[dict[str, ScheduleEntry], Field(min_length=1)]


class MachineEntry(_Strict):
    ideal_cycle_s: Annotated[float, Field(gt=0, le=86_400)] | None = None
    schedule: str | None = None


class PlantFile(_Strict):
    downtime: DowntimeEntry = DowntimeEntry()
    reason: list[ReasonEntry] = []
    site: dict[str, SiteEntry] = {}
    machine: dict[str, MachineEntry] = {}


@dataclass(frozen=True)
class Reason:
    code: str
    label: str
    category: Category


@dataclass(frozen=True)
class MachinePlan:
    """What the plant file says about one machine."""

    schedule: Schedule | None  # None: its site has no schedule (no planned time known)
    ideal_cycle_s: float | None  # None: no ideal cycle (performance not available)


@dataclass(frozen=True)
class Plant:
    """The plant-floor file, resolved (see the module docstring)."""

    reasons: dict[str, Reason] = field(default_factory=dict)
    min_stop: timedelta = timedelta(minutes=5)
    stop_states: tuple[State, ...] = STOP_STATES
    schedules: dict[str, dict[str, Schedule]] = field(default_factory=dict)  # site → name →
    default_schedule: dict[str, str] = field(default_factory=dict)  # site → name
    machines: tuple[tuple[str, MachineEntry], ...] = ()  # (pattern, entry), in file order
    source: str = "plant"

    def plan(self, key: MachineKey) -> MachinePlan:
        """The schedule and ideal cycle of ``key`` (``site/machine``)."""
        name = f"{key.site}/{key.machine}"
        ideal: float | None = None
        chosen: str | None = None
        for pattern, entry in self.machines:
            if fnmatch.fnmatchcase(name, pattern):
                if entry.ideal_cycle_s is not None:
                    ideal = entry.ideal_cycle_s
                if entry.schedule is not None:
                    chosen = entry.schedule
        site = self.schedules.get(key.site, {})
        schedule = site.get(chosen or self.default_schedule.get(key.site, ""))
        return MachinePlan(schedule, ideal)

    def reason(self, code: str) -> Reason:
        """The reason ``code``, or a ``PlantError`` listing the codes there are."""
        found = self.reasons.get(code)
        if found is None:
            codes = ", ".join(self.reasons) or "none: add [[reason]] entries"
            raise PlantError(f"reason: unknown code {code!r} in {self.source} (codes: {codes})")
        return found


def parse_plant(data: dict[str, Any], source: str = "plant") -> Plant:
    """Validate a parsed plant-floor document; ``PlantError`` names each bad key."""
    try:
        parsed = PlantFile.model_validate(data)
    except ValidationError as exc:
        raise PlantError(describe_validation_error(exc, source)) from None
    codes = [r.code for r in parsed.reason]
    if duplicated := sorted({c for c in codes if codes.count(c) > 1}):
        raise PlantError(f"{source}: reason codes must be unique: {', '.join(duplicated)}")
    schedules: dict[str, dict[str, Schedule]] = {}
    defaults: dict[str, str] = {}
    for site_id, site in parsed.site.items():
        where = f"site.{site_id}"
        try:
            schedules[site_id] = {
                name: _schedule(name, entry, site, f"{where}.schedule.{name}")
                for name, entry in site.schedule.items()
            }
        except ScheduleError as exc:
            raise PlantError(f"{source}: {exc}") from None
        default = site.default_schedule or next(iter(site.schedule))
        if default not in schedules[site_id]:
            raise PlantError(f"{source}: {where}.default_schedule: no schedule named {default!r}")
        defaults[site_id] = default
    for pattern, entry in parsed.machine.items():
        if "/" not in pattern:
            raise PlantError(
                f"{source}: machine.{pattern!r}: write site/machine (e.g. plant1/cnc-01 or "
                "plant1/cnc-*)"
            )
        site_id = pattern.split("/", 1)[0]
        if entry.schedule is not None and not any(
            fnmatch.fnmatchcase(site, site_id) and entry.schedule in names
            for site, names in schedules.items()
        ):
            raise PlantError(
                f"{source}: machine.{pattern!r}.schedule: no schedule {entry.schedule!r} at "
                f"site {site_id!r}"
            )
    return Plant(
        reasons={r.code: Reason(r.code, r.label, r.category) for r in parsed.reason},
        min_stop=parsed.downtime.min_stop,
        stop_states=tuple(dict.fromkeys(parsed.downtime.stop_states)),
        schedules=schedules,
        default_schedule=defaults,
        machines=tuple(parsed.machine.items()),
        source=source,
    )


def _schedule(name: str, entry: ScheduleEntry, site: SiteEntry, where: str) -> Schedule:
    """One schedule; every ``ScheduleError`` says where (``site.x.schedule.y…``)."""
    shifts = []
    for i, s in enumerate(entry.shifts):
        at = f"{where}.shifts[{i}]"
        start, end = parse_clock(s.start, f"{at}.start"), parse_clock(s.end, f"{at}.end")
        breaks = tuple(parse_span(b, f"{at}.breaks") for b in s.breaks)
        try:
            shifts.append(Shift(s.name, start, end, breaks))
        except ScheduleError as exc:
            raise ScheduleError(f"{at}: {exc}") from None
    days = frozenset(weekday(d, f"{where}.days") for d in entry.days)
    holidays = frozenset(site.holidays) if entry.holidays else frozenset()
    try:
        return Schedule(name, site.timezone, tuple(shifts), days, holidays)
    except ScheduleError as exc:
        raise ScheduleError(f"{where}: {exc}") from None
    except ValueError as exc:  # an unknown time zone
        raise ScheduleError(f"site.{where.split('.')[1]}.timezone: {exc}") from None


def load_plant(path: Path) -> Plant:
    """Read and validate a plant-floor file."""
    data = read_toml(Path(path), PlantError, "plant-floor file", "examples/plant.toml")
    return parse_plant(data, str(path))
