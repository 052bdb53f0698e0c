"""Adversarial debiasing with upstream Amulet's census example: lambdas [40, 40], one epoch, Adam 1e-3, batch 256.

Before the fix (one adversary step per classifier step on raw logits, weights summed over attributes) this
setup drove census accuracy to about 47-52 %, below the majority rate, while the sex gap grew.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from amulet.discriminatory_behavior.defenses import AdversarialDebiasing
from amulet.discriminatory_behavior.metrics import DiscriminatoryBehavior
from amulet.utils import get_accuracy, initialize_model, train_classifier


def _loader(x: np.ndarray, y: np.ndarray, z: np.ndarray | None = None) -> DataLoader:
    tensors = [torch.from_numpy(x).float(), torch.from_numpy(y).long()]
    if z is not None:
        tensors.append(torch.from_numpy(z).float())
    return DataLoader(TensorDataset(*tensors), batch_size=256, shuffle=False)


def test_upstream_example_lambdas_keep_accuracy_above_majority_and_narrow_the_gap(census) -> None:
    # upstream's run_adversarial_debiasing.py on census: LinearNet m1 trained one epoch, then debiased with the
    # same optimizer, lambdas [40, 40] and epochs=1, on the full training set in loader order
    torch.manual_seed(0)
    target = initialize_model("linearnet", "m1", census.num_features, census.num_classes)
    optimizer = torch.optim.Adam(target.parameters(), lr=1e-3)
    criterion = torch.nn.CrossEntropyLoss()
    target = train_classifier(target, _loader(census.x_train, census.y_train), criterion, optimizer, 1, "cpu")
    test_loader = _loader(census.x_test, census.y_test)
    sensitive_test = _loader(census.x_test, census.y_test, census.z_test)

    def gaps(model: torch.nn.Module) -> list[float]:
        per_attr = DiscriminatoryBehavior(model, sensitive_test, "cpu").evaluate_subgroup_metrics()
        return [float(per_attr[i]["demographic_parity"]) for i in sorted(per_attr)]

    base_acc, base_gaps = get_accuracy(target, test_loader, "cpu"), gaps(target)
    defense = AdversarialDebiasing(
        target,
        criterion,
        optimizer,
        _loader(census.x_train, census.y_train, census.z_train),
        sensitive_test,
        census.z_train.shape[1],
        census.num_classes,
        torch.Tensor([40, 40]),
        "cpu",
        1,
    )
    fair = defense.train_fair()
    acc, fair_gaps = get_accuracy(fair, test_loader, "cpu"), gaps(fair)

    n = len(census.y_test)
    majority = 100.0 * max(np.mean(census.y_test), 1 - np.mean(census.y_test))
    # above the majority rate by more than 3 binomial standard errors (about 1.1 points on 15,000 rows)
    margin = 3 * 100.0 * np.sqrt(majority / 100 * (1 - majority / 100) / n)
    assert acc > majority + margin, (acc, majority, base_acc)
    assert base_gaps[1] > 0.1  # sex: the undefended model discriminates
    assert max(fair_gaps) < 0.5 * max(base_gaps), (base_gaps, fair_gaps)
    assert all(f < b for f, b in zip(fair_gaps, base_gaps)), (base_gaps, fair_gaps)
