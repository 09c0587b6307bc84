"""The few contract facts the usage dashboard needs, as plain values.

Dashboards may not import the billing code, so they do not read the contracts file: the
CLI reads it with the billing engine's one reader (``load_contracts``) and hands each
contract in as a ``ContractView``. Effective dates, terms, tiers and rounding are the
billing export's business: the dashboard shows metered hours, the statement is the
authority.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

# Billing period → Grafana's relative range for "this period so far".
PERIODS = {"month": "now/M", "quarter": "now/fQ", "week": "now/w"}


@dataclass(frozen=True)
class ContractView:
    id: str
    machines: tuple[str, ...]  # as written: site/machine or a bare id
    billable_states: tuple[str, ...] = ("running",)
    minimum_hours: Decimal | None = None
    timezone: str = "UTC"
    period: str = "month"  # month | quarter | week: what minimum_hours is per
    method: str = "state"  # state: time in billable states; counter: the hour meter
