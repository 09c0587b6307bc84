"""Following each machine's ``seq``: gaps, late arrivals, redeliveries and restarts.

An edge agent numbers its telemetry messages ``seq`` = 0, 1, 2, … and resends an
unacknowledged message under the same ``seq`` (and ``offset``), so, seen from the ingest:

- ``seq`` one above the highest so far is the normal case;
- a jump opens a **gap**: messages the broker acknowledged to the edge and never delivered
  here (a queue limit, a crash). With offsets (``offset[s + 1] = offset[s] + samples[s]``)
  the gap's samples are known exactly;
- a ``seq`` inside an open gap is a **late** arrival (reordered, resent): it recovers part
  of the gap;
- anything else at or below the highest is a **duplicate** (a redelivery, stored as the
  same points again);
- ``seq`` 0 with offset 0 far below the highest (more than ``REORDER_LIMIT``, beyond any
  in-flight window) is a **restart** of the agent's numbering (a new buffer file): the
  machine is followed afresh.

A status message's ``delivered_seq``/``delivered_offset`` (everything below was
acknowledged to the edge) reveals a lost tail that no later message would show.

Pure and single-threaded: the writer thread feeds messages in arrival order, after their
points were written and before they are acknowledged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from wire import MachineRef

Kind = Literal["first", "next", "gap", "late", "duplicate", "restart"]

# How far a resent message can trail the newest one: the edge's in-flight window is at most
# 1000 messages (edge.max_in_flight), so seq 0 arriving later than that is a new numbering.
REORDER_LIMIT = 1000
MISSING_TEXT_MAX = 32_000  # characters of ``Hole.missing_text``


@dataclass(frozen=True)
class Gap:
    """Messages ``first_seq``…``last_seq`` of one machine that never arrived (so far)."""

    ref: MachineRef
    first_seq: int
    last_seq: int
    samples: int | None  # exact when both neighbours carried offsets
    key_ns: int  # when it was detected: the identity (timestamp) of its ``ingest_gaps`` point

    @property
    def messages(self) -> int:
        return self.last_seq - self.first_seq + 1


@dataclass
class Hole:
    """An open gap and what of it arrived late."""

    gap: Gap
    missing: list[tuple[int, int]]  # seq ranges still missing, inclusive
    recovered_messages: int = 0
    recovered_samples: int = 0

    def take(self, seq: int) -> bool:
        """Remove ``seq`` from the missing ranges; False when it is not missing."""
        for index, (first, last) in enumerate(self.missing):
            if first <= seq <= last:
                rest = [(a, b) for a, b in ((first, seq - 1), (seq + 1, last)) if a <= b]
                self.missing[index : index + 1] = rest
                return True
        return False

    @property
    def missing_text(self) -> str:
        """The missing ranges as stored (``ingest_gaps.missing``): ``"5-7,9-12"``. Past
        ``MISSING_TEXT_MAX`` characters (InfluxDB refuses strings over 64 KiB), their span:
        more than is missing, so after a restart a message of it that already arrived and
        is redelivered counts as recovered again (as before ranges were stored)."""
        text = ",".join(f"{first}-{last}" for first, last in self.missing)
        if len(text) > MISSING_TEXT_MAX:
            return f"{self.missing[0][0]}-{self.missing[-1][1]}"
        return text


def parse_missing(text: str) -> list[tuple[int, int]]:
    """The ranges of ``Hole.missing_text``; ValueError when the text is not that."""
    ranges = []
    for part in filter(None, text.split(",")):
        first, _, last = part.partition("-")
        ranges.append((int(first), int(last)))
    return ranges


@dataclass(frozen=True)
class Outcome:
    """What one message (or status) meant for its machine's sequence."""

    kind: Kind
    gap: Gap | None = None  # the gap it opened ("gap")
    hole: Hole | None = None  # the gap it filled part of ("late")


@dataclass
class _Machine:
    high: int  # highest seq seen
    end_offset: int | None  # offset after message ``high``, when known
    holes: list[Hole] = field(default_factory=list)


class SequenceTracker:
    """Per machine: the highest ``seq``, its end offset, and the open gaps."""

    def __init__(self, clock_ns: Callable[[], int]) -> None:
        self._clock_ns = clock_ns
        self._last_key = 0
        self._machines: dict[MachineRef, _Machine] = {}

    def __len__(self) -> int:
        return len(self._machines)

    def high(self, ref: MachineRef) -> tuple[int, int | None] | None:
        """``(highest seq, offset after it)`` of a machine, or None before its first."""
        m = self._machines.get(ref)
        return None if m is None else (m.high, m.end_offset)

    def restore(self, ref: MachineRef, high: int, end_offset: int | None) -> None:
        """Resume following a machine from persisted state (after a restart)."""
        self._machines[ref] = _Machine(high, end_offset)

    def restore_hole(self, hole: Hole) -> None:
        """Re-open a gap persisted before a restart (its late arrivals still count)."""
        m = self._machines.get(hole.gap.ref)
        if m is not None and hole.gap.last_seq <= m.high:
            m.holes.append(hole)

    def message(self, ref: MachineRef, seq: int, offset: int | None, samples: int) -> Outcome:
        """A telemetry message arrived."""
        end = None if offset is None else offset + samples
        m = self._machines.get(ref)
        if m is None:
            self._machines[ref] = _Machine(seq, end)
            return Outcome("first")
        if seq == m.high + 1:
            m.high, m.end_offset = seq, end
            return Outcome("next")
        if seq > m.high + 1:
            gap = self._open(ref, m, seq - 1, offset)
            m.high, m.end_offset = seq, end
            return Outcome("gap", gap=gap)
        for hole in m.holes:
            if hole.take(seq):
                hole.recovered_messages += 1
                hole.recovered_samples += samples
                if not hole.missing:
                    m.holes.remove(hole)
                return Outcome("late", hole=hole)
        if seq == 0 and offset in (0, None) and m.high > REORDER_LIMIT:
            self._machines[ref] = _Machine(seq, end)
            return Outcome("restart")
        return Outcome("duplicate")

    def restart(self, ref: MachineRef, seq: int, offset: int | None, samples: int) -> Outcome:
        """The sender says its numbering starts afresh at ``seq`` (a Sparkplug birth)."""
        end = None if offset is None else offset + samples
        self._machines[ref] = _Machine(seq, end)
        return Outcome("restart")

    def delivered(self, ref: MachineRef, seq: int, offset: int | None) -> Outcome | None:
        """A status said every message below ``seq`` was acknowledged to the edge: any of
        them not seen yet is a gap (a lost tail). None when nothing follows from it."""
        m = self._machines.get(ref)
        if m is None or seq - 1 <= m.high:
            return None
        gap = self._open(ref, m, seq - 1, offset)
        m.high, m.end_offset = seq - 1, offset
        return Outcome("gap", gap=gap)

    def _open(self, ref: MachineRef, m: _Machine, last: int, offset: int | None) -> Gap:
        samples = None
        if offset is not None and m.end_offset is not None and offset >= m.end_offset:
            samples = offset - m.end_offset
        key = max(self._clock_ns(), self._last_key + 1)  # distinct points, even in one ns
        self._last_key = key
        gap = Gap(ref, m.high + 1, last, samples, key)
        m.holes.append(Hole(gap, [(gap.first_seq, gap.last_seq)]))
        return gap
