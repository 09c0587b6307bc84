"""Ground truth: what each simulated machine really did, per UTC hour, and its JSON file.

Billing and alert tests compare their results with this. The file format is documented in
``simulators/README.md``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from wire import STATES, State

FORMAT = "runhours-ground-truth"
VERSION = 1


@dataclass(frozen=True)
class GroundTruth:
    """The true history of one machine over the simulated span ``[start, end)``.

    ``hours`` maps each UTC hour start to the true seconds spent in every state in that
    hour, counting only time outside sensor blackouts; ``unobserved`` holds the blackout
    seconds per hour (hours without blackout are absent). So for a fully simulated hour
    ``sum(hours[h].values()) + unobserved.get(h, 0) == 3600``.
    """

    machine: str
    kind: str
    hours: dict[datetime, dict[State, float]]
    unobserved: dict[datetime, float]
    degradation_onset: datetime | None
    failure_at: datetime | None
    samples: int
    site: str = ""
    line: str = ""
    start: datetime | None = None
    end: datetime | None = None
    # The hour meter (``run_seconds_total``) at ``start``; it adds true running seconds.
    run_seconds_start: float = 0.0
    repaired_at: datetime | None = field(default=None)
    # The wear profile (``simulators/wear.py``) once the onset is reached, and when its
    # slow phase turned into the run-away (None for ``accelerating``, which has no turn).
    degradation_profile: str | None = None
    runaway_at: datetime | None = None
    # Per UTC hour: seconds inside the machine's staffed windows, less breaks (hours
    # without any are absent). A machine runs only then.
    scheduled: dict[datetime, float] = field(default_factory=dict)
    # A machine that makes parts: its ideal cycle, its counters (total, good) at ``start``,
    # and the parts (total, good) completed per UTC hour (hours without any are absent).
    ideal_cycle_s: float | None = None
    parts_start: tuple[int, int] | None = None
    parts: dict[datetime, tuple[int, int]] = field(default_factory=dict)

    def seconds(self, state: State) -> float:
        """Total true seconds in ``state`` over the whole span (outside blackouts)."""
        return sum(hour[state] for hour in self.hours.values())

    @property
    def makes_parts(self) -> bool:
        return self.parts_start is not None


def _iso(ts: datetime | None) -> str | None:
    if ts is None:
        return None
    return ts.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _parse(text: str | None) -> datetime | None:
    if text is None:
        return None
    return datetime.fromisoformat(text).astimezone(UTC)


def _to_json(truth: GroundTruth) -> dict[str, Any]:
    hours = []
    for hour in sorted(truth.hours):
        row: dict[str, Any] = {"hour": _iso(hour)}
        row.update({state: truth.hours[hour][state] for state in STATES})
        row["unobserved"] = truth.unobserved.get(hour, 0.0)
        row["scheduled"] = truth.scheduled.get(hour, 0.0)
        if truth.makes_parts:
            row["parts_total"], row["parts_good"] = truth.parts.get(hour, (0, 0))
        hours.append(row)
    parts: dict[str, Any] = {}
    if truth.parts_start is not None:
        parts = {
            "ideal_cycle_s": truth.ideal_cycle_s,
            "parts_total_start": truth.parts_start[0],
            "parts_good_start": truth.parts_start[1],
        }
    return {
        "machine": truth.machine,
        "kind": truth.kind,
        "site": truth.site,
        "line": truth.line,
        "start": _iso(truth.start),
        "end": _iso(truth.end),
        "samples": truth.samples,
        "run_seconds_start": truth.run_seconds_start,
        "degradation_onset": _iso(truth.degradation_onset),
        "degradation_profile": truth.degradation_profile,
        "runaway_at": _iso(truth.runaway_at),
        "failure_at": _iso(truth.failure_at),
        "repaired_at": _iso(truth.repaired_at),
        **parts,
        "hours": hours,
    }


def _from_json(data: dict[str, Any]) -> GroundTruth:
    hours: dict[datetime, dict[State, float]] = {}
    unobserved: dict[datetime, float] = {}
    scheduled: dict[datetime, float] = {}
    parts: dict[datetime, tuple[int, int]] = {}
    for row in data["hours"]:
        hour = _parse(row["hour"])
        assert hour is not None
        hours[hour] = {state: float(row[state]) for state in STATES}
        if row.get("unobserved", 0.0):
            unobserved[hour] = float(row["unobserved"])
        if row.get("scheduled", 0.0):
            scheduled[hour] = float(row["scheduled"])
        if row.get("parts_total", 0):
            parts[hour] = (int(row["parts_total"]), int(row["parts_good"]))
    start_counts = None
    if "parts_total_start" in data:
        start_counts = (int(data["parts_total_start"]), int(data["parts_good_start"]))
    return GroundTruth(
        machine=data["machine"],
        kind=data["kind"],
        hours=hours,
        unobserved=unobserved,
        degradation_onset=_parse(data.get("degradation_onset")),
        failure_at=_parse(data.get("failure_at")),
        samples=int(data["samples"]),
        site=data.get("site", ""),
        line=data.get("line", ""),
        start=_parse(data.get("start")),
        end=_parse(data.get("end")),
        run_seconds_start=float(data.get("run_seconds_start", 0.0)),
        repaired_at=_parse(data.get("repaired_at")),
        degradation_profile=data.get("degradation_profile"),
        runaway_at=_parse(data.get("runaway_at")),
        scheduled=scheduled,
        ideal_cycle_s=data.get("ideal_cycle_s"),
        parts_start=start_counts,
        parts=parts,
    )


def write_ground_truth(path: Path, truths: Sequence[GroundTruth]) -> None:
    """Write the fleet's ground truth as JSON (format in ``simulators/README.md``).

    The same truths give byte-identical files.
    """
    body = {
        "format": FORMAT,
        "version": VERSION,
        "machines": [_to_json(truth) for truth in truths],
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(body, indent=1) + "\n", encoding="utf-8")
    tmp.replace(path)


def read_ground_truth(path: Path) -> list[GroundTruth]:
    """Read a file written by ``write_ground_truth``; raise ``ValueError`` if it is not one."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not a ground-truth JSON file: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f'{path}: not a ground-truth file (expected "format": "{FORMAT}")')
    if data.get("version") != VERSION:
        raise ValueError(
            f"{path}: ground-truth version {data.get('version')!r}, expected {VERSION}"
        )
    return [_from_json(item) for item in data["machines"]]
