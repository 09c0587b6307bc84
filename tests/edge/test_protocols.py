"""Real protocols end to end: simulated machines served over Modbus TCP and OPC UA, read by
edge agents, published over MQTT, stored by the ingest in InfluxDB — then compared with the
simulators' own readings and ground truth. Plus the register map's rules and decoding, and
an unreachable PLC.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from analytics.rollups import fleet_usage
from common.settings import RunhoursSettings, SettingsError, load_settings
from edge import AgentOptions, EdgeAgent
from edge.config import EdgeOptions, EdgeSettings
from edge.modbus import ModbusPoller, modbus_source
from edge.modbus_map import ModbusSource, decode, encode, fields_of, plan_reads, unwrap
from edge.opcua import OpcuaReader
from edge.opcua_config import OpcuaSource
from edge.sources import feed
from ingest import IngestService, IngestSettings
from runhours.services import free_port
from runhours.serving import modbus_edge_config, opcua_edge_config
from simulators import MachineSim, MachineSpec, fleet
from simulators.live import LiveFleet
from simulators.machine import RUN_COUNTER, Reading
from simulators.modbus_server import register_map, start_modbus_server
from simulators.opcua_server import OpcuaSecurity, opcua_nodes, start_opcua_server
from store import InfluxClient
from tests.support.paths import REPO
from wire import MachineRef, from_epoch_ms

START = datetime(2026, 3, 2, 5, tzinfo=UTC)  # Monday 06:00 in Berlin: the first shift starts
SPEED = 720.0  # an hour in 5 s
SIM_HOURS = 3.0
INTERVAL_S = 10.0
STATES_MAP = {"0": "off", "1": "idle", "2": "running", "3": "fault", "4": "maintenance"}


def modbus_options(spec: MachineSpec, unit: int, port: int, **extra: Any) -> ModbusSource:
    registers = {r.name: r for r in register_map(spec.kind)}
    return ModbusSource.model_validate(
        {
            "type": "modbus",
            "host": "127.0.0.1",
            "port": port,
            "unit": unit,
            "timestamp": {"address": registers["timestamp"].address, "type": "uint64"},
            "state": {"address": registers["state"].address, "map": STATES_MAP},
            "hour_meter": {"address": registers["hour_meter"].address, "type": "uint32"},
            "values": [
                {"name": r.name, "address": r.address, "type": r.type}
                for r in registers.values()
                if r.name not in ("timestamp", "state", "hour_meter")
            ],
            **extra,
        }
    )


def opcua_options(spec: MachineSpec, port: int, **extra: Any) -> OpcuaSource:
    nodes = opcua_nodes(spec.machine, spec.kind)
    return OpcuaSource.model_validate(
        {
            "type": "opcua",
            "url": f"opc.tcp://127.0.0.1:{port}/",
            "interval": 0.1,
            "queue_size": 1000,
            "state": {"node": nodes.pop("State")},
            "hour_meter": {"node": nodes.pop("OperationDuration")},
            "values": [{"name": n, "node": node} for n, node in nodes.items()],
            **extra,
        }
    )


@dataclass
class ProtocolRun:
    specs: list[MachineSpec]
    submitted: dict[str, int]
    produced: dict[str, int]
    shown: dict[str, int]


OnReadings = Callable[[int, list[Reading]], Awaitable[None]] | None
Serve = Callable[[LiveFleet, int], Awaitable[tuple[OnReadings, Callable[[], Awaitable[None]]]]]
MakeSource = Callable[[MachineSpec, int, int, Any], Any]


def run_over_protocol(
    settings: RunhoursSettings,
    site: str,
    serve: Serve,
    make_source: MakeSource,
    machines: int = 3,
) -> ProtocolRun:
    """Serve ``machines`` simulated machines, read each with its own edge agent, publish."""
    specs = fleet(machines, start=START, site=site, degrading=0)
    edge = EdgeSettings(
        **settings.model_dump(include=set(RunhoursSettings.model_fields)),
        edge=EdgeOptions(site=site),
    )

    async def main() -> ProtocolRun:
        live = LiveFleet(specs, START, speed=SPEED, sample_interval_s=INTERVAL_S)
        port = free_port()
        on_readings, stop = await serve(live, port)
        agents, feeders = [], []
        stepping = asyncio.create_task(live.run(on_readings=on_readings))
        for unit, spec in enumerate(specs, start=1):
            ref = MachineRef(spec.site, spec.line, spec.machine)
            buffer = edge.open_buffer(ref)
            agent = EdgeAgent(ref, buffer, edge.broker, AgentOptions(publish_interval=0.2))
            agents.append(agent)
            runs = asyncio.create_task(agent.run())
            source = make_source(spec, unit, port, buffer)
            feeders.append((runs, asyncio.create_task(feed(agent, source, high_water=None))))
        await asyncio.sleep(SIM_HOURS * 3600 / SPEED)
        stepping.cancel()
        for _, feeder in feeders:
            feeder.cancel()
        await asyncio.gather(*(f for _, f in feeders), stepping, return_exceptions=True)
        assert all(await asyncio.gather(*(a.drain(60) for a in agents)))
        for agent in agents:
            agent.stop()
        await asyncio.gather(*(r for r, _ in feeders))
        for agent in agents:
            agent.buffer.close()
        await stop()
        return ProtocolRun(
            specs,
            {s.machine: a.stats.submitted for s, a in zip(specs, agents, strict=True)},
            {s.machine: n for s, n in zip(specs, live.produced, strict=True)},
            {s.machine: n for s, n in zip(specs, live.shown, strict=True)},
        )

    return asyncio.run(main())


def running_seconds(ts: list[int], states: list[str | None], a: int, b: int) -> float:
    """Seconds in ``running`` in [a, b) of the step function of (ts, state)."""
    total = 0
    for i, (t, state) in enumerate(zip(ts, states, strict=True)):
        end = ts[i + 1] if i + 1 < len(ts) else b
        lo, hi = max(t, a), min(end, b)
        if state == "running" and hi > lo:
            total += hi - lo
    return total / 1000


def check_stored(
    influx: InfluxClient, run: ProtocolRun, meter: Callable[[float], float], every: bool
) -> list[str]:
    """Every point is a simulator reading, field for field; ``every``: none is missing
    between the first and the last. Returns the figures for the report."""
    figures = []
    for spec in run.specs:
        rows = influx.query_rows(
            f"SELECT * FROM telemetry WHERE machine = '{spec.machine}' ORDER BY time"
        )
        assert len(rows) == run.submitted[spec.machine] > 0  # stored == read by the edge
        first, last = rows[0]["time"], rows[-1]["time"]
        readings = MachineSim(spec, START, sample_interval_s=INTERVAL_S).advance(
            from_epoch_ms(last + 1)
        )
        by_ts = {r.sample.ts_ms: r for r in readings}
        meters = 0
        for row in rows:
            reading = by_ts[row["time"]]  # a point at a time the machine had no reading fails
            assert row["state"] == reading.sample.state
            for name, value in reading.sample.values.items():
                assert row[name] == value, (spec.machine, row["time"], name)
            if row.get(RUN_COUNTER) is not None:
                meters += 1
                assert row[RUN_COUNTER] == pytest.approx(
                    meter(reading.counters[RUN_COUNTER]), abs=1e-6
                )
        assert meters > 0
        window = [r for r in readings if first <= r.sample.ts_ms <= last]
        if every:
            assert [row["time"] for row in rows] == [r.sample.ts_ms for r in window]
        # Hours: the billing engine on what was stored vs the simulator's truth (all of its
        # readings, every state change included) over the same span.
        truth = running_seconds(
            [r.sample.ts_ms for r in window], [r.sample.state for r in window], first, last
        )
        usage = fleet_usage(
            influx, from_epoch_ms(first), from_epoch_ms(last), machines=[spec.machine],
            from_raw=True,
        )[0]  # fmt: skip
        metered = usage.state_seconds.get("running", 0.0)
        # What polling can miss: each true state change is seen at the next stored sample.
        stored = [row["time"] for row in rows]
        changes = [
            b.sample.ts_ms for a, b in itertools.pairwise(window)
            if a.sample.state != b.sample.state
        ]  # fmt: skip
        late = sum(min(t for t in stored if t >= c) - c for c in changes) / 1000
        assert abs(metered - truth) <= late + 0.001, (spec.machine, metered, truth, late)
        figures.append(
            f"{spec.machine}: {len(rows)} points stored = {run.submitted[spec.machine]} read "
            f"({run.produced[spec.machine]} readings made); running {metered / 3600:.4f} h vs "
            f"truth {truth / 3600:.4f} h (|Δ| {abs(metered - truth):.1f} s, polling bound "
            f"{late:.1f} s, {len(changes)} state changes); hour meter "
            f"{(usage.counter_seconds or 0) / 3600:.4f} h"
        )
    return figures


def test_a_fleet_served_over_modbus_lands_with_the_simulators_hours(
    settings: RunhoursSettings, influx: InfluxClient, test_id: str
) -> None:
    async def serve(live: LiveFleet, port: int) -> Any:
        server = await start_modbus_server(live, "127.0.0.1", port)
        return None, server.shutdown  # the registers show the latest reading when read

    def source(spec: MachineSpec, unit: int, port: int, buffer: Any) -> Any:
        return modbus_source(modbus_options(spec, unit, port, poll_interval=0.02), buffer)

    ingest = IngestSettings.from_base(settings, client_id=f"ingest-{test_id}", site=test_id)
    with IngestService(ingest) as service:
        run = run_over_protocol(settings, test_id, serve, source)
        assert service.wait_idle(60)
    figures = check_stored(influx, run, meter=lambda m: float(int(m)), every=False)
    print("\n" + "\n".join(figures))


def test_a_fleet_served_over_opcua_lands_every_reading_and_its_operating_hours(
    settings: RunhoursSettings, influx: InfluxClient, test_id: str
) -> None:
    async def serve(live: LiveFleet, port: int) -> Any:
        server = await start_opcua_server(live, "127.0.0.1", port)
        return server.on_readings, server.stop  # every reading written to the variables

    def source(spec: MachineSpec, _unit: int, port: int, _buffer: Any) -> Any:
        return OpcuaReader(opcua_options(spec, port)).readings()

    ingest = IngestSettings.from_base(settings, client_id=f"ingest-{test_id}", site=test_id)
    with IngestService(ingest) as service:
        run = run_over_protocol(settings, test_id, serve, source)
        assert service.wait_idle(60)
    # OperationDuration is a Duration in ms: the edge scales it back to seconds.
    figures = check_stored(influx, run, meter=lambda m: m * 1000 * 0.001, every=True)
    print("\n" + "\n".join(figures))


# -- register maps ---------------------------------------------------------------------------


def test_registers_decode_in_every_byte_and_word_order() -> None:
    for type_, number in [("int16", -2.0), ("uint16", 65535.0), ("int32", -70000.0),
                          ("uint32", 4_000_000_000.0), ("float32", 12.5), ("int64", -(2.0**40)),
                          ("uint64", 2.0**63), ("float64", 0.1)]:  # fmt: skip
        for byte_order in ("big", "little"):
            for word_order in ("big", "little"):
                words = encode(number, type_, byte_order, word_order)  # type: ignore[arg-type]
                assert decode(words, type_, byte_order, word_order) == number  # type: ignore[arg-type]
    # A float32 in CDAB (little word order), as many PLCs store it: 12.5 = 0x41480000.
    assert decode([0x0000, 0x4148], "float32", "big", "little") == 12.5
    assert decode([0x4841, 0x0000], "float32", "little", "big") == 12.5
    assert decode([0x4148, 0x0000], "float32", "big", "big") == 12.5
    assert decode(encode(41.13, "float32"), "float32", "big", "big") == 41.13  # not 41.1300001…
    # An hour meter rolls over at its width; a small drop is a reset, not a rollover.
    assert unwrap(5, 65530, 0, 65536) == 1
    assert unwrap(60000, 65530, 0, 65536) == 0


def test_reads_are_grouped_into_as_few_requests_as_the_map_allows() -> None:
    source = ModbusSource.model_validate(
        {
            "type": "modbus",
            "host": "plc",
            "unit": 1,
            "max_gap": 4,
            "values": [
                {"name": "a_v", "address": 0, "type": "float32"},
                {"name": "b_v", "address": 2, "type": "uint16"},
                {"name": "c_v", "address": 7, "type": "int32"},  # gap of 4: same request
                {"name": "d_v", "address": 20, "type": "uint16"},  # gap of 11: another
                {"name": "e_v", "address": 0, "type": "uint16", "table": "input"},
                {"name": "f_v", "address": 0, "type": "uint16", "unit": 2},  # other device
                {"name": "g_v", "address": 3, "type": "bool", "table": "coil"},
            ],
            "state": {"address": 3, "table": "holding", "map": {"1": "running"}},
        }
    )
    reads = [(r.unit, r.table, r.start, r.count) for r in source.reads()]
    assert reads == [
        (1, "coil", 3, 1),
        (1, "holding", 0, 9),
        (1, "holding", 20, 1),
        (1, "input", 0, 1),
        (2, "holding", 0, 1),
    ]
    tight = plan_reads(fields_of(source.values, source.state, None, None, 1), 4, 100)
    assert all(r.count <= 4 for r in tight if r.table == "holding")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            '{ name = "a_v", address = 10, type = "float32" },'
            '{ name = "b_v", address = 11, type = "uint16" }',
            "values[1] (b_v): holding 11 (unit 1) overlaps values[0] (a_v) at holding 10-11",
        ),
        (
            '{ name = "a_v", address = 10, type = "float16" }',
            "edge.source.modbus.values.0.type: Input should be 'int16', 'uint16'",
        ),
        (
            '{ name = "a_v", address = 10, type = "bool" }',
            "type 'bool' does not fit table 'holding'",
        ),
        (
            '{ name = "Speed", address = 10 }',
            "'Speed' is not a value name",
        ),
    ],
)
def test_bad_register_maps_are_refused_naming_the_entry(
    tmp_path: Path, values: str, message: str
) -> None:
    config = tmp_path / "edge.toml"
    config.write_text(
        f'[edge.source]\ntype = "modbus"\nhost = "plc"\nvalues = [{values}]\n', encoding="utf-8"
    )
    with pytest.raises(SettingsError) as error:
        load_settings(EdgeSettings, config)
    assert message in str(error.value)


def test_an_unreachable_plc_logs_one_line_per_outage_and_retries(
    caplog: pytest.LogCaptureFixture,
) -> None:
    spec = fleet(1, start=START, site="s", degrading=0)[0]
    port = free_port()
    options = modbus_options(spec, 1, port, poll_interval=0.05, reconnect_min=0.05,
                             reconnect_max=0.1, timeout=0.5)  # fmt: skip
    caplog.set_level(logging.INFO, logger="runhours.edge.modbus")

    async def main() -> ModbusPoller:
        poller = ModbusPoller(options)
        readings = poller.readings()
        got: list[Any] = []

        async def collect() -> None:
            async for batch in readings:
                got.extend(batch)

        task = asyncio.create_task(collect())
        await asyncio.sleep(1.5)  # nobody listens: the first outage
        assert not got and poller.stats.missing >= 5  # retried, nothing invented
        live = LiveFleet([spec], START, speed=60.0)
        live.step(START + timedelta(seconds=1))
        server = await start_modbus_server(live, "127.0.0.1", port)
        while not got:
            await asyncio.sleep(0.05)
        await server.shutdown()  # the second outage
        missing = poller.stats.missing
        while poller.stats.missing < missing + 5:
            await asyncio.sleep(0.05)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return poller

    poller = asyncio.run(main())
    lines = [r.getMessage() for r in caplog.records if r.name == "runhours.edge.modbus"]
    assert poller.stats.outages == 2
    down = [line for line in lines if "samples are missing until it answers" in line]
    up = [line for line in lines if "answers again" in line]
    assert len(down) == 2 and len(up) == 1, lines
    assert down[0].startswith(f"modbus://127.0.0.1:{port}: cannot connect")
    print("\n" + "\n".join(lines))


def test_the_simulators_map_reads_back_exactly(settings: RunhoursSettings) -> None:
    """One poll of a served machine gives its latest reading, value for value."""
    spec = fleet(2, start=START, site="s", degrading=0)[1]  # a pump: other values
    live = LiveFleet([fleet(2, start=START, site="s", degrading=0)[0], spec], START, speed=1.0)
    live.step(START + timedelta(hours=1))
    port = free_port()

    async def main() -> Any:
        server = await start_modbus_server(live, "127.0.0.1", port)
        try:
            poller = ModbusPoller(modbus_options(spec, 2, port))
            try:
                return await poller.poll()
            finally:
                poller.close()
        finally:
            await server.shutdown()

    reading = asyncio.run(main())
    latest = live.latest[1]
    assert reading is not None and latest is not None
    assert reading.sample == latest.sample
    assert reading.counters == {RUN_COUNTER: float(int(latest.counters[RUN_COUNTER]))}


def test_the_shipped_example_configs_are_the_simulators_maps() -> None:
    spec = fleet(1, start=START)[0]
    root = REPO / "examples"
    modbus = root / "modbus-edge.toml"
    opcua = root / "opcua-edge.toml"
    assert modbus.read_text(encoding="utf-8") == modbus_edge_config(spec, 1, "127.0.0.1", 5020)
    assert opcua.read_text(encoding="utf-8") == opcua_edge_config(spec, "opc.tcp://127.0.0.1:4840/")
    for path in (modbus, opcua):  # and the edge reads them
        assert load_settings(EdgeSettings, path).edge.machine == spec.machine


def test_simulate_serve_writes_edge_configs_that_read_the_served_machines(tmp_path: Path) -> None:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "runhours", "simulate", "--serve", "modbus", "--machines", "3",
         "--port", str(port), "--speed", "60", "--days", "1", "--edge-configs",
         str(tmp_path / "edge"), "--ground-truth", str(tmp_path / "truth.json")],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        assert server.stdout is not None
        for line in server.stdout:
            if line.startswith("serving"):
                break
        settings = load_settings(EdgeSettings, tmp_path / "edge" / "pump-01.toml")
        source = settings.edge.source
        assert isinstance(source, ModbusSource) and source.port == port and source.unit == 2

        async def poll() -> Any:
            poller = ModbusPoller(source)
            try:
                for _ in range(100):
                    if (reading := await poller.poll()) is not None:
                        return reading
                    await asyncio.sleep(0.1)
            finally:
                poller.close()

        reading = asyncio.run(poll())
        assert reading is not None and "flow_m3_h" in reading.sample.values
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(20) == 0
        assert server.stdout is not None
        server.stdout.close()
    assert (tmp_path / "truth.json").exists()


async def _certificate(folder: Path, name: str, uri: str, server: bool) -> tuple[Path, Path]:
    from asyncua.crypto.cert_gen import setup_self_signed_certificate
    from cryptography.x509.oid import ExtendedKeyUsageOID

    use = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    key, cert = folder / f"{name}.pem", folder / f"{name}.der"
    await setup_self_signed_certificate(key, cert, uri, "localhost", [use], {"commonName": name})
    return cert, key


def test_opcua_security_and_a_new_client_after_a_lost_server(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Only the account, signed and encrypted, reads; a wrong password gets nothing and one
    log line; a server that goes away and comes back is met with a new client."""
    caplog.set_level(logging.INFO, logger="runhours.edge.opcua")
    spec = fleet(1, start=START, site="s", degrading=0)[0]
    port = free_port()

    async def main() -> tuple[OpcuaReader, OpcuaReader, list[Any]]:
        server_cert, server_key = await _certificate(
            tmp_path, "server", "urn:freeopcua:python:server", server=True
        )
        client_cert, client_key = await _certificate(
            tmp_path, "client", "urn:freeopcua:client", server=False
        )
        security = OpcuaSecurity(server_cert, server_key, "edge", "s3cret-pass")
        live = LiveFleet([spec], START, speed=60.0)

        def reader(password: str) -> OpcuaReader:
            return OpcuaReader(
                opcua_options(
                    spec,
                    port,
                    security="Basic256Sha256,SignAndEncrypt",
                    certificate=client_cert,
                    private_key=client_key,
                    username="edge",
                    password=password,
                    reconnect_min=0.2,
                    reconnect_max=0.4,
                    timeout=2,
                )
            )

        good, bad = reader("s3cret-pass"), reader("wrong")
        got: list[Any] = []

        async def collect(r: OpcuaReader, into: list[Any]) -> None:
            async for batch in r.readings():
                into.extend(batch)

        server = await start_opcua_server(live, "127.0.0.1", port, security)
        stepping = asyncio.create_task(live.run(on_readings=server.on_readings))
        tasks = [asyncio.create_task(collect(good, got)), asyncio.create_task(collect(bad, []))]
        while len(got) < 5:
            await asyncio.sleep(0.1)
        stepping.cancel()
        await server.stop()  # the server goes away …
        before = len(got)
        while good.stats.outages == 0:
            await asyncio.sleep(0.1)
        server = await start_opcua_server(live, "127.0.0.1", port, security)  # … and is back
        stepping = asyncio.create_task(live.run(on_readings=server.on_readings))
        while len(got) < before + 5:
            await asyncio.sleep(0.1)
        for task in [*tasks, stepping]:
            task.cancel()
        await asyncio.gather(*tasks, stepping, return_exceptions=True)
        await server.stop()
        return good, bad, got

    good, bad, got = asyncio.run(main())
    assert bad.stats.samples == 0 and bad.stats.connects == 0 and bad.stats.outages == 1
    assert good.stats.connects == 2 and good.stats.outages == 1
    stamps = [r.sample.ts_ms for r in got]
    assert stamps == sorted(set(stamps))  # the server's own times, none twice
    lines = [r.getMessage() for r in caplog.records if r.name == "runhours.edge.opcua"]
    assert len([line for line in lines if "no samples until it answers" in line]) == 2, lines
    assert len([line for line in lines if "answers again" in line]) == 1, lines
    print("\n" + "\n".join(lines))


def test_opcua_polling_stamps_samples_with_the_servers_time() -> None:
    spec = fleet(1, start=START, site="s", degrading=0)[0]
    port = free_port()

    async def main() -> list[Any]:
        live = LiveFleet([spec], START, speed=60.0)
        server = await start_opcua_server(live, "127.0.0.1", port)
        stepping = asyncio.create_task(live.run(on_readings=server.on_readings))
        reader = OpcuaReader(opcua_options(spec, port, mode="poll", interval=0.2))
        got: list[Any] = []
        async for batch in reader.readings():
            got.extend(batch)
            if len(got) >= 3:
                break
        stepping.cancel()
        await asyncio.gather(stepping, return_exceptions=True)
        await server.stop()
        return got

    got = asyncio.run(main())
    truth = MachineSim(spec, START, sample_interval_s=INTERVAL_S).advance(
        START + timedelta(hours=1)
    )
    by_ts = {r.sample.ts_ms: r for r in truth}
    for reading in got:  # each is the reading the server showed, at its own time
        assert reading.sample == by_ts[reading.sample.ts_ms].sample
