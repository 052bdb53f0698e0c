"""Fairness metrics against fairlearn's definitions, on random and edge-case predictions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fairlearn.metrics import (
    MetricFrame,
    demographic_parity_difference,
    demographic_parity_ratio,
    false_positive_rate,
    selection_rate,
    true_positive_rate,
)
from torch.utils.data import DataLoader, TensorDataset

from amulet.discriminatory_behavior.metrics import DiscriminatoryBehavior
from amulet.exceptions import InvalidParameterError

DB = DiscriminatoryBehavior


def _fl_diff(metric, y, p, a) -> float:
    return float(MetricFrame(metrics=metric, y_true=y, y_pred=p, sensitive_features=a).difference())


def _fl_p_rule(y, p, a) -> float:
    ratio = demographic_parity_ratio(y, p, sensitive_features=a)
    return 0.0 if np.isnan(ratio) else 100.0 * float(ratio)


def _cases(seed: int):
    rng = np.random.default_rng(seed)
    for n, n_groups, p_pos in [(50, 2, 0.5), (500, 2, 0.2), (31, 2, 0.9), (400, 4, 0.3), (200, 3, 0.5)]:
        y = (rng.random(n) < p_pos).astype(int)
        p = (rng.random(n) < rng.random()).astype(int)
        a = rng.integers(0, n_groups, size=n)
        yield y, p, a
    # a group with no positives, and a group with no negatives
    y = np.array([0, 0, 0, 0, 1, 1, 1, 0, 1, 1])
    p = np.array([1, 0, 1, 0, 1, 0, 1, 1, 0, 1])
    a = np.array([0, 0, 0, 0, 1, 1, 1, 1, 2, 2])
    yield y, p, a
    yield y, p, (a > 0).astype(int)
    # nobody selected in one group; everybody in the other
    yield y, (a > 0).astype(int), (a > 0).astype(int)


@pytest.mark.parametrize("case", range(8))
def test_metrics_equal_fairlearn(case: int, seed: int) -> None:
    y, p, a = list(_cases(seed))[case]
    dp = demographic_parity_difference(y, p, sensitive_features=a)
    tpp = _fl_diff(true_positive_rate, y, p, a)
    fpp = _fl_diff(false_positive_rate, y, p, a)
    assert DB.demographic_parity(p, a) == pytest.approx(dp, abs=1e-9)
    assert DB.true_positive_parity(p, y, a) == pytest.approx(tpp, abs=1e-9)
    assert DB.false_positive_parity(p, y, a) == pytest.approx(fpp, abs=1e-9)
    assert DB.equalized_odds(p, y, a) == pytest.approx(tpp + fpp, abs=1e-9)
    assert DB.p_rule(p, a) == pytest.approx(_fl_p_rule(y, p, a), abs=1e-9)


def test_binary_definitions_by_hand() -> None:
    p = np.array([1, 1, 0, 0, 1, 0, 0, 0])
    y = np.array([1, 0, 1, 0, 1, 1, 0, 0])
    a = np.array([1, 1, 1, 1, 0, 0, 0, 0])
    # selection rates 0.5 (a=1) and 0.25 (a=0)
    assert DB.demographic_parity(p, a) == pytest.approx(0.25)
    assert DB.p_rule(p, a) == pytest.approx(50.0)
    # TPR: a=1 -> 1/2, a=0 -> 1/2; FPR: a=1 -> 1/2, a=0 -> 0/2
    assert DB.true_positive_parity(p, y, a) == pytest.approx(0.0)
    assert DB.false_positive_parity(p, y, a) == pytest.approx(0.5)
    acc_true, acc_false = DB.accuracy(p, y, a)
    assert (acc_true, acc_false) == (pytest.approx(50.0), pytest.approx(75.0))


def test_group_without_positives_has_tpr_zero() -> None:
    y = np.array([0, 0, 0, 1, 1, 1])
    p = np.array([1, 0, 0, 1, 1, 0])
    a = np.array([0, 0, 0, 1, 1, 1])
    # group 0 has no positives: TPR 0 (fairlearn's convention); group 1 TPR 2/3
    assert DB.true_positive_parity(p, y, a) == pytest.approx(2 / 3)
    # group 1 has no negatives: FPR 0; group 0 FPR 1/3
    assert DB.false_positive_parity(p, y, a) == pytest.approx(1 / 3)


@pytest.mark.parametrize(
    ("p", "a"),
    [
        (np.zeros(6, int), np.array([0, 0, 0, 1, 1, 1])),  # nobody selected: ratio 0/0
        (np.array([1, 0, 1, 1]), np.ones(4, int)),  # a single group present
        (np.array([0, 0, 1, 1]), np.array([0, 0, 1, 1])),  # one group never selected
    ],
)
def test_p_rule_zero_when_undefined_or_extreme(p: np.ndarray, a: np.ndarray) -> None:
    assert DB.p_rule(p, a) == 0.0


def test_non_binary_attribute_is_worst_pairwise_gap() -> None:
    p = np.array([1, 1, 1, 1, 0, 1, 0, 0, 0])
    a = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2])
    rates = [1.0, 2 / 3, 0.0]
    assert DB.demographic_parity(p, a) == pytest.approx(max(rates) - min(rates))
    p2 = np.array([1, 1, 1, 1, 0, 1, 1, 0, 0])
    assert DB.p_rule(p2, a) == pytest.approx(100 * (1 / 3) / 1.0)


def test_non_binary_predictions_rejected() -> None:
    with pytest.raises(InvalidParameterError, match="'predictions' parameter of DiscriminatoryBehavior"):
        DB.demographic_parity(np.array([0, 2, 1]), np.array([0, 1, 1]))


class _Fixed(torch.nn.Module):
    """Outputs logits whose argmax is the first input feature."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([1 - x[:, 0], x[:, 0]], dim=1)


@pytest.mark.parametrize("batch_size", [1, 7, 1000])
def test_evaluate_subgroup_metrics_any_batch_size(batch_size: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 300
    p = (rng.random(n) < 0.4).astype(int)
    y = (rng.random(n) < 0.3).astype(int)
    z = rng.integers(0, 2, size=(n, 2))
    x = torch.tensor(np.c_[p, rng.random(n)], dtype=torch.float32)
    loader = DataLoader(TensorDataset(x, torch.tensor(y), torch.tensor(z)), batch_size=batch_size)
    metrics = DiscriminatoryBehavior(_Fixed(), loader, "cpu").evaluate_subgroup_metrics()
    assert sorted(metrics) == [0, 1]
    for i in range(2):
        a = z[:, i]
        m = metrics[i]
        assert m["demographic_parity"] == pytest.approx(demographic_parity_difference(y, p, sensitive_features=a))
        assert m["equalized_odds"] == pytest.approx(
            _fl_diff(true_positive_rate, y, p, a) + _fl_diff(false_positive_rate, y, p, a)
        )
        assert m["p_rule"] == pytest.approx(_fl_p_rule(y, p, a))
        sr = MetricFrame(metrics=selection_rate, y_true=y, y_pred=p, sensitive_features=a).by_group
        assert m["demographic_parity"] == pytest.approx(abs(sr[1] - sr[0]))
        assert m["acc_true"] == pytest.approx(100 * (p[a == 1] == y[a == 1]).mean())
        assert m["acc_false"] == pytest.approx(100 * (p[a == 0] == y[a == 0]).mean())


def test_loader_without_z_is_rejected() -> None:
    loader = DataLoader(TensorDataset(torch.zeros(4, 2), torch.zeros(4, dtype=torch.long)), batch_size=2)
    with pytest.raises(InvalidParameterError, match="'test_loader' parameter of DiscriminatoryBehavior"):
        DiscriminatoryBehavior(_Fixed(), loader, "cpu").evaluate_subgroup_metrics()


def test_adversary_auc_matches_sklearn(seed: int) -> None:
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(seed)
    n = 200
    x = torch.tensor(rng.normal(size=(n, 2)), dtype=torch.float32)
    z = torch.tensor(np.c_[(x[:, 0] > 0).numpy(), rng.integers(0, 2, n)])
    loader = DataLoader(TensorDataset(x, torch.zeros(n, dtype=torch.long), z), batch_size=64)
    main = torch.nn.Identity()
    disc = torch.nn.Identity()  # scores = the inputs themselves
    aucs = DiscriminatoryBehavior.adversary_auc(disc, main, loader, "cpu")
    assert aucs[0] == pytest.approx(1.0)
    assert aucs[1] == pytest.approx(roc_auc_score(z[:, 1].numpy(), x[:, 1].numpy()))
