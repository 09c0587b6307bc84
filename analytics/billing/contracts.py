"""Power-by-the-hour service contracts: the TOML file format and its validation.

The file is a public interface (documented with a full example in docs/billing.md and
examples/contracts.toml). Every error names the field, e.g.
``contract.0.tier.1.up_to_hours (contract 'PBH-001'): must be above the previous tier's
100``; a file with any error yields no contracts at all. Numbers are read as exact
decimals; a machine is under at most one contract at any instant.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, tzinfo
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

from babel.numbers import list_currencies
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from analytics.counters import CounterRules
from analytics.machines import MachineError, parse_machine, same_machine_possible
from analytics.periods import PeriodKind, local_instant, local_midnight, to_ms, zone
from common.errors import RunhoursError
from common.settings import read_toml
from wire import State, validate_id

RoundingMode = Literal["half_up", "half_even", "up", "down"]
Method = Literal["state", "counter"]
Proration = Literal["none", "daily"]
Bound = date | datetime


class ContractsError(RunhoursError, ValueError):
    """The contracts file is missing, not TOML, or invalid; the message names each field."""


def _decimal(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError('must be a decimal number, e.g. "42.50"')
    if isinstance(value, float):
        # A binary float has lost digits already: 0.1234567890123456789 arrives as
        # 0.12345678901234568. load_contracts reads TOML numbers as exact decimals.
        raise ValueError(
            f"{value!r} arrived as a binary float, which may have lost digits: read the file "
            'with load_contracts (numbers as exact decimals) or write it as a string ("42.50")'
        )
    return value


def _finite(value: Decimal) -> Decimal:
    if not value.is_finite():
        raise ValueError("must be a finite decimal number")
    return value


Dec = Annotated[Decimal, BeforeValidator(_decimal), AfterValidator(_finite)]
NonNegative = Annotated[Dec, Field(ge=0)]
Positive = Annotated[Dec, Field(gt=0)]


def _id(value: str) -> str:
    try:
        return validate_id(value)
    except ValueError as exc:
        raise ValueError(str(exc).split(": ", 1)[-1]) from None


Id = Annotated[str, AfterValidator(_id)]


def _machine_name(value: str) -> str:
    try:
        parse_machine(value)
    except MachineError as exc:
        raise ValueError(str(exc)) from None
    return value


MachineName = Annotated[str, AfterValidator(_machine_name)]


def _currency(value: str) -> str:
    if value not in list_currencies():
        raise ValueError(
            f"{value!r} is not an ISO 4217 currency code (CLDR's list, via babel), e.g. EUR"
        )
    return value


class Tier(BaseModel):
    """Graduated rate: hours up to ``up_to_hours`` (per machine per period) at this rate."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    up_to_hours: Positive | None = None
    rate_per_hour: NonNegative


def as_instant(value: Bound | None, tz: tzinfo) -> datetime | None:
    """A term bound as an aware instant: a date is local midnight, a local time is local."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return local_instant(value, tz) if value.tzinfo is None else value
    return local_midnight(value, tz)


class MachineTerm(BaseModel):
    """A machine under the contract (``site/machine`` or a bare id), optionally only
    from/to a local date or time, optionally with its own hour-meter rules."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    id: MachineName
    from_: Bound | None = Field(default=None, alias="from")
    to: Bound | None = None
    counter_reset_below_seconds: NonNegative | None = None
    counter_modulus_seconds: Positive | None = None

    def bound(self, which: Literal["from", "to"], tz: tzinfo) -> datetime | None:
        """The effective-date bound as an aware instant (dates mean local midnight)."""
        return as_instant(self.from_ if which == "from" else self.to, tz)

    @model_validator(mode="after")
    def _ordered(self) -> MachineTerm:
        # Bounds both local or both with offsets compare here; a mix needs the contract's
        # zone and is checked by Contract._machines.
        if self.from_ is None or self.to is None or _aware(self.from_) != _aware(self.to):
            return self
        if _key(self.to) <= _key(self.from_):
            raise ValueError(ordering_error(self.from_, self.to))
        return self


def ordering_error(lo: Bound, hi: Bound) -> str:
    return f"'to' ({hi}) must be after 'from' ({lo})"


def _aware(value: Bound) -> bool:
    return isinstance(value, datetime) and value.tzinfo is not None


def _key(value: Bound) -> datetime:
    if isinstance(value, datetime):
        return value
    return datetime.combine(value, time())


class Contract(BaseModel):
    """One service contract: who pays what for which machines' hours."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    id: Id
    customer: Annotated[str, Field(min_length=1)]
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$"), AfterValidator(_currency)]
    timezone: str = "UTC"
    from_: Bound | None = Field(default=None, alias="from")
    to: Bound | None = None
    period: PeriodKind = "month"
    proration: Proration = "none"
    billable_states: Annotated[list[State], Field(min_length=1)] = ["running"]
    method: Method = "state"
    rate_per_hour: NonNegative | None = None
    tier: list[Tier] = Field(default_factory=list)
    minimum_hours: NonNegative | None = None
    allowance_hours: NonNegative | None = None
    overuse_multiplier: Positive | None = None
    rounding_hours: Positive = Decimal("0.1")
    rounding_mode: RoundingMode = "half_up"
    counter_tolerance_pct: NonNegative = Decimal("1")
    counter_tolerance_seconds: NonNegative = Decimal("60")
    counter_reset_below_seconds: NonNegative = Decimal("600")
    counter_modulus_seconds: Positive | None = None
    machine: Annotated[list[MachineTerm], Field(min_length=1)]

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        zone(value)
        return value

    @field_validator("billable_states")
    @classmethod
    def _unique_states(cls, value: list[State]) -> list[State]:
        if len(set(value)) != len(value):
            raise ValueError("lists a state twice")
        return value

    @model_validator(mode="after")
    def _rates(self) -> Contract:
        if (self.rate_per_hour is None) == (not self.tier):
            raise ValueError(
                "give either rate_per_hour or [[contract.tier]] entries (graduated rates), "
                "not both and not neither"
            )
        previous = Decimal(0)
        for index, tier in enumerate(self.tier):
            last = index == len(self.tier) - 1
            if tier.up_to_hours is None and not last:
                raise ValueError(f"tier.{index}.up_to_hours: only the last tier may be open-ended")
            if tier.up_to_hours is not None and last:
                raise ValueError(
                    f"tier.{index}.up_to_hours: the last tier must be open-ended (omit "
                    "up_to_hours) so every hour has a rate"
                )
            if tier.up_to_hours is not None:
                if tier.up_to_hours <= previous:
                    raise ValueError(
                        f"tier.{index}.up_to_hours: must be above the previous tier's {previous}"
                    )
                previous = tier.up_to_hours
        if (self.allowance_hours is None) != (self.overuse_multiplier is None):
            raise ValueError("allowance_hours and overuse_multiplier go together: give both")
        return self

    @model_validator(mode="after")
    def _machines(self) -> Contract:
        tz = zone(self.timezone)
        term = self.term_window()
        if term[1] <= term[0]:
            assert self.from_ is not None and self.to is not None
            raise ValueError(ordering_error(self.from_, self.to))
        seen: list[tuple[str, int, int, int]] = []
        for index, item in enumerate(self.machine):
            lo, hi = self.machine_window(item, tz)
            if item.from_ is not None and item.to is not None and hi <= lo:
                raise ValueError(f"machine.{index}: {ordering_error(item.from_, item.to)}")
            for name, other_lo, other_hi, other in seen:
                if same_machine_possible(name, item.id) and lo < other_hi and other_lo < hi:
                    raise ValueError(
                        f"machine.{index}: {item.id!r} overlaps machine.{other} ({name!r}; their "
                        "effective dates must not overlap, and a bare id may be the same "
                        "machine as a site/machine name)"
                    )
            seen.append((item.id, lo, hi, index))
        return self

    @property
    def zone(self) -> tzinfo:
        return zone(self.timezone)

    def term_window(self) -> tuple[int, int]:
        """The contract's term as epoch ms ``[from, to)`` (unbounded: a far past/future)."""
        tz = self.zone
        lo, hi = as_instant(self.from_, tz), as_instant(self.to, tz)
        return (to_ms(lo) if lo else _FAR_PAST, to_ms(hi) if hi else _FAR_FUTURE)

    def machine_window(self, item: MachineTerm, tz: tzinfo | None = None) -> tuple[int, int]:
        """When ``item`` is under the contract, as epoch ms: its dates within the term."""
        tz = tz or self.zone
        term_lo, term_hi = self.term_window()
        lo, hi = item.bound("from", tz), item.bound("to", tz)
        return (
            max(term_lo, to_ms(lo)) if lo else term_lo,
            min(term_hi, to_ms(hi)) if hi else term_hi,
        )

    def windows(self, start_ms: int, end_ms: int) -> dict[str, list[tuple[int, int]]]:
        """Per machine name, the parts of ``[start_ms, end_ms)`` it is under the contract
        (touching parts merged), sorted by name; machines without any are left out."""
        out: dict[str, list[tuple[int, int]]] = {}
        for item in self.machine:
            lo, hi = self.machine_window(item)
            a, b = max(start_ms, lo), min(end_ms, hi)
            if a < b:
                out.setdefault(item.id, []).append((a, b))
        merged: dict[str, list[tuple[int, int]]] = {}
        for name in sorted(out):
            spans: list[tuple[int, int]] = []
            for a, b in sorted(out[name]):
                if spans and spans[-1][1] == a:
                    spans[-1] = (spans[-1][0], b)
                else:
                    spans.append((a, b))
            merged[name] = spans
        return merged

    def counter_rules(self, name: str) -> CounterRules:
        """The hour-meter rules of a machine: its own, else the contract's."""
        item = next(m for m in self.machine if m.id == name)
        below = item.counter_reset_below_seconds
        modulus = item.counter_modulus_seconds or self.counter_modulus_seconds
        return CounterRules(
            reset_below_ms=_ms(below if below is not None else self.counter_reset_below_seconds),
            modulus_ms=_ms(modulus) if modulus is not None else None,
        )


_FAR_PAST = to_ms(datetime(1, 1, 2, tzinfo=UTC))
_FAR_FUTURE = to_ms(datetime(9999, 12, 30, tzinfo=UTC))


def _ms(seconds: Decimal) -> int:
    return int((seconds * 1000).to_integral_value())


def describe_instant(ms: int, tz: tzinfo) -> str:
    if ms <= _FAR_PAST:
        return "the beginning"
    if ms >= _FAR_FUTURE:
        return "no end"
    return datetime.fromtimestamp(ms / 1000, UTC).astimezone(tz).isoformat()


class ContractsFile(BaseModel):
    """The whole file: a list of ``[[contract]]`` tables with unique ids."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    contract: Annotated[list[Contract], Field(min_length=1)]

    @model_validator(mode="after")
    def _unique(self) -> ContractsFile:
        seen: set[str] = set()
        for index, item in enumerate(self.contract):
            if item.id in seen:
                raise ValueError(f"contract.{index}.id: {item.id!r} is used twice")
            seen.add(item.id)
        return self

    @model_validator(mode="after")
    def _one_contract_at_a_time(self) -> ContractsFile:
        """A machine is under at most one contract at any instant, or it is billed twice."""
        assigned: list[tuple[int, int, str, int, int]] = []  # contract, machine, name, lo, hi
        problems = []
        for c_index, contract in enumerate(self.contract):
            for m_index, item in enumerate(contract.machine):
                lo, hi = contract.machine_window(item)
                for o_c, o_m, name, o_lo, o_hi in assigned:
                    if o_c == c_index or not same_machine_possible(name, item.id):
                        continue
                    a, b = max(lo, o_lo), min(hi, o_hi)
                    if a < b:
                        other = self.contract[o_c]
                        tz = contract.zone
                        problems.append(
                            f"contract.{c_index}.machine.{m_index} (contract {contract.id!r}): "
                            f"{item.id!r} is also under contract {other.id!r} "
                            f"(contract.{o_c}.machine.{o_m}, {name!r}) from "
                            f"{describe_instant(a, tz)} to {describe_instant(b, tz)}: a machine "
                            "can be under one contract at a time (a bare id may be the same "
                            "machine as a site/machine name)"
                        )
                assigned.append((c_index, m_index, item.id, lo, hi))
        if problems:
            raise ValueError("; ".join(problems))
        return self


def _describe(error: ValidationError, data: dict[str, Any], source: str, outcome: str) -> str:
    lines = [f"{source}: invalid contracts file ({outcome})"]
    contracts = data.get("contract") if isinstance(data, dict) else None
    for item in error.errors():
        loc = list(item["loc"])
        where = ".".join(str(p) for p in loc) or "(file)"
        if (
            len(loc) >= 2
            and loc[0] == "contract"
            and isinstance(loc[1], int)
            and isinstance(contracts, list)
            and loc[1] < len(contracts)
            and isinstance(contracts[loc[1]], dict)
            and "id" in contracts[loc[1]]
        ):
            where += f" (contract {contracts[loc[1]]['id']!r})"
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown field (check the spelling; see docs/billing.md)"
        elif item["type"] == "missing":
            message = "required field is missing"
        lines.append(f"  {where}: {message}" if loc else f"  {message}")
    return "\n".join(lines)


NOTHING_EXPORTED = "nothing was exported"


def parse_contracts(
    data: dict[str, Any], source: str = "contracts", outcome: str = NOTHING_EXPORTED
) -> list[Contract]:
    """Validate already-parsed TOML data; raise ``ContractsError`` naming each bad field
    (its first line says the file is invalid and ``outcome``, what the caller did not do)."""
    try:
        return list(ContractsFile.model_validate(data).contract)
    except ValidationError as exc:
        raise ContractsError(_describe(exc, data, source, outcome)) from None


def load_contracts(path: Path, outcome: str = NOTHING_EXPORTED) -> list[Contract]:
    """Read and validate a contracts TOML file; its numbers are read as exact decimals.
    ``outcome``: what a bad file stops, for the error (see ``parse_contracts``)."""
    data = read_toml(
        Path(path), ContractsError, "file", "examples/contracts.toml", parse_float=Decimal
    )
    return parse_contracts(data, str(path), outcome)
