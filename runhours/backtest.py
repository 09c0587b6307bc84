"""Backtests on simulated fleets, in process: simulator → step observations → rules → score.

The simulator is deterministic and fast, so a rules file can be scored on many seeds in
seconds: each seed's fleet is simulated, turned into the observations InfluxDB would
compute (``analytics.alerts.samples.window_from_samples``), replayed through the same
``evaluate`` the live service runs, and scored against the simulator's ground truth
(``analytics.alerts.backtest.score``). The real pipeline gives the same alerts
(``tests/analytics/alerts/test_alerts_backtest.py`` runs one seed through it).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from analytics.alerts.backtest import Failure, Run, machine_days, replay_window
from analytics.alerts.rules import RuleSet
from analytics.alerts.samples import window_from_samples
from analytics.alerts.window import DataWindow
from simulators import (
    WEAR_PROFILES,
    GroundTruth,
    MachineSim,
    WearProfile,
    fleet,
    read_ground_truth,
)
from wire import MachineRef, Sample

BACKTEST_START = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday


@dataclass(frozen=True)
class SimulatedFleet:
    """What to simulate per seed: the fleet of ``simulators.fleet`` with every wear profile."""

    start: datetime = BACKTEST_START
    days: float = 7.0
    machines: int = 12
    degrading: int = 1
    profiles: tuple[WearProfile, ...] = WEAR_PROFILES
    sample_interval_s: float = 60.0

    @property
    def end(self) -> datetime:
        return self.start + timedelta(days=self.days)

    def machines_of(self, seed: int) -> list[MachineSim]:
        """One seed's simulated machines, at ``start``."""
        specs = fleet(
            self.machines,
            seed=seed,
            start=self.start,
            degrading=self.degrading,
            profiles=self.profiles,
        )
        return [
            MachineSim(spec, self.start, sample_interval_s=self.sample_interval_s) for spec in specs
        ]


def failures_from_truth(truths: Iterable[GroundTruth]) -> list[Failure]:
    """The failures a ground truth records (machines whose bearing failed in the span)."""
    return [
        Failure(
            t.machine, t.failure_at, t.degradation_onset, t.repaired_at, t.degradation_profile or ""
        )
        for t in truths
        if t.failure_at is not None
    ]


def read_failures_truth(path: Path) -> list[Failure]:
    """The failures recorded in a ground-truth file (``runhours simulate`` writes one)."""
    return failures_from_truth(read_ground_truth(path))


def machine_samples(
    sims: Iterable[MachineSim], end: datetime
) -> dict[MachineRef, Iterator[Sample]]:
    """Each machine's samples up to ``end``, as generators: one machine's samples at a time
    in memory (a small heap is a fast heap)."""
    return {
        MachineRef(sim.spec.site, sim.spec.line, sim.spec.machine): (
            reading.sample for reading in sim.advance(end)
        )
        for sim in sims
    }


def replayed(seed: int, conditions: RuleSet, window: DataWindow, sims: Iterable[MachineSim]) -> Run:
    """The seed's run: ``conditions`` replayed over ``window``, with the machines' failures."""
    failures = failures_from_truth(sim.truth for sim in sims)
    return Run(f"seed {seed}", replay_window(conditions, window), failures, machine_days(window))


def simulated_run(rules: RuleSet, seed: int, setup: SimulatedFleet = SimulatedFleet()) -> Run:
    """Simulate one seed's fleet and replay ``rules`` over it (in process)."""
    conditions = rules.conditions_only()
    sims = setup.machines_of(seed)
    window = window_from_samples(
        conditions, setup.start, setup.end, machine_samples(sims, setup.end)
    )
    return replayed(seed, conditions, window, sims)


def simulated_runs(
    rules: RuleSet, seeds: Sequence[int], setup: SimulatedFleet = SimulatedFleet()
) -> list[Run]:
    """``simulated_run`` for every seed."""
    return [simulated_run(rules, seed, setup) for seed in seeds]
