"""The dead-letter message: what the ingest publishes for a message it cannot store.

Published (QoS 1, not retained) on ``contract.deadletter_topic(original_topic)``, so an
operator can subscribe per site or machine under ``runhours/v1/deadletter/#``.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any


def rfc3339_ms(ts: datetime) -> str:
    """``2026-03-01T07:00:00.250Z``: UTC, millisecond precision."""
    if ts.tzinfo is None:
        raise ValueError(f"naive datetime {ts!r}: use an aware UTC time")
    return ts.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def deadletter_payload(topic: str, payload: bytes, reason: str, received_at: datetime) -> bytes:
    """JSON ``{"topic", "reason", "payload", ["payload_encoding",] "received_at"}``.

    The original payload is kept as text when it is UTF-8, else base64-encoded with
    ``"payload_encoding": "base64"``, so the dead letter itself is always valid JSON.
    """
    body: dict[str, Any] = {"topic": topic, "reason": reason}
    try:
        body["payload"] = payload.decode("utf-8")
    except UnicodeDecodeError:
        body["payload"] = base64.b64encode(payload).decode("ascii")
        body["payload_encoding"] = "base64"
    body["received_at"] = rfc3339_ms(received_at)
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
