"""InfluxDB access through the v1 HTTP API: line protocol, batched writes, InfluxQL.

>>> from store import InfluxClient, Point
>>> with InfluxClient("http://localhost:8086", "runhours") as db:  # doctest: +SKIP
...     db.ensure_database()
...     db.write([Point("telemetry", {"machine": "cnc-01"}, {"spindle_current_a": 12.5}, 0)])
"""

from store.client import (
    InfluxAuthError,
    InfluxClient,
    InfluxError,
    InfluxForbidden,
    InfluxQueryError,
    InfluxUnavailable,
    InfluxWriteRejected,
    Series,
)
from store.influxql import quote_ident, quote_string, time_literal
from store.lineprotocol import Point, encode_point, encode_points

__all__ = [
    "InfluxAuthError",
    "InfluxClient",
    "InfluxError",
    "InfluxForbidden",
    "InfluxQueryError",
    "InfluxUnavailable",
    "InfluxWriteRejected",
    "Point",
    "Series",
    "encode_point",
    "encode_points",
    "quote_ident",
    "quote_string",
    "time_literal",
]
