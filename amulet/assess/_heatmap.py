"""The interaction heatmap: an interactive Plotly figure (HTML) and a static SVG drawn here (PDF).

Rows are defenses, columns risks; the colour is the change in susceptibility against the baseline on the
column's primary headline metric (red = more susceptible, blue = less), signed with the metric's direction
so that a metric where lower is riskier still shows "more susceptible" as red. Colours follow
:mod:`amulet.assess._display`: a FIXED scale (:data:`~amulet.assess._display.SATURATION`), only significant
cells coloured, non-significant cells neutral, degenerate / errored / not-run cells grey with their label.
Intended cells (the defense targets the risk) carry a black frame and a corner mark; a ``*`` marks a
significant change.
"""

from __future__ import annotations

import html
from typing import Any

from amulet.assess._display import (
    COLOUR_SCALE,
    GREY,
    NEUTRAL,
    SATURATION,
    cell_colour,
    cell_label,
    format_change,
    format_interval,
    format_value,
    strength_label,
    susceptibility_colour,
    text_colour,
)
from amulet.assess._schema import AssessmentResults, MatrixCell

__all__ = ["heatmap_svg", "parameter_sweeps", "plotly_heatmap_html", "tradeoff_svgs"]


def _cell_text(results: AssessmentResults, cell: MatrixCell) -> tuple[str, str]:
    """(label, second line): the signed change and its interval, or the status and (for degenerate) why."""
    first = cell_label(cell)
    if cell.status != "ok":
        return first, ("model is degenerate" if cell.status == "degenerate" else "")
    second = format_interval(cell.delta_ci_low, cell.delta_ci_high, cell.unit, change=True)
    return first, second


def _hover(results: AssessmentResults, cell: MatrixCell) -> str:
    unit = cell.unit
    lines = [
        f"<b>{html.escape(cell.row)}</b> vs <b>{html.escape(cell.column)}</b>",
        f"metric: {html.escape(cell.risk)}.{html.escape(cell.metric)}",
        f"value: {format_value(cell.value, unit)} {format_interval(cell.ci_low, cell.ci_high, unit)}",
        f"baseline: {format_value(cell.baseline, unit)}",
        f"change (defended - baseline): {format_change(cell.delta, unit)} "
        f"{format_interval(cell.delta_ci_low, cell.delta_ci_high, unit, change=True)}",
        f"direction: {cell.direction.replace('_', ' ')}",
        "intended interaction" if cell.intended else "unintended interaction",
    ]
    column = next((c for c in results.columns if c.label == cell.column), None)
    if column is not None and column.strength is not None:
        lines.append(f"attack strength: {html.escape(strength_label(column))}")
        if cell.weak_budget:
            lines.append("weak budget: not a finding")
    if cell.status != "ok" or cell.reason:
        lines.append(f"status: {cell.status}" + (f": {html.escape(cell.reason[:300])}" if cell.reason else ""))
    return "<br>".join(lines)


def _utility_line(results: AssessmentResults, row: str) -> str:
    """Utility first: the row's clean accuracy and its change vs the baseline (or its degenerate/failed status)."""
    acc = next((a for a in results.accuracy if a.row == row), None)
    if acc is None:
        return ""
    if acc.status != "ok":
        return acc.status.upper()
    change = f" ({format_change(acc.delta.mean, '%')})" if acc.delta is not None and acc.delta.mean is not None else ""
    return f"accuracy {format_value(acc.mean, '%')}{change}"


def _tick(results: AssessmentResults, label: str) -> str:
    """Two-line column label: the risk's name, then the attack."""
    for col in results.columns:
        if col.label == label:
            weak = "<br>weak budget" if col.strength is not None and col.strength.weak else ""
            return f"{col.risk_code} {col.risk_name}<br>({col.attack}){weak}"
    return label


def _grid(results: AssessmentResults) -> tuple[list[str], list[str], dict[tuple[str, str], MatrixCell]]:
    rows = [r.name for r in results.rows if r.stack]
    columns = [c.label for c in results.columns]
    cells = {(c.row, c.column): c for c in results.matrix}
    return rows, columns, cells


def plotly_heatmap_html(results: AssessmentResults, *, div_id: str = "interaction-heatmap") -> str:
    """A ``<div>`` + inline ``<script>`` drawing the interactive heatmap; plotly.js itself is embedded inline.

    Returns an empty string when the assessment has no defense rows.
    """
    import plotly.graph_objects as go

    rows, columns, cells = _grid(results)
    if not rows:
        return ""
    # Each cell is drawn in exactly the colour cell_colour gives it (the same as the PDF and the dashboard):
    # z indexes a palette of those colours, and the fixed scale is shown by a separate colour bar.
    palette: list[str] = []
    z: list[list[float | None]] = []
    text: list[list[str]] = []
    hover: list[list[str]] = []
    for r in rows:
        z_row: list[float | None] = []
        t_row, h_row = [], []
        for c in columns:
            cell = cells.get((r, c))
            colour = cell_colour(cell) if cell is not None else GREY
            if colour not in palette:
                palette.append(colour)
            z_row.append(float(palette.index(colour)))
            first, second = _cell_text(results, cell) if cell else ("n/a", "")
            t_row.append(
                first + ("<br>" + second if second else "") + ("<br>◆ intended" if cell and cell.intended else "")
            )
            h_row.append(_hover(results, cell) if cell else "")
        z.append(z_row)
        text.append(t_row)
        hover.append(h_row)
    n = max(len(palette) - 1, 1)
    discrete = (
        [[i / n, colour] for i, colour in enumerate(palette)]
        if len(palette) > 1
        else [[0, palette[0]], [1, palette[0]]]
    )
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=[_tick(results, c) for c in columns],
            y=[(r if len(r) <= 40 else r[:39] + "…") + f"<br>{_utility_line(results, r)}" for r in rows],
            text=text,
            textfont={"size": 12},
            customdata=hover,
            texttemplate="%{text}",
            hovertemplate="%{customdata}<extra></extra>",
            colorscale=discrete,
            zmin=0,
            zmax=n,
            showscale=False,
            xgap=2,
            ygap=2,
        )
    )
    # The fixed scale (significant cells only), as a colour bar of an invisible trace.
    fig.add_trace(
        go.Scatter(
            x=[None],
            y=[None],
            mode="markers",
            hoverinfo="skip",
            showlegend=False,
            marker={
                "colorscale": [list(stop) for stop in COLOUR_SCALE],
                "cmin": -SATURATION,
                "cmax": SATURATION,
                "color": [0],
                "showscale": True,
                "colorbar": {
                    "title": {"text": "change in<br>susceptibility<br>(significant)"},
                    "tickformat": "+.2f",
                },
            },
        )
    )
    for i, r in enumerate(rows):
        for j, c in enumerate(columns):
            cell = cells.get((r, c))
            if cell is not None and cell.intended:
                fig.add_shape(
                    type="rect", x0=j - 0.5, x1=j + 0.5, y0=i - 0.5, y1=i + 0.5, line={"color": "black", "width": 3}
                )
    fig.update_layout(
        title={
            "text": "Defense x risk: change vs the baseline (red: more susceptible, blue: less; "
            "pale: not significant; grey: degenerate/error/not run)",
            "y": 0.98,
            "font": {"size": 14},
        },
        yaxis={"autorange": "reversed", "title": {"text": "defense"}, "automargin": True},
        xaxis={"side": "top", "tickangle": 0, "automargin": True},
        height=max(340, 170 + 80 * len(rows)),
        margin={"l": 40, "r": 40, "t": 110, "b": 30},
        plot_bgcolor="white",
    )
    return fig.to_html(full_html=False, include_plotlyjs=True, div_id=div_id, config={"displaylogo": False})


def _svg_text(
    x: float, y: float, text: str, *, size: int = 12, anchor: str = "middle", weight: str = "normal", fill: str = "#111"
) -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" font-weight="{weight}" '
        f'fill="{fill}" font-family="DejaVu Sans, Arial, sans-serif">{html.escape(text)}</text>'
    )


def _wrap(text: str, width: int) -> list[str]:
    words, lines, line = text.split(), [], ""
    for word in words:
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    if line:
        lines.append(line)
    return lines or [""]


def heatmap_svg(results: AssessmentResults) -> str:
    """A static SVG of the heatmap (for the PDF); empty string when there are no defense rows."""
    rows, columns, cells = _grid(results)
    if not rows:
        return ""
    cw, ch = 128, 54
    left = min(260, max(150, 7 * max(len(r) for r in rows) + 20))
    col_lines = {c: [line for part in _tick(results, c).split("<br>") for line in _wrap(part, 19)] for c in columns}
    top = 26 + 14 * max(len(v) for v in col_lines.values())
    width = max(600, left + cw * len(columns) + 20)
    legend_y = top + ch * len(rows) + 18
    height = legend_y + 74
    parts: list[str] = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}">',
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="white"/>',
    ]
    for j, c in enumerate(columns):
        for k, line in enumerate(col_lines[c]):
            parts.append(_svg_text(left + cw * j + cw / 2, 18 + 14 * k, line, size=11, weight="bold"))
    for i, r in enumerate(rows):
        y = top + ch * i
        label = r if len(r) <= 36 else r[:35] + "…"
        parts.append(_svg_text(left - 8, y + ch / 2 - 3, label, size=11, anchor="end", weight="bold"))
        parts.append(_svg_text(left - 8, y + ch / 2 + 11, _utility_line(results, r), size=9, anchor="end"))
        for j, c in enumerate(columns):
            x = left + cw * j
            cell = cells.get((r, c))
            colour = cell_colour(cell) if cell is not None else GREY
            parts.append(
                f'<rect x="{x + 1}" y="{y + 1}" width="{cw - 2}" height="{ch - 2}" fill="{colour}" '
                f'stroke="#ffffff" stroke-width="1"/>'
            )
            fill = text_colour(colour)
            first, second = _cell_text(results, cell) if cell else ("n/a", "")
            parts.append(_svg_text(x + cw / 2, y + (ch / 2 - 2 if second else ch / 2 + 4), first, size=12, fill=fill))
            if second:
                parts.append(_svg_text(x + cw / 2, y + ch / 2 + 13, second, size=9, fill=fill))
            if cell is not None and cell.intended:
                parts.append(
                    f'<rect x="{x + 2.5}" y="{y + 2.5}" width="{cw - 5}" height="{ch - 5}" fill="none" '
                    f'stroke="#000000" stroke-width="3"/>'
                )
                parts.append(f'<polygon points="{x + 2},{y + 2} {x + 16},{y + 2} {x + 2},{y + 16}" fill="#000000"/>')
    # Legend: the colour scale and the marks.
    lx, lw = left, min(cw * len(columns), 360)
    steps = 24
    for s in range(steps):
        value = -SATURATION + 2 * SATURATION * (s + 0.5) / steps
        parts.append(
            f'<rect x="{lx + lw * s / steps:.1f}" y="{legend_y}" width="{lw / steps + 0.5:.1f}" height="10" '
            f'fill="{susceptibility_colour(value)}"/>'
        )
    parts.append(
        _svg_text(lx, legend_y + 24, f"less susceptible ({-SATURATION:+.2f} or less)", size=10, anchor="start")
    )
    parts.append(
        _svg_text(lx + lw, legend_y + 24, f"more susceptible (+{SATURATION:.2f} or more)", size=10, anchor="end")
    )
    parts.append(
        _svg_text(lx, legend_y + 39, "black frame + corner mark: intended interaction", size=10, anchor="start")
    )
    # Two short lines, not one long one: a narrow matrix (few columns) would clip a long line at its edge.
    parts.append(
        _svg_text(lx, legend_y + 53, "* significant change (paired t-test across seeds, 5%)", size=10, anchor="start")
    )
    parts.append(
        _svg_text(
            lx,
            legend_y + 67,
            f"pale ({NEUTRAL}): not significant; grey: degenerate, error or not run",
            size=10,
            anchor="start",
        )
    )
    parts.append("</svg>")
    return "\n".join(parts)


def heatmap_rows(results: AssessmentResults) -> list[dict[str, Any]]:
    """The matrix as table rows (for reports without graphics)."""
    rows, columns, cells = _grid(results)
    out = []
    for r in rows:
        out.append({"row": r, "cells": [cells.get((r, c)) for c in columns]})
    return out


def _param_text(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_param_text(v) for v in value) + "]"
    return str(value)


def parameter_sweeps(results: AssessmentResults) -> list[dict[str, Any]]:
    """Rows that are one defense at several parameter values (a sweep), with the parameters that vary.

    Returns one ``{"defense", "varying", "rows": [(row, label)]}`` per defense that appears alone in at least
    two rows with different parameters; ``label`` names the varying values (``"epsilon: 0.01"``).
    """
    by_defense: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for row in results.rows:
        if len(row.stack) == 1:
            entry = row.stack[0]
            by_defense.setdefault(str(entry.get("defense")), []).append((row.name, dict(entry.get("params") or {})))
    sweeps: list[dict[str, Any]] = []
    for defense, rows in by_defense.items():
        if len(rows) < 2:
            continue
        keys = sorted({k for _, p in rows for k in p})
        varying = [k for k in keys if len({repr(p.get(k)) for _, p in rows}) > 1]
        if not varying:
            continue
        labelled = [(name, ", ".join(f"{k}: {_param_text(p.get(k))}" for k in varying)) for name, p in rows]
        sweeps.append({"defense": defense, "varying": varying, "rows": labelled})
    return sweeps


def tradeoff_svgs(results: AssessmentResults) -> list[dict[str, str]]:
    """Trade-off curves of each parameter sweep: clean accuracy (x) against each column's primary metric (y).

    One small SVG per (sweep, column): the sweep's rows joined in order (privacy-utility for membership
    inference, robustness-accuracy for evasion, and so on), the baseline as a black square; degenerate rows
    are hollow grey points (their risk numbers mean nothing). Returns ``{"title", "svg"}`` items.
    """
    accuracy = {a.row: a for a in results.accuracy}
    metric = {(m.row, m.risk, m.attack, m.metric): m for m in results.metrics}
    out: list[dict[str, str]] = []
    for sweep in parameter_sweeps(results):
        for col in results.columns:
            name, unit = col.primary_metric, ""
            for h in col.headline_metrics:
                if h.get("key") == col.primary_metric:
                    name, unit = str(h.get("name", name)), str(h.get("unit", ""))
            points: list[tuple[str, str, float, float, str]] = []
            for row, label in [("baseline", "baseline"), *sweep["rows"]]:
                a, m = accuracy.get(row), metric.get((row, col.risk, col.attack, col.primary_metric))
                if a is None or m is None or a.mean is None or m.mean is None:
                    continue
                points.append((row, label, float(a.mean), float(m.mean), str(a.status)))
            if len(points) < 3:  # the baseline and at least two swept rows
                continue
            out.append(
                {
                    "title": f"{sweep['defense']}: {name} vs clean accuracy ({col.label})",
                    "svg": _tradeoff_svg(points, f"{name} ({unit})" if unit else name, unit),
                }
            )
    return out


def _tradeoff_svg(points: list[tuple[str, str, float, float, str]], y_title: str, unit: str) -> str:
    width, height, left, right, top, bottom = 380, 250, 58, 16, 14, 44
    xs, ys = [p[2] for p in points], [p[3] for p in points]

    def span(values: list[float]) -> tuple[float, float]:
        lo, hi = min(values), max(values)
        pad = (hi - lo) * 0.12 or max(abs(hi) * 0.05, 0.01)
        return lo - pad, hi + pad

    (x0, x1), (y0, y1) = span(xs), span(ys)

    def px(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * (width - left - right)

    def py(y: float) -> float:
        return top + (1 - (y - y0) / (y1 - y0)) * (height - top - bottom)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}">',
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="white"/>',
        f'<rect x="{left}" y="{top}" width="{width - left - right}" height="{height - top - bottom}" fill="none" '
        'stroke="#999" stroke-width="1"/>',
    ]
    for k in range(3):  # three ticks per axis: the ends and the middle
        xv, yv = x0 + (x1 - x0) * (k + 0.5) / 3, y0 + (y1 - y0) * (k + 0.5) / 3
        parts.append(_svg_text(px(xv), height - bottom + 14, format_value(xv, "%"), size=9))
        parts.append(_svg_text(left - 4, py(yv) + 3, format_value(yv, unit), size=9, anchor="end"))
    parts.append(_svg_text(left + (width - left - right) / 2, height - 8, "clean test accuracy (%)", size=10))
    parts.append(
        f'<text x="12" y="{top + (height - top - bottom) / 2:.1f}" font-size="10" text-anchor="middle" '
        f'transform="rotate(-90 12 {top + (height - top - bottom) / 2:.1f})" fill="#111" '
        f'font-family="DejaVu Sans, Arial, sans-serif">{html.escape(y_title)}</text>'
    )
    swept = [p for p in points if p[0] != "baseline"]
    line = " ".join(f"{px(p[2]):.1f},{py(p[3]):.1f}" for p in swept)
    parts.append(f'<polyline points="{line}" fill="none" stroke="#2166ac" stroke-width="1.5"/>')
    for row, label, x, y, status in points:
        cx, cy = px(x), py(y)
        if row == "baseline":
            parts.append(f'<rect x="{cx - 4:.1f}" y="{cy - 4:.1f}" width="8" height="8" fill="#111"/>')
        elif status != "ok":
            parts.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="4" fill="white" stroke="#888" stroke-width="1.5"/>')
            label += f" ({status})"
        else:
            parts.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="4" fill="#2166ac"/>')
        anchor = "end" if cx > width * 0.6 else "start"
        parts.append(_svg_text(cx + (-7 if anchor == "end" else 7), cy - 6, label, size=9, anchor=anchor))
    parts.append("</svg>")
    return "\n".join(parts)
