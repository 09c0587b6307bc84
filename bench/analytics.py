"""Analytics benchmark: one evaluation cycle of the alert rules for a large fleet.

    python -m bench.analytics                   # 1,000 machines, the shipped rules
    python -m bench.analytics --machines 200

It starts its own InfluxDB, writes the last two hours of telemetry of ``--machines``
machines (a third each CNC mills, pumps and compressors, a sample every 10 s, 4 values),
then times the analytics service's cycles with ``examples/rules.toml`` (thresholds, the
anomaly rule, service intervals, no-data): the first cycle (it evaluates its start
lookback, an hour) and a steady one (the next 10 s of data). Target: a cycle under 10 s
for 1,000 machines.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from analytics.service import AnalyticsOptions, AnalyticsService, AnalyticsSettings
from runhours.services import LocalServices, free_port
from store import InfluxClient

KINDS = ("cnc", "pump", "comp")


def telemetry(machines: int, start_ms: int, end_ms: int) -> list[bytes]:
    lines = []
    for m in range(machines):
        name = f"{KINDS[m % 3]}-{m:04d}"
        tags = f"telemetry,line=line-{m % 20},machine={name},site=bench"
        for i, ts in enumerate(range(start_ms, end_ms, 10_000)):
            vibration = 1.5 + (i % 50) / 100 + (m % 7) / 10
            lines.append(
                f"{tags} vibration_mm_s={vibration!r},bearing_temp_c={50 + i % 9}.0,"
                f"motor_current_a={11 + i % 3}.5,run_seconds_total={3600.0 + i * 10},"
                f'state="running" {ts}'
            )
    return ["\n".join(lines[i : i + 20_000]).encode() for i in range(0, len(lines), 20_000)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.analytics", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--machines", type=int, default=1000)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="runhours-bench-") as tmp_name:
        tmp = Path(tmp_name)
        services = LocalServices(tmp / "services", mqtt_port=free_port(), influx_port=free_port())
        services.influxdb.start(timeout=60)
        try:
            now = datetime.now(UTC).replace(microsecond=0)
            now_ms = int(now.timestamp() * 1000)
            with InfluxClient(services.influx_url, "bench", timeout=120) as client:
                client.ensure_database()
                t0 = time.perf_counter()
                for body in telemetry(args.machines, now_ms - 2 * 3_600_000, now_ms):
                    client.write_lines(body)
                print(f"  wrote 2 h of telemetry for {args.machines} machines in "
                      f"{time.perf_counter() - t0:.1f} s", flush=True)  # fmt: skip
            settings = AnalyticsSettings(
                influx_url=services.influx_url,
                influx_db="bench",
                data_dir=tmp / "var",
                analytics=AnalyticsOptions(mqtt=False, influx=False, rollups=False),
            )
            service = AnalyticsService(settings)
            try:
                first = service.cycle(now + timedelta(seconds=10))
                with InfluxClient(services.influx_url, "bench") as client:
                    for body in telemetry(args.machines, now_ms, now_ms + 70_000):
                        client.write_lines(body)
                steady = service.cycle(now + timedelta(seconds=80))
            finally:
                service.close()
        finally:
            services.influxdb.stop()
    print(
        f"  first cycle (an hour of history): {first.seconds:.2f} s, "
        f"{len(first.transitions)} transitions"
    )
    print(f"  steady cycle: {steady.seconds:.2f} s (target < 10 s for 1,000 machines)")
    return 0 if steady.seconds < 10 else 1


if __name__ == "__main__":
    sys.exit(main())
