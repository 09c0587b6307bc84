"""The machine signals the dashboards chart, with titles and Grafana units.

Value names are the ones the simulators and real machines send (unit as suffix, see
the wire contract); a value not listed here still lands in InfluxDB, it just has no
panel of its own yet.
"""

from __future__ import annotations

from typing import NamedTuple


class Signal(NamedTuple):
    name: str
    title: str
    unit: str  # a Grafana unit id, or "suffix:<text>" where Grafana has none


SIGNALS: tuple[Signal, ...] = (
    Signal("vibration_mm_s", "Vibration velocity (RMS)", "suffix: mm/s"),
    Signal("bearing_temp_c", "Bearing temperature", "celsius"),
    Signal("spindle_current_a", "Spindle current", "amp"),
    Signal("spindle_speed_rpm", "Spindle speed", "rotrpm"),
    Signal("motor_current_a", "Motor current", "amp"),
    Signal("flow_m3_h", "Flow", "suffix: m³/h"),
    Signal("discharge_pressure_bar", "Discharge pressure", "pressurebar"),
    Signal("oil_temp_c", "Oil temperature", "celsius"),
)

# Colours of the machine states (wire contract v1), shared by every state panel.
STATE_COLORS: dict[str, str] = {
    "running": "green",
    "idle": "#EAB839",
    "off": "#808080",
    "fault": "red",
    "maintenance": "blue",
}
