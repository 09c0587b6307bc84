"""Ingest benchmark: the full path against InfluxDB's own write ceiling, in one run.

    python -m bench.ingest                  # 1,000,000 points, 200 machines, 4 values
    python -m bench.ingest --points 200000  # quicker
    python -m bench.ingest --sizes 50 --workers 1   # only the headline case

It starts its own Mosquitto and InfluxDB (the project's configs, free ports) and measures:

1. **ceiling**: the same points as pre-encoded line protocol, 10,000-line batches, written
   by 1, 2 and 4 concurrent processes; the best is the ceiling;
2. **full path**: wire-format telemetry messages published QoS 1 by a separate process as
   fast as the broker takes them → ``runhours ingest`` (real processes, 1 or 2 workers on
   a shared subscription) → InfluxDB, timed from the first publish to the last point
   written, at 1, 10, 50 and 100 samples per message;
3. **drain**: the backlog published while the ingest is stopped (its session keeps it),
   timed from the ingest's start; and with InfluxDB unreachable, the ingest's RSS while a
   backlog of points waits at the broker.

For each run it prints points/s, the ingest's CPU seconds per million points and its peak
RSS. The last line is ``ratio=0.NN``: the full path at 50 samples per message, one worker,
against the ceiling.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from runhours.services import LocalServices, free_port
from store import InfluxClient

ROOT = Path(__file__).resolve().parent.parent
SITE = "bench"
T0 = 1_772_409_600_000  # 2026-03-02T00:00:00Z
STATES = ("running", "idle", "running", "fault")


# -- the points --------------------------------------------------------------------------------


def samples(machine: int, count: int) -> list[dict[str, object]]:
    """``count`` samples of one machine, one a second, 4 values each (sensor-like)."""
    out = []
    for i in range(count):
        out.append(
            {
                "ts": T0 + i * 1000,
                "state": STATES[(i // 600 + machine) % 4],
                "values": {
                    "vibration_mm_s": round(1.5 + (i % 97) / 100, 2),
                    "bearing_temp_c": round(40 + (i % 41) / 10, 1),
                    "spindle_current_a": round(11 + (i % 13) / 10, 1),
                    "spindle_speed_rpm": float(8000 + (i % 7) * 10),
                },
            }
        )
    return out


def messages(points: int, machines: int, per_message: int) -> list[tuple[str, bytes]]:
    """The wire messages carrying ``points`` samples: (topic, payload)."""
    per_machine = points // machines
    out = []
    for m in range(machines):
        name = f"m{m:04d}"
        topic = f"runhours/v1/{SITE}/line-{m % 10}/{name}/telemetry"
        rows = samples(m, per_machine)
        for seq, start in enumerate(range(0, per_machine, per_message)):
            batch = rows[start : start + per_message]
            body = {"machine": name, "seq": seq, "offset": start, "samples": batch}
            out.append((seq, topic, json.dumps(body, separators=(",", ":")).encode()))
    out.sort()  # interleave the machines, as a plant publishes them
    return [(topic, payload) for _, topic, payload in out]


def line_batches(points: int, machines: int) -> list[bytes]:
    """The same points as line protocol, 10,000 lines per batch."""
    per_machine = points // machines
    lines = []
    for m in range(machines):
        tags = f"telemetry,line=line-{m % 10},machine=m{m:04d},site={SITE}"
        for s in samples(m, per_machine):
            v = s["values"]
            assert isinstance(v, dict)
            fields = ",".join(f"{k}={float(x)!r}" for k, x in v.items())
            lines.append(f'{tags} {fields},state="{s["state"]}" {s["ts"]}')
    return ["\n".join(lines[i : i + 10_000]).encode() for i in range(0, len(lines), 10_000)]


# -- 1. the ceiling ------------------------------------------------------------------------------


def _write(url: str, database: str, batches: list[bytes]) -> None:
    with InfluxClient(url, database, timeout=120, gzip_writes=False) as client:
        for body in batches:
            client.write_lines(body)


def ceiling(url: str, batches: list[bytes], points: int) -> float:
    best = 0.0
    for writers in (1, 2, 4):
        database = f"ceiling_{writers}"
        InfluxClient(url, database).ensure_database()
        shares = [batches[w::writers] for w in range(writers)]
        with ProcessPoolExecutor(writers) as pool:
            t0 = time.perf_counter()
            list(pool.map(_write, [url] * writers, [database] * writers, shares))
            rate = points / (time.perf_counter() - t0)
        print(f"  ceiling, {writers} writer(s): {rate:>10,.0f} points/s", flush=True)
        best = max(best, rate)
        InfluxClient(url, database).query(f'DROP DATABASE "{database}"', epoch=None)
    return best


# -- 2. the full path ----------------------------------------------------------------------------


def publish(url: str, msgs: list[tuple[str, bytes]]) -> float:
    """Publish QoS 1 as fast as the broker acknowledges; returns when all are acknowledged."""
    host, port = url.removeprefix("mqtt://").split(":")
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect(host, int(port))
    client.loop_start()
    t0 = time.perf_counter()
    pending = []
    for topic, payload in msgs:
        pending.append(client.publish(topic, payload, qos=1))
        if len(pending) >= 5000:
            for info in pending:
                info.wait_for_publish(120)
            pending.clear()
    for info in pending:
        info.wait_for_publish(120)
    took = time.perf_counter() - t0
    client.disconnect()
    client.loop_stop()
    return took


@dataclass
class Worker:
    process: subprocess.Popen[bytes]
    metrics_port: int
    log: Path

    def written(self) -> int:
        try:
            text = httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).text
        except httpx.HTTPError:
            return 0
        for line in text.splitlines():
            if line.startswith("runhours_ingest_points_written_total "):
                return int(float(line.split()[1]))
        return 0

    def cpu_and_rss(self) -> tuple[float, int]:
        """CPU seconds (user + system) and peak RSS (bytes) of the worker so far."""
        stat = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        cpu = (int(stat[11]) + int(stat[12])) / ticks
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        peak = next(
            int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM")
        )
        return cpu, peak * 1024

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(60)


PROFILE: Path | None = None  # --profile: py-spy samples each worker into this folder
OPTIONS: dict[str, str] = {}  # --set FIELD=VALUE: [ingest] settings for every worker


def start_worker(
    services: LocalServices, database: str, name: str, log: Path, share: bool, influx_url: str
) -> Worker:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNHOURS_")}
    env.update(
        RUNHOURS_MQTT_URL=services.mqtt_url,
        RUNHOURS_INFLUX_URL=influx_url,
        RUNHOURS_INFLUX_DB=database,
        RUNHOURS_DATA_DIR=str(log.parent / name),
        RUNHOURS_INGEST__CLIENT_ID=name,
        RUNHOURS_INGEST__METRICS_PORT=str(port),
        RUNHOURS_INGEST__METRICS_ADDR="127.0.0.1",
        RUNHOURS_INGEST__STATS_INTERVAL="0",
        # A group per run: Mosquitto keeps dealing a share to the offline sessions of a
        # group's earlier members (ingest/README.md), which would stall this run.
        RUNHOURS_INGEST__SHARE_GROUP=database if share else "",
    )
    env.update({f"RUNHOURS_INGEST__{k.upper()}": v for k, v in OPTIONS.items()})
    argv = [sys.executable, "-m", "runhours", "ingest", "--log-level", "warning"]
    with log.open("ab") as out:
        process = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    worker = Worker(process, port, log)
    if PROFILE is not None:  # py-spy (pip install py-spy) attached; it stops with the worker
        out_file = PROFILE / f"{name}-{process.pid}.txt"
        subprocess.Popen(
            ["py-spy", "record", "--format", "raw", "-o", str(out_file), "--pid", str(process.pid)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    deadline = time.monotonic() + 60
    while True:  # ready: its metrics say it is subscribed
        try:
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
            if "runhours_ingest_subscribed 1.0" in text:
                return worker
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"ingest did not start:\n{log.read_text()[-2000:]}")
        time.sleep(0.1)


def wait_written(workers: list[Worker], points: int, timeout: float = 600) -> float:
    deadline = time.monotonic() + timeout
    while sum(w.written() for w in workers) < points:
        if time.monotonic() > deadline:
            raise SystemExit(f"only {sum(w.written() for w in workers)} of {points} written")
        time.sleep(0.05)
    return time.perf_counter()


def cpu_seconds(pid: int | None) -> float:
    """CPU seconds (user + system) a process has used so far (0 if unknown)."""
    if pid is None:
        return 0.0
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")


def full_path(
    services: LocalServices,
    tmp: Path,
    points: int,
    machines: int,
    per_message: int,
    workers: int,
) -> tuple[float, float, int]:
    """points/s, CPU s per million points, peak RSS of the busiest worker; prints where the
    machine's CPU went (InfluxDB, Mosquitto, the ingest) per million points."""
    database = f"full_{per_message}_{workers}"
    InfluxClient(services.influx_url, database).ensure_database()
    msgs = messages(points, machines, per_message)
    names = [f"bench-{database}-{w}" for w in range(workers)]
    running = [
        start_worker(services, database, n, tmp / f"{n}.log", workers > 1, services.influx_url)
        for n in names
    ]
    influxd, mosquitto = services.influxdb.pid(), services.mosquitto.pid()
    before = (cpu_seconds(influxd), cpu_seconds(mosquitto))
    try:
        with ProcessPoolExecutor(1) as pool:  # the publisher: a separate process
            t0 = time.perf_counter()
            publishing = pool.submit(publish, services.mqtt_url, msgs)
            done = wait_written(running, points)
            publishing.result()
        cpu = sum(w.cpu_and_rss()[0] for w in running)
        rss = max(w.cpu_and_rss()[1] for w in running)
        db_cpu = cpu_seconds(influxd) - before[0]
        broker_cpu = cpu_seconds(mosquitto) - before[1]
        print(
            f"      CPU s per million points: InfluxDB {db_cpu / points * 1e6:.1f}, "
            f"Mosquitto {broker_cpu / points * 1e6:.1f}, ingest {cpu / points * 1e6:.1f}"
            f" (wall {done - t0:.1f} s on {os.cpu_count()} cores)",
            flush=True,
        )
    finally:
        for w in running:
            w.stop()
    InfluxClient(services.influx_url, database).query(f'DROP DATABASE "{database}"', epoch=None)
    return points / (done - t0), cpu / points * 1e6, rss


def drain(
    services: LocalServices, tmp: Path, points: int, machines: int, per_message: int
) -> tuple[float, float, int]:
    """The backlog waits at the broker (the ingest's session) and is drained from its start."""
    database = "drain"
    InfluxClient(services.influx_url, database).ensure_database()
    name = "bench-drain"
    start_worker(services, database, name, tmp / f"{name}.log", False, services.influx_url).stop()
    publish(services.mqtt_url, messages(points, machines, per_message))
    t0 = time.perf_counter()
    worker = start_worker(services, database, name, tmp / f"{name}.log", False, services.influx_url)
    try:
        done = wait_written([worker], points)
        cpu, rss = worker.cpu_and_rss()
    finally:
        worker.stop()
    InfluxClient(services.influx_url, database).query(f'DROP DATABASE "{database}"', epoch=None)
    return points / (done - t0), cpu / points * 1e6, rss


def memory_while_influx_is_down(
    services: LocalServices, tmp: Path, points: int, machines: int
) -> int:
    """Peak RSS of a worker whose InfluxDB is unreachable while ``points`` wait for it."""
    name = "bench-down"
    dead = f"http://127.0.0.1:{free_port()}"
    start_worker(services, "down", name, tmp / f"{name}.log", False, dead).stop()
    publish(services.mqtt_url, messages(points, machines, 50))
    worker = start_worker(services, "down", name, tmp / f"{name}.log", False, dead)
    try:
        time.sleep(10)  # it takes what Receive Maximum allows, then retries
        return worker.cpu_and_rss()[1]
    finally:
        worker.process.kill()
        worker.process.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.ingest", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--points", type=int, default=1_000_000, help="points per run")
    parser.add_argument("--machines", type=int, default=200)
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[1, 10, 50, 100], help="samples per message"
    )
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument(
        "--profile", type=Path, help="record each worker with py-spy into this folder"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="an [ingest] setting for every worker, e.g. --set batch_points=20000",
    )
    args = parser.parse_args(argv)
    global PROFILE
    PROFILE = args.profile
    OPTIONS.update(item.split("=", 1) for item in args.set)
    if PROFILE is not None:
        PROFILE.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory(prefix="runhours-bench-") as tmp_name:
        tmp = Path(tmp_name)
        services = LocalServices(tmp / "services", mqtt_port=free_port(), influx_port=free_port())
        services.up(timeout=60)
        try:
            print(f"{args.points:,} points, {args.machines} machines, 4 values per sample")
            top = ceiling(
                services.influx_url, line_batches(args.points, args.machines), args.points
            )
            headline = None
            for per_message in args.sizes:
                # One sample per message means a message per point: fewer points suffice.
                points = args.points if per_message >= 10 else args.points // 5
                for workers in args.workers:
                    rate, cpu, rss = full_path(
                        services, tmp, points, args.machines, per_message, workers
                    )
                    print(
                        f"  full path, {per_message:>3} samples/message, {workers} worker(s): "
                        f"{rate:>9,.0f} points/s ({rate / top:.2f} × ceiling), "
                        f"{cpu:5.1f} CPU s per million points, peak RSS {rss / 2**20:.0f} MB",
                        flush=True,
                    )
                    if per_message == 50 and workers == 1:
                        headline = rate / top
            rate, cpu, rss = drain(services, tmp, args.points, args.machines, 50)
            print(
                f"  drain of a {args.points:,}-point backlog, 50 samples/message: "
                f"{rate:,.0f} points/s ({rate / top:.2f} × ceiling), {cpu:.1f} CPU s per "
                f"million points, peak RSS {rss / 2**20:.0f} MB"
            )
            rss = memory_while_influx_is_down(services, tmp, args.points, args.machines)
            print(
                f"  InfluxDB unreachable, {args.points:,} points waiting at the broker: peak "
                f"RSS {rss / 2**20:.0f} MB (target < 200 MB)"
            )
        finally:
            services.down()
    if headline is not None:
        print(f"ratio={headline:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
