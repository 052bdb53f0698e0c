"""Distribution inference metric: how well the attack tells the two training distributions apart."""

from __future__ import annotations

import numpy as np

from amulet._validation import Interval, check_param
from amulet.exceptions import InvalidParameterError

__all__ = ["evaluate_distinguishing_accuracy"]


def evaluate_distinguishing_accuracy(
    predictions: np.ndarray, ground_truth: np.ndarray, threshold: float = 0.5
) -> dict[str, float]:
    """Accuracy and AUC of distinguishing distribution 1 (label 0) from distribution 2 (label 1).

    The attacks of this package return ``predictions`` calibrated so that 0.5 is the decision threshold they
    chose on the adversary's own models (:class:`SuriEvans2022`, :class:`WhiteBoxPIM`): the default
    ``threshold`` is the adversary's decision, and the accuracy agrees with the AUC. Pass another threshold
    only for scores that are not calibrated that way.

    Args:
        predictions: Scores in [0, 1], one per victim model; >= ``threshold`` means "distribution 2".
        ground_truth: 0/1 per victim model.
        threshold: Decision threshold. Default 0.5.

    Returns:
        ``{"distinguishing_accuracy": float in [0, 1], "auc_score": float}`` (AUC is NaN with one class).

    Example:
        >>> evaluate_distinguishing_accuracy(np.array([0.1, 0.7, 0.9, 0.4]), np.array([0, 1, 1, 0]))
        {'distinguishing_accuracy': 1.0, 'auc_score': 1.0}
    """
    check_param("evaluate_distinguishing_accuracy", "threshold", threshold, [Interval(float, 0, 1)])
    scores = np.asarray(predictions, dtype=np.float64).reshape(-1)
    truth = np.asarray(ground_truth).reshape(-1)
    if len(scores) != len(truth) or len(scores) == 0:
        raise InvalidParameterError(
            "The 'ground_truth' parameter of evaluate_distinguishing_accuracy must have one entry per prediction "
            f"({len(scores)}). Got {len(truth)} instead."
        )
    if not np.isin(truth, [0, 1]).all():
        raise InvalidParameterError(
            "The 'ground_truth' parameter of evaluate_distinguishing_accuracy must be 0/1. "
            f"Got values {np.unique(truth)[:5].tolist()} instead."
        )
    from sklearn.metrics import roc_auc_score

    accuracy = float(np.mean((scores >= threshold) == truth.astype(bool)))
    auc = float(roc_auc_score(truth, scores)) if len(np.unique(truth)) == 2 else float("nan")
    return {"distinguishing_accuracy": accuracy, "auc_score": auc}
