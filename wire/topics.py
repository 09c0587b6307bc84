"""MQTT topic names of the v1 contract, built and parsed in one place."""

from __future__ import annotations

import re
from typing import NamedTuple

from wire.errors import WireError

ROOT = "runhours/v1"
ALERTS_ROOT = f"{ROOT}/{{site}}/alerts"
DEADLETTER_ROOT = f"{ROOT}/deadletter"
INGEST_STATE_ROOT = f"{ROOT}/ingest"
# Every ingest worker's retained online/offline state (``IngestState``); edge agents hold
# telemetry while none is online, as Sparkplug edge nodes do for their primary host.
INGEST_STATE_SUBSCRIPTION = f"{INGEST_STATE_ROOT}/+/state"

ID_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,64}")


class MachineRef(NamedTuple):
    """Where a machine sits: the tag set of every point it produces."""

    site: str
    line: str
    machine: str


def validate_id(value: str, what: str = "id") -> str:
    """Return ``value`` if it is a valid site/line/machine id, else raise."""
    if not isinstance(value, str) or not ID_PATTERN.fullmatch(value):
        raise WireError(f"{what}: {value!r} is not a valid id (allowed: [A-Za-z0-9_.-]{{1,64}})")
    return value


def _machine_topic(ref: MachineRef, leaf: str) -> str:
    for what, value in zip(("site", "line", "machine"), ref, strict=True):
        validate_id(value, what)
    return f"{ROOT}/{ref.site}/{ref.line}/{ref.machine}/{leaf}"


def telemetry_topic(site: str, line: str, machine: str) -> str:
    return _machine_topic(MachineRef(site, line, machine), "telemetry")


def status_topic(site: str, line: str, machine: str) -> str:
    return _machine_topic(MachineRef(site, line, machine), "status")


def alert_topic(site: str, rule: str, machine: str) -> str:
    """Retained topic of one active alert: ``runhours/v1/{site}/alerts/{rule}/{machine}``."""
    validate_id(site, "site")
    validate_id(rule, "rule")
    validate_id(machine, "machine")
    return f"{ROOT}/{site}/alerts/{rule}/{machine}"


def telemetry_subscription(share_group: str | None = None, site: str = "+") -> str:
    """Subscription filter for all telemetry (of one site, or of every site with ``+``),
    optionally as an MQTT 5 shared subscription."""
    if site != "+":
        validate_id(site, "site")
    flt = f"{ROOT}/{site}/+/+/telemetry"
    if share_group:
        validate_id(share_group, "share group")
        return f"$share/{share_group}/{flt}"
    return flt


def status_subscription(site: str = "+") -> str:
    """Subscription filter for the retained status of every machine (of one site)."""
    if site != "+":
        validate_id(site, "site")
    return f"{ROOT}/{site}/+/+/status"


def ingest_state_topic(worker: str) -> str:
    """Retained state of one ingest worker: ``runhours/v1/ingest/{worker}/state``."""
    validate_id(worker, "worker")
    return f"{INGEST_STATE_ROOT}/{worker}/state"


def parse_ingest_state_topic(topic: str) -> str:
    """The worker id of ``runhours/v1/ingest/{worker}/state``."""
    parts = topic.split("/")
    if len(parts) != 5 or "/".join(parts[:3]) != INGEST_STATE_ROOT or parts[4] != "state":
        raise WireError(f"topic: {topic!r} is not {INGEST_STATE_ROOT}/{{worker}}/state")
    return validate_id(parts[3], "topic.worker")


def deadletter_topic(original_topic: str) -> str:
    """Dead-letter topic for a message that arrived on ``original_topic``.

    The original topic's path is kept under the dead-letter root so an operator can
    subscribe per site or machine; wildcards cannot occur in a received topic.
    """
    suffix = original_topic.removeprefix(f"{ROOT}/").strip("/") or "unknown"
    return f"{DEADLETTER_ROOT}/{suffix}"


def parse_topic(topic: str, leaf: str = "telemetry") -> MachineRef:
    """Parse ``runhours/v1/{site}/{line}/{machine}/{leaf}`` into its ids."""
    parts = topic.split("/")
    if len(parts) != 6 or "/".join(parts[:2]) != ROOT or parts[5] != leaf:
        raise WireError(f"topic: {topic!r} is not {ROOT}/{{site}}/{{line}}/{{machine}}/{leaf}")
    ref = MachineRef(parts[2], parts[3], parts[4])
    for what, value in zip(("site", "line", "machine"), ref, strict=True):
        validate_id(value, f"topic.{what}")
    return ref
