"""The interaction heatmap from an ``AssessmentResults`` JSON document: its grid, its Plotly figure and the
cell a click selects.

Rows are defenses, columns are risks (one per attack). Every number and colour follows the engine's one
display convention (``amulet.assess``: ``format_value``, ``format_change``, ``cell_label``, ``cell_colour``),
the same as the HTML and PDF reports: a change is *defended - baseline* in the metric's own unit ("+6.45 pts"
for a % metric, "-0.035" for an AUC); a cell's fill is grey when its numbers must not be read (degenerate,
error, not run), neutral when the change is not significant, and otherwise red (more susceptible) or blue
(less) on a FIXED scale saturating at ``amulet.assess.SATURATION``. Intended cells (the defense targets that
risk) are outlined. Everything here is pure (plotly figures and plain data); the Results and Compare pages
draw them. The tables beside the heatmap are in :mod:`dashboard.result_tables`, the comparison of two runs in
:mod:`dashboard.comparison`.

Example:
    >>> results = {"rows": [{"name": "baseline"}, {"name": "dp"}], "columns": [{"label": "mi (lira)"}],
    ...            "matrix": [{"row": "dp", "column": "mi (lira)", "risk": "mi", "attack": "lira",
    ...                        "metric": "auc", "intended": True, "susceptibility_change": -0.1, "delta": -0.1,
    ...                        "direction": "less_susceptible", "status": "ok", "significant": True}]}
    >>> grid = matrix_grid(results)
    >>> grid.rows, grid.columns, grid.z, grid.labels
    (['dp'], ['mi (lira)'], [[-0.1]], [['-0.100*']])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import plotly.graph_objects as go

from amulet.assess import SATURATION, cell_colour, cell_label, format_change, format_interval, format_value
from dashboard.labels import BASELINE, DIRECTION_LABELS, number, with_significance

__all__ = ["MatrixGrid", "heatmap_figure", "matrix_grid", "scale_caption", "selected_cell"]

#: Fill of a grid position with no matrix cell at all.
_EMPTY = "#ffffff"


@dataclass
class MatrixGrid:
    """The heatmap's data for ``rows[i]`` x ``columns[j]``.

    ``z``: the change in susceptibility (``None`` where not measured); ``colours``/``labels``: each cell's
    fill and text from the engine's ``cell_colour``/``cell_label``; ``cells``: the matrix cells themselves.
    """

    rows: list[str]
    columns: list[str]
    z: list[list[float | None]]
    intended: list[list[bool]]
    cells: list[list[dict[str, Any] | None]]
    colours: list[list[str]]
    labels: list[list[str]]

    def cell(self, row: str, column: str) -> dict[str, Any] | None:
        """The matrix cell at ``row`` x ``column``."""
        return self.cells[self.rows.index(row)][self.columns.index(column)]


def matrix_grid(results: Mapping[str, Any]) -> MatrixGrid:
    """Lay ``results["matrix"]`` out as a grid (defense rows in plan order, columns in spec order)."""
    rows = [r["name"] for r in results.get("rows", []) if r.get("name") != BASELINE]
    columns = [c["label"] for c in results.get("columns", [])]
    by_key = {(m["row"], m["column"]): with_significance(m) for m in results.get("matrix", [])}
    for m in results.get("matrix", []):  # tolerate matrices naming rows/columns the lists miss
        if m["row"] not in rows:
            rows.append(m["row"])
        if m["column"] not in columns:
            columns.append(m["column"])
    z: list[list[float | None]] = []
    intended: list[list[bool]] = []
    cells: list[list[dict[str, Any] | None]] = []
    colours: list[list[str]] = []
    labels: list[list[str]] = []
    for row in rows:
        cell_row = [by_key.get((row, column)) for column in columns]
        cells.append(cell_row)
        z.append([number(c.get("susceptibility_change")) if c else None for c in cell_row])
        intended.append([bool(c and c.get("intended")) for c in cell_row])
        colours.append([cell_colour(c) if c else _EMPTY for c in cell_row])
        labels.append([cell_label(c) if c else "" for c in cell_row])
    return MatrixGrid(rows=rows, columns=columns, z=z, intended=intended, cells=cells, colours=colours, labels=labels)


def _hover(cell: Mapping[str, Any] | None, row: str, column: str) -> str:
    if not cell:
        return f"{row} x {column}<br>not measured"
    unit = str(cell.get("unit") or "")
    lines = [
        f"<b>{row}</b> x <b>{column}</b>" + (" (intended)" if cell.get("intended") else " (unintended)"),
        f"{cell.get('metric')}: {format_value(cell.get('value'), unit)} "
        f"{format_interval(cell.get('ci_low'), cell.get('ci_high'), unit)}",
        f"baseline: {format_value(cell.get('baseline'), unit)}",
        f"change (defended - baseline): {format_change(cell.get('delta'), unit)} "
        f"{format_interval(cell.get('delta_ci_low'), cell.get('delta_ci_high'), unit, change=True)}",
        DIRECTION_LABELS.get(str(cell.get("direction")), str(cell.get("direction"))),
    ]
    if cell.get("status", "ok") != "ok":
        lines.append(f"<b>{cell.get('status')}</b>: {cell.get('reason') or 'no reason recorded'}")
    return "<br>".join(lines)


def _discrete_scale(colours: list[str]) -> list[list[Any]]:
    """A step colour scale giving each index ``i`` of ``colours`` exactly ``colours[i]`` (z = i)."""
    n = len(colours)
    scale: list[list[Any]] = []
    for i, colour in enumerate(colours):
        scale.append([i / n, colour])
        scale.append([(i + 1) / n, colour])
    return scale


def scale_caption() -> str:
    """The legend of the heatmap's colours (the fixed scale every report uses)."""
    return (
        "Cell text: change defended - baseline in the metric's unit (pts = percentage points), * = significant at "
        "5% across seeds. Colour: red more susceptible, blue less, on a fixed scale that saturates at a change "
        f"in susceptibility of {SATURATION * 100:.0f} pts (or {SATURATION:.2f} for unitless metrics such as AUC); "
        "neutral: not significant; grey: degenerate model, error or not run (hover for the reason)."
    )


def heatmap_figure(grid: MatrixGrid, *, title: str = "", height: int | None = None) -> Any:
    """A Plotly heatmap of ``grid``: each cell drawn in its ``cell_colour``, labelled ``cell_label``, intended
    cells outlined.

    A second, invisible scatter trace puts one clickable marker on each cell, its ``customdata``
    ``[row, column]``, so that a click (Streamlit's ``on_select``) identifies the cell.
    """
    palette = sorted({c for row in grid.colours for c in row}) or [_EMPTY]
    index = {colour: i for i, colour in enumerate(palette)}
    hover = [[_hover(c, r, col) for c, col in zip(row, grid.columns)] for row, r in zip(grid.cells, grid.rows)]
    customdata = [[[r, col] for col in grid.columns] for r in grid.rows]
    figure = go.Heatmap(
        z=[[index[c] + 0.5 for c in row] for row in grid.colours],
        x=grid.columns,
        y=grid.rows,
        zmin=0,
        zmax=len(palette),
        colorscale=_discrete_scale(palette),
        showscale=False,
        text=grid.labels,
        texttemplate="%{text}",
        hovertext=hover,
        hoverinfo="text",
        customdata=customdata,
        xgap=2,
        ygap=2,
    )
    fig = go.Figure(figure)
    # Plotly reports no selection for heatmap traces (Streamlit's on_select then gets 0 points), so each
    # cell also carries an invisible square marker at its centre: clicking it selects a scatter point whose
    # customdata names the cell.
    fig.add_trace(
        go.Scatter(
            x=[col for _ in grid.rows for col in grid.columns],
            y=[r for r in grid.rows for _ in grid.columns],
            mode="markers",
            marker={"symbol": "square", "size": 46, "color": "rgba(0,0,0,0)"},
            selected={"marker": {"opacity": 1}},
            unselected={"marker": {"opacity": 1}},
            customdata=[[r, col] for r in grid.rows for col in grid.columns],
            hovertext=[text for row in hover for text in row],
            hoverinfo="text",
            showlegend=False,
            name="cells",
        )
    )
    for i, row in enumerate(grid.intended):
        for j, intended in enumerate(row):
            if intended:
                fig.add_shape(
                    type="rect",
                    x0=j - 0.5,
                    x1=j + 0.5,
                    y0=i - 0.5,
                    y1=i + 0.5,
                    line={"color": "#111111", "width": 3},
                    xref="x",
                    yref="y",
                )
    fig.update_layout(
        title={"text": title} if title else None,
        height=height or max(260, 110 + 60 * len(grid.rows)),
        margin={"l": 10, "r": 10, "t": 40 if title else 10, "b": 10},
        # Column labels break before the attack's name ("evasion<br>(pgd)") so that neighbours do not overlap.
        xaxis={
            "side": "top",
            "tickangle": 0,
            "automargin": True,
            "tickmode": "array",
            "tickvals": grid.columns,
            "ticktext": [c.replace("_", " ").replace(" (", "<br>(") for c in grid.columns],
        },
        yaxis={"autorange": "reversed", "automargin": True},
        clickmode="event+select",
    )
    return fig


def selected_cell(event: Any) -> tuple[str, str] | None:
    """``(row, column)`` of the heatmap point a Streamlit ``on_select`` event selected, if any."""
    try:
        points = event["selection"]["points"]
    except (KeyError, TypeError):
        try:
            points = event.selection.points
        except AttributeError:
            return None
    for point in points or []:
        custom = point.get("customdata")
        if isinstance(custom, Sequence) and len(custom) == 2:
            return str(custom[0]), str(custom[1])
        if "x" in point and "y" in point:
            return str(point["y"]), str(point["x"])
    return None
