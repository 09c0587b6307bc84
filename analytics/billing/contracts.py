"""Power-by-the-hour service contracts: the TOML file format and its validation.

The file is a public interface (documented with a full example in docs/billing.md and
examples/contracts.toml). Every error names the field, e.g.
``contract.0.tier.1.up_to_hours (contract 'PBH-001'): must be above the previous tier's
100``; a file with any error yields no contracts at all.
"""

from __future__ import annotations

from datetime import date, datetime, time, tzinfo
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

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

from analytics.periods import PeriodKind, local_instant, local_midnight, zone
from contract import State, validate_id
from contract.settings import read_toml

RoundingMode = Literal["half_up", "half_even", "up", "down"]
Method = Literal["state", "counter"]


class ContractsError(ValueError):
    """The contracts file is missing, not TOML, or invalid; the message names each field."""


def _decimal(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError('must be a decimal number, e.g. "42.50"')
    if isinstance(value, float):
        return Decimal(repr(value))
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


class Tier(BaseModel):
    """Graduated rate: hours up to ``up_to_hours`` (per machine per period) at this rate."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    up_to_hours: Positive | None = None
    rate_per_hour: NonNegative


class MachineTerm(BaseModel):
    """A machine under the contract, optionally only from/to a local date or time."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    id: Id
    from_: date | datetime | None = Field(default=None, alias="from")
    to: date | datetime | None = None

    def bound(self, which: Literal["from", "to"], tz: tzinfo) -> datetime | None:
        """The effective-date bound as an aware instant (dates mean local midnight)."""
        value = self.from_ if which == "from" else self.to
        if value is None:
            return None
        if isinstance(value, datetime):
            return local_instant(value, tz) if value.tzinfo is None else value
        return local_midnight(value, tz)

    @model_validator(mode="after")
    def _ordered(self) -> MachineTerm:
        # Bounds both local or both with offsets compare here; a mix needs the contract's
        # zone and is checked by Contract._machines.
        if self.from_ is None or self.to is None or _aware(self.from_) != _aware(self.to):
            return self
        if _key(self.to) <= _key(self.from_):
            raise ValueError(ordering_error(self.from_, self.to))
        return self


def ordering_error(lo: date | datetime, hi: date | datetime) -> str:
    return f"'to' ({hi}) must be after 'from' ({lo})"


def _aware(value: date | datetime) -> bool:
    return isinstance(value, datetime) and value.tzinfo is not None


def _key(value: date | datetime) -> datetime:
    if isinstance(value, datetime):
        return value
    return datetime.combine(value, time())


class Contract(BaseModel):
    """One service contract: who pays what for which machines' hours."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Id
    customer: Annotated[str, Field(min_length=1)]
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
    timezone: str = "UTC"
    period: PeriodKind = "month"
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
        windows: dict[str, list[tuple[datetime, datetime, int]]] = {}
        low, high = datetime(1, 1, 2, tzinfo=tz), datetime(9999, 12, 30, tzinfo=tz)
        for index, term in enumerate(self.machine):
            lo = term.bound("from", tz) or low
            hi = term.bound("to", tz) or high
            if term.from_ is not None and term.to is not None and hi <= lo:
                raise ValueError(f"machine.{index}: {ordering_error(term.from_, term.to)}")
            for other_lo, other_hi, other in windows.get(term.id, []):
                if lo < other_hi and other_lo < hi:
                    raise ValueError(
                        f"machine.{index}: {term.id!r} overlaps machine.{other} (its effective "
                        "dates must not overlap)"
                    )
            windows.setdefault(term.id, []).append((lo, hi, index))
        return self

    @property
    def zone(self) -> tzinfo:
        return zone(self.timezone)


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


def _describe(error: ValidationError, data: dict[str, Any], source: str) -> str:
    lines = [f"{source}: invalid contracts file (nothing was exported)"]
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
        lines.append(f"  {where}: {message}")
    return "\n".join(lines)


def parse_contracts(data: dict[str, Any], source: str = "contracts") -> list[Contract]:
    """Validate already-parsed TOML data; raise ``ContractsError`` naming each bad field."""
    try:
        return list(ContractsFile.model_validate(data).contract)
    except ValidationError as exc:
        raise ContractsError(_describe(exc, data, source)) from None


def load_contracts(path: Path) -> list[Contract]:
    """Read and validate a contracts TOML file."""
    data = read_toml(Path(path), ContractsError, "file", "examples/contracts.toml")
    return parse_contracts(data, str(path))
