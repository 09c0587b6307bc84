"""The edge agent: buffered samples → batched telemetry messages → MQTT 5, QoS 1.

>>> agent = EdgeAgent(MachineRef("plant1", "line-a", "cnc-01"), SampleBuffer(path), broker)
>>> task = asyncio.create_task(agent.run())
>>> agent.submit(readings)          # sync, fast: one SQLite transaction
>>> await agent.drain(timeout=30)   # until every sample was acknowledged
>>> agent.stop(); await task        # publishes what it can, then a clean `online: false`

Delivery is at-least-once: a sample leaves the buffer only after the broker's PUBACK for
the message that carried it, and only a PUBACK that means delivered: a refusal (≥ 0x80) or
0x10 "no matching subscribers" (the broker discarded it) keeps the samples buffered, and the
agent reconnects with backoff. After a disconnect, whatever was in flight is resent as it
was, under the same ``seq`` and ``offset`` (a redelivered sample is stored as the same point).

**Holding for the ingest** (``require_ingest``, on by default): every ingest worker keeps a
retained ``IngestState`` on ``runhours/v1/ingest/{worker}/state`` (with a will for when it
dies), as a Sparkplug primary host does. The agent subscribes to it and publishes telemetry
only while some worker serving its site is online; otherwise samples wait in the buffer
(bounded as always by its ``max_bytes`` and ``max_age``, never dropped for this reason).

**historical**: a message carries ``historical: true`` when its samples were appended to
the buffer before the current broker connection was established, i.e. their buffer row
ids are at most the *watermark* (the buffer's ``last_id``) taken at that connect. That
covers samples buffered during a broker outage, samples left in the buffer by an earlier
agent process (a restart, even after ``kill -9``), and samples that were in flight but
unacknowledged when a connection dropped. A batch never straddles the watermark, so a
message is either entirely historical or entirely live; samples appended while connected
are live even when they wait for the next publish interval. (Samples submitted before a
freshly started agent's first connection count as buffered while disconnected.)

Presence: on every connect a retained ``Status(online=True, buffered, dropped_total)``,
repeated every ``status_interval`` (with ``delivered_seq``/``delivered_offset``, so the
ingest sees a lost tail); a graceful stop publishes a retained ``online: false``
before disconnecting; otherwise the broker publishes the MQTT will, a retained
``online: false`` whose ``ts`` is when that connection was opened (MQTT fixes a will's
payload at connect time).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from common.aio import wait_event
from common.backoff import backoff_delay
from edge.buffer import Batch, EdgeBufferError, SampleBuffer
from edge.mqtt import Broker, Client, MqttError, NoSubscribers, Will
from edge.readings import Reading
from edge.wire import telemetry_payload
from wire import (
    INGEST_STATE_SUBSCRIPTION,
    IngestState,
    MachineRef,
    Status,
    WireError,
    decode_ingest_state,
    encode_status,
    parse_ingest_state_topic,
    status_topic,
    telemetry_topic,
)

log = logging.getLogger("runhours.edge.agent")


@dataclass(frozen=True)
class AgentOptions:
    """Timing and batching of one agent (``[edge]`` in the settings)."""

    publish_interval: float = 1.0  # s: a partial batch waits at most this long
    max_batch: int = 500  # samples per message
    max_in_flight: int = 8  # messages published and not yet acknowledged
    status_interval: float = 30.0  # s between retained online statuses
    reconnect_min: float = 0.5  # s: first reconnect delay, doubled per failure (jittered)
    reconnect_max: float = 30.0  # s: cap of the reconnect delay
    stop_timeout: float = 10.0  # s: how long a graceful stop keeps publishing
    publish_timeout: float = 30.0  # s without PUBACK before the connection counts as dead
    require_ingest: bool = True  # publish telemetry only while an ingest is online


HOLD_GRACE_S = 2.0  # after a connect, the retained ingest states arrive; then say we hold


@dataclass(frozen=True)
class AgentStats:
    """A snapshot of an agent's counters (this process; ``dropped_total`` spans restarts)."""

    submitted: int  # samples appended to the buffer
    published: int  # samples in messages the broker acknowledged
    dropped: int  # samples the buffer dropped (overflow or age)
    dropped_total: int
    buffered: int  # samples waiting, in flight included
    messages: int  # acknowledged telemetry messages
    historical_messages: int
    connects: int
    no_subscriber: int  # telemetry publishes answered 0x10 (discarded: kept and resent)
    ingest_online: bool  # an ingest serving this site is online (or require_ingest is off)


class EdgeAgent:
    """Publishes one machine's buffered samples; see the module docstring."""

    def __init__(
        self,
        ref: MachineRef,
        buffer: SampleBuffer,
        broker: Broker,
        options: AgentOptions | None = None,
        *,
        client_id: str | None = None,
    ) -> None:
        self.ref = ref
        self.buffer = buffer
        self.broker = broker
        self.options = options or AgentOptions()
        self.topic = telemetry_topic(*ref)
        self.status_topic = status_topic(*ref)
        self.client_id = client_id or f"runhours-edge-{ref.site}-{ref.line}-{ref.machine}"
        self.last_error: str | None = None  # the last failure; cleared by a delivery
        self._connected = False
        self._running = False
        self._stopping = asyncio.Event()
        self._wakeup = asyncio.Event()  # the pump should look again
        self._changed = asyncio.Event()  # replaced on every change; waiters hold the old one
        self._urgent = 0  # drain/backpressure waiters: partial batches go out at once
        self._senders: set[asyncio.Task[None]] = set()
        self._submitted = self._published = self._messages = 0
        self._historical_messages = self._connects = self._no_subscriber = 0
        self._ingests: dict[str, IngestState] = {}  # worker → its newest state, this session
        self._holding_since: float | None = None  # loop time we started holding (logged once)
        self._hold_logged = False

    # -- API for sources and fleets -------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def stats(self) -> AgentStats:
        return AgentStats(
            submitted=self._submitted,
            published=self._published,
            dropped=self.buffer.dropped,
            dropped_total=self.buffer.dropped_total,
            buffered=self.buffer.count,
            messages=self._messages,
            historical_messages=self._historical_messages,
            connects=self._connects,
            no_subscriber=self._no_subscriber,
            ingest_online=self.ingest_online,
        )

    @property
    def ingest_online(self) -> bool:
        """True while some ingest worker serving this site is online (always, without
        ``require_ingest``)."""
        if not self.options.require_ingest:
            return True
        return any(state.serves(self.ref.site) for state in self._ingests.values())

    def submit(self, readings: Iterable[Reading]) -> int:
        """Append readings to the buffer (sync, one transaction). Returns how many.

        Call it from the agent's event loop thread; publishing happens in ``run``.
        """
        n = self.buffer.append(readings)
        if n:
            self._submitted += n
            self._wakeup.set()
        return n

    def stop(self) -> None:
        """Ask ``run`` to publish what it can (``stop_timeout``), go offline and return."""
        self._stopping.set()
        self._wakeup.set()

    async def drain(self, timeout: float | None = None) -> bool:
        """Wait until every buffered sample was acknowledged; False if ``timeout`` passed first."""
        try:
            async with asyncio.timeout(timeout):
                await self._wait_until(lambda: self.buffer.count == 0)
        except TimeoutError:
            return False
        return True

    async def wait_buffered_below(self, limit: int) -> None:
        """Backpressure for fast sources: wait until fewer than ``limit`` samples are buffered."""
        await self._wait_until(lambda: self.buffer.count < limit)

    async def wait_connected(self, timeout: float | None = None) -> bool:
        """Wait for a broker connection; False if ``timeout`` passed first."""
        try:
            async with asyncio.timeout(timeout):
                while not self._connected:
                    await self._changed.wait()
        except TimeoutError:
            return False
        return True

    # -- the run loop ---------------------------------------------------------------------

    async def run(self) -> None:
        """Connect, publish, reconnect with backoff after failures, until ``stop()``."""
        if self._running:
            raise RuntimeError("EdgeAgent.run() is already running")
        self._running = True
        opts = self.options
        failures = 0  # in a row, since the last connection that worked for a while
        unheard = False  # in an episode of 0x10 answers (logged once)
        try:
            while not self._stopping.is_set():
                connects = self._connects
                try:
                    await self._session()
                except (MqttError, OSError, EdgeBufferError) as exc:
                    # EdgeBufferError: the disk is full and the buffer cannot even assign a
                    # message; try again after the backoff (it says so in its own log).
                    self.last_error = str(exc) or type(exc).__name__
                    episode = isinstance(exc, NoSubscribers)
                    if self._connects > connects and not episode:
                        failures = 0  # it worked for a while: start over
                    if not (episode and unheard):
                        log.warning(
                            "%s: broker %s: %s (%d samples buffered)",
                            self.ref.machine,
                            self.broker.url,
                            self.last_error,
                            self.buffer.count,
                        )
                    unheard = episode
                if self._stopping.is_set():
                    break
                pause = backoff_delay(failures, opts.reconnect_min, opts.reconnect_max)
                await wait_event(self._stopping, pause)
                failures += 1
        finally:
            self._running = False

    async def _session(self) -> None:
        """One connection: status, publishing until stop or failure, clean offline on stop."""
        will = Will(self.status_topic, self._status_payload(online=False), qos=1, retain=True)
        client = self.broker.client(
            self.client_id,
            will=will,
            max_inflight=self.options.max_in_flight + 2,  # + the status messages
        )
        async with client:
            self._connects += 1
            self._ingests.clear()  # the retained states arrive again with the subscription
            self._set_connected(True)
            try:
                await self._serve(client)
            finally:
                self._set_connected(False)

    async def _serve(self, client: Client) -> None:
        """Publish over one established connection until stop (returns) or failure (raises)."""
        watermark = self.buffer.rewind()
        log.info(
            "%s: connected to %s; %d buffered samples to replay (historical)",
            self.ref.machine,
            self.broker.url,
            self.buffer.count,
        )
        await self._publish_status(client)
        if self.options.require_ingest:
            await client.subscribe(
                INGEST_STATE_SUBSCRIPTION, qos=1, timeout=self.options.publish_timeout
            )
        loop = asyncio.get_running_loop()
        window = asyncio.Semaphore(self.options.max_in_flight)
        failed: asyncio.Future[None] = loop.create_future()
        pump = asyncio.create_task(self._pump(client, watermark, window, failed))
        tasks = {
            pump,
            asyncio.create_task(self._watch(client)),
            asyncio.create_task(self._status_loop(client)),
        }
        try:
            done, _ = await asyncio.wait({*tasks, failed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (*tasks, *self._senders):
                task.cancel()
            await asyncio.gather(*tasks, *self._senders, return_exceptions=True)
            if failed.done() and not failed.cancelled():
                failed.exception()  # retrieved: it is re-raised below if it ended the session
            failed.cancel()
        for finished in done:
            finished.result()  # a publish or the connection failed: raise MqttError
        await self._publish_status(client, online=False)
        log.info("%s: stopped; %d samples left in the buffer", self.ref.machine, self.buffer.count)

    async def _pump(
        self,
        client: Client,
        watermark: int,
        window: asyncio.Semaphore,
        failed: asyncio.Future[None],
    ) -> None:
        """Form batches (full, or partial after ``publish_interval``) and publish them."""
        opts = self.options
        loop = asyncio.get_running_loop()
        last_flush = loop.time()
        deadline: float | None = None
        session_start = loop.time()
        while True:
            self._wakeup.clear()
            now = loop.time()
            unsent = self.buffer.unsent
            held = unsent > 0 and self._hold(now - session_start)
            if self._stopping.is_set():
                deadline = deadline or now + opts.stop_timeout
                if unsent == 0 or held or now >= deadline:
                    break
            if held:  # woken by a new ingest state, or look again to log the hold
                await wait_event(self._wakeup, HOLD_GRACE_S)
                continue
            backlog = self.buffer.cursor < watermark
            due = unsent >= opts.max_batch or (
                unsent > 0
                and (
                    backlog
                    or self._urgent > 0
                    or deadline is not None
                    or now - last_flush >= opts.publish_interval
                )
            )
            if not due:
                wait = opts.publish_interval - (now - last_flush) if unsent else None
                await wait_event(self._wakeup, wait)
                continue
            if deadline is None:
                await window.acquire()
            else:  # stopping: never wait for window room past the stop deadline
                try:
                    async with asyncio.timeout(max(0.0, deadline - now)):  # not wait_for:
                        await window.acquire()  # see common.aio
                except TimeoutError:
                    break
            batch = None
            if backlog:
                batch = self.buffer.take(opts.max_batch, upto=watermark)
            batch = batch or self.buffer.take(opts.max_batch)
            if batch is None:
                window.release()
                continue
            sender = asyncio.create_task(
                self._send(client, batch, batch.last_id <= watermark, window, failed)
            )
            self._senders.add(sender)
            sender.add_done_callback(self._senders.discard)
            last_flush = now
        # Stopping: let the messages in flight be acknowledged.
        if self._senders:
            await asyncio.wait(set(self._senders), timeout=max(0.1, (deadline or 0) - loop.time()))

    def _hold(self, connected_for: float) -> bool:
        """Whether telemetry must wait for an ingest now; says so once per episode."""
        if self.ingest_online:
            if self._hold_logged:
                log.info(
                    "%s: an ingest is online again: publishing %d buffered samples",
                    self.ref.machine,
                    self.buffer.count,
                )
            self._hold_logged = False
            return False
        if not self._hold_logged and connected_for >= HOLD_GRACE_S:
            self._hold_logged = True
            log.warning(
                "%s: no ingest online for site %s (nothing online on %s): holding telemetry "
                "in the buffer (%d samples) until one is; edge.require_ingest = false "
                "publishes anyway",
                self.ref.machine,
                self.ref.site,
                INGEST_STATE_SUBSCRIPTION,
                self.buffer.count,
            )
        return True

    async def _send(
        self,
        client: Client,
        batch: Batch,
        historical: bool,
        window: asyncio.Semaphore,
        failed: asyncio.Future[None],
    ) -> None:
        payload = telemetry_payload(self.ref.machine, batch, historical=historical)
        try:
            await client.publish(
                self.topic,
                payload,
                qos=1,
                timeout=self.options.publish_timeout,
                require_subscriber=True,
            )
        except MqttError as exc:
            if isinstance(exc, NoSubscribers):
                self._no_subscriber += 1
            if not failed.done():
                failed.set_exception(exc)
            return
        finally:
            window.release()
        try:
            self.buffer.ack(batch)
        except EdgeBufferError as exc:  # delivered, not deleted: resent later (a duplicate)
            if not failed.done():
                failed.set_exception(exc)
            return
        self.last_error = None  # delivered: whatever went wrong before is over
        self._published += len(batch)
        self._messages += 1
        self._historical_messages += historical
        self._notify()

    async def _watch(self, client: Client) -> None:
        """Follows the ingest states; ends (raising MqttError) when the connection drops."""
        async for message in client.messages():
            try:
                worker = parse_ingest_state_topic(message.topic)
                if not message.payload:
                    self._ingests.pop(worker, None)  # cleared
                    state = None
                else:
                    state = decode_ingest_state(message.payload)
            except WireError as exc:
                log.warning("%s: ignoring an ingest state: %s", self.ref.machine, exc)
                continue
            before = self.ingest_online
            known = self._ingests.get(worker)
            if state is not None and (known is None or state.ts >= known.ts):
                self._ingests[worker] = state  # equal ts: the offline after its online
            if self.ingest_online != before:
                self._wakeup.set()
                self._notify()

    async def _status_loop(self, client: Client) -> None:
        while True:
            await asyncio.sleep(self.options.status_interval)
            if self.buffer.expire():
                self._notify()
            await self._publish_status(client)

    async def _publish_status(self, client: Client, *, online: bool = True) -> None:
        await client.publish(
            self.status_topic,
            self._status_payload(online=online, health=True),
            qos=1,
            retain=True,
            timeout=self.options.publish_timeout,
        )

    def _status_payload(self, *, online: bool, health: bool = False) -> bytes:
        delivered_seq, delivered_offset = self.buffer.delivered
        status = Status(
            online=online,
            ts=datetime.now(UTC),
            buffered=self.buffer.count if health else None,
            dropped_total=self.buffer.dropped_total if health else None,
            delivered_seq=delivered_seq if health else None,
            delivered_offset=delivered_offset if health else None,
        )
        return encode_status(status)

    # -- waiting helpers ------------------------------------------------------------------

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _set_connected(self, connected: bool) -> None:
        self._connected = connected
        self._notify()

    async def _wait_until(self, condition: Callable[[], bool]) -> None:
        self._urgent += 1
        self._wakeup.set()
        try:
            while not condition():
                await self._changed.wait()
        finally:
            self._urgent -= 1
