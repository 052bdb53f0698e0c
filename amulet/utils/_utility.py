"""Is a classifier useful at all? The one definition of a *degenerate* model, shared by every layer.

A model is **degenerate** when its predictions are (near-)constant or its accuracy is not significantly
above what always predicting the majority class would score:

* ``top_class_share >= 98 %``: at least 98 % of the predictions go to one class, or
* ``p_value >= 0.05`` in a one-sided exact binomial test of "accuracy > majority rate" over the evaluated rows.

Risk metrics measured on such a model describe a constant function, not the model a defense was meant to
protect: an attack "fails" against it because there is nothing to learn, not because the defense works.
Layer 1 (:func:`amulet.utils.get_accuracy`) logs a warning for such a model; layer 2 (``amulet.assess``)
flags the row ``degenerate`` and never lets a policy check on it pass.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["DEGENERATE_P_VALUE", "DEGENERATE_TOP_CLASS_SHARE", "UtilityCheck", "check_utility", "degenerate_reason"]

#: A model whose most-predicted class gets at least this share of predictions (%) is degenerate.
DEGENERATE_TOP_CLASS_SHARE = 98.0
#: A model whose accuracy is not above the majority rate at this one-sided level is degenerate.
DEGENERATE_P_VALUE = 0.05


@dataclass(frozen=True)
class UtilityCheck:
    """The utility of a classifier on a set of labelled rows.

    Attributes:
        accuracy: Accuracy in percent (0-100).
        majority_rate: Percent of the rows whose label is the most frequent label (what a constant
            majority-class model would score).
        top_class_share: Percent of the predictions that go to the single most-predicted class.
        p_value: One-sided exact binomial test of "accuracy > majority rate" (1.0 when undefined).
        degenerate: True when ``top_class_share >= 98`` or ``p_value >= 0.05``.
        reason: Why the model is degenerate (empty when it is not).
        n: Number of rows evaluated.
    """

    accuracy: float
    majority_rate: float
    top_class_share: float
    p_value: float
    degenerate: bool
    reason: str
    n: int


def degenerate_reason(
    accuracy: float | None,
    majority_rate: float | None,
    top_class_share: float | None,
    p_value: float | None,
) -> str:
    """Why a model with these utility figures is degenerate; ``""`` when it is not (or nothing is known).

    This is the rule itself (used by :func:`check_utility` and by ``amulet.assess`` on recorded values):
    degenerate when ``top_class_share >= 98 %`` or ``p_value >= 0.05``. A figure that is ``None`` or NaN
    is not evidence either way.

    Example:
        >>> degenerate_reason(76.0, 76.0, 100.0, 0.52)
        'predicts one class for 100.0% of the rows; accuracy 76.00% is not significantly above the majority rate 76.00% (one-sided binomial p = 0.52)'
        >>> degenerate_reason(84.1, 76.0, 81.0, 1e-9)
        ''
    """  # noqa: E501 - a doctest line
    parts = []
    if _known(top_class_share) and top_class_share >= DEGENERATE_TOP_CLASS_SHARE:  # type: ignore[operator]
        parts.append(f"predicts one class for {top_class_share:.1f}% of the rows")
    if _known(p_value) and p_value >= DEGENERATE_P_VALUE:  # type: ignore[operator]
        acc = f"{accuracy:.2f}%" if _known(accuracy) else "its accuracy"
        majority = f" {majority_rate:.2f}%" if _known(majority_rate) else ""
        parts.append(
            f"accuracy {acc} is not significantly above the majority rate{majority} "
            f"(one-sided binomial p = {p_value:.2g})"
        )
    return "; ".join(parts)


def _known(value: float | None) -> bool:
    return value is not None and isinstance(value, (int, float)) and math.isfinite(value)


def _as_labels(values: Any, name: str) -> np.ndarray:
    if hasattr(values, "detach"):  # a torch tensor, without importing torch here
        values = values.detach().cpu().numpy()
    arr = np.asarray(values)
    if arr.ndim == 2:  # logits or probabilities: the predicted class
        arr = arr.argmax(1)
    if arr.ndim != 1:
        raise ValueError(f"check_utility: {name} must be 1-D labels or 2-D scores, got shape {arr.shape}.")
    return arr.astype(np.int64, copy=False)


def check_utility(y_true: Sequence[int] | Any, y_pred: Sequence[int] | Any) -> UtilityCheck:
    """Accuracy, majority rate, top-class share and the binomial test of a classifier's predictions.

    Args:
        y_true: True labels (1-D; NumPy array, tensor or sequence).
        y_pred: Predicted labels (1-D), or scores/logits of shape ``(n, n_classes)`` (their argmax is used).

    Returns:
        A :class:`UtilityCheck`; ``degenerate`` applies the rule of this module.

    Raises:
        ValueError: the two do not have the same number of rows, or no rows.

    Example:
        >>> check_utility([0, 0, 0, 1], [0, 0, 0, 0]).degenerate
        True
    """
    from scipy import stats

    truth = _as_labels(y_true, "y_true")
    pred = _as_labels(y_pred, "y_pred")
    if len(truth) != len(pred):
        raise ValueError(f"check_utility: y_true has {len(truth)} rows but y_pred has {len(pred)}; pass one per row.")
    n = len(truth)
    if n == 0:
        raise ValueError("check_utility: no rows to evaluate; pass at least one labelled row.")
    correct = int((truth == pred).sum())
    accuracy = 100.0 * correct / n
    majority = 100.0 * int(np.bincount(truth - truth.min()).max()) / n
    top_share = 100.0 * int(np.bincount(pred - pred.min()).max()) / n
    p0 = min(1.0, max(0.0, majority / 100.0))
    p_value = float(stats.binomtest(correct, n, p0, alternative="greater").pvalue) if p0 < 1.0 else 1.0
    reason = degenerate_reason(accuracy, majority, top_share, p_value)
    return UtilityCheck(
        accuracy=accuracy,
        majority_rate=majority,
        top_class_share=top_share,
        p_value=p_value,
        degenerate=bool(reason),
        reason=reason,
        n=n,
    )
