"""Billing benchmark: one month of 10-second samples for a plant, billed from the hourly
rollups and from raw samples in the same run.

    python -m bench.billing                      # 100 machines, October 2026, 10 s sampling
    python -m bench.billing --machines 20        # smaller
    python -m bench.billing --influx-url http://localhost:8086   # an InfluxDB you run

It starts its own InfluxDB (from the Debian package) under a temporary directory unless
``--influx-url`` is given, writes the month (pre-encoded line protocol, gzip, 50k-line
batches, one writer process per core), builds the rollups, then times billing the month
both ways, checks the two exports are byte-identical and prints both times and the ratio.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import tomllib
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from analytics.billing import build_statements, parse_contracts, to_csv
from analytics.periods import calendar_period, zone
from analytics.rollups import rebuild_rollups
from runhours.services import LocalServices, free_port
from store import InfluxClient
from wire import STATES

BATCH = 50_000
# How often the machines are in each state (a busy two-shift plant), and mean segment length.
STATE_WEIGHTS = np.array([0.15, 0.15, 0.6, 0.05, 0.05])  # off, idle, running, fault, maint.
MEAN_SEGMENT_S = 40 * 60


def machine_lines(
    machine: str, seed: int, start_ms: int, end_ms: int, interval_ms: int
) -> list[bytes]:
    """One machine's month as line-protocol batches: a sample every ``interval_ms`` plus one
    at every state change (ms precision), the hour meter once a minute, two sensor values."""
    rng = np.random.default_rng(seed)
    lengths = rng.exponential(MEAN_SEGMENT_S * 1000, size=int((end_ms - start_ms) / 6e5) + 100)
    changes = start_ms + np.concatenate([[0], np.cumsum(lengths.astype(np.int64) + 1)])
    changes = changes[changes < end_ms]
    codes = rng.choice(len(STATES), size=changes.size, p=STATE_WEIGHTS)
    grid = np.arange(start_ms, end_ms, interval_ms, dtype=np.int64)
    ts = np.unique(np.concatenate([grid, changes]))
    segment = np.searchsorted(changes, ts, side="right") - 1
    state = codes[segment]
    running = state == STATES.index("running")
    current = np.round(np.where(running, rng.normal(12.0, 0.4, ts.size), 0.3), 1)
    vibration = np.round(np.where(running, rng.normal(1.8, 0.1, ts.size), 0.1), 2)
    step = np.diff(ts, append=end_ms)
    meter = 3_600_000.0 + np.concatenate([[0], np.cumsum(np.where(running, step, 0))[:-1]]) / 1000
    with_meter = (ts - start_ms) % 60_000 == 0
    prefix = f"telemetry,line=line-{seed % 10},machine={machine},site=bench "
    names = [f'state="{s}"' for s in STATES]
    lines = [
        f"{prefix}{names[s]},current_a={c!r},vibration_mm_s={v!r}"
        + (f",run_seconds_total={m!r} {t}" if w else f" {t}")
        for t, s, c, v, m, w in zip(
            ts.tolist(),
            state.tolist(),
            current.tolist(),
            vibration.tolist(),
            meter.tolist(),
            with_meter.tolist(),
            strict=True,
        )
    ]
    return ["\n".join(lines[i : i + BATCH]).encode() for i in range(0, len(lines), BATCH)]


def write_machines(
    url: str, database: str, machines: list[tuple[str, int]], span: tuple[int, int, int]
) -> int:
    """Worker process: generate and write some machines; returns points written."""
    written = 0
    with InfluxClient(url, database, timeout=120) as client:
        for machine, seed in machines:
            for body in machine_lines(machine, seed, *span):
                client.write_lines(body)
                written += body.count(b"\n") + 1
    return written


def contracts_toml(machines: list[str], zone_name: str) -> str:
    half = len(machines) // 2 or 1
    flat = "".join(f'[[contract.machine]]\nid = "{m}"\n' for m in machines[:half])
    tiered = "".join(f'[[contract.machine]]\nid = "{m}"\n' for m in machines[half:])
    text = (
        f'[[contract]]\nid = "BENCH-FLAT"\ncustomer = "Bench A"\ncurrency = "EUR"\n'
        f'timezone = "{zone_name}"\nrate_per_hour = "42.50"\nminimum_hours = "100"\n{flat}'
    )
    if tiered:
        text += (
            f'\n[[contract]]\nid = "BENCH-TIERS"\ncustomer = "Bench B"\ncurrency = "EUR"\n'
            f'timezone = "{zone_name}"\nallowance_hours = "400"\noveruse_multiplier = "1.25"\n'
            '[[contract.tier]]\nup_to_hours = "200"\nrate_per_hour = "18.00"\n'
            f'[[contract.tier]]\nrate_per_hour = "15.00"\n{tiered}'
        )
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.billing", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--machines", type=int, default=100, help="fleet size (default 100)")
    parser.add_argument(
        "--period", default="2026-10", help="month to simulate and bill (default 2026-10)"
    )
    parser.add_argument("--timezone", default="Europe/Berlin", help="the contracts' zone")
    parser.add_argument(
        "--interval", type=float, default=10.0, help="sampling interval in s (default 10)"
    )
    parser.add_argument("--writers", type=int, default=os.cpu_count() or 2, help="writer processes")
    parser.add_argument("--influx-url", help="use this InfluxDB instead of starting one")
    args = parser.parse_args(argv)

    period = calendar_period(args.period, zone(args.timezone))
    span = (period.start_ms, period.end_ms, round(args.interval * 1000))
    machines = [f"m{i:03d}" for i in range(args.machines)]
    services = None
    tmp = None
    url = args.influx_url
    if url is None:
        tmp = tempfile.TemporaryDirectory(prefix="runhours-bench-")
        services = LocalServices(Path(tmp.name), mqtt_port=free_port(), influx_port=free_port())
        services.influxdb.start(timeout=60)
        url = services.influx_url
    database = f"bench_billing_{int(time.time())}"
    try:
        with InfluxClient(url, database, timeout=600) as client:
            client.ensure_database()
            print(f"writing {args.machines} machines × {period.hours:.0f} h at {args.interval:g} s "
                  f"into {url}/{database} …", flush=True)  # fmt: skip
            t0 = time.perf_counter()
            chunks = [[(m, i) for i, m in enumerate(machines) if i % args.writers == w]
                      for w in range(args.writers)]  # fmt: skip
            with ProcessPoolExecutor(args.writers) as pool:
                points = sum(pool.map(write_machines, [url] * args.writers, [database] * args.writers,
                                      chunks, [span] * args.writers))  # fmt: skip
            write_s = time.perf_counter() - t0
            print(f"  {points:,} points in {write_s:.1f} s ({points / write_s:,.0f} points/s)")

            t0 = time.perf_counter()
            hours = rebuild_rollups(client, period.start, period.end, machines)
            rollup_s = time.perf_counter() - t0
            print(f"  rollups: {hours:,} machine-hours built in {rollup_s:.1f} s")

            contracts = parse_contracts(tomllib.loads(contracts_toml(machines, args.timezone)))
            t0 = time.perf_counter()
            from_rollups = to_csv(build_statements(client, contracts, args.period))
            rollups_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            from_raw = to_csv(build_statements(client, contracts, args.period, from_raw=True))
            raw_s = time.perf_counter() - t0
            client.query(f'DROP DATABASE "{database}"', epoch=None)
    finally:
        if services is not None:
            services.influxdb.stop()
        if tmp is not None:
            tmp.cleanup()

    same = from_rollups == from_raw
    print(f"billing {args.period} for {args.machines} machines ({points:,} samples):")
    print(f"  from rollups: {rollups_s:8.3f} s")
    print(f"  from raw:     {raw_s:8.3f} s")
    print(f"  ratio:        {raw_s / rollups_s:8.1f} ×  (rollups faster)")
    print(f"  exports identical: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
