"""The edge agent: a source's samples → on-disk buffer → MQTT telemetry (wire contract v1).

Every sample is committed to a SQLite buffer before it is published and removed only after
the broker acknowledged the message that carried it (store-and-forward, at-least-once).
May import only ``common`` and ``wire`` (docs/design.md); in-process fleets hand readings to ``submit``.

>>> from edge import EdgeAgent, SampleBuffer, Broker, EdgeReading
>>> agent = EdgeAgent(MachineRef("plant1", "line-a", "cnc-01"),
...                   SampleBuffer(Path("var/edge/cnc-01.sqlite3")),
...                   Broker.from_url("mqtt://localhost:1883"))
"""

from edge.agent import AgentOptions, AgentStats, EdgeAgent
from edge.buffer import Batch, BufferInUse, EdgeBufferError, SampleBuffer
from edge.mqtt import Broker, PublishRefused
from edge.readings import EdgeReading, Reading

__all__ = [
    "AgentOptions",
    "AgentStats",
    "Batch",
    "Broker",
    "BufferInUse",
    "EdgeAgent",
    "EdgeBufferError",
    "EdgeReading",
    "PublishRefused",
    "Reading",
    "SampleBuffer",
]
