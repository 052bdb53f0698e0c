"""Metric keys: how a name chosen by a dataset (a sensitive attribute) becomes part of a metric's key."""

from __future__ import annotations

import re

__all__ = ["attribute_key"]


def attribute_key(name: str) -> str:
    """A metric-key-safe form of a sensitive attribute's name (``"Sex"`` -> ``"sex"``).

    Every risk that reports one metric per sensitive attribute (``auc_<attribute>``, ``p_rule_<attribute>``)
    names the attribute this way, so that the same attribute has the same key in every column.

    Example:
        >>> attribute_key("Marital Status")
        'marital_status'
    """
    return re.sub(r"[^0-9a-z]+", "_", str(name).lower()).strip("_") or "attr"
