"""ROC curves thinned for plotting on log-log axes, as membership-inference papers draw them."""

from __future__ import annotations

import numpy as np

__all__ = ["roc_curve_points"]


def roc_curve_points(
    scores: np.ndarray, labels: np.ndarray, *, max_points: int = 120
) -> tuple[list[float], list[float]]:
    """The ROC curve of ``scores`` (higher = positive), thinned to at most ``max_points`` points.

    The low false-positive end is what matters for membership inference (Carlini et al. 2022 plot TPR
    against FPR on log-log axes), so points are kept on a logarithmic grid of false-positive rates from the
    smallest non-zero rate measured (``1 / n_negative``) to 1, each grid point taking the curve's highest
    true-positive rate at or below that false-positive rate. Zero false-positive rates are dropped (they
    cannot be drawn on a log axis); the curve always ends at (1, 1).

    Args:
        scores: One score per candidate.
        labels: 1 for positives (members), 0 for negatives; both classes must be present.
        max_points: Upper bound on the number of points returned (at least 2).

    Returns:
        ``(fpr, tpr)``: lists of equal length, ``fpr`` strictly increasing, both in [0, 1].

    Raises:
        ValueError: mismatched lengths, NaN scores, a single class, or ``max_points < 2``.

    Example:
        >>> import numpy as np
        >>> fpr, tpr = roc_curve_points(np.array([0.9, 0.8, 0.3, 0.1]), np.array([1, 0, 1, 0]))
        >>> fpr[-1], tpr[-1]
        (1.0, 1.0)
    """
    from sklearn.metrics import roc_curve

    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels).ravel().astype(int)
    if scores.shape != labels.shape:
        raise ValueError(f"scores ({scores.size}) and labels ({labels.size}) must have the same length.")
    if max_points < 2:
        raise ValueError(f"max_points must be at least 2, got {max_points}.")
    if np.isnan(scores).any():
        raise ValueError("scores contain NaN: a ROC curve needs a score for every candidate.")
    n_neg, n_pos = int((labels == 0).sum()), int((labels == 1).sum())
    if n_neg == 0 or n_pos == 0:
        raise ValueError(f"a ROC curve needs both classes; got {n_pos} positives and {n_neg} negatives.")
    fpr, tpr, _ = roc_curve(labels, scores)
    grid = np.unique(np.geomspace(1.0 / n_neg, 1.0, num=max_points))
    # The highest TPR reached at FPR <= g: the curve is a step function, so take the last point left of g.
    at = np.searchsorted(fpr, grid * (1 + 1e-12), side="right") - 1
    kept_fpr, kept_tpr = fpr[at], tpr[at]
    keep = kept_fpr > 0
    kept_fpr, kept_tpr = kept_fpr[keep], kept_tpr[keep]
    unique_fpr, first = np.unique(kept_fpr, return_index=True)
    # For repeated FPR values keep the highest TPR (the step's top).
    best = np.maximum.reduceat(kept_tpr, first) if kept_tpr.size else kept_tpr
    return [float(v) for v in unique_fpr], [float(v) for v in best]
