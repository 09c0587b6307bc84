"""``[edge.source] type = "opcua"``: the server, the security and the node map (pure
pydantic, so reading a config does not import asyncua; the reader is ``edge/opcua.py``)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from edge.value_name import checked_value_name
from wire import State

COUNTER = "run_seconds_total"
Security = Literal[
    "None",
    "Basic256Sha256,Sign",
    "Basic256Sha256,SignAndEncrypt",
    "Aes128Sha256RsaOaep,Sign",
    "Aes128Sha256RsaOaep,SignAndEncrypt",
    "Aes256Sha256RsaPss,Sign",
    "Aes256Sha256RsaPss,SignAndEncrypt",
]


# OPC UA Part 6 node id strings: [ns=<index>;|nsu=<uri>;](i=<n>|s=<text>|g=<guid>|b=<base64>)
NODE_ID = re.compile(
    r"(?:ns=\d+;|nsu=[^;]+;)?(?:i=\d+|s=.+|g=[0-9A-Fa-f]{8}-(?:[0-9A-Fa-f]{4}-){3}[0-9A-Fa-f]{12}|b=[A-Za-z0-9+/=]+)"
)


def _node_id(value: str) -> str:
    if not NODE_ID.fullmatch(value):
        raise ValueError(
            f"{value!r} is not an OPC UA node id (e.g. 'ns=2;s=cnc-01.SpindleSpeed' or 'i=2258')"
        )
    return value


class NodeEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    node: str

    @field_validator("node")
    @classmethod
    def _node(cls, value: str) -> str:
        return _node_id(value)


class OpcuaValue(NodeEntry):
    """``[[edge.source.values]]``: one node → one value, ``value·scale + offset``."""

    name: str
    scale: float = 1.0
    offset: float = 0.0
    deadband: float = Field(default=0.0, ge=0)  # absolute; 0 = every change (subscribe mode)

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        return checked_value_name(name)


class OpcuaState(NodeEntry):
    """``[edge.source.state]``: the state node; a string that is a state name is taken as it
    is, other values (an enumeration's number, a vendor's word) through ``map``."""

    map: dict[str, State] = {}


class OpcuaMeter(NodeEntry):
    """``[edge.source.hour_meter]``: operating hours → seconds (``scale``: 0.001 for a
    Duration in ms, as OPC UA DI's ``OperationDuration``; 3600 for hours)."""

    scale: float = Field(default=0.001, gt=0)


class OpcuaSource(BaseModel):
    """``[edge.source] type = "opcua"``: an OPC UA server and the nodes to read."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["opcua"]
    url: str = Field(pattern=r"^opc\.tcp://")
    mode: Literal["subscribe", "poll"] = "subscribe"
    interval: float = Field(default=1.0, gt=0, le=3600)  # publishing / polling interval (s)
    queue_size: int = Field(default=100, ge=1, le=100_000)  # changes a server queues per node
    timeout: float = Field(default=5.0, gt=0, le=120)  # s per request
    reconnect_min: float = Field(default=0.5, gt=0)
    reconnect_max: float = Field(default=30.0, gt=0)
    security: Security = "None"  # policy,mode
    certificate: Path | None = None  # this client's certificate (DER or PEM) …
    private_key: Path | None = None  # … and its key: for security, and as identity
    server_certificate: Path | None = None  # pin the server's certificate
    username: str | None = None
    password: SecretStr | None = None
    values: list[OpcuaValue] = []
    state: OpcuaState | None = None
    hour_meter: OpcuaMeter | None = None

    @model_validator(mode="after")
    def _complete(self) -> OpcuaSource:
        if not self.values and self.state is None:
            raise ValueError("no values and no state to read: a sample needs one")
        if self.reconnect_max < self.reconnect_min:
            raise ValueError("reconnect_max must be >= reconnect_min")
        if self.security != "None" and (self.certificate is None or self.private_key is None):
            raise ValueError(f"security {self.security!r} needs certificate and private_key")
        if (self.certificate is None) != (self.private_key is None):
            raise ValueError("certificate and private_key go together")
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together")
        names = [v.name for v in self.values]
        nodes = [n.node for n in self.entries()]
        for i, name in enumerate(names):
            if name in names[:i] or name == COUNTER:
                raise ValueError(f"values[{i}]: the name {name!r} is taken")
        for node in nodes:
            if nodes.count(node) > 1:
                raise ValueError(f"node {node!r} is mapped twice")
        return self

    def entries(self) -> list[NodeEntry]:
        extra = [e for e in (self.state, self.hour_meter) if e is not None]
        return [*self.values, *extra]
