"""Analytics over stored telemetry: usage-hours, billing, alert rules and their lifecycle.

Subpackages and modules meet the rest of runhours only through ``store`` (InfluxDB),
``wire`` and ``common``; see docs/design.md for the layers.
"""
