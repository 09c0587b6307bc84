"""Telemetry payloads assembled from buffered samples, without decoding and re-encoding them.

The buffer keeps each sample as its wire JSON (``wire.encode_sample``); a message is
those bodies inside the envelope ``wire.encode_telemetry`` writes. The result is
byte-identical to ``encode_telemetry`` of the same message (tests/edge/test_edge.py checks it),
at a fraction of the cost: no model is built per sample on the publishing path.
"""

from __future__ import annotations

import json

from edge.buffer import Batch


def telemetry_payload(machine: str, batch: Batch, *, historical: bool) -> bytes:
    """The v1 telemetry JSON of one batch: its seq and samples, its last sample's counters,
    and its offset."""
    parts = [
        b'{"machine":',
        json.dumps(machine).encode(),
        b',"seq":%d,"samples":[' % batch.seq,
        b",".join(batch.bodies),
        b"]",
    ]
    if batch.counters:
        parts += [b',"counters":', batch.counters]
    if historical:
        parts.append(b',"historical":true')
    parts.append(b',"offset":%d}' % batch.offset)
    return b"".join(parts)
