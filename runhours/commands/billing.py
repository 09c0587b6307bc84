"""`runhours billing`: export priced statements (CSV/JSON), finalize them, inspect the ledger."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from analytics.billing import Ledger, LedgerError, default_ledger, load_contracts
from analytics.billing.formats import dec
from analytics.periods import calendar_period, custom_period, parse_instant, zone
from analytics.rollups import rebuild_rollups
from common.settings import RunhoursSettings
from runhours.commands._billing import export_period
from runhours.commands._common import ConfigOption, console, fail, load
from runhours.commands._explain import show_explanation
from runhours.commands._tables import Col, fit_table
from store import InfluxClient

app = typer.Typer(
    help="Power-by-the-hour billing: priced statements per contract and period, exported as "
    "CSV or JSON, finalized into a ledger; late data yields adjustment lines.",
    no_args_is_help=True,
)


class Format(StrEnum):
    csv = "csv"
    json = "json"


ContractsOption = Annotated[
    Path,
    typer.Option(
        "--contracts",
        help="Contracts TOML file (format: docs/billing.md, example: examples/contracts.toml).",
        dir_okay=False,
    ),
]


@app.command()
def export(
    period: Annotated[
        str,
        typer.Option(
            "--period",
            help="Billing period in the contracts' own time zones: a month (2026-10), a "
            "quarter (2026-Q4) or an ISO week (2026-W40). Contracts billing per another "
            "kind of period are left out.",
        ),
    ],
    contracts: ContractsOption,
    fmt: Annotated[
        Format,
        typer.Option(
            "--format",
            "-f",
            help="csv: one row per line item plus a total row per contract; json: a list of "
            "statements. Both byte-identical for the same data.",
        ),
    ] = Format.csv,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Write the export here (atomically; nothing is written on any error). "
            "Default: standard output.",
            dir_okay=False,
        ),
    ] = None,
    finalize: Annotated[
        bool,
        typer.Option(
            "--finalize",
            help="Record the statements as issued in the ledger (<data_dir>/billing/"
            "ledger.sqlite3). Later exports of the period repeat the issued lines and add "
            "adjustment lines for late data; finalizing again records those.",
        ),
    ] = False,
    contract: Annotated[
        list[str] | None,
        typer.Option("--contract", help="Only this contract id (repeat for several)."),
    ] = None,
    from_raw: Annotated[
        bool,
        typer.Option(
            "--from-raw",
            help="Meter from raw samples instead of the hourly rollups (slower; gives the "
            "same hours — a cross-check).",
        ),
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Export the priced statements of one period for every contract in the file.

    Each machine's hours in the billable states are metered within its effective dates, rounded, rated (flat or graduated tiers, over-use multiplier), with a true-up line when the contract's minimum is not reached. Notes (coverage gaps, hour-meter disagreements) go to standard error.
    """
    export_period(
        load(RunhoursSettings, config),
        contracts,
        period,
        only=contract,
        fmt=fmt.value,
        out=out,
        finalize=finalize,
        from_raw=from_raw,
    )


class ExplainFormat(StrEnum):
    table = "table"
    json = "json"


@app.command()
def explain(
    contract: Annotated[str, typer.Option("--contract", help="The contract id.")],
    machine: Annotated[
        str,
        typer.Option(
            "--machine",
            "-m",
            help="The machine as the contract names it (or its site/machine).",
        ),
    ],
    contracts: ContractsOption,
    period: Annotated[
        str | None,
        typer.Option(
            "--period",
            help="The statement's period, as for export (2026-10, 2026-Q4, 2026-W43).",
        ),
    ] = None,
    start: Annotated[
        str | None,
        typer.Option(
            "--from",
            help="Instead of --period: a range priced as one period, as the demo's summary "
            "does (RFC 3339 or a date, local to the contract).",
        ),
    ] = None,
    end: Annotated[str | None, typer.Option("--to", help="End of that range (exclusive).")] = None,
    fmt: Annotated[
        ExplainFormat,
        typer.Option("--format", "-f", help="table (for people) or json (exact decimal strings)."),
    ] = ExplainFormat.table,
    from_raw: Annotated[
        bool,
        typer.Option("--from-raw", help="Price the statement from raw samples, not the rollups."),
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Show how one machine's lines of a statement arise, day by day, from raw data.

    Per local day: seconds per state, unknown time with each gap's start and end, the hour meter against the state hours with every anomaly, and the raw samples read. Then the rounding, the bands (tier, allowance) with their rates, the true-up, and checks that the days add up exactly to the statement line (exit 1 if one does not: the rollups are stale, rebuild them).
    """
    settings = load(RunhoursSettings, config)
    chosen = next((c for c in load_contracts(contracts) if c.id == contract), None)
    if chosen is None:
        fail(f"--contract {contract}: not in {contracts}")
    if (period is None) == (start is None or end is None):
        fail("give --period, or --from and --to")
    if period is not None:
        span = calendar_period(period, chosen.zone)
        if span.kind != chosen.period:
            fail(f"{chosen.id} bills per {chosen.period}, not per {span.kind} ({period})")
    else:
        assert start is not None and end is not None
        span = custom_period(
            parse_instant(start, chosen.zone), parse_instant(end, chosen.zone), chosen.zone
        )
    show_explanation(settings, chosen, span, machine, output=fmt.value, from_raw=from_raw)


@app.command("rebuild-rollups")
def rebuild(
    start: Annotated[
        str,
        typer.Option("--from", help="Start: RFC 3339 or a date (local midnight in --tz)."),
    ],
    end: Annotated[str, typer.Option("--to", help="End (exclusive), written like --from.")],
    machine: Annotated[
        list[str] | None,
        typer.Option(
            "--machine",
            "-m",
            help="Only this machine: site/machine or a bare id that exists at one site "
            "(repeat); default: all.",
        ),
    ] = None,
    tz: Annotated[str, typer.Option("--tz", help="IANA zone for dates without an offset.")] = "UTC",
    config: ConfigOption = None,
) -> None:
    """Recompute the hourly usage rollups of a range from raw samples.

    The rollups follow the ingest's log of what it wrote by themselves; run this after writing telemetry some other way (a backfill, an import), to repair a range, or to migrate rollups written by an older runhours ahead of time (billing and `runhours usage` recompute those for the hours they read).
    """
    settings = load(RunhoursSettings, config)
    zone_info = zone(tz)
    lo, hi = parse_instant(start, zone_info), parse_instant(end, zone_info)
    if hi <= lo:
        fail(f"--to ({hi.isoformat()}) must be after --from ({lo.isoformat()})")
    with InfluxClient.from_settings(settings) as client:
        hours = rebuild_rollups(client, lo, hi, machine or None)
    console.print(f"rebuilt {hours} machine-hours of usage rollups")


@app.command()
def check(contracts: ContractsOption) -> None:
    """Validate a contracts file and show what it says (exit 2 naming each bad field).

    Refused, among others: a machine under two contracts at the same time (both contracts and the overlap are named), numbers that are not exact decimals, unknown currencies.
    """
    items = load_contracts(contracts)
    for c in items:
        if c.rate_per_hour is not None:
            rate = f"{c.rate_per_hour} {c.currency}/h"
        else:
            rate = (
                ", ".join(
                    f"up to {t.up_to_hours} h at {t.rate_per_hour}"
                    if t.up_to_hours is not None
                    else f"then {t.rate_per_hour}"
                    for t in c.tier
                )
                + f" {c.currency}/h per machine"
            )
        if c.allowance_hours is not None:
            rate += f"; ×{c.overuse_multiplier} above {c.allowance_hours} h per machine"
        if c.minimum_hours is not None:
            rate += f"; minimum {c.minimum_hours} h"
            rate += " (prorated daily)" if c.proration == "daily" else ""
        machines = ", ".join(
            m.id + (f" (from {m.from_})" if m.from_ else "") + (f" (to {m.to})" if m.to else "")
            for m in c.machine
        )
        term = (
            ""
            if c.from_ is None and c.to is None
            else (f"  term: from {c.from_ or 'the beginning'} to {c.to or 'no end'}\n")
        )
        meter = f"reset below {c.counter_reset_below_seconds} s" + (
            f", wraps at {c.counter_modulus_seconds} s" if c.counter_modulus_seconds else ""
        )
        console.print(
            f"[bold]{c.id}[/]  {c.customer}  ({c.currency}, per {c.period} in {c.timezone})\n"
            f"{term}  meter: {c.method}, billable states {', '.join(c.billable_states)}; "
            f"rounding {c.rounding_hours} h {c.rounding_mode}; hour meter {meter}\n"
            f"  rate: {rate}\n  machines: {machines}",
            highlight=False,
            soft_wrap=True,
        )
    console.print(f"{contracts}: {len(items)} contract(s), valid")


@app.command()
def ledger(
    contract: Annotated[
        str | None, typer.Option("--contract", help="Only this contract id.")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """List the finalized statements (revisions) recorded in the ledger."""
    settings = load(RunhoursSettings, config)
    try:
        revisions = Ledger(default_ledger(settings.data_dir)).revisions(contract)
    except LedgerError as exc:
        fail(str(exc))
    cols = [
        Col("contract"),
        Col("period start", figure=False),
        Col("period end", figure=False),
        Col("rev", right=True),
        Col("issued at", figure=False, drop=1),
        Col("lines", right=True, drop=2),
        Col("amount", right=True),
    ]
    rows = [
        [
            r.contract_id,
            r.period_start,
            r.period_end,
            str(r.revision),
            r.issued_at,
            str(r.lines),
            f"{dec(r.total)} {r.currency}",
        ]
        for r in revisions
    ]
    console.print(fit_table(console, cols, rows))
