"""LiRA's public helper from upstream Amulet 0.6.0's ``MembershipInferenceAttack`` base class."""

from __future__ import annotations

import numpy as np
import torch
from compat_helpers import DEVICE, loader
from torch.utils.data import TensorDataset

from amulet.membership_inference.attacks import LiRA
from amulet.utils import get_accuracy, initialize_model


def test_lira_train_shadow_model_trains_one_given_shadow(census_small, census_target, tmp_path) -> None:
    train_set = TensorDataset(*(t[:512] for t in census_small.train_set.tensors))
    mem_inf = LiRA(
        census_target, np.arange(256), "linearnet", "m1", train_set, "census", census_small.num_features,
        census_small.num_classes, 128, 0.5, torch.nn.CrossEntropyLoss(), 2, 2, DEVICE, tmp_path, 0,
    )  # fmt: skip
    torch.manual_seed(0)
    shadow = initialize_model("linearnet", "m1", census_small.num_features, census_small.num_classes)
    before = [p.detach().clone() for p in shadow.parameters()]
    trained = mem_inf.train_shadow_model(shadow, loader(train_set))
    assert isinstance(trained, torch.nn.Module)
    assert any(not torch.equal(a, b.detach()) for a, b in zip(before, trained.parameters(), strict=True))
    assert get_accuracy(trained, loader(census_small.test_set), DEVICE) > 50.0
