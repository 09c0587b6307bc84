"""Edge agent builders: deterministic readings and agent options that retry fast."""

from __future__ import annotations

from edge import (
    AgentOptions,
    EdgeReading,
)
from wire import (
    Sample,
    from_epoch_ms,
)

T0 = 1_772_400_000_000  # 2026-03-01T21:20:00Z, epoch ms


def make_readings(start: int, n: int, step_ms: int = 1000) -> list[EdgeReading]:
    """Deterministic readings: index i at T0 + i*step, values and hour meter derived from i."""
    out = []
    for i in range(start, start + n):
        sample = Sample(
            ts=from_epoch_ms(T0 + i * step_ms),
            state=("running", "idle", "fault")[i % 3],
            values={"vibration_mm_s": round(1 + i * 0.01, 3), "bearing_temp_c": 40.0 + i % 7},
        )
        out.append(EdgeReading(sample, {"run_seconds_total": 3600.0 + i}))
    return out


def fast_options(**overrides: float) -> AgentOptions:
    base: dict[str, float] = {
        "publish_interval": 0.2,
        "reconnect_min": 0.1,
        "reconnect_max": 0.5,
        "publish_timeout": 5.0,
        "stop_timeout": 5.0,
    }
    base.update(overrides)
    return AgentOptions(**base)  # type: ignore[arg-type]
