"""The ingest's sequence tracker (pure): every lost sample is accounted for, whatever the
arrival order, duplicates and losses, and nothing that arrived is counted as lost."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.sequence import MISSING_TEXT_MAX, Gap, Hole, SequenceTracker, parse_missing
from wire import MachineRef

REF = MachineRef("plant1", "line-a", "cnc-01")


def tracker() -> SequenceTracker:
    clock = itertools.count(1_000)
    return SequenceTracker(lambda: next(clock))


def test_a_jump_opens_a_gap_with_its_exact_samples_and_a_late_message_recovers_it() -> None:
    t = tracker()
    sizes = [5, 7, 3, 4, 6, 2]
    offsets = [sum(sizes[:i]) for i in range(len(sizes))]
    kinds = [t.message(REF, s, offsets[s], sizes[s]).kind for s in (0, 1)]
    jump = t.message(REF, 4, offsets[4], sizes[4])  # 2 and 3 missing: 3 + 4 samples
    assert kinds == ["first", "next"]
    assert jump.kind == "gap" and jump.gap is not None
    assert (jump.gap.first_seq, jump.gap.last_seq, jump.gap.samples) == (2, 3, 7)
    late = t.message(REF, 3, offsets[3], sizes[3])
    assert late.kind == "late" and late.hole is not None
    assert (late.hole.recovered_messages, late.hole.recovered_samples) == (1, 4)
    assert t.message(REF, 3, offsets[3], sizes[3]).kind == "duplicate"  # not recovered twice
    assert t.message(REF, 1, offsets[1], sizes[1]).kind == "duplicate"
    assert t.message(REF, 5, offsets[5], sizes[5]).kind == "next"
    assert t.high(REF) == (5, sum(sizes))


@given(st.sets(st.integers(1, 30)))
def test_a_hole_restored_from_its_stored_ranges_counts_each_late_message_once(
    arrived: set[int],
) -> None:
    """A restarted ingest reopens a gap from ``ingest_gaps.missing``: what arrived before
    the restart and is redelivered after it is a duplicate, the rest still recovers it."""
    t = tracker()
    t.message(REF, 0, None, 1)
    opened = t.message(REF, 31, None, 1).gap  # 1-30 missing
    assert opened is not None
    hole = Hole(opened, [(1, 30)])
    for seq in sorted(arrived):
        late = t.message(REF, seq, None, 1)
        assert late.kind == "late" and late.hole is not None
        hole = late.hole
    stored = hole.missing_text
    assert parse_missing(stored) == hole.missing
    again = tracker()
    again.restore(REF, 31, None)
    again.restore_hole(Hole(opened, parse_missing(stored), len(arrived), len(arrived)))
    for seq in range(1, 31):
        assert again.message(REF, seq, None, 1).kind == ("duplicate" if seq in arrived else "late")


def test_missing_ranges_too_long_to_store_are_stored_as_their_span() -> None:
    t = tracker()
    t.message(REF, 0, None, 1)
    opened = t.message(REF, 8_002, None, 1).gap
    assert opened is not None
    hole = Hole(opened, [(1, 8_001)])
    for seq in range(2, 8_001, 2):  # every other one arrives: 4,001 single ranges left
        assert hole.take(seq)
    assert len(hole.missing) == 4_001
    assert len(",".join(f"{a}-{b}" for a, b in hole.missing)) > MISSING_TEXT_MAX
    assert hole.missing_text == "1-8001"
    del hole.missing[100:]
    assert parse_missing(hole.missing_text) == hole.missing  # short enough: exact


def test_a_status_reveals_a_lost_tail_and_seq_zero_restarts_the_numbering() -> None:
    t = tracker()
    t.message(REF, 0, 0, 10)
    assert t.delivered(REF, 1, 10) is None  # nothing missing
    tail = t.delivered(REF, 4, 31)  # messages 1-3 were acknowledged to the edge, never seen
    assert tail is not None and tail.gap is not None
    assert (tail.gap.first_seq, tail.gap.last_seq, tail.gap.samples) == (1, 3, 21)
    assert t.message(REF, 0, 0, 10).kind == "duplicate"  # a redelivery, not a restart
    t.restore(REF, 5000, 90_000)  # far along (as restored after an ingest restart) …
    assert t.message(REF, 0, 0, 3).kind == "restart"  # … seq 0: a new edge buffer file
    assert t.message(REF, 1, 3, 3).kind == "next"


def test_without_offsets_the_gap_counts_messages_only() -> None:
    t = tracker()
    t.message(REF, 0, None, 10)
    gap = t.message(REF, 3, None, 10).gap
    assert gap is not None and (gap.messages, gap.samples) == (2, None)


@settings(max_examples=400, deadline=None)
def draw_arrivals(n: int, data: st.DataObject) -> list[int]:
    """Messages 0…n-1, each lost, delivered once or twice, in an order shuffled within a
    small window (resends, redeliveries)."""
    fate = data.draw(st.lists(st.sampled_from(["lost", "once", "twice"]), min_size=n, max_size=n))
    arrivals = [s for s in range(n) for _ in range({"lost": 0, "once": 1, "twice": 2}[fate[s]])]
    keys = [i + data.draw(st.floats(0, 4)) for i in range(len(arrivals))]
    return [s for _, s in sorted(zip(keys, arrivals, strict=True))]


@given(
    sizes=st.lists(st.integers(1, 50), min_size=1, max_size=60),
    data=st.data(),
)
def test_lost_samples_equal_reported_minus_recovered_for_any_arrival_pattern(
    sizes: list[int], data: st.DataObject
) -> None:
    """Messages 0…n-1 are each lost, delivered once or delivered twice, in an order shuffled
    within a small window (resends, redeliveries); a final status says all were delivered
    to the broker. Reported − recovered must equal exactly what never arrived."""
    n = len(sizes)
    offsets = [sum(sizes[:i]) for i in range(n)]
    arrivals = draw_arrivals(n, data)
    t = tracker()
    holes: dict[int, object] = {}
    reported_messages = reported_samples = 0
    for s in arrivals:
        outcome = t.message(REF, s, offsets[s], sizes[s])
        if outcome.gap is not None:
            reported_messages += outcome.gap.messages
            reported_samples += outcome.gap.samples or 0
        if outcome.hole is not None:
            holes[id(outcome.hole)] = outcome.hole
    if arrivals:
        tail = t.delivered(REF, n, offsets[-1] + sizes[-1])
        if tail is not None and tail.gap is not None:
            reported_messages += tail.gap.messages
            reported_samples += tail.gap.samples or 0
    recovered_messages = sum(h.recovered_messages for h in holes.values())  # type: ignore[attr-defined]
    recovered_samples = sum(h.recovered_samples for h in holes.values())  # type: ignore[attr-defined]
    seen = set(arrivals)
    first = arrivals[0] if arrivals else n
    # Messages before the first arrival are unknowable (it is the baseline); after it, every
    # lost one must be reported, and none that arrived.
    lost = [s for s in range(first, n) if s not in seen]
    assert reported_messages - recovered_messages == len(lost)
    assert reported_samples - recovered_samples == sum(sizes[s] for s in lost)


@given(
    sizes=st.lists(st.integers(1, 50), min_size=1, max_size=60),
    data=st.data(),
)
def test_a_restart_anywhere_keeps_lost_equal_to_reported_minus_recovered(
    sizes: list[int], data: st.DataObject
) -> None:
    """As above, with the ingest restarted at any moment: the new tracker resumes from what
    the old one stored (``ingest_sequence``, and per gap the last point written: its
    missing ranges and recovered counts), and the last few messages before the restart,
    stored but not acknowledged, are delivered again."""
    n = len(sizes)
    offsets = [sum(sizes[:i]) for i in range(n)]
    arrivals = draw_arrivals(n, data)
    crash = data.draw(st.integers(0, len(arrivals)))
    again = data.draw(st.integers(0, min(crash, 5)))
    # The gaps as stored: the gap, its missing ranges, recovered messages and samples.
    stored: dict[int, tuple[Gap, str, int, int]] = {}

    def feed(t: SequenceTracker, s: int) -> None:
        outcome = t.message(REF, s, offsets[s], sizes[s])
        if outcome.gap is not None:
            gap = outcome.gap
            stored[gap.key_ns] = (gap, f"{gap.first_seq}-{gap.last_seq}", 0, 0)
        if outcome.hole is not None:
            h = outcome.hole
            stored[h.gap.key_ns] = (
                h.gap,
                h.missing_text,
                h.recovered_messages,
                h.recovered_samples,
            )

    before = tracker()
    for s in arrivals[:crash]:
        feed(before, s)
    after = SequenceTracker(itertools.count(10**9).__next__)  # later keys than before's
    if (high := before.high(REF)) is not None:
        after.restore(REF, *high)
    for gap, missing, messages, samples in stored.values():
        if messages < gap.messages:
            after.restore_hole(Hole(gap, parse_missing(missing), messages, samples))
    for s in arrivals[crash - again : crash] + arrivals[crash:]:
        feed(after, s)
    if arrivals:
        tail = after.delivered(REF, n, offsets[-1] + sizes[-1])
        if tail is not None and tail.gap is not None:
            stored[tail.gap.key_ns] = (tail.gap, "", 0, 0)
    seen = set(arrivals)
    first = arrivals[0] if arrivals else n
    lost = [s for s in range(first, n) if s not in seen]
    gaps = stored.values()
    assert sum(g.messages - m for g, _, m, _ in gaps) == len(lost)
    assert sum((g.samples or 0) - s for g, _, _, s in gaps) == sum(sizes[s] for s in lost)
