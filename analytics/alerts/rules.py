"""The rules file: which conditions raise alerts, for which machines (a public format).

A rules file is TOML with optional top-level settings, an optional ``[kinds]`` map
from machine kind to id globs, and one ``[[rule]]`` table per rule. ``docs/alerts.md``
documents every key; ``examples/rules.toml`` is the shipped default. Errors name the
offending rule and field::

    >>> parse_rules({"rule": [{"id": "x", "kind": "threshold", "value": "v"}]})
    Traceback (most recent call last):
    ...
    analytics.alerts.rules.RulesError: rules: invalid
      rule[0] 'x' (threshold): give exactly one of `above` or `below`
"""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from fnmatch import fnmatchcase
from itertools import pairwise
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from common.errors import RunhoursError
from common.settings import read_toml
from common.times import Duration
from wire import STATES, State

Severity = Literal["info", "warning", "critical"]
SEVERITIES: tuple[Severity, ...] = ("info", "warning", "critical")

RULE_ID = r"^[A-Za-z0-9_.-]{1,64}$"  # rule ids appear in MQTT topics (wire.alert_topic)
VALUE_NAME = r"^[a-z][a-z0-9_]{0,63}$"
_RUNNING: tuple[State, ...] = ("running",)


class RulesError(RunhoursError, ValueError):
    """The rules file is missing, not TOML, or invalid; the message names the field."""


class _Rule(BaseModel):
    """Keys every rule has."""

    # Non-finite limits (nan, inf) would never fire or never clear: refused.
    model_config = ConfigDict(
        extra="forbid", frozen=True, populate_by_name=True, allow_inf_nan=False
    )

    id: str = Field(pattern=RULE_ID)
    severity: Severity = "warning"
    machines: list[str] = Field(default_factory=lambda: ["*"], min_length=1)
    kinds: list[str] = Field(default_factory=list)
    description: str = ""
    # Re-notify while firing and unacknowledged; None = the file's `renotify`, 0 = never.
    renotify: Duration | None = None

    def selects(self, machine: str, kind: str | None) -> bool:
        """Whether this rule watches ``machine`` (of machine kind ``kind``, if known)."""
        if self.kinds and kind not in self.kinds:
            return False
        return any(fnmatchcase(machine, pattern) for pattern in self.machines)


class ThresholdRule(_Rule):
    """A value above (or below) a limit for a while; clears only past the deadband."""

    kind: Literal["threshold"]
    value: str = Field(pattern=VALUE_NAME)
    above: float | None = None
    below: float | None = None
    for_: Duration = Field(default=timedelta(0), alias="for")
    clear_below: float | None = None
    clear_above: float | None = None
    clear_for: Duration = timedelta(0)  # resolve only once clear for this long
    # Only samples taken in these machine states count (None: every sample).
    states: list[State] | None = None
    forecast: Forecast | None = None

    @model_validator(mode="after")
    def _limits(self) -> ThresholdRule:
        if (self.above is None) == (self.below is None):
            raise ValueError("give exactly one of `above` or `below`")
        if self.above is not None:
            if self.clear_above is not None:
                raise ValueError("`clear_above` goes with `below`; with `above` use `clear_below`")
            if self.clear_below is not None and self.clear_below > self.above:
                raise ValueError(
                    f"clear_below ({self.clear_below}) must not exceed above ({self.above})"
                )
        if self.below is not None:
            if self.clear_below is not None:
                raise ValueError("`clear_below` goes with `above`; with `below` use `clear_above`")
            if self.clear_above is not None and self.clear_above < self.below:
                raise ValueError(
                    f"clear_above ({self.clear_above}) must not be under below ({self.below})"
                )
        return self


class Forecast(BaseModel):
    """Where a value is heading: the time until it reaches ``limit`` at its recent rate."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    limit: float
    label: str = Field(default="", max_length=64)  # how the limit is called ("zone D")
    over: Duration = timedelta(hours=12)  # the recent stretch the trend line is fitted to

    @field_validator("over")
    @classmethod
    def _long_enough(cls, value: timedelta) -> timedelta:
        if value < timedelta(hours=1):
            raise ValueError("must be at least 1h (the trend is fitted to hourly means)")
        return value

    def name(self) -> str:
        """The limit as the alert text names it."""
        return f"{self.label} ({self.limit:g})" if self.label else f"{self.limit:g}"


class Bands(BaseModel):
    """Load bands: one reference per band of another value (like compared with like)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    value: str = Field(pattern=VALUE_NAME)  # the load signal, e.g. motor_current_a
    edges: list[float] = Field(min_length=1, max_length=32)  # band boundaries, increasing

    @field_validator("edges")
    @classmethod
    def _increasing(cls, value: list[float]) -> list[float]:
        if any(b <= a for a, b in pairwise(value)):
            raise ValueError(f"must increase strictly (got {value})")
        return value

    def band(self, load: float) -> int:
        """The band index of a load (0 below the first edge)."""
        return sum(1 for edge in self.edges if load >= edge)


# Keys that belong to one reference or one detector (a key set for the other is an error).
_ADAPTIVE_KEYS = ("baseline", "warmup")
_COMMISSIONING_KEYS = ("commissioning", "maintenance_kind", "bands")
_EWMA_KEYS = ("window", "sigma", "clear_sigma", "rise", "clear_rise")
_CUSUM_KEYS = ("k", "h")


class AnomalyRule(_Rule):
    """Drift of a value from the machine's own reference.

    The reference is ``adaptive`` (an EWMA baseline that keeps learning, frozen only while
    an alert is pending or firing) or ``commissioning`` (learnt over the first
    ``commissioning`` of data after installation or a service record, then frozen, per
    machine state and optionally per load band). The detector is ``ewma`` (the level, an
    EWMA, ``sigma`` std or ``rise`` above the reference) or ``cusum`` (the deviation from a
    commissioning reference beyond ``k``, summed over time, reaches ``h``).
    """

    kind: Literal["anomaly"]
    value: str = Field(pattern=VALUE_NAME)
    direction: Literal["up", "down", "both"] = "up"
    reference: Literal["adaptive", "commissioning"] = "adaptive"
    baseline: Duration = timedelta(days=3)  # adaptive: half-life of the slow EWMA
    warmup: Duration = timedelta(hours=6)  # adaptive: data needed before the baseline is trusted
    commissioning: Duration = timedelta(hours=8)  # commissioning: in-state data learnt
    maintenance_kind: str = Field(default="service", pattern=VALUE_NAME)  # restarts learning
    bands: Bands | None = None  # commissioning: one reference per load band
    detector: Literal["ewma", "cusum"] = "ewma"
    window: Duration = timedelta(hours=1)  # ewma: half-life of the fast EWMA (the level)
    sigma: float = Field(default=4.0, gt=0)  # ewma: fire when the level is this many std away
    clear_sigma: float = Field(default=2.0, ge=0)  # ewma: resolve when back within this many
    rise: float | None = Field(default=None, gt=0)  # ewma: or this share above the reference
    clear_rise: float | None = Field(default=None, ge=0)  # ewma: resolve under this share
    k: float = Field(default=0.05, ge=0)  # cusum: allowance, a share of the reference
    h: float = Field(default=0.5, gt=0)  # cusum: decision interval, in share × hours
    min_std: float = Field(default=0.1, gt=0)  # std floor, in the value's unit
    for_: Duration = Field(default=timedelta(minutes=30), alias="for")
    clear_for: Duration = timedelta(0)
    states: list[State] | None = Field(default_factory=lambda: list(_RUNNING))
    forecast: Forecast | None = None

    @field_validator("baseline", "window", "commissioning")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("must be longer than 0s")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> AnomalyRule:
        given = self.model_fields_set
        other, keys = (
            ("commissioning", _COMMISSIONING_KEYS)
            if self.reference == "adaptive"
            else ("adaptive", _ADAPTIVE_KEYS)
        )
        for key in keys:
            if key in given:
                raise ValueError(
                    f"`{key}` does not apply to reference = {self.reference!r} "
                    f"(it belongs to reference = {other!r})"
                )
        for key in _CUSUM_KEYS if self.detector == "ewma" else _EWMA_KEYS:
            if key in given:
                raise ValueError(f"`{key}` does not apply to detector = {self.detector!r}")
        if {"sigma", "rise"} <= given:
            raise ValueError("give `sigma` or `rise`, not both")
        if self.reference == "adaptive":
            if self.detector != "ewma":
                raise ValueError('detector = "cusum" needs reference = "commissioning"')
            if self.rise is not None:
                raise ValueError('`rise` needs reference = "commissioning"')
            if self.window >= self.baseline:
                raise ValueError("`window` must be shorter than `baseline`")
        if self.clear_sigma > self.sigma:
            raise ValueError(
                f"clear_sigma ({self.clear_sigma}) must not exceed sigma ({self.sigma})"
            )
        if self.clear_rise is not None and self.rise is None:
            raise ValueError("`clear_rise` goes with `rise`")
        if self.rise is not None and self.clear_rise is not None and self.clear_rise > self.rise:
            raise ValueError(f"clear_rise ({self.clear_rise}) must not exceed rise ({self.rise})")
        if self.bands is not None and self.bands.value == self.value:
            raise ValueError("bands.value: use another value than the one watched (a load)")
        return self

    def read_values(self) -> set[str]:
        """The telemetry values this rule reads."""
        return {self.value} | ({self.bands.value} if self.bands else set())


class ServiceIntervalRule(_Rule):
    """Hours run since the last recorded service: warning at a fraction, due at 100%."""

    kind: Literal["service_interval"]
    hours: float = Field(gt=0)
    warn_fraction: float = Field(default=0.9, gt=0, le=1)
    warn_severity: Severity = "warning"
    maintenance_kind: str = Field(default="service", pattern=VALUE_NAME)


class NoDataRule(_Rule):
    """A machine that should be reporting has gone silent, or its agent is offline."""

    kind: Literal["no_data"]
    silent_for: Duration = timedelta(minutes=5)
    # A retained offline status (or the agent's MQTT will) fires once it stood this long.
    offline_for: Duration = timedelta(0)
    # Machines heard from within this long before the evaluation should be reporting.
    lookback: Duration = timedelta(days=1)


Rule = Annotated[
    ThresholdRule | AnomalyRule | ServiceIntervalRule | NoDataRule, Field(discriminator="kind")
]
CONDITION_KINDS = frozenset({"threshold", "anomaly"})
RULE_KINDS = "threshold | anomaly | service_interval | no_data"


class RuleSet(BaseModel):
    """A whole rules file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Evaluation advances in fixed steps of data time; each step sees the samples of
    # [t - step, t). Replays and the live service use the same grid (epoch-aligned).
    step: Duration = timedelta(minutes=1)
    renotify: Duration = timedelta(hours=4)
    kinds: dict[str, list[str]] = Field(default_factory=dict)
    rule: list[Rule] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> RuleSet:
        step_ms = self.step / timedelta(milliseconds=1)
        if step_ms < 1000 or step_ms % 1000:
            raise ValueError(f"step: must be whole seconds, at least 1s (got {self.step})")
        seen: set[str] = set()
        for index, rule in enumerate(self.rule):
            if rule.id in seen:
                raise ValueError(f"rule[{index}].id: duplicate rule id {rule.id!r}")
            seen.add(rule.id)
            for kind in rule.kinds:
                if kind not in self.kinds:
                    raise ValueError(
                        f"rule[{index}].kinds: unknown machine kind {kind!r}; "
                        f"declare it under [kinds] (known: {sorted(self.kinds) or 'none'})"
                    )
        return self

    def kind_of(self, machine: str) -> str | None:
        """The machine kind whose globs match ``machine`` first (``[kinds]`` order)."""
        for kind, patterns in self.kinds.items():
            if any(fnmatchcase(machine, p) for p in patterns):
                return kind
        return None

    def rules_for(self, machine: str) -> list[Rule]:
        kind = self.kind_of(machine)
        return [r for r in self.rule if r.selects(machine, kind)]

    def renotify_for(self, rule: Rule) -> timedelta:
        return self.renotify if rule.renotify is None else rule.renotify

    def get(self, rule_id: str) -> Rule | None:
        return next((r for r in self.rule if r.id == rule_id), None)

    def value_names(self) -> list[str]:
        """Every telemetry value some threshold or anomaly rule reads, sorted."""
        names: set[str] = set()
        for rule in self.rule:
            if isinstance(rule, AnomalyRule):
                names |= rule.read_values()
            elif isinstance(rule, ThresholdRule):
                names.add(rule.value)
        return sorted(names)

    def maintenance_kinds(self, machine: str) -> set[str]:
        """Maintenance record kinds the rules watching ``machine`` need."""
        kind = self.kind_of(machine)
        out: set[str] = set()
        for rule in self.rule:
            if not rule.selects(machine, kind):
                continue
            if isinstance(rule, ServiceIntervalRule) or (
                isinstance(rule, AnomalyRule) and rule.reference == "commissioning"
            ):
                out.add(rule.maintenance_kind)
        return out

    def conditions_only(self) -> RuleSet:
        """The same file with only its threshold and anomaly rules (what a backtest scores)."""
        return self.model_copy(update={"rule": [r for r in self.rule if r.kind in CONDITION_KINDS]})

    def fingerprint(self) -> str:
        """A short hash of the effective rules (to notice a changed file)."""
        text = json.dumps(self.model_dump(mode="json", by_alias=True), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def _describe(error: ValidationError, data: dict[str, Any], source: str) -> str:
    lines = [f"{source}: invalid"]
    found = data.get("rule")
    raw_rules: list[Any] = found if isinstance(found, list) else []
    for item in error.errors():
        loc = list(item["loc"])
        msg = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling; see docs/alerts.md)"
        elif item["type"] == "missing":
            msg = "missing (required)"
        elif item["type"] == "union_tag_invalid":
            msg = f"kind: {item['input'].get('kind')!r} is not a rule kind (use {RULE_KINDS})"
        elif item["type"] == "union_tag_not_found":
            msg = f"kind: missing (use {RULE_KINDS})"
        if len(loc) >= 2 and loc[0] == "rule" and isinstance(loc[1], int):
            index = loc[1]
            raw = raw_rules[index] if index < len(raw_rules) else {}
            rest = loc[2:]
            kind = ""
            if rest and isinstance(raw, dict) and rest[0] == raw.get("kind"):
                kind, rest = f" ({rest[0]})", rest[1:]
            rule_id = raw.get("id") if isinstance(raw, dict) else None
            head = f"rule[{index}]" + (f" {rule_id!r}" if isinstance(rule_id, str) else "") + kind
            field = ".".join(str(p) for p in rest)
            lines.append(f"  {head}: {field + ': ' if field else ''}{msg}")
        else:
            field = ".".join(str(p) for p in loc)
            lines.append(f"  {field + ': ' if field else ''}{msg}")
    return "\n".join(lines)


def parse_rules(data: dict[str, Any], source: str = "rules") -> RuleSet:
    """Validate a parsed rules document; raise ``RulesError`` naming each bad field."""
    try:
        return RuleSet.model_validate(data)
    except ValidationError as exc:
        raise RulesError(_describe(exc, data, source)) from None


def load_rules(path: Path) -> RuleSet:
    """Read and validate a rules file."""
    data = read_toml(Path(path), RulesError, "rules file", "examples/rules.toml")
    return parse_rules(data, str(path))


DEFAULT_RULES = Path(__file__).resolve().parents[2] / "examples" / "rules.toml"

__all__ = [
    "CONDITION_KINDS",
    "DEFAULT_RULES",
    "SEVERITIES",
    "STATES",
    "AnomalyRule",
    "Bands",
    "Forecast",
    "NoDataRule",
    "Rule",
    "RuleSet",
    "RulesError",
    "ServiceIntervalRule",
    "Severity",
    "ThresholdRule",
    "load_rules",
    "parse_rules",
]
