"""Every registered attack has a test that pins the direction of its headline score on a vulnerable target.

The heatmap's colours, the "findings" and every policy check read ``HeadlineMetric.higher_is_riskier``; the
direction tests (``tests/<risk>/test_<attack>_direction.py``) check it against real attacks on deliberately
vulnerable targets. This module keeps that list complete: registering a new attack without such a test, or
flipping a declared direction, fails here.
"""

from __future__ import annotations

from pathlib import Path

from amulet import registry

TESTS = Path(__file__).resolve().parents[1]

#: attack key -> the test module that pins the direction of its headline metrics on a vulnerable target.
DIRECTION_TESTS = {
    "pgd": "evasion/test_pgd_direction.py",
    "badnets": "poisoning/test_badnets_direction.py",
    "model_extraction": "unauth_model_ownership/test_model_extraction_direction.py",
    "lira": "membership_inference/test_lira_direction.py",
    "duddu_cikm_2022": "attribute_inference/test_duddu_direction.py",
    "subgroup_metrics": "discriminatory_behavior/test_subgroup_metrics_direction.py",
}

#: Risks whose attacks are tested with their own modules (their metrics are being reworked with them).
TESTED_WITH_THEIR_MODULES = {"distribution_inference", "data_reconstruction"}

#: The declared direction of every headline metric the direction tests rely on (True: higher = riskier).
DECLARED = {
    ("evasion", "robust_accuracy"): False,
    ("evasion", "attack_success_rate"): True,
    ("poisoning", "attack_success_rate"): True,
    ("poisoning", "clean_accuracy"): False,
    ("unauth_model_ownership", "fidelity"): True,
    ("unauth_model_ownership", "correct_fidelity"): True,
    ("unauth_model_ownership", "stolen_accuracy"): True,
    ("membership_inference", "auc"): True,
    ("membership_inference", "tpr_at_fpr"): True,
    ("membership_inference", "balanced_acc"): True,
    ("attribute_inference", "balanced_accuracy"): True,
    ("attribute_inference", "auc"): True,
    ("discriminatory_behavior", "demographic_parity"): True,
    ("discriminatory_behavior", "equalized_odds"): True,
    ("discriminatory_behavior", "p_rule"): False,
}


def test_every_attack_has_a_direction_test() -> None:
    missing = [
        attack.key
        for attack in registry.attacks()
        if attack.key not in DIRECTION_TESTS and attack.risk not in TESTED_WITH_THEIR_MODULES
    ]
    assert not missing, (
        f"Attacks without a direction test: {missing}. Add tests/<risk>/test_<attack>_direction.py (a deliberately "
        "vulnerable target vs a safer one, margins a sign flip breaks) and list it in DIRECTION_TESTS."
    )
    for key, module in DIRECTION_TESTS.items():
        assert registry.get_attack(key)  # still registered
        assert (TESTS / module).is_file(), module


def test_declared_directions_of_the_tested_risks() -> None:
    tested_risks = {registry.get_attack(key).risk for key in DIRECTION_TESTS}
    declared = {
        (risk.key, metric.key): metric.higher_is_riskier
        for risk in registry.risks()
        if risk.key in tested_risks
        for metric in risk.headline_metrics
    }
    assert declared == DECLARED
