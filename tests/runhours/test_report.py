"""`runhours report`: a PNG/HTML plot of one machine, read from a real InfluxDB."""

from __future__ import annotations

import base64
import io
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from analytics.usage import machine_usage
from common.settings import RunhoursSettings
from runhours.cli import app
from runhours.report import ReportError, StateSpan, fetch_report, parse_time, state_spans
from store import InfluxClient, Point
from store.schema import FIELD_STATE, TAG_LINE, TAG_MACHINE, TAG_SITE, TELEMETRY
from tests.support.fleet_data import END, START, FleetData, write_fleet

T = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def _m(minutes: float) -> datetime:
    return T + timedelta(minutes=minutes)


def test_state_spans_follow_the_billing_semantics() -> None:
    samples = [(_m(1), "running"), (_m(2), "running"), (_m(4), "idle"), (_m(20), "fault")]
    assert state_spans(samples, _m(0), _m(30)) == [
        StateSpan(_m(0), _m(1), None),  # before the first sample: unknown
        StateSpan(_m(1), _m(4), "running"),  # equal neighbours merge
        StateSpan(_m(4), _m(9), "idle"),  # held at most max_gap (5 min) …
        StateSpan(_m(9), _m(20), None),  # … then unknown until the next sample
        StateSpan(_m(20), _m(25), "fault"),
        StateSpan(_m(25), _m(30), None),
    ]
    # A sample before the range carries its state into it; one after is ignored.
    assert state_spans([(_m(-2), "idle"), (_m(31), "off")], _m(0), _m(30)) == [
        StateSpan(_m(0), _m(3), "idle"),
        StateSpan(_m(3), _m(30), None),
    ]
    assert state_spans([], _m(0), _m(1)) == [StateSpan(_m(0), _m(1), None)]


def test_state_spans_carry_states_through_value_only_samples() -> None:
    """Billing's rule (analytics.usage.effective_states): a value-only sample (state None)
    continues the state before it while samples are no more than max_gap apart."""
    heartbeats = [(_m(k), None) for k in range(1, 30)]  # every minute, values only
    samples = [(_m(0), "running"), *heartbeats, (_m(30), "idle"), (_m(34), None)]
    samples += [(_m(50), None), (_m(53), "fault")]  # 16 min gap: unknown until a state
    assert state_spans(samples, _m(0), _m(60)) == [
        StateSpan(_m(0), _m(30), "running"),
        StateSpan(_m(30), _m(39), "idle"),  # the heartbeat at 34 holds it 5 min more
        StateSpan(_m(39), _m(53), None),  # the heartbeat at 50 follows a gap: unknown
        StateSpan(_m(53), _m(58), "fault"),
        StateSpan(_m(58), _m(60), None),
    ]
    # A chain that starts before the range carries its state into it.
    chain = [(_m(-20), "idle"), *((_m(k), None) for k in (-16, -12, -8, -4, 0, 2))]
    assert state_spans(chain, _m(0), _m(30)) == [
        StateSpan(_m(0), _m(7), "idle"),
        StateSpan(_m(7), _m(30), None),
    ]


def test_report_hours_equal_the_billing_engine(
    settings: RunhoursSettings, influx: InfluxClient, test_id: str, tmp_path: Path
) -> None:
    """A machine that sends its state only on changes and value-only heartbeats in between
    (the wire contract allows it): the report shows exactly the hours billing counts."""
    tags = {TAG_SITE: test_id, TAG_LINE: "line-a", TAG_MACHINE: "hb-01"}
    stated = {-20: "running", 30: "idle", 75: "fault"}
    minutes = [*range(-20, 51), *range(70, 131)]  # silent from 50 to 70 (> max_gap)
    points = []
    for minute in minutes:
        fields: dict[str, float | str] = {"vibration_mm_s": 1.0 + minute / 100}
        if minute in stated:
            fields[FIELD_STATE] = stated[minute]
        points.append(Point(TELEMETRY, tags, fields, int(_m(minute).timestamp() * 1000)))
    influx.write(points)
    start, end = _m(0), _m(120)

    report = fetch_report(influx, "hb-01", start, end)
    billed = machine_usage(influx, "hb-01", start, end)
    seconds = report.seconds_by_state()
    assert {s: v for s, v in seconds.items() if s != "unknown"} == billed.state_seconds
    assert seconds == {
        "running": 1800.0,  # carried from -20 through the heartbeats up to 30
        "idle": 1500.0,  # 30 until 5 min after the last heartbeat at 50
        "off": 0.0,
        "fault": 2700.0,
        "maintenance": 0.0,
        "unknown": 1200.0,  # 55 to 75: the heartbeat at 70 follows a 20 min gap
    }
    code, output = _invoke(
        settings, "-m", "hb-01", "--from", start.isoformat(), "--to", end.isoformat(),
        "-o", str(tmp_path / "hb.html"),
    )  # fmt: skip
    assert code == 0, output
    assert f"{billed.known_seconds / 3600:.2f} h with a known state" in output  # 1.67 h


def test_parse_time() -> None:
    assert parse_time("2026-03-02") == datetime(2026, 3, 2, tzinfo=UTC)
    assert parse_time("2026-03-02T09:30:00+01:00") == datetime(2026, 3, 2, 8, 30, tzinfo=UTC)
    assert parse_time("2026-03-02T08:30:00Z") == datetime(2026, 3, 2, 8, 30, tzinfo=UTC)
    with pytest.raises(ReportError, match="no time zone"):
        parse_time("2026-03-02T08:30:00")
    with pytest.raises(ReportError, match="RFC 3339"):
        parse_time("yesterday")


@pytest.fixture
def fleet_data(influx: InfluxClient, test_id: str) -> FleetData:
    return write_fleet(influx, site=test_id, machines=3)


def _invoke(settings: RunhoursSettings, *args: str) -> tuple[int, str]:
    env = {"RUNHOURS_INFLUX_URL": settings.influx_url, "RUNHOURS_INFLUX_DB": settings.influx_db}
    result = CliRunner().invoke(app, ["report", *args], env=env)
    return result.exit_code, " ".join(result.output.split())  # undo rich's line wrapping


def _range() -> list[str]:
    return ["--from", START.isoformat(), "--to", END.isoformat()]


def test_report_png(settings: RunhoursSettings, fleet_data: FleetData, tmp_path: Path) -> None:
    out = tmp_path / "cnc-01.png"
    code, output = _invoke(settings, "--machine", "cnc-01", *_range(), "--out", str(out))
    assert code == 0, output
    assert "4 signals, 3 alert transitions" in output
    with Image.open(out) as image:
        assert image.format == "PNG"
        # 12 in wide; 1.2 in of margins + 0.6 for the state band + 1.6 per signal, 100 dpi.
        assert image.size == (1200, 820)
        pixels = np.asarray(image.convert("RGB")).astype(int)
    # Not blank: many distinct colours, and the state band shows running (green) and
    # idle (#EAB839) time; the resolved alert's shading (red, 12 % over white) is there.
    colours = {tuple(p) for p in pixels.reshape(-1, 3)[::7]}
    assert len(colours) > 50
    assert pixels.std() > 20

    def count(rgb: tuple[int, int, int], tolerance: int = 6) -> int:
        return int((np.abs(pixels - np.array(rgb)).max(axis=2) <= tolerance).sum())

    assert count((0, 128, 0)) > 5_000  # running
    assert count((0xEA, 0xB8, 0x39)) > 500  # idle
    assert count((255, 225, 225), tolerance=4) > 5_000  # alert shading


def test_report_html(settings: RunhoursSettings, fleet_data: FleetData, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    code, output = _invoke(settings, "-m", "cnc-01", *_range(), "-o", str(out))
    assert code == 0, output
    text = out.read_text()
    assert "<h1>runhours report: cnc-01</h1>" in text
    match = re.search(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)
    assert match
    with Image.open(io.BytesIO(base64.b64decode(match.group(1)))) as image:
        assert image.size == (1200, 820)
    rows = re.findall(
        r"<tr><td>(\d{4}-[^<]+)</td><td>([^<]+)</td><td>([^<]+)</td><td>([^<]+)</td>", text
    )
    assert [(r[1], r[3]) for r in rows] == [
        ("vibration-critical", "firing"),
        ("vibration-critical", "resolved"),
        ("vibration-critical", "acked"),
    ]
    # Time per state adds up to the six hours of the range.
    hours = [float(h) for h in re.findall(r"<tr><td>[a-z]+</td><td>([\d.]+)</td>", text)]
    assert len(hours) == 6 and sum(hours) == pytest.approx(6.0, abs=0.02)


def test_report_errors(settings: RunhoursSettings, fleet_data: FleetData, tmp_path: Path) -> None:
    code, output = _invoke(settings, "-m", "nope-99", *_range(), "-o", str(tmp_path / "r.png"))
    assert code == 2 and "no telemetry for machine 'nope-99'" in output
    code, output = _invoke(settings, "-m", "cnc-01", *_range(), "-o", str(tmp_path / "r.pdf"))
    assert code == 2 and "use a .png or .html" in output
    code, output = _invoke(
        settings, "-m", "cnc-01", "--from", END.isoformat(), "--to", START.isoformat(),
        "-o", str(tmp_path / "r.png"),
    )  # fmt: skip
    assert code == 2 and "must be after --from" in output
    assert not list(tmp_path.glob("r.*"))
