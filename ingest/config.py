"""Settings of the ingest service: the shared connection settings plus an ``[ingest]`` section.

Every field can be set in the TOML file (``[ingest]`` table) or overridden with
``RUNHOURS_INGEST__<FIELD>``, e.g. ``RUNHOURS_INGEST__BATCH_POINTS=10000``.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from common.settings import RunhoursSettings
from wire import State, WireError, validate_id
from wire.payloads import VALUE_NAME

# MQTT 5 limits: Receive Maximum is a two-byte integer > 0, Session Expiry four bytes.
RECEIVE_MAXIMUM_LIMIT = 65_535
SESSION_NEVER_EXPIRES = 0xFFFF_FFFF


_PLACES = {"site": ("group", "node"), "line": ("group", "node"),
           "machine": ("group", "node", "device"), "node_machine": ("group", "node")}  # fmt: skip


class SparkplugOptions(BaseModel):
    """``[ingest.sparkplug]``: also take Sparkplug B edge nodes (docs/sparkplug.md).

    Group, edge node and device ids map onto site, line and machine through templates
    (``{group}``, ``{node}``, ``{device}``); the edge node's own metrics (NBIRTH/NDATA) go to
    the machine ``node_machine``.
    """

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    host_id: str = Field(
        default="runhours", description="primary host id: STATE on spBv1.0/STATE/<host_id>"
    )
    group: str = Field(default="+", description="only this Sparkplug group; '+' = every group")
    site: str = "{group}"
    line: str = "{node}"
    machine: str = "{device}"
    node_machine: str = "{node}"
    state_metric: str = Field(default="state", description="the metric that holds the state")
    state_map: dict[str, State] = Field(
        default_factory=dict, description="state metric value → state (names map themselves)"
    )
    metrics: dict[str, str] = Field(
        default_factory=dict,
        description="metric name → value name; other names are lower-cased, with every "
        "run of other characters as one '_' (Spindle/Speed rpm → spindle_speed_rpm)",
    )
    rebirth_interval: float = Field(
        default=10.0, gt=0, description="seconds between two rebirth requests to one node"
    )

    @field_validator("host_id", "group")
    @classmethod
    def _topic_level(cls, value: str, info: Any) -> str:
        if value == "+" and info.field_name == "group":
            return value
        if not value or any(c in value for c in "/+#"):
            raise ValueError(f"{value!r} cannot be an MQTT topic level")
        return value

    @model_validator(mode="after")
    def _templates(self) -> SparkplugOptions:
        for place, allowed in _PLACES.items():
            template = getattr(self, place)
            try:
                template.format(**{name: "x" for name in allowed})
            except (KeyError, IndexError, ValueError):
                raise ValueError(
                    f"{place}: {template!r} may use only "
                    + ", ".join("{" + name + "}" for name in allowed)
                ) from None
        for name, value in self.metrics.items():
            if not VALUE_NAME.fullmatch(value):
                raise ValueError(f"metrics.{name}: {value!r} is not a value name")
        return self


class IngestOptions(BaseModel):
    """The ``[ingest]`` section: subscription, batching, backpressure, retries, metrics."""

    model_config = ConfigDict(extra="forbid")

    client_id: str = Field(
        default="runhours-ingest",
        description="MQTT client id; keeps the persistent session, so it must be stable "
        "across restarts and distinct per worker",
    )
    share_group: str | None = Field(
        default=None,
        description="MQTT 5 shared subscription group ($share/<group>/…): workers with "
        "the same group split the telemetry between them",
    )
    site: str = Field(default="+", description="only this site's topics; '+' = every site")
    batch_points: int = Field(
        default=20000,
        ge=1,
        description="write when this many points wait (InfluxDB takes big batches best)",
    )
    batch_interval: float = Field(
        default=0.2, gt=0, description="…or when the oldest waiting point is this old (s)"
    )
    max_inflight: int = Field(
        default=2000,
        ge=1,
        le=RECEIVE_MAXIMUM_LIMIT,
        description="MQTT 5 Receive Maximum: unacknowledged messages the broker may send us",
    )
    session_expiry: int = Field(
        default=7 * 24 * 3600,
        ge=1,
        le=SESSION_NEVER_EXPIRES,
        description="seconds the broker keeps our session (and queues for us) while we are away",
    )
    max_message_bytes: int = Field(
        default=16 * 1024 * 1024,
        ge=1024,
        description="larger messages are dead-lettered unread (bounds what one message costs)",
    )
    keepalive: int = Field(default=30, ge=5, description="MQTT keepalive (s)")
    reconnect_min_delay: int = Field(default=1, ge=1, description="first broker reconnect delay")
    reconnect_max_delay: int = Field(default=30, ge=1, description="longest reconnect delay (s)")
    retry_initial: float = Field(
        default=0.2, gt=0, description="first delay before retrying a failed write (s)"
    )
    retry_max: float = Field(default=30.0, gt=0, description="longest delay between retries (s)")
    hold_edges_after: float = Field(
        default=30.0,
        ge=0,
        description="once InfluxDB writes have failed this long (s), announce this worker "
        "offline so edge agents keep their telemetry in their own buffers instead of the "
        "broker's queue; online again once a write works; 0 = never",
    )
    shutdown_timeout: float = Field(
        default=15.0,
        ge=0,
        description="on SIGTERM, how long to keep trying to flush before leaving the rest "
        "unacknowledged (the broker redelivers it on the next start)",
    )
    metrics_port: int = Field(default=0, ge=0, le=65535, description="Prometheus /metrics; 0 = off")
    metrics_addr: str = Field(
        default="127.0.0.1",
        description="address the metrics server binds (it has no login: loopback by default)",
    )
    stats_interval: float = Field(
        default=10.0, ge=0, description="write an ingest_stats point this often (s); 0 = off"
    )
    sparkplug: SparkplugOptions = SparkplugOptions()

    @field_validator("site")
    @classmethod
    def _site(cls, value: str) -> str:
        return value if value == "+" else _id(value, "site")

    @field_validator("share_group")
    @classmethod
    def _share_group(cls, value: str | None) -> str | None:
        return None if value in (None, "") else _id(value, "share_group")

    @field_validator("client_id")
    @classmethod
    def _client_id(cls, value: str) -> str:
        # Also a tag value of ingest_stats points and part of log lines.
        return _id(value, "client_id")

    @model_validator(mode="after")
    def _ordered(self) -> IngestOptions:
        if self.retry_initial > self.retry_max:
            raise ValueError("retry_initial must not exceed retry_max")
        if self.reconnect_min_delay > self.reconnect_max_delay:
            raise ValueError("reconnect_min_delay must not exceed reconnect_max_delay")
        if self.sparkplug.enabled and self.share_group:
            raise ValueError(
                "sparkplug needs every message of an edge node in one worker (births, aliases, "
                "seq): do not combine it with share_group; pin groups to workers instead"
            )
        return self


def _id(value: str, what: str) -> str:
    try:
        return validate_id(value, what)
    except WireError as exc:
        raise ValueError(str(exc).removeprefix(f"{what}: ")) from None


class IngestSettings(RunhoursSettings):
    """Settings of ``runhours ingest``: connections (docs/design.md) and the ``[ingest]`` section."""

    ingest: IngestOptions = IngestOptions()

    @classmethod
    def from_base(cls, base: RunhoursSettings, **options: Any) -> IngestSettings:
        """``base``'s connection settings with an ``[ingest]`` section built from
        ``options`` (the demo and the tests use this)."""
        shared = base.model_dump(include=set(RunhoursSettings.model_fields))
        return cls(**shared, ingest=IngestOptions(**options))
