"""Writing to InfluxDB until it worked: retries with backoff, and isolation of bad messages.

- ``InfluxUnavailable`` (connection error, timeout, 5xx, 429): retry forever with
  backoff and jitter; the caller keeps holding the acks meanwhile, and the broker's
  Receive Maximum keeps the rest queued on the broker.
- ``InfluxAuthError``: retried too (at the longest delay) — an operator fixes the
  credentials and nothing is lost.
- Database missing (404): create it, retry.
- ``InfluxWriteRejected`` (400): InfluxDB 1.x still stored the good points. The batch
  is rewritten in halves (bisect) down to single messages; rewriting is idempotent
  (same series + time = same point), and the messages rejected on their own are
  returned with InfluxDB's reason.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

from common.backoff import backoff_delay
from common.errors import RunhoursError
from store import (
    InfluxAuthError,
    InfluxClient,
    InfluxError,
    InfluxQueryError,
    InfluxUnavailable,
    InfluxWriteRejected,
)

log = logging.getLogger(__name__)

T = TypeVar("T")


class WriteAbandoned(RunhoursError):
    """Shutdown ran out of time while InfluxDB was still failing; nothing was acknowledged."""


class InfluxWriter:
    """Writes line protocol through ``store``; safe to use from one thread at a time."""

    def __init__(
        self,
        client: InfluxClient,
        *,
        retry_initial: float,
        retry_max: float,
        abandon: threading.Event,
        on_retry: Callable[[], None] = lambda: None,
        on_write: Callable[[float], None] = lambda seconds: None,
        on_outage: Callable[[bool], None] = lambda down: None,
        outage_after: float = 0.0,
    ) -> None:
        self.client = client
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self._abandon = abandon
        self._on_retry = on_retry
        self._on_write = on_write
        self._on_outage = on_outage
        self._outage_after = outage_after
        self.in_outage = False  # writes have failed for outage_after seconds (and go on)
        self._rng = random.Random()

    def write(
        self,
        body: bytes | Callable[[], bytes],
        precision: str = "ms",
        *,
        to: InfluxClient | None = None,
    ) -> None:
        """Write until InfluxDB took it; raise ``InfluxWriteRejected`` on a 400, or
        ``WriteAbandoned`` once ``abandon`` is set. A callable body is encoded afresh for
        each attempt (markers stamped with the wall time of the write that lands).
        ``to``: a client for another database (default: this writer's)."""
        client = to or self.client

        def attempt() -> None:
            data = body() if callable(body) else body
            if not data:  # nothing to send: no request, and no latency to record
                return
            started = time.monotonic()
            client.write_lines(data, precision)
            self._on_write(time.monotonic() - started)

        self.call(attempt, "write", database=client)

    def call(
        self, work: Callable[[], T], what: str = "request", *, database: InfluxClient | None = None
    ) -> T:
        """Run ``work`` (one InfluxDB request) until it succeeds, with the retries, backoff
        and outage reporting of ``write``; other errors (a 400) are raised at once. On a
        404 the database of ``database`` (default: this writer's client) is created."""
        attempt = 0
        failing_since: float | None = None
        while True:
            if self._abandon.is_set():
                raise WriteAbandoned("shutdown deadline reached while InfluxDB was failing")
            try:
                result = work()
            except InfluxUnavailable as exc:
                problem = str(exc)
            except InfluxAuthError as exc:
                problem = str(exc)
                attempt = max(attempt, 62)  # no point hurrying: a human must fix it
            except InfluxQueryError as exc:  # 404: the database is missing (dropped?)
                problem = f"{exc}; creating the database"
                self._ensure_database(database or self.client)
            else:
                if failing_since is not None:
                    log.warning(
                        "InfluxDB works again after %.1f s", time.monotonic() - failing_since
                    )
                if self.in_outage:
                    self.in_outage = False
                    self._on_outage(False)
                return result
            delay = backoff_delay(attempt, self.retry_initial, self.retry_max, self._rng)
            if failing_since is None:
                failing_since = time.monotonic()
            if attempt == 0 or attempt % 10 == 0:
                log.warning(
                    "%s failed (%s); retrying in %.2f s, holding the acks", what, problem, delay
                )
            attempt += 1
            self._on_retry()
            failing_for = time.monotonic() - failing_since
            if self._outage_after and failing_for >= self._outage_after and not self.in_outage:
                self.in_outage = True
                self._on_outage(True)
            self._abandon.wait(delay)

    def write_isolating(
        self, items: Sequence[T], lines: Callable[[T], bytes]
    ) -> list[tuple[T, str]]:
        """Write every item's lines in one request; on a 400 bisect down to the items
        InfluxDB rejects on their own, and return those with its reason."""
        body = b"\n".join(chunk for chunk in map(lines, items) if chunk)
        if not body:
            return []
        try:
            self.write(body)
            return []
        except InfluxWriteRejected as exc:
            if len(items) == 1:
                return [(items[0], str(exc))]
            half = len(items) // 2
            return self.write_isolating(items[:half], lines) + self.write_isolating(
                items[half:], lines
            )

    def _ensure_database(self, client: InfluxClient) -> None:
        try:
            client.ensure_database()
        except InfluxError as exc:
            log.warning("cannot create database %r: %s", client.database, exc)
