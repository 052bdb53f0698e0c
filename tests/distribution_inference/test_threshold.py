"""The decision threshold of distribution inference: chosen on the adversary's own models, never the victims'."""

from __future__ import annotations

import numpy as np
import pytest

from amulet.distribution_inference.attacks._threshold import adversary_threshold, calibrate_scores
from amulet.distribution_inference.metrics import evaluate_distinguishing_accuracy


def test_threshold_sits_between_the_adversary_groups() -> None:
    scores = np.array([0.1, 0.2, 0.3, 0.95, 0.7, 0.8, np.nan])
    labels = np.array([0, 0, 0, 0, 1, 1, 1])
    threshold, accuracy = adversary_threshold(scores, labels)
    assert threshold == pytest.approx((0.25 + 0.75) / 2)  # medians 0.25 and 0.75; the outlier 0.95 is ignored
    assert accuracy == pytest.approx(5 / 6)
    assert adversary_threshold(np.array([0.3, np.nan]), np.array([0, 1]))[0] == 0.5  # nothing held out


def test_calibration_keeps_the_ranking_and_puts_the_threshold_at_one_half(seed: int) -> None:
    raw = np.random.default_rng(seed).uniform(0.6, 0.9, 40)
    calibrated = calibrate_scores(raw, 0.72)
    assert ((calibrated >= 0) & (calibrated <= 1)).all()
    assert (np.argsort(raw, kind="stable") == np.argsort(calibrated, kind="stable")).all()
    assert ((calibrated >= 0.5) == (raw >= 0.72)).all()
    assert calibrate_scores(np.array([0.72]), 0.72)[0] == 0.5


def test_biased_scores_are_decided_at_the_adversary_threshold() -> None:
    """Every victim scores above 0.5 (a biased score) but the ranking is right: deciding at 0.5 is a constant
    guess (accuracy 0.5 at AUC 1), deciding at the adversary's threshold is right for every victim."""
    adversary = np.array([0.55, 0.6, 0.62, 0.8, 0.85, 0.9])
    adversary_labels = np.array([0, 0, 0, 1, 1, 1])
    victims = np.array([0.58, 0.61, 0.66, 0.78, 0.83, 0.88])
    truth = np.array([0, 0, 0, 1, 1, 1])
    assert evaluate_distinguishing_accuracy(victims, truth)["distinguishing_accuracy"] == 0.5
    threshold, _ = adversary_threshold(adversary, adversary_labels)
    m = evaluate_distinguishing_accuracy(calibrate_scores(victims, threshold), truth)
    assert m == {"distinguishing_accuracy": 1.0, "auc_score": 1.0}


def test_targets_all_on_one_side_are_flagged(census, caplog: pytest.LogCaptureFixture) -> None:
    """The accuracy of targets all decided the same way is one population's share: the result says so."""
    from amulet.distribution_inference.attacks import SuriEvans2022

    attack = SuriEvans2022(
        census.x_train, census.y_train, census.z_train, census.x_test, census.y_test, census.z_test,
        list(census.sensitive_columns), "sex", 0.2, 0.8, "linearnet", "m1", census.num_features, 2, 4, 1, 128,
        "cpu", None, "census",
    )  # fmt: skip
    adversary = np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9])  # the adversary's threshold: 0.5
    labels = np.r_[np.zeros(3), np.ones(3)]
    truth = np.r_[np.zeros(4), np.ones(4)]
    shifted = np.array([0.6, 0.62, 0.65, 0.7, 0.8, 0.85, 0.9, 0.95])  # well ordered (AUC 1), all above 0.5
    with caplog.at_level("WARNING"):
        result = attack._decide(shifted, truth, adversary, labels)
    assert bool(result["one_sided"]) and attack.one_sided_
    assert evaluate_distinguishing_accuracy(result["predictions"], truth)["distinguishing_accuracy"] == 0.5
    assert "same side of the threshold" in caplog.text and "AUC" in caplog.text
    caplog.clear()
    mixed = shifted - 0.2  # the same ordering, now cut between the two populations
    with caplog.at_level("WARNING"):
        result = attack._decide(mixed, truth, adversary, labels)
    assert not bool(result["one_sided"]) and "same side" not in caplog.text
