"""Membership inference metrics: ROC AUC, best balanced accuracy and TPR at a fixed low FPR."""

from __future__ import annotations

import numpy as np

from amulet._validation import Interval, check_param
from amulet.exceptions import InvalidParameterError

__all__ = ["compute_mi_metrics", "roc_curve_points"]


def roc_curve_points(preds: np.ndarray, true_labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ROC curve of ``preds`` (higher = more likely a member) against boolean ``true_labels``.

    Every distinct score is a threshold (a record is called a member when its score is >= the threshold),
    the curve starts at (0, 0) with threshold +inf, exactly as ``sklearn.metrics.roc_curve`` with
    ``drop_intermediate=False``.

    Returns:
        ``(fpr, tpr, thresholds)``, each of shape (n_distinct_scores + 1,).
    """
    scores = np.asarray(preds, dtype=np.float64).reshape(-1)
    labels = np.asarray(true_labels).reshape(-1).astype(bool)
    order = np.argsort(scores, kind="mergesort")[::-1]
    scores, labels = scores[order], labels[order]
    last_of_each = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]
    tps = np.cumsum(labels, dtype=np.float64)[last_of_each]
    fps = (last_of_each + 1) - tps
    tpr = np.r_[0.0, tps / tps[-1]]
    fpr = np.r_[0.0, fps / fps[-1]]
    thresholds = np.r_[np.inf, scores[last_of_each]]
    return fpr, tpr, thresholds


def compute_mi_metrics(preds: np.ndarray, true_labels: np.ndarray, fpr_threshold: float = 0.01) -> dict[str, float]:
    """Score a membership inference attack.

    Args:
        preds: Membership scores, shape (n,); higher means "more likely a member". Must be finite.
        true_labels: Booleans (or 0/1), shape (n,): True for members. Both classes must occur.
        fpr_threshold: The false-positive rate at which the true-positive rate is reported, in (0, 1).
            Default 0.01.

    Returns:
        ``{"auc", "balanced_acc", "tpr_at_fpr", "threshold_score", "threshold_at_fpr", "tpr_at_0_1pct_fpr"}``:

        * ``auc``: area under the ROC curve (trapezoidal, as ``sklearn.metrics.roc_auc_score``);
        * ``balanced_acc``: the best balanced accuracy ``(TPR + TNR) / 2`` over all thresholds;
        * ``tpr_at_fpr``: the highest TPR among thresholds whose FPR is at most ``fpr_threshold``;
        * ``threshold_score``: the score threshold reaching ``balanced_acc`` (members are scores >= it; the
          highest such threshold when several tie), as upstream Amulet 0.6.0;
        * ``threshold_at_fpr``: the score threshold reaching ``tpr_at_fpr``;
        * ``tpr_at_0_1pct_fpr``: the same TPR at an FPR of at most 0.1%.

    Raises:
        InvalidParameterError: for mismatched lengths, non-finite scores, a single class, or a bad threshold.

    Example:
        >>> import numpy as np
        >>> m = compute_mi_metrics(np.array([0.9, 0.8, 0.3, 0.1]), np.array([True, True, False, False]))
        >>> m["auc"], m["balanced_acc"], m["tpr_at_fpr"]
        (1.0, 1.0, 1.0)
    """
    check_param("compute_mi_metrics", "fpr_threshold", fpr_threshold, [Interval(float, 0, 1, closed="neither")])
    scores = np.asarray(preds, dtype=np.float64).reshape(-1)
    labels = np.asarray(true_labels).reshape(-1)
    if len(scores) != len(labels):
        raise InvalidParameterError(
            f"The 'true_labels' parameter of compute_mi_metrics must have one entry per score ({len(scores)}). "
            f"Got {len(labels)} instead."
        )
    if not np.isfinite(scores).all():
        raise InvalidParameterError(
            "The 'preds' parameter of compute_mi_metrics must be finite. Got NaN or inf instead."
        )
    if not np.isin(labels, [0, 1]).all():
        raise InvalidParameterError(
            "The 'true_labels' parameter of compute_mi_metrics must be boolean or 0/1. "
            f"Got values {np.unique(labels)[:5].tolist()} instead."
        )
    labels = labels.astype(bool)
    n_in = int(labels.sum())
    if n_in == 0 or n_in == len(labels):
        raise InvalidParameterError(
            "The 'true_labels' parameter of compute_mi_metrics must contain both members and non-members. "
            f"Got {n_in} members out of {len(labels)} instead."
        )
    fpr, tpr, thresholds = roc_curve_points(scores, labels)
    auc = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))

    def tpr_at(limit: float) -> tuple[float, float]:
        ok = np.flatnonzero(fpr <= limit)
        best = ok[np.argmax(tpr[ok])]
        return float(tpr[best]), float(thresholds[best])

    tpr_low, threshold_at_fpr = tpr_at(fpr_threshold)
    balanced = (tpr + 1.0 - fpr) / 2.0
    # argmax takes the first maximum, i.e. the highest threshold: the one sklearn's roc_curve (upstream) reports.
    best = int(np.argmax(balanced))
    return {
        "auc": auc,
        "balanced_acc": float(balanced[best]),
        "tpr_at_fpr": tpr_low,
        "threshold_score": float(thresholds[best]),
        "threshold_at_fpr": threshold_at_fpr,
        "tpr_at_0_1pct_fpr": tpr_at(0.001)[0],
    }
