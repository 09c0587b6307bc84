"""The rules file: the shipped defaults load, and every malformed file names its field."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from analytics.alerts import DEFAULT_RULES, RulesError, ThresholdRule, load_rules, parse_rules
from common.times import format_duration, parse_duration
from runhours.cli import app


def test_shipped_rules_load_with_iso_10816_limits() -> None:
    rules = load_rules(DEFAULT_RULES)
    by_id = {r.id: r for r in rules.rule}
    warning, critical = by_id["vibration-warning"], by_id["vibration-critical"]
    assert isinstance(warning, ThresholdRule) and isinstance(critical, ThresholdRule)
    assert (warning.above, critical.above) == (2.8, 4.5)
    assert critical.for_ == timedelta(minutes=10) and critical.clear_below == 4.0
    assert {r.kind for r in rules.rule} == {"threshold", "anomaly", "service_interval", "no_data"}
    assert rules.kind_of("pump-07") == "pump" and rules.kind_of("robot-1") is None
    assert [r.id for r in rules.rules_for("cnc-01") if r.kind == "service_interval"] == [
        "service-cnc"
    ]


def test_durations() -> None:
    assert parse_duration("1h30m") == timedelta(minutes=90)
    assert parse_duration(90) == timedelta(seconds=90)
    assert format_duration(timedelta(days=1, seconds=61)) == "1d1m1s"
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("10 minutes")


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        (
            {"kind": "threshold", "value": "vibration_mm_s"},
            "rule[0] 'r1' (threshold): give exactly one of `above` or `below`",
        ),
        (
            {"kind": "threshold", "value": "v", "above": "high"},
            "rule[0] 'r1' (threshold): above: Input should be a valid number",
        ),
        (
            {"kind": "threshold", "value": "v", "above": 4.5, "for": "10 min"},
            "rule[0] 'r1' (threshold): for: '10 min' is not a duration",
        ),
        (
            {"kind": "threshold", "value": "v", "above": 4.5, "clear_below": 5.0},
            "clear_below (5.0) must not exceed above (4.5)",
        ),
        (
            {"kind": "threshold", "value": "v", "above": 4.5, "severty": "critical"},
            "rule[0] 'r1' (threshold): severty: unknown key",
        ),
        (
            {"kind": "threshold", "value": "v", "above": 4.5, "severity": "urgent"},
            "rule[0] 'r1' (threshold): severity: Input should be 'info', 'warning' or 'critical'",
        ),
        (
            {"kind": "service_interval"},
            "rule[0] 'r1' (service_interval): hours: missing (required)",
        ),
        (
            {"kind": "service_interval", "hours": 100, "warn_fraction": 1.5},
            "warn_fraction: Input should be less than or equal to 1",
        ),
        (
            {"kind": "anomaly", "value": "v", "sigma": 2, "clear_sigma": 3},
            "clear_sigma (3.0) must not exceed sigma (2.0)",
        ),
        (
            {"kind": "no_data", "silent_for": "soon"},
            "rule[0] 'r1' (no_data): silent_for: 'soon' is not a duration",
        ),
        ({"kind": "magic"}, "rule[0] 'r1': kind: 'magic' is not a rule kind"),
        (
            {"kind": "threshold", "value": "Vibration", "above": 1},
            "rule[0] 'r1' (threshold): value: String should match pattern",
        ),
        (
            {"kind": "threshold", "value": "v", "above": 1, "kinds": ["robot"]},
            "rule[0].kinds: unknown machine kind 'robot'",
        ),
        # A limit that is not a number never fires: refused, not silently accepted.
        (
            {"kind": "threshold", "value": "v", "above": float("nan")},
            "rule[0] 'r1' (threshold): above: Input should be a finite number",
        ),
        (
            {"kind": "anomaly", "value": "v", "sigma": float("inf")},
            "rule[0] 'r1' (anomaly): sigma: Input should be a finite number",
        ),
        # A zero half-life divides by zero in every evaluation cycle: refused up front.
        (
            {"kind": "anomaly", "value": "v", "window": "0s"},
            "rule[0] 'r1' (anomaly): window: must be longer than 0s",
        ),
        # Durations too long for a timedelta crashed with OverflowError (no field named).
        (
            {"kind": "threshold", "value": "v", "above": 4.5, "for": 1e30},
            "rule[0] 'r1' (threshold): for: 1e+30 is too long",
        ),
        (
            {"kind": "threshold", "value": "v", "above": 4.5, "for": float("inf")},
            "rule[0] 'r1' (threshold): for: inf is not a finite duration",
        ),
        (
            {"kind": "no_data", "silent_for": "999999999999d"},
            "rule[0] 'r1' (no_data): silent_for: '999999999999d' is too long",
        ),
        # Keys of the other reference or detector would silently do nothing: refused.
        (
            {"kind": "anomaly", "value": "v", "reference": "commissioning", "baseline": "3d"},
            "rule[0] 'r1' (anomaly): `baseline` does not apply to reference = 'commissioning'",
        ),
        (
            {"kind": "anomaly", "value": "v", "bands": {"value": "c", "edges": [1.0]}},
            "rule[0] 'r1' (anomaly): `bands` does not apply to reference = 'adaptive'",
        ),
        (
            {"kind": "anomaly", "value": "v", "detector": "cusum"},
            'rule[0] \'r1\' (anomaly): detector = "cusum" needs reference = "commissioning"',
        ),
        (
            {
                "kind": "anomaly",
                "value": "v",
                "reference": "commissioning",
                "detector": "cusum",
                "sigma": 3,
            },
            "rule[0] 'r1' (anomaly): `sigma` does not apply to detector = 'cusum'",
        ),
        (
            {
                "kind": "anomaly",
                "value": "v",
                "reference": "commissioning",
                "bands": {"value": "c", "edges": [2.0, 1.0]},
            },
            "rule[0] 'r1' (anomaly): bands.edges: must increase strictly (got [2.0, 1.0])",
        ),
        (
            {"kind": "anomaly", "value": "v", "reference": "commissioning", "h": 0},
            "rule[0] 'r1' (anomaly): h: Input should be greater than 0",
        ),
        (
            {
                "kind": "threshold",
                "value": "v",
                "above": 2.8,
                "forecast": {"limit": 4.5, "over": "30m"},
            },
            "rule[0] 'r1' (threshold): forecast.over: must be at least 1h",
        ),
        (
            {"kind": "threshold", "value": "v", "above": 2.8, "forecast": {"level": 4.5}},
            "rule[0] 'r1' (threshold): forecast.limit: missing (required)",
        ),
    ],
)
def test_malformed_rule_names_the_field(rule: dict[str, object], expected: str) -> None:
    with pytest.raises(RulesError) as info:
        parse_rules({"rule": [{"id": "r1", **rule}]}, "rules.toml")
    assert expected in str(info.value)
    assert str(info.value).startswith("rules.toml: invalid")


def test_file_level_errors(tmp_path: Path) -> None:
    with pytest.raises(RulesError, match=r"step: .*whole seconds"):
        parse_rules({"step": "1500ms"})
    with pytest.raises(RulesError, match=r"step: 1e\+30 is too long"):
        parse_rules({"step": 1e30})
    with pytest.raises(RulesError, match="duplicate rule id 'a'"):
        parse_rules({"rule": [{"id": "a", "kind": "no_data"}, {"id": "a", "kind": "no_data"}]})
    with pytest.raises(
        RulesError, match=r"rule\[0\] 'has space' \(no_data\): id: String should match pattern"
    ):
        parse_rules({"rule": [{"id": "has space", "kind": "no_data"}]})
    broken = tmp_path / "rules.toml"
    broken.write_text("[[rule]]\nid = 'x'\nkind = threshold\n")
    with pytest.raises(RulesError, match=r"rules.toml: not valid TOML"):
        load_rules(broken)
    with pytest.raises(RulesError, match="no such rules file"):
        load_rules(tmp_path / "missing.toml")


def test_cli_reports_the_bad_field(tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(
        '[[rule]]\nid = "vib"\nkind = "threshold"\nvalue = "vibration_mm_s"\nabove = 4.5\nfor = "ten minutes"\n'
    )
    result = CliRunner().invoke(
        app, ["alerts", "evaluate", "--from", "now-1h", "--to", "now", "--rules", str(rules)]
    )
    assert result.exit_code == 2
    assert "rule[0] 'vib' (threshold): for: 'ten minutes' is not a duration" in result.output
