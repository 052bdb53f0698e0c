"""The interaction heatmap, the utility table and the drill-down, from an ``AssessmentResults`` JSON document.

Rows are defenses, columns are risks (one per attack). Every number and colour follows the engine's one
display convention (``amulet.assess``: ``format_value``, ``format_change``, ``cell_label``, ``cell_colour``),
the same as the HTML and PDF reports: a change is *defended - baseline* in the metric's own unit ("+6.45 pts"
for a % metric, "-0.035" for an AUC); a cell's fill is grey when its numbers must not be read (degenerate,
error, not run), neutral when the change is not significant, and otherwise red (more susceptible) or blue
(less) on a FIXED scale saturating at ``amulet.assess.SATURATION``. Intended cells (the defense targets that
risk) are outlined. Everything here is pure (plotly figures and plain rows); the Results and Compare pages
draw them.

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

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from amulet.assess import SATURATION, cell_colour, cell_label, format_change, format_interval, format_value

__all__ = [
    "DIRECTION_LABELS",
    "MIN_SEEDS",
    "MatrixGrid",
    "assessment_warnings",
    "baseline_table",
    "cell_detail",
    "changed_verdicts",
    "checks_table",
    "compare_grids",
    "difference_of_changes",
    "findings_table",
    "heatmap_figure",
    "matrix_grid",
    "scale_caption",
    "selected_cell",
    "utility_table",
]

BASELINE = "baseline"
#: Fewer seeds than this give intervals too wide to read (the engine's "few_seeds" warning says the same).
MIN_SEEDS = 3

DIRECTION_LABELS = {
    "more_susceptible": "▲ more susceptible",
    "less_susceptible": "▼ less susceptible",
    "no_significant_change": "= no significant change",
    "insufficient_data": "? too few seeds",
    "not_measured": "- not measured",
}
# Marks from plain Unicode blocks that every common font has (emoji need an emoji font).
VERDICT_LABELS = {"pass": "✔ pass", "fail": "✘ fail", "inconclusive": "⚠ inconclusive", "not_run": "○ not run"}
ROW_STATUS_LABELS = {"ok": "✔ ok", "degenerate": "⚠ degenerate", "failed": "✘ failed"}
_SIGNIFICANT = ("more_susceptible", "less_susceptible")
#: Fill of a grid position with no matrix cell at all.
_EMPTY = "#ffffff"


def _num(value: Any) -> float | None:
    return (
        float(value)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        else None
    )


def _with_significance(cell: Mapping[str, Any]) -> dict[str, Any]:
    """The cell, with ``significant`` derived from its direction when results that predate it lack it."""
    if "significant" in cell:
        return dict(cell)
    return {**cell, "significant": cell.get("status", "ok") == "ok" and cell.get("direction") in _SIGNIFICANT}


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
    by_key = {(m["row"], m["column"]): _with_significance(m) for m in results.get("matrix", [])}
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
        z.append([_num(c.get("susceptibility_change")) if c else None for c in cell_row])
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
    import plotly.graph_objects as go

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


def _column(results: Mapping[str, Any], label: str) -> dict[str, Any]:
    for column in results.get("columns", []):
        if column.get("label") == label:
            return dict(column)
    raise KeyError(f"No column {label!r} in these results.")


def _accuracy(results: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {str(a.get("row")): dict(a) for a in results.get("accuracy", [])}


def cell_detail(results: Mapping[str, Any], row: str, column: str) -> dict[str, Any]:
    """Everything the drill-down of one cell shows.

    Returns:
        A dict with ``cell`` (the matrix cell), ``label`` (its ``cell_label``), ``column`` (risk/attack info
        with ``threat_model`` and ``params``), ``per_seed`` (list of ``{seed, metric, value, baseline,
        change}``), ``summaries`` (one per headline metric with mean, interval, change, its interval, p-value
        and direction), ``accuracy`` (the row's clean accuracy, its change against the baseline and the
        majority rate, formatted), ``degenerate`` (the reason when the row or the cell is degenerate, else
        ``""``) and ``errors`` (reasons of cells that did not run).
    """
    info = _column(results, column)
    risk, attack = info.get("risk"), info.get("attack")
    cell = next((m for m in results.get("matrix", []) if m.get("row") == row and m.get("column") == column), None)
    summaries = []
    units: dict[str, str] = {}
    names: dict[str, str] = {}  # metric key -> its human name (the per-seed table shows names, not keys)
    for m in results.get("metrics", []):
        if m.get("row") == row and m.get("risk") == risk and m.get("attack") == attack and m.get("headline", True):
            delta = m.get("delta") or {}
            unit = str(m.get("unit") or "")
            units[str(m.get("metric"))] = unit
            names[str(m.get("metric"))] = str(m.get("name") or m.get("metric"))
            summaries.append(
                {
                    "metric": m.get("name") or m.get("metric"),
                    "key": m.get("metric"),
                    "higher is riskier": m.get("higher_is_riskier"),
                    "mean": format_value(m.get("mean"), unit),
                    "95% CI": format_interval(m.get("ci_low"), m.get("ci_high"), unit),
                    "change vs baseline": format_change(delta.get("mean"), unit),
                    "change 95% CI": format_interval(delta.get("ci_low"), delta.get("ci_high"), unit, change=True),
                    "p-value": _num(delta.get("p_value")),
                    "direction": DIRECTION_LABELS.get(str(m.get("direction")), m.get("direction")),
                }
            )
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
        for key, unit in units.items():
            value = _num((c.get("metrics") or {}).get(key))
            baseline = _num((base.get(seed, {}).get("metrics") or {}).get(key))
            per_seed.append(
                {
                    "seed": seed,
                    "metric": names.get(key, key.replace("_", " ")),
                    "value": format_value(value, unit),
                    "baseline": format_value(baseline, unit),
                    "change": format_change(None if value is None or baseline is None else value - baseline, unit),
                }
            )
    accuracy = _accuracy(results)
    own_acc, base_acc = accuracy.get(row, {}), accuracy.get(BASELINE, {})
    delta = own_acc.get("delta") or {}
    degenerate = ""
    if cell and cell.get("status") == "degenerate":
        degenerate = str(cell.get("reason") or "the model is degenerate")
    elif own_acc.get("status") == "degenerate":
        degenerate = str(own_acc.get("reason") or "the model is degenerate")
    return {
        "cell": cell,
        "label": cell_label(cell) if cell else "n/a",
        "column": info,
        "per_seed": per_seed,
        "summaries": summaries,
        "accuracy": {
            "accuracy": format_value(own_acc.get("mean"), "%"),
            "accuracy 95% CI": format_interval(own_acc.get("ci_low"), own_acc.get("ci_high"), "%"),
            "baseline accuracy": format_value(base_acc.get("mean"), "%"),
            "change vs baseline": format_change(delta.get("mean"), "%"),
            "change 95% CI": format_interval(delta.get("ci_low"), delta.get("ci_high"), "%", change=True),
            "majority rate": format_value(own_acc.get("majority_rate", base_acc.get("majority_rate")), "%"),
        },
        "degenerate": degenerate,
        "errors": errors,
    }


def utility_table(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Utility first: per row, clean accuracy with its interval, its change against the baseline, the test
    set's majority-class rate, the top-class share of the predictions, the privacy budget of DP rows, and the
    row's status (ok, degenerate, failed) with the reason. The baseline comes first."""
    out = []
    rows = [r.get("name") for r in results.get("rows", [])]
    accuracy = _accuracy(results)
    order = [r for r in rows if r in accuracy] + [r for r in accuracy if r not in rows]
    order.sort(key=lambda r: r != BASELINE)
    for name in order:
        a = accuracy[name]
        delta = a.get("delta") or {}
        props = a.get("properties") or {}
        epsilon, delta_dp = _num(props.get("privacy_epsilon")), _num(props.get("privacy_delta"))
        status = str(a.get("status") or "ok")
        out.append(
            {
                "row": name,
                "status": ROW_STATUS_LABELS.get(status, status),
                "clean accuracy": format_value(a.get("mean"), "%"),
                "95% CI": format_interval(a.get("ci_low"), a.get("ci_high"), "%"),
                "change vs baseline": "" if name == BASELINE else format_change(delta.get("mean"), "%"),
                "change 95% CI": ""
                if name == BASELINE
                else format_interval(delta.get("ci_low"), delta.get("ci_high"), "%", change=True),
                "majority rate": format_value(a.get("majority_rate"), "%"),
                "top-class share": format_value(a.get("top_class_share"), "%"),
                "epsilon": "" if epsilon is None else f"{epsilon:.2f}",
                "delta (DP)": "" if delta_dp is None else f"{delta_dp:.1e}",
                "reason": str(a.get("reason") or ""),
            }
        )
    return out


def assessment_warnings(results: Mapping[str, Any]) -> list[dict[str, str]]:
    """What a reader must know before trusting the numbers, for the top of the page: ``{"level", "message"}``.

    The results' status (partial: some cells errored; failed: nothing trustworthy was measured), every
    assessment-level warning the engine recorded (few seeds, degenerate or failed baseline, degenerate rows,
    cell errors), and a few-seeds warning for results that predate it.
    """
    out: list[dict[str, str]] = []
    status = results.get("status")
    counts = results.get("counts") or {}
    if status == "failed":
        out.append(
            {
                "level": "error",
                "message": "This assessment FAILED: the baseline could not be measured or no cell could be "
                "measured. No number below is a finding.",
            }
        )
    elif status == "partial":
        out.append(
            {
                "level": "warning",
                "message": f"This assessment is PARTIAL: {counts.get('cells_error', 'some')} cell(s) errored; "
                "their columns are grey and their checks could not pass.",
            }
        )
    codes = set()
    for warning in results.get("warnings") or []:
        codes.add(warning.get("code"))
        prefix = f"{warning['row']}: " if warning.get("row") and warning["row"] not in str(warning["message"]) else ""
        level = "error" if warning.get("code") in ("baseline_degenerate", "baseline_failed") else "warning"
        out.append({"level": level, "message": prefix + str(warning.get("message", ""))})
    seeds = len(results.get("seeds") or [])
    if "few_seeds" not in codes and 0 < seeds < MIN_SEEDS:
        out.append(
            {
                "level": "warning",
                "message": f"Only {seeds} seed(s): intervals are too wide to support a finding; use at least "
                f"{MIN_SEEDS} seeds.",
            }
        )
    return out


def findings_table(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The findings: significant, non-degenerate, ok cells, largest change in susceptibility first (the
    engine's ``findings``; recomputed the same way for results that predate it)."""
    findings = results.get("findings")
    if findings is None:
        matrix = [_with_significance(m) for m in results.get("matrix", [])]
        findings = [m for m in matrix if m.get("status", "ok") == "ok" and m["significant"]]
        findings.sort(key=lambda m: -abs(_num(m.get("susceptibility_change")) or 0.0))
    return [
        {
            "row": m.get("row"),
            "column": m.get("column"),
            "metric": m.get("metric"),
            "change": cell_label(m),
            "change 95% CI": format_interval(
                m.get("delta_ci_low"), m.get("delta_ci_high"), str(m.get("unit") or ""), change=True
            ),
            "direction": DIRECTION_LABELS.get(str(m.get("direction")), m.get("direction")),
            "intended": bool(m.get("intended")),
        }
        for m in findings
        if m.get("status", "ok") == "ok"
    ]


def baseline_table(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The undefended model's headline metrics: one row per (risk, attack, metric)."""
    return [
        {
            "risk": m.get("risk"),
            "attack": m.get("attack"),
            "metric": m.get("name") or m.get("metric"),
            "mean": format_value(m.get("mean"), str(m.get("unit") or "")),
            "95% CI": format_interval(m.get("ci_low"), m.get("ci_high"), str(m.get("unit") or "")),
            "higher is riskier": m.get("higher_is_riskier"),
            "seeds": m.get("n"),
        }
        for m in results.get("metrics", [])
        if m.get("row") == BASELINE and m.get("headline", True)
    ]


def checks_table(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The policy verdicts: one row per check and matching row (an inconclusive one says why)."""
    return [
        {
            "verdict": VERDICT_LABELS.get(str(c.get("status")), c.get("status")),
            "check": f"{c.get('metric')} {c.get('op')} {c.get('threshold')}"
            + (" (delta)" if c.get("on") == "delta" else ""),
            "row": c.get("row"),
            "value": format_change(c.get("value"), str(c.get("unit") or ""))
            if c.get("on") == "delta"
            else format_value(c.get("value"), str(c.get("unit") or "")),
            "95% CI": format_interval(
                c.get("ci_low"), c.get("ci_high"), str(c.get("unit") or ""), change=c.get("on") == "delta"
            ),
            "message": c.get("message", ""),
        }
        for c in results.get("checks", [])
    ]


def _delta_of(results: Mapping[str, Any], cell: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The ``delta`` summary (mean, se, n over seeds) of a matrix cell's metric."""
    for metric in results.get("metrics", []):
        if (metric.get("row"), metric.get("risk"), metric.get("attack"), metric.get("metric")) == (
            cell.get("row"),
            cell.get("risk"),
            cell.get("attack"),
            cell.get("metric"),
        ):
            return metric.get("delta") or None
    # Results without per-metric summaries: the cell's own change, with no spread to test it against.
    return {"mean": cell.get("delta"), "se": None, "n": 1} if cell.get("delta") is not None else None


def difference_of_changes(
    a: Mapping[str, Any] | None, b: Mapping[str, Any] | None
) -> tuple[float, float | None, float | None, float | None] | None:
    """B's change minus A's with a Welch 95% interval and two-sided p-value (the runs are independent).

    ``a`` and ``b`` are ``delta`` summaries (``mean``, ``se``, ``n`` over seeds). Returns
    ``(difference, ci_low, ci_high, p_value)``; the interval and p-value are ``None`` when either run has
    fewer than two seeds (no standard error), and the whole is ``None`` when either change is unmeasured.
    """
    from scipy import stats

    if not a or not b:
        return None
    ma, mb = _num(a.get("mean")), _num(b.get("mean"))
    if ma is None or mb is None:
        return None
    diff = mb - ma
    sa, sb = _num(a.get("se")), _num(b.get("se"))
    na, nb = int(a.get("n") or 0), int(b.get("n") or 0)
    if sa is None or sb is None or na < 2 or nb < 2:
        return diff, None, None, None
    se = math.hypot(sa, sb)
    if se == 0:
        return diff, diff, diff, (1.0 if diff == 0 else 0.0)
    df = (sa**2 + sb**2) ** 2 / (sa**4 / (na - 1) + sb**4 / (nb - 1))  # Welch-Satterthwaite
    half = float(stats.t.ppf(0.975, df)) * se
    p = float(2 * stats.t.sf(abs(diff) / se, df))
    return diff, diff - half, diff + half, p


def compare_grids(first: Mapping[str, Any], second: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Cells present in both results: each one's change (``cell_label``), and B's change minus A's in the
    metric's unit with its Welch 95% interval and whether it is significant (5%). The difference is blank
    unless both cells are ok and in the same unit."""
    a, b = matrix_grid(first), matrix_grid(second)
    out = []
    for row in a.rows:
        for column in a.columns:
            if row not in b.rows or column not in b.columns:
                continue
            ca, cb = a.cell(row, column), b.cell(row, column)
            ok = bool(ca and cb and ca.get("status", "ok") == "ok" and cb.get("status", "ok") == "ok")
            unit = str((ca or {}).get("unit") or "")
            same = (
                ok
                and unit == str((cb or {}).get("unit") or "")
                and (ca or {}).get("metric") == (cb or {}).get("metric")
            )
            diff = difference_of_changes(_delta_of(first, ca), _delta_of(second, cb)) if same and ca and cb else None
            significance = ""
            if diff is not None:
                significance = "untested: under 2 seeds" if diff[3] is None else ("yes" if diff[3] < 0.05 else "no")
            out.append(
                {
                    "row": row,
                    "column": column,
                    "A: change": cell_label(ca) if ca else "not measured",
                    "B: change": cell_label(cb) if cb else "not measured",
                    "B - A": format_change(diff[0], unit) if diff else "",
                    "95% CI of B - A": format_interval(diff[1], diff[2], unit, change=True)
                    if diff and diff[1] is not None
                    else "",
                    "significant": significance,
                    "A: direction": DIRECTION_LABELS.get(str(ca.get("direction")) if ca else "not_measured"),
                    "B: direction": DIRECTION_LABELS.get(str(cb.get("direction")) if cb else "not_measured"),
                }
            )
    return out


def changed_verdicts(first: Mapping[str, Any], second: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Policy checks (matched by id and row) whose verdict differs between A and B, or that only one has."""

    def by_key(results: Mapping[str, Any]) -> dict[tuple[str, str], Mapping[str, Any]]:
        return {(str(c.get("id")), str(c.get("row"))): c for c in results.get("checks", [])}

    a, b = by_key(first), by_key(second)
    out = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key, {}).get("status"), b.get(key, {}).get("status")
        if va == vb:
            continue
        out.append(
            {
                "check": key[0],
                "row": key[1],
                "A": VERDICT_LABELS.get(str(va), "not in A") if va else "not in A",
                "B": VERDICT_LABELS.get(str(vb), "not in B") if vb else "not in B",
            }
        )
    return out
