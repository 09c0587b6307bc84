"""Contract terms: when a contract is in force, its minimum and proration, one contract per
machine at a time, exact decimals and currencies from a maintained source."""

from __future__ import annotations

import tomllib
from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from analytics.billing import ContractsError, build_statements, load_contracts, parse_contracts
from analytics.billing.pricing import currency_places
from runhours.cli import app
from runhours.commands.dashboards import contract_views
from store import InfluxClient
from tests.support.billing import OCTOBER, amounts, bill, contract, machine
from tests.support.telemetry import HOUR, berlin, steady


def test_no_machine_under_contract_means_no_true_up(influx: InfluxClient) -> None:
    # Issue case: the contract's only machine left on 30 June. Before, October billed the
    # whole minimum as a true-up (100.0 h = 4250.00) with nothing under contract.
    s = bill(influx, contract(machine("cnc-01", "to = 2026-06-30"), minimum_hours='"100"'))
    assert amounts(s) == []
    assert s.total == Decimal("0.00")
    assert "no machine under contract in the period: no minimum applies" in s.notes


def test_a_contract_outside_its_term_has_no_statement(influx: InfluxClient) -> None:
    text = contract(machine("cnc-01"), minimum_hours='"100"', to="2026-10-01")
    contracts = parse_contracts(tomllib.loads(text))
    assert build_statements(influx, contracts, "2026-10") == []
    # In September it is in force all month: the whole minimum applies.
    assert amounts(bill(influx, text, "2026-09")) == [
        ("usage", "cnc-01", "0.0", "42.50", "0.00"),
        ("true_up", "", "100.0", "42.50", "4250.00"),
    ]


def test_a_partial_period_follows_the_proration_option(influx: InfluxClient) -> None:
    # The term starts on 15 October: 17 of 31 days. cnc-01 runs 10 h on the 20th.
    influx.write(steady("cnc-01", "running", berlin(2026, 10, 20, 6), berlin(2026, 10, 20, 16)))
    terms = {"minimum_hours": '"100"', "from": "2026-10-15"}  # the contract's term
    none = bill(influx, contract(machine("cnc-01"), **terms))
    assert amounts(none) == [
        ("usage", "cnc-01", "10.0", "42.50", "425.00"),
        ("true_up", "", "90.0", "42.50", "3825.00"),  # the whole minimum: 100 - 10
    ]
    daily = bill(influx, contract(machine("cnc-01"), proration='"daily"', **terms))
    # 100 h × 17/31 = 54.8387… h → 54.8 h (0.1 h, half_up); true-up 44.8 h × 42.50.
    assert amounts(daily) == [
        ("usage", "cnc-01", "10.0", "42.50", "425.00"),
        ("true_up", "", "44.8", "42.50", "1904.00"),
    ]
    assert "minimum prorated daily: 100 h × 17/31 days = 54.8 h" in daily.notes
    # The machine's window is cut to the term: coverage is over 17 days (409 h with the
    # DST hour), 10 h known → 2.44 %.
    assert daily.lines[0].coverage == Decimal("2.44")


def test_daily_proration_counts_the_days_any_machine_is_under_contract(
    influx: InfluxClient,
) -> None:
    # cnc-01 leaves on 11 October (10 days), nothing else: 100 h × 10/31 = 32.3 h.
    influx.write(steady("cnc-01", "running", OCTOBER.start, OCTOBER.start + 5 * HOUR))
    text = contract(
        machine("cnc-01", "to = 2026-10-11"), minimum_hours='"100"', proration='"daily"'
    )
    s = bill(influx, text)
    assert amounts(s) == [
        ("usage", "cnc-01", "5.0", "42.50", "212.50"),
        ("true_up", "", "27.3", "42.50", "1160.25"),  # 32.3 - 5.0
    ]


TWO = """
[[contract]]
id = "PBH-001"
customer = "Acme"
currency = "EUR"
timezone = "Europe/Berlin"
rate_per_hour = "42.50"
[[contract.machine]]
id = "cnc-01"
{first}
[[contract]]
id = "PBH-009"
customer = "Other"
currency = "EUR"
timezone = "Europe/Berlin"
rate_per_hour = "40.00"
[[contract.machine]]
id = "{second}"
{second_terms}
"""


def test_a_machine_in_two_contracts_at_once_is_refused(tmp_path: Path) -> None:
    # Issue case: before, `billing check` accepted this and each contract billed the
    # machine's hours (10.0 h = 425.00 and 10.0 h = 425.00 for the same 10 h).
    path = tmp_path / "contracts.toml"
    path.write_text(TWO.format(first="", second="cnc-01", second_terms="from = 2026-10-15"))
    result = CliRunner().invoke(app, ["billing", "check", "--contracts", str(path)])
    assert result.exit_code == 2
    message = " ".join(result.output.split())
    assert (
        "contract.1.machine.0 (contract 'PBH-009'): 'cnc-01' is also under contract "
        "'PBH-001' (contract.0.machine.0, 'cnc-01') from 2026-10-15T00:00:00+02:00 to no end"
    ) in message
    exported = CliRunner().invoke(
        app, ["billing", "export", "--period", "2026-10", "--contracts", str(path)]
    )
    assert exported.exit_code == 2
    assert "is also under contract 'PBH-001'" in " ".join(exported.output.split())
    # A bare id and a site/machine name with the same id may be one machine: refused too.
    path.write_text(TWO.format(first="", second="plant1/cnc-01", second_terms=""))
    with pytest.raises(ContractsError, match="from the beginning to no end"):
        load_contracts(path)
    # Consecutive terms are fine; so is the same id at another site, named with its site.
    path.write_text(
        TWO.format(first="to = 2026-10-15", second="cnc-01", second_terms="from = 2026-10-15")
    )
    assert len(load_contracts(path)) == 2
    path.write_text(
        TWO.format(first="", second="plant2/cnc-01", second_terms="").replace(
            'id = "cnc-01"', 'id = "plant1/cnc-01"'
        )
    )
    assert len(load_contracts(path)) == 2


def test_unquoted_numbers_are_read_as_exact_decimals(tmp_path: Path) -> None:
    # Issue case: before, 0.1234567890123456789 passed through a float and became
    # 0.12345678901234568.
    path = tmp_path / "contracts.toml"
    path.write_text(
        contract(machine("cnc-01"), rate_per_hour="0.1234567890123456789", minimum_hours="100.5")
    )
    (c,) = load_contracts(path)
    assert c.rate_per_hour == Decimal("0.1234567890123456789")
    assert c.minimum_hours == Decimal("100.5")
    (view,) = contract_views(path)  # the dashboards see the billing reader's numbers
    assert view.minimum_hours == Decimal("100.5")
    # Data that already went through a float is refused, naming the field.
    with pytest.raises(ContractsError) as info:
        parse_contracts(tomllib.loads(path.read_text()), "contracts.toml")
    assert (
        "contract.0.rate_per_hour (contract 'PBH-001'): 0.12345678901234568 arrived as a "
        "binary float"
    ) in str(info.value)


def test_currency_minor_units_come_from_cldr() -> None:
    assert [currency_places(c) for c in ("EUR", "JPY", "KWD", "CHF", "CLF")] == [2, 0, 3, 2, 4]
    with pytest.raises(ContractsError, match="'EUX' is not an ISO 4217 currency code"):
        parse_contracts(tomllib.loads(contract(machine("cnc-01"), currency='"EUX"')))


def test_a_yen_contract_bills_whole_yen(influx: InfluxClient) -> None:
    influx.write(steady("cnc-01", "running", OCTOBER.start, OCTOBER.start + 3 * HOUR))
    s = bill(influx, contract(machine("cnc-01"), currency='"JPY"', rate_per_hour='"4250.5"'))
    assert amounts(s) == [("usage", "cnc-01", "3.0", "4250.5", "12752")]  # 12751.5 → 12752
