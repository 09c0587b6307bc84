"""A Modbus register map: what to read, how to decode it, and in how few requests (pure).

``[edge.source] type = "modbus"`` (see ``docs/modbus.md``) names, per value, the unit id,
the table (``holding``/``input`` registers, ``coil``/``discrete`` bits), the address, the
type and the byte and word order, plus a scale and offset; the state comes from a register
or bit through a value map, the hour meter from a register whose width gives its rollover,
and an optional timestamp register is the device's own clock. ``plan_reads`` joins the
entries into as few read requests as the map allows; ``decode`` turns registers into numbers.
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from edge.value_name import checked_value_name
from wire import STATES, State
from wire.payloads import shortest_float32

Table = Literal["holding", "input", "coil", "discrete"]
RegisterType = Literal[
    "int16", "uint16", "int32", "uint32", "float32", "int64", "uint64", "float64", "bool"
]
Order = Literal["big", "little"]

# Registers (16 bits) per type, and the struct code of the whole value (big-endian).
WIDTH: dict[RegisterType, int] = {
    "int16": 1,
    "uint16": 1,
    "int32": 2,
    "uint32": 2,
    "float32": 2,
    "int64": 4,
    "uint64": 4,
    "float64": 4,
    "bool": 1,
}
_STRUCT = {
    "int16": ">h",
    "uint16": ">H",
    "int32": ">i",
    "uint32": ">I",
    "float32": ">f",
    "int64": ">q",
    "uint64": ">Q",
    "float64": ">d",
}
BIT_TABLES: frozenset[Table] = frozenset({"coil", "discrete"})
# Most a single request may read (Modbus application protocol, functions 1-4).
MAX_REGISTERS_PER_READ = 125
MAX_BITS_PER_READ = 2000


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    address: int = Field(ge=0, le=65535)
    table: Table = "holding"
    type: RegisterType = "uint16"
    byte_order: Order = "big"  # within each 16-bit register
    word_order: Order = "big"  # big: the first register holds the most significant word
    unit: int | None = Field(default=None, ge=0, le=255)  # default: the source's unit

    @model_validator(mode="after")
    def _fits(self) -> _Entry:
        bits = self.table in BIT_TABLES
        if bits != (self.type == "bool"):
            raise ValueError(
                f"type {self.type!r} does not fit table {self.table!r} (coil and discrete "
                "hold single bits: type 'bool'; holding and input hold registers)"
            )
        if self.address + WIDTH[self.type] > 65536:
            raise ValueError(f"a {self.type} at address {self.address} runs past 65535")
        return self

    @property
    def width(self) -> int:
        return WIDTH[self.type]


class ValueEntry(_Entry):
    """``[[edge.source.values]]``: one register (or bit) → one value, ``raw·scale + offset``."""

    name: str  # the value name, with its unit as a suffix (spindle_speed_rpm)
    scale: float = 1.0
    offset: float = 0.0

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        return checked_value_name(name)


class StateEntry(_Entry):
    """``[edge.source.state]``: the machine state from a register or bit through ``map``."""

    map: dict[int, State]  # raw value → off | idle | running | fault | maintenance

    @field_validator("map", mode="before")
    @classmethod
    def _keys(cls, value: object) -> object:
        # TOML keys are strings ("2" = "running"); a bit reads as 0/1 (or false/true).
        if isinstance(value, dict):
            keys = {"false": 0, "true": 1}
            return {keys.get(str(k).lower(), k): v for k, v in value.items()}
        return value

    @model_validator(mode="after")
    def _non_empty(self) -> StateEntry:
        if not self.map:
            raise ValueError(f"map must name at least one state ({', '.join(STATES)})")
        return self


class MeterEntry(_Entry):
    """``[edge.source.hour_meter]``: the machine's hour meter → ``run_seconds_total``.

    ``scale`` turns the register into seconds (3600 for a meter counting hours). Its width
    (the type) is where it rolls over: the agent counts the rollovers, so the counter it
    publishes keeps rising.
    """

    type: RegisterType = "uint32"
    scale: float = Field(default=1.0, gt=0)

    @model_validator(mode="after")
    def _unsigned(self) -> MeterEntry:
        if self.type not in ("uint16", "uint32", "uint64"):
            raise ValueError(
                f"an hour meter is an unsigned counter (uint16/32/64), not {self.type}"
            )
        return self

    @property
    def modulus(self) -> int:
        """Raw values the register can hold: it rolls over from ``modulus - 1`` to 0."""
        return 1 << (16 * self.width)


class ClockEntry(_Entry):
    """``[edge.source.timestamp]``: the device's clock, epoch seconds × ``scale`` (0.001 for
    milliseconds). Samples then carry the device's time instead of the agent's."""

    type: RegisterType = "uint64"
    scale: float = Field(default=0.001, gt=0)


@dataclass(frozen=True)
class Field_:
    """One thing to read, wherever it came from in the map: ``what`` names it in errors."""

    what: str
    unit: int
    table: Table
    address: int
    width: int
    entry: _Entry


@dataclass(frozen=True)
class Read:
    """One request: ``count`` registers (or bits) of ``table`` from ``start`` on ``unit``."""

    unit: int
    table: Table
    start: int
    count: int
    fields: tuple[Field_, ...]


def fields_of(
    values: Sequence[ValueEntry],
    state: StateEntry | None,
    hour_meter: MeterEntry | None,
    timestamp: ClockEntry | None,
    default_unit: int,
) -> list[Field_]:
    """Every entry of the map, named as in the config; overlapping entries raise
    ``ValueError`` naming both."""
    named: list[tuple[str, _Entry]] = [(f"values[{i}] ({v.name})", v) for i, v in enumerate(values)]
    named += [(n, e) for n, e in (("state", state), ("hour_meter", hour_meter),
                                  ("timestamp", timestamp)) if e is not None]  # fmt: skip
    names = [v.name for v in values]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise ValueError(f"values[{i}]: the name {name!r} is used twice")
        if name == "run_seconds_total" and hour_meter is not None:
            raise ValueError(f"values[{i}]: run_seconds_total is the hour meter's name")
    fields = [
        Field_(what, default_unit if e.unit is None else e.unit, e.table, e.address, e.width, e)
        for what, e in named
    ]
    ordered = sorted(fields, key=lambda f: (f.unit, f.table, f.address))
    for before, after in itertools.pairwise(ordered):
        same = (before.unit, before.table) == (after.unit, after.table)
        if same and after.address < before.address + before.width:
            raise ValueError(
                f"{after.what}: {_span(after)} overlaps {before.what} at {_span(before)}"
            )
    return fields


def _span(f: Field_) -> str:
    last = f.address + f.width - 1
    where = f"{f.address}" if last == f.address else f"{f.address}-{last}"
    return f"{f.table} {where} (unit {f.unit})"


def plan_reads(fields: Iterable[Field_], max_registers: int, max_gap: int) -> list[Read]:
    """Join fields of the same unit and table into requests of at most ``max_registers``
    registers (bits: 16 times as many, up to 2000), bridging gaps of up to ``max_gap``
    unread addresses (reading a few unused registers beats another round trip)."""
    reads: list[Read] = []
    current: list[Field_] = []

    def close() -> None:
        if current:
            first, end = current[0].address, max(f.address + f.width for f in current)
            reads.append(
                Read(current[0].unit, current[0].table, first, end - first, tuple(current))
            )
            current.clear()

    for f in sorted(fields, key=lambda f: (f.unit, f.table, f.address)):
        if current:
            head = current[0]
            limit = (
                min(max_registers * 16, MAX_BITS_PER_READ)
                if f.table in BIT_TABLES
                else max_registers
            )
            end = max(g.address + g.width for g in current)
            if (
                (f.unit, f.table) != (head.unit, head.table)
                or f.address - end > max_gap
                or f.address + f.width - head.address > limit
            ):
                close()
        current.append(f)
    close()
    return reads


def decode(
    words: Sequence[int], type_: RegisterType, byte_order: Order, word_order: Order
) -> float:
    """The number ``words`` (16-bit registers, as read) hold.

    >>> decode([0x4148, 0x0000], "float32", "big", "big")
    12.5
    >>> decode([0x0000, 0x4148], "float32", "big", "little")  # CDAB
    12.5
    """
    if type_ == "bool":
        return 1.0 if words[0] else 0.0
    ordered = list(words) if word_order == "big" else list(reversed(words))
    raw = b"".join(
        w.to_bytes(2, "big") if byte_order == "big" else w.to_bytes(2, "little") for w in ordered
    )
    (number,) = struct.unpack(_STRUCT[type_], raw)
    return shortest_float32(number) if type_ == "float32" else float(number)


def encode(
    number: float, type_: RegisterType, byte_order: Order = "big", word_order: Order = "big"
) -> list[int]:
    """The registers that ``decode`` reads back as ``number`` (simulators and tests)."""
    if type_ == "bool":
        return [1 if number else 0]
    value: float | int = number if type_.startswith("float") else int(number)
    raw = struct.pack(_STRUCT[type_], value)
    words = [raw[i : i + 2] for i in range(0, len(raw), 2)]
    if byte_order == "little":
        words = [w[::-1] for w in words]
    registers = [int.from_bytes(w, "big") for w in words]
    return registers if word_order == "big" else registers[::-1]


def unwrap(raw: int, last_raw: int | None, wraps: int, modulus: int) -> int:
    """Rollovers counted so far after reading ``raw`` (the previous read was ``last_raw``).

    A drop of more than half the register's range is a rollover; a smaller drop (a meter
    that was reset or set back) is passed on as it is, for billing's meter rules to judge.
    """
    if last_raw is not None and raw < last_raw and last_raw - raw > modulus // 2:
        return wraps + 1
    return wraps


class ModbusSource(BaseModel):
    """``[edge.source] type = "modbus"``: a Modbus TCP device (or gateway) and its map."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["modbus"]
    host: str
    port: int = Field(default=502, ge=1, le=65535)
    unit: int = Field(default=1, ge=0, le=255)  # unit id of entries that name none
    poll_interval: float = Field(default=1.0, gt=0, le=3600)  # s between polls
    timeout: float = Field(default=1.0, gt=0, le=60)  # s per request
    reconnect_min: float = Field(default=0.5, gt=0)  # s, doubled per failed attempt …
    reconnect_max: float = Field(default=30.0, gt=0)  # … up to this
    max_registers: int = Field(default=MAX_REGISTERS_PER_READ, ge=1, le=MAX_REGISTERS_PER_READ)
    max_gap: int = Field(default=8, ge=0, le=124)  # unused registers read to save a request
    values: list[ValueEntry] = []
    state: StateEntry | None = None
    hour_meter: MeterEntry | None = None
    timestamp: ClockEntry | None = None

    @model_validator(mode="after")
    def _map(self) -> ModbusSource:
        if not self.values and self.state is None:
            raise ValueError("the register map has no values and no state: a sample needs one")
        if self.reconnect_max < self.reconnect_min:
            raise ValueError("reconnect_max must be >= reconnect_min")
        self.fields()  # overlapping entries, duplicate names
        return self

    def fields(self) -> list[Field_]:
        return fields_of(self.values, self.state, self.hour_meter, self.timestamp, self.unit)

    def reads(self) -> list[Read]:
        return plan_reads(self.fields(), self.max_registers, self.max_gap)
