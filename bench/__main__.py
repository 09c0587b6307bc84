"""``python -m bench`` (``make bench``): every benchmark, one after the other.

Each prints its figures against a baseline measured in the same run; see
docs/performance.md for what they measure and the figures on the reference machine.
"""

from __future__ import annotations

import sys

from bench import analytics, billing, edge, fleet, ingest


def main() -> int:
    failed = 0
    for name, module, argv in (
        ("ingest", ingest, ["--points", "500000"]),
        ("edge", edge, ["--backlog", "1000000"]),
        ("analytics", analytics, ["--machines", "1000"]),
        ("billing", billing, ["--machines", "20"]),
        ("fleet", fleet, ["--machines", "1000", "10000", "--hours", "1"]),
    ):
        print(f"== bench.{name}", flush=True)
        failed += module.main(argv) != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
