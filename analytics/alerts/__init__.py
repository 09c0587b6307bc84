"""Maintenance and condition alerts: rules, evaluation, lifecycle, state and delivery.

>>> from analytics.alerts import load_rules, replay
>>> rules = load_rules(Path("examples/rules.toml"))          # doctest: +SKIP
>>> result = replay(client, rules, start, end)                # doctest: +SKIP
>>> for alert in result.alerts: print(alert.machine, alert.rule, alert.started_at)

The pieces, one per module: ``rules`` (the TOML format), ``conditions`` (what each
rule kind says at a step), ``drift`` (reference statistics, CUSUM, trend lines),
``lifecycle`` (pending → firing → resolved), ``engine`` (``evaluate``: rules × data
window × previous state → transitions), ``source`` (reading windows from InfluxDB),
``samples`` (the same windows from samples in memory), ``store`` (the SQLite file of
alert state, made of ``schema``, ``history``, ``engine_state`` and the delivery
``outbox``), ``delivery`` (MQTT, InfluxDB, webhook), ``maintenance`` (service records),
``replay`` (history replays and the demo's summary), ``backtest`` (scoring rules against
known failures).
"""

from analytics.alerts.backtest import Failure, Scoreboard, backtest, score
from analytics.alerts.engine import Evaluation, evaluate
from analytics.alerts.history import AlertError, AlertNotFound
from analytics.alerts.maintenance import (
    MaintenanceError,
    MaintenanceRecord,
    maintenance_records,
    record_maintenance,
)
from analytics.alerts.model import Alert, EngineState, Transition
from analytics.alerts.replay import (
    Replay,
    demo_alerts,
    first_condition_alert,
    lead_time,
    replay,
)
from analytics.alerts.rules import (
    DEFAULT_RULES,
    AnomalyRule,
    Bands,
    Forecast,
    NoDataRule,
    Rule,
    RulesError,
    RuleSet,
    ServiceIntervalRule,
    ThresholdRule,
    load_rules,
    parse_rules,
)
from analytics.alerts.samples import window_from_samples
from analytics.alerts.source import WindowSource, load_window
from analytics.alerts.store import AlertStore

__all__ = [
    "DEFAULT_RULES",
    "Alert",
    "AlertError",
    "AlertNotFound",
    "AlertStore",
    "AnomalyRule",
    "Bands",
    "EngineState",
    "Evaluation",
    "Failure",
    "Forecast",
    "MaintenanceError",
    "MaintenanceRecord",
    "NoDataRule",
    "Replay",
    "Rule",
    "RuleSet",
    "RulesError",
    "Scoreboard",
    "ServiceIntervalRule",
    "ThresholdRule",
    "Transition",
    "WindowSource",
    "backtest",
    "demo_alerts",
    "evaluate",
    "first_condition_alert",
    "lead_time",
    "load_rules",
    "load_window",
    "maintenance_records",
    "parse_rules",
    "record_maintenance",
    "replay",
    "score",
    "window_from_samples",
]
