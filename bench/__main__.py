"""``python -m bench`` (``make bench``): every benchmark, one after the other.

Each prints its figures against a baseline measured in the same run; see
docs/performance.md for what they measure and the figures on the reference machine.
``--quick`` runs each at a small size (a minute or two in all): to check that they work,
not to measure.
"""

from __future__ import annotations

import argparse
import sys

from bench import alerts_backtest, analytics, billing, edge, fleet, ingest

# name, module, arguments for the measured run, arguments for --quick
RUNS = (
    ("ingest", ingest, ["--points", "500000"], ["--points", "20000"]),
    ("edge", edge, ["--backlog", "1000000"], ["--backlog", "20000", "--live", "5000"]),
    ("analytics", analytics, ["--machines", "1000"], ["--machines", "20"]),
    ("billing", billing, ["--machines", "20"], ["--machines", "4"]),
    ("alerts_backtest", alerts_backtest, ["--seeds", "101-120"], ["--seeds", "101"]),
    (
        "fleet",
        fleet,
        ["--machines", "1000", "10000", "--hours", "1"],
        ["--machines", "100", "--hours", "0.05"],
    ),
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: do they all run?")
    args = parser.parse_args(argv)
    failed = 0
    for name, module, measured, quick in RUNS:
        print(f"== bench.{name}", flush=True)
        failed += module.main(quick if args.quick else measured) != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
