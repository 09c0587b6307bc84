"""Grafana dashboards as code, built with grafana-foundation-sdk.

>>> from dashboards import build_all, render
>>> boards = build_all()
>>> sorted(boards)
['fleet-overview.json', 'ingest-health.json', 'machine-detail.json', 'usage-billing.json']

``runhours dashboards build`` writes them to ``dashboards/generated/``, which Grafana
provisions (``deploy/grafana/``). Queries are InfluxQL against the schema in
``store/schema.py`` (documented in ``docs/schema.md``); only ``store`` names are used.
"""

from dashboards.build import GENERATED_DIR, build_all, render, write_all
from dashboards.contracts import ContractView
from dashboards.influxql import DATASOURCE, DATASOURCE_UID, InfluxQuery, register

register()

__all__ = [
    "DATASOURCE",
    "DATASOURCE_UID",
    "GENERATED_DIR",
    "ContractView",
    "InfluxQuery",
    "build_all",
    "register",
    "render",
    "write_all",
]
