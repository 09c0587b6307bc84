"""Simulated factory machines: CNC mills, centrifugal pumps and screw air compressors.

Each machine runs a shift calendar with random stops and planned maintenance, produces
physically plausible sensor readings and an hour meter, can wear out a bearing until it
fails (with one of several wear profiles), and records its ground truth (true seconds per
state per hour, onset, profile and failure).

>>> from datetime import UTC, datetime, timedelta
>>> from pathlib import Path
>>> from simulators import MachineSim, fleet, write_ground_truth
>>> start = datetime(2026, 3, 2, tzinfo=UTC)
>>> sims = [MachineSim(spec, start) for spec in fleet(12, start=start)]
>>> readings = [sim.advance(start + timedelta(days=1)) for sim in sims]
>>> write_ground_truth(Path("truth.json"), [sim.truth for sim in sims])
"""

from simulators.calendar import ShiftCalendar
from simulators.clock import SimClock
from simulators.machine import MachineSim, Reading
from simulators.spec import MACHINE_KINDS, Degradation, MachineKind, MachineSpec, fleet
from simulators.truth import GroundTruth, read_ground_truth, write_ground_truth
from simulators.wear import WEAR_PROFILES, WearProfile

__all__ = [
    "MACHINE_KINDS",
    "WEAR_PROFILES",
    "Degradation",
    "GroundTruth",
    "MachineKind",
    "MachineSim",
    "MachineSpec",
    "Reading",
    "ShiftCalendar",
    "SimClock",
    "WearProfile",
    "fleet",
    "read_ground_truth",
    "write_ground_truth",
]
