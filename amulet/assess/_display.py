"""One display convention for every view of an assessment: HTML, PDF, dashboard, CLI (and JSON's fields).

* **Values** in the metric's own unit: ``format_value(84.1234, "%") == "84.12 %"``,
  ``format_value(0.7231, "") == "0.723"``.
* **Changes** are always *defended minus baseline*, signed, in the metric's own unit; a change of a %
  metric is in percentage points: ``format_change(6.45, "%") == "+6.45 pts"``,
  ``format_change(-0.035, "") == "-0.035"``. (Never a relative change, never rescaled.)
* **Attack strength** (:func:`strength_label`): the budget a column's attack ran with, next to its result,
  and ``WEAK BUDGET`` when it cannot resolve small effects.
* **Colour** (:func:`cell_colour`) encodes the change in *susceptibility* (the change signed so that > 0
  means more susceptible, % metrics divided by 100) on the FIXED scale :data:`COLOUR_SCALE` that
  saturates at ±:data:`SATURATION`; only significant ``ok`` cells are coloured (red: more susceptible,
  blue: less), never less than :data:`MIN_SHADE` of the way to the end colour so that a significant cell
  never looks neutral; non-significant ``ok`` cells are :data:`NEUTRAL`; ``degenerate``, ``error`` and
  ``not_run`` cells are :data:`GREY` with a label (:func:`cell_label`).

These functions take a :class:`~amulet.assess.MatrixCell` or anything with the same attributes (the
dashboard passes the cells of ``results.json``), and never import the report machinery.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = [
    "COLOUR_SCALE",
    "GREY",
    "MIN_SHADE",
    "NEUTRAL",
    "SATURATION",
    "cell_colour",
    "cell_label",
    "format_change",
    "format_interval",
    "format_value",
    "susceptibility_colour",
]

#: |change in susceptibility| (fraction units: 0.20 = 20 percentage points, or 0.20 of an AUC) at which the
#: colour reaches its end colour. Fixed, so that the same colour means the same change in every report.
SATURATION = 0.20
#: Share of the way from neutral to the end colour that a significant change is drawn with at the least.
MIN_SHADE = 0.2
#: Colour of a non-significant cell (and of a change of 0).
NEUTRAL = "#f7f7f7"
#: Colour of a cell whose numbers must not be read: degenerate, error, not run.
GREY = "#bdbdbd"
_BLUE = "#2166ac"
_RED = "#b2182b"
#: The diverging scale, as (position in [0, 1] over [-SATURATION, +SATURATION], colour) stops (Plotly form).
COLOUR_SCALE: tuple[tuple[float, str], ...] = ((0.0, _BLUE), (0.5, NEUTRAL), (1.0, _RED))

#: Labels of the cells whose numbers are not shown as a change.
_STATUS_LABEL = {"degenerate": "degenerate", "error": "error", "not_run": "not run"}


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _plain(value: float, signed: bool) -> str:
    sign = "+" if signed else ""
    if value == 0 or abs(value) >= 0.001:
        return f"{value:{sign}.3f}"
    return f"{value:{sign}.2e}"


def format_value(value: float | None, unit: str = "") -> str:
    """A metric value in its own unit: ``"84.12 %"`` for a % metric, ``"0.723"`` for a fraction, ``"n/a"`` if none.

    Example:
        >>> format_value(84.1234, "%"), format_value(0.72314, ""), format_value(None, "%")
        ('84.12 %', '0.723', 'n/a')
    """
    if not _finite(value):
        return "n/a"
    assert value is not None
    if unit == "%":
        return f"{value:.2f} %"
    text = _plain(float(value), signed=False)
    return f"{text} {unit}" if unit else text


def format_change(delta: float | None, unit: str = "") -> str:
    """A signed change (defended - baseline) in the metric's unit; percentage points (``"pts"``) for % metrics.

    Example:
        >>> format_change(6.451, "%"), format_change(-0.0351, ""), format_change(0.0, "%")
        ('+6.45 pts', '-0.035', '+0.00 pts')
    """
    if not _finite(delta):
        return "n/a"
    assert delta is not None
    if unit == "%":
        return f"{delta:+.2f} pts"
    text = _plain(float(delta), signed=True)
    return f"{text} {unit}" if unit else text


def format_interval(low: float | None, high: float | None, unit: str = "", *, change: bool = False) -> str:
    """``"[low, high]"`` with :func:`format_value` (or :func:`format_change` when ``change``); ``""`` if none.

    Example:
        >>> format_interval(80.1, 84.2, "%"), format_interval(-1.5, 2.25, "%", change=True)
        ('[80.10 %, 84.20 %]', '[-1.50 pts, +2.25 pts]')
    """
    if not (_finite(low) and _finite(high)):
        return ""
    f = format_change if change else format_value
    return f"[{f(low, unit)}, {f(high, unit)}]"


def _mix(end: str, a: float) -> str:
    w = [int(NEUTRAL[i : i + 2], 16) for i in (1, 3, 5)]
    e = [int(end[i : i + 2], 16) for i in (1, 3, 5)]
    return "#{:02x}{:02x}{:02x}".format(*(round(x + (y - x) * a) for x, y in zip(w, e)))


def susceptibility_colour(change: float | None, *, significant: bool = True) -> str:
    """Hex colour of a change in susceptibility (fraction units) on the fixed scale.

    ``None``/NaN: :data:`GREY`; not significant or exactly 0: :data:`NEUTRAL`; otherwise red (> 0, more
    susceptible) or blue (< 0), ``max(MIN_SHADE, min(1, |change| / SATURATION))`` of the way from neutral.

    Example:
        >>> susceptibility_colour(0.5), susceptibility_colour(-0.5), susceptibility_colour(0.5, significant=False)
        ('#b2182b', '#2166ac', '#f7f7f7')
    """
    if not _finite(change):
        return GREY
    assert change is not None
    if not significant or change == 0:
        return NEUTRAL
    a = max(MIN_SHADE, min(1.0, abs(change) / SATURATION))
    return _mix(_RED if change > 0 else _BLUE, a)


def cell_colour(cell: Any) -> str:
    """Hex fill of a matrix cell: grey unless ``ok``; neutral unless significant; else its change's colour.

    Args:
        cell: A :class:`~amulet.assess.MatrixCell` (or an object/dict with ``status``, ``significant``,
            ``susceptibility_change``).
    """
    status = _get(cell, "status", "ok")
    if status != "ok":
        return GREY
    change = _get(cell, "susceptibility_change", None)
    if not _finite(change):
        return GREY
    return susceptibility_colour(change, significant=bool(_get(cell, "significant", False)))


def cell_label(cell: Any) -> str:
    """Short text of a matrix cell: its signed change (``"+6.45 pts*"``, ``*`` = significant), or its status.

    Degenerate, errored and not-run cells are labelled with their status (``"degenerate"``, ``"error"``,
    ``"not run"``), never with a number.
    """
    status = _get(cell, "status", "ok")
    if status != "ok":
        return _STATUS_LABEL.get(status, str(status))
    delta = _get(cell, "delta", None)
    if not _finite(delta):
        return "n/a"
    return format_change(delta, _get(cell, "unit", "") or "") + ("*" if _get(cell, "significant", False) else "")


def strength_label(column: Any) -> str:
    """One line saying how strong a column's (or a cell's) attack was: ``"64 shadow models (online; ...)"``.

    A weak budget ends with ``"; WEAK BUDGET"`` (its cells are not findings); ``"-"`` when the attack has
    no budget (a measurement) or the results predate schema 1.3 and were not upgraded (a plain JSON dict).
    """
    strength = _get(column, "strength", None)
    if strength is None:
        return "-"
    summary = str(_get(strength, "summary", "") or "-")
    return summary + ("; WEAK BUDGET" if _get(strength, "weak", False) else "")


def text_colour(fill: str) -> str:
    """Black or white, whichever reads better on ``fill`` (hex)."""
    r, g, b = (int(fill[i : i + 2], 16) for i in (1, 3, 5))
    return "#ffffff" if 0.299 * r + 0.587 * g + 0.114 * b < 140 else "#111111"


def _get(cell: Any, name: str, default: Any) -> Any:
    if isinstance(cell, dict):
        return cell.get(name, default)
    return getattr(cell, name, default)
