"""Maintenance records: the work done on a machine, kept in InfluxDB.

A ``service`` record resets the service-interval counter of that machine (the
run-hours are counted from the latest record of the rule's ``maintenance_kind``).
Records live in InfluxDB (measurement ``maintenance``) beside the telemetry, so a
replay over history sees them exactly as the live service did.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from common.errors import RunhoursError
from store import InfluxClient, Point, quote_ident, quote_string, time_literal
from store.schema import (
    FIELD_BY,
    FIELD_NOTE,
    MAINTENANCE,
    TAG_KIND,
    TAG_LINE,
    TAG_MACHINE,
    TAG_SITE,
    TELEMETRY,
)
from wire import MachineRef, from_epoch_ms, to_epoch_ms, validate_id

KIND = re.compile(r"[a-z][a-z0-9_]{0,63}")
CLOCK_SKEW = timedelta(minutes=5)  # how far ahead of this host's clock a record may lie


class MaintenanceError(RunhoursError, ValueError):
    """A maintenance record cannot be made (unknown machine, bad kind, naive time)."""


@dataclass(frozen=True)
class MaintenanceRecord:
    """One piece of work done on a machine at ``at``."""

    ref: MachineRef
    kind: str
    at: datetime
    note: str = ""
    by: str = ""

    def to_json(self) -> dict[str, str]:
        return {
            "site": self.ref.site,
            "line": self.ref.line,
            "machine": self.ref.machine,
            "kind": self.kind,
            "at": self.at.isoformat().replace("+00:00", "Z"),
            "note": self.note,
            "by": self.by,
        }


def machine_ref(client: InfluxClient, machine: str) -> MachineRef | None:
    """Where ``machine`` sits (its site and line), from its latest telemetry series."""
    series = client.query_series(
        f"SELECT last({quote_ident('state')}) FROM {quote_ident(TELEMETRY)} "
        f"WHERE {quote_ident(TAG_MACHINE)} = {quote_string(machine)} "
        f"GROUP BY {quote_ident(TAG_SITE)}, {quote_ident(TAG_LINE)}"
    )
    if not series:
        return None
    latest = max(series, key=lambda s: s.values[0][0] if s.values else 0)
    return MachineRef(latest.tags.get(TAG_SITE, ""), latest.tags.get(TAG_LINE, ""), machine)


def record_maintenance(
    client: InfluxClient,
    machine: str,
    kind: str = "service",
    at: datetime | None = None,
    note: str = "",
    by: str = "",
    ref: MachineRef | None = None,
) -> MaintenanceRecord:
    """Write a maintenance record (``at`` defaults to now) and return it."""
    validate_id(machine, "machine")
    if not KIND.fullmatch(kind):
        raise MaintenanceError(f"kind: {kind!r} must match [a-z][a-z0-9_]{{0,63}} (e.g. service)")
    now = datetime.now(UTC)
    when = at or now
    if when.tzinfo is None:
        raise MaintenanceError(f"at: {when.isoformat()} has no time zone; add one, e.g. Z")
    if when > now + CLOCK_SKEW:
        # A record resets service counters from its time on: one in the future (a typo
        # in the year) would silently reset them later, or not fit in InfluxDB at all.
        shown = when.astimezone(UTC).isoformat().replace("+00:00", "Z")
        raise MaintenanceError(
            f"at: {shown} is in the future; record work that was done (omit it for now)"
        )
    if ref is None:
        ref = machine_ref(client, machine)
    if ref is None:
        raise MaintenanceError(
            f"machine: no telemetry for {machine!r} in database {client.database!r}; "
            "check the machine id (`runhours usage` lists known machines)"
        )
    record = MaintenanceRecord(ref, kind, from_epoch_ms(to_epoch_ms(when)), note, by)
    tags = {TAG_SITE: ref.site, TAG_LINE: ref.line, TAG_MACHINE: ref.machine, TAG_KIND: kind}
    client.write(
        [Point(MAINTENANCE, tags, {FIELD_NOTE: note, FIELD_BY: by}, to_epoch_ms(record.at))]
    )
    return record


def maintenance_records(
    client: InfluxClient, before: datetime, machines: set[str] | None = None
) -> list[MaintenanceRecord]:
    """Every maintenance record before ``before`` (optionally for some machines), by time."""
    series = client.query_series(
        f"SELECT {quote_ident(FIELD_NOTE)}, {quote_ident(FIELD_BY)} FROM {quote_ident(MAINTENANCE)} "
        f"WHERE time < {time_literal(before)} "
        f"GROUP BY {quote_ident(TAG_SITE)}, {quote_ident(TAG_LINE)}, {quote_ident(TAG_MACHINE)}, "
        f"{quote_ident(TAG_KIND)}"
    )
    out = []
    for s in series:
        machine = s.tags.get(TAG_MACHINE, "")
        if machines is not None and machine not in machines:
            continue
        ref = MachineRef(s.tags.get(TAG_SITE, ""), s.tags.get(TAG_LINE, ""), machine)
        for ts, note, by in s.values:
            out.append(
                MaintenanceRecord(
                    ref, s.tags.get(TAG_KIND, ""), from_epoch_ms(int(ts)), note or "", by or ""
                )
            )
    return sorted(out, key=lambda r: (r.at, r.ref.machine, r.kind))
