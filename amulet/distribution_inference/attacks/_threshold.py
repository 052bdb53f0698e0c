"""The decision threshold of a distribution inference attack, chosen on the adversary's own models.

An attack's raw score of a model (a vote share, a meta-classifier's probability) need not be centred on 0.5:
populations trained on other rows than the adversary's, or a score that is biased towards one distribution,
put every victim on the same side of 0.5, so the accuracy at 0.5 is that of a constant guess even when the
scores rank the victims well (high AUC). The adversary can only calibrate on what it owns: its own models,
whose distribution it knows. :func:`adversary_threshold` picks the threshold between the held-out scores
of its two populations (each adversary model scored without that model: leave-one-out or out-of-fold), and
:func:`calibrate_scores` maps raw scores monotonically onto [0, 1] so that the chosen threshold sits at 0.5.
The victims never influence the threshold. :func:`decide` puts the two together into an attack's result, and
flags the case where every victim falls on the same side of the threshold: the accuracy is then one
population's share whatever the scores.
"""

from __future__ import annotations

import logging

import numpy as np

__all__ = ["adversary_threshold", "calibrate_scores", "decide"]

logger = logging.getLogger(__name__)


def adversary_threshold(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """The decision threshold on raw scores, chosen on the adversary's own models, and its accuracy on them.

    The threshold is the midpoint between the median held-out score of the adversary's distribution-1 models
    and that of its distribution-2 models (the cut a two-class model with equal spread would make; medians
    keep one outlying model from moving it). Maximising the accuracy on the adversary's models instead
    picks a point inside the gap between its two extreme models, which a handful of models place badly:
    the adversary's held-out scores are usually better separated than the victims' (its models share
    training rows with the models they are compared to), so the gap is wide and says little about where the
    victims' two groups meet.

    Args:
        scores: Raw scores of the adversary's models, each computed without that model (leave-one-out or
            out-of-fold); NaN entries (models that could not be held out) are ignored.
        labels: 0 (distribution 1) / 1 (distribution 2) per model.

    Returns:
        ``(threshold, accuracy of "score >= threshold -> distribution 2" on the adversary's models)``; the
        accuracy is NaN (and the threshold 0.5) when either distribution has no finite score.
    """
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    y = np.asarray(labels).reshape(-1).astype(bool)
    finite = np.isfinite(s)
    s, y = s[finite], y[finite]
    if not y.any() or y.all():
        return 0.5, float("nan")
    threshold = float((np.median(s[~y]) + np.median(s[y])) / 2)
    return threshold, float(np.mean((s >= threshold) == y))


def calibrate_scores(scores: np.ndarray, threshold: float) -> np.ndarray:
    """Map raw scores monotonically onto [0, 1] with ``threshold`` at 0.5.

    Scores at or above the threshold land in [0.5, 1], scores below in [0, 0.5): the decision
    ``calibrated >= 0.5`` is ``raw >= threshold`` and the ranking (hence the AUC) is unchanged. The map is
    piecewise linear between the lowest score (0), the threshold (0.5) and the highest score (1).
    """
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    lo = min(float(np.min(s)), threshold) if len(s) else threshold
    hi = max(float(np.max(s)), threshold) if len(s) else threshold
    below = 0.5 * (s - lo) / (threshold - lo) if threshold > lo else np.zeros_like(s)
    above = 0.5 + 0.5 * (s - threshold) / (hi - threshold) if hi > threshold else np.full_like(s, 0.5)
    out = np.where(s >= threshold, above, np.minimum(below, np.nextafter(0.5, 0.0)))
    return np.clip(out, 0.0, 1.0)


def decide(
    owner: str, scores: np.ndarray, truth: np.ndarray, adversary_scores: np.ndarray, adversary_labels: np.ndarray
) -> dict[str, np.ndarray]:
    """A distribution inference attack's result: the victims' scores cut at the adversary's threshold.

    Args:
        owner: The attack's name, for the warnings.
        scores: Raw scores of the victim (target) models.
        truth: 0 / 1 per victim model (distribution 1 / 2); only reported, and read by the one-sided check.
        adversary_scores: Held-out raw scores of the adversary's models (:func:`adversary_threshold`).
        adversary_labels: 0 / 1 per adversary model.

    Returns:
        ``{"predictions": calibrated scores (>= 0.5: distribution 2), "ground_truth", "raw_scores", "threshold",
        "adversary_accuracy", "adversary_scores", "adversary_labels", "one_sided"}``; ``one_sided`` is True when
        every victim falls on the same side of the threshold (a warning is logged: the accuracy is then one
        population's share whatever the scores' ordering, so it says nothing about the attack; read the AUC).
    """
    threshold, adv_accuracy = adversary_threshold(adversary_scores, adversary_labels)
    if not np.isfinite(adv_accuracy):
        logger.warning(
            "%s: no held-out score of an adversary model (each population needs at least 2 models); the decision "
            "threshold stays at 0.5.",
            owner,
        )
        threshold = 0.5
    raw = np.asarray(scores, dtype=np.float64)
    decisions = raw >= threshold
    one_sided = len(np.unique(truth)) == 2 and len(np.unique(decisions)) == 1
    if one_sided:
        logger.warning(
            "%s: every target model falls on the same side of the threshold chosen on the adversary's models, so "
            "the distinguishing accuracy is the share of one population (%.2f) whatever the scores; read the "
            "threshold-free AUC instead. The targets' scores are shifted against the adversary models' own "
            "(populations of unequal size shift them: see population_rows_).",
            owner,
            float(np.mean(np.asarray(truth) == float(decisions[0]))),
        )
    return {
        "predictions": calibrate_scores(raw, threshold),
        "ground_truth": truth,
        "raw_scores": raw,
        "threshold": np.asarray(threshold),
        "adversary_accuracy": np.asarray(adv_accuracy),
        "adversary_scores": np.asarray(adversary_scores, dtype=np.float64),
        "adversary_labels": np.asarray(adversary_labels, dtype=np.float64),
        "one_sided": np.asarray(one_sided),
    }
