"""Panel factories: every panel gets the InfluxDB data source, a title, a unit and a size.

Keeping these in one place is what lets a test promise that *every* panel of every
dashboard has a data source and a unit.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol, Self, TypeVar

from grafana_foundation_sdk.builders import bargauge, stat, statetimeline, table, timeseries
from grafana_foundation_sdk.builders import common as common_builder
from grafana_foundation_sdk.builders import dashboard as dashboard_builder
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model

from dashboards.influxql import DATASOURCE
from dashboards.signals import STATE_COLORS
from dashboards.thresholds import Level

Target = cogbuilder.Builder[cogvariants.Dataquery]


class _Panel(Protocol):
    def title(self, title: str) -> Self: ...
    def description(self, description: str) -> Self: ...
    def datasource(self, datasource: model.DataSourceRef) -> Self: ...
    def unit(self, unit: str) -> Self: ...
    def span(self, w: int) -> Self: ...
    def height(self, h: int) -> Self: ...
    def with_target(self, target: Target) -> Self: ...


P = TypeVar("P", bound=_Panel)


def _setup(
    panel: P,
    title: str,
    unit: str,
    targets: Iterable[Target],
    description: str,
    width: int,
    height: int,
) -> P:
    panel = panel.title(title).datasource(DATASOURCE).unit(unit).span(width).height(height)
    if description:
        panel = panel.description(description)
    for target in targets:
        panel = panel.with_target(target)
    return panel


def level_thresholds(
    levels: Iterable[Level], base: str = "green"
) -> dashboard_builder.ThresholdsConfig:
    """Absolute thresholds: ``base`` below the first level, each level's colour above it."""
    steps = [model.Threshold(value=None, color=base)]
    steps += [model.Threshold(value=level.value, color=level.color) for level in levels]
    return dashboard_builder.ThresholdsConfig().mode(model.ThresholdsMode.ABSOLUTE).steps(steps)


def value_mappings(texts: Mapping[str, tuple[str, str]]) -> list[model.ValueMapping]:
    """Map raw values to (display text, colour)."""
    options = {
        value: model.ValueMappingResult(text=text, color=color, index=i)
        for i, (value, (text, color)) in enumerate(texts.items())
    }
    return [model.ValueMap(options=options)]


STATE_MAPPINGS = value_mappings({s: (s, c) for s, c in STATE_COLORS.items()})
ONLINE_MAPPINGS = value_mappings({"1": ("online", "green"), "0": ("offline", "red")})


def time_series(
    title: str,
    unit: str,
    *targets: Target,
    description: str = "",
    levels: Iterable[Level] = (),
    below_levels: str = "green",
    bars: bool = False,
    width: int = 12,
    height: int = 8,
) -> timeseries.Panel:
    """Lines over time; ``levels`` are drawn as dashed threshold lines."""
    panel = _setup(timeseries.Panel(), title, unit, targets, description, width, height)
    panel = panel.legend(
        common_builder.VizLegendOptions()
        .display_mode(common.LegendDisplayMode.LIST)
        .placement(common.LegendPlacement.BOTTOM)
        .show_legend(True)
    ).tooltip(
        common_builder.VizTooltipOptions()
        .mode(common.TooltipDisplayMode.MULTI)
        .sort(common.SortOrder.DESCENDING)
    )
    levels = tuple(levels)
    if levels:
        panel = panel.thresholds(level_thresholds(levels, below_levels)).thresholds_style(
            common_builder.GraphThresholdsStyleConfig().mode(common.GraphTresholdsStyleMode.DASHED)
        )
    if bars:
        panel = panel.draw_style(common.GraphDrawStyle.BARS).fill_opacity(80)
    else:
        panel = panel.span_nulls(False)
    return panel


def single_stat(
    title: str,
    unit: str,
    *targets: Target,
    description: str = "",
    calc: str = "lastNotNull",
    mappings: list[model.ValueMapping] | None = None,
    width: int = 6,
    height: int = 5,
) -> stat.Panel:
    """Big numbers, one per series (``calc`` reduces each series to one value)."""
    panel = _setup(stat.Panel(), title, unit, targets, description, width, height)
    panel = panel.reduce_options(common_builder.ReduceDataOptions().calcs([calc])).graph_mode(
        common.BigValueGraphMode.NONE
    )
    if mappings:
        panel = panel.mappings(mappings).color_mode(common.BigValueColorMode.BACKGROUND)
    return panel


def bar_gauge(
    title: str,
    unit: str,
    *targets: Target,
    description: str = "",
    levels: Iterable[Level] = (),
    width: int = 12,
    height: int = 8,
) -> bargauge.Panel:
    """Horizontal bars, one per series (e.g. per machine), last value each."""
    panel = _setup(bargauge.Panel(), title, unit, targets, description, width, height)
    panel = (
        panel.orientation(common.VizOrientation.HORIZONTAL)
        .display_mode(common.BarGaugeDisplayMode.BASIC)
        .reduce_options(common_builder.ReduceDataOptions().calcs(["lastNotNull"]))
        .min(0)
    )
    levels = tuple(levels)
    if levels:
        panel = panel.thresholds(level_thresholds(levels))
    return panel


def state_timeline(
    title: str,
    *targets: Target,
    description: str = "",
    width: int = 24,
    height: int = 8,
) -> statetimeline.Panel:
    """Coloured bands per series: one row per machine, one colour per state."""
    panel = _setup(statetimeline.Panel(), title, "string", targets, description, width, height)
    return (
        panel.mappings(STATE_MAPPINGS)
        .show_value(common.VisibilityMode.NEVER)
        .merge_values(True)
        .line_width(0)
        .fill_opacity(80)
    )


def table_panel(
    title: str,
    unit: str,
    *targets: Target,
    description: str = "",
    width: int = 24,
    height: int = 8,
) -> table.Panel:
    """Rows as the query returns them (use ``InfluxQL(...).table()`` targets)."""
    return _setup(table.Panel(), title, unit, targets, description, width, height).show_header(True)
