"""One edge agent as a long-running process: source → buffer → broker, until SIGTERM/SIGINT.

``runhours edge`` builds the source (CSV replay here, the simulator in ``runhours``) and
calls ``serve``. A finished source (the end of a CSV file) does not end the process: the
agent keeps running, so whatever is still buffered goes out when the broker is reachable.
With ``until_end`` (``[edge.source] until_end = true``) it ends once the finished
source's samples are all acknowledged: a recorded run replayed from a script.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from edge.agent import AgentStats, EdgeAgent
from edge.buffer import SampleBuffer
from edge.config import CsvSource, EdgeSettings
from edge.modbus_map import ModbusSource
from edge.opcua_config import OpcuaSource
from edge.readings import Reading
from edge.sources import csv_source, feed

log = logging.getLogger("runhours.edge")

SourceFactory = Callable[[SampleBuffer], AsyncIterator[Sequence[Reading]]]


def csv_factory(options: CsvSource) -> SourceFactory:
    """The CSV replay, resuming after the newest sample the buffer ever took."""

    def make(buffer: SampleBuffer) -> AsyncIterator[Sequence[Reading]]:
        return csv_source(
            options.path,
            speed=options.speed,
            after_ts_ms=buffer.last_ts_ms,
            columns=options.columns,
        )

    return make


def modbus_factory(options: ModbusSource) -> SourceFactory:
    """Poll a Modbus TCP device; the hour meter's rollovers are kept in the buffer."""

    def make(buffer: SampleBuffer) -> AsyncIterator[Sequence[Reading]]:
        from edge.modbus import modbus_source  # pymodbus only where a PLC is read

        return modbus_source(options, buffer)

    return make


def opcua_factory(options: OpcuaSource) -> SourceFactory:
    """Subscribe to (or poll) an OPC UA server."""

    def make(_buffer: SampleBuffer) -> AsyncIterator[Sequence[Reading]]:
        from edge.opcua import OpcuaReader  # asyncua only where a server is read

        return OpcuaReader(options).readings()

    return make


async def serve(
    settings: EdgeSettings,
    make_source: SourceFactory,
    *,
    signals: Sequence[signal.Signals] = (signal.SIGTERM, signal.SIGINT),
    on_started: Callable[[EdgeAgent], None] | None = None,
    live: bool = False,
    until_end: bool = False,
) -> AgentStats:
    """Run one agent and its source until a signal; then stop gracefully. Returns its stats.

    On the signal the source stops first, then the agent publishes what it can within
    ``stop_timeout`` and goes offline. A failing source (e.g. a bad CSV row) stops the agent
    the same way and its error is raised afterwards. A ``live`` source (a machine being
    read) never waits for the buffer: its bounds decide what is kept. With ``until_end``, a source
    that finishes stops the agent too, once every buffered sample was acknowledged (a signal
    still stops it earlier).
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    with settings.open_buffer() as buffer:
        agent = EdgeAgent(settings.edge.ref, buffer, settings.broker, settings.edge.agent_options())
        for sig in signals:
            loop.add_signal_handler(sig, stop.set)
        try:
            log.info(
                "edge agent %s/%s/%s → %s; buffer %s (%d samples waiting)",
                *settings.edge.ref,
                settings.broker.url,
                buffer.path,
                buffer.count,
            )
            run = asyncio.create_task(agent.run())
            feeder = asyncio.create_task(
                feed(agent, make_source(buffer), high_water=None if live else 5000)
            )
            stopper = asyncio.create_task(stop.wait())
            if on_started is not None:
                on_started(agent)
            await _first(run, feeder, stopper)
            if feeder.done() and feeder.exception() is None:
                log.info("source finished: %d samples taken", feeder.result())
                if until_end:
                    drained = asyncio.create_task(agent.drain())
                    await _first(run, stopper, drained)
                    drained.cancel()
                else:
                    await _first(run, stopper)
            failure = feeder.exception() if feeder.done() else None
            feeder.cancel()
            stopper.cancel()
            agent.stop()
            await run
            if failure is not None:
                raise failure
            return agent.stats
        finally:
            for sig in signals:
                loop.remove_signal_handler(sig)


async def _first(*tasks: asyncio.Task[Any]) -> None:
    await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
