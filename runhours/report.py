"""A machine report without Grafana: signals, states and alerts as one PNG or HTML file.

For e-mails and contract reviews. ``fetch_report`` reads InfluxDB (the schema of
store/schema.py), ``state_spans`` turns samples into state intervals with the billing
engine's own rule (``analytics.usage.effective_states``: a state holds until the next
sample, at most ``max_gap``, and value-only samples carry it forward; beyond is
unknown), so the report never shows other hours than the bill, and ``png_bytes`` /
``html_text`` draw it with matplotlib (Agg, no display).

>>> report = fetch_report(client, "cnc-01", start, end)  # doctest: +SKIP
>>> write_report(report, Path("cnc-01.html"))  # doctest: +SKIP
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import matplotlib.dates as mdates
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from analytics.counters import IntArray
from analytics.usage import (
    CARRY_HORIZON,
    DEFAULT_MAX_GAP,
    NO_STATE,
    STATE_CODE,
    Int8Array,
    duration_ms,
    effective_states,
    load_samples,
)
from common.errors import RunhoursError
from dashboards.signals import SIGNALS, STATE_COLORS
from dashboards.thresholds import THRESHOLDS
from store import InfluxClient
from store.influxql import quote_ident, quote_string, time_literal
from store.schema import (
    ALERTS,
    FIELD_ALERT_ID,
    FIELD_RUN_SECONDS_TOTAL,
    FIELD_STATUS,
    FIELD_VALUE,
    KNOWN_COUNTERS,
    TAG_MACHINE,
    TAG_RULE,
    TAG_SEVERITY,
    TAG_SITE,
    TELEMETRY,
)
from wire import STATES, from_epoch_ms, to_epoch_ms

MAX_GAP = DEFAULT_MAX_GAP  # docs/design.md: a state never holds longer than this
MAX_POINTS = 1500  # signal buckets across the plot: finer than the pixels, cheap to query
UNKNOWN_COLOR = "#F2F2F2"
_TITLES = {s.name: (s.title, s.unit.removeprefix("suffix:").strip()) for s in SIGNALS}
_UNIT_TEXT = {"celsius": "°C", "amp": "A", "rotrpm": "rpm", "pressurebar": "bar"}


class ReportError(RunhoursError, ValueError):
    """The report cannot be made as asked (bad range, unknown machine, bad file type)."""


def parse_time(text: str) -> datetime:
    """An RFC 3339 time with a zone, or a date (midnight UTC), as an aware UTC datetime."""
    text = text.strip()
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), datetime.min.time(), UTC)
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ReportError(
            f"{text!r} is not a time: use RFC 3339 (2026-03-02T08:00:00Z) or a date (2026-03-02)"
        ) from None
    if parsed.tzinfo is None:
        raise ReportError(f"{text!r} has no time zone: add Z or an offset like +01:00")
    return parsed.astimezone(UTC)


@dataclass(frozen=True)
class StateSpan:
    start: datetime
    end: datetime
    state: str | None  # None: unknown (no sample within max_gap)


@dataclass(frozen=True)
class AlertEvent:
    time: datetime
    alert_id: str
    rule: str
    severity: str
    status: str
    value: float | None


@dataclass
class MachineReport:
    """Everything one report shows, already fetched."""

    machine: str
    start: datetime
    end: datetime
    bucket: timedelta
    signals: dict[str, tuple[list[datetime], list[float]]] = field(default_factory=dict)
    states: list[StateSpan] = field(default_factory=list)
    alerts: list[AlertEvent] = field(default_factory=list)
    hour_meter: tuple[float, float] | None = None  # run_seconds_total first, last

    def seconds_by_state(self) -> dict[str, float]:
        """Seconds in each state over the range; ``unknown`` for time without samples."""
        totals: dict[str, float] = {state: 0.0 for state in STATE_COLORS}
        totals["unknown"] = 0.0
        for span in self.states:
            totals[span.state or "unknown"] += (span.end - span.start).total_seconds()
        return totals


def state_spans(
    samples: Sequence[tuple[datetime, str | None]],
    start: datetime,
    end: datetime,
    max_gap: timedelta = MAX_GAP,
    carry_horizon: timedelta = CARRY_HORIZON,
) -> list[StateSpan]:
    """Cover [start, end) with state intervals, from ``(ts, state)`` samples (``None``:
    a value-only sample), by billing's rule; adjacent equal states merge."""
    codes: dict[int, int] = {}
    for ts, state in samples:
        ms = to_epoch_ms(ts)
        code = NO_STATE if state is None else STATE_CODE[state]
        codes[ms] = max(codes.get(ms, NO_STATE), code)  # one instant: keep a state if any
    ordered = sorted(codes)
    return spans_from_codes(
        np.asarray(ordered, dtype=np.int64),
        np.asarray([codes[ms] for ms in ordered], dtype=np.int8),
        start,
        end,
        max_gap,
        carry_horizon,
    )


def spans_from_codes(
    ts_ms: IntArray,
    codes: Int8Array,
    start: datetime,
    end: datetime,
    max_gap: timedelta = MAX_GAP,
    carry_horizon: timedelta = CARRY_HORIZON,
) -> list[StateSpan]:
    """``state_spans`` over the usage engine's arrays (sorted unique times, state codes)."""
    lo_ms, hi_ms, gap_ms = to_epoch_ms(start), to_epoch_ms(end), duration_ms(max_gap)
    runs: list[tuple[int, int, int]] = []  # (from ms, to ms, state code or NO_STATE)

    def add(lo: int, hi: int, code: int) -> None:
        lo, hi = max(lo, lo_ms), min(hi, hi_ms)
        if lo >= hi:
            return
        if runs and runs[-1][2] == code and runs[-1][1] == lo:
            runs[-1] = (runs[-1][0], hi, code)
        else:
            runs.append((lo, hi, code))

    if ts_ms.size:
        effective = effective_states(ts_ms, codes, gap_ms, duration_ms(carry_horizon))
        ends = ts_ms + gap_ms
        ends[:-1] = np.minimum(ends[:-1], ts_ms[1:])
        cursor = lo_ms
        for ts, held, code in zip(ts_ms.tolist(), ends.tolist(), effective.tolist(), strict=True):
            if ts >= hi_ms:
                break
            add(cursor, ts, NO_STATE)
            add(ts, held, code)
            cursor = max(cursor, held)
        add(cursor, hi_ms, NO_STATE)
    else:
        add(lo_ms, hi_ms, NO_STATE)
    return [
        StateSpan(from_epoch_ms(lo), from_epoch_ms(hi), None if c == NO_STATE else STATES[c])
        for lo, hi, c in runs
    ]


def _bucket(start: datetime, end: datetime) -> timedelta:
    seconds = max(1, math.ceil((end - start).total_seconds() / MAX_POINTS))
    return timedelta(seconds=seconds)


def fetch_report(
    client: InfluxClient,
    machine: str,
    start: datetime,
    end: datetime,
    *,
    site: str | None = None,
) -> MachineReport:
    """Read one machine's signals (bucketed means), states and alerts for [start, end)."""
    if end <= start:
        raise ReportError(f"--to ({end.isoformat()}) must be after --from ({start.isoformat()})")
    where = f"WHERE {quote_ident(TAG_MACHINE)} = {quote_string(machine)}"
    if site:
        where += f" AND {quote_ident(TAG_SITE)} = {quote_string(site)}"
    where += f" AND time >= {time_literal(start)} AND time < {time_literal(end)}"
    report = MachineReport(machine, start, end, _bucket(start, end))
    seconds = int(report.bucket.total_seconds())

    rows = client.query_rows(
        f"SELECT mean(*) FROM {quote_ident(TELEMETRY)} {where} GROUP BY time({seconds}s) fill(none)"
    )
    names = sorted(
        {k.removeprefix("mean_") for row in rows for k in row if k.startswith("mean_")}
        - KNOWN_COUNTERS
    )
    order = [s.name for s in SIGNALS if s.name in names] + [n for n in names if n not in _TITLES]
    for name in order:
        points = [
            (from_epoch_ms(r["time"]), float(r[f"mean_{name}"]))
            for r in rows
            if r.get(f"mean_{name}") is not None
        ]
        if points:  # mean(*) lists every field of the measurement, mostly other kinds'
            report.signals[name] = ([t for t, _ in points], [v for _, v in points])

    # The billing engine's own samples: the window, the chain of samples that carries a
    # state into it, and the first samples after it (the site filter does not apply:
    # billing counts a machine id).
    samples = load_samples(client, machine, to_epoch_ms(start), to_epoch_ms(end), max_gap=MAX_GAP)
    if not samples.ts_ms.size and not report.signals:
        raise ReportError(
            f"no telemetry for machine {machine!r} between {start.isoformat()} and "
            f"{end.isoformat()}: check the id (runhours usage lists machines) and the range"
        )
    report.states = spans_from_codes(samples.ts_ms, samples.codes, start, end)

    meter = client.query_rows(
        f"SELECT first({quote_ident(FIELD_RUN_SECONDS_TOTAL)}) AS first, "
        f"last({quote_ident(FIELD_RUN_SECONDS_TOTAL)}) AS last FROM {quote_ident(TELEMETRY)} {where}"
    )
    if meter and meter[0].get("first") is not None:
        report.hour_meter = (float(meter[0]["first"]), float(meter[0]["last"]))

    report.alerts = [
        AlertEvent(
            from_epoch_ms(r["time"]),
            str(r.get(FIELD_ALERT_ID) or ""),
            str(r.get(TAG_RULE) or ""),
            str(r.get(TAG_SEVERITY) or ""),
            str(r.get(FIELD_STATUS) or ""),
            float(r[FIELD_VALUE]) if r.get(FIELD_VALUE) is not None else None,
        )
        for r in client.query_rows(f"SELECT * FROM {quote_ident(ALERTS)} {where}")
    ]
    return report


def _alert_windows(
    alerts: Sequence[AlertEvent], end: datetime
) -> list[tuple[datetime, datetime, str]]:
    """(start, end, severity) of each firing period: firing → resolved (or the end)."""
    windows = []
    open_since: dict[str, tuple[datetime, str]] = {}
    for event in sorted(alerts, key=lambda a: a.time):
        key = event.alert_id or f"{event.rule}/{event.severity}"
        if event.status == "firing" and key not in open_since:
            open_since[key] = (event.time, event.severity)
        elif event.status == "resolved" and key in open_since:
            since, severity = open_since.pop(key)
            windows.append((since, event.time, severity))
    windows += [(since, end, severity) for since, severity in open_since.values()]
    return sorted(windows)


def _num(ts: datetime) -> float:
    """matplotlib's date number (its date2num is untyped)."""
    return float(mdates.date2num(ts))  # type: ignore[no-untyped-call]


def _unit(name: str) -> str:
    unit = _TITLES.get(name, (name, ""))[1]
    return _UNIT_TEXT.get(unit, unit)


def figure(report: MachineReport) -> Figure:
    """The report's plot: a state band on top, one axis per signal, alerts shaded."""
    names = list(report.signals)
    heights = [0.6] + [1.6] * len(names)
    # A bare Figure renders with Agg on savefig: no pyplot, no display, no global state.
    fig = Figure(figsize=(12, 1.2 + sum(heights)))
    axes = fig.subplots(
        len(heights), 1, sharex=True, gridspec_kw={"height_ratios": heights}, squeeze=False
    )
    ax_states, *ax_signals = [ax for (ax,) in axes]
    for span in report.states:
        ax_states.axvspan(
            _num(span.start),
            _num(span.end),
            color=STATE_COLORS.get(span.state or "", UNKNOWN_COLOR),
            linewidth=0,
        )
    ax_states.set_yticks([])
    ax_states.set_ylabel("state", rotation=0, ha="right", va="center")
    ax_states.legend(
        handles=[Patch(color=c, label=s) for s, c in STATE_COLORS.items()]
        + [Patch(color=UNKNOWN_COLOR, label="unknown")],
        loc="upper center",
        bbox_to_anchor=(0.5, 1.9),
        ncol=6,
        frameon=False,
        fontsize=8,
    )
    windows = _alert_windows(report.alerts, report.end)
    for ax, name in zip(ax_signals, names, strict=True):
        times, values = report.signals[name]
        ax.plot(times, values, linewidth=0.8, color="#1F60C4")
        for level in THRESHOLDS.get(name, ()):
            ax.axhline(level.value, color=level.color, linestyle="--", linewidth=0.8)
            ax.annotate(
                f"{level.value:g} {level.label}",
                (1.0, level.value),
                xycoords=("axes fraction", "data"),
                fontsize=7,
                color=level.color,
                ha="right",
                va="bottom",
            )
        ax.set_ylabel(f"{name}\n[{_unit(name)}]", fontsize=8)
        ax.grid(True, linewidth=0.3)
    for since, until, severity in windows:  # signals only: the state colours stay true
        for ax in ax_signals:
            ax.axvspan(
                _num(since),
                _num(until),
                color="red" if severity == "critical" else "orange",
                alpha=0.12,
                linewidth=0,
            )
    last = axes[-1][0]
    last.set_xlim(_num(report.start), _num(report.end))
    formatter = mdates.ConciseDateFormatter(last.xaxis.get_major_locator())  # type: ignore[no-untyped-call]
    last.xaxis.set_major_formatter(formatter)
    fig.suptitle(
        f"{report.machine}: {report.start:%Y-%m-%d %H:%M} – {report.end:%Y-%m-%d %H:%M} UTC",
        fontsize=12,
    )
    fig.tight_layout()
    return fig


def png_bytes(report: MachineReport, dpi: int = 100) -> bytes:
    fig = figure(report)
    buffer = io.BytesIO()
    # Fixed metadata keeps the bytes the same for the same data.
    fig.savefig(buffer, format="png", dpi=dpi, metadata={"Software": None})
    return buffer.getvalue()


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.2f}"


def html_text(report: MachineReport) -> str:
    """A self-contained HTML page: the plot (inline PNG), time per state, alert list."""
    esc = html.escape
    image = base64.b64encode(png_bytes(report)).decode("ascii")
    by_state = report.seconds_by_state()
    total = (report.end - report.start).total_seconds()
    state_rows = "".join(
        f"<tr><td>{esc(state)}</td><td>{_hours(s)}</td><td>{100 * s / total:.1f} %</td></tr>"
        for state, s in by_state.items()
    )
    meter = ""
    if report.hour_meter:
        first, last = report.hour_meter
        meter = (
            f"<p>Hour meter (<code>run_seconds_total</code>): {_hours(first)} h → "
            f"{_hours(last)} h, {_hours(last - first)} h in the range.</p>"
        )
    alert_rows = (
        "".join(
            f"<tr><td>{a.time:%Y-%m-%d %H:%M:%S}</td><td>{esc(a.rule)}</td><td>{esc(a.severity)}</td>"
            f"<td>{esc(a.status)}</td><td>{'' if a.value is None else f'{a.value:g}'}</td></tr>"
            for a in report.alerts
        )
        or '<tr><td colspan="5">no alerts in this range</td></tr>'
    )
    title = f"runhours report: {report.machine}"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:2px 8px;text-align:left}}img{{max-width:100%}}</style>
</head><body>
<h1>{esc(title)}</h1>
<p>{report.start:%Y-%m-%d %H:%M} – {report.end:%Y-%m-%d %H:%M} UTC. Signals are means per
{int(report.bucket.total_seconds())} s. States hold until the next sample, at most
{int(MAX_GAP.total_seconds() // 60)} min; time beyond that is unknown. These are
metered figures: the billing statement is the authority.</p>
<img alt="signals, states and alerts of {esc(report.machine)}" src="data:image/png;base64,{image}">
<h2>Time per state</h2>
<table><tr><th>state</th><th>hours</th><th>share</th></tr>{state_rows}</table>
{meter}
<h2>Alert transitions</h2>
<table><tr><th>time (UTC)</th><th>rule</th><th>severity</th><th>status</th><th>value</th></tr>
{alert_rows}</table>
</body></html>
"""


def write_report(report: MachineReport, out: Path) -> None:
    """Write ``out`` as PNG or HTML, chosen by its suffix."""
    suffix = out.suffix.lower()
    if suffix == ".png":
        out.write_bytes(png_bytes(report))
    elif suffix in (".html", ".htm"):
        out.write_text(html_text(report), encoding="utf-8")
    else:
        raise ReportError(f"{out}: unknown report type {suffix!r}; use .png or .html")
