"""The ``[edge]`` settings: which machine, how to batch, the buffer's bounds, the source.

``EdgeSettings`` is the shared ``RunhoursSettings`` plus this section; TOML keys live under
``[edge]``, ``[edge.buffer]`` and ``[edge.source]`` (see ``edge/example.toml``) and every
key can be overridden from the environment, e.g. ``RUNHOURS_EDGE__MAX_BATCH=200`` or
``RUNHOURS_EDGE__SOURCE__SPEED=max``. Invalid values fail with an error naming the field.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ByteSize,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    model_validator,
)

from common.settings import RunhoursSettings
from common.times import parse_duration
from edge.agent import AgentOptions
from edge.buffer import SampleBuffer
from edge.modbus_map import ModbusSource
from edge.mqtt import Broker
from edge.opcua_config import OpcuaSource
from edge.sources import CsvColumns
from wire import MachineRef
from wire.topics import ID_PATTERN

_SECONDS = re.compile(r"\d+(?:\.\d+)?")


def seconds(value: Any) -> float:
    """Seconds (> 0) from a number or a duration such as ``"90s"``, ``"15m"``, ``"7d"``
    (``common.times``, the one reader of durations). A bare number in a string (``"30"``,
    as an environment variable gives it) is seconds."""
    bare = isinstance(value, str) and _SECONDS.fullmatch(value.strip())
    duration = parse_duration(float(value) if bare else value).total_seconds()
    if not duration > 0:
        raise ValueError(f"duration must be positive, got {value!r}")
    return duration


def parse_speed(value: Any) -> float | None:
    """``"max"`` (or ``None``) → as fast as possible; else a factor > 0 (1 = real time)."""
    if value is None or (isinstance(value, str) and value.strip().lower() == "max"):
        return None
    try:
        speed = float(value)
    except (TypeError, ValueError):
        raise ValueError(
            f"{value!r} is not a speed: use 'max' or a factor > 0 (1 = real time)"
        ) from None
    if not speed > 0 or speed == float("inf"):
        raise ValueError(f"speed must be 'max' or a factor > 0 (1 = real time), got {value!r}")
    return speed


Duration = Annotated[float, BeforeValidator(seconds)]
Speed = Annotated[float | None, BeforeValidator(parse_speed)]
Id = Annotated[str, Field(pattern=f"^{ID_PATTERN.pattern}$")]  # anchored: a full match


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BufferOptions(_Section):
    """``[edge.buffer]``: the store-and-forward file and its bounds."""

    path: Path | None = None  # default: <data_dir>/edge/<site>.<line>.<machine>.sqlite3
    max_bytes: ByteSize = ByteSize(256 * 1024 * 1024)  # e.g. 268435456 or "256MiB"
    max_age: Duration = 7 * 86400.0  # seconds, or "7d", "12h"
    sync: Literal["normal", "full"] = "normal"  # full: also survive power loss (slower)
    reserve: ByteSize = ByteSize(1024 * 1024)  # disk space set aside to recover from a full disk

    @model_validator(mode="after")
    def _positive(self) -> BufferOptions:
        if self.max_bytes < 4096:
            raise ValueError("max_bytes must be at least 4096 (4 KiB)")
        return self


class SimulatorSource(_Section):
    """``[edge.source] type = "simulator"``: one simulated machine (wired in ``runhours``)."""

    type: Literal["simulator"] = "simulator"
    kind: str = "cnc_mill"  # cnc_mill, pump or compressor
    seed: int = 1
    speed: Speed = 1.0  # 1 = real time, 60 = a minute per second, "max"
    sample_interval: Duration = 10.0  # s between samples


class CsvSource(_Section):
    """``[edge.source] type = "csv"``: replay a CSV file (columns: see edge/README.md)."""

    type: Literal["csv"]
    path: Path
    speed: Speed = None  # None/"max": as fast as the buffer takes it; 1 = original pace
    columns: CsvColumns | None = None  # a recorded file with its own columns (edge/README.md)
    # Stop at the end of the file: once every sample is acknowledged, go offline and exit
    # (a recorded run replayed from a script). False: keep running, as a live source would.
    until_end: bool = False


def _source_type(value: Any) -> str:
    # Without a `type` key the source is the simulator (the default), so an override such as
    # RUNHOURS_EDGE__SOURCE__SPEED=max works on its own.
    if isinstance(value, dict):
        return str(value.get("type", "simulator"))
    return str(getattr(value, "type", "simulator"))


SourceOptions = Annotated[
    Annotated[SimulatorSource, Tag("simulator")]
    | Annotated[CsvSource, Tag("csv")]
    | Annotated[ModbusSource, Tag("modbus")]
    | Annotated[OpcuaSource, Tag("opcua")],
    Discriminator(_source_type),
]


class EdgeOptions(_Section):
    """``[edge]``: one agent's machine, batching and timing."""

    site: Id = "plant1"
    line: Id = "line-a"
    machine: Id = "machine-01"
    publish_interval: float = Field(
        default=1.0, gt=0, le=3600
    )  # s: a partial batch waits this long
    max_batch: int = Field(default=500, ge=1, le=50_000)  # samples per message
    max_in_flight: int = Field(default=8, ge=1, le=1000)  # unacknowledged messages
    status_interval: float = Field(default=30.0, gt=0)  # s between retained status messages
    reconnect_min: float = Field(default=0.5, gt=0)  # s, doubled per failed attempt …
    reconnect_max: float = Field(default=30.0, gt=0)  # … up to this
    stop_timeout: float = Field(default=10.0, ge=0)  # s a graceful stop keeps publishing
    publish_timeout: float = Field(default=30.0, gt=0)  # s without PUBACK → reconnect
    require_ingest: bool = True  # hold telemetry while no ingest announces itself online
    buffer: BufferOptions = BufferOptions()
    source: SourceOptions = SimulatorSource()

    @model_validator(mode="after")
    def _backoff(self) -> EdgeOptions:
        if self.reconnect_max < self.reconnect_min:
            raise ValueError("reconnect_max must be >= reconnect_min")
        return self

    @property
    def ref(self) -> MachineRef:
        return MachineRef(self.site, self.line, self.machine)

    def agent_options(self) -> AgentOptions:
        return AgentOptions(
            publish_interval=self.publish_interval,
            max_batch=self.max_batch,
            max_in_flight=self.max_in_flight,
            status_interval=self.status_interval,
            reconnect_min=self.reconnect_min,
            reconnect_max=self.reconnect_max,
            stop_timeout=self.stop_timeout,
            publish_timeout=self.publish_timeout,
            require_ingest=self.require_ingest,
        )


class EdgeSettings(RunhoursSettings):
    """Shared settings plus ``[edge]``."""

    edge: EdgeOptions = EdgeOptions()

    @property
    def broker(self) -> Broker:
        return Broker.from_settings(self)

    def buffer_path(self, ref: MachineRef | None = None) -> Path:
        """The configured buffer file, or ``<data_dir>/edge/<site>.<line>.<machine>.sqlite3``."""
        if ref is None and self.edge.buffer.path is not None:
            return self.edge.buffer.path
        site, line, machine = ref or self.edge.ref
        return self.data_dir / "edge" / f"{site}.{line}.{machine}.sqlite3"

    def open_buffer(self, ref: MachineRef | None = None) -> SampleBuffer:
        """The buffer of the configured machine, or of ``ref`` (fleets), with ``[edge.buffer]``
        bounds."""
        options = self.edge.buffer
        return SampleBuffer(
            self.buffer_path(ref),
            max_bytes=int(options.max_bytes),
            max_age_s=options.max_age,
            sync=options.sync,
            reserve_bytes=int(options.reserve),
        )
