"""Each fault runhours promises to ride out, on real Mosquitto and InfluxDB, with the figures
it measured: samples produced, stored, duplicated, reported lost, dropped at the edge.

Everywhere but the documented cases nothing is lost and nothing duplicated. In the
documented cases (a broker crash, a broker whose queue limit drops a burst, an edge whose
buffer overflows) every missing sample is accounted for: reported lost in transit by the
ingest's gap reports, or counted as dropped by the edge. docs/reliability.md lists the
promises beside these figures.
"""

from __future__ import annotations

import asyncio
import logging
import random
import subprocess
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from common.settings import RunhoursSettings
from runhours.services import LocalServices, free_port
from simulators import fleet
from store import InfluxClient
from tests.support.faults import (
    START,
    IngestProcess,
    SlowHttpProxy,
    StockMosquitto,
    TcpProxy,
    edge_settings,
    report,
    run_paced,
    settle,
    wait_for_the_queue_to_drain,
)
from wire import to_epoch_ms

MACHINES = 10


def _influx(settings: RunhoursSettings) -> InfluxClient:
    client = InfluxClient(settings.influx_url, settings.influx_db)
    client.ensure_database()
    return client


def test_edges_started_30s_before_any_ingest_store_every_sample(
    own_settings: RunhoursSettings, test_id: str, tmp_path: Path
) -> None:
    """A first deployment: no ingest has ever subscribed, so the broker has no session to
    queue for. The agents hold their telemetry until an ingest announces itself."""
    influx = _influx(own_settings)
    ingest = IngestProcess(own_settings, test_id, tmp_path / "ingest.log")

    async def ingest_comes_30s_later() -> None:
        await asyncio.sleep(30)
        await asyncio.to_thread(ingest.start)

    try:
        specs = fleet(MACHINES, seed=11, start=START, site=test_id)
        run = run_paced(edge_settings(own_settings, test_id), specs, 4, 40, ingest_comes_30s_later)
        result = report(settle("edges 30 s before any ingest", influx, run))
    finally:
        ingest.stop()
    assert (result.stored, result.duplicated, result.reported_lost) == (result.produced, 0, 0)


def test_ingest_sigkilled_at_5_random_moments_loses_and_duplicates_nothing(
    own_settings: RunhoursSettings, test_id: str, tmp_path: Path
) -> None:
    influx = _influx(own_settings)
    ingest = IngestProcess(own_settings, test_id, tmp_path / "ingest.log")
    rng = random.Random(8)
    moments = sorted(rng.uniform(2, 36) for _ in range(5))

    async def five_kills() -> None:
        elapsed = 0.0
        for moment in moments:
            await asyncio.sleep(max(0.0, moment - elapsed))
            await asyncio.to_thread(ingest.kill)
            await asyncio.sleep(rng.uniform(0.2, 2))
            await asyncio.to_thread(ingest.start)  # waits for its ready line
            elapsed = max(moment, elapsed) + 2

    try:
        ingest.start()
        specs = fleet(MACHINES, seed=12, start=START, site=test_id)
        run = run_paced(edge_settings(own_settings, test_id), specs, 12, 45, five_kills)
        result = report(settle("ingest SIGKILL x5", influx, run))
    finally:
        ingest.stop()
    assert ingest.starts == 6
    assert (result.stored, result.duplicated, result.reported_lost) == (result.produced, 0, 0)


def test_broker_stopped_cleanly_mid_run_loses_nothing(
    own_services: LocalServices, own_settings: RunhoursSettings, test_id: str, tmp_path: Path
) -> None:
    influx = _influx(own_settings)
    ingest = IngestProcess(own_settings, test_id, tmp_path / "ingest.log")

    async def broker_restart() -> None:
        await asyncio.sleep(8)
        await asyncio.to_thread(own_services.mosquitto.stop)  # SIGTERM: it saves its state
        await asyncio.sleep(5)
        await asyncio.to_thread(own_services.mosquitto.start)

    try:
        ingest.start()
        specs = fleet(MACHINES, seed=13, start=START, site=test_id)
        run = run_paced(edge_settings(own_settings, test_id), specs, 6, 30, broker_restart)
        result = report(settle("broker restart (SIGTERM)", influx, run))
    finally:
        ingest.stop()
    assert (result.stored, result.duplicated, result.reported_lost) == (result.produced, 0, 0)


def test_broker_crash_loses_only_what_the_gap_reports_account_for(
    own_services: LocalServices, own_settings: RunhoursSettings, test_id: str, tmp_path: Path
) -> None:
    """Mosquitto acknowledges a QoS 1 publish before it saves it (autosave_interval 10 s): a
    crash loses what it queued for the ingest since its last save. A slow InfluxDB keeps
    such a queue there when the broker is killed; whatever is lost, the ingest reports."""
    influx = _influx(own_settings)
    slow = SlowHttpProxy(own_settings.influx_url, delay=0.3)
    ingest = IngestProcess(
        own_settings.model_copy(update={"influx_url": slow.url}),
        test_id,
        tmp_path / "ingest.log",
        max_inflight=20,
        batch_points=1000,
    )

    async def broker_crash() -> None:
        await asyncio.sleep(12)
        await asyncio.to_thread(own_services.mosquitto.kill)  # SIGKILL: no save
        await asyncio.sleep(3)
        await asyncio.to_thread(own_services.mosquitto.start)

    try:
        ingest.start()
        specs = fleet(MACHINES, seed=14, start=START, site=test_id)
        edges = edge_settings(own_settings, test_id, max_batch=50)
        run = run_paced(edges, specs, 12, 30, broker_crash)
        result = settle("broker crash (SIGKILL), queue at the broker", influx, run, timeout=240)
    finally:
        ingest.stop()
        slow.close()
    # The loss window: how much of the plant's data the crash took, in wall seconds.
    per_wall_second = MACHINES * (12 * 3600 / 30) / 10
    report(replace(result, note=f"loss window {result.reported_lost / per_wall_second:.2f} s"))
    assert result.accounted and result.duplicated == 0, result


def test_influxdb_down_60s_loses_nothing(
    own_services: LocalServices, own_settings: RunhoursSettings, test_id: str, tmp_path: Path
) -> None:
    influx = _influx(own_settings)
    ingest = IngestProcess(own_settings, test_id, tmp_path / "ingest.log")

    async def database_outage() -> None:
        await asyncio.sleep(5)
        await asyncio.to_thread(own_services.influxdb.stop)
        await asyncio.sleep(60)
        await asyncio.to_thread(own_services.influxdb.start)

    try:
        ingest.start()
        specs = fleet(MACHINES, seed=15, start=START, site=test_id)
        run = run_paced(edge_settings(own_settings, test_id), specs, 6, 70, database_outage)
        result = report(settle("InfluxDB down 60 s", influx, run))
    finally:
        ingest.stop()
    assert (result.stored, result.duplicated, result.reported_lost) == (result.produced, 0, 0)
    log = ingest.log.read_text()  # past hold_edges_after (30 s) the edges were asked to hold
    assert "announcing this worker offline" in log and "announcing this worker online" in log


def test_influxdb_slow_2s_per_request_loses_nothing(
    own_settings: RunhoursSettings, test_id: str, tmp_path: Path
) -> None:
    influx = _influx(own_settings)
    slow = SlowHttpProxy(own_settings.influx_url, delay=2.0)
    through_proxy = own_settings.model_copy(update={"influx_url": slow.url})
    ingest = IngestProcess(through_proxy, test_id, tmp_path / "ingest.log", batch_points=20000)
    try:
        ingest.start()
        specs = fleet(MACHINES, seed=16, start=START, site=test_id)
        run = run_paced(edge_settings(own_settings, test_id), specs, 6, 25)
        result = report(
            settle("InfluxDB +2 s per request", influx, run, note=f"{slow.requests} requests")
        )
    finally:
        ingest.stop()
        slow.close()
    assert slow.requests >= 5  # it did go through the slow path
    assert (result.stored, result.duplicated, result.reported_lost) == (result.produced, 0, 0)


def test_edge_offline_10_simulated_minutes_replays_everything(
    own_services: LocalServices, own_settings: RunhoursSettings, test_id: str, tmp_path: Path
) -> None:
    influx = _influx(own_settings)
    ingest = IngestProcess(own_settings, test_id, tmp_path / "ingest.log")
    uplink = TcpProxy(own_services.mosquitto.port)
    hours, wall = 2.0, 36.0
    speed = hours * 3600 / wall  # simulated seconds per wall second

    try:
        ingest.start()
        at_edge = own_settings.model_copy(update={"mqtt_url": f"mqtt://127.0.0.1:{uplink.port}"})
        specs = fleet(MACHINES, seed=17, start=START, site=test_id)
        edges = edge_settings(at_edge, test_id)
        run = run_paced(edges, specs, hours, wall, lambda: uplink.outage(10, 600 / speed))
        result = report(settle("edge offline 10 simulated min", influx, run))
    finally:
        ingest.stop()
        uplink.close()
    assert (result.stored, result.duplicated, result.reported_lost) == (result.produced, 0, 0)


def test_a_full_edge_buffer_drops_the_oldest_counted_as_edge_drops(
    own_services: LocalServices, own_settings: RunhoursSettings, test_id: str, tmp_path: Path
) -> None:
    """An uplink outage longer than the buffer holds: the oldest samples are dropped at the
    edge, counted exactly, reported in the machine's status, never as transit gaps."""
    influx = _influx(own_settings)
    ingest = IngestProcess(own_settings, test_id, tmp_path / "ingest.log")
    uplink = TcpProxy(own_services.mosquitto.port)
    try:
        ingest.start()
        at_edge = own_settings.model_copy(update={"mqtt_url": f"mqtt://127.0.0.1:{uplink.port}"})
        small = edge_settings(at_edge, test_id, buffer={"max_bytes": 16384})
        specs = fleet(MACHINES, seed=18, start=START, site=test_id)
        run = run_paced(small, specs, 6, 30, lambda: uplink.outage(6, 8))
        result = report(settle("edge buffer full (16 KiB)", influx, run))
        statuses = influx.query_rows(
            'SELECT last("dropped_total") AS d FROM machine_status GROUP BY machine'
        )
    finally:
        ingest.stop()
        uplink.close()
    assert result.edge_dropped > 0 and result.reported_lost == 0 and result.duplicated == 0
    assert result.stored + result.edge_dropped == result.produced
    by_machine = {m.spec.machine: m.dropped for m in run.machines}
    assert {r["machine"]: int(r["d"]) for r in statuses} == by_machine  # reported as edge drops


@pytest.mark.services
def test_a_stock_broker_that_drops_a_burst_has_every_lost_sample_reported(
    test_id: str, tmp_path: Path
) -> None:
    """Mosquitto's default max_queued_messages (1000) under a burst the ingest cannot keep up
    with (InfluxDB answering in 0.5 s, a 50-message window): the broker acknowledges every
    publish and drops the overflow. Loss happens; the gap reports account for all of it.
    A calm second phase, once the broker's queue has drained, lets each machine's next
    messages reveal a lost tail."""
    pair = LocalServices(tmp_path / "stock", mqtt_port=free_port(), influx_port=free_port())
    pair.mosquitto = StockMosquitto(
        "mosquitto", "mosquitto", "mosquitto", pair.mosquitto.port, "127.0.0.1", pair.state_dir
    )
    pair.up(timeout=60)
    settings = RunhoursSettings(
        mqtt_url=pair.mqtt_url,
        influx_url=pair.influx_url,
        influx_db=test_id,
        data_dir=tmp_path / "var",
    )
    influx = _influx(settings)
    slow = SlowHttpProxy(settings.influx_url, delay=0.5)
    ingest = IngestProcess(
        settings.model_copy(update={"influx_url": slow.url}),
        test_id,
        tmp_path / "ingest.log",
        max_inflight=50,
    )
    try:
        ingest.start()
        specs = fleet(MACHINES, seed=19, start=START, site=test_id)
        burst = run_paced(edge_settings(settings, test_id, max_batch=10), specs, 12, None)
        # The calm phase must not meet a queue still full of the burst: it would drop the
        # calm phase's own last messages, and nothing after them would reveal that loss.
        wait_for_the_queue_to_drain(settings, test_id, influx)
        later = START + timedelta(hours=12)  # after the burst: new samples, not the same ones
        calm = run_paced(edge_settings(settings, test_id), specs, 0.5, 3, start=later)
        result = report(settle("stock Mosquitto under a burst", influx, burst, calm, timeout=180))
    finally:
        ingest.stop()
        slow.close()
        pair.down()
    assert result.reported_lost > 0, "the stock broker was expected to drop part of the burst"
    assert result.accounted and result.duplicated == 0, result


def test_a_full_disk_under_the_edge_buffer_drops_the_oldest_and_live_data_flows(
    own_services: LocalServices,
    own_settings: RunhoursSettings,
    test_id: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An edge device with a small disk (a 512 KiB tmpfs holds its buffer) and an uplink
    outage that fills it: the agent says so clearly, drops its oldest samples (counted as
    edge drops), keeps buffering the live ones, and publishes them once the uplink is back."""
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(disk)], check=True)
    influx = _influx(own_settings)
    ingest = IngestProcess(own_settings, test_id, tmp_path / "ingest.log")
    uplink = TcpProxy(own_services.mosquitto.port)
    try:
        ingest.start()
        at_edge = own_settings.model_copy(
            update={"mqtt_url": f"mqtt://127.0.0.1:{uplink.port}", "data_dir": disk}
        )
        edges = edge_settings(at_edge, test_id, buffer={"reserve": "128KiB"})
        specs = fleet(1, seed=20, start=START, site=test_id)
        with caplog.at_level(logging.WARNING, logger="runhours.edge.buffer"):
            run = run_paced(edges, specs, 8, 34, lambda: uplink.outage(4, 24))
        result = report(settle("edge buffer's disk full (512 KiB tmpfs)", influx, run))
    finally:
        ingest.stop()
        uplink.close()
        subprocess.run(["umount", str(disk)], check=False)
    assert "the disk is full" in caplog.text
    assert result.edge_dropped > 0 and result.reported_lost == 0 and result.duplicated == 0
    assert result.stored + result.edge_dropped == result.produced
    # Live data flowed: the newest samples are stored, the oldest of the outage dropped.
    rows = influx.query_rows('SELECT "state" FROM telemetry ORDER BY time')
    times = [r["time"] for r in rows]
    end_ms = to_epoch_ms(START + timedelta(hours=8))
    assert times[-1] >= end_ms - 10_000
    assert times == sorted(set(times)) and len(times) == result.stored
