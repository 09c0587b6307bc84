"""Fleet benchmark: thousands of simulated machines through the real pipeline, in one run.

    python -m bench.fleet                                  # 1,000 and 10,000 machines, 1 h
    python -m bench.fleet --machines 1000 --hours 0.1      # quicker

It starts its own Mosquitto and InfluxDB (the project's configs, free ports) and one
``runhours ingest`` process, and for each fleet size measures:

1. **baseline**: the same machines' simulators alone, stepped in this process over the same
   simulated hour with no agent, broker or database (the first 1,000 of them: a rate);
2. **fleet**: ``run_fleet_workers`` as ``runhours simulate`` runs it (one edge agent per
   machine, each on its own topic with its own ``seq``; split over processes by the
   open-files limit), in a fresh process, as fast as the pipeline takes it, at one sample
   per machine per second, timed from the start to the last sample counted in InfluxDB.

For each size it prints samples/s (and the ratio to the baseline), the simulator's peak RSS
(the sum over its processes) and per machine, its CPU seconds (all its processes) and the
ingest's, and the samples stored against those produced: the run fails unless every one is
stored. The last line is ``ratio=0.NN``: the largest fleet against its baseline.

Run whole simulated hours at 1 sample/s: a simulator generates one-hour blocks, and a run
that stops inside one keeps the rest of it in memory (about 4 MB per machine at 1/s).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import resource
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path

from bench.ingest import Worker, start_worker
from edge.config import EdgeOptions, EdgeSettings
from runhours.fleet_workers import describe, plan_fleet, raise_open_files_limit, run_fleet_workers
from runhours.services import LocalServices, free_port
from simulators import MachineSim, fleet
from store import InfluxClient

START = datetime(2026, 3, 2, 8, tzinfo=UTC)  # a Monday, in the morning shift
BASELINE_MACHINES = 1_000
DATABASE = "bench_fleet"


@dataclass(frozen=True)
class FleetFigures:
    """What one fleet run did and cost (sent back from its process)."""

    produced: int
    published: int
    dropped: int
    buffered: int
    plan: str
    wall_seconds: float
    peak_rss_bytes: int
    cpu_seconds: float


def baseline(machines: int, hours: float) -> float:
    """Samples/s of the simulators alone (one process, no agents)."""
    specs = fleet(min(machines, BASELINE_MACHINES), start=START, site="baseline")
    sims = [MachineSim(spec, START, sample_interval_s=1.0) for spec in specs]
    end = START + timedelta(hours=hours)
    t0 = time.perf_counter()
    produced = sum(len(sim.advance(end)) for sim in sims)
    return produced / (time.perf_counter() - t0)


def _simulate(settings: EdgeSettings, machines: int, hours: float, out: Connection) -> None:
    """In a fresh process: the fleet as ``runhours simulate`` runs it, and what it cost."""
    specs = fleet(machines, start=START, site=settings.edge.site)
    plan = plan_fleet(machines, *raise_open_files_limit())
    run = asyncio.run(
        run_fleet_workers(
            settings, specs, plan, start=START, end=START + timedelta(hours=hours),
            speed=None, sample_interval_s=1.0, drain_timeout=120,
        )
    )  # fmt: skip
    own = resource.getrusage(resource.RUSAGE_SELF)
    workers = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = own.ru_utime + own.ru_stime + workers.ru_utime + workers.ru_stime
    assert run.resources is not None
    out.send(
        FleetFigures(
            run.produced, run.published, run.dropped, run.buffered, describe(plan),
            run.wall_seconds, run.resources.peak_rss_bytes, cpu,
        )
    )  # fmt: skip
    out.close()


def stored(influx: InfluxClient, site: str) -> int:
    rows = influx.query_rows(f"SELECT count(state) FROM telemetry WHERE site = '{site}'")
    return int(rows[0]["count"]) if rows else 0


def run_fleet_size(
    services: LocalServices, tmp: Path, machines: int, hours: float
) -> tuple[FleetFigures, float, int]:
    """One fleet through the pipeline: its figures, samples/s to InfluxDB, samples stored."""
    site = f"fleet{machines}"
    settings = EdgeSettings(
        mqtt_url=services.mqtt_url,
        influx_url=services.influx_url,
        influx_db=DATABASE,
        data_dir=tmp / site,
        edge=EdgeOptions(site=site),
    )
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_simulate, args=(settings, machines, hours, sender))
    t0 = time.perf_counter()
    process.start()
    sender.close()
    try:
        figures: FleetFigures = receiver.recv()
    except EOFError:
        process.join()
        raise SystemExit(
            f"{machines:,} machines: the fleet failed (exit {process.exitcode})"
        ) from None
    process.join()
    with InfluxClient(services.influx_url, DATABASE) as influx:
        deadline = time.monotonic() + 600
        while (count := stored(influx, site)) < figures.produced:
            if time.monotonic() > deadline:
                break
            time.sleep(0.5)
    took = time.perf_counter() - t0
    return figures, figures.produced / took, count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.fleet", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--machines", type=int, nargs="+", default=[1_000, 10_000])
    parser.add_argument("--hours", type=float, default=1.0, help="simulated hours, 1 sample/s")
    args = parser.parse_args(argv)
    failed = False
    ratio = None
    with tempfile.TemporaryDirectory(prefix="runhours-bench-") as tmp_name:
        tmp = Path(tmp_name)
        services = LocalServices(tmp / "services", mqtt_port=free_port(), influx_port=free_port())
        services.up(timeout=60)
        ingest: Worker | None = None
        try:
            with InfluxClient(services.influx_url, DATABASE) as influx:
                influx.ensure_database()
            ingest = start_worker(
                services, DATABASE, "ingest-fleet", tmp / "ingest.log", False, services.influx_url
            )
            for machines in args.machines:
                base = baseline(machines, args.hours)
                ingest_cpu = ingest.cpu_and_rss()[0]
                figures, rate, count = run_fleet_size(services, tmp, machines, args.hours)
                ingest_cpu = ingest.cpu_and_rss()[0] - ingest_cpu
                ratio = rate / base
                per_machine = figures.peak_rss_bytes / machines
                print(
                    f"  {machines:>6,} machines, {args.hours:g} h at 1 sample/s ({figures.plan}): "
                    f"{rate:>8,.0f} samples/s stored ({ratio:.2f} × the simulators alone, "
                    f"{base:,.0f}/s), simulator peak RSS {figures.peak_rss_bytes / 2**20:,.0f} MiB "
                    f"({per_machine / 1024:,.0f} KiB per machine), CPU {figures.cpu_seconds:,.0f} s "
                    f"(the ingest's {ingest_cpu:,.0f} s), stored {count:,} of {figures.produced:,} "
                    "samples",
                    flush=True,
                )
                if count != figures.produced or figures.dropped or figures.buffered:
                    print(
                        f"  FAILED: {figures.produced - count:,} samples not stored, "
                        f"{figures.dropped:,} dropped, {figures.buffered:,} left in buffers"
                    )
                    failed = True
        finally:
            if ingest is not None:
                ingest.stop()
            services.down()
    if ratio is not None:
        print(f"ratio={ratio:.2f}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
