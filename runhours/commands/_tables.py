"""Tables for people: they fit the terminal (80 columns and up) and never cut a number.

Every figure is formatted to its unit here (``8h 02m``, ``87.3%``, ``1,204``, ``3.25``);
``--format json|csv`` gives the full figures. A column is either a *figure* (a number, a
time, an id: never wrapped, never cut) or *text* (wraps). When a table does not fit the
terminal, its optional columns go first (``drop`` 1 first, then 2, …), then text wraps.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

TEXT_MIN = 12  # a text column never gets narrower than this


@dataclass(frozen=True)
class Col:
    """One column: its header, whether it is a figure, right-aligned, and how optional."""

    header: str
    figure: bool = True  # False: text that may wrap
    right: bool = False  # numbers are right-aligned
    drop: int = 0  # > 0: left out when the table is too wide (1 first, then 2, …)


def _width(cell: str | Text) -> int:
    text = cell if isinstance(cell, Text) else Text.from_markup(cell)
    return max((len(line) for line in text.plain.splitlines()), default=0)


def _needed(cols: Sequence[Col], rows: Sequence[Sequence[str | Text]]) -> int:
    total = 0
    for i, col in enumerate(cols):
        widest = max([len(col.header), *(_width(r[i]) for r in rows)])
        total += widest if col.figure else min(widest, max(TEXT_MIN, len(col.header)))
    return total + 2 * (len(cols) - 1)


def fit_table(
    console: Console,
    cols: Sequence[Col],
    rows: Sequence[Sequence[str | Text]],
    *,
    title: str | None = None,
    sections: Sequence[int] = (),
) -> Table:
    """A table of ``rows`` that fits ``console``'s width (see the module docstring).

    ``sections``: row indexes before which a rule is drawn (e.g. before a total).
    """
    keep = list(range(len(cols)))
    while _needed([cols[i] for i in keep], [[r[i] for i in keep] for r in rows]) > console.width:
        optional = [i for i in keep if cols[i].drop > 0]
        if not optional:
            break
        keep.remove(min(optional, key=lambda i: (cols[i].drop, -i)))
    table = Table(
        title=title,
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
        show_edge=False,
        title_justify="left",
    )
    for i in keep:
        col = cols[i]
        if col.figure:
            table.add_column(col.header, justify="right" if col.right else "left", no_wrap=True)
        else:
            table.add_column(col.header, overflow="fold", min_width=min(TEXT_MIN, console.width))
    for n, row in enumerate(rows):
        if n and n in sections:
            table.add_section()
        table.add_row(*(row[i] for i in keep))
    return table


# -- figures formatted to their unit ---------------------------------------------------------


def duration(seconds: float | None) -> str:
    """``8h 02m``, ``12m 05s``, ``45s``; ``""`` for None. Minutes and seconds are cut, not
    rounded up, so a duration never shows more than there was."""
    if seconds is None:
        return ""
    s = math.floor(seconds)
    h, m = divmod(s // 60, 60)
    if h:
        return f"{h}h {m:02d}m"
    if m:
        return f"{m}m {s % 60:02d}s"
    return f"{s}s"


def hours(seconds: float | None, decimals: int = 2) -> str:
    """Hours with ``decimals`` decimals (``12.35``); ``""`` for None."""
    return "" if seconds is None else f"{seconds / 3600:,.{decimals}f}"


def percent(fraction: float | None, decimals: int = 1) -> str:
    """``87.3%``; ``n/a`` for None (not available, never guessed)."""
    return "n/a" if fraction is None else f"{fraction * 100:.{decimals}f}%"


def count(n: int | None) -> str:
    """``1,204``; ``n/a`` for None."""
    return "n/a" if n is None else f"{n:,}"


def number(value: float | None, significant: int = 4) -> str:
    """A measured value in plain notation with up to ``significant`` digits (``3.247``,
    ``1204``, ``0.0031``): never ``3.2e+03``."""
    if value is None:
        return ""
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    digits = max(0, significant - 1 - math.floor(math.log10(abs(value))))
    text = f"{value:.{digits}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def moment(ts: datetime | None, tz: tzinfo | None = None, *, year: bool = False) -> str:
    """``11-30 10:42`` (or ``2026-11-30 10:42``) in ``tz`` (default: as given)."""
    if ts is None:
        return ""
    local = ts.astimezone(tz) if tz is not None else ts
    return local.strftime("%Y-%m-%d %H:%M" if year else "%m-%d %H:%M")
