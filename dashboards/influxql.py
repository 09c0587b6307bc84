"""InfluxQL query targets and annotations for the foundation SDK, which has none.

Grafana's InfluxDB data source (InfluxQL mode) stores a raw query as a target
``{"refId", "datasource", "query", "rawQuery": true, "resultFormat", "alias"}``. The SDK
only knows the data sources it generates code for, so this module adds the model, a
builder, and registers the model so ``Dashboard.from_json`` reads our targets back as
``InfluxQuery`` instead of an untyped bag.
"""

from __future__ import annotations

from typing import Any, Literal, Self

from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import runtime as cogruntime
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models import dashboard as model

# The provisioned data source (deploy/grafana/provisioning/datasources/influxdb.yaml).
DATASOURCE_TYPE = "influxdb"
DATASOURCE_UID = "runhours-influxdb"
DATASOURCE = model.DataSourceRef(type_val=DATASOURCE_TYPE, uid=DATASOURCE_UID)

ResultFormat = Literal["time_series", "table", "logs"]


class InfluxQuery(cogvariants.Dataquery):
    """One raw InfluxQL target of a panel."""

    def __init__(
        self,
        query: str = "",
        ref_id: str = "A",
        result_format: ResultFormat = "time_series",
        alias: str | None = None,
        datasource: model.DataSourceRef | None = None,
        raw_query: bool = True,
        hide: bool | None = None,
    ) -> None:
        self.query = query
        self.ref_id = ref_id
        self.result_format: ResultFormat = result_format
        self.alias = alias
        self.datasource = datasource if datasource is not None else DATASOURCE
        self.raw_query = raw_query
        self.hide = hide

    def to_json(self) -> dict[str, object]:
        payload: dict[str, object] = {
            "datasource": self.datasource,
            "query": self.query,
            "rawQuery": self.raw_query,
            "refId": self.ref_id,
            "resultFormat": self.result_format,
        }
        if self.alias is not None:
            payload["alias"] = self.alias
        if self.hide is not None:
            payload["hide"] = self.hide
        return payload

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        datasource = data.get("datasource")
        return cls(
            query=data.get("query", ""),
            ref_id=data.get("refId", "A"),
            result_format=data.get("resultFormat", "time_series"),
            alias=data.get("alias"),
            datasource=model.DataSourceRef.from_json(datasource) if datasource else None,
            raw_query=data.get("rawQuery", True),
            hide=data.get("hide"),
        )


class InfluxQL(cogbuilder.Builder[cogvariants.Dataquery]):
    """Builder for an ``InfluxQuery``: ``InfluxQL("SELECT …").ref_id("B").table()``."""

    def __init__(self, query: str) -> None:
        self._internal = InfluxQuery(query=query)

    def build(self) -> InfluxQuery:
        return self._internal

    def ref_id(self, ref_id: str) -> Self:
        self._internal.ref_id = ref_id
        return self

    def alias(self, alias: str) -> Self:
        """Series name; Grafana fills in ``$tag_machine``, ``$col`` and the like."""
        self._internal.alias = alias
        return self

    def table(self) -> Self:
        """Return rows (tags as columns) instead of time series."""
        self._internal.result_format = "table"
        return self


class InfluxAnnotation(model.AnnotationQuery):
    """A dashboard annotation read by an InfluxQL query (the SDK model has no query)."""

    def __init__(
        self,
        name: str = "",
        query: str = "",
        text_column: str = "",
        tags_column: str = "",
        icon_color: str = "red",
        enable: bool = True,
    ) -> None:
        super().__init__(name=name, datasource=DATASOURCE, enable=enable, icon_color=icon_color)
        self.query = query
        self.text_column = text_column
        self.tags_column = tags_column

    def to_json(self) -> dict[str, object]:
        payload = super().to_json()
        # Grafana reads the legacy top-level `query` and migrates it into `target`;
        # writing both keeps older and newer Grafana versions happy.
        payload["query"] = self.query
        payload["textColumn"] = self.text_column
        payload["tagsColumn"] = self.tags_column
        payload["target"] = {
            "query": self.query,
            "rawQuery": True,
            "refId": "Anno",
            "resultFormat": "table",
        }
        return payload


class Annotation(cogbuilder.Builder[model.AnnotationQuery]):
    """Builder for an ``InfluxAnnotation``."""

    def __init__(self, name: str, query: str) -> None:
        self._internal = InfluxAnnotation(name=name, query=query)

    def build(self) -> InfluxAnnotation:
        return self._internal

    def text(self, column: str) -> Self:
        self._internal.text_column = column
        return self

    def tags(self, columns: str) -> Self:
        """Comma-separated columns whose values become the annotation's tags."""
        self._internal.tags_column = columns
        return self

    def color(self, color: str) -> Self:
        self._internal.icon_color = color
        return self


def register() -> None:
    """Make ``Dashboard.from_json`` decode InfluxDB targets as ``InfluxQuery``."""
    cogruntime.register_dataquery_variant(
        cogruntime.DataqueryConfig(identifier=DATASOURCE_TYPE, from_json_hook=InfluxQuery.from_json)
    )
