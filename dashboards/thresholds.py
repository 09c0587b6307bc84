"""Alert thresholds the dashboards and reports draw: the one place these numbers live.

They mirror the default condition rules the alerts engineer ships in
``examples/rules.toml`` (a test keeps the two in step):

- Vibration velocity, ISO 10816-3, group 2 machines (15–300 kW) on rigid
  foundations, mm/s RMS: zone A/B at 1.4 (new machine condition), B/C at 2.8
  (unrestricted long-term operation ends), C/D at 4.5 (damage likely).
- Bearing temperature, °C: warning at 90, critical at 100 (common practice for
  rolling-element bearings with mineral grease).
"""

from __future__ import annotations

from typing import NamedTuple


class Level(NamedTuple):
    """A boundary: from ``value`` upwards the signal is in zone ``label``."""

    value: float
    label: str
    color: str


VIBRATION_MM_S: tuple[Level, ...] = (
    Level(1.4, "ISO 10816-3 zone B", "#EAB839"),
    Level(2.8, "ISO 10816-3 zone C", "orange"),
    Level(4.5, "ISO 10816-3 zone D", "red"),
)

BEARING_TEMP_C: tuple[Level, ...] = (
    Level(90.0, "warning", "orange"),
    Level(100.0, "critical", "red"),
)

# OEE (a fraction): 85 % is the "world class" mark of Nakajima's TPM literature; about
# 60 % is typical of discrete manufacturing. Colours, not alerts.
OEE: tuple[Level, ...] = (
    Level(0.6, "typical", "yellow"),
    Level(0.85, "world class", "green"),
)

# Value name (as the machines send it) -> its alert levels, lowest first.
THRESHOLDS: dict[str, tuple[Level, ...]] = {
    "vibration_mm_s": VIBRATION_MM_S,
    "bearing_temp_c": BEARING_TEMP_C,
}
