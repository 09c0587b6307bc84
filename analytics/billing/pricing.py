"""The pricing rules, as pure functions over exact numbers (docs/billing.md "Pricing").

- Metered hours are exact (integer milliseconds / 3 600 000, a ``Fraction``).
- Rounding applies once per machine per period to its metered hours: to a multiple of
  the contract's ``rounding_hours`` with its ``rounding_mode``. The result is the
  machine's billable hours.
- Graduated tiers apply per machine per period to the billable hours; with an allowance,
  hours above ``allowance_hours`` are billed at ``overuse_multiplier`` × their tier's
  rate. Each (tier, allowance) segment is one line: hours × rate = amount.
- Amounts are rounded half-up to the currency's minor unit, per line.
- The minimum (``minimum_hours``) is per contract per period: when the billable hours of
  all machines fall short, a true-up line bills the shortfall at the base rate (the
  flat rate, or the first tier's). With no machine under contract in the period there
  is no minimum; with ``proration = "daily"`` it is prorated by the days on which any
  machine was under contract.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal
from fractions import Fraction

from babel.numbers import get_currency_precision

from analytics.billing.contracts import Contract, RoundingMode
from analytics.periods import HOUR_MS, bucket_edges, to_ms

METERED_PLACES = 4  # metered hours are shown to 0.0001 h (0.36 s)
COVERAGE_PLACES = 2  # coverage in percent, rounded down: 100.00 only when fully known


def currency_places(currency: str) -> int:
    """Decimal places of the currency's minor unit (EUR 2, JPY 0, KWD 3), from the
    Unicode CLDR's currency data (via babel), maintained with the standard."""
    return int(get_currency_precision(currency))


def hours_of(ms: int) -> Fraction:
    """Exact hours of a millisecond count."""
    return Fraction(ms, HOUR_MS)


def to_decimal(value: Fraction, places: int, rounding: str = ROUND_HALF_EVEN) -> Decimal:
    """A fraction as a decimal with ``places`` decimals, rounded once, exactly."""
    sign = -1 if value < 0 else 1
    whole, rest = divmod(abs(value.numerator) * 10**places, value.denominator)
    part = Fraction(rest, value.denominator)
    if rounding == ROUND_DOWN:
        up = False
    elif rounding == ROUND_HALF_UP:
        up = part >= Fraction(1, 2)
    else:
        up = part > Fraction(1, 2) or (part == Fraction(1, 2) and whole % 2 == 1)
    return (Decimal(sign * (whole + (1 if up else 0)))).scaleb(-places)


def round_to_increment(hours: Fraction, increment: Decimal, mode: RoundingMode) -> Decimal:
    """``hours`` rounded to a multiple of ``increment`` (hours ≥ 0)."""
    steps = hours / Fraction(increment)
    floor = math.floor(steps)
    rest = steps - floor
    if mode == "down":
        n = floor
    elif mode == "up":
        n = floor + (1 if rest else 0)
    elif mode == "half_up":
        n = floor + (1 if rest >= Fraction(1, 2) else 0)
    else:  # half_even
        n = floor + (1 if rest > Fraction(1, 2) or (rest == Fraction(1, 2) and floor % 2) else 0)
    return n * increment


def coverage_percent(known_ms: int, window_ms: int) -> Decimal:
    """Known time as a percentage of the window, rounded down to 0.01."""
    if window_ms <= 0:
        return Decimal(0).scaleb(-COVERAGE_PLACES)
    return to_decimal(Fraction(100 * known_ms, window_ms), COVERAGE_PLACES, ROUND_DOWN)


def amount_of(hours: Decimal, rate: Decimal, places: int) -> Decimal:
    """hours × rate, rounded half-up to the currency's minor unit."""
    return (hours * rate).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class Segment:
    """A band of a machine's billable hours billed at one rate: ``(lo, hi]``."""

    lo: Decimal
    hi: Decimal | None  # None: open-ended
    rate: Decimal
    overuse: bool

    @property
    def key(self) -> str:
        """Names the band stably (used in line ids and to match restatements)."""
        hi = "" if self.hi is None else _plain(self.hi)
        return f"{_plain(self.lo)}-{hi}{'*over' if self.overuse else ''}"


def _plain(value: Decimal) -> str:
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "") else text


def segments(contract: Contract) -> list[Segment]:
    """The contract's rate bands per machine: tiers, split at the allowance if any."""
    if contract.tier:
        bands = []
        lo = Decimal(0)
        for tier in contract.tier:
            bands.append((lo, tier.up_to_hours, tier.rate_per_hour))
            lo = tier.up_to_hours if tier.up_to_hours is not None else lo
    else:
        assert contract.rate_per_hour is not None
        bands = [(Decimal(0), None, contract.rate_per_hour)]
    allowance = contract.allowance_hours
    multiplier = contract.overuse_multiplier or Decimal(1)
    out: list[Segment] = []
    for lo, hi, rate in bands:
        if allowance is None or (hi is not None and hi <= allowance):
            out.append(Segment(lo, hi, rate, False))
        elif lo >= allowance:
            out.append(Segment(lo, hi, rate * multiplier, True))
        else:
            out.append(Segment(lo, allowance, rate, False))
            out.append(Segment(allowance, hi, rate * multiplier, True))
    return out


def base_rate(contract: Contract) -> Decimal:
    """The rate of the first hour: the flat rate or the first tier's (true-up rate)."""
    if contract.rate_per_hour is not None:
        return contract.rate_per_hour
    return contract.tier[0].rate_per_hour


def _band(total: Decimal | Fraction, lo: Decimal, hi: Decimal | None) -> Fraction:
    value = Fraction(total) - Fraction(lo)
    if hi is not None:
        value = min(value, Fraction(hi) - Fraction(lo))
    return max(value, Fraction(0))


@dataclass(frozen=True)
class Allocation:
    """One machine's hours in one band."""

    segment: Segment
    billable: Decimal
    metered: Fraction


def allocate(billable: Decimal, metered: Fraction, bands: list[Segment]) -> list[Allocation]:
    """Split a machine's billable (and metered) hours over the bands.

    Bands with no hours are left out, except the first, so every machine shows one line.
    """
    out = []
    for index, band in enumerate(bands):
        b = _band(billable, band.lo, band.hi)
        m = _band(metered, band.lo, band.hi)
        if index == 0 or b > 0 or m > 0:
            out.append(Allocation(band, Decimal(b.numerator) / Decimal(b.denominator), m))
    return out


def hours_places(contract: Contract) -> int:
    """Decimals that show every billable hour figure of the contract exactly."""
    values = [contract.rounding_hours, contract.minimum_hours, contract.allowance_hours]
    values += [tier.up_to_hours for tier in contract.tier]
    return max(
        (max(0, -int(v.normalize().as_tuple().exponent)) for v in values if v is not None),
        default=0,
    )


@dataclass(frozen=True)
class Commitment:
    """The minimum hours that apply to one statement, and how they were arrived at."""

    hours: Decimal  # 0: no minimum applies
    days_covered: int  # local days of the period with any machine under contract
    days: int  # local days of the period
    prorated: bool


def covered_days(
    contract: Contract, start: datetime, end: datetime, windows: Iterable[tuple[int, int]]
) -> tuple[int, int]:
    """(local days of ``[start, end)`` during which any window is open, days in it)."""
    edges = [to_ms(e) for e in bucket_edges(start, end, "day", contract.zone)]
    spans = sorted(windows)
    days = list(itertools.pairwise(edges))
    covered = sum(1 for a, b in days if any(lo < b and a < hi for lo, hi in spans))
    return covered, len(days)


def commitment(
    contract: Contract, start: datetime, end: datetime, windows: Iterable[tuple[int, int]]
) -> Commitment | None:
    """The contract's minimum for ``[start, end)`` given its machines' windows in it.

    None without ``minimum_hours``. Nothing under contract: 0 h. ``proration = "none"``:
    the whole minimum; ``"daily"``: minimum × covered days / days, rounded like metered
    hours (``rounding_hours``, ``rounding_mode``).
    """
    if contract.minimum_hours is None:
        return None
    covered, days = covered_days(contract, start, end, windows)
    if covered == 0:
        return Commitment(Decimal(0), 0, days, False)
    if contract.proration == "none" or covered == days:
        return Commitment(contract.minimum_hours, covered, days, False)
    share = Fraction(contract.minimum_hours) * covered / days
    hours = round_to_increment(share, contract.rounding_hours, contract.rounding_mode)
    return Commitment(hours, covered, days, True)
