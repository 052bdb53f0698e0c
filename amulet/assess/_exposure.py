"""Membership exposure in the report: ROC curves on log-log axes and the most exposed training records.

Membership-inference papers since Carlini et al. (IEEE S&P 2022) judge an attack by its true-positive rate
at low false-positive rates, drawn on log-log axes, not by its AUC: an attack that confidently identifies a
few records can matter even at AUC 0.5. Cells whose attack returns a :class:`~amulet.registry.RocCurve`
get one figure per column here, one curve per row; cells that return
:class:`~amulet.registry.VulnerableRecord` entries get a table of the records each row exposes most.

Each row shows its lowest seed with a curve (seeds differ in data split and training, so curves of
different seeds are not averaged point by point). A degenerate row (its model is not better than a
constant) is drawn dashed grey: its curve means nothing.
"""

from __future__ import annotations

import math
from typing import Any

from amulet.assess._heatmap import _svg_text
from amulet.assess._schema import AssessmentResults, CellResult

__all__ = ["exposed_records", "roc_svgs"]

#: Distinct line colours (colour-blind safe, Okabe-Ito), cycled over rows; the baseline is black.
_COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442")
#: How many exposed records per row the report lists.
RECORDS_PER_ROW = 5


def _first_seed_cells(results: AssessmentResults, risk: str, attack: str, field: str) -> dict[str, CellResult]:
    """Per row, the ok cell of (risk, attack) with the lowest seed whose ``field`` is set."""
    chosen: dict[str, CellResult] = {}
    for cell in sorted(results.cells, key=lambda c: c.seed):
        if cell.risk != risk or cell.attack != attack or cell.status != "ok" or not getattr(cell, field):
            continue
        chosen.setdefault(cell.row, cell)
    return chosen


def roc_svgs(results: AssessmentResults) -> list[dict[str, str]]:
    """One log-log ROC figure per column whose cells carry ROC curves: ``{"title", "svg", "note"}`` items."""
    status = {a.row: a.status for a in results.accuracy}
    order = {row.name: i for i, row in enumerate(results.rows)}
    out: list[dict[str, str]] = []
    for col in results.columns:
        cells = _first_seed_cells(results, col.risk, col.attack, "roc")
        if not cells:
            continue
        rows = sorted(cells, key=lambda r: order.get(r, len(order)))
        curves = []
        for i, row in enumerate(rows):
            cell = cells[row]
            assert cell.roc is not None  # _first_seed_cells keeps cells with a curve
            degenerate = status.get(row) == "degenerate"
            colour = "#111111" if i == 0 and row == "baseline" else _COLOURS[i % len(_COLOURS)]
            label = f"{row} (seed {cell.seed})" + (" - degenerate" if degenerate else "")
            curves.append((label, cell.roc.fpr, cell.roc.tpr, "#999999" if degenerate else colour, degenerate))
        smallest = min(1.0 / max(cells[r].roc.n_negative, 1) for r in rows)  # type: ignore[union-attr]
        out.append(
            {
                "title": f"ROC of {col.attack_name} ({col.risk_name}), log-log",
                "svg": _roc_svg(curves, smallest),
                "note": f"True-positive rate against false-positive rate of the membership scores, one curve per "
                f"row; the dotted diagonal is guessing. Rates below {smallest:.1g} cannot be resolved with "
                "this many non-member candidates.",
            }
        )
    return out


def _roc_svg(curves: list[tuple[str, list[float], list[float], str, bool]], smallest: float) -> str:
    width, height, left, right, top, bottom = 380, 300, 52, 12, 12, 40
    legend_h = 13 * len(curves)
    floor = 10 ** math.floor(math.log10(max(min(smallest, 0.1), 1e-6)))
    span = -math.log10(floor)
    plot_w, plot_h = width - left - right, height - top - bottom

    def px(v: float) -> float:
        return left + (math.log10(max(v, floor)) + span) / span * plot_w

    def py(v: float) -> float:
        return top + (1 - (math.log10(max(v, floor)) + span) / span) * plot_h

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height + legend_h}" '
        f'viewBox="0 0 {width} {height + legend_h}">',
        f'<rect x="0" y="0" width="{width}" height="{height + legend_h}" fill="white"/>',
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#999" stroke-width="1"/>',
    ]
    for k in range(round(span) + 1):  # one tick per decade
        v = floor * 10**k
        parts.append(_svg_text(px(v), height - bottom + 14, f"{v:g}", size=9))
        parts.append(_svg_text(left - 4, py(v) + 3, f"{v:g}", size=9, anchor="end"))
        parts.append(
            f'<line x1="{px(v):.1f}" y1="{top}" x2="{px(v):.1f}" y2="{top + plot_h}" stroke="#eee" stroke-width="1"/>'
        )
    parts.append(_svg_text(left + plot_w / 2, height - 10, "false-positive rate (log)", size=10))
    parts.append(
        f'<text x="12" y="{top + plot_h / 2:.1f}" font-size="10" text-anchor="middle" '
        f'transform="rotate(-90 12 {top + plot_h / 2:.1f})" fill="#111" '
        'font-family="DejaVu Sans, Arial, sans-serif">true-positive rate (log)</text>'
    )
    parts.append(
        f'<line x1="{px(floor):.1f}" y1="{py(floor):.1f}" x2="{px(1):.1f}" y2="{py(1):.1f}" stroke="#666" '
        'stroke-width="1" stroke-dasharray="2,3"/>'
    )
    for i, (label, fpr, tpr, colour, dashed) in enumerate(curves):
        points = " ".join(f"{px(f):.1f},{py(t):.1f}" for f, t in zip(fpr, tpr, strict=True))
        dash = ' stroke-dasharray="5,3"' if dashed else ""
        parts.append(f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="1.6"{dash}/>')
        y = height + 13 * i + 4
        parts.append(f'<line x1="{left}" y1="{y}" x2="{left + 18}" y2="{y}" stroke="{colour}" stroke-width="2"{dash}/>')
        parts.append(_svg_text(left + 24, y + 3, label, size=9, anchor="start"))
    parts.append("</svg>")
    return "\n".join(parts)


def exposed_records(results: AssessmentResults) -> list[dict[str, Any]]:
    """Per column with per-record scores: each row's most exposed training records (lowest seed).

    Returns ``{"title", "rows": [{"row", "seed", "records": [VulnerableRecord, ...]}]}`` items, at most
    :data:`RECORDS_PER_ROW` records per row, highest score first.
    """
    order = {row.name: i for i, row in enumerate(results.rows)}
    out: list[dict[str, Any]] = []
    for col in results.columns:
        cells = _first_seed_cells(results, col.risk, col.attack, "vulnerable_records")
        if not cells:
            continue
        rows = [
            {"row": row, "seed": cells[row].seed, "records": cells[row].vulnerable_records[:RECORDS_PER_ROW]}
            for row in sorted(cells, key=lambda r: order.get(r, len(order)))
        ]
        out.append({"title": f"{col.attack_name} ({col.risk_name})", "rows": rows})
    return out
