"""The simulated fleet as a Modbus TCP server: one unit id per machine, as behind a gateway.

Register map (holding registers, function 3; the same for every kind up to its values):

| registers | type | content |
| --- | --- | --- |
| 0-3 | uint64 | time of the latest reading, epoch milliseconds (the machine's clock) |
| 4 | uint16 | state: 0 off, 1 idle, 2 running, 3 fault, 4 maintenance |
| 5-6 | uint32 | hour meter, whole seconds of running (``run_seconds_total``) |
| 7, 9, 11, … | float32 | the kind's values in order (``VALUE_NAMES``), two registers each |

Multi-register numbers are big-endian words of big-endian bytes ("ABCD"). Machine *i* of
the fleet (0-based) answers as unit id *i + 1*; other unit ids get exception 0x0B (gateway
target failed to respond). The registers are read-only: writes are refused (exception
0x01, illegal function). ``register_map(kind)`` lists the map; the example edge configs in
``examples/modbus/`` are rendered from it.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pymodbus.constants import ExcCodes
from pymodbus.datastore import ModbusServerContext
from pymodbus.exceptions import NoSuchIdException
from pymodbus.server import ModbusTcpServer

from simulators.live import LiveFleet
from simulators.machine import RUN_COUNTER, Reading
from simulators.signals import MODELS
from simulators.spec import MachineKind
from wire import STATES

CLOCK_ADDRESS = 0
STATE_ADDRESS = 4
METER_ADDRESS = 5
VALUES_ADDRESS = 7
HOLDING = 3  # read holding registers


@dataclass(frozen=True)
class Register:
    """One entry of the map: what sits at ``address`` and how to read it."""

    name: str  # a value name, or "timestamp", "state", "hour_meter"
    address: int
    type: str  # int16 … float64, as the edge's register map names them
    scale: float = 1.0


def register_map(kind: MachineKind) -> list[Register]:
    """The registers of a machine of ``kind``."""
    fixed = [
        Register("timestamp", CLOCK_ADDRESS, "uint64", 0.001),
        Register("state", STATE_ADDRESS, "uint16"),
        Register("hour_meter", METER_ADDRESS, "uint32"),
    ]
    values = [
        Register(name, VALUES_ADDRESS + 2 * i, "float32")
        for i, name in enumerate(MODELS[kind].names)
    ]
    return fixed + values


def encode_reading(reading: Reading, kind: MachineKind) -> list[int]:
    """The holding registers 0… of a machine whose latest reading is ``reading``."""
    sample = reading.sample
    meter = int(reading.counters.get(RUN_COUNTER, 0.0))  # whole seconds, as a meter shows
    words = _words(">Q", sample.ts_ms) + _words(">H", STATES.index(sample.state or "off"))
    words += _words(">I", meter % (1 << 32))
    for name in MODELS[kind].names:
        words += _words(">f", sample.values.get(name, float("nan")))
    return words


def _words(fmt: str, number: float) -> list[int]:
    raw = struct.pack(fmt, number)
    return [int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2)]


class FleetContext(ModbusServerContext):
    """pymodbus's datastore hook (pinned pymodbus): unit id → machine, read-only.

    Registers are encoded when read, from the machine's latest reading, so a request
    always sees one whole reading (the event loop runs one thing at a time).
    """

    def __init__(self, fleet: LiveFleet) -> None:  # no super(): no pymodbus datastore
        self.fleet = fleet
        self.simdevices = []
        self.old_simulator = True  # pymodbus: call this context directly
        self.reads = 0

    def device_ids(self) -> list[int]:
        return list(range(1, len(self.fleet.sims) + 1))

    async def async_getValues(
        self, device_id: int, func_code: int, address: int, count: int = 1
    ) -> Any:
        index = device_id - 1
        if not 0 <= index < len(self.fleet.sims):
            raise NoSuchIdException(f"no machine answers as unit {device_id}")
        if func_code != HOLDING:
            return ExcCodes.ILLEGAL_FUNCTION
        reading = self.fleet.latest[index]
        if reading is None:
            return ExcCodes.DEVICE_BUSY  # nothing measured yet
        words = encode_reading(reading, self.fleet.specs[index].kind)
        if address + count > len(words):
            return ExcCodes.ILLEGAL_ADDRESS
        self.reads += 1
        return words[address : address + count]

    async def async_setValues(
        self, device_id: int, func_code: int, address: int, values: Sequence[int] | Sequence[bool]
    ) -> Any:
        return ExcCodes.ILLEGAL_FUNCTION


async def start_modbus_server(fleet: LiveFleet, host: str, port: int) -> ModbusTcpServer:
    """Listen on ``host:port`` (in the background of the running loop); ``shutdown()`` ends."""
    server = ModbusTcpServer(FleetContext(fleet), address=(host, port))
    await server.serve_forever(background=True)
    return server
