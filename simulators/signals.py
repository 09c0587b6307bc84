"""Sensor signals of the three machine kinds, computed vectorised for many readings at once.

Every kind follows the same physics skeleton:

- a *load* per running period (drawn when the period starts) plus fast fluctuation;
  currents follow load (and, for the pump, the hydraulic power of its duty point);
- *lagged* channels (temperatures, the compressor's receiver pressure) follow a per-period
  target through a first-order lag, ``x(t) = g + (x0 - g)·exp(-(t - t0)/tau)``, solved
  exactly, so irregular sample spacing needs no integration step;
- vibration velocity (mm/s RMS) scales with how hard the machine turns; healthy values stay
  inside ISO 10816-3 zones A/B (below ~2 mm/s), a worn bearing adds up to ``VIB_FAILURE``;
- worn-bearing severity also heats the bearing and adds a little friction current;
- off, fault and maintenance: drives stopped, near-zero current and vibration, temperatures
  relax to ambient.

State codes are indexes into ``wire.STATES``: off 0, idle 1, running 2, fault 3,
maintenance 4.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from simulators.spec import MachineKind
from simulators.states import StateTiming

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

OFF, IDLE, RUNNING, FAULT, MAINTENANCE = range(5)

VIB_FAILURE = 8.0  # mm/s RMS added by a bearing at the point of failure (ISO zone D)
BEARING_HEAT_FAILURE = 28.0  # K added to a running bearing at the point of failure


@dataclass(frozen=True)
class Lag:
    """A first-order lagged channel: time constant and steady target per state."""

    name: str
    tau_s: float
    # (state code, period load) -> steady value; temperatures as rise over ambient
    target: Callable[[int, float], float]
    over_ambient: bool = True
    # Only running can raise it (an unloaded compressor cannot build receiver pressure).
    rises_only_running: bool = False


@dataclass
class Inputs:
    """What the signal functions see for a block of readings (one row per reading)."""

    t_ms: IntArray
    state: npt.NDArray[np.int8]
    load: FloatArray  # the period's load (0..1), 0 when not running
    aux: FloatArray  # the period's kind-specific set point (rpm, flow demand)
    lag: dict[str, FloatArray]  # lagged channels, ambient already added
    lag_rise: dict[str, FloatArray]  # lagged temperature rise over ambient
    severity: FloatArray  # bearing wear 0..1 (0 = healthy)
    ambient: FloatArray
    rng: np.random.Generator

    def noise(self, sigma: float) -> FloatArray:
        return self.rng.normal(0.0, sigma, self.t_ms.size)

    def where(self, codes: tuple[int, ...]) -> npt.NDArray[np.bool_]:
        return np.isin(self.state, codes)


@dataclass(frozen=True)
class KindModel:
    """One machine kind: its value names (unit suffixes), rhythm, lags and signal maths."""

    kind: MachineKind
    names: tuple[str, ...]
    decimals: tuple[int, ...]
    timing: StateTiming
    lags: tuple[Lag, ...]
    # how hard the rotor turns per state code (vibration and wear visibility)
    rotation: tuple[float, float, float, float, float]
    running_load: tuple[float, float]
    aux: Callable[[np.random.Generator, int], float]
    compute: Callable[[Inputs, KindModel], list[FloatArray]]

    def rotation_of(self, state: npt.NDArray[np.int8]) -> FloatArray:
        return np.asarray(self.rotation, dtype=np.float64)[state]


def _fluctuating_load(x: Inputs) -> FloatArray:
    running = x.state == RUNNING
    return np.where(running, np.clip(x.load + x.noise(0.035), 0.05, 1.0), 0.0)


def _vibration(x: Inputs, model: KindModel, base: float, duty: FloatArray) -> FloatArray:
    rotation = model.rotation_of(x.state)
    healthy = base * rotation * duty * np.exp(x.noise(0.07))
    wear = VIB_FAILURE * x.severity * rotation * np.exp(x.noise(0.08))
    floor = 0.02 + np.abs(x.noise(0.008))  # sensor noise floor of a stopped machine
    return np.asarray(np.maximum(healthy + wear, floor), dtype=np.float64)


def _bearing(x: Inputs, running_rise: float) -> FloatArray:
    # Wear heat follows the bearing's own (lagged) warmth: a cold, stopped bearing adds none.
    warmth = np.clip(x.lag_rise["bearing_temp_c"] / running_rise, 0.0, 1.2)
    heat = BEARING_HEAT_FAILURE * x.severity * warmth
    return x.lag["bearing_temp_c"] + heat + x.noise(0.12)


def _stopped_current(x: Inputs) -> FloatArray:
    return np.abs(x.noise(0.03))  # current-clamp offset when the drive is off


# --- CNC mill -------------------------------------------------------------------------------


def _cnc_rpm(rng: np.random.Generator, state: int) -> float:
    return float(rng.integers(12, 37) * 500) if state == RUNNING else 0.0


def _cnc(x: Inputs, model: KindModel) -> list[FloatArray]:
    load = _fluctuating_load(x)
    running = x.state == RUNNING
    friction = 1.0 + 0.06 * x.severity
    current = np.where(
        running,
        (2.4 + 17.0 * load) * friction * (1.0 + x.noise(0.012)),
        np.where(x.state == IDLE, 1.1 + x.noise(0.03), _stopped_current(x)),
    )
    speed = np.where(running, x.aux * (1.0 + x.noise(0.002)), 0.0)
    duty = 0.55 + 0.45 * load + 0.25 * (x.aux / 18000.0)
    vibration = _vibration(x, model, 1.05, duty)
    return [current, speed, vibration, _bearing(x, 26.0)]


# --- centrifugal pump -----------------------------------------------------------------------

PUMP_RATED_FLOW = 100.0  # m3/h at the best-efficiency point


def _pump_demand(rng: np.random.Generator, state: int) -> float:
    return float(rng.uniform(0.55, 1.15)) if state == RUNNING else 0.0


def _pump(x: Inputs, model: KindModel) -> list[FloatArray]:
    running = x.state == RUNNING
    idle = x.state == IDLE
    turning = running | idle
    # Idle = minimum-flow recirculation with the motor still on.
    share = np.where(running, np.clip(x.aux * (1.0 + x.noise(0.015)), 0.3, 1.3), 0.08)
    flow = np.where(turning, PUMP_RATED_FLOW * share, 0.0)
    # Pump curve H(Q): shut-off head 6.2 bar, ~4.0 bar at rated flow.
    pressure = np.where(
        turning,
        6.2 - 2.2 * share**2 + x.noise(0.02),
        np.where(x.state == MAINTENANCE, 0.0, 0.3) + np.abs(x.noise(0.01)),
    )
    shaft_kw = 4.0 + flow * np.maximum(pressure, 0.0) / 36.0 / 0.72
    friction = 1.0 + 0.06 * x.severity
    current = np.where(
        turning, (2.0 + 1.7 * shaft_kw) * friction * (1.0 + x.noise(0.01)), _stopped_current(x)
    )
    # Running away from the best-efficiency point raises hydraulic vibration.
    duty = 0.75 + 0.5 * np.abs(share - 1.0)
    vibration = _vibration(x, model, 1.15, duty)
    return [flow, pressure, current, vibration, _bearing(x, 21.0)]


# --- screw air compressor -------------------------------------------------------------------


def _compressor(x: Inputs, model: KindModel) -> list[FloatArray]:
    running = x.state == RUNNING
    load = _fluctuating_load(x)
    friction = 1.0 + 0.06 * x.severity
    current = np.where(
        running,
        (48.0 + 8.0 * load) * friction * (1.0 + x.noise(0.01)),
        np.where(x.state == IDLE, 19.0 * friction * (1.0 + x.noise(0.02)), _stopped_current(x)),
    )
    pressure = np.maximum(x.lag["discharge_pressure_bar"] + x.noise(0.015), 0.0)
    oil = x.lag["oil_temp_c"] + x.noise(0.15)
    duty = np.where(running, 0.8 + 0.3 * load, 1.0)
    vibration = _vibration(x, model, 1.25, duty)
    return [pressure, current, oil, vibration, _bearing(x, 30.0)]


def _by_state(
    off: float, idle: float, running: Callable[[float], float]
) -> Callable[[int, float], float]:
    def target(state: int, load: float) -> float:
        if state == RUNNING:
            return running(load)
        return idle if state == IDLE else off

    return target


MODELS: dict[MachineKind, KindModel] = {
    "cnc_mill": KindModel(
        kind="cnc_mill",
        names=("spindle_current_a", "spindle_speed_rpm", "vibration_mm_s", "bearing_temp_c"),
        decimals=(2, 0, 3, 2),
        timing=StateTiming(
            running_min=22.0,
            idle_min=7.0,
            faults_per_running_hour=0.06,
            repair_min=25.0,
            maintenance_per_shift_window=0.12,
            maintenance_min=(45.0, 150.0),
        ),
        lags=(Lag("bearing_temp_c", 1500.0, _by_state(0.0, 3.0, lambda load: 14.0 + 12.0 * load)),),
        rotation=(0.0, 0.12, 1.0, 0.0, 0.0),
        running_load=(0.35, 0.9),
        aux=_cnc_rpm,
        compute=_cnc,
    ),
    "pump": KindModel(
        kind="pump",
        names=(
            "flow_m3_h",
            "discharge_pressure_bar",
            "motor_current_a",
            "vibration_mm_s",
            "bearing_temp_c",
        ),
        decimals=(2, 3, 2, 3, 2),
        timing=StateTiming(
            running_min=140.0,
            idle_min=25.0,
            faults_per_running_hour=0.012,
            repair_min=60.0,
            maintenance_per_shift_window=0.08,
            maintenance_min=(60.0, 180.0),
        ),
        lags=(Lag("bearing_temp_c", 1800.0, _by_state(0.0, 15.0, lambda load: 21.0)),),
        rotation=(0.0, 0.8, 1.0, 0.0, 0.0),
        running_load=(0.55, 1.0),
        aux=_pump_demand,
        compute=_pump,
    ),
    "compressor": KindModel(
        kind="compressor",
        names=(
            "discharge_pressure_bar",
            "motor_current_a",
            "oil_temp_c",
            "vibration_mm_s",
            "bearing_temp_c",
        ),
        decimals=(3, 2, 2, 3, 2),
        timing=StateTiming(
            running_min=18.0,
            idle_min=6.0,
            faults_per_running_hour=0.02,
            repair_min=40.0,
            maintenance_per_shift_window=0.1,
            maintenance_min=(60.0, 120.0),
        ),
        lags=(
            # Receiver pressure: loaded climbs toward 7.6 bar, unloaded the plant draws it
            # down toward 6.6 bar, stopped it bleeds off through leaks.
            Lag(
                "discharge_pressure_bar",
                300.0,
                _by_state(0.0, 6.6, lambda load: 7.6),
                over_ambient=False,
                rises_only_running=True,
            ),
            Lag("oil_temp_c", 900.0, _by_state(0.0, 48.0, lambda load: 54.0 + 6.0 * load)),
            Lag("bearing_temp_c", 1500.0, _by_state(0.0, 22.0, lambda load: 27.0 + 6.0 * load)),
        ),
        rotation=(0.0, 0.7, 1.0, 0.0, 0.0),
        running_load=(0.6, 1.0),
        aux=lambda rng, state: 0.0,
        compute=_compressor,
    ),
}
