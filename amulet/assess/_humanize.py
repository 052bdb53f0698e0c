"""Human wording for reports: numbers, parameters and engine text without Python reprs, and safe line breaks.

No Python literal (``{'a': 1}``, ``None``) reaches a reader: :func:`human_value` and :func:`human_params` write
values and parameter sets as words, :func:`humanize_text` rewrites the reprs inside engine messages, and
:func:`breakable` lets long identifiers wrap at ``_`` and ``.`` only, where a reader expects a break.
"""

from __future__ import annotations

import ast
import math
import re
from typing import Any

from markupsafe import Markup

__all__ = [
    "breakable",
    "human_params",
    "human_value",
    "humanize_text",
    "metric_label",
    "number_interval",
    "plain_number",
    "signed_number",
]


def plain_number(value: float | None, unit: str = "", digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.{digits}g}{unit}"


def signed_number(value: float | None, unit: str = "", digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:+.{digits}g}{unit}"


def number_interval(low: float | None, high: float | None, unit: str = "", signed: bool = False) -> str:
    if low is None or high is None:
        return ""
    f = signed_number if signed else plain_number
    return f"[{f(low, unit)}, {f(high, unit)}]"


# --- Human formatting: no Python reprs in a report, and words that break only where a reader expects it. ---

_LITERAL = re.compile(r"[{\[]")


def human_value(value: Any) -> str:
    """A parameter value as a reader writes it: ``None`` -> ``none``, ``True`` -> ``yes``, lists comma-joined.

    Example:
        >>> human_value(None), human_value(True), human_value(0.010), human_value([32, 16])
        ('none', 'yes', '0.01', '[32, 16]')
    """
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, dict):
        return "(" + human_params(value) + ")" if value else "(none)"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(human_value(v) for v in value) + "]"
    return str(value)


def human_params(params: dict[str, Any] | None, *, empty: str = "defaults") -> str:
    """``{'clip_max': None, 'epsilon': 0.01}`` -> ``clip_max: none, epsilon: 0.01`` (``empty`` when none).

    Example:
        >>> human_params({"clip_max": None, "epsilon": 0.01}), human_params({})
        ('clip_max: none, epsilon: 0.01', 'defaults')
    """
    if not params:
        return empty
    return ", ".join(f"{k}: {human_value(v)}" for k, v in params.items())


def humanize_text(text: str) -> str:
    """Rewrite the Python dict/list literals inside free text (e.g. a threat-model sentence) as :func:`human_value`."""
    out: list[str] = []
    i = 0
    while True:
        match = _LITERAL.search(text, i)
        if match is None:
            out.append(text[i:])
            return "".join(out)
        start = match.start()
        depth, end = 0, -1
        for j in range(start, len(text)):
            if text[j] in "{[":
                depth += 1
            elif text[j] in "}]":
                depth -= 1
                if depth == 0:
                    end = j + 1
                    break
        literal: Any = None
        if end > 0:
            try:
                literal = ast.literal_eval(text[start:end])
            except (ValueError, SyntaxError):
                literal = None
        if isinstance(literal, (dict, list)):
            shown = human_params(literal, empty="none") if isinstance(literal, dict) else human_value(literal)
            out.append(text[i:start] + shown)
            i = end
        else:
            out.append(text[i : start + 1])
            i = start + 1


def breakable(text: Any) -> Markup:
    """Escaped text with a break opportunity (``<wbr>``) after each ``_``, and each ``.``/``/`` before a letter.

    Narrow table columns then wrap ``adversarial_training`` as ``adversarial_`` / ``training`` instead of
    breaking inside a word (the stylesheet forbids that: ``overflow-wrap: normal``, ``hyphens: manual``).
    """
    escaped = str(Markup.escape(str(text)))
    return Markup(re.sub(r"(_|[./](?=[A-Za-z]))", r"\1<wbr>", escaped))


def metric_label(name: str, unit: str) -> str:
    """A metric's human name with its unit: ``Robust accuracy (%)``; unitless metrics keep their name."""
    return f"{name} ({unit})" if unit else name
