"""Small constructors over ``grafana-foundation-sdk`` builders, with anju's conventions.

Every panel queries the VictoriaMetrics datasource by its stable uid; every target names the
datasource too (Grafana otherwise falls back to the default one); every threshold, unit and
value mapping is set here in one way, so the four boards look alike.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Protocol, Self, TypeVar

from grafana_foundation_sdk.builders import bargauge, prometheus, stat, statetimeline, table
from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dashboard_builders
from grafana_foundation_sdk.builders import timeseries as timeseries_builders
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as dashboard_models
from grafana_foundation_sdk.models import prometheus as prometheus_models

# The VictoriaMetrics datasource (Grafana's Prometheus plugin on VictoriaMetrics' query API).
VM_DATASOURCE_NAME = "anju-vm"
VM_DATASOURCE_UID = "anju-vm"
VM_DATASOURCE_TYPE = "prometheus"

# What "All" means for a template variable: a regex that also matches a missing label.
ALL_VALUE = ".*"
GRID_WIDTH = 24

Steps = Sequence[tuple[float | None, str]]


def vm_datasource() -> dashboard_models.DataSourceRef:
    """A reference to the VictoriaMetrics datasource by its stable uid."""
    return dashboard_models.DataSourceRef(type_val=VM_DATASOURCE_TYPE, uid=VM_DATASOURCE_UID)


@dataclasses.dataclass(frozen=True, slots=True)
class Query:
    """One PromQL target of a panel.

    Attributes:
        expr: the PromQL expression; may use ``$site``, ``$grid``, ``$building``,
            ``$__interval`` and ``$__range``.
        legend: Grafana's legend format (``{{label}}`` placeholders); None shows all labels.
        instant: one value per series at the end of the range instead of a time series.
        table: return a table frame (labels as columns), for table panels.
    """

    expr: str
    legend: str | None = None
    instant: bool = False
    table: bool = False

    def target(self, ref_id: str) -> prometheus.Dataquery:
        """The Prometheus dataquery builder for this query."""
        query = (
            prometheus.Dataquery()
            .ref_id(ref_id)
            .datasource(vm_datasource())
            .expr(self.expr)
            .editor_mode(prometheus_models.QueryEditorMode.CODE)
        )
        query = query.instant() if self.instant else query.range()
        if self.legend is not None:
            query = query.legend_format(self.legend)
        if self.table:
            query = query.format(prometheus_models.PromQueryFormat.TABLE)
        return query


class _PanelBuilder(Protocol):
    """What every panel builder of the SDK offers (structurally; the SDK has no common base)."""

    def title(self, title: str) -> Self: ...
    def description(self, description: str) -> Self: ...
    def datasource(self, datasource: dashboard_models.DataSourceRef) -> Self: ...
    def with_target(self, target: cogbuilder.Builder[cogvariants.Dataquery]) -> Self: ...
    def height(self, h: int) -> Self: ...
    def span(self, w: int) -> Self: ...
    def unit(self, unit: str) -> Self: ...
    def decimals(self, decimals: float) -> Self: ...
    def thresholds(
        self, thresholds: cogbuilder.Builder[dashboard_models.ThresholdsConfig]
    ) -> Self: ...
    def mappings(self, mappings: list[dashboard_models.ValueMapping]) -> Self: ...
    def no_value(self, no_value: str) -> Self: ...


P = TypeVar("P", bound=_PanelBuilder)


@dataclasses.dataclass(frozen=True, slots=True)
class Look:
    """How a panel shows its values.

    Attributes:
        unit: Grafana's unit id (``celsius``, ``s``, ``none``, ``suffix:%LEL``).
        steps: threshold steps ``(lower bound, colour)``; the first bound is None.
        mappings: value → (text, colour), e.g. ``{"1": ("SMOKE", "red")}``.
        decimals: fixed decimals, or None for Grafana's choice.
        no_value: what to show when a query returns nothing.
    """

    unit: str = "none"
    steps: Steps = ((None, "green"),)
    mappings: dict[str, tuple[str, str]] = dataclasses.field(default_factory=dict)
    decimals: int | None = None
    no_value: str | None = None


def _thresholds(steps: Steps) -> dashboard_builders.ThresholdsConfig:
    return (
        dashboard_builders.ThresholdsConfig()
        .mode(dashboard_models.ThresholdsMode.ABSOLUTE)
        .steps([dashboard_models.Threshold(value=value, color=color) for value, color in steps])
    )


def _value_mappings(mappings: dict[str, tuple[str, str]]) -> list[dashboard_models.ValueMapping]:
    options = {
        value: dashboard_models.ValueMappingResult(text=text, color=color, index=index)
        for index, (value, (text, color)) in enumerate(mappings.items())
    }
    return [dashboard_models.ValueMap(options=options)]


def _setup(
    panel: P,
    title: str,
    description: str,
    queries: Sequence[Query],
    look: Look,
    width: int,
    height: int,
) -> P:
    if not 0 < width <= GRID_WIDTH:
        raise ValueError(f"panel {title!r}: width {width} is not in 1..{GRID_WIDTH}")
    panel = (
        panel.title(title)
        .description(description)
        .datasource(vm_datasource())
        .span(width)
        .height(height)
        .unit(look.unit)
        .thresholds(_thresholds(look.steps))
    )
    for index, query in enumerate(queries):
        panel = panel.with_target(query.target(chr(ord("A") + index)))
    if look.mappings:
        panel = panel.mappings(_value_mappings(look.mappings))
    if look.decimals is not None:
        panel = panel.decimals(look.decimals)
    if look.no_value is not None:
        panel = panel.no_value(look.no_value)
    return panel


def timeseries(
    title: str,
    description: str,
    queries: Sequence[Query],
    look: Look | None = None,
    *,
    bars: bool = False,
    stacked: bool = False,
    show_thresholds: bool = False,
    min_interval: str | None = None,
    width: int = 12,
    height: int = 8,
) -> timeseries_builders.Panel:
    """A time-series panel (lines, or bars for event counts per interval).

    Args:
        title: the panel's title.
        description: the panel's tooltip: what it shows and how to read it.
        queries: its targets (range queries).
        look: unit, thresholds and mappings.
        bars: draw bars (counts per interval) instead of lines.
        stacked: stack the series.
        show_thresholds: draw the threshold levels as dashed lines.
        min_interval: the panel's minimum ``$__interval`` (``"12h"`` for 12-hour windows).
        width: grid columns (1..24).
        height: grid rows.
    """
    panel = _setup(
        timeseries_builders.Panel(),
        title,
        description,
        queries,
        look or Look(),
        width,
        height,
    )
    panel = panel.legend(
        common_builders.VizLegendOptions()
        .display_mode(common.LegendDisplayMode.LIST)
        .placement(common.LegendPlacement.BOTTOM)
        .show_legend(True)
    ).tooltip(
        common_builders.VizTooltipOptions()
        .mode(common.TooltipDisplayMode.MULTI)
        .sort(common.SortOrder.DESCENDING)
    )
    if bars:
        panel = panel.draw_style(common.GraphDrawStyle.BARS).fill_opacity(80).line_width(1)
    else:
        panel = panel.draw_style(common.GraphDrawStyle.LINE).fill_opacity(10).line_width(1)
    if stacked:
        panel = panel.stacking(
            common_builders.StackingConfig().mode(common.StackingMode.NORMAL).group("A")
        )
    if show_thresholds:
        panel = panel.thresholds_style(
            common_builders.GraphThresholdsStyleConfig().mode(
                common.GraphThresholdsStyleMode.DASHED
            )
        )
    if min_interval is not None:
        panel = panel.interval(min_interval)
    return panel


def stat_panel(
    title: str,
    description: str,
    query: Query,
    look: Look | None = None,
    *,
    width: int = 4,
    height: int = 4,
) -> stat.Panel:
    """A single big number, coloured by its thresholds (for the wall)."""
    return (
        _setup(stat.Panel(), title, description, [query], look or Look(), width, height)
        .color_mode(common.BigValueColorMode.BACKGROUND)
        .graph_mode(common.BigValueGraphMode.NONE)
        .text_mode(common.BigValueTextMode.VALUE)
        .justify_mode(common.BigValueJustifyMode.CENTER)
        .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    )


def bar_gauge(
    title: str,
    description: str,
    query: Query,
    look: Look | None = None,
    *,
    width: int = 6,
    height: int = 8,
) -> bargauge.Panel:
    """Current values by place as horizontal bars coloured by their thresholds."""
    return (
        _setup(bargauge.Panel(), title, description, [query], look or Look(), width, height)
        .orientation(common.VizOrientation.HORIZONTAL)
        .display_mode(common.BarGaugeDisplayMode.BASIC)
        .show_unfilled(True)
        .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    )


def state_timeline(
    title: str,
    description: str,
    queries: Sequence[Query],
    look: Look | None = None,
    *,
    width: int = 12,
    height: int = 8,
) -> statetimeline.Panel:
    """States over time (for 0/1 detector values), coloured by value mappings."""
    return (
        _setup(statetimeline.Panel(), title, description, queries, look or Look(), width, height)
        .show_value(common.VisibilityMode.NEVER)
        .merge_values(True)
        .row_height(0.8)
    )


def table_panel(
    title: str,
    description: str,
    query: Query,
    look: Look | None = None,
    *,
    value_column: str,
    hide: Iterable[str] = (),
    sort_descending: bool = True,
    color_cells: bool = False,
    width: int = 24,
    height: int = 8,
) -> table.Panel:
    """A table of an instant query: one row per series, its labels as columns.

    Args:
        title: the panel's title.
        description: the panel's tooltip.
        query: an instant, table-format query.
        look: unit, thresholds (used to colour the value cells) and mappings.
        value_column: the header of the value column (Grafana calls it "Value").
        hide: more columns to hide besides the time.
        sort_descending: sort rows by value, largest first (else smallest first).
        color_cells: colour the value cells by the thresholds.
        width: grid columns.
        height: grid rows.
    """
    excluded = {"Time": True, **dict.fromkeys(hide, True)}
    organize = dashboard_models.DataTransformerConfig(
        id_val="organize",
        options={"excludeByName": excluded, "renameByName": {"Value": value_column}},
    )
    panel = (
        _setup(table.Panel(), title, description, [query], look or Look(), width, height)
        .with_transformation(organize)
        .sort_by(
            [
                common_builders.TableSortByFieldState()
                .display_name(value_column)
                .desc(sort_descending)
            ]
        )
    )
    if color_cells:
        panel = panel.override_by_name(
            value_column,
            [
                dashboard_models.DynamicConfigValue(
                    id_val="custom.cellOptions",
                    value=common.TableColoredBackgroundCellOptions(
                        mode=common.TableCellBackgroundDisplayMode.BASIC
                    ),
                )
            ],
        )
    return panel


def query_variable(name: str, label: str, query: str) -> dashboard_builders.QueryVariable:
    """A multi-value template variable filled by a ``label_values(...)`` query.

    "All" is selected by default and expands to ``.*``, so panels match every value, including
    series that lack the label.
    """
    return (
        dashboard_builders.QueryVariable(name)
        .label(label)
        .datasource(vm_datasource())
        .query(query)
        .refresh(dashboard_models.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dashboard_models.VariableSort.NATURAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(ALL_VALUE)
        .current(dashboard_models.VariableOption(selected=True, text="All", value="$__all"))
    )


def _builtin_annotations() -> dashboard_builders.AnnotationQuery:
    return (
        dashboard_builders.AnnotationQuery()
        .name("Annotations & Alerts")
        .datasource(dashboard_models.DataSourceRef(type_val="grafana", uid="-- Grafana --"))
        .enable(True)
        .hide(True)
        .icon_color("rgba(0, 211, 255, 1)")
        .type("dashboard")
        .built_in(1)
        .target(
            dashboard_builders.AnnotationTarget()
            .limit(100)
            .match_any(False)
            .tags([])
            .type("dashboard")
        )
    )


@dataclasses.dataclass(frozen=True, slots=True)
class Row:
    """A titled row of panels, laid out left to right and wrapped at 24 columns."""

    title: str
    panels: Sequence[cogbuilder.Builder[dashboard_models.Panel]]


def dashboard(
    *,
    uid: str,
    title: str,
    description: str,
    tags: Sequence[str],
    refresh: str,
    time_from: str,
    variables: Sequence[dashboard_builders.QueryVariable],
    rows: Sequence[Row],
) -> dashboard_models.Dashboard:
    """A dashboard model with anju's conventions.

    It has the template variables, Grafana's built-in annotations, a link menu to the other
    anju boards, and the rows; panel ids are numbered 1, 2, … in layout order.
    """
    builder = (
        dashboard_builders.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(list(tags))
        .refresh(refresh)
        .time(time_from, "now")
        .timezone("browser")
        .tooltip(dashboard_models.DashboardCursorSync.CROSSHAIR)
        .readonly()
        .annotation(_builtin_annotations())
        .link(
            dashboard_builders.DashboardLink("anju")
            .type(dashboard_models.DashboardLinkType.DASHBOARDS)
            .tags(["anju"])
            .as_dropdown(True)
            .include_vars(True)
            .keep_time(True)
        )
    )
    for variable in variables:
        builder = builder.with_variable(variable)
    for row in rows:
        builder = builder.with_row(dashboard_builders.Row(row.title))
        for panel in row.panels:
            builder = builder.with_panel(panel)
    model = builder.build()
    for number, panel_model in enumerate(model.panels or [], start=1):
        panel_model.id_val = number
    return model
