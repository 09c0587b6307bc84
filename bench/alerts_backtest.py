"""Backtest benchmark: simulated fleets replayed through a rules file in process.

    python -m bench.alerts_backtest                          # seeds 101-120, examples/rules.toml
    python -m bench.alerts_backtest --seeds 1-5 --rules my-rules.toml

Per seed it times the three parts of ``runhours.backtest.simulated_run`` (simulating the
fleet, building the step observations, evaluating the rules) and prints them with the
seed's lead time and false alarms, then the totals and the scoreboard's last row.
"""

from __future__ import annotations

import argparse
import time
from datetime import timedelta
from pathlib import Path

from analytics.alerts import DEFAULT_RULES, load_rules
from analytics.alerts.backtest import ANY, Run, score
from analytics.alerts.samples import window_from_samples
from runhours.backtest import SimulatedFleet, machine_samples, replayed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="101-120", help="e.g. 101-120")
    parser.add_argument("--rules", type=Path, default=DEFAULT_RULES)
    args = parser.parse_args(argv)
    lo, _, hi = args.seeds.partition("-")
    seeds = range(int(lo), int(hi or lo) + 1)
    rules = load_rules(args.rules).conditions_only()
    setup = SimulatedFleet()
    end = setup.end
    runs: list[Run] = []
    totals = [0.0, 0.0, 0.0]
    print("seed  simulate  window  evaluate  lead      false alarms")
    for seed in seeds:
        t0 = time.perf_counter()
        sims = setup.machines_of(seed)
        samples = {ref: list(it) for ref, it in machine_samples(sims, end).items()}
        t1 = time.perf_counter()
        window = window_from_samples(rules, setup.start, end, samples)
        t2 = time.perf_counter()
        run = replayed(seed, rules, window, sims)
        t3 = time.perf_counter()
        runs.append(run)
        parts = (t1 - t0, t2 - t1, t3 - t2)
        totals = [a + b for a, b in zip(totals, parts, strict=True)]
        board = score([run], rules).rule(ANY)
        lead = board.min_lead / timedelta(hours=1) if board.min_lead is not None else float("nan")
        print(
            f"{seed:4}  {parts[0]:7.2f}s {parts[1]:6.2f}s {parts[2]:7.2f}s  "
            f"{lead:6.1f} h  {len(board.false_alarms)}"
        )
    total = score(runs, rules).rule(ANY)
    n = len(runs)
    print(
        f"total {sum(totals):.1f} s for {n} seeds ({sum(totals) / n:.2f} s a seed: simulate "
        f"{totals[0] / n:.2f}, window {totals[1] / n:.2f}, evaluate {totals[2] / n:.2f})"
    )
    median = total.median_lead / timedelta(hours=1) if total.median_lead else float("nan")
    least = total.min_lead / timedelta(hours=1) if total.min_lead else float("nan")
    print(
        f"(any rule): median lead {median:.1f} h, min {least:.1f} h, missed {total.missed}, "
        f"false alarms {len(total.false_alarms)} ({total.false_alarm_rate or 0:.2f} per 100 "
        "machine-days)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
