"""OPC UA source: node ids → values, state and hour meter, by subscription or by polling.

With ``mode = "subscribe"`` the server reports every data change (a deadband per node if
set) with its source timestamp; changes that share a source timestamp make one sample, so a
sample carries the server's own time, never the agent's. With ``mode = "poll"`` the nodes
are read every ``interval`` and a sample is made when a source timestamp moved. An
operating-hours node (OPC UA DI's ``OperationDuration``: a Duration in milliseconds, so
``scale = 0.001``) becomes the ``run_seconds_total`` counter. A value with a bad status is
left out of its sample, never guessed. After a lost connection the client is thrown away
and a new one is created (with backoff); each outage is logged once when it starts and
once when it ends. asyncua is bounded below 2.2: ``Subscription._subscribe`` (the only way
to pass a data-change filter with its trigger) is private API.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from asyncua import ua
from asyncua.client.client import Client
from asyncua.common.node import Node
from asyncua.common.subscription import DataChangeEvent, StatusChangeEvent, Subscription
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.uaerrors import UaError

from common.aio import raise_if_cancelled
from common.errors import RunhoursError
from edge.opcua_config import COUNTER, NodeEntry, OpcuaMeter, OpcuaSource, OpcuaState, OpcuaValue
from edge.outage import Outage
from edge.readings import EdgeReading
from wire import STATES, Sample, State, from_epoch_ms, to_epoch_ms

log = logging.getLogger("runhours.edge.opcua")


@dataclass
class OpcuaStats:
    """Samples made, notifications or reads with a bad status, outages, connects."""

    samples: int = 0
    bad_values: int = 0
    stale: int = 0
    outages: int = 0
    connects: int = 0
    notifications: int = 0


class ConnectionLost(RunhoursError):
    """The server stopped answering, or closed the session."""


@dataclass
class _Parts:
    values: dict[str, float] = field(default_factory=dict)
    state: State | None = None
    meter: float | None = None


class OpcuaReader:
    """One OPC UA server; ``readings()`` yields samples until cancelled, reconnecting."""

    def __init__(
        self,
        options: OpcuaSource,
        *,
        clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    ) -> None:
        self.options = options
        self.stats = OpcuaStats()
        self._clock_ms = clock_ms
        self._last_ts: int | None = None
        self._meter_waiting: float | None = None
        self._outage = Outage()
        self._unnamed: set[str] = set()

    async def readings(self) -> AsyncIterator[list[EdgeReading]]:
        while True:
            try:
                async for batch in self._session():
                    yield batch
            except (ConnectionLost, OSError, TimeoutError, UaError) as exc:
                self._failed(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
            await self._backoff()

    # -- one connection -------------------------------------------------------------------

    async def _client(self) -> Client:
        opts = self.options
        client = Client(opts.url, timeout=opts.timeout, watchdog_intervall=opts.timeout)
        if opts.username is not None and opts.password is not None:
            client.set_user(opts.username)
            client.set_password(opts.password.get_secret_value())
        if opts.security != "None":
            parts = [opts.security, str(opts.certificate), str(opts.private_key)]
            if opts.server_certificate is not None:
                parts.append(str(opts.server_certificate))
            await client.set_security_string(",".join(parts))
        elif opts.certificate is not None and opts.private_key is not None:
            await client.load_client_certificate(str(opts.certificate))
            await client.load_private_key(opts.private_key)
        return client

    async def _session(self) -> AsyncIterator[list[EdgeReading]]:
        opts = self.options
        client = await self._client()
        lost = asyncio.Event()

        async def on_lost(_exc: Exception) -> None:
            lost.set()

        client.connection_lost_callback = on_lost
        try:
            async with asyncio.timeout(opts.timeout * 2):  # not wait_for: see common.aio
                await client.connect(auto_reconnect=False)
            self.stats.connects += 1
            self._recovered()
            if opts.mode == "poll":
                async for batch in self._poll(client, lost):
                    yield batch
            else:
                async for batch in self._subscribe(client, lost):
                    yield batch
        finally:
            with contextlib.suppress(Exception):  # the connection may already be gone
                async with asyncio.timeout(opts.timeout):
                    await client.disconnect()

    def _targets(self, client: Client) -> list[tuple[Node, NodeEntry]]:
        return [(client.get_node(e.node), e) for e in self.options.entries()]

    async def _subscribe(
        self, client: Client, lost: asyncio.Event
    ) -> AsyncIterator[list[EdgeReading]]:
        opts = self.options
        sub: Subscription = await client.create_subscription(opts.interval * 1000, queue_maxsize=0)
        by_handle: dict[int, NodeEntry] = {}
        # One request per filter, so a server reports a reading's first values together.
        groups: dict[float, list[tuple[Node, NodeEntry]]] = {}
        for node, entry in self._targets(client):
            deadband = entry.deadband if isinstance(entry, OpcuaValue) else 0.0
            groups.setdefault(deadband, []).append((node, entry))
        for deadband, members in groups.items():
            first = sub._client_handle + 1  # asyncua numbers the items in request order
            nodes = [node for node, _ in members]
            results = await sub._subscribe(
                nodes, AttributeIds.Value, _filter(deadband), opts.queue_size
            )
            for offset, ((_, entry), result) in enumerate(zip(members, results, strict=True)):
                if isinstance(result, ua.StatusCode):
                    raise ConnectionLost(f"cannot subscribe to {entry.node}: {result}")
                by_handle[first + offset] = entry
        while True:
            try:  # next_event's own timeout is asyncio.wait_for: see common.aio
                async with asyncio.timeout(opts.interval + opts.timeout):
                    event = await sub.next_event()
            except TimeoutError:
                event = None
            except StopAsyncIteration:  # the subscription was closed under us
                raise ConnectionLost("the subscription was closed") from None
            raise_if_cancelled()
            if lost.is_set():
                raise ConnectionLost("the connection was lost")
            if event is None:
                continue
            events = [event]
            with contextlib.suppress(asyncio.QueueEmpty):  # the rest of that publish
                while (queue := sub._event_queue) is not None:
                    item = queue.get_nowait()
                    if item is not None:
                        events.append(item)
            parts: dict[int, _Parts] = {}
            for ev in events:
                if isinstance(ev, StatusChangeEvent):
                    raise ConnectionLost(f"subscription status {ev.notification.Status}")
                if isinstance(ev, DataChangeEvent):
                    self.stats.notifications += 1
                    notified = ev.data.monitored_item
                    target = by_handle.get(notified.ClientHandle)
                    if target is not None:
                        self._take(parts, target, notified.Value)
            if batch := self._samples(parts):
                yield batch

    async def _poll(self, client: Client, lost: asyncio.Event) -> AsyncIterator[list[EdgeReading]]:
        targets = self._targets(client)
        while not lost.is_set():
            started = time.monotonic()
            params = ua.ReadParameters()
            for node, _ in targets:
                rv = ua.ReadValueId()
                rv.NodeId = node.nodeid
                rv.AttributeId = AttributeIds.Value
                params.NodesToRead.append(rv)
            params.TimestampsToReturn = ua.TimestampsToReturn.Both
            results = await client.uaclient.read(params)
            raise_if_cancelled()
            parts: dict[int, _Parts] = {}
            newest = max((_ts_ms(r) or 0 for r in results), default=0) or self._clock_ms()
            for (_, entry), value in zip(targets, results, strict=True):
                self._take(parts, entry, value, at=newest)
            if batch := self._samples(parts):
                yield batch
            await asyncio.sleep(max(0.0, self.options.interval - (time.monotonic() - started)))
        raise ConnectionLost("the connection was lost")

    # -- values → samples -----------------------------------------------------------------

    def _take(
        self, parts: dict[int, _Parts], entry: NodeEntry, value: ua.DataValue, at: int | None = None
    ) -> None:
        if value.StatusCode is not None and not value.StatusCode.is_good():
            self.stats.bad_values += 1
            return
        ts = at if at is not None else (_ts_ms(value) or self._clock_ms())
        part = parts.setdefault(ts, _Parts())
        raw = value.Value.Value if value.Value is not None else None
        if isinstance(entry, OpcuaState):
            part.state = self._state(raw)
        elif isinstance(raw, bool | int | float):
            if isinstance(entry, OpcuaMeter):
                part.meter = float(raw) * entry.scale
            elif isinstance(entry, OpcuaValue):
                part.values[entry.name] = float(raw) * entry.scale + entry.offset
        else:
            self.stats.bad_values += 1

    def _state(self, raw: Any) -> State | None:
        key = str(raw.Text if isinstance(raw, ua.LocalizedText) else raw)
        named = self.options.state.map if self.options.state is not None else {}
        if key in named:
            return named[key]
        for state in STATES:
            if key == state:
                return state
        if key not in self._unnamed:
            self._unnamed.add(key)
            log.warning(
                "%s: state %r is not a state name and state.map does not name it",
                self.options.url,
                key,
            )
        return None

    def _samples(self, parts: dict[int, _Parts]) -> list[EdgeReading]:
        out: list[EdgeReading] = []
        for ts in sorted(parts):
            part = parts[ts]
            if part.meter is not None:
                self._meter_waiting = part.meter
            if part.state is None and not part.values:
                continue  # a meter change alone rides on the next sample
            if self._last_ts is not None and ts <= self._last_ts:
                self.stats.stale += 1
                continue
            counters = {} if self._meter_waiting is None else {COUNTER: self._meter_waiting}
            self._meter_waiting = None
            self._last_ts = ts
            sample = Sample(ts=from_epoch_ms(ts), state=part.state, values=part.values)
            out.append(EdgeReading(sample, counters))
        self.stats.samples += len(out)
        return out

    # -- outages --------------------------------------------------------------------------

    def _failed(self, why: str) -> None:
        if self._outage.failed():
            self.stats.outages += 1
            log.warning(
                "%s: %s; no samples until it answers (a new client every %g-%g s)",
                self.options.url,
                why,
                self.options.reconnect_min,
                self.options.reconnect_max,
            )

    def _recovered(self) -> None:
        lasted = self._outage.recovered()
        if lasted is not None:
            log.warning("%s: answers again after %.1f s", self.options.url, lasted)

    async def _backoff(self) -> None:
        opts = self.options
        await asyncio.sleep(self._outage.delay(opts.reconnect_min, opts.reconnect_max))


def _filter(deadband: float) -> ua.DataChangeFilter:
    """Report a change of status or value beyond ``deadband``; without a deadband also a new
    source timestamp (a machine that re-reports the same value is still alive)."""
    flt = ua.DataChangeFilter()
    if deadband > 0:
        flt.Trigger = ua.DataChangeTrigger.StatusValue
        flt.DeadbandType = ua.DeadbandType.Absolute
        flt.DeadbandValue = deadband
    else:
        flt.Trigger = ua.DataChangeTrigger.StatusValueTimestamp
    return flt


def _ts_ms(value: ua.DataValue) -> int | None:
    ts: datetime | None = value.SourceTimestamp or value.ServerTimestamp
    if ts is None:
        return None
    if ts.tzinfo is None:  # OPC UA times are UTC
        ts = ts.replace(tzinfo=UTC)
    return to_epoch_ms(ts)
