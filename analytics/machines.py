"""Naming machines: a machine is its site and its id (``plant1/cnc-01``).

Machine ids are unique within a site, not across sites, so usage, rollups and billing
key everything by :class:`MachineKey`. People may write a bare id (``cnc-01``) where it
is unambiguous: :func:`resolve_machines` finds its site in the telemetry, and refuses
an id that exists at two sites, naming both, rather than merge two machines.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple, TypeVar

from common.errors import RunhoursError
from store import InfluxClient, quote_ident, quote_string
from store.schema import TAG_MACHINE, TAG_SITE, TELEMETRY
from wire import validate_id
from wire.errors import WireError


class MachineError(RunhoursError, ValueError):
    """A machine name is malformed, or a bare id names machines at several sites."""


class MachineKey(NamedTuple):
    """One machine: its site and its id. ``site`` is empty for a bare id that has no
    telemetry at any site yet (nothing to read, nothing to merge)."""

    site: str
    machine: str

    def __str__(self) -> str:
        return f"{self.site}/{self.machine}" if self.site else self.machine


MachineRef = str | MachineKey  # "site/machine", a bare "machine", or a key
Ref = TypeVar("Ref", bound=MachineRef)  # results are keyed by the names as given


def parse_machine(text: str) -> tuple[str | None, str]:
    """``"plant1/cnc-01"`` → ``("plant1", "cnc-01")``; ``"cnc-01"`` → ``(None, "cnc-01")``."""
    parts = text.split("/")
    if len(parts) > 2:
        raise MachineError(f"{text!r}: write a machine as site/machine or as a bare id")
    try:
        machine = validate_id(parts[-1], "machine")
        site = validate_id(parts[0], "site") if len(parts) == 2 else None
    except WireError as exc:
        raise MachineError(str(exc).split(": ", 1)[-1]) from None
    return site, machine


def same_machine_possible(a: str, b: str) -> bool:
    """Whether two names may denote one machine: the same id, and the same site or a bare id."""
    (site_a, id_a), (site_b, id_b) = parse_machine(a), parse_machine(b)
    return id_a == id_b and (site_a is None or site_b is None or site_a == site_b)


def key_clause(ref: MachineRef) -> str:
    """The InfluxQL condition selecting one machine's points.

    A key selects its site and id. A bare id (a plain ``str`` without a site) selects that
    id at every site: only the alert rules, which name machines by id, still use that.
    """
    if isinstance(ref, MachineKey):
        site: str | None = ref.site
        machine = ref.machine
    else:
        site, machine = parse_machine(ref)
    clause = f"{quote_ident(TAG_MACHINE)} = {quote_string(machine)}"
    if site is not None:
        clause = f"{quote_ident(TAG_SITE)} = {quote_string(site)} AND {clause}"
    return clause


def keys_clause(keys: Sequence[MachineKey]) -> str:
    """``(site = … AND machine = …) OR …`` for several keys."""
    return "(" + " OR ".join(f"({key_clause(k)})" for k in keys) + ")"


def telemetry_keys(client: InfluxClient) -> list[MachineKey]:
    """Every (site, machine) that has telemetry, sorted."""
    sites = [
        row[1]
        for s in client.query_series(
            f"SHOW TAG VALUES FROM {quote_ident(TELEMETRY)} WITH KEY = {quote_ident(TAG_SITE)}"
        )
        for row in s.values
    ]
    if not sites:
        return []
    statements = [
        f"SHOW TAG VALUES FROM {quote_ident(TELEMETRY)} WITH KEY = {quote_ident(TAG_MACHINE)} "
        f"WHERE {quote_ident(TAG_SITE)} = {quote_string(site)}"
        for site in sites
    ]
    keys: set[MachineKey] = set()
    for site, result in zip(sites, client.query("; ".join(statements)), strict=True):
        keys.update(MachineKey(site, row[1]) for s in result for row in s.values)
    return sorted(keys)


def sites_of(client: InfluxClient, machines: Sequence[str]) -> dict[str, list[str]]:
    """The sites whose telemetry has each machine id (sorted; empty when none)."""
    out: dict[str, list[str]] = {}
    for chunk in range(0, len(machines), 200):
        group = list(machines[chunk : chunk + 200])
        statements = [
            f"SHOW TAG VALUES FROM {quote_ident(TELEMETRY)} WITH KEY = {quote_ident(TAG_SITE)} "
            f"WHERE {quote_ident(TAG_MACHINE)} = {quote_string(m)}"
            for m in group
        ]
        for machine, result in zip(group, client.query("; ".join(statements)), strict=True):
            out[machine] = sorted({row[1] for s in result for row in s.values})
    return out


def resolve_machines(client: InfluxClient, refs: Iterable[Ref]) -> dict[Ref, MachineKey]:
    """Each name as a key: ``site/machine`` as written, a bare id at the one site that has it.

    A bare id without telemetry anywhere gets an empty site (it has no data yet); one
    that exists at two or more sites raises :class:`MachineError` naming them.
    """
    out: dict[Ref, MachineKey] = {}
    bare: dict[str, list[Ref]] = {}
    for ref in refs:
        if isinstance(ref, MachineKey):
            out[ref] = ref
            continue
        site, machine = parse_machine(ref)
        if site is not None:
            out[ref] = MachineKey(site, machine)
        else:
            bare.setdefault(machine, []).append(ref)
    found = sites_of(client, sorted(bare)) if bare else {}
    for machine, names in bare.items():
        sites = found.get(machine, [])
        if len(sites) > 1:
            raise MachineError(ambiguous(machine, sites))
        for name in names:
            out[name] = MachineKey(sites[0] if sites else "", machine)
    return out


def ambiguous(machine: str, sites: Sequence[str]) -> str:
    choices = " or ".join(f"{site}/{machine}" for site in sites)
    return (
        f"machine {machine!r} exists at {len(sites)} sites ({', '.join(sites)}): name one of "
        f"them as {choices} (machines at different sites are never merged)"
    )
