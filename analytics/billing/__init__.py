"""Power-by-the-hour billing: contracts, pricing, statements, exports and the ledger.

>>> contracts = load_contracts(Path("examples/contracts.toml"))          # doctest: +SKIP
>>> result = export_statements(client, contracts, "2026-10", fmt="csv")  # doctest: +SKIP
>>> Path("billing-2026-10.csv").write_bytes(result.data)                 # doctest: +SKIP

The rules are documented in docs/billing.md.
"""

from analytics.billing.contracts import Contract, ContractsError, load_contracts, parse_contracts
from analytics.billing.export import (
    BillingError,
    ExportResult,
    billing_summary,
    build_statements,
    export_statements,
    meters,
)
from analytics.billing.formats import CSV_COLUMNS, ExportFormat, encode, to_csv, to_json
from analytics.billing.ledger import Ledger, LedgerError, Revision, default_ledger
from analytics.billing.statements import Line, MachineMeter, Statement, price, restate

__all__ = [
    "CSV_COLUMNS",
    "BillingError",
    "Contract",
    "ContractsError",
    "ExportFormat",
    "ExportResult",
    "Ledger",
    "LedgerError",
    "Line",
    "MachineMeter",
    "Revision",
    "Statement",
    "billing_summary",
    "build_statements",
    "default_ledger",
    "encode",
    "export_statements",
    "load_contracts",
    "meters",
    "parse_contracts",
    "price",
    "restate",
    "to_csv",
    "to_json",
]
