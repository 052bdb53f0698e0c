"""The interaction heatmap and its drill-down, from an ``AssessmentResults`` JSON document.

Rows are defenses, columns are risks (one per attack), colour is the change in susceptibility against the
undefended baseline (``matrix[].susceptibility_change``: positive = the defense made the model MORE
susceptible; diverging scale centred at 0), intended cells (the defense targets that risk) are outlined.
Everything here is pure (plotly figures and pandas frames); the Results and Compare pages draw them.

Example:
    >>> results = {"rows": [{"name": "baseline"}, {"name": "dp"}], "columns": [{"label": "mi (lira)"}],
    ...            "matrix": [{"row": "dp", "column": "mi (lira)", "risk": "mi", "attack": "lira",
    ...                        "metric": "auc", "intended": True, "susceptibility_change": -0.1,
    ...                        "direction": "less_susceptible", "status": "ok"}]}
    >>> grid = matrix_grid(results)
    >>> grid.rows, grid.columns, grid.z
    (['dp'], ['mi (lira)'], [[-0.1]])
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "DIRECTION_LABELS",
    "MatrixGrid",
    "accuracy_table",
    "baseline_table",
    "cell_detail",
    "checks_table",
    "compare_grids",
    "heatmap_figure",
    "matrix_grid",
    "selected_cell",
]

BASELINE = "baseline"

DIRECTION_LABELS = {
    "more_susceptible": "▲ more susceptible",
    "less_susceptible": "▼ less susceptible",
    "no_significant_change": "= no significant change",
    "insufficient_data": "? too few seeds",
    "not_measured": "- not measured",
}
_DIRECTION_MARK = {
    "more_susceptible": "▲",
    "less_susceptible": "▼",
    "no_significant_change": "=",
    "insufficient_data": "?",
    "not_measured": "-",
}
VERDICT_LABELS = {"pass": "✅ pass", "fail": "❌ fail", "inconclusive": "⚠️ inconclusive", "not_run": "⏸ not run"}

# Red = more susceptible, blue = less; white at 0.
COLORSCALE = [[0.0, "#2166ac"], [0.25, "#92c5de"], [0.5, "#f7f7f7"], [0.75, "#f4a582"], [1.0, "#b2182b"]]


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def _fmt(value: Any, digits: int = 3) -> str:
    number = _num(value)
    return "—" if number is None else f"{number:+.{digits}g}" if digits < 0 else f"{number:.{digits}f}"


@dataclass
class MatrixGrid:
    """The heatmap's data: ``z[i][j]`` for ``rows[i]`` x ``columns[j]`` (``None`` where not measured)."""

    rows: list[str]
    columns: list[str]
    z: list[list[float | None]]
    intended: list[list[bool]]
    cells: list[list[dict[str, Any] | None]]

    def cell(self, row: str, column: str) -> dict[str, Any] | None:
        """The matrix cell at ``row`` x ``column``."""
        return self.cells[self.rows.index(row)][self.columns.index(column)]


def matrix_grid(results: Mapping[str, Any]) -> MatrixGrid:
    """Lay ``results["matrix"]`` out as a grid (defense rows in plan order, columns in spec order)."""
    rows = [r["name"] for r in results.get("rows", []) if r.get("name") != BASELINE]
    columns = [c["label"] for c in results.get("columns", [])]
    by_key = {(m["row"], m["column"]): m for m in results.get("matrix", [])}
    for m in results.get("matrix", []):  # tolerate matrices naming rows/columns the lists miss
        if m["row"] not in rows:
            rows.append(m["row"])
        if m["column"] not in columns:
            columns.append(m["column"])
    z: list[list[float | None]] = []
    intended: list[list[bool]] = []
    cells: list[list[dict[str, Any] | None]] = []
    for row in rows:
        cell_row = [by_key.get((row, column)) for column in columns]
        cells.append(cell_row)
        z.append([_num(c.get("susceptibility_change")) if c else None for c in cell_row])
        intended.append([bool(c and c.get("intended")) for c in cell_row])
    return MatrixGrid(rows=rows, columns=columns, z=z, intended=intended, cells=cells)


def _cell_text(cell: Mapping[str, Any] | None) -> str:
    if not cell:
        return ""
    if cell.get("status") == "error":
        return "error"
    value = _num(cell.get("susceptibility_change"))
    if value is None:
        return "n/a"
    mark = _DIRECTION_MARK.get(str(cell.get("direction")), "")
    return f"{value:+.3f} {mark}"


def _hover(cell: Mapping[str, Any] | None, row: str, column: str) -> str:
    if not cell:
        return f"{row} x {column}<br>not measured"
    lines = [
        f"<b>{row}</b> x <b>{column}</b>" + (" (intended)" if cell.get("intended") else " (unintended)"),
        f"{cell.get('metric')}: {_fmt(cell.get('value'))} (baseline {_fmt(cell.get('baseline'))})",
        f"delta {_fmt(cell.get('delta'))} [{_fmt(cell.get('delta_ci_low'))}, {_fmt(cell.get('delta_ci_high'))}]",
        f"change in susceptibility {_fmt(cell.get('susceptibility_change'))}",
        DIRECTION_LABELS.get(str(cell.get("direction")), str(cell.get("direction"))),
    ]
    if cell.get("status") != "ok":
        lines.append(f"status: {cell.get('status')}")
    return "<br>".join(lines)


def heatmap_figure(grid: MatrixGrid, *, title: str = "", height: int | None = None) -> Any:
    """A Plotly heatmap of ``grid``: diverging colours centred at 0, intended cells outlined.

    Each cell's ``customdata`` is ``[row, column]`` so a click (Streamlit's ``on_select``) identifies it.
    """
    import plotly.graph_objects as go

    values = [abs(v) for r in grid.z for v in r if v is not None]
    bound = max(values) if values and max(values) > 0 else 1.0
    text = [[_cell_text(c) for c in row] for row in grid.cells]
    hover = [[_hover(c, r, col) for c, col in zip(row, grid.columns)] for row, r in zip(grid.cells, grid.rows)]
    customdata = [[[r, col] for col in grid.columns] for r in grid.rows]
    figure = go.Figure(
        go.Heatmap(
            z=[[v if v is not None else float("nan") for v in r] for r in grid.z],
            x=grid.columns,
            y=grid.rows,
            zmin=-bound,
            zmax=bound,
            zmid=0,
            colorscale=COLORSCALE,
            text=text,
            texttemplate="%{text}",
            hovertext=hover,
            hoverinfo="text",
            customdata=customdata,
            xgap=2,
            ygap=2,
            colorbar={"title": {"text": "Δ susceptibility"}, "thickness": 12},
        )
    )
    for i, row in enumerate(grid.intended):
        for j, intended in enumerate(row):
            if intended:
                figure.add_shape(
                    type="rect",
                    x0=j - 0.5,
                    x1=j + 0.5,
                    y0=i - 0.5,
                    y1=i + 0.5,
                    line={"color": "#111111", "width": 3},
                    xref="x",
                    yref="y",
                )
    figure.update_layout(
        title={"text": title} if title else None,
        height=height or max(260, 110 + 60 * len(grid.rows)),
        margin={"l": 10, "r": 10, "t": 40 if title else 10, "b": 10},
        xaxis={"side": "top", "tickangle": 0, "automargin": True},
        yaxis={"autorange": "reversed", "automargin": True},
        clickmode="event+select",
    )
    return figure


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


def _column(results: Mapping[str, Any], label: str) -> dict[str, Any]:
    for column in results.get("columns", []):
        if column.get("label") == label:
            return dict(column)
    raise KeyError(f"No column {label!r} in these results.")


def cell_detail(results: Mapping[str, Any], row: str, column: str) -> dict[str, Any]:
    """Everything the drill-down of one cell shows.

    Returns:
        A dict with ``cell`` (the matrix cell), ``column`` (risk/attack info with ``threat_model`` and
        ``params``), ``per_seed`` (list of ``{seed, metric, value, baseline, delta}``), ``summaries`` (one
        per headline metric with mean, interval, delta, its interval, p-value and direction),
        ``accuracy`` (the row's clean accuracy and its cost against the baseline) and ``errors`` (reasons
        of cells that did not run).
    """
    info = _column(results, column)
    risk, attack = info.get("risk"), info.get("attack")
    cell = next((m for m in results.get("matrix", []) if m.get("row") == row and m.get("column") == column), None)
    summaries = []
    for m in results.get("metrics", []):
        if m.get("row") == row and m.get("risk") == risk and m.get("attack") == attack and m.get("headline", True):
            delta = m.get("delta") or {}
            summaries.append(
                {
                    "metric": m.get("name") or m.get("metric"),
                    "key": m.get("metric"),
                    "unit": m.get("unit", ""),
                    "higher is riskier": m.get("higher_is_riskier"),
                    "mean": _num(m.get("mean")),
                    "95% CI": f"[{_fmt(m.get('ci_low'))}, {_fmt(m.get('ci_high'))}]",
                    "delta vs baseline": _num(delta.get("mean")),
                    "delta 95% CI": f"[{_fmt(delta.get('ci_low'))}, {_fmt(delta.get('ci_high'))}]",
                    "p-value": _num(delta.get("p_value")),
                    "direction": DIRECTION_LABELS.get(str(m.get("direction")), m.get("direction")),
                }
            )
    headline_keys = [s["key"] for s in summaries]
    per_seed = []
    own = {
        c["seed"]: c
        for c in results.get("cells", [])
        if (c.get("row"), c.get("risk"), c.get("attack")) == (row, risk, attack)
    }
    base = {
        c["seed"]: c
        for c in results.get("cells", [])
        if (c.get("row"), c.get("risk"), c.get("attack")) == (BASELINE, risk, attack)
    }
    errors = []
    for seed in sorted(own):
        c = own[seed]
        if c.get("status") != "ok":
            errors.append({"seed": seed, "status": c.get("status"), "reason": c.get("reason", "")})
        for key in headline_keys:
            value = _num((c.get("metrics") or {}).get(key))
            baseline = _num((base.get(seed, {}).get("metrics") or {}).get(key))
            per_seed.append(
                {
                    "seed": seed,
                    "metric": key,
                    "value": value,
                    "baseline": baseline,
                    "delta": None if value is None or baseline is None else value - baseline,
                }
            )
    accuracy = {}
    for a in results.get("accuracy", []):
        if a.get("row") in (row, BASELINE):
            accuracy[a["row"]] = a
    own_acc, base_acc = accuracy.get(row, {}), accuracy.get(BASELINE, {})
    delta = own_acc.get("delta") or {}
    return {
        "cell": cell,
        "column": info,
        "per_seed": per_seed,
        "summaries": summaries,
        "accuracy": {
            "accuracy (%)": _num(own_acc.get("mean")),
            "baseline accuracy (%)": _num(base_acc.get("mean")),
            "accuracy cost (points)": None if _num(delta.get("mean")) is None else -float(delta["mean"]),
            "cost 95% CI": f"[{_fmt(-delta['ci_high'] if _num(delta.get('ci_high')) is not None else None)}, "
            f"{_fmt(-delta['ci_low'] if _num(delta.get('ci_low')) is not None else None)}]",
        },
        "errors": errors,
    }


def baseline_table(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The undefended model's headline metrics: one row per (risk, attack, metric)."""
    return [
        {
            "risk": m.get("risk"),
            "attack": m.get("attack"),
            "metric": m.get("name") or m.get("metric"),
            "mean": _num(m.get("mean")),
            "95% CI": f"[{_fmt(m.get('ci_low'))}, {_fmt(m.get('ci_high'))}]",
            "unit": m.get("unit", ""),
            "higher is riskier": m.get("higher_is_riskier"),
            "seeds": m.get("n"),
        }
        for m in results.get("metrics", [])
        if m.get("row") == BASELINE and m.get("headline", True)
    ]


def accuracy_table(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Clean test accuracy per row and its cost against the baseline."""
    out = []
    for a in results.get("accuracy", []):
        delta = a.get("delta") or {}
        out.append(
            {
                "row": a.get("row"),
                "accuracy (%)": _num(a.get("mean")),
                "95% CI": f"[{_fmt(a.get('ci_low'))}, {_fmt(a.get('ci_high'))}]",
                "cost vs baseline (points)": None if _num(delta.get("mean")) is None else -float(delta["mean"]),
            }
        )
    return out


def checks_table(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The policy verdicts: one row per check and matching row."""
    return [
        {
            "verdict": VERDICT_LABELS.get(str(c.get("status")), c.get("status")),
            "check": f"{c.get('metric')} {c.get('op')} {c.get('threshold')}"
            + (" (delta)" if c.get("on") == "delta" else ""),
            "row": c.get("row"),
            "value": _num(c.get("value")),
            "95% CI": f"[{_fmt(c.get('ci_low'))}, {_fmt(c.get('ci_high'))}]",
            "message": c.get("message", ""),
        }
        for c in results.get("checks", [])
    ]


def compare_grids(first: Mapping[str, Any], second: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Cells present in both results, with each one's change in susceptibility and their difference."""
    a, b = matrix_grid(first), matrix_grid(second)
    out = []
    for row in a.rows:
        for column in a.columns:
            if row not in b.rows or column not in b.columns:
                continue
            ca, cb = a.cell(row, column), b.cell(row, column)
            za = _num(ca.get("susceptibility_change")) if ca else None
            zb = _num(cb.get("susceptibility_change")) if cb else None
            out.append(
                {
                    "row": row,
                    "column": column,
                    "A: change": za,
                    "B: change": zb,
                    "B - A": None if za is None or zb is None else zb - za,
                    "A: direction": DIRECTION_LABELS.get(str(ca.get("direction")) if ca else "not_measured"),
                    "B: direction": DIRECTION_LABELS.get(str(cb.get("direction")) if cb else "not_measured"),
                }
            )
    return out
