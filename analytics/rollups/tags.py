"""The tags of a machine's rollup points, and the points left under a line it moved from."""

from __future__ import annotations

from collections.abc import Sequence

from analytics.machines import MachineKey, key_clause
from store import InfluxClient, quote_ident, quote_string
from store.schema import TAG_LINE, TAG_MACHINE, TAG_SITE, TELEMETRY, USAGE_HOURLY


def machine_tags(
    client: InfluxClient, keys: Sequence[MachineKey]
) -> dict[MachineKey, dict[str, str]]:
    """The tags of each machine's rollups: its site and id, and the line its telemetry
    carries (the first in sort order if several)."""
    statements = [
        f"SHOW TAG VALUES FROM {quote_ident(TELEMETRY)} WITH KEY = {quote_ident(TAG_LINE)} "
        f"WHERE {key_clause(key)}"
        for key in keys
    ]
    out: dict[MachineKey, dict[str, str]] = {}
    for chunk in range(0, len(keys), 200):
        group = keys[chunk : chunk + 200]
        results = client.query("; ".join(statements[chunk : chunk + 200]))
        for key, result in zip(group, results, strict=True):
            lines = sorted(row[1] for series in result for row in series.values)
            tags = {TAG_SITE: key.site, TAG_MACHINE: key.machine}
            if lines:
                tags[TAG_LINE] = lines[0]
            out[key] = tags
    return out


def retagged_machines(
    client: InfluxClient, tags: dict[MachineKey, dict[str, str]]
) -> set[MachineKey]:
    """Machines whose ``usage_hourly`` also holds series under another line.

    A machine that moved to a line that sorts first gets its rollups written under new
    tags; the old points of the hours recomputed then must go, or a reader would count
    those hours twice.
    """
    keys = sorted(tags)
    out = set()
    for chunk in range(0, len(keys), 200):
        group = keys[chunk : chunk + 200]
        statements = [
            f"SHOW TAG VALUES FROM {quote_ident(USAGE_HOURLY)} WITH KEY = {quote_ident(TAG_LINE)} "
            f"WHERE {key_clause(key)}"
            for key in group
        ]
        for key, result in zip(group, client.query("; ".join(statements)), strict=True):
            if any(row[1] != tags[key].get(TAG_LINE) for s in result for row in s.values):
                out.add(key)
    return out


def delete_other_tags(
    client: InfluxClient, key: MachineKey, tags: dict[str, str], lo: int, hi: int
) -> None:
    """Delete the machine's rollup points in ``[lo, hi)`` that carry another line."""
    line = tags.get(TAG_LINE, "")
    client.query(
        f"DELETE FROM {quote_ident(USAGE_HOURLY)} WHERE {key_clause(key)} "
        f"AND {quote_ident(TAG_LINE)} != {quote_string(line)} "
        f"AND time >= {lo}ms AND time < {hi}ms",
        epoch=None,
    )
