"""compute_mi_metrics against scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score, roc_auc_score, roc_curve

from amulet.exceptions import InvalidParameterError
from amulet.membership_inference.metrics import compute_mi_metrics, roc_curve_points


@pytest.mark.parametrize("ties", [False, True])
def test_matches_sklearn_on_random_scores(seed: int, ties: bool) -> None:
    rng = np.random.default_rng(seed)
    labels = rng.random(2000) < 0.4
    scores = rng.normal(size=2000) + 0.5 * labels
    if ties:
        scores = np.round(scores, 1)  # many tied scores
    metrics = compute_mi_metrics(scores, labels)
    assert metrics["auc"] == pytest.approx(roc_auc_score(labels, scores), rel=1e-12, abs=1e-12)

    fpr, tpr, thresholds = roc_curve_points(scores, labels)
    sk_fpr, sk_tpr, sk_thr = roc_curve(labels, scores, drop_intermediate=False)
    np.testing.assert_array_equal(fpr, sk_fpr)
    np.testing.assert_array_equal(tpr, sk_tpr)
    np.testing.assert_array_equal(thresholds[1:], sk_thr[1:])

    # best balanced accuracy over thresholds, by brute force with scikit-learn
    best = max(balanced_accuracy_score(labels, scores >= t) for t in np.unique(scores))
    assert metrics["balanced_acc"] == pytest.approx(best, abs=1e-12)

    # TPR at 1% FPR: the best TPR whose FPR is at most 1%, and its threshold reproduces it
    ok = sk_fpr <= 0.01
    assert metrics["tpr_at_fpr"] == pytest.approx(sk_tpr[ok].max(), abs=1e-12)
    called = scores >= metrics["threshold_at_fpr"]
    assert called[labels].mean() == pytest.approx(metrics["tpr_at_fpr"], abs=1e-12)
    assert called[~labels].mean() <= 0.01
    assert metrics["tpr_at_0_1pct_fpr"] == pytest.approx(sk_tpr[sk_fpr <= 0.001].max(), abs=1e-12)


def test_perfect_and_inverted_separators() -> None:
    labels = np.array([True] * 50 + [False] * 50)
    scores = np.r_[np.linspace(2, 3, 50), np.linspace(0, 1, 50)]
    perfect = compute_mi_metrics(scores, labels)
    assert perfect["auc"] == 1.0 and perfect["balanced_acc"] == 1.0 and perfect["tpr_at_fpr"] == 1.0
    inverted = compute_mi_metrics(-scores, labels)
    assert inverted["auc"] == 0.0 and inverted["tpr_at_fpr"] == 0.0


def test_bad_input_names_the_parameter() -> None:
    labels = np.array([True, False, True])
    with pytest.raises(InvalidParameterError, match="'fpr_threshold'"):
        compute_mi_metrics(np.zeros(3), labels, fpr_threshold=1.5)
    with pytest.raises(InvalidParameterError, match="'true_labels'"):
        compute_mi_metrics(np.zeros(3), np.array([True, True, True]))
    with pytest.raises(InvalidParameterError, match="'true_labels'"):
        compute_mi_metrics(np.zeros(4), labels)
    with pytest.raises(InvalidParameterError, match="'preds'"):
        compute_mi_metrics(np.array([0.1, np.nan, 0.3]), labels)
