"""The contracts file: the shipped example validates; every kind of mistake names its field."""

from __future__ import annotations

import tomllib
from decimal import Decimal
from pathlib import Path

import pytest

from analytics.billing import ContractsError, load_contracts, parse_contracts
from tests.support.paths import REPO
from tests.support.telemetry import BERLIN, berlin

EXAMPLE = REPO / "examples" / "contracts.toml"

GOOD = """
[[contract]]
id = "PBH-001"
customer = "Acme Metal Works"
currency = "EUR"
timezone = "Europe/Berlin"
billable_states = ["running"]
rate_per_hour = "42.50"
minimum_hours = "100"
rounding_hours = "0.1"
[[contract.machine]]
id = "cnc-01"
from = 2026-10-01
"""


def error_for(text: str) -> str:
    with pytest.raises(ContractsError) as info:
        parse_contracts(tomllib.loads(text), "contracts.toml")
    return str(info.value)


def test_the_issue_example_parses() -> None:
    (c,) = parse_contracts(tomllib.loads(GOOD))
    assert (c.id, c.rate_per_hour, c.minimum_hours) == ("PBH-001", Decimal("42.50"), Decimal(100))
    assert c.rounding_mode == "half_up" and c.period == "month" and c.method == "state"
    assert c.machine[0].bound("from", BERLIN) == berlin(2026, 10, 1)


def test_the_shipped_example_is_valid() -> None:
    contracts = load_contracts(EXAMPLE)
    assert len(contracts) == 2
    assert {m.id for c in contracts for m in c.machine} >= {"cnc-01", "pump-01", "comp-01"}


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (('rate_per_hour = "42.50"', 'rate_per_hour = "forty"'),
         "contract.0.rate_per_hour (contract 'PBH-001'): Input should be a valid decimal"),
        (('rate_per_hour = "42.50"', 'rate_per_hour = "-1"'),
         "contract.0.rate_per_hour (contract 'PBH-001'): Input should be greater than or equal to 0"),
        (('timezone = "Europe/Berlin"', 'timezone = "Europe/Berlinn"'),
         "contract.0.timezone (contract 'PBH-001'): unknown time zone 'Europe/Berlinn'"),
        (('currency = "EUR"', 'currency = "euro"'),
         "contract.0.currency (contract 'PBH-001'): String should match pattern"),
        (('rounding_hours = "0.1"', 'rounding_hour = "0.1"'),
         "contract.0.rounding_hour (contract 'PBH-001'): unknown field"),
        (('billable_states = ["running"]', 'billable_states = ["runing"]'),
         "contract.0.billable_states.0 (contract 'PBH-001'): Input should be 'off', 'idle'"),
        (('id = "cnc-01"', 'id = "cnc 01"'),
         "contract.0.machine.0.id (contract 'PBH-001'): 'cnc 01' is not a valid id"),
        (('from = 2026-10-01', 'from = 2026-10-01\nto = 2026-09-01'),
         "contract.0.machine.0 (contract 'PBH-001'): 'to' (2026-09-01) must be after 'from'"),
        (('customer = "Acme Metal Works"', ''),
         "contract.0.customer (contract 'PBH-001'): required field is missing"),
        (('rate_per_hour = "42.50"', ''),
         "contract.0 (contract 'PBH-001'): give either rate_per_hour or [[contract.tier]]"),
    ],
)  # fmt: skip
def test_a_bad_field_is_named(change: tuple[str, str], expected: str) -> None:
    message = error_for(GOOD.replace(*change))
    assert message.startswith("contracts.toml: invalid contracts file (nothing was exported)")
    assert expected in message


def test_tier_and_machine_rules_name_the_entry() -> None:
    tiers = GOOD.replace('rate_per_hour = "42.50"\n', "") + (
        '[[contract.tier]]\nup_to_hours = "100"\nrate_per_hour = "40"\n'
        '[[contract.tier]]\nup_to_hours = "50"\nrate_per_hour = "35"\n'
        '[[contract.tier]]\nrate_per_hour = "30"\n'
    )
    assert "tier.1.up_to_hours: must be above the previous tier's 100" in error_for(tiers)
    twice = GOOD + '[[contract.machine]]\nid = "cnc-01"\nto = 2026-10-15\nfrom = 2026-10-10\n'
    assert "machine.1: 'cnc-01' overlaps machine.0" in error_for(twice)
    duplicate = GOOD + GOOD
    assert "contract.1.id: 'PBH-001' is used twice" in error_for(duplicate)
    overuse = GOOD.replace('minimum_hours = "100"', 'allowance_hours = "100"')
    assert "allowance_hours and overuse_multiplier go together" in error_for(overuse)


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ContractsError, match="no such file"):
        load_contracts(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[[contract]\n")
    with pytest.raises(ContractsError, match=r"bad.toml: not valid TOML"):
        load_contracts(bad)


def test_effective_bounds_in_different_forms_are_ordered_as_instants() -> None:
    # 10:00 local in Berlin is 08:00Z: a 'to' of 07:30Z lies before it.
    mixed = GOOD.replace(
        "from = 2026-10-01", "from = 2026-10-05T10:00:00\nto = 2026-10-05T07:30:00Z"
    )
    assert (
        "contract.0 (contract 'PBH-001'): machine.0: 'to' (2026-10-05 07:30:00+00:00) must be "
        "after 'from' (2026-10-05 10:00:00)" in error_for(mixed)
    )
